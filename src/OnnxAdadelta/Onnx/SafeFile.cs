using System.Runtime.InteropServices;

namespace OnnxAdadelta.Onnx;

/// <summary>What a path names, as <c>stat</c> or <c>lstat</c> sees it.</summary>
public enum FileKind
{
    /// <summary>Nothing is there (or a symbolic link that leads nowhere, when links are followed).</summary>
    Missing,

    /// <summary>A regular file: the only kind this library reads or replaces.</summary>
    Regular,

    /// <summary>A folder.</summary>
    Directory,

    /// <summary>A named pipe (FIFO): reading one blocks until some other process writes.</summary>
    Fifo,

    /// <summary>A character device such as <c>/dev/zero</c> or <c>/dev/null</c>.</summary>
    CharacterDevice,

    /// <summary>A block device such as a disk.</summary>
    BlockDevice,

    /// <summary>A Unix domain socket.</summary>
    Socket,

    /// <summary>A symbolic link (only reported when links are not followed).</summary>
    SymbolicLink,
}

/// <summary>
/// The file-system checks behind every read and write of user files: only regular files are read, each with its size
/// known before the first byte; only regular files (or new paths) are replaced; real paths resolve every symbolic link.
/// </summary>
public static class SafeFile
{
    /// <summary>Links followed while resolving one path before it counts as a loop (Linux's own limit).</summary>
    public const int MaxLinkHops = 40;

    /// <summary>What <paramref name="path"/> names; with <paramref name="followLinks"/> a symbolic link reports what it leads to.</summary>
    public static FileKind KindOf(string path, bool followLinks = true)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (OperatingSystem.IsWindows()) return WindowsKind(path, followLinks);
        var status = default(NativeStatus);
        int rc = followLinks ? NativeStat(path, ref status) : NativeLStat(path, ref status);
        if (rc != 0) return FileKind.Missing;
        return KindOfMode(status.Mode);
    }

    private static FileKind WindowsKind(string path, bool followLinks)
    {
        var info = new FileInfo(path);
        if (!info.Exists && !Directory.Exists(path)) return FileKind.Missing;
        if (!followLinks && info.LinkTarget is not null) return FileKind.SymbolicLink;
        return (info.Attributes & FileAttributes.Directory) != 0 ? FileKind.Directory : FileKind.Regular;
    }

    /// <summary>A few words for a kind of file, as messages use them ("a named pipe (FIFO)").</summary>
    public static string Describe(FileKind kind) => kind switch
    {
        FileKind.Missing => "missing",
        FileKind.Regular => "a regular file",
        FileKind.Directory => "a folder",
        FileKind.Fifo => "a named pipe (FIFO)",
        FileKind.CharacterDevice => "a character device",
        FileKind.BlockDevice => "a block device",
        FileKind.Socket => "a socket",
        FileKind.SymbolicLink => "a symbolic link",
        _ => kind.ToString(),
    };

    /// <summary>
    /// Checks that <paramref name="path"/> (following links) is a regular file and returns its size in bytes.
    /// <paramref name="what"/> says what the file is for ("model", "data file"); <paramref name="maxBytes"/> bounds the size.
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">The path is missing, not a regular file, or larger than <paramref name="maxBytes"/>.</exception>
    public static long CheckReadable(string path, string what, long maxBytes = long.MaxValue)
    {
        if (string.IsNullOrEmpty(path))
            throw new OnnxAdadeltaException($"The {what} path is empty; expected the path of a file.");
        var kind = KindOf(path);
        if (kind == FileKind.Missing)
            throw new OnnxAdadeltaException($"{path}: no such file; expected {Article(what)} {what}.");
        if (kind != FileKind.Regular)
            throw new OnnxAdadeltaException($"{path}: is {Describe(kind)}; expected {Article(what)} {what} that is a regular file.");
        long size;
        try { size = new FileInfo(path).Length; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new OnnxAdadeltaException($"{path}: cannot read ({OneLine(e.Message)}).", e);
        }
        if (size > maxBytes)
            throw new OnnxAdadeltaException($"{path}: the {what} is {size} bytes; expected at most {maxBytes}.");
        return size;
    }

    /// <summary>
    /// Opens a regular file for reading; errors name the file. The path is opened first, without blocking (a named
    /// pipe opened for reading would otherwise wait for a writer), and the opened handle is then checked: what is
    /// read is what was checked, so no swap of the path between a check and the open can make the read hang.
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">The path is missing, not a regular file, unreadable, or larger than <paramref name="maxBytes"/>.</exception>
    public static FileStream OpenRead(string path, string what, long maxBytes = long.MaxValue)
    {
        if (string.IsNullOrEmpty(path))
            throw new OnnxAdadeltaException($"The {what} path is empty; expected the path of a file.");
        FileStream? stream;
        FileKind kind;
        try { stream = OpenIfRegular(path, out kind); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new OnnxAdadeltaException($"{path}: cannot read ({OneLine(e.Message)}).", e);
        }
        if (kind == FileKind.Missing)
            throw new OnnxAdadeltaException($"{path}: no such file; expected {Article(what)} {what}.");
        if (stream is null)
            throw new OnnxAdadeltaException($"{path}: is {Describe(kind)}; expected {Article(what)} {what} that is a regular file.");
        long size = stream.Length;
        if (size > maxBytes)
        {
            stream.Dispose();
            throw new OnnxAdadeltaException($"{path}: the {what} is {size} bytes; expected at most {maxBytes}.");
        }
        return stream;
    }

    /// <summary>
    /// Opens <paramref name="path"/> (following links) for reading if it is a regular file; otherwise returns null
    /// and says in <paramref name="kind"/> what it is (<see cref="FileKind.Missing"/> when nothing is there). On Unix
    /// the open does not block (O_NONBLOCK: a named pipe opens at once instead of waiting for a writer) and the kind
    /// is that of the opened handle (fstat), not of a path that could change in between.
    /// </summary>
    /// <exception cref="IOException">The file exists but cannot be opened (the message says why).</exception>
    /// <exception cref="UnauthorizedAccessException">Permission denied.</exception>
    public static FileStream? OpenIfRegular(string path, out FileKind kind)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (OperatingSystem.IsWindows())
        {
            kind = KindOf(path);
            if (kind != FileKind.Regular) return null;
            return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        }
        int flags = OperatingSystem.IsLinux() ? LinuxReadNonBlocking : BsdReadNonBlocking;
        int fd = NativeOpen(path, flags);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno is ENOENT or ENOTDIR)
            {
                kind = FileKind.Missing;
                return null;
            }
            // A Unix socket cannot be opened at all (ENXIO): say what it is rather than the system's reason.
            if (errno == ENXIO && KindOf(path) is not (FileKind.Regular or FileKind.Missing) and var other)
            {
                kind = other;
                return null;
            }
            var reason = Marshal.GetPInvokeErrorMessage(errno);
            if (errno is EACCES or EPERM) throw new UnauthorizedAccessException(reason);
            throw new IOException(reason);
        }
        var handle = new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true);
        try
        {
            var status = default(NativeStatus);
            if (NativeFStat(fd, ref status) != 0) throw new IOException(Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError()));
            kind = KindOfMode(status.Mode);
            if (kind != FileKind.Regular)
            {
                handle.Dispose();
                return null;
            }
            // O_NONBLOCK has no effect on regular files: reads block on the disk as usual.
            return new FileStream(handle, FileAccess.Read, 1 << 16);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private static FileKind KindOfMode(int mode) => (mode & 0xF000) switch
    {
        0x8000 => FileKind.Regular,
        0x4000 => FileKind.Directory,
        0x1000 => FileKind.Fifo,
        0x2000 => FileKind.CharacterDevice,
        0x6000 => FileKind.BlockDevice,
        0xC000 => FileKind.Socket,
        0xA000 => FileKind.SymbolicLink,
        _ => FileKind.CharacterDevice,
    };

    // open(2) flags: O_RDONLY (0) | O_NONBLOCK | O_CLOEXEC, as Linux (x86-64, arm64) and the BSDs/macOS number them.
    private const int LinuxReadNonBlocking = 0x800 | 0x80000;
    private const int BsdReadNonBlocking = 0x4 | 0x1000000;
    private const int EPERM = 1, ENOENT = 2, ENXIO = 6, EACCES = 13, ENOTDIR = 20;

    /// <summary>
    /// Reads a whole regular file of at most <paramref name="maxBytes"/> bytes. The size is taken before reading and
    /// no more than that is read, so a file that grows meanwhile cannot make the read run on.
    /// </summary>
    public static byte[] ReadAllBytes(string path, string what, long maxBytes)
    {
        using var stream = OpenRead(path, what, maxBytes);
        long size = stream.Length;
        if (size > maxBytes)
            throw new OnnxAdadeltaException($"{path}: the {what} is {size} bytes; expected at most {maxBytes}.");
        var bytes = new byte[size];
        try
        {
            int got = stream.ReadAtLeast(bytes, bytes.Length, throwOnEndOfStream: false);
            if (got < bytes.Length)
                throw new OnnxAdadeltaException($"{path}: the {what} shrank while it was read ({got} of {size} bytes).");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new OnnxAdadeltaException($"{path}: cannot read ({OneLine(e.Message)}).", e);
        }
        return bytes;
    }

    /// <summary>
    /// Checks a path about to be written. A new path, or a regular file to replace, is fine; a folder, a device, a named
    /// pipe, a socket or a symbolic link is refused. (Replacing a link would cut it, and writing through it would write
    /// somewhere the command line does not name, so a link is refused: name its target instead.)
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">The path is not a regular file or a new path.</exception>
    public static void CheckWritable(string path, string what = "output")
    {
        if (string.IsNullOrEmpty(path))
            throw new OnnxAdadeltaException($"The {what} path is empty; expected the path of a file to write.");
        string full;
        try { full = Path.GetFullPath(path); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new OnnxAdadeltaException($"{path}: not a valid path for the {what} ({OneLine(e.Message)}).", e);
        }
        var kind = KindOf(full, followLinks: false);
        switch (kind)
        {
            case FileKind.Missing or FileKind.Regular:
                return;
            case FileKind.Directory:
                throw new OnnxAdadeltaException($"{full}: is a folder; expected a file path to write the {what} to.");
            case FileKind.SymbolicLink:
                throw new OnnxAdadeltaException(
                    $"{full}: is a symbolic link (to {new FileInfo(full).LinkTarget}); the {what} is never written through a link, " +
                    "expected a regular file or a new path (name the link's target instead).");
            default:
                throw new OnnxAdadeltaException(
                    $"{full}: is {Describe(kind)}; expected a regular file or a new path to write the {what} to.");
        }
    }

    /// <summary>
    /// The absolute path of <paramref name="path"/> with every symbolic link resolved, in every component (like
    /// <c>realpath</c>). A component that does not exist ends the resolution; the rest is appended as it is.
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">More than <see cref="MaxLinkHops"/> links (a loop).</exception>
    public static string RealPath(string path)
    {
        var full = Path.GetFullPath(path);
        var root = Path.GetPathRoot(full)!;
        var pending = new Stack<string>(Components(full[root.Length..]).Reverse());
        var current = root;
        int hops = 0;
        while (pending.Count > 0)
        {
            var part = pending.Pop();
            if (part is "" or ".") continue;
            if (part == "..")
            {
                current = Path.GetDirectoryName(current) ?? root;
                continue;
            }
            var next = Path.Join(current, part);
            string? target = null;
            try { target = new FileInfo(next).LinkTarget; }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
            if (target is null)
            {
                current = next;
                continue;
            }
            if (++hops > MaxLinkHops)
                throw new OnnxAdadeltaException($"{path}: more than {MaxLinkHops} symbolic links while resolving it (a loop?).");
            foreach (var p in Components(target).Reverse()) pending.Push(p);
            if (Path.IsPathRooted(target)) current = Path.GetPathRoot(target)!;
        }
        return current;
    }

    /// <summary>
    /// Whether <paramref name="path"/> names the very file open as <paramref name="handle"/> (same device and inode);
    /// false when the path is gone or names another file.
    /// </summary>
    internal static unsafe bool IsSameFile(string path, Microsoft.Win32.SafeHandles.SafeFileHandle handle)
    {
        if (OperatingSystem.IsWindows()) return File.Exists(path);
        var byPath = default(NativeStatus);
        var byHandle = default(NativeStatus);
        if (NativeStat(path, ref byPath) != 0) return false;
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            if (NativeFStat(handle.DangerousGetHandle(), ref byHandle) != 0) return false;
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
        // Dev, then Ino (or RDev and Ino in newer runtimes): the words from byte 0x58 to 0x70 identify the file.
        var a = new ReadOnlySpan<byte>(&byPath, sizeof(NativeStatus)).Slice(0x58, 0x18);
        var b = new ReadOnlySpan<byte>(&byHandle, sizeof(NativeStatus)).Slice(0x58, 0x18);
        return a.SequenceEqual(b);
    }

    /// <summary>Whether the real path <paramref name="file"/> lies inside the real folder <paramref name="folder"/>.</summary>
    internal static bool IsInside(string file, string folder)
    {
        var prefix = Path.EndsInDirectorySeparator(folder) ? folder : folder + Path.DirectorySeparatorChar;
        return file.StartsWith(prefix, OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal);
    }

    private static string[] Components(string path) =>
        path.Split([Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar], StringSplitOptions.RemoveEmptyEntries);

    private static string Article(string what) => what.Length > 0 && "aeiou".Contains(char.ToLowerInvariant(what[0])) ? "an" : "a";

    private static string OneLine(string text) => text.ReplaceLineEndings(" ");

    // .NET's own native shim (libSystem.Native, shipped with every runtime) reports stat results in one layout on every
    // Unix, with the file type bits normalized (S_IFREG 0x8000, S_IFDIR 0x4000, S_IFIFO 0x1000, ...). Only the first two
    // fields are read; the struct is padded well past the shim's size.
    [StructLayout(LayoutKind.Sequential, Size = 256)]
    private struct NativeStatus
    {
        public int Flags;
        public int Mode;
    }

    [DllImport("libSystem.Native", EntryPoint = "SystemNative_Stat", SetLastError = true)]
    private static extern int NativeStat([MarshalAs(UnmanagedType.LPUTF8Str)] string path, ref NativeStatus status);

    [DllImport("libSystem.Native", EntryPoint = "SystemNative_FStat", SetLastError = true)]
    private static extern int NativeFStat(nint fd, ref NativeStatus status);

    // open(2) itself: .NET's own open cannot pass O_NONBLOCK. Declared with its two fixed arguments only (no mode: no
    // file is created), which every Unix calling convention passes the same way as for the variadic declaration.
    [DllImport("libc", EntryPoint = "open", SetLastError = true)]
    private static extern int NativeOpen([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

    [DllImport("libSystem.Native", EntryPoint = "SystemNative_LStat", SetLastError = true)]
    private static extern int NativeLStat([MarshalAs(UnmanagedType.LPUTF8Str)] string path, ref NativeStatus status);
}
