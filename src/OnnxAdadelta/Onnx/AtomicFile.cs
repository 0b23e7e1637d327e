using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace OnnxAdadelta.Onnx;

/// <summary>Writes files so that a reader never sees half of one: a temporary file in the same folder, then a rename.</summary>
/// <remarks>
/// The temporary file of <c>NAME</c> is <c>.NAME.PID.GUID.tmp</c>. A process killed during a write leaves it behind;
/// the next write of the same <c>NAME</c> deletes such files whose process is no longer running and reports each one
/// through <see cref="StaleTemporaryRemoved"/>. Only regular files (or new paths) are replaced: see <see cref="SafeFile.CheckWritable"/>.
/// </remarks>
public static class AtomicFile
{
    /// <summary>Raised with a one-line notice for each stale temporary file a write removed (the CLI prints it as a warning).</summary>
    public static event Action<string>? StaleTemporaryRemoved;

    /// <summary>
    /// Calls <paramref name="write"/> on a temporary file and renames it to <paramref name="path"/> once it succeeded.
    /// If anything fails the temporary file is deleted and an existing file at <paramref name="path"/> is left as it was.
    /// </summary>
    /// <exception cref="OnnxAdadeltaException"><paramref name="path"/> is a folder, a device, a named pipe, a socket or a symbolic link.</exception>
    public static void Write(string path, Action<Stream> write) => WriteAll([(path, write)]);

    /// <summary>
    /// Writes several files together: every one to its temporary file first, and only when all succeeded, renames them
    /// into place in the given order (put the file that refers to the others last). If a writer fails, no target is touched
    /// and every temporary file is deleted.
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">A target path is a folder, a device, a named pipe, a socket or a symbolic link.</exception>
    public static void WriteAll(IReadOnlyList<(string Path, Action<Stream> Write)> files)
    {
        ArgumentNullException.ThrowIfNull(files);
        var targets = files.Select(f => Path.GetFullPath(f.Path)).ToArray();
        if (targets.Distinct(StringComparer.Ordinal).Count() != targets.Length)
            throw new ArgumentException("Each file may be written only once.", nameof(files));
        foreach (var full in targets) SafeFile.CheckWritable(full);
        foreach (var full in targets) SweepStaleTemporaries(full);

        var temps = new List<string>(files.Count);
        try
        {
            for (int i = 0; i < files.Count; i++)
            {
                var dir = Path.GetDirectoryName(targets[i])!;
                Directory.CreateDirectory(dir);
                var tmp = Path.Combine(dir, $".{Path.GetFileName(targets[i])}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
                temps.Add(tmp);
                using var s = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
                files[i].Write(s);
                s.Flush(flushToDisk: true);
            }
            for (int i = 0; i < files.Count; i++) File.Move(temps[i], targets[i], overwrite: true);
        }
        catch
        {
            foreach (var tmp in temps)
            {
                try { File.Delete(tmp); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
            }
            throw;
        }
    }

    /// <summary>
    /// Deletes the temporary files of <paramref name="target"/> (<c>.NAME.PID.GUID.tmp</c> beside it) whose process is
    /// no longer running, and returns their paths. Files of live processes, of this process, and of other names stay.
    /// </summary>
    public static IReadOnlyList<string> SweepStaleTemporaries(string target)
    {
        var full = Path.GetFullPath(target);
        var dir = Path.GetDirectoryName(full);
        var name = Path.GetFileName(full);
        var removed = new List<string>();
        if (dir is null || string.IsNullOrEmpty(name) || !Directory.Exists(dir)) return removed;
        var pattern = new Regex($"^\\.{Regex.Escape(name)}\\.([0-9]{{1,10}})\\.[0-9a-f]{{32}}\\.tmp$", RegexOptions.CultureInvariant);
        IEnumerable<string> candidates;
        try { candidates = Directory.EnumerateFiles(dir, $".{name}.*.tmp").ToList(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return removed; }
        foreach (var tmp in candidates)
        {
            var m = pattern.Match(Path.GetFileName(tmp));
            if (!m.Success || !int.TryParse(m.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out int pid)) continue;
            if (pid == Environment.ProcessId || IsRunning(pid)) continue;
            if (SafeFile.KindOf(tmp, followLinks: false) != FileKind.Regular) continue;
            long size;
            try
            {
                size = new FileInfo(tmp).Length;
                File.Delete(tmp);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { continue; }
            removed.Add(tmp);
            StaleTemporaryRemoved?.Invoke(
                $"removed {tmp} ({size} bytes), a temporary file of {name} left by process {pid}, which is no longer running.");
        }
        return removed;
    }

    private static bool IsRunning(int pid)
    {
        try
        {
            using var p = Process.GetProcessById(pid);
            return true;
        }
        catch (ArgumentException) { return false; }
    }
}
