using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Onnx;

namespace OnnxAdadelta.Graphs;

/// <summary>
/// What every per-node rule works with, whether it differentiates a forward node (the autodiff's
/// <c>GradientContext</c>) or lowers a com.microsoft node (the importer's <c>LoweringContext</c>): the node's inputs and attributes, and a way to
/// emit standard ai.onnx nodes and constants named under <see cref="Prefix"/>.
/// </summary>
public abstract class NodeRuleContext
{
    private readonly GraphBuilder _b;

    private protected NodeRuleContext(GraphBuilder builder, NodeProto node, int opset, string prefixSuffix)
    {
        _b = builder;
        Node = node;
        Opset = opset;
        Prefix = $"{(node.Name.Length > 0 ? node.Name : node.Output[0])}{prefixSuffix}";
    }

    /// <summary>The builder the rule's nodes go into.</summary>
    private protected GraphBuilder Builder => _b;

    /// <summary>The node the rule works on.</summary>
    public NodeProto Node { get; }

    /// <summary>The model's ai.onnx opset.</summary>
    public int Opset { get; }

    /// <summary>The prefix of names the rule emits.</summary>
    public string Prefix { get; }

    /// <summary>Input <paramref name="i"/> ("" when absent).</summary>
    public string I(int i) => i < Node.Input.Count ? Node.Input[i] : "";

    /// <summary>Whether input <paramref name="i"/> is present.</summary>
    public bool HasInput(int i) => I(i).Length > 0;

    /// <summary>An error naming the node and its op.</summary>
    public abstract OnnxAdadeltaException Fail(string problem);

    // ---- attributes

    /// <summary>An attribute, or null.</summary>
    public AttributeProto? Attribute(string name) => Node.Attribute.FirstOrDefault(a => a.Name == name);

    /// <summary>An int attribute or its default.</summary>
    public long Int(string name, long fallback) => Attribute(name) is { } a ? a.I : fallback;

    /// <summary>A float attribute or its default.</summary>
    public float Float(string name, float fallback) => Attribute(name) is { } a ? a.F : fallback;

    /// <summary>An ints attribute or its default.</summary>
    public long[]? Ints(string name, long[]? fallback = null) => Attribute(name) is { } a ? [.. a.Ints] : fallback;

    /// <summary>A string attribute or its default.</summary>
    public string String(string name, string fallback) => Attribute(name) is { } a ? a.S.ToStringUtf8() : fallback;

    /// <summary>A named int attribute.</summary>
    public static AttributeProto Attr(string name, long value) => GraphBuilder.Attr(name, value);

    /// <summary>A named ints attribute.</summary>
    public static AttributeProto Attr(string name, long[] values) => GraphBuilder.Attr(name, values);

    /// <summary>A named float attribute.</summary>
    public static AttributeProto Attr(string name, float value) => GraphBuilder.Attr(name, value);

    /// <summary>A named string attribute.</summary>
    public static AttributeProto Attr(string name, string value) => GraphBuilder.Attr(name, value);

    // ---- emission

    /// <summary>Emits a one-output ai.onnx node; returns the output's name.</summary>
    public string Op(string opType, string[] inputs, params AttributeProto[] attributes) =>
        _b.Add(opType, inputs, $"{Prefix}/{opType}", attributes);

    /// <summary>Emits a node with <paramref name="outputs"/> outputs; returns their names.</summary>
    public string[] Ops(string opType, string[] inputs, int outputs, params AttributeProto[] attributes) =>
        _b.Add(opType, inputs, Enumerable.Range(0, outputs).Select(k => $"{Prefix}/{opType}_{k}").ToArray(), attributes);

    /// <summary>A constant of exactly <paramref name="tensor"/>'s type and shape (its name is ignored).</summary>
    public string Constant(TensorProto tensor) => _b.Initializer($"{Prefix}/const", tensor);

    /// <summary>A scalar constant of <paramref name="like"/>'s element type (kept in float64, then CastLike).</summary>
    public string Scalar(double value, string like) => Op("CastLike", [Constant(Tensors.Create("", new[] { value })), like]);

    /// <summary>A scalar (rank-0) int64 constant.</summary>
    public string ScalarInt64(long value) => Constant(Tensors.Create("", new[] { value }));

    /// <summary>A scalar (rank-0) float32 constant.</summary>
    public string ScalarFloat(float value) => Constant(Tensors.Create("", new[] { value }));

    /// <summary>A 1-D int64 constant (axes, shapes, perms).</summary>
    public string Ints64(params long[] values) => _b.Initializer($"{Prefix}/ints", Tensors.Create("", values, values.Length));

    /// <summary>The shape of a value, as an int64 tensor.</summary>
    public string Shape(string value) => Op("Shape", [value]);

    /// <summary>Reshapes <paramref name="x"/> to the shape of <paramref name="like"/>.</summary>
    public string ReshapeLike(string x, string like) => Op("Reshape", [x, Shape(like)]);

    /// <summary>ReduceSum over constant axes (opset 13+: axes as an input).</summary>
    public string ReduceSum(string x, long[] axes, bool keepDims) =>
        Op("ReduceSum", [x, Ints64(axes)], Attr("keepdims", keepDims ? 1L : 0L));

    /// <summary>ReduceMean over constant axes: the axes are an attribute before opset 18 and an input from opset 18 on.</summary>
    public string ReduceMean(string x, long[] axes, bool keepDims) => Opset >= 18
        ? Op("ReduceMean", [x, Ints64(axes)], Attr("keepdims", keepDims ? 1L : 0L))
        : Op("ReduceMean", [x], Attr("axes", axes), Attr("keepdims", keepDims ? 1L : 0L));
}
