using System.Globalization;
using Google.Protobuf;
using OnnxAdadelta.Onnx.Proto;
using DataLocation = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataLocation;

namespace OnnxAdadelta.Onnx;

/// <summary>
/// ONNX external data: tensors whose bytes live in a side file, named by <c>external_data</c> entries
/// <c>location</c> (relative to the model's folder), <c>offset</c> (default 0) and <c>length</c> (default: the rest of the file).
/// </summary>
internal static class ExternalData
{
    /// <summary>A tensor moved to the side file: its little-endian bytes and where they go.</summary>
    internal readonly record struct Moved(ReadOnlyMemory<byte> Data, long Offset);

    private static readonly byte[] Zeros = new byte[SaveOptions.PageAlignment];

    /// <summary>
    /// Reads every EXTERNAL tensor of <paramref name="model"/> into <c>raw_data</c> and marks it DEFAULT.
    /// <paramref name="source"/> names the model in messages.
    /// </summary>
    internal static void Resolve(ModelProto model, string? baseDirectory, string source, bool allowLinks = false)
    {
        var external = ModelTensors.All(model).Where(f => f.Tensor.DataLocation == DataLocation.External).ToList();
        if (external.Count == 0) return;
        if (baseDirectory is null)
            throw new OnnxAdadeltaException(
                $"{source}: {external[0].Where} keeps its data in an external file; expected the model's folder to read it from.");
        var root = Path.TrimEndingDirectorySeparator(Path.GetFullPath(baseDirectory));
        var folder = new Folder(root, SafeFile.RealPath(root), allowLinks);
        var open = new Dictionary<string, FileStream>(StringComparer.Ordinal);
        try
        {
            foreach (var found in external) Read(found, folder, source, open);
        }
        finally
        {
            foreach (var stream in open.Values) stream.Dispose();
        }
    }

    /// <summary>The model's folder as written, its real path (links resolved), and whether links may lead out of it.</summary>
    private sealed record Folder(string Root, string Real, bool AllowLinks);

    private static void Read(FoundTensor found, Folder folder, string source, Dictionary<string, FileStream> open)
    {
        var (t, where) = found;
        string? location = null;
        long offset = 0;
        long? length = null;
        foreach (var entry in t.ExternalData)
        {
            switch (entry.Key)
            {
                case "location": location = entry.Value; break;
                case "offset": offset = ParseSize(entry.Value, "offset", source, where); break;
                case "length": length = ParseSize(entry.Value, "length", source, where); break;
            }
        }
        if (string.IsNullOrEmpty(location))
            throw new OnnxAdadeltaException(
                $"{source}: {where} is marked EXTERNAL but has no 'location' entry; expected a file path relative to the model's folder.");
        var file = Locate(folder, location, source, where);
        if (!open.TryGetValue(file, out var stream))
        {
            // Opened first, then checked (the opened handle, not the path): a named pipe swapped in cannot block the read.
            FileKind kind;
            try { stream = SafeFile.OpenIfRegular(file, out kind); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new OnnxAdadeltaException($"{source}: cannot read external data file {file} ({OneLine(e.Message)}).", e);
            }
            if (kind == FileKind.Missing)
                throw new OnnxAdadeltaException($"{source}: {where} keeps its data in '{location}', but {file} does not exist.");
            if (stream is null)
                throw new OnnxAdadeltaException(
                    $"{source}: {where} keeps its data in '{location}', which is {SafeFile.Describe(kind)}; expected a regular file.");
            open[file] = stream;
        }

        long size = stream.Length;
        if (offset > size || (length is { } l && l > size - offset))
            throw new OnnxAdadeltaException(
                $"{source}: {where} wants {(length is null ? "data" : $"{length} bytes")} at offset {offset} of '{location}', " +
                $"past the end of that file ({size} bytes).");
        long n = length ?? size - offset;

        var what = $"{source}: {where} ({DataTypes.Name(t.DataType)} {DataTypes.Shape(t.Dims)})";
        if (t.DataType == (int)TensorProto.Types.DataType.String)
            throw new OnnxAdadeltaException($"{what} is marked EXTERNAL; expected STRING tensors to keep their data in the model.");
        if (DataTypes.HasRawForm(t.DataType))
        {
            long expected = DataTypes.RawByteLength(t.DataType, Tensors.CountOf(t.Dims, what));
            if (n != expected)
                throw new OnnxAdadeltaException($"{what} has {n} bytes of external data in '{location}'; expected {expected} for its shape.");
        }
        if (n > Array.MaxLength)
            throw new OnnxAdadeltaException($"{what} has {n} bytes of external data, more than one tensor can hold in memory.");

        var buffer = new byte[n];
        try
        {
            stream.Position = offset;
            stream.ReadExactly(buffer);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new OnnxAdadeltaException($"{source}: cannot read external data file {file} ({OneLine(e.Message)}).", e);
        }
        t.RawData = UnsafeByteOperations.UnsafeWrap(buffer);
        t.ExternalData.Clear();
        t.DataLocation = DataLocation.Default;
    }

    private static long ParseSize(string text, string key, string source, string where) =>
        long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var v)
            ? v
            : throw new OnnxAdadeltaException($"{source}: {where} has external data {key} '{text}'; expected a whole number of bytes, 0 or more.");

    /// <summary>
    /// The real path of a side file, which must be a relative path that stays inside the model's folder, both as written
    /// and once symbolic links are resolved (unless the folder allows links out).
    /// </summary>
    private static string Locate(Folder folder, string location, string source, string where)
    {
        var root = folder.Root;
        if (Path.IsPathRooted(location))
            throw new OnnxAdadeltaException(
                $"{source}: {where} has the absolute external data location '{location}'; expected a path relative to the model's folder.");
        string full;
        try { full = Path.GetFullPath(Path.Combine(root, location)); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new OnnxAdadeltaException($"{source}: {where} has the external data location '{location}', which is not a valid path.", e);
        }
        var prefix = Path.EndsInDirectorySeparator(root) ? root : root + Path.DirectorySeparatorChar;
        if (!full.StartsWith(prefix, StringComparison.Ordinal))
            throw new OnnxAdadeltaException(
                $"{source}: {where} has the external data location '{location}', which leads out of the model's folder; expected a file inside it.");
        var real = SafeFile.RealPath(full);
        if (!folder.AllowLinks && !SafeFile.IsInside(real, folder.Real))
            throw new OnnxAdadeltaException(
                $"{source}: {where} has the external data location '{location}', which a symbolic link leads to {real}, out of the model's folder " +
                $"{folder.Real}; expected a file inside it (if the link is meant, as in a Hugging Face cache, pass --allow-external-links, " +
                "or LoadOptions.AllowExternalDataLinks in the library).");
        return real;
    }

    /// <summary>
    /// Moves every tensor of <paramref name="model"/> with at least <paramref name="threshold"/> bytes of raw data to the side file
    /// <paramref name="location"/>: the tensor becomes EXTERNAL with location, offset and length entries, and the returned list
    /// holds the bytes to write there. STRING tensors, and 4-bit tensors kept in typed fields, stay inline.
    /// </summary>
    internal static List<Moved> Externalize(ModelProto model, long threshold, string location)
    {
        var moved = new List<Moved>();
        long position = 0;
        foreach (var (t, where) in ModelTensors.All(model))
        {
            if (!DataTypes.HasRawForm(t.DataType)) continue;
            ReadOnlyMemory<byte> data;
            if (t.RawData.Length > 0)
            {
                if (t.RawData.Length < threshold) continue;
                data = t.RawData.Memory;
            }
            else
            {
                if (DataTypes.BitsPerElement(t.DataType) == 4) continue;
                long count = Tensors.CountOf(t.Dims, $"{Tensors.Label(t.Name)} ({where})");
                long bytes = DataTypes.RawByteLength(t.DataType, count);
                if (bytes == 0 || bytes < threshold) continue;
                data = t.ToRawBytes();
            }
            long align = data.Length >= SaveOptions.PageAlignmentThreshold ? SaveOptions.PageAlignment : SaveOptions.Alignment;
            long offset = (position + align - 1) / align * align;
            position = offset + data.Length;
            moved.Add(new Moved(data, offset));

            t.RawData = ByteString.Empty;
            t.FloatData.Clear();
            t.Int32Data.Clear();
            t.Int64Data.Clear();
            t.DoubleData.Clear();
            t.Uint64Data.Clear();
            t.ExternalData.Clear();
            t.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = location });
            t.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString(CultureInfo.InvariantCulture) });
            t.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = data.Length.ToString(CultureInfo.InvariantCulture) });
            t.DataLocation = DataLocation.External;
        }
        return moved;
    }

    /// <summary>Writes the side file for <see cref="Externalize"/>'s list: each tensor at its offset, zeros between.</summary>
    internal static void WriteSideFile(Stream stream, IReadOnlyList<Moved> moved)
    {
        long position = 0;
        foreach (var m in moved)
        {
            while (position < m.Offset)
            {
                int pad = (int)Math.Min(Zeros.Length, m.Offset - position);
                stream.Write(Zeros, 0, pad);
                position += pad;
            }
            stream.Write(m.Data.Span);
            position += m.Data.Length;
        }
    }

    /// <summary>The first EXTERNAL tensor of a model, if any.</summary>
    internal static FoundTensor? FirstExternal(ModelProto model)
    {
        foreach (var f in ModelTensors.All(model))
            if (f.Tensor.DataLocation == DataLocation.External) return f;
        return null;
    }

    internal static string OneLine(string text) => text.ReplaceLineEndings(" ");
}
