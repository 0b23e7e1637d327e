namespace OnnxAdadelta.Gradients;

/// <summary>
/// Gradients of the Reduce ops: ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd, ReduceSumSquare, ReduceL1,
/// ReduceL2, ReduceLogSum and ReduceLogSumExp (axes as an input, or before opset 18 an attribute, except ReduceSum's,
/// an input from opset 13; keepdims; noop_with_empty_axes).
/// </summary>
/// <remarks>
/// Each rule re-expands the output gradient g (and where needed the output y) to the input's shape and multiplies by
/// ∂y/∂x elementwise. With noop_with_empty_axes=1 and no axes nothing is reduced, but ONNX Runtime still applies the
/// op's elementwise part (x² for ReduceSumSquare, |x| for ReduceL1 and ReduceL2, log x for ReduceLogSum): the same
/// formulas then hold with y of x's shape, and ReduceSum, ReduceMean, ReduceMax, ReduceMin and ReduceProd are identities.
/// </remarks>
public static partial class GradientRules
{
    private static void RegisterReductions(Dictionary<string, GradientRuleInfo> r)
    {
        Add(r, c =>
        {
            c.SetGI(0, ReducedGradient(c));
        }, Inputs(0), "ReduceSum");
        Add(r, c =>
        {
            var g = ReducedGradient(c);
            var count = c.Op("CastLike", [c.Op("Div", [c.Op("Size", [c.I(0)]), c.Op("Size", [c.O(0)])]), c.I(0)]);
            c.SetGI(0, c.Op("Div", [g, count]));
        }, Inputs(0), "ReduceMean");
        Add(r, c =>
        {
            // The gradient goes to the maxima (minima), split evenly among ties.
            var g = ReducedGradient(c);
            if (Noop(c))
            {
                c.SetGI(0, g);
                return;
            }
            var y = Expanded(c, c.O(0));
            var mask = c.Op("Equal", [c.I(0), y]);
            var ties = c.Op("CastLike", [mask, c.I(0)]);
            var count = ReduceLikeNode(c, "ReduceSum", ties);
            c.SetGI(0, c.Op("Where", [mask, c.Op("Div", [g, Expanded(c, count, keepDims: true)]), c.Scalar(0, c.I(0))]));
        }, Inputs(0), "ReduceMax", "ReduceMin");
        Add(r, c =>
        {
            // y = Σx²: dx = 2x·g.
            var g = ReducedGradient(c);
            c.SetGI(0, c.Op("Mul", [g, c.Op("Mul", [c.I(0), c.Scalar(2, c.I(0))])]));
        }, Inputs(0), "ReduceSumSquare");
        Add(r, c =>
        {
            // y = Σ|x|: dx = sign(x)·g (0 at x = 0, the subgradient ONNX Runtime's Abs rule also takes).
            var g = ReducedGradient(c);
            c.SetGI(0, c.Op("Mul", [g, c.Op("Sign", [c.I(0)])]));
        }, Inputs(0), "ReduceL1");
        Add(r, c =>
        {
            // y = √Σx²: dx = x/y·g, and 0 where y = 0 (every element of the group is 0).
            var g = ReducedGradient(c);
            var x = c.I(0);
            var y = Expanded(c, c.O(0));
            var zero = c.Scalar(0, x);
            var isZero = c.Op("Equal", [y, zero]);
            var safe = c.Op("Where", [isZero, c.Scalar(1, x), y]);
            c.SetGI(0, c.Op("Where", [isZero, zero, c.Op("Mul", [g, c.Op("Div", [x, safe])])]));
        }, Inputs(0), "ReduceL2");
        Add(r, c =>
        {
            // y = log Σx: dx = g/Σx = g·e^(−y).
            var g = ReducedGradient(c);
            var y = Expanded(c, c.O(0));
            c.SetGI(0, c.Op("Mul", [g, c.Op("Exp", [c.Op("Neg", [y])])]));
        }, Inputs(0), "ReduceLogSum");
        Add(r, c =>
        {
            // y = log Σe^x: dx = e^(x−y)·g, the softmax of the group.
            var g = ReducedGradient(c);
            var y = Expanded(c, c.O(0));
            c.SetGI(0, c.Op("Mul", [g, c.Op("Exp", [c.Op("Sub", [c.I(0), y])])]));
        }, Inputs(0), "ReduceLogSumExp");
        Add(r, ReduceProdGradient, Inputs(0), "ReduceProd");
    }

    /// <summary>
    /// ReduceProd: ∂y/∂x_i is the product of the other elements of x_i's group, computed exactly with zeros: with P the
    /// product of the group's nonzero elements and z the number of its zeros, it is P/x_i when z = 0, P at the zero
    /// (and 0 elsewhere) when z = 1, and 0 everywhere when z ≥ 2.
    /// </summary>
    private static void ReduceProdGradient(GradientContext c)
    {
        var g = ReducedGradient(c);
        if (Noop(c))
        {
            c.SetGI(0, g);
            return;
        }
        var x = c.I(0);
        var zero = c.Scalar(0, x);
        var one = c.Scalar(1, x);
        var isZero = c.Op("Equal", [x, zero]);
        var nonzero = c.Op("Where", [isZero, one, x]);
        var product = Expanded(c, ReduceLikeNode(c, "ReduceProd", nonzero), keepDims: true);
        var zeros = Expanded(c, ReduceLikeNode(c, "ReduceSum", c.Op("CastLike", [isZero, x])), keepDims: true);
        var others = c.Op("Where", [c.Op("Equal", [zeros, zero]), c.Op("Div", [product, nonzero]),
            c.Op("Where", [c.Op("And", [c.Op("Equal", [zeros, one]), isZero]), product, zero])]);
        c.SetGI(0, c.Op("Mul", [g, others]));
    }

    private static global::OnnxAdadelta.Onnx.Proto.AttributeProto A(string name, long value) => GradientContext.Attr(name, value);

    /// <summary>
    /// <paramref name="op"/> (a Reduce op) of <paramref name="x"/> over the node's axes with keepdims=1, the axes passed
    /// as that op takes them at the model's opset (ReduceSum: an input; the others: an attribute before opset 18).
    /// </summary>
    private static string ReduceLikeNode(GradientContext c, string op, string x)
    {
        var axes = Axes(c);
        if (axes is null) return c.Op(op, [x], A("keepdims", 1));
        if (op == "ReduceSum" || c.Opset >= 18) return c.Op(op, [x, axes], A("keepdims", 1));
        // The node itself takes its axes as an attribute here (opset < 18), so they are constants.
        return c.Op(op, [x], A("keepdims", 1), GradientContext.Attr("axes", c.Ints("axes")!));
    }

    /// <summary>The reduction's axes as a tensor name, or null for "all axes".</summary>
    private static string? Axes(GradientContext c)
    {
        bool axesInput = c.Node.OpType == "ReduceSum" || c.Opset >= 18;
        if (axesInput) return c.HasInput(1) ? c.I(1) : null;
        return c.Ints("axes") is { Length: > 0 } axes ? c.Ints64(axes) : null;
    }

    /// <summary>Whether the node reduces nothing: no axes, and noop_with_empty_axes=1.</summary>
    private static bool Noop(GradientContext c) => Axes(c) is null && c.Int("noop_with_empty_axes", 0) == 1;

    /// <summary>
    /// The output gradient broadcast back to the input's shape (itself when <see cref="Noop"/>); refuses attributes no
    /// Reduce op has.
    /// </summary>
    private static string ReducedGradient(GradientContext c)
    {
        foreach (var attribute in c.Node.Attribute)
            if (attribute.Name is not ("keepdims" or "noop_with_empty_axes" or "axes"))
                throw c.Fail($"attribute '{attribute.Name}' is not handled by the gradient rule (known: axes, keepdims, noop_with_empty_axes)");
        if (c.Attribute("axes") is not null && (c.Node.OpType == "ReduceSum" || c.Opset >= 18))
            throw c.Fail($"the 'axes' attribute is not part of {c.Node.OpType} at opset {c.Opset} (the axes are an input)");
        return Expanded(c, c.GO(0)!);
    }

    /// <summary>A value of the reduced shape, re-expanded to the input's shape.</summary>
    private static string Expanded(GradientContext c, string reduced, bool keepDims = false)
    {
        if (Noop(c)) return reduced;
        var axes = Axes(c);
        var g = reduced;
        if (!keepDims && c.Int("keepdims", 1) == 0 && axes is not null) g = c.Op("Unsqueeze", [g, axes]);
        return c.Op("Expand", [g, c.Shape(c.I(0))]);
    }
}
