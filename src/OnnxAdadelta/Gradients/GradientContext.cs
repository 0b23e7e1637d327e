using Google.Protobuf;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;
using OnnxAdadelta.Runtime;

namespace OnnxAdadelta.Gradients;

/// <summary>
/// What a gradient rule sees of one forward node, in ONNX Runtime's vocabulary: <see cref="NodeRuleContext.I"/> and <see cref="O"/>
/// name the forward inputs and outputs, <see cref="GO"/> the gradient arriving at an output, and
/// <see cref="SetGI(int, string)"/> hands back the gradient of an input. Nodes a rule emits are named
/// <c>&lt;node&gt;_Grad/…</c>.
/// </summary>
public sealed class GradientContext : NodeRuleContext
{
    private readonly Func<string, string?> _go;
    private readonly Func<int, bool> _required;
    private readonly Dictionary<int, string> _gi = [];

    internal GradientContext(GraphBuilder builder, NodeProto node, int opset, IReadOnlyDictionary<string, TypeAndShape> types,
        Func<string, string?> gradientOf, Func<int, bool> required)
        : base(builder, node, opset, "_Grad")
    {
        Types = types;
        _go = gradientOf;
        _required = required;
    }

    /// <summary>Inferred types of the forward values.</summary>
    public IReadOnlyDictionary<string, TypeAndShape> Types { get; }

    internal IReadOnlyDictionary<int, string> InputGradients => _gi;

    private readonly Dictionary<string, string> _outerGi = new(StringComparer.Ordinal);

    internal IReadOnlyDictionary<string, string> OuterInputGradients => _outerGi;

    /// <summary>The pass differentiating the graph this node is in (for rules that differentiate subgraphs).</summary>
    internal ReversePass? Pass { get; init; }

    /// <summary>Whether outer-scope gradients are needed, by value (set by the driver).</summary>
    internal Func<string, bool>? OuterRequired { get; init; }

    /// <summary>The outer-scope values the node's subgraphs read, in first-use order.</summary>
    public IReadOnlyList<string> OuterInputs => field ??= GraphPasses.OuterScopeInputs(Node).Distinct().ToList();

    /// <summary>Whether the gradient of outer-scope value <paramref name="value"/> (read by a subgraph) is needed.</summary>
    public bool IsOuterGradientRequired(string value) => OuterRequired?.Invoke(value) == true && OuterInputs.Contains(value);

    /// <summary>Hands back the gradient of outer-scope value <paramref name="value"/>, already of its shape.</summary>
    public void SetOuterGI(string value, string gradient)
    {
        if (IsOuterGradientRequired(value)) _outerGi[value] = gradient;
    }

    /// <summary>Nodes emitted by this context go into this builder.</summary>
    internal GraphBuilder Emitter => Builder;

    /// <summary>Forward output <paramref name="i"/>.</summary>
    public string O(int i) => Node.Output[i];

    /// <summary>The gradient arriving at output <paramref name="i"/>, or null when none reaches it.</summary>
    public string? GO(int i) => i < Node.Output.Count ? _go(Node.Output[i]) : null;

    /// <summary>Whether the gradient of input <paramref name="i"/> is needed.</summary>
    public bool IsGradientRequired(int i) => HasInput(i) && _required(i);

    /// <summary>Hands back the gradient of input <paramref name="i"/>, already of the input's shape.</summary>
    public void SetGI(int i, string gradient)
    {
        if (IsGradientRequired(i)) _gi[i] = gradient;
    }

    /// <summary>Hands back a gradient of output <paramref name="from"/>'s (broadcast) shape, summed down to input <paramref name="i"/>'s shape.</summary>
    public void SetGIBroadcast(int i, string gradient, string from)
    {
        if (IsGradientRequired(i)) _gi[i] = Unbroadcast(gradient, from, I(i));
    }

    /// <summary>The inferred type of a forward value.</summary>
    public TypeAndShape Type(string value) =>
        Types.TryGetValue(value, out var t) ? t : throw Fail($"the type of '{value}' is unknown (shape inference found none)");

    /// <summary>The rank of a forward value.</summary>
    public int Rank(string value) => Type(value).Rank ?? throw Fail($"the rank of '{value}' is unknown");

    /// <summary>
    /// The values of a constant int64 or bool input (an initializer or a Constant node's tensor; bools read as 0/1),
    /// or null when computed.
    /// </summary>
    public long[]? ConstantInts(int i) => HasInput(i) ? ConstantValues?.Invoke(I(i)) : null;

    internal Func<string, long[]?>? ConstantValues { get; init; }

    /// <summary>
    /// The values of a constant float32 or float64 input (an initializer or a Constant node's tensor), or null when it
    /// is computed or of another type.
    /// </summary>
    public double[]? ConstantFloats(int i) => (HasInput(i) ? ConstantTensorOf?.Invoke(I(i)) : null) switch
    {
        { DataType: (int)DataType.Float } t => [.. t.ToFloatArray().Select(v => (double)v)],
        { DataType: (int)DataType.Double } t => t.ToArray<double>(),
        _ => null,
    };

    internal Func<string, TensorProto?>? ConstantTensorOf { get; init; }

    /// <summary>
    /// Sums <paramref name="gradient"/> (shaped like forward value <paramref name="from"/>) down to the shape of
    /// <paramref name="to"/>, undoing numpy-style broadcasting: leading extra axes and axes where <paramref name="to"/>
    /// has size 1 are summed. Uses the inferred ranks and static sizes.
    /// </summary>
    public string Unbroadcast(string gradient, string from, string to) =>
        Unbroadcast(gradient, Type(from).Dims ?? throw Fail($"the rank of '{from}' is unknown"), to, Type(from));

    /// <summary>
    /// Sums <paramref name="gradient"/>, whose dimensions are <paramref name="fromDims"/> (sizes where known), down to the
    /// shape of forward value <paramref name="to"/>, like <see cref="Unbroadcast(string, string, string)"/>; for
    /// gradients of a shape no forward value has (such as a batched product before its batch axes are summed).
    /// </summary>
    public string Unbroadcast(string gradient, long?[] fromDims, string to) => Unbroadcast(gradient, fromDims, to, null);

    private string Unbroadcast(string gradient, long?[] fromDims, string to, TypeAndShape? fromType)
    {
        var f = fromDims;
        var toType = Type(to);
        var t = toType.Dims ?? throw Fail($"the rank of '{to}' is unknown");
        if (f.Length == t.Length && f.Zip(t).All(p => p.First == p.Second && p.First is not null)) return gradient;
        int lead = f.Length - t.Length;
        if (lead < 0) throw Fail($"'{to}' has more dimensions than the broadcast gradient (rank {f.Length})");
        // A symbolic target size may be 1 at run time while the gradient's is not: then only run time can tell. Two
        // dimensions with the same symbol (batch and batch) are equal; a static size > 1 or another symbol may not be.
        bool SameSymbol(int a) => fromType?.Symbol(a) is { } fs && fs == toType.Symbol(a - lead);
        bool dynamic = Enumerable.Range(lead, t.Length).Any(a => t[a - lead] is null && f[a] != 1 && !SameSymbol(a));
        if (dynamic) return UnbroadcastDynamic(gradient, to, lead);
        var axes = Enumerable.Range(0, f.Length).Where(a => a < lead || (t[a - lead] == 1 && f[a] != 1)).Select(a => (long)a).ToArray();
        if (axes.Length == 0) return gradient;
        var summed = ReduceSum(gradient, axes, keepDims: true);
        return ReshapeLike(summed, to);
    }

    /// <summary>
    /// <see cref="Unbroadcast(string, long?[], string)"/> with the axes found at run time: the target's shape, padded
    /// with <paramref name="lead"/> leading ones, is compared with the gradient's; every axis where the target has 1
    /// and the gradient does not is summed (ReduceSum with noop_with_empty_axes), then the result takes the target's shape.
    /// </summary>
    private string UnbroadcastDynamic(string gradient, string to, int lead)
    {
        var toShape = Shape(to);
        var padded = lead == 0 ? toShape : Op("Concat", [Ints64(Enumerable.Repeat(1L, lead).ToArray()), toShape], Attr("axis", 0L));
        var one = Ints64(1);
        var mask = Op("And", [Op("Equal", [padded, one]), Op("Not", [Op("Equal", [Shape(gradient), one])])]);
        var axes = Op("Reshape", [Op("NonZero", [mask]), Ints64(-1)]);
        var summed = Op("ReduceSum", [gradient, axes], Attr("keepdims", 1L), Attr("noop_with_empty_axes", 1L));
        return Op("Reshape", [summed, toShape]);
    }

    /// <summary>An error naming this node and its op.</summary>
    public override OnnxAdadeltaException Fail(string problem) =>
        new($"Gradient of node '{Node.Name}' ({Node.OpType}): {problem}.");
}
