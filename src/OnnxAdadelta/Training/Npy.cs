using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using OnnxAdadelta.Onnx;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Training;

/// <summary>
/// Reads and writes single arrays in NumPy's .npy format: the magic <c>\x93NUMPY</c>, a version (1.0, 2.0 or 3.0),
/// a little-endian header length (2 bytes in 1.0, 4 bytes after), a header that is a Python dict literal with the keys
/// <c>descr</c>, <c>fortran_order</c> and <c>shape</c>, then the raw elements.
/// </summary>
/// <remarks>
/// Reading accepts the numeric and bool descriptors (<c>&lt;f4 &lt;f8 &lt;f2 &lt;i8 &lt;i4 &lt;i2 |i1 &lt;u8 &lt;u4 &lt;u2 |u1 |b1</c>,
/// with <c>=</c>, <c>|</c> or no byte-order mark for native order), converts big-endian (<c>&gt;</c>) arrays to little-endian,
/// and rejects Fortran-ordered arrays and object, string, structured, complex and date types with an
/// <see cref="OnnxAdadeltaException"/> that names the source. Writing produces version 1.0 (2.0 only when the header
/// needs more than 65535 bytes) with the header padded by spaces and ended by a newline so the data starts at a
/// multiple of 64 bytes, as NumPy does.
/// </remarks>
public static class Npy
{
    private static ReadOnlySpan<byte> Magic => [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    /// <summary>NumPy aligns the start of the data to this many bytes.</summary>
    public const int Alignment = 64;

    /// <summary>Headers longer than this are refused as damaged rather than read into memory.</summary>
    internal const int MaxHeaderBytes = 1 << 20;

    /// <summary>Reads an .npy file.</summary>
    public static DataArray Read(string path)
    {
        using var s = SafeFile.OpenRead(path, ".npy array file");
        return Read(s, path);
    }

    /// <summary>
    /// Reads one array from <paramref name="stream"/>, which is left just past its data.
    /// <paramref name="source"/> names the stream in error messages (a file, or a file and an array).
    /// </summary>
    public static DataArray Read(Stream stream, string? source = null) =>
        Read(stream, source, stream is { CanSeek: true } ? stream.Length - stream.Position : null);

    /// <summary>
    /// Reads one array from <paramref name="stream"/>, which holds at most <paramref name="available"/> bytes from here on
    /// (null: unknown). A header that promises more data than that is refused before any buffer is allocated.
    /// </summary>
    internal static DataArray Read(Stream stream, string? source, long? available)
    {
        ArgumentNullException.ThrowIfNull(stream);
        source ??= "stream";

        Span<byte> prefix = stackalloc byte[12];
        int got = ReadFully(stream, prefix[..8]);
        if (got < 8 || !prefix[..6].SequenceEqual(Magic))
            throw new OnnxAdadeltaException($"{source}: not a .npy array (it doesn't start with the \\x93NUMPY magic).");
        int major = prefix[6], minor = prefix[7];
        int lengthBytes = major switch
        {
            1 => 2,
            2 or 3 => 4,
            _ => throw new OnnxAdadeltaException($"{source}: .npy format version {major}.{minor} is not supported (expected 1.0, 2.0 or 3.0)."),
        };
        if (minor != 0)
            throw new OnnxAdadeltaException($"{source}: .npy format version {major}.{minor} is not supported (expected 1.0, 2.0 or 3.0).");
        if (ReadFully(stream, prefix.Slice(8, lengthBytes)) < lengthBytes)
            throw new OnnxAdadeltaException($"{source}: truncated .npy header.");
        long headerLength = lengthBytes == 2
            ? BinaryPrimitives.ReadUInt16LittleEndian(prefix[8..])
            : BinaryPrimitives.ReadUInt32LittleEndian(prefix[8..]);
        if (headerLength > MaxHeaderBytes)
            throw new OnnxAdadeltaException($"{source}: .npy header claims {headerLength} bytes; the file is damaged or not a .npy array.");
        var headerBytes = new byte[headerLength];
        if (ReadFully(stream, headerBytes) < headerBytes.Length)
            throw new OnnxAdadeltaException($"{source}: truncated .npy header.");
        var header = major == 3 ? DecodeUtf8(headerBytes, source) : Encoding.Latin1.GetString(headerBytes);

        var (type, bigEndian, shape) = ParseHeader(header, source);
        var size = NpyDTypes.Size(type);
        long byteCount;
        try
        {
            long count = 1;
            foreach (var d in shape) count = checked(count * d);
            byteCount = checked(count * size);
        }
        catch (OverflowException) { throw new OnnxAdadeltaException($"{source}: shape {DataArray.FormatShape(shape)} is too large."); }
        if (byteCount > Array.MaxLength)
            throw new OnnxAdadeltaException(
                $"{source}: a {NpyDTypes.Name(type)} array of shape {DataArray.FormatShape(shape)} is {byteCount} bytes; one array is limited to {Array.MaxLength} bytes.");
        long headerTotal = 8 + lengthBytes + headerLength;
        if (available is { } total && byteCount > total - headerTotal)
            throw new OnnxAdadeltaException(
                $"{source}: truncated: the header promises a {NpyDTypes.Name(type)} array of shape {DataArray.FormatShape(shape)} ({byteCount} bytes of data), " +
                $"found {Math.Max(0, total - headerTotal)}.");
        var data = new byte[byteCount];
        int read = ReadFully(stream, data);
        if (read < data.Length)
            throw new OnnxAdadeltaException(
                $"{source}: truncated: the header promises a {NpyDTypes.Name(type)} array of shape {DataArray.FormatShape(shape)} ({data.Length} bytes of data), found {read}.");
        if (bigEndian) DataArray.SwapBytes(data, size);
        if (type == DataType.Bool)
            for (int i = 0; i < data.Length; i++)
                if (data[i] > 1) data[i] = 1;
        return new DataArray(type, shape, data);
    }

    private static string DecodeUtf8(byte[] bytes, string source)
    {
        try { return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes); }
        catch (DecoderFallbackException) { throw new OnnxAdadeltaException($"{source}: the version 3.0 .npy header is not valid UTF-8."); }
    }

    private static int ReadFully(Stream stream, Span<byte> buffer) =>
        buffer.Length == 0 ? 0 : stream.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);

    /// <summary>Parses the header dict into element type, byte order and shape, or throws naming <paramref name="source"/>.</summary>
    internal static (DataType Type, bool BigEndian, long[] Shape) ParseHeader(string header, string source)
    {
        object? parsed;
        try { parsed = new PyLiteralParser(header).ParseWhole(); }
        catch (FormatException e) { throw new OnnxAdadeltaException($"{source}: bad .npy header ({e.Message}): {Shorten(header)}"); }
        if (parsed is not Dictionary<string, object?> dict)
            throw new OnnxAdadeltaException($"{source}: bad .npy header (not a dict): {Shorten(header)}");

        if (!dict.TryGetValue("descr", out var descrValue))
            throw new OnnxAdadeltaException($"{source}: bad .npy header (no 'descr' key): {Shorten(header)}");
        if (descrValue is not string descr)
            throw new OnnxAdadeltaException(
                $"{source}: structured dtypes (a list of fields) are not supported; store each field as its own array.");
        if (!NpyDTypes.TryParseDescr(descr, out var type, out var bigEndian))
            throw new OnnxAdadeltaException(
                $"{source}: dtype '{descr}' is not supported (object, string, complex, date and structured arrays can't feed a model); supported: {NpyDTypes.SupportedDescrs}.");

        if (!dict.TryGetValue("fortran_order", out var fortranValue) || fortranValue is not bool fortran)
            throw new OnnxAdadeltaException($"{source}: bad .npy header ('fortran_order' must be True or False): {Shorten(header)}");

        if (!dict.TryGetValue("shape", out var shapeValue) || shapeValue is not List<object?> shapeItems)
            throw new OnnxAdadeltaException($"{source}: bad .npy header ('shape' must be a tuple of integers): {Shorten(header)}");
        var shape = new long[shapeItems.Count];
        for (int i = 0; i < shape.Length; i++)
        {
            if (shapeItems[i] is not long d || d < 0)
                throw new OnnxAdadeltaException($"{source}: bad .npy header ('shape' must be a tuple of non-negative integers): {Shorten(header)}");
            shape[i] = d;
        }

        // Fortran order only changes the layout when two or more axes are longer than 1.
        if (fortran && shape.Count(d => d > 1) > 1)
            throw new OnnxAdadeltaException(
                $"{source}: the array is stored in Fortran (column-major) order, which is not supported; save np.ascontiguousarray(a) instead.");
        return (type, bigEndian, shape);
    }

    private static string Shorten(string header)
    {
        var t = header.Trim();
        return t.Length <= 200 ? t : t[..200] + "...";
    }

    /// <summary>Writes <paramref name="array"/> to an .npy file, atomically.</summary>
    public static void Write(string path, DataArray array)
    {
        ArgumentNullException.ThrowIfNull(array);
        AtomicFile.Write(path, s => Write(s, array));
    }

    /// <summary>Writes <paramref name="array"/> in .npy format at the current position of <paramref name="stream"/>.</summary>
    public static void Write(Stream stream, DataArray array)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(array);
        stream.Write(Header(array));
        if (BitConverter.IsLittleEndian || array.ElementSize == 1)
        {
            stream.Write(array.Data);
        }
        else
        {
            var copy = (byte[])array.Data.Clone();
            DataArray.SwapBytes(copy, array.ElementSize);
            stream.Write(copy);
        }
    }

    /// <summary>The magic, version, length and padded header that precede the data of <paramref name="array"/>.</summary>
    internal static byte[] Header(DataArray array)
    {
        var shape = array.Shape.Length == 1
            ? $"({array.Shape[0].ToString(CultureInfo.InvariantCulture)},)"
            : $"({string.Join(", ", array.Shape.Select(d => d.ToString(CultureInfo.InvariantCulture)))})";
        var dict = $"{{'descr': '{NpyDTypes.Descr(array.ElementType)}', 'fortran_order': False, 'shape': {shape}, }}";

        int major = 1, lengthBytes = 2;
        int unpadded = Magic.Length + 2 + lengthBytes + dict.Length + 1;
        int padding = (Alignment - unpadded % Alignment) % Alignment;
        if (dict.Length + padding + 1 > ushort.MaxValue)
        {
            major = 2;
            lengthBytes = 4;
            unpadded = Magic.Length + 2 + lengthBytes + dict.Length + 1;
            padding = (Alignment - unpadded % Alignment) % Alignment;
        }
        int headerLength = dict.Length + padding + 1;
        var bytes = new byte[Magic.Length + 2 + lengthBytes + headerLength];
        Magic.CopyTo(bytes);
        bytes[6] = (byte)major;
        bytes[7] = 0;
        if (lengthBytes == 2) BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(8), (ushort)headerLength);
        else BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), (uint)headerLength);
        int at = 8 + lengthBytes;
        at += Encoding.ASCII.GetBytes(dict, bytes.AsSpan(at));
        bytes.AsSpan(at, padding).Fill((byte)' ');
        bytes[^1] = (byte)'\n';
        return bytes;
    }

    /// <summary>
    /// Parses the Python literals that appear in .npy headers: dicts, tuples, lists, strings, integers, True, False
    /// and None. Throws <see cref="FormatException"/> on anything else.
    /// </summary>
    private sealed class PyLiteralParser(string text)
    {
        /// <summary>Deepest nesting of dicts, tuples and lists accepted (a real header nests two deep).</summary>
        private const int MaxDepth = 32;

        private int _pos;
        private int _depth;

        private void Enter()
        {
            if (++_depth > MaxDepth) throw Error($"nested more than {MaxDepth} levels deep");
        }

        public object? ParseWhole()
        {
            var value = ParseValue();
            SkipSpace();
            if (_pos != text.Length) throw Error("unexpected text after the dict");
            return value;
        }

        private FormatException Error(string what) => new($"{what} at character {_pos}");

        private void SkipSpace()
        {
            while (_pos < text.Length && char.IsWhiteSpace(text[_pos])) _pos++;
        }

        private char Peek()
        {
            SkipSpace();
            return _pos < text.Length ? text[_pos] : '\0';
        }

        private void Expect(char c)
        {
            if (Peek() != c) throw Error($"expected '{c}'");
            _pos++;
        }

        private object? ParseValue()
        {
            char c = Peek();
            switch (c)
            {
                case '{': return ParseDict();
                case '(': return ParseSequence(')');
                case '[': return ParseSequence(']');
                case '\'' or '"': return ParseString();
            }
            if (c == '-' || c == '+' || char.IsAsciiDigit(c)) return ParseInteger();
            if (char.IsAsciiLetter(c))
            {
                int start = _pos;
                while (_pos < text.Length && (char.IsAsciiLetterOrDigit(text[_pos]) || text[_pos] == '_')) _pos++;
                var word = text[start.._pos];
                return word switch
                {
                    "True" => true,
                    "False" => false,
                    "None" => null,
                    _ => throw Error($"unexpected name '{word}'"),
                };
            }
            throw Error(c == '\0' ? "unexpected end" : $"unexpected '{c}'");
        }

        private Dictionary<string, object?> ParseDict()
        {
            Expect('{');
            Enter();
            var dict = new Dictionary<string, object?>(StringComparer.Ordinal);
            while (Peek() != '}')
            {
                if (ParseValue() is not string key) throw Error("dict keys must be strings");
                Expect(':');
                if (!dict.TryAdd(key, ParseValue())) throw Error($"key '{key}' appears twice");
                if (Peek() == ',') _pos++;
                else if (Peek() != '}') throw Error("expected ',' or '}'");
            }
            _pos++;
            _depth--;
            return dict;
        }

        private List<object?> ParseSequence(char close)
        {
            _pos++;
            Enter();
            var items = new List<object?>();
            while (Peek() != close)
            {
                items.Add(ParseValue());
                if (Peek() == ',') _pos++;
                else if (Peek() != close) throw Error($"expected ',' or '{close}'");
            }
            _pos++;
            _depth--;
            return items;
        }

        private string ParseString()
        {
            char quote = text[_pos++];
            var sb = new StringBuilder();
            while (true)
            {
                if (_pos >= text.Length) throw Error("unterminated string");
                char c = text[_pos++];
                if (c == quote) return sb.ToString();
                if (c == '\\')
                {
                    if (_pos >= text.Length) throw Error("unterminated string");
                    c = text[_pos++];
                }
                sb.Append(c);
            }
        }

        private long ParseInteger()
        {
            int start = _pos;
            if (text[_pos] is '-' or '+') _pos++;
            while (_pos < text.Length && char.IsAsciiDigit(text[_pos])) _pos++;
            var digits = text[start.._pos];
            if (_pos < text.Length && text[_pos] is 'L' or 'l') _pos++; // Python 2 long
            if (!long.TryParse(digits, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value))
                throw Error($"bad integer '{digits}'");
            return value;
        }
    }
}
