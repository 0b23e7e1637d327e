using OnnxAdadelta.Onnx.Proto;

namespace OnnxAdadelta.Onnx;

/// <summary>
/// The two ways the library copies a whole model: a deep copy (every node, tensor and value info copied; counted by
/// <see cref="PipelineCounts"/>), and a copy of its lists that shares their elements, for passes that only replace,
/// remove, add or reorder list entries (a session's model without the start values, a checkpoint with new state).
/// </summary>
public static class ModelCopies
{
    /// <summary>A deep copy of <paramref name="model"/>: changing it never changes the original.</summary>
    public static ModelProto DeepCopy(this ModelProto model)
    {
        ArgumentNullException.ThrowIfNull(model);
        PipelineCounts.ModelCopied();
        return model.Clone();
    }

    /// <summary>
    /// A new model whose graph lists (nodes, initializers, inputs, outputs, value infos), metadata and opset imports
    /// are new lists holding the same elements as <paramref name="model"/>'s: entries may be replaced, removed, added
    /// or reordered in the copy without touching the original, but an element itself (a node, a tensor, a value info)
    /// must not be changed. Costs one reference per list entry, whatever the size of the tensors.
    /// </summary>
    internal static ModelProto ShareElements(this ModelProto model)
    {
        ArgumentNullException.ThrowIfNull(model);
        // Generated MergeFrom builds new singular messages (the graph) and appends the other's repeated entries by reference.
        var copy = new ModelProto();
        copy.MergeFrom(model);
        return copy;
    }
}
