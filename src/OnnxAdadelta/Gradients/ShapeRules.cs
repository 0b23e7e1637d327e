using G = OnnxAdadelta.Gradients.GradientContext;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Gradients;

/// <summary>
/// Gradients of shape and data-movement ops: Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat, Split, Slice,
/// Expand, Gather, Pad and Tile; Constant and ConstantOfShape carry no gradient.
/// </summary>
/// <remarks>
/// Ops that only move elements send each output gradient back to where its element came from; Slice does it through
/// the index map of <see cref="ShapeGrad.ScatterThroughIndexMap"/>. Every attribute these ops have in opsets 13–21 is
/// handled; any other attribute is refused by name.
/// </remarks>
public static partial class GradientRules
{
    private static void RegisterShape(Dictionary<string, GradientRuleInfo> r)
    {
        // Neither has a differentiable input: their outputs are constants as far as the autodiff is concerned.
        r["Constant"] = new GradientRuleInfo(null);
        r["ConstantOfShape"] = new GradientRuleInfo(null);

        // Reshape (allowzero), Flatten (axis), Squeeze and Unsqueeze (axes inputs): the gradient takes X's shape back.
        Add(r, c =>
        {
            ShapeGrad.Known(c, c.Node.OpType switch { "Reshape" => ["allowzero"], "Flatten" => ["axis"], _ => [] });
            c.SetGI(0, ShapeGrad.ReshapeTo(c, c.GO(0)!, c.Shape(c.I(0))));
        }, Inputs(0), "Reshape", "Flatten", "Squeeze", "Unsqueeze");
        Add(r, TransposeGradient, null, "Transpose");
        Add(r, ConcatGradient, null, "Concat");
        Add(r, SplitGradient, Inputs(0), "Split");
        Add(r, SliceGradient, Inputs(0), "Slice");
        Add(r, c =>
        {
            ShapeGrad.Known(c);
            c.SetGIBroadcast(0, c.GO(0)!, c.O(0));
        }, Inputs(0), "Expand");
        Add(r, GatherGradient, Inputs(0), "Gather");
        Add(r, PadGradient, Inputs(0, 2), "Pad");
        Add(r, TileGradient, Inputs(0), "Tile");
    }

    /// <summary>Transpose (perm, default reversed): the output gradient goes through the inverse permutation.</summary>
    private static void TransposeGradient(GradientContext c)
    {
        ShapeGrad.Known(c, "perm");
        var perm = c.Ints("perm") ?? Enumerable.Range(0, c.Rank(c.I(0))).Reverse().Select(a => (long)a).ToArray();
        var inverse = new long[perm.Length];
        var seen = new bool[perm.Length];
        for (int i = 0; i < perm.Length; i++)
        {
            var p = perm[i] < 0 ? perm[i] + perm.Length : perm[i];
            if (p < 0 || p >= perm.Length || seen[p]) throw c.Fail($"perm [{string.Join(",", perm)}] is not a permutation");
            seen[p] = true;
            inverse[p] = i;
        }
        c.SetGI(0, c.Op("Transpose", [c.GO(0)!], G.Attr("perm", inverse)));
    }

    /// <summary>
    /// Concat (axis, negative allowed): the output gradient is split along the axis into pieces of the inputs' sizes
    /// there, read at run time from Shape(input) so that dynamic sizes work.
    /// </summary>
    private static void ConcatGradient(GradientContext c)
    {
        ShapeGrad.Known(c, "axis");
        var axis = c.Attribute("axis")?.I ?? throw c.Fail("the required attribute 'axis' is missing");
        int n = c.Node.Input.Count;
        if (n == 1)
        {
            c.SetGI(0, c.GO(0)!);
            return;
        }
        var at = c.Ints64(axis);
        var sizes = c.Op("Concat", Enumerable.Range(0, n).Select(i => c.Op("Gather", [c.Shape(c.I(i)), at])).ToArray(), G.Attr("axis", 0));
        var pieces = c.Ops("Split", [c.GO(0)!, sizes], n, G.Attr("axis", axis));
        for (int i = 0; i < n; i++) c.SetGI(i, pieces[i]);
    }

    /// <summary>
    /// Split (axis; sizes from the split input or num_outputs): the gradient is the concatenation of the output
    /// gradients along the axis, with zeros of its output's shape for an output no gradient reaches.
    /// </summary>
    private static void SplitGradient(GradientContext c)
    {
        ShapeGrad.Known(c, "axis", "num_outputs");
        var axis = c.Int("axis", 0);
        var parts = Enumerable.Range(0, c.Node.Output.Count)
            .Select(k => c.GO(k) ?? ShapeGrad.Zeros(c, c.Shape(c.O(k)), c.I(0)))
            .ToArray();
        c.SetGI(0, parts.Length == 1 ? parts[0] : c.Op("Concat", parts, G.Attr("axis", axis)));
    }

    /// <summary>
    /// Slice (starts, ends, axes, steps inputs): zeros of X's shape with the output gradient at the sliced positions.
    /// Constant step-1 slices of static extent are undone by a Pad; any other slice (computed bounds, other steps,
    /// negative ones included) through the index map of <see cref="ShapeGrad.ScatterThroughIndexMap"/>.
    /// </summary>
    private static void SliceGradient(GradientContext c)
    {
        ShapeGrad.Known(c);
        var go = c.GO(0)!;
        if (StaticSlicePads(c) is { } pads)
        {
            c.SetGI(0, pads.All(p => p == 0) ? go : c.Op("Pad", [go, c.Ints64(pads)], G.Attr("mode", "constant")));
            return;
        }
        var inputs = Enumerable.Range(1, c.Node.Input.Count - 1).Select(c.I).ToArray();
        c.SetGI(0, ShapeGrad.ScatterThroughIndexMap(c, c.I(0), go, index => c.Op("Slice", [index, .. inputs]), repeats: false));
    }

    /// <summary>
    /// The Pad pads (begins, then ends, over every axis) that undo a Slice whose starts, ends, axes and steps are
    /// constants with every step 1 and whose sliced axes have static sizes; null otherwise, or when the slice is empty.
    /// Bounds follow the spec: negative values get the axis size added, then are clamped into [0, size].
    /// </summary>
    private static long[]? StaticSlicePads(GradientContext c)
    {
        if (c.ConstantInts(1) is not { } starts || c.ConstantInts(2) is not { } ends || starts.Length != ends.Length) return null;
        var dims = c.Type(c.I(0)).Dims;
        if (dims is null) return null;
        int rank = dims.Length;
        long[] axes;
        if (!c.HasInput(3)) axes = Enumerable.Range(0, starts.Length).Select(a => (long)a).ToArray();
        else if (c.ConstantInts(3) is { } given && given.Length == starts.Length) axes = given;
        else return null;
        if (c.HasInput(4) && (c.ConstantInts(4) is not { } steps || steps.Length != starts.Length || steps.Any(s => s != 1))) return null;
        var pads = new long[2 * rank];
        for (int i = 0; i < starts.Length; i++)
        {
            var a = axes[i] < 0 ? axes[i] + rank : axes[i];
            if (a < 0 || a >= rank || dims[a] is not { } d) return null;
            var s = Math.Clamp(starts[i] < 0 ? starts[i] + d : starts[i], 0, d);
            var e = Math.Clamp(ends[i] < 0 ? ends[i] + d : ends[i], 0, d);
            if (e <= s) return null;
            pads[a] = s;
            pads[a + rank] = d - e;
        }
        return pads;
    }

    /// <summary>
    /// Gather (axis): a dense gradient of data's shape. The axis is moved to the front (a no-op for axis 0, the
    /// embedding case), indices are normalized (negative ones get the axis size added) and the output gradient,
    /// moved to match, is added into zero rows by ScatterND with reduction="add", so repeated indices accumulate.
    /// </summary>
    private static void GatherGradient(GradientContext c)
    {
        ShapeGrad.Known(c, "axis");
        var data = c.I(0);
        int r = c.Rank(data);
        int q = c.Rank(c.I(1));
        var axis = c.Int("axis", 0);
        int a = (int)(axis < 0 ? axis + r : axis);
        if (a < 0 || a >= r) throw c.Fail($"axis={axis} is out of range for rank {r}");

        var indices = c.Type(c.I(1)).ElementType == DataType.Int64
            ? c.I(1)
            : c.Op("Cast", [c.I(1)], G.Attr("to", (long)DataType.Int64));
        var shape = c.Shape(data);
        var size = c.Op("Gather", [shape, c.Scalar(a, shape)]);
        var normalized = c.Op("Where", [c.Op("Less", [indices, c.Scalar(0, indices)]), c.Op("Add", [indices, size]), indices]);
        var index = c.Op("Unsqueeze", [normalized, c.Ints64(-1)]);

        // data moved to [d_a, d_0..d_a-1, d_a+1..]; the output gradient [d_0..d_a-1, i.., d_a+1..] to [i.., d_0..d_a-1, d_a+1..].
        var dataPerm = new[] { (long)a }.Concat(Enumerable.Range(0, r).Where(k => k != a).Select(k => (long)k)).ToArray();
        var goPerm = Enumerable.Range(a, q).Concat(Enumerable.Range(0, a)).Concat(Enumerable.Range(a + q, r - 1 - a)).Select(k => (long)k).ToArray();
        var go = a == 0 ? c.GO(0)! : c.Op("Transpose", [c.GO(0)!], G.Attr("perm", goPerm));
        var zeros = ShapeGrad.Zeros(c, a == 0 ? shape : c.Op("Gather", [shape, c.Ints64(dataPerm)]), go);
        var moved = c.Op("ScatterND", [zeros, index, go], G.Attr("reduction", "add"));
        if (a == 0)
        {
            c.SetGI(0, moved);
            return;
        }
        var back = new long[r];
        for (int k = 0; k < r; k++) back[dataPerm[k]] = k;
        c.SetGI(0, c.Op("Transpose", [moved], G.Attr("perm", back)));
    }

    /// <summary>
    /// Pad, constant mode (pads input, optional constant_value, optional axes input from opset 18): the data gradient
    /// is Pad of the output gradient by the negated pads, which crops what was padded and zero-fills what negative
    /// pads cropped; constant_value's gradient is the sum of the output gradient over the padded positions.
    /// </summary>
    private static void PadGradient(GradientContext c)
    {
        ShapeGrad.Known(c, "mode");
        var mode = c.String("mode", "constant");
        if (mode != "constant")
            throw c.Fail($"mode='{mode}' has no gradient rule (only mode='constant' is supported)");
        var go = c.GO(0)!;
        string[] inputs = c.HasInput(3) ? [go, c.Op("Neg", [c.I(1)]), "", c.I(3)] : [go, c.Op("Neg", [c.I(1)])];
        var data = c.Op("Pad", inputs, G.Attr("mode", "constant"));
        c.SetGI(0, data);
        if (c.IsGradientRequired(2))
        {
            var all = c.Op("ReduceSum", [go], G.Attr("keepdims", 0));
            var fromData = c.Op("ReduceSum", [data], G.Attr("keepdims", 0));
            c.SetGI(2, ShapeGrad.ReshapeTo(c, c.Op("Sub", [all, fromData]), c.Shape(c.I(2))));
        }
    }

    /// <summary>
    /// Tile (repeats input): the output gradient, of shape [r0·d0, r1·d1, …], is viewed as [r0, d0, r1, d1, …] and
    /// summed over the repeat axes. The view's shape is built at run time; only X's rank must be static.
    /// </summary>
    private static void TileGradient(GradientContext c)
    {
        ShapeGrad.Known(c);
        var x = c.I(0);
        int rank = c.Rank(x);
        if (rank == 0)
        {
            c.SetGI(0, c.GO(0)!);
            return;
        }
        var column = c.Ints64(1);
        var pairs = c.Op("Concat", [c.Op("Unsqueeze", [c.I(1), column]), c.Op("Unsqueeze", [c.Shape(x), column])], G.Attr("axis", 1));
        var view = ShapeGrad.ReshapeTo(c, c.GO(0)!, ShapeGrad.ReshapeTo(c, pairs, c.Ints64(-1)));
        c.SetGI(0, c.ReduceSum(view, Enumerable.Range(0, rank).Select(k => 2L * k).ToArray(), keepDims: false));
    }

    /// <summary>Helpers of the shape-op rules.</summary>
    private static class ShapeGrad
    {
        /// <summary>Refuses any attribute of the node not in <paramref name="known"/>, naming it.</summary>
        public static void Known(GradientContext c, params string[] known)
        {
            foreach (var attribute in c.Node.Attribute)
                if (!known.Contains(attribute.Name))
                    throw c.Fail($"attribute '{attribute.Name}' is not handled by the gradient rule (known: {(known.Length == 0 ? "none" : string.Join(", ", known))})");
        }

        /// <summary>Reshape to a shape tensor with allowzero=1, so that a 0 in the shape means an empty axis.</summary>
        public static string ReshapeTo(GradientContext c, string x, string shape) =>
            c.Op("Reshape", [x, shape], G.Attr("allowzero", 1));

        /// <summary>Zeros of a run-time shape, of <paramref name="like"/>'s element type.</summary>
        public static string Zeros(GradientContext c, string shape, string like) =>
            c.Op("CastLike", [c.Op("ConstantOfShape", [shape]), like]);

        /// <summary>
        /// The index-map gradient of an op that only moves (or repeats) elements of <paramref name="x"/>.
        /// </summary>
        /// <remarks>
        /// <paramref name="select"/> applies the forward op, with its other inputs unchanged, to a tensor of X's shape
        /// holding the flat positions 0..numel−1 (Range, then Reshape to Shape(X)). The result holds, for each output
        /// element, the flat position in X it was read from, so ScatterND writes the output gradient
        /// <paramref name="go"/> into a flat zero tensor at those positions (reduction="add" when
        /// <paramref name="repeats"/>: an element read more than once gets the sum), and a Reshape gives it X's shape.
        /// It is exact for any starts, ends, steps (negative included), clamping or negative indices, because the
        /// forward op computes the positions itself, and it works unchanged for Gather-like ops (Gather,
        /// GatherElements, GatherND with reduction="add"). Its cost is an int64 tensor of X's size, which is why
        /// static step-1 slices use Pad and Gather scatters rows directly.
        /// </remarks>
        public static string ScatterThroughIndexMap(GradientContext c, string x, string go, Func<string, string> select, bool repeats)
        {
            var shape = c.Shape(x);
            var count = c.Op("Size", [x]);
            var positions = ReshapeTo(c, c.Op("Range", [c.Scalar(0, count), count, c.Scalar(1, count)]), shape);
            var selected = ReshapeTo(c, select(positions), c.Ints64(-1, 1));
            var zeros = Zeros(c, c.Op("Unsqueeze", [count, c.Ints64(0)]), go);
            var flat = ReshapeTo(c, go, c.Ints64(-1));
            var scattered = repeats
                ? c.Op("ScatterND", [zeros, selected, flat], G.Attr("reduction", "add"))
                : c.Op("ScatterND", [zeros, selected, flat]);
            return ReshapeTo(c, scattered, shape);
        }
    }
}
