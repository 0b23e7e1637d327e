using G = OnnxAdadelta.Gradients.GradientContext;

namespace OnnxAdadelta.Gradients;

/// <summary>
/// Gradients of the index-driven ops: GatherElements, GatherND, ScatterElements, ScatterND, TopK, CumSum and Trilu;
/// and Mod.
/// </summary>
/// <remarks>
/// Gathers send each output gradient back to the element it was read from, adding where an element was read more
/// than once; scatters split the output gradient between the elements of data that survive and the updates written
/// over them. Every attribute these ops have in opsets 13–22 is handled or refused by name.
/// </remarks>
public static partial class GradientRules
{
    private static void RegisterIndexing(Dictionary<string, GradientRuleInfo> r)
    {
        Add(r, GatherElementsGradient, Inputs(0), "GatherElements");
        Add(r, c =>
        {
            // GatherND (batch_dims): through the index map, which lets GatherND itself resolve batch_dims and negative
            // indices; an element gathered twice gets both gradients.
            ShapeGrad.Known(c, "batch_dims");
            var batchDims = G.Attr("batch_dims", c.Int("batch_dims", 0));
            c.SetGI(0, ShapeGrad.ScatterThroughIndexMap(c, c.I(0), c.GO(0)!, positions => c.Op("GatherND", [positions, c.I(1)], batchDims), repeats: true));
        }, Inputs(0), "GatherND");
        Add(r, c => ScatterGradient(c, elements: true), Inputs(0, 2), "ScatterElements");
        Add(r, c => ScatterGradient(c, elements: false), Inputs(0, 2), "ScatterND");
        Add(r, TopKGradient, Inputs(0), "TopK");
        Add(r, c =>
        {
            // y_i = Σ_{j≤i} x_j (j<i when exclusive; j≥i, j>i when reverse): dx_j = Σ_{i≥j} g_i, the same sum run the
            // other way with the same exclusivity. The axis input is reused as it is.
            ShapeGrad.Known(c, "exclusive", "reverse");
            c.SetGI(0, c.Op("CumSum", [c.GO(0)!, c.I(1)], G.Attr("exclusive", c.Int("exclusive", 0)), G.Attr("reverse", c.Int("reverse", 0) == 0 ? 1L : 0L)));
        }, Inputs(0), "CumSum");
        Add(r, c =>
        {
            // Trilu keeps a fixed triangle (upper, k): the gradient is the same triangle of the output gradient.
            ShapeGrad.Known(c, "upper");
            string[] inputs = c.HasInput(1) ? [c.GO(0)!, c.I(1)] : [c.GO(0)!];
            c.SetGI(0, c.Op("Trilu", inputs, G.Attr("upper", c.Int("upper", 1))));
        }, Inputs(0), "Trilu");
        Add(r, ModGradient, null, "Mod");
    }

    /// <summary>
    /// GatherElements (axis, negative allowed; negative indices allowed): the output gradient is added into zeros of
    /// data's shape by ScatterElements with reduction="add" along the same axis, after negative indices get the axis
    /// size added.
    /// </summary>
    private static void GatherElementsGradient(GradientContext c)
    {
        ShapeGrad.Known(c, "axis");
        var data = c.I(0);
        int rank = c.Rank(data);
        var axis = c.Int("axis", 0);
        int a = (int)(axis < 0 ? axis + rank : axis);
        if (a < 0 || a >= rank) throw c.Fail($"axis={axis} is out of range for rank {rank}");
        var indices = c.I(1);
        var shape = c.Shape(data);
        var size = c.Op("CastLike", [c.Op("Gather", [shape, c.Scalar(a, shape)]), indices]);
        var normalized = c.Op("Where", [c.Op("Less", [indices, c.Scalar(0, indices)]), c.Op("Add", [indices, size]), indices]);
        var go = c.GO(0)!;
        c.SetGI(0, c.Op("ScatterElements", [ShapeGrad.Zeros(c, shape, go), normalized, go], G.Attr("axis", (long)a), G.Attr("reduction", "add")));
    }

    /// <summary>
    /// ScatterElements (axis, reduction) and ScatterND (reduction). reduction="none": data's gradient is the output
    /// gradient with zeros where updates were written; an update's gradient is the output gradient it landed on
    /// (GatherElements / GatherND of it), and 0 for an update overwritten by a later one at the same place (the
    /// winners are found by scattering each update's position number the same way and reading back which survived).
    /// reduction="add": data's gradient is the output gradient, and each update's the gradient it was added to. mul,
    /// max and min are refused.
    /// </summary>
    private static void ScatterGradient(GradientContext c, bool elements)
    {
        if (elements) ShapeGrad.Known(c, "axis", "reduction");
        else ShapeGrad.Known(c, "reduction");
        var reduction = c.String("reduction", "none");
        var go = c.GO(0)!;
        var attributes = elements ? new[] { G.Attr("axis", c.Int("axis", 0)) } : [];
        var scatter = elements ? "ScatterElements" : "ScatterND";
        var gather = elements ? "GatherElements" : "GatherND";
        string indices = c.I(1), updates = c.I(2);
        string Gathered(string from) => c.Op(gather, [from, indices], attributes);
        switch (reduction)
        {
            case "add":
                c.SetGI(0, go);
                if (c.IsGradientRequired(2)) c.SetGI(2, Gathered(go));
                break;
            case "none":
                if (c.IsGradientRequired(0))
                    c.SetGI(0, c.Op(scatter, [go, indices, ShapeGrad.Zeros(c, c.Shape(updates), go)], attributes));
                if (c.IsGradientRequired(2))
                {
                    var count = c.Op("Size", [updates]);
                    var ids = ShapeGrad.ReshapeTo(c, c.Op("Range", [c.Scalar(0, count), count, c.Scalar(1, count)]), c.Shape(updates));
                    var unwritten = c.Op("Expand", [c.ScalarInt64(-1), c.Shape(c.I(0))]);
                    var landed = Gathered(c.Op(scatter, [unwritten, indices, ids], attributes));
                    var winners = c.Op("Equal", [landed, ids]);
                    c.SetGI(2, c.Op("Where", [winners, Gathered(go), c.Scalar(0, go)]));
                }
                break;
            default:
                throw c.Fail($"reduction='{reduction}' has no gradient rule (only 'none' and 'add' are supported)");
        }
    }

    /// <summary>
    /// TopK (axis, largest, sorted; K input): the values' gradient goes back to the positions the indices output names,
    /// by ScatterElements into zeros of X's shape along the axis (the indices of one slice are distinct).
    /// </summary>
    private static void TopKGradient(GradientContext c)
    {
        ShapeGrad.Known(c, "axis", "largest", "sorted");
        if (c.GO(0) is not { } go) return;
        var x = c.I(0);
        c.SetGI(0, c.Op("ScatterElements", [ShapeGrad.Zeros(c, c.Shape(x), go), c.O(1), go], G.Attr("axis", c.Int("axis", -1))));
    }

    /// <summary>
    /// Mod of floating-point values (fmod=1, C's fmod; ONNX requires it for floats): y = a − b·trunc(a/b), so
    /// da = g and db = −g·trunc(a/b), with trunc(a/b) read off the output as round((a − y)/b); both are summed down
    /// to the operand's shape. Integer Mod carries no gradient and never reaches the rule.
    /// </summary>
    private static void ModGradient(GradientContext c)
    {
        ShapeGrad.Known(c, "fmod");
        if (c.Int("fmod", 0) != 1) throw c.Fail("fmod=0 is integer Mod, which has no gradient (floating-point Mod requires fmod=1)");
        var go = c.GO(0)!;
        c.SetGIBroadcast(0, go, c.O(0));
        if (c.IsGradientRequired(1))
        {
            var quotient = c.Op("Round", [c.Op("Div", [c.Op("Sub", [c.I(0), c.O(0)]), c.I(1)])]);
            c.SetGIBroadcast(1, c.Op("Neg", [c.Op("Mul", [go, quotient])]), c.O(0));
        }
    }
}
