using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Onnx;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Optimizers;

/// <summary>
/// Storage and compute dtypes of mixed-precision training. Parameters may be stored as float32, float16 or bfloat16;
/// the update is always computed in float32. In the graph, the float16/bfloat16 parameter, its gradient and its
/// low-precision state are cast to float32 at the start of the chain, the float32 pieces run unchanged, and each result
/// is cast back to its tensor's storage dtype. The C# reference keeps float32 arrays whose values are rounded to the
/// storage dtype after every step with <see cref="Round(float[], DataType)"/> (round to nearest, ties to even, as
/// ONNX <c>Cast</c> does), so graph and reference agree bit for bit.
/// </summary>
/// <remarks>
/// Storage dtypes: a parameter keeps its own dtype; its optimizer slots have the parameter's dtype (as Keras keeps
/// them), or float32 with <see cref="AdadeltaOptions.Fp32State"/>; the master copy
/// (<see cref="AdadeltaOptions.MasterWeights"/>, slot <see cref="MasterSlot"/>) is always float32. float32 parameters
/// are unaffected by both options (they have no casts and no master slot).
/// </remarks>
public static class MixedPrecision
{
    /// <summary>The slot holding a float16/bfloat16 parameter's float32 master copy.</summary>
    public const string MasterSlot = "master";

    /// <summary>Whether parameters of <paramref name="type"/> can be trained: float32, float16 or bfloat16.</summary>
    public static bool IsTrainable(DataType type) => DataTypes.IsTrainable(type);

    /// <summary>Whether <paramref name="type"/> is float16 or bfloat16 (stored in low precision, computed in float32).</summary>
    public static bool IsLowPrecision(DataType type) => type is DataType.Float16 or DataType.Bfloat16;

    /// <summary>The storage dtype of <paramref name="slot"/> of a parameter stored as <paramref name="parameter"/>.</summary>
    public static DataType SlotType(AdadeltaOptions options, DataType parameter, string slot) =>
        slot == MasterSlot || options.Fp32State ? DataType.Float : parameter;

    /// <summary>Whether a parameter stored as <paramref name="parameter"/> keeps a float32 master copy under these options.</summary>
    public static bool HasMaster(AdadeltaOptions options, DataType parameter) => options.MasterWeights && IsLowPrecision(parameter);

    /// <summary>The bits of <paramref name="value"/> rounded to bfloat16 (nearest, ties to even; NaN becomes 0x7FC1), as ONNX Runtime casts.</summary>
    public static ushort ToBFloat16Bits(float value)
    {
        if (float.IsNaN(value)) return 0x7FC1;
        uint bits = BitConverter.SingleToUInt32Bits(value);
        bits += 0x7FFFu + ((bits >> 16) & 1u);
        return (ushort)(bits >> 16);
    }

    /// <summary>The float32 value of bfloat16 <paramref name="bits"/> (exact).</summary>
    public static float FromBFloat16Bits(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    /// <summary><paramref name="value"/> rounded to <paramref name="type"/> and widened back to float32 (exact for float32).</summary>
    public static float Round(float value, DataType type) => type switch
    {
        DataType.Float => value,
        DataType.Float16 => (float)(Half)value,
        DataType.Bfloat16 => FromBFloat16Bits(ToBFloat16Bits(value)),
        _ => throw new ArgumentException($"{DataTypes.Name(type)} is not a float storage dtype.", nameof(type)),
    };

    /// <summary>Every element rounded to <paramref name="type"/> (a new array).</summary>
    public static float[] Round(float[] values, DataType type) => values.Select(v => Round(v, type)).ToArray();

    /// <summary>The values of a float32, float16 or bfloat16 tensor as float32 (exact).</summary>
    /// <exception cref="OnnxAdadeltaException">The tensor has another dtype.</exception>
    public static float[] ToFloats(TensorProto t) => (DataType)t.DataType switch
    {
        DataType.Float => t.ToFloatArray(),
        DataType.Float16 => t.ToArray<Half>().Select(h => (float)h).ToArray(),
        DataType.Bfloat16 => BitsOf(t.ToRawBytes()).Select(FromBFloat16Bits).ToArray(),
        var other => throw new OnnxAdadeltaException($"{Tensors.Label(t.Name)} is {DataTypes.Name(other)}; float32, float16 or bfloat16 expected."),
    };

    /// <summary>A tensor of <paramref name="type"/> (float32, float16 or bfloat16) holding <paramref name="values"/> rounded to it.</summary>
    public static TensorProto FromFloats(string name, float[] values, DataType type, long[] dims) => type switch
    {
        DataType.Float => Tensors.Create(name, values, dims),
        DataType.Float16 => Tensors.Create(name, values.Select(v => (Half)v).ToArray(), dims),
        DataType.Bfloat16 => Tensors.FromRawBytes(name, type, dims, Bytes(values.Select(ToBFloat16Bits).ToArray())),
        _ => throw new ArgumentException($"{DataTypes.Name(type)} is not a float storage dtype.", nameof(type)),
    };

    private static ushort[] BitsOf(byte[] raw)
    {
        var bits = new ushort[raw.Length / 2];
        for (int i = 0; i < bits.Length; i++) bits[i] = (ushort)(raw[2 * i] | raw[2 * i + 1] << 8);
        return bits;
    }

    private static byte[] Bytes(ushort[] bits)
    {
        var raw = new byte[bits.Length * 2];
        for (int i = 0; i < bits.Length; i++) { raw[2 * i] = (byte)bits[i]; raw[2 * i + 1] = (byte)(bits[i] >> 8); }
        return raw;
    }
}
