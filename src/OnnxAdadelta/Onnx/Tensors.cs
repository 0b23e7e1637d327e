using System.Runtime.InteropServices;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using OnnxAdadelta.Onnx.Proto;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Onnx;

/// <summary>
/// Creates <see cref="TensorProto"/> values from .NET arrays and reads them back (the reading half is in Tensors.Read.cs).
/// Supported element types: float (FLOAT), double (DOUBLE), <see cref="Half"/> (FLOAT16), <see cref="BFloat16"/> (BFLOAT16),
/// int (INT32), long (INT64) and bool (BOOL).
/// </summary>
/// <remarks>
/// <c>Create</c> stores the values in <c>raw_data</c> (little-endian), the encoding ONNX tools write;
/// <c>CreateTyped</c> stores them in the typed fields (<c>float_data</c>, <c>double_data</c>, <c>int32_data</c>,
/// <c>int64_data</c>), where FLOAT16 and BFLOAT16 keep their bit patterns in the low 16 bits of <c>int32_data</c>
/// and BOOL keeps 0 or 1. A length that does not match the shape is a caller bug and throws <see cref="ArgumentException"/>.
/// </remarks>
public static partial class Tensors
{
    /// <summary>A FLOAT tensor stored in <c>raw_data</c> (little-endian).</summary>
    public static TensorProto Create(string name, float[] data, params long[] dims) => CreateRaw(name, DataType.Float, data, dims);

    /// <summary>A DOUBLE tensor stored in <c>raw_data</c> (little-endian).</summary>
    public static TensorProto Create(string name, double[] data, params long[] dims) => CreateRaw(name, DataType.Double, data, dims);

    /// <summary>A FLOAT16 tensor stored in <c>raw_data</c> (little-endian bit patterns).</summary>
    public static TensorProto Create(string name, Half[] data, params long[] dims) => CreateRaw(name, DataType.Float16, data, dims);

    /// <summary>A BFLOAT16 tensor stored in <c>raw_data</c> (little-endian bit patterns).</summary>
    public static TensorProto Create(string name, BFloat16[] data, params long[] dims) => CreateRaw(name, DataType.Bfloat16, data, dims);

    /// <summary>An INT32 tensor stored in <c>raw_data</c> (little-endian).</summary>
    public static TensorProto Create(string name, int[] data, params long[] dims) => CreateRaw(name, DataType.Int32, data, dims);

    /// <summary>An INT64 tensor stored in <c>raw_data</c> (little-endian).</summary>
    public static TensorProto Create(string name, long[] data, params long[] dims) => CreateRaw(name, DataType.Int64, data, dims);

    /// <summary>A BOOL tensor stored in <c>raw_data</c>, one byte (0 or 1) per element.</summary>
    public static TensorProto Create(string name, bool[] data, params long[] dims)
    {
        var t = Empty(name, DataType.Bool, data, dims);
        var bytes = new byte[data.Length];
        for (int i = 0; i < data.Length; i++) bytes[i] = data[i] ? (byte)1 : (byte)0;
        t.RawData = UnsafeByteOperations.UnsafeWrap(bytes);
        return t;
    }

    /// <summary>A FLOAT tensor stored in <c>float_data</c>.</summary>
    public static TensorProto CreateTyped(string name, float[] data, params long[] dims)
    {
        var t = Empty(name, DataType.Float, data, dims);
        t.FloatData.AddRange(data);
        return t;
    }

    /// <summary>A DOUBLE tensor stored in <c>double_data</c>.</summary>
    public static TensorProto CreateTyped(string name, double[] data, params long[] dims)
    {
        var t = Empty(name, DataType.Double, data, dims);
        t.DoubleData.AddRange(data);
        return t;
    }

    /// <summary>A FLOAT16 tensor stored in <c>int32_data</c>, each bit pattern in the low 16 bits.</summary>
    public static TensorProto CreateTyped(string name, Half[] data, params long[] dims)
    {
        var t = Empty(name, DataType.Float16, data, dims);
        t.Int32Data.AddRange(data.Select(h => (int)BitConverter.HalfToUInt16Bits(h)));
        return t;
    }

    /// <summary>A BFLOAT16 tensor stored in <c>int32_data</c>, each bit pattern in the low 16 bits.</summary>
    public static TensorProto CreateTyped(string name, BFloat16[] data, params long[] dims)
    {
        var t = Empty(name, DataType.Bfloat16, data, dims);
        t.Int32Data.AddRange(data.Select(b => (int)b.value));
        return t;
    }

    /// <summary>An INT32 tensor stored in <c>int32_data</c>.</summary>
    public static TensorProto CreateTyped(string name, int[] data, params long[] dims)
    {
        var t = Empty(name, DataType.Int32, data, dims);
        t.Int32Data.AddRange(data);
        return t;
    }

    /// <summary>An INT64 tensor stored in <c>int64_data</c>.</summary>
    public static TensorProto CreateTyped(string name, long[] data, params long[] dims)
    {
        var t = Empty(name, DataType.Int64, data, dims);
        t.Int64Data.AddRange(data);
        return t;
    }

    /// <summary>A BOOL tensor stored in <c>int32_data</c> as 0 and 1.</summary>
    public static TensorProto CreateTyped(string name, bool[] data, params long[] dims)
    {
        var t = Empty(name, DataType.Bool, data, dims);
        t.Int32Data.AddRange(data.Select(b => b ? 1 : 0));
        return t;
    }

    /// <summary>
    /// A tensor of any fixed-width type (every ONNX type but STRING) from its little-endian raw bytes, stored in <c>raw_data</c>.
    /// Throws <see cref="OnnxAdadeltaException"/> naming the tensor when the type has no raw form or the byte count does not fit the shape.
    /// </summary>
    public static TensorProto FromRawBytes(string name, DataType dataType, long[] dims, ReadOnlySpan<byte> bytes)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(dims);
        var label = Label(name);
        if (!DataTypes.HasRawForm((int)dataType))
            throw new OnnxAdadeltaException($"{label} is {DataTypes.Name(dataType)}, which has no raw byte form; expected a numeric or BOOL type.");
        long count = CountOf(dims, $"{label} ({DataTypes.Name(dataType)} {DataTypes.Shape(dims)})");
        long expected = DataTypes.RawByteLength((int)dataType, count);
        if (bytes.Length != expected)
            throw new OnnxAdadeltaException(
                $"{label} ({DataTypes.Name(dataType)} {DataTypes.Shape(dims)}) needs {expected} bytes of little-endian data, got {bytes.Length}.");
        var t = new TensorProto { Name = name, DataType = (int)dataType, RawData = ByteString.CopyFrom(bytes) };
        t.Dims.AddRange(dims);
        return t;
    }

    /// <summary>The ONNX element type that stores values of <typeparamref name="T"/>, e.g. FLOAT for float.</summary>
    /// <exception cref="ArgumentException"><typeparamref name="T"/> is not one of the supported element types.</exception>
    public static DataType DataTypeOf<T>() where T : unmanaged =>
        DataTypes.ForClrType(typeof(T))
        ?? throw new ArgumentException($"Tensors hold {DataTypes.SupportedClrTypes} values, not {typeof(T).Name}.", nameof(T));

    /// <summary>The number of elements a shape holds (1 for a scalar). Throws <see cref="OverflowException"/> past <see cref="long.MaxValue"/>.</summary>
    public static long ElementCount(IEnumerable<long> dims)
    {
        long n = 1;
        foreach (var d in dims) n = checked(n * d);
        return n;
    }

    private static TensorProto CreateRaw<T>(string name, DataType type, T[] data, long[] dims) where T : unmanaged
    {
        var t = Empty(name, type, data, dims);
        var bytes = MemoryMarshal.AsBytes(data.AsSpan()).ToArray();
        if (!BitConverter.IsLittleEndian) DataTypes.ReverseWords(bytes, DataTypes.WordSize((int)type));
        t.RawData = UnsafeByteOperations.UnsafeWrap(bytes);
        return t;
    }

    /// <summary>A tensor with name, type and shape but no values, after checking that the shape holds <paramref name="data"/>.</summary>
    private static TensorProto Empty<T>(string name, DataType type, T[] data, long[] dims)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(dims);
        if (dims.Any(d => d < 0) || ElementCount(dims) != data.Length)
            throw new ArgumentException($"Tensor '{name}': shape {DataTypes.Shape(dims)} does not hold the {data.Length} values given.", nameof(dims));
        var t = new TensorProto { Name = name, DataType = (int)type };
        t.Dims.AddRange(dims);
        return t;
    }
}
