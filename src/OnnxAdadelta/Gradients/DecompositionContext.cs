using Onnx;
using OnnxAdadelta.Graphs;

namespace OnnxAdadelta.Gradients;

/// <summary>A decomposition: recomputes a node's outputs from its inputs with ops that have gradient rules.</summary>
public delegate void Decomposition(DecompositionContext c);

/// <summary>
/// What a decomposition sees of one forward node: its inputs, attributes and inferred types, and a way to emit nodes
/// that recompute its outputs from its inputs (<see cref="SetOutput"/>).
/// </summary>
public sealed class DecompositionContext : NodeRuleContext
{
    private readonly Dictionary<int, string> _outputs = [];

    private readonly Func<string, long[]?> _constants;

    internal DecompositionContext(GraphBuilder builder, NodeProto node, int opset, IReadOnlyDictionary<string, ValueType> types,
        Func<string, long[]?> constants)
        : base(builder, node, opset, "_Grad/recompute")
    {
        Types = types;
        _constants = constants;
    }

    /// <summary>Inferred types of the forward values.</summary>
    public IReadOnlyDictionary<string, ValueType> Types { get; }

    internal IReadOnlyDictionary<int, string> Outputs => _outputs;

    /// <summary>Forward output <paramref name="i"/> ("" when absent).</summary>
    public string O(int i) => i < Node.Output.Count ? Node.Output[i] : "";

    /// <summary>The inferred type of a forward value.</summary>
    public ValueType Type(string value) =>
        Types.TryGetValue(value, out var t) ? t : throw Fail($"the type of '{value}' is unknown (shape inference found none)");

    /// <summary>The rank of a forward value.</summary>
    public int Rank(string value) => Type(value).Rank ?? throw Fail($"the rank of '{value}' is unknown");

    /// <summary>The values of a constant int64 or bool input, or null when computed.</summary>
    public long[]? ConstantInts(int i) => HasInput(i) ? _constants(I(i)) : null;

    /// <summary>Binds <paramref name="value"/>, computed by emitted nodes from the node's inputs, as forward output <paramref name="k"/>.</summary>
    public void SetOutput(int k, string value) => _outputs[k] = value;

    /// <summary>An error naming this node and its op.</summary>
    public override OnnxAdadeltaException Fail(string problem) =>
        new($"Gradient of node '{Node.Name}' ({Node.OpType}): {problem}.");
}
