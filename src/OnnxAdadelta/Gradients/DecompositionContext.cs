using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Runtime;

namespace OnnxAdadelta.Gradients;

/// <summary>
/// What a <see cref="Decomposition"/> sees of one forward node: its inputs, outputs, attributes and inferred types, and
/// the emission helpers of <see cref="NodeRuleContext"/>. The decomposition recomputes output k from the node's inputs
/// (and the outer-scope values its subgraphs read) and binds it with <see cref="SetOutput"/>; the driver hands the
/// gradient arriving at output k to that value and differentiates the recompute with the ordinary rules. Nodes it
/// emits are named <c>&lt;node&gt;_Grad/recompute/…</c>.
/// </summary>
public sealed class DecompositionContext : NodeRuleContext
{
    private readonly Dictionary<int, string> _outputs = [];
    private readonly Func<string, long[]?> _constants;

    internal DecompositionContext(GraphBuilder builder, NodeProto node, int opset, IReadOnlyDictionary<string, TypeAndShape> types,
        Func<string, long[]?> constants)
        : base(builder, node, opset, "_Grad/recompute")
    {
        Types = types;
        _constants = constants;
    }

    /// <summary>Inferred types of the forward values.</summary>
    public IReadOnlyDictionary<string, TypeAndShape> Types { get; }

    internal IReadOnlyDictionary<int, string> Outputs => _outputs;

    /// <summary>Forward output <paramref name="i"/> ("" when absent).</summary>
    public string O(int i) => i < Node.Output.Count ? Node.Output[i] : "";

    /// <summary>Whether output <paramref name="i"/> is present.</summary>
    public bool HasOutput(int i) => O(i).Length > 0;

    /// <summary>Binds forward output <paramref name="k"/> to <paramref name="value"/>, which the decomposition computed from the node's inputs.</summary>
    public void SetOutput(int k, string value)
    {
        if (!HasOutput(k)) throw Fail($"output {k} is absent, so it cannot be bound");
        _outputs[k] = value;
    }

    /// <summary>The inferred type of a forward value.</summary>
    public TypeAndShape Type(string value) =>
        Types.TryGetValue(value, out var t) ? t : throw Fail($"the type of '{value}' is unknown (shape inference found none)");

    /// <summary>The rank of a forward value.</summary>
    public int Rank(string value) => Type(value).Rank ?? throw Fail($"the rank of '{value}' is unknown");

    /// <summary>The values of a constant int64 or bool input (bools read as 0/1), or null when computed.</summary>
    public long[]? ConstantInts(int i) => HasInput(i) ? _constants(I(i)) : null;

    /// <summary>The values of a constant int64 or bool value (bools read as 0/1), or null when computed.</summary>
    public long[]? ConstantValue(string value) => _constants(value);

    /// <summary>
    /// Copies the nodes of <paramref name="body"/> (a subgraph of the node) under fresh names, its inputs bound to
    /// <paramref name="inputs"/> in order; returns the values of its outputs, in order.
    /// </summary>
    public string[] Inline(GraphProto body, IReadOnlyList<string> inputs, string tag)
    {
        if (inputs.Count != body.Input.Count) throw Fail($"subgraph '{body.Name}' takes {body.Input.Count} inputs, {inputs.Count} given");
        var bind = body.Input.Select((v, k) => (v.Name, inputs[k])).ToDictionary(p => p.Name, p => p.Item2, StringComparer.Ordinal);
        var map = SubgraphCopy.Inline(Builder, body, bind, $"{Prefix}/{tag}");
        return body.Output.Select(o => map.GetValueOrDefault(o.Name, o.Name)).ToArray();
    }

    /// <summary>An error naming this node and its op.</summary>
    public override OnnxAdadeltaException Fail(string problem) =>
        new($"Gradient of node '{Node.Name}' ({Node.OpType}, through its decomposition): {problem}.");
}
