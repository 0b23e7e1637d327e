namespace OnnxAdadelta.Onnx;

/// <summary>
/// An advisory lock on a file a command is going to write, held for the whole command: a second writer of the same
/// path is refused at once rather than both reporting success and one result being lost. The lock is the hidden file
/// <c>.NAME.lock</c> beside the destination, opened exclusively (an <c>flock</c> on Unix); it is deleted on release.
/// </summary>
/// <remarks>
/// The lock binds only writers that take it (this library's commands); it does not stop other programs. A process that
/// dies releases its lock with its file handle and may leave an empty <c>.NAME.lock</c>, which the next writer reuses.
/// </remarks>
public sealed class DestinationLock : IDisposable
{
    private readonly FileStream _stream;
    private bool _disposed;

    private DestinationLock(string path, string lockPath, FileStream stream)
    {
        Path = path;
        LockPath = lockPath;
        _stream = stream;
    }

    /// <summary>The destination this lock guards (full path).</summary>
    public string Path { get; }

    /// <summary>The lock file beside it.</summary>
    public string LockPath { get; }

    /// <summary>
    /// Takes the lock on <paramref name="destination"/>; <paramref name="what"/> names it in messages ("-o").
    /// The destination must be a path this library may write (see <see cref="SafeFile.CheckWritable"/>).
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">Another writer holds the lock, or the destination cannot be written.</exception>
    public static DestinationLock Acquire(string destination, string what = "output")
    {
        SafeFile.CheckWritable(destination, what);
        var full = System.IO.Path.GetFullPath(destination);
        var dir = System.IO.Path.GetDirectoryName(full)!;
        var lockPath = System.IO.Path.Join(dir, $".{System.IO.Path.GetFileName(full)}.lock");
        // A holder deletes the lock file as it releases it, so a file opened just before that deletion may be locked
        // after it, while a third writer creates and locks a new one. Only the holder of the file that the path still
        // names (same device and inode) has the lock; the other tries again.
        for (int attempt = 0; attempt < 8; attempt++)
        {
            try { Directory.CreateDirectory(dir); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new OnnxAdadeltaException($"{full}: cannot create its folder for the {what} ({e.Message.ReplaceLineEndings(" ")}).", e);
            }
            if (SafeFile.KindOf(lockPath, followLinks: false) is not (FileKind.Missing or FileKind.Regular) and var kind)
                throw new OnnxAdadeltaException($"{lockPath}: the lock file of {full} is {SafeFile.Describe(kind)}; expected a regular file or nothing.");
            FileStream stream;
            try { stream = new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None); }
            catch (IOException e) when (e is not FileNotFoundException and not DirectoryNotFoundException)
            {
                throw new OnnxAdadeltaException(
                    $"{full}: another onnx-adadelta process is writing this {what} (it holds {lockPath}); expected one writer per file: " +
                    "wait for it to finish, or write to another path.", e);
            }
            catch (UnauthorizedAccessException e)
            {
                throw new OnnxAdadeltaException($"{full}: cannot lock the {what} ({e.Message.ReplaceLineEndings(" ")}).", e);
            }
            if (SafeFile.IsSameFile(lockPath, stream.SafeFileHandle)) return new DestinationLock(full, lockPath, stream);
            stream.Dispose();
        }
        throw new OnnxAdadeltaException($"{full}: could not take the lock {lockPath} for the {what}; other writers keep replacing it.");
    }

    /// <summary>Deletes the lock file (if it is still this lock's) and releases the lock.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        try
        {
            // Delete while still holding the lock, so no other writer can hold this file when it goes.
            if (SafeFile.IsSameFile(LockPath, _stream.SafeFileHandle)) File.Delete(LockPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        _stream.Dispose();
    }
}
