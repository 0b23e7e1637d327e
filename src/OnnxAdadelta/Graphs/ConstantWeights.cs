using OnnxAdadelta.Onnx.Proto;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Graphs;

/// <summary>
/// Weights stored as Constant nodes (as spox, paddle2onnx and some hand-written exporters emit them) become
/// initializers of the same name, so that they can be trained like any other parameter.
/// </summary>
/// <remarks>
/// Only float tensors (float, double, float16, bfloat16) given by a Constant's <c>value</c> attribute, in the main
/// graph, with more than one element are promoted: scalars and one-element tensors are hyper-parameters (epsilons,
/// coefficients), not weights. Constants inside If, Loop and Scan bodies stay where they are.
/// </remarks>
public static class ConstantWeights
{
    /// <summary>Whether a tensor is a float tensor with more than one element.</summary>
    private static bool IsWeight(TensorProto t) =>
        t.DataType is (int)DataType.Float or (int)DataType.Double or (int)DataType.Float16 or (int)DataType.Bfloat16
        && t.Dims.Count > 0 && t.Dims.Aggregate(1L, (a, b) => a * b) > 1;

    /// <summary>Whether the graph has a float initializer with more than one element (weights stored the usual way).</summary>
    public static bool HasFloatInitializers(GraphProto graph)
    {
        ArgumentNullException.ThrowIfNull(graph);
        return graph.Initializer.Any(IsWeight);
    }

    /// <summary>The Constant nodes of the main graph that <see cref="Promote"/> turns into initializers.</summary>
    public static IEnumerable<NodeProto> Candidates(GraphProto graph)
    {
        ArgumentNullException.ThrowIfNull(graph);
        return graph.Node.Where(n => n.Domain is "" or "ai.onnx" && n.OpType == "Constant" && n.Output.Count == 1
            && n.Attribute.Count == 1 && n.Attribute[0] is { Name: "value", T: { } t } && IsWeight(t));
    }

    /// <summary>
    /// Replaces each candidate Constant node by an initializer named after its output, in place; returns the names of
    /// the new initializers.
    /// </summary>
    public static IReadOnlyList<string> Promote(GraphProto graph)
    {
        var promoted = new List<string>();
        var candidates = Candidates(graph).ToHashSet(ReferenceEqualityComparer.Instance);
        if (candidates.Count == 0) return promoted;
        // The node list is rebuilt in one pass (removing nodes one by one would cost the graph's length per node).
        var kept = new List<NodeProto>(graph.Node.Count - candidates.Count);
        foreach (var node in graph.Node)
        {
            if (!candidates.Contains(node))
            {
                kept.Add(node);
                continue;
            }
            var value = node.Attribute[0].T.Clone();
            value.Name = node.Output[0];
            graph.Initializer.Add(value);
            promoted.Add(value.Name);
        }
        graph.Node.Clear();
        graph.Node.AddRange(kept);
        return promoted;
    }

    /// <summary>
    /// Applies the <c>trainable-constants</c> policy: <paramref name="enabled"/> true promotes, false leaves the graph
    /// as it is, null promotes only where the graph has no float initializers (its weights must then be constants).
    /// </summary>
    public static IReadOnlyList<string> Apply(GraphProto graph, bool? enabled) =>
        enabled ?? !HasFloatInitializers(graph) ? Promote(graph) : [];
}
