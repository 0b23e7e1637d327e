using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Onnx.Proto;

namespace OnnxAdadelta.Runtime;

/// <summary>
/// ONNX Runtime values made from host data: ONNX Runtime allocates the tensor (so the value owns its memory and outlives
/// the source array) and the bytes are copied in once.
/// </summary>
public static class OrtValues
{
    /// <summary>A tensor of <paramref name="type"/> and <paramref name="shape"/> holding <paramref name="data"/> (raw little-endian elements).</summary>
    /// <exception cref="ArgumentException"><paramref name="data"/> does not hold exactly the elements of <paramref name="shape"/>.</exception>
    public static OrtValue FromBytes(TensorElementType type, long[] shape, ReadOnlySpan<byte> data)
    {
        ArgumentNullException.ThrowIfNull(shape);
        var value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, type, shape);
        var target = value.GetTensorMutableRawData();
        if (target.Length != data.Length)
        {
            value.Dispose();
            throw new ArgumentException($"{data.Length} bytes for a {type} tensor of shape [{string.Join(",", shape)}], which takes {target.Length}.", nameof(data));
        }
        data.CopyTo(target);
        return value;
    }

    /// <summary>A tensor holding <paramref name="tensor"/>'s values (its element type, dimensions and data, external data excluded).</summary>
    public static OrtValue FromTensor(TensorProto tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        // ONNX's TensorProto data types and ONNX Runtime's element types share their numbers.
        return FromBytes((TensorElementType)tensor.DataType, [.. tensor.Dims], tensor.ToRawBytes());
    }
}
