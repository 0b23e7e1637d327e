using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Import;

// Forward com.microsoft ops that ONNX Runtime's exporters and training transformers leave in training graphs.
public static partial class LoweringRules
{
    private static void RegisterForwardContrib(Dictionary<string, LoweringRule> r)
    {
        // FusedMatMul(A, B; alpha, transA, transB, transBatchA, transBatchB) = alpha · op(A) @ op(B).
        Add(r, c =>
        {
            c.OnlyAttributes("alpha", "transA", "transB", "transBatchA", "transBatchB");
            if (c.Int("transBatchA", 0) != 0 || c.Int("transBatchB", 0) != 0)
            {
                // ONNX Runtime's kernel rejects anything else at run time.
                int ra = c.Rank(c.I(0)), rb = c.Rank(c.I(1));
                if (ra != rb || ra < 3) throw c.Fail($"transBatchA/transBatchB need operands of the same rank, at least 3 (ranks {ra} and {rb})");
            }
            var a = MatMulOperand(c, c.I(0), c.Int("transA", 0) != 0, c.Int("transBatchA", 0) != 0);
            var b = MatMulOperand(c, c.I(1), c.Int("transB", 0) != 0, c.Int("transBatchB", 0) != 0);
            var y = c.Op("MatMul", [a, b]);
            float alpha = c.Float("alpha", 1f);
            c.SetOutput(0, alpha == 1f ? y : c.Op("Mul", [y, c.Scalar(alpha, y)]));
        }, "FusedMatMul");

        // Scale(input, scale; scale_down) = input · scale, or input / scale (the scale may be of another type).
        Add(r, c =>
        {
            c.OnlyAttributes("scale_down");
            var x = c.I(0);
            // The scale is one value, given as a scalar or a one-element tensor: make it a scalar of the input's type.
            var s = c.Op("Reshape", [c.Op("CastLike", [c.I(1), x]), c.Ints64()]);
            c.SetOutput(0, c.Op(c.Int("scale_down", 0) != 0 ? "Div" : "Mul", [x, s]));
        }, "Scale");

        // ReduceSumTraining(data, axes; keepdims = 1, noop_with_empty_axes = 0) is ReduceSum-13 exactly.
        Add(r, c =>
        {
            c.OnlyAttributes("keepdims", "noop_with_empty_axes");
            string[] inputs = c.HasInput(1) ? [c.I(0), c.I(1)] : [c.I(0)];
            c.SetOutput(0, c.Op("ReduceSum", inputs,
                LoweringContext.Attr("keepdims", c.Int("keepdims", 1)),
                LoweringContext.Attr("noop_with_empty_axes", c.Int("noop_with_empty_axes", 0))));
        }, "ReduceSumTraining");

        Add(r, BroadcastGradientArgs, "BroadcastGradientArgs");

        // Gelu(X), FastGelu(X, bias?), BiasGelu(A, B): exact or tanh-approximated gelu, of the sum where there is a bias.
        Add(r, c =>
        {
            c.OnlyAttributes();
            c.SetOutput(0, Gelu(c, c.I(0)));
        }, "Gelu");
        Add(r, c =>
        {
            c.OnlyAttributes();
            c.SetOutput(0, FastGelu(c, c.HasInput(1) ? c.Op("Add", [c.I(0), c.I(1)]) : c.I(0)));
        }, "FastGelu");
        Add(r, c =>
        {
            c.OnlyAttributes();
            c.SetOutput(0, Gelu(c, c.Op("Add", [c.I(0), c.I(1)])));
        }, "BiasGelu");

        // LayerNormalization (contrib): ONNX's LayerNormalization-17 has the same inputs, outputs and attributes.
        Add(r, c =>
        {
            c.OnlyAttributes("axis", "epsilon", "stash_type");
            string[] inputs = c.HasInput(2) ? [c.I(0), c.I(1), c.I(2)] : [c.I(0), c.I(1)];
            int outputs = c.HasOutput(2) ? 3 : c.HasOutput(1) ? 2 : 1;
            var y = c.Ops("LayerNormalization", inputs, outputs,
                LoweringContext.Attr("axis", c.Int("axis", -1)),
                LoweringContext.Attr("epsilon", c.Float("epsilon", 1e-5f)),
                LoweringContext.Attr("stash_type", c.Int("stash_type", 1)));
            for (int i = 0; i < outputs; i++) c.SetOutput(i, y[i]);
        }, "LayerNormalization");

        Add(r, SimplifiedLayerNormalization, "SimplifiedLayerNormalization");

        // ConcatTraining(inputs...; axis) = Concat, with the optional second output: each input's length along axis.
        Add(r, c =>
        {
            c.OnlyAttributes("axis");
            if (c.Attribute("axis") is null) throw c.Fail("the required attribute 'axis' is missing");
            long axis = c.Int("axis", 0);
            var inputs = c.Node.Input.ToArray();
            if (inputs.Any(i => i.Length == 0)) throw c.Fail("an input is empty (ConcatTraining's inputs are all required)");
            c.SetOutput(0, c.Op("Concat", inputs, LoweringContext.Attr("axis", axis)));
            if (c.HasOutput(1))
            {
                var index = c.Ints64(axis);
                var lengths = inputs.Select(i => c.Op("Gather", [c.Op("Shape", [i]), index])).ToArray();
                c.SetOutput(1, lengths.Length == 1 ? lengths[0] : c.Op("Concat", lengths, LoweringContext.Attr("axis", 0L)));
            }
        }, "ConcatTraining");

        // SplitTraining(input, split; axis = 0) is Split-13 with the sizes as an input.
        Add(r, c =>
        {
            c.OnlyAttributes("axis");
            if (!c.HasInput(1)) throw c.Fail("the required input 'split' is missing");
            var parts = c.Ops("Split", [c.I(0), c.I(1)], c.Node.Output.Count, LoweringContext.Attr("axis", c.Int("axis", 0)));
            for (int i = 0; i < parts.Length; i++) c.SetOutput(i, parts[i]);
        }, "SplitTraining");

        // PassThrough: a barrier whose outputs are its inputs.
        Add(r, c =>
        {
            c.OnlyAttributes();
            if (c.Node.Output.Count > c.Node.Input.Count) throw c.Fail($"it has {c.Node.Output.Count} outputs but only {c.Node.Input.Count} inputs");
            for (int i = 0; i < c.Node.Output.Count; i++)
            {
                if (!c.HasOutput(i)) continue;
                if (!c.HasInput(i)) throw c.Fail($"output {i} passes through input {i}, which is absent");
                c.SetOutput(i, c.I(i));
            }
        }, "PassThrough");

        Add(r, c => throw c.Fail(
            "YieldOp is ORTModule's hand-off to PyTorch: it returns the forward outputs to the Python caller and resumes with "
            + "the gradients PyTorch computes for them, so its outputs come from outside the graph at run time. An on-device "
            + "training artifact has no such caller; export the model with its loss inside the graph (onnxruntime.training."
            + "artifacts.generate_artifacts) instead of from an ORTModule graph"), "YieldOp");
    }

    /// <summary>
    /// One FusedMatMul operand after its transposes. transBatch moves the first axis behind the batch axes
    /// (d0, d1…d[r−2], d[r−1] → d1…d[r−2], d0, d[r−1]); trans then swaps the last two axes.
    /// </summary>
    private static string MatMulOperand(LoweringContext c, string x, bool trans, bool transBatch)
    {
        if (!trans && !transBatch) return x;
        int rank = c.Rank(x);
        if (rank < 2) return x; // a vector is its own transpose, as ONNX Runtime's kernel treats it
        var perm = new List<long>();
        if (transBatch && rank > 2)
        {
            for (long i = 1; i < rank - 1; i++) perm.Add(i);
            perm.Add(0);
        }
        else
        {
            for (long i = 0; i < rank - 1; i++) perm.Add(i);
        }
        perm.Add(rank - 1);
        if (trans) (perm[rank - 2], perm[rank - 1]) = (perm[rank - 1], perm[rank - 2]);
        return perm.Select((p, i) => p == i).All(same => same) ? x : c.Op("Transpose", [x], LoweringContext.Attr("perm", perm.ToArray()));
    }

    /// <summary>
    /// BroadcastGradientArgs(a_shape, b_shape) → (a_axes, b_axes): the axes of the broadcast result that each operand's
    /// gradient must be summed over, in descending order as ONNX Runtime's kernel lists them. An axis goes to an operand
    /// that lacks it (the shorter shape's leading axes), or whose size there is 1 while the other's is not.
    /// </summary>
    private static void BroadcastGradientArgs(LoweringContext c)
    {
        c.OnlyAttributes();
        var (a, b) = (c.I(0), c.I(1));
        var na = c.Op("Size", [a]);
        var nb = c.Op("Size", [b]);
        var n = c.Op("Max", [na, nb]);
        var one = c.Scalar(1, a);
        var padA = c.Op("Sub", [n, na]);
        var padB = c.Op("Sub", [n, nb]);
        string Full(string shape, string pad) =>
            c.Op("Concat", [c.Op("Expand", [one, c.Op("Reshape", [pad, c.Ints64(1)])]), shape], LoweringContext.Attr("axis", 0L));
        var (fullA, fullB) = (Full(a, padA), Full(b, padB));
        var index = c.Op("Range", [c.Scalar(0, a), n, one]);
        var aIsOne = c.Op("Equal", [fullA, one]);
        var differ = c.Op("Not", [c.Op("Equal", [fullA, fullB])]);
        string Axes(string selected) =>
            c.Op("Slice", [c.Op("Compress", [index, selected], LoweringContext.Attr("axis", 0L)), c.Ints64(-1), c.Ints64(long.MinValue), c.Ints64(0), c.Ints64(-1)]);
        if (c.HasOutput(0))
        {
            var selected = c.Op("Or", [c.Op("Less", [index, padA]), c.Op("And", [differ, aIsOne])]);
            c.SetOutput(0, Axes(selected));
        }
        if (c.HasOutput(1))
        {
            var bOnly = c.Op("And", [c.Op("Not", [aIsOne]), c.Op("Equal", [fullB, one])]);
            var selected = c.Op("Or", [c.Op("Less", [index, padB]), c.Op("And", [differ, bOnly])]);
            c.SetOutput(1, Axes(selected));
        }
    }

    /// <summary>
    /// SimplifiedLayerNormalization(X, scale; axis = −1, epsilon = 1e-5, stash_type = 1) → (Y, inv_std_var?): RMS
    /// normalization over the axes from <c>axis</c> on, Y = X / √(mean(X²) + ε) · scale, computed in float for 16-bit
    /// inputs (as ONNX Runtime's kernel does) and in the input's own type otherwise; inv_std_var keeps the reduced axes.
    /// </summary>
    private static void SimplifiedLayerNormalization(LoweringContext c)
    {
        c.OnlyAttributes("axis", "epsilon", "stash_type");
        long stash = c.Int("stash_type", 1);
        if (stash != 1) throw c.Fail($"stash_type={stash} is not supported (only 1, float)");
        long axis = c.Int("axis", -1);
        var (x, scale) = (c.I(0), c.I(1));
        if (c.TypeOf(x)?.ElementType is DataType.Float16 or DataType.Bfloat16)
            x = c.Op("Cast", [x], LoweringContext.Attr("to", (long)DataType.Float));
        var shape = c.Op("Shape", [x]);
        var rank = c.Op("Size", [shape]);
        var start = axis >= 0 ? c.Scalar(axis, shape) : c.Op("Add", [rank, c.Scalar(axis, shape)]);
        var axes = c.Op("Range", [start, rank, c.Scalar(1, shape)]);
        var count = c.Op("CastLike", [c.Op("ReduceProd", [c.Op("Gather", [shape, axes])], LoweringContext.Attr("keepdims", 0L)), x]);
        var meanSquare = c.Op("Div", [c.Op("ReduceSum", [c.Op("Mul", [x, x]), axes], LoweringContext.Attr("keepdims", 1L)), count]);
        var rms = c.Op("Sqrt", [c.Op("Add", [meanSquare, c.Scalar(c.Float("epsilon", 1e-5f), x)])]);
        var y = c.Op("Mul", [c.Op("Div", [x, rms]), c.Op("CastLike", [scale, x])]);
        c.SetOutput(0, c.Op("CastLike", [y, scale]));
        if (c.HasOutput(1)) c.SetOutput(1, c.Op("Reciprocal", [rms]));
    }
}
