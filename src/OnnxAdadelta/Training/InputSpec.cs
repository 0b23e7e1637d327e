using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Training;

/// <summary>
/// What a model expects on one graph input: its name, element type and dimensions. A dimension is a
/// <see cref="long"/> (fixed), a <see cref="string"/> (symbolic, such as <c>batch</c>) or null (unknown);
/// <paramref name="Dims"/> is null when even the rank is unknown. This is the form <see cref="TypeProtos.Dims"/> returns.
/// </summary>
/// <param name="Name">The graph input's name.</param>
/// <param name="ElementType">The element type; Undefined accepts any supported type.</param>
/// <param name="Dims">The dimensions, outermost (the batch) first, or null for an unknown rank.</param>
public sealed record InputSpec(string Name, DataType ElementType, IReadOnlyList<object?>? Dims)
{
    /// <summary>The spec of a graph input from its declared type.</summary>
    public static InputSpec From(ValueInfoProto input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return new InputSpec(input.Name, input.Type.ElementType(), input.Type.Dims());
    }

    /// <summary>The fixed size of axis 0, or null when it is symbolic, unknown, or the rank is unknown or 0.</summary>
    public long? FixedBatchSize => Dims is { Count: > 0 } && Dims[0] is long n ? n : null;

    /// <summary>A readable form such as <c>float32[batch,784]</c>; <c>float32[...]</c> for an unknown rank.</summary>
    public string Describe()
    {
        var elem = NpyDTypes.Name(ElementType);
        return Dims is null ? $"{elem}[...]" : $"{elem}[{string.Join(",", Dims.Select(d => d?.ToString() ?? "?"))}]";
    }
}
