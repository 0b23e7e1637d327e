using System.Buffers.Binary;
using System.Runtime.InteropServices;
using OnnxAdadelta.Onnx.Proto;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Onnx;

// Reading tensors back: .NET arrays and little-endian raw bytes, from raw_data or from the typed fields.
// A tensor that does not match its own shape or type is bad input and throws OnnxAdadeltaException naming it.
public static partial class Tensors
{
    /// <summary>
    /// The values of a tensor as a <typeparamref name="T"/> array, read from <c>raw_data</c> or the typed field.
    /// <typeparamref name="T"/> is float, double, <see cref="Half"/>, <see cref="Microsoft.ML.OnnxRuntime.BFloat16"/>, int, long or bool
    /// and must match the tensor's data type exactly.
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">The tensor has another data type, its data does not fit its shape, or it is still external.</exception>
    /// <exception cref="ArgumentException"><typeparamref name="T"/> is not a supported element type.</exception>
    public static T[] ToArray<T>(this TensorProto t) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(t);
        var want = DataTypeOf<T>();
        if (t.DataType != (int)want)
            throw new OnnxAdadeltaException(
                $"{Label(t.Name)} is {DataTypes.Name(t.DataType)}, but {DataTypes.Name(want)} ({typeof(T).Name}) values were requested.");
        var bytes = LittleEndianBytes(t, out _);
        if (typeof(T) == typeof(bool))
        {
            var flags = new bool[bytes.Length];
            for (int i = 0; i < flags.Length; i++) flags[i] = bytes[i] != 0;
            return (T[])(object)flags;
        }
        if (BitConverter.IsLittleEndian) return MemoryMarshal.Cast<byte, T>(bytes).ToArray();
        var native = bytes.ToArray();
        DataTypes.ReverseWords(native, DataTypes.WordSize(t.DataType));
        return MemoryMarshal.Cast<byte, T>(native).ToArray();
    }

    /// <summary>The values of a FLOAT tensor, from <c>raw_data</c> or <c>float_data</c>.</summary>
    public static float[] ToFloatArray(this TensorProto t) => t.ToArray<float>();

    /// <summary>The values of a float64, float32, float16 or bfloat16 tensor as float64 (exact).</summary>
    /// <exception cref="OnnxAdadeltaException">The tensor has another data type.</exception>
    public static double[] ToDoubles(this TensorProto t) => (DataType)t.DataType switch
    {
        DataType.Double => t.ToArray<double>(),
        DataType.Float => Array.ConvertAll(t.ToFloatArray(), v => (double)v),
        DataType.Float16 => Array.ConvertAll(t.ToArray<Half>(), v => (double)v),
        DataType.Bfloat16 => Array.ConvertAll(t.ToArray<Microsoft.ML.OnnxRuntime.BFloat16>(), v => (double)(float)v),
        var other => throw new OnnxAdadeltaException($"{Label(t.Name)} is {DataTypes.Name(other)}; a floating-point tensor was expected."),
    };

    /// <summary>The values of an INT64 tensor, from <c>raw_data</c> or <c>int64_data</c>.</summary>
    public static long[] ToInt64Array(this TensorProto t) => t.ToArray<long>();

    /// <summary>
    /// The tensor's values as little-endian raw bytes (the <c>raw_data</c> form), whichever field holds them:
    /// what ONNX Runtime and external data files expect. Works for every type but STRING; BOOL bytes come out as 0 or 1.
    /// 4-bit types (INT4, UINT4) are read from <c>raw_data</c> only.
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">The type has no raw form, the data does not fit the shape, or it is still external.</exception>
    public static byte[] ToRawBytes(this TensorProto t)
    {
        ArgumentNullException.ThrowIfNull(t);
        var bytes = LittleEndianBytes(t, out var owned);
        var result = owned ?? bytes.ToArray();
        if (t.DataType == (int)DataType.Bool)
            for (int i = 0; i < result.Length; i++) result[i] = result[i] != 0 ? (byte)1 : (byte)0;
        return result;
    }

    /// <summary>"Tensor 'w'", or a stand-in for a tensor without a name, to start messages with.</summary>
    internal static string Label(string name) => name.Length > 0 ? $"Tensor '{name}'" : "A tensor with no name";

    /// <summary>The element count of a shape given in a model: negative dimensions and overflow are input errors.</summary>
    internal static long CountOf(IEnumerable<long> dims, string what)
    {
        long n = 1;
        foreach (var d in dims)
        {
            if (d < 0) throw new OnnxAdadeltaException($"{what} has a negative dimension; expected sizes of 0 or more.");
            if (d != 0 && n > long.MaxValue / d) throw new OnnxAdadeltaException($"{what} has more elements than a 64-bit count holds.");
            n *= d;
        }
        return n;
    }

    /// <summary>
    /// The tensor's values as little-endian bytes: a view of <c>raw_data</c> when that holds them (<paramref name="owned"/> null),
    /// else a new array converted from the typed field (also returned in <paramref name="owned"/>).
    /// </summary>
    internal static ReadOnlySpan<byte> LittleEndianBytes(TensorProto t, out byte[]? owned)
    {
        owned = null;
        var what = $"{Label(t.Name)} ({DataTypes.Name(t.DataType)} {DataTypes.Shape(t.Dims)})";
        if (t.DataLocation == TensorProto.Types.DataLocation.External)
            throw new OnnxAdadeltaException($"{what} keeps its data in an external file that was not read; load the model with ModelIO.Load.");
        if (!DataTypes.HasRawForm(t.DataType))
            throw new OnnxAdadeltaException($"{what} is not supported here; expected a numeric or BOOL tensor.");
        long count = CountOf(t.Dims, what);
        long expected = DataTypes.RawByteLength(t.DataType, count);
        if (t.RawData.Length > 0 || !HasTypedValues(t))
        {
            if (t.RawData.Length != expected)
                throw new OnnxAdadeltaException(t.RawData.Length == 0
                    ? $"{what} holds no values; expected {count} in raw_data or its typed field."
                    : $"{what} has {t.RawData.Length} bytes of raw_data; expected {expected} for {count} elements.");
            return t.RawData.Span;
        }
        if (expected > Array.MaxLength)
            throw new OnnxAdadeltaException($"{what} is too large to convert in memory ({expected} bytes).");
        owned = TypedToRaw(t, (int)count, what);
        return owned;
    }

    private static bool HasTypedValues(TensorProto t) =>
        t.FloatData.Count > 0 || t.Int32Data.Count > 0 || t.Int64Data.Count > 0 || t.DoubleData.Count > 0 || t.Uint64Data.Count > 0;

    /// <summary>Converts the typed field that holds a tensor of this data type to little-endian raw bytes.</summary>
    private static byte[] TypedToRaw(TensorProto t, int count, string what)
    {
        var dst = new byte[DataTypes.RawByteLength(t.DataType, count)];
        var span = dst.AsSpan();
        switch ((DataType)t.DataType)
        {
            case DataType.Float:
            case DataType.Complex64:
            {
                var src = Expect(t.FloatData, "float_data", t.DataType == (int)DataType.Float ? count : 2 * count, what);
                for (int i = 0; i < src.Count; i++) BinaryPrimitives.WriteSingleLittleEndian(span[(4 * i)..], src[i]);
                break;
            }
            case DataType.Double:
            case DataType.Complex128:
            {
                var src = Expect(t.DoubleData, "double_data", t.DataType == (int)DataType.Double ? count : 2 * count, what);
                for (int i = 0; i < src.Count; i++) BinaryPrimitives.WriteDoubleLittleEndian(span[(8 * i)..], src[i]);
                break;
            }
            case DataType.Int32:
            {
                var src = Expect(t.Int32Data, "int32_data", count, what);
                for (int i = 0; i < count; i++) BinaryPrimitives.WriteInt32LittleEndian(span[(4 * i)..], src[i]);
                break;
            }
            case DataType.Int16:
            case DataType.Uint16:
            case DataType.Float16:
            case DataType.Bfloat16:
            {
                // The low 16 bits, whether the writer stored them sign-extended or not.
                var src = Expect(t.Int32Data, "int32_data", count, what);
                for (int i = 0; i < count; i++) BinaryPrimitives.WriteUInt16LittleEndian(span[(2 * i)..], (ushort)src[i]);
                break;
            }
            case DataType.Int8:
            case DataType.Uint8:
            case DataType.Float8E4M3Fn:
            case DataType.Float8E4M3Fnuz:
            case DataType.Float8E5M2:
            case DataType.Float8E5M2Fnuz:
            {
                var src = Expect(t.Int32Data, "int32_data", count, what);
                for (int i = 0; i < count; i++) dst[i] = (byte)src[i];
                break;
            }
            case DataType.Bool:
            {
                var src = Expect(t.Int32Data, "int32_data", count, what);
                for (int i = 0; i < count; i++) dst[i] = src[i] != 0 ? (byte)1 : (byte)0;
                break;
            }
            case DataType.Int64:
            {
                var src = Expect(t.Int64Data, "int64_data", count, what);
                for (int i = 0; i < count; i++) BinaryPrimitives.WriteInt64LittleEndian(span[(8 * i)..], src[i]);
                break;
            }
            case DataType.Uint32:
            {
                var src = Expect(t.Uint64Data, "uint64_data", count, what);
                for (int i = 0; i < count; i++) BinaryPrimitives.WriteUInt32LittleEndian(span[(4 * i)..], (uint)src[i]);
                break;
            }
            case DataType.Uint64:
            {
                var src = Expect(t.Uint64Data, "uint64_data", count, what);
                for (int i = 0; i < count; i++) BinaryPrimitives.WriteUInt64LittleEndian(span[(8 * i)..], src[i]);
                break;
            }
            default:
                throw new OnnxAdadeltaException($"{what} keeps its values in a typed field; expected raw_data for this type.");
        }
        return dst;
    }

    private static Google.Protobuf.Collections.RepeatedField<TValue> Expect<TValue>(
        Google.Protobuf.Collections.RepeatedField<TValue> field, string fieldName, long count, string what)
    {
        if (field.Count != count)
            throw new OnnxAdadeltaException($"{what} has {field.Count} values in {fieldName}; expected {count}.");
        return field;
    }
}
