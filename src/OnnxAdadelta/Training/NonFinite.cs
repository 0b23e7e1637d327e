using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Onnx;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Training;

/// <summary>Finds NaN and infinity in float32, float16 and bfloat16 tensors by their exponent bits (no conversion).</summary>
internal static class NonFinite
{
    /// <summary>Whether every element of a host tensor is finite (integer tensors always are).</summary>
    public static bool AllFinite(OrtValue value) =>
        AllFinite(value.GetTensorTypeAndShape().ElementDataType switch
        {
            TensorElementType.Float => DataType.Float,
            TensorElementType.Float16 => DataType.Float16,
            TensorElementType.BFloat16 => DataType.Bfloat16,
            _ => DataType.Undefined,
        }, value.GetTensorMutableRawData());

    /// <summary>Whether every element of an initializer is finite (integer tensors always are).</summary>
    public static bool AllFinite(TensorProto tensor) =>
        (DataType)tensor.DataType is not (DataType.Float or DataType.Float16 or DataType.Bfloat16) || AllFinite((DataType)tensor.DataType, tensor.ToRawBytes());

    /// <summary>Whether every element of raw little-endian data of <paramref name="type"/> is finite.</summary>
    public static bool AllFinite(DataType type, ReadOnlySpan<byte> raw)
    {
        switch (type)
        {
            case DataType.Float:
            {
                var bits = MemoryMarshal.Cast<byte, uint>(raw);
                const uint exponent = 0x7F80_0000;
                int i = 0;
                if (Vector.IsHardwareAccelerated && BitConverter.IsLittleEndian)
                {
                    var mask = new Vector<uint>(exponent);
                    for (; i <= bits.Length - Vector<uint>.Count; i += Vector<uint>.Count)
                        if (Vector.EqualsAny(new Vector<uint>(bits.Slice(i)) & mask, mask)) return false;
                }
                for (; i < bits.Length; i++) if ((bits[i] & exponent) == exponent) return false;
                return true;
            }
            case DataType.Float16:
            case DataType.Bfloat16:
            {
                ushort exponent = type == DataType.Float16 ? (ushort)0x7C00 : (ushort)0x7F80;
                for (int i = 0; i + 1 < raw.Length; i += 2)
                    if ((BinaryPrimitives.ReadUInt16LittleEndian(raw.Slice(i)) & exponent) == exponent) return false;
                return true;
            }
            default:
                return true;
        }
    }
}
