using OnnxAdadelta.Onnx.Proto;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Onnx;

/// <summary>What OnnxAdadelta knows about each ONNX element type: its width in raw_data and where the typed fields keep it.</summary>
internal static class DataTypes
{
    /// <summary>Bits per element in <c>raw_data</c>; 0 for types without a fixed width (STRING, UNDEFINED, unknown numbers).</summary>
    internal static int BitsPerElement(int dataType) => (DataType)dataType switch
    {
        DataType.Uint4 or DataType.Int4 => 4,
        DataType.Uint8 or DataType.Int8 or DataType.Bool
            or DataType.Float8E4M3Fn or DataType.Float8E4M3Fnuz or DataType.Float8E5M2 or DataType.Float8E5M2Fnuz => 8,
        DataType.Uint16 or DataType.Int16 or DataType.Float16 or DataType.Bfloat16 => 16,
        DataType.Float or DataType.Int32 or DataType.Uint32 => 32,
        DataType.Double or DataType.Int64 or DataType.Uint64 or DataType.Complex64 => 64,
        DataType.Complex128 => 128,
        _ => 0,
    };

    /// <summary>Whether tensors of this type have a defined little-endian raw form.</summary>
    internal static bool HasRawForm(int dataType) => BitsPerElement(dataType) > 0;

    /// <summary>
    /// The size in bytes of one little-endian word: the unit whose byte order flips on a big-endian host
    /// (a complex number is two words; 4- and 8-bit types are one byte).
    /// </summary>
    internal static int WordSize(int dataType) => (DataType)dataType switch
    {
        DataType.Complex64 => 4,
        DataType.Complex128 => 8,
        _ => Math.Max(1, BitsPerElement(dataType) / 8),
    };

    /// <summary>The number of bytes <paramref name="count"/> elements take in <c>raw_data</c> (4-bit types pack two a byte).</summary>
    internal static long RawByteLength(int dataType, long count)
    {
        int bits = BitsPerElement(dataType);
        if (bits == 0) throw new InvalidOperationException($"{Name(dataType)} has no raw form.");
        return bits == 4 ? (count + 1) / 2 : checked(count * (bits / 8));
    }

    /// <summary>The ONNX spelling of a data type (FLOAT, BFLOAT16…), or <c>UNKNOWN(n)</c>.</summary>
    internal static string Name(int dataType) =>
        Enum.IsDefined((DataType)dataType) ? ((DataType)dataType).ToString().ToUpperInvariant() : $"UNKNOWN({dataType})";

    /// <summary>The ONNX spelling of a data type.</summary>
    internal static string Name(DataType dataType) => Name((int)dataType);

    /// <summary>Whether parameters of <paramref name="type"/> can be trained: float32, float16 or bfloat16.</summary>
    internal static bool IsTrainable(DataType type) => type is DataType.Float or DataType.Float16 or DataType.Bfloat16;

    /// <summary>The ONNX type that stores values of the .NET type <paramref name="type"/>, or null.</summary>
    internal static DataType? ForClrType(Type type) =>
        type == typeof(float) ? DataType.Float
        : type == typeof(double) ? DataType.Double
        : type == typeof(Half) ? DataType.Float16
        : type == typeof(Microsoft.ML.OnnxRuntime.BFloat16) ? DataType.Bfloat16
        : type == typeof(int) ? DataType.Int32
        : type == typeof(long) ? DataType.Int64
        : type == typeof(bool) ? DataType.Bool
        : null;

    /// <summary>The .NET types that <see cref="Tensors"/> converts to and from, for messages.</summary>
    internal const string SupportedClrTypes = "float, double, Half, BFloat16, int, long, bool";

    /// <summary>Reverses the byte order of every <paramref name="wordSize"/>-byte word of <paramref name="bytes"/> in place.</summary>
    internal static void ReverseWords(Span<byte> bytes, int wordSize)
    {
        if (wordSize <= 1) return;
        for (int i = 0; i + wordSize <= bytes.Length; i += wordSize) bytes.Slice(i, wordSize).Reverse();
    }

    /// <summary>The shape as ONNX tools print it, e.g. <c>[2,3]</c>.</summary>
    internal static string Shape(IEnumerable<long> dims) => $"[{string.Join(",", dims)}]";
}
