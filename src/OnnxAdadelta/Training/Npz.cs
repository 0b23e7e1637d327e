using System.IO.Compression;
using OnnxAdadelta.Onnx;

namespace OnnxAdadelta.Training;

/// <summary>
/// Reads and writes NumPy .npz archives: a zip file whose entries <c>NAME.npy</c> each hold one array in .npy format
/// (see <see cref="Npy"/>), stored or deflate-compressed, as <c>np.savez</c> and <c>np.savez_compressed</c> write them.
/// </summary>
public static class Npz
{
    private static readonly DateTimeOffset FixedTimestamp = new(1980, 1, 1, 0, 0, 0, TimeSpan.Zero);

    /// <summary>
    /// Reads every array of the .npz file at <paramref name="path"/>, keyed by entry name without <c>.npy</c>, in the
    /// archive's entry order. Entries that are not <c>.npy</c> files are skipped. A file that is missing, not a zip, or
    /// holds a damaged or unsupported array gets an <see cref="OnnxAdadeltaException"/> naming the file and the array.
    /// </summary>
    public static IReadOnlyDictionary<string, DataArray> Read(string path) => Read(path, include: null, out _);

    /// <summary>Reads the arrays of an .npz archive held in <paramref name="stream"/>; <paramref name="source"/> names it in errors.</summary>
    public static IReadOnlyDictionary<string, DataArray> Read(Stream stream, string? source = null) =>
        ReadArchive(stream, source ?? "stream", include: null, out _);

    /// <summary>The array names in the .npz file at <paramref name="path"/>, in entry order, without reading the arrays.</summary>
    public static IReadOnlyList<string> ArrayNames(string path)
    {
        Read(path, include: static _ => false, out var names);
        return names;
    }

    /// <summary>
    /// Reads the arrays whose names pass <paramref name="include"/> (all when null); <paramref name="names"/> receives
    /// the names of every array in the file, in entry order.
    /// </summary>
    internal static OrderedDictionary<string, DataArray> Read(string path, Func<string, bool>? include, out List<string> names)
    {
        using var s = SafeFile.OpenRead(path, ".npz data file");
        return ReadArchive(s, path, include, out names);
    }

    private static OrderedDictionary<string, DataArray> ReadArchive(
        Stream stream, string source, Func<string, bool>? include, out List<string> names)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ZipArchive zip;
        try { zip = new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: true); }
        catch (InvalidDataException e)
        {
            throw new OnnxAdadeltaException($"{source}: not an .npz file (not a zip archive, or truncated: {e.Message}).", e);
        }

        using (zip)
        {
            var arrays = new OrderedDictionary<string, DataArray>(StringComparer.Ordinal);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            names = [];
            foreach (var entry in zip.Entries)
            {
                var full = entry.FullName;
                if (!full.EndsWith(".npy", StringComparison.Ordinal)) continue;
                var name = full[..^4];
                if (!seen.Add(name)) throw new OnnxAdadeltaException($"{source}: holds two entries named '{full}'.");
                names.Add(name);
                if (include is not null && !include(name)) continue;
                var where = $"array '{name}' in {source}";
                try
                {
                    using var es = entry.Open();
                    var checkedStream = new Crc32Stream(es);
                    var array = Npy.Read(checkedStream, where, entry.Length);
                    checkedStream.Drain(entry.Length);
                    if (checkedStream.Crc != entry.Crc32)
                        throw new OnnxAdadeltaException(
                            $"{where}: the zip entry '{full}' fails its CRC-32 check (stored {entry.Crc32:x8}, computed {checkedStream.Crc:x8}); " +
                            "the file is damaged, expected an intact .npz.");
                    arrays.Add(name, array);
                }
                catch (InvalidDataException e)
                {
                    throw new OnnxAdadeltaException($"{where}: the zip entry '{full}' is damaged ({e.Message}).", e);
                }
                catch (NotSupportedException e)
                {
                    throw new OnnxAdadeltaException($"{where}: the zip entry '{full}' can't be read ({e.Message}); use stored or deflate entries.", e);
                }
            }
            return arrays;
        }
    }

    /// <summary>
    /// Writes <paramref name="arrays"/> to an .npz file at <paramref name="path"/>, atomically: one entry
    /// <c>NAME.npy</c> per array in enumeration order, deflate-compressed when <paramref name="compress"/> is true
    /// (<c>np.savez_compressed</c>) and stored otherwise (<c>np.savez</c>). Entry timestamps are fixed, so equal
    /// arrays give identical files.
    /// </summary>
    public static void Write(string path, IReadOnlyDictionary<string, DataArray> arrays, bool compress = true)
    {
        Validate(arrays);
        AtomicFile.Write(path, s => WriteArchive(s, arrays, compress));
    }

    /// <summary>Writes <paramref name="arrays"/> as an .npz archive to <paramref name="stream"/>, which stays open.</summary>
    public static void Write(Stream stream, IReadOnlyDictionary<string, DataArray> arrays, bool compress = true)
    {
        ArgumentNullException.ThrowIfNull(stream);
        Validate(arrays);
        WriteArchive(stream, arrays, compress);
    }

    private static void Validate(IReadOnlyDictionary<string, DataArray> arrays)
    {
        ArgumentNullException.ThrowIfNull(arrays);
        foreach (var (name, array) in arrays)
        {
            if (string.IsNullOrEmpty(name)) throw new ArgumentException("An .npz array name must not be empty.", nameof(arrays));
            if (array is null) throw new ArgumentException($"Array '{name}' is null.", nameof(arrays));
        }
    }

    private static void WriteArchive(Stream stream, IReadOnlyDictionary<string, DataArray> arrays, bool compress)
    {
        using var zip = new ZipArchive(stream, ZipArchiveMode.Create, leaveOpen: true);
        foreach (var (name, array) in arrays)
        {
            var entry = zip.CreateEntry(name + ".npy", compress ? CompressionLevel.Optimal : CompressionLevel.NoCompression);
            entry.LastWriteTime = FixedTimestamp;
            using var es = entry.Open();
            Npy.Write(es, array);
        }
    }

    /// <summary>Reads through a zip entry's stream, keeping the CRC-32 of every byte read.</summary>
    private sealed class Crc32Stream(Stream inner) : Stream
    {
        private readonly System.IO.Hashing.Crc32 _crc = new();
        private long _read;

        public uint Crc => _crc.GetCurrentHashAsUInt32();

        /// <summary>Reads what is left of the entry (at most its declared size, plus one byte to see its end).</summary>
        public void Drain(long declaredLength)
        {
            var buffer = new byte[1 << 16];
            while (_read <= declaredLength && Read(buffer, 0, buffer.Length) > 0) { }
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            int n = inner.Read(buffer);
            _crc.Append(buffer[..n]);
            _read += n;
            return n;
        }

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => _read; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
