namespace OnnxAdadelta.Gradients;

/// <summary>Gradients of BatchNormalization (inference and training form), LayerNormalization and Dropout (as an identity).</summary>
public static partial class GradientRules
{
    private static void RegisterNormalization(Dictionary<string, GradientRuleInfo> r)
    {
        Add(r, BatchNormalizationGradient, Inputs(0, 1, 2), "BatchNormalization");
        Add(r, LayerNormalizationGradient, Inputs(0, 1, 2), "LayerNormalization");
        Add(r, DropoutGradient, Inputs(0), "Dropout");
    }

    /// <summary>
    /// <paramref name="v"/>, of forward value <paramref name="typeOf"/>'s element type, cast to <paramref name="like"/>'s
    /// when the two differ (BatchNormalization lets X, scale/B and mean/var have different float types).
    /// </summary>
    private static string CastIfNeeded(GradientContext c, string v, string typeOf, string like) =>
        c.Type(typeOf).ElementType == c.Type(like).ElementType ? v : c.Op("CastLike", [v, like]);

    /// <summary>
    /// BatchNormalization, per channel (axis 1). Inference form (training_mode absent or 0): y = scale·(x − mean)/√(var + ε) + B
    /// with the running mean and var as constants: dX = GO·scale/√(var + ε); dScale = Σ GO·x̂ and dB = Σ GO over every
    /// axis but 1, where x̂ = (x − mean)/√(var + ε); momentum only matters in training mode and is ignored.
    /// Training mode (training_mode=1): the node normalizes with the batch's mean μ and biased variance σ² over every
    /// axis but 1, which depend on x, so with r = 1/√(σ² + ε), x̂ = (x − μ)·r and ĝ = GO·scale:
    /// dX = r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)); dScale and dB as above. In both forms the running mean and var get no
    /// gradient, and the running-statistic outputs must not carry one.
    /// </summary>
    private static void BatchNormalizationGradient(GradientContext c)
    {
        KnownAttributes(c, "epsilon", "momentum", "training_mode");
        bool training = c.Int("training_mode", 0) != 0;
        for (int k = 1; k < c.Node.Output.Count; k++)
            if (c.O(k).Length > 0 && c.GO(k) is not null)
                throw c.Fail($"output {k} ('{c.O(k)}') carries a gradient; only output 0 (Y) is differentiable");
        var x = c.I(0);
        var go = c.GO(0)!;
        int rank = c.Rank(x);
        if (rank < 2) throw c.Fail($"the input '{x}' has rank {rank}; at least 2 (N, C, …) was expected");
        // [C] → [C, 1, …, 1] so that it broadcasts against [N, C, D…].
        string PerChannel(string v) => rank > 2 ? c.Op("Unsqueeze", [v, c.Ints64([.. Enumerable.Range(1, rank - 2).Select(a => (long)a)])]) : v;
        long[] notChannel = [0, .. Enumerable.Range(2, rank - 2).Select(a => (long)a)];
        var epsilon = c.Scalar(c.Float("epsilon", 1e-5f), x);
        if (training)
        {
            var mean = c.ReduceMean(x, notChannel, keepDims: true);
            var centered = c.Op("Sub", [x, mean]);
            var variance = c.ReduceMean(c.Op("Mul", [centered, centered]), notChannel, keepDims: true);
            var r = c.Op("Reciprocal", [c.Op("Sqrt", [c.Op("Add", [variance, epsilon])])]);
            var xHat = c.Op("Mul", [centered, r]);
            if (c.IsGradientRequired(0))
                c.SetGI(0, NormalizationGradients.Input(c, c.Op("Mul", [go, PerChannel(CastIfNeeded(c, c.I(1), c.I(1), x))]), xHat, r, notChannel, centered: true));
            if (c.IsGradientRequired(1))
                c.SetGI(1, CastIfNeeded(c, c.ReduceSum(c.Op("Mul", [go, xHat]), notChannel, keepDims: false), x, c.I(1)));
            if (c.IsGradientRequired(2))
                c.SetGI(2, CastIfNeeded(c, c.ReduceSum(go, notChannel, keepDims: false), x, c.I(2)));
            return;
        }
        var inv = c.Op("Reciprocal", [c.Op("Sqrt", [c.Op("Add", [CastIfNeeded(c, c.I(4), c.I(4), x), epsilon])])]);
        if (c.IsGradientRequired(0))
            c.SetGI(0, c.Op("Mul", [go, PerChannel(c.Op("Mul", [CastIfNeeded(c, c.I(1), c.I(1), x), inv]))]));
        if (c.IsGradientRequired(1))
        {
            var normalized = c.Op("Mul", [c.Op("Sub", [x, PerChannel(CastIfNeeded(c, c.I(3), c.I(3), x))]), PerChannel(inv)]);
            c.SetGI(1, CastIfNeeded(c, c.ReduceSum(c.Op("Mul", [go, normalized]), notChannel, keepDims: false), x, c.I(1)));
        }
        if (c.IsGradientRequired(2))
            c.SetGI(2, CastIfNeeded(c, c.ReduceSum(go, notChannel, keepDims: false), x, c.I(2)));
    }

    /// <summary>
    /// LayerNormalization (opset 17) over the axes [axis, rank): with μ and σ² the mean and variance there,
    /// r = 1/√(σ² + ε), x̂ = (x − μ)·r and y = x̂·Scale + B, the standard backward is
    /// dX = r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) with ĝ = GO·Scale, dScale = Σ GO·x̂ and dB = Σ GO (summed down to their
    /// shapes). μ and r are recomputed in X's element type; stash_type (the forward's internal precision) is accepted.
    /// The optional Mean and InvStdDev outputs may be used but must not carry gradients.
    /// </summary>
    private static void LayerNormalizationGradient(GradientContext c)
    {
        KnownAttributes(c, "axis", "epsilon", "stash_type");
        for (int k = 1; k < c.Node.Output.Count; k++)
            if (c.O(k).Length > 0 && c.GO(k) is not null)
                throw c.Fail($"output {k} ('{c.O(k)}', {(k == 1 ? "Mean" : "InvStdDev")}) carries a gradient; only output 0 (Y) is differentiable");
        var x = c.I(0);
        var go = c.GO(0)!;
        int rank = c.Rank(x);
        long axis = c.Int("axis", -1);
        if (axis < -rank || axis >= rank) throw c.Fail($"axis={axis} is out of range for rank {rank}");
        if (axis < 0) axis += rank;
        long[] axes = [.. Enumerable.Range((int)axis, rank - (int)axis).Select(a => (long)a)];

        var mean = c.ReduceMean(x, axes, keepDims: true);
        var centered = c.Op("Sub", [x, mean]);
        var variance = c.ReduceMean(c.Op("Mul", [centered, centered]), axes, keepDims: true);
        var inv = c.Op("Reciprocal", [c.Op("Sqrt", [c.Op("Add", [variance, c.Scalar(c.Float("epsilon", 1e-5f), x)])])]);
        var normalized = c.Op("Mul", [centered, inv]);
        if (c.IsGradientRequired(0))
        {
            c.SetGI(0, NormalizationGradients.Input(c, c.Op("Mul", [go, c.I(1)]), normalized, inv, axes, centered: true));
        }
        if (c.IsGradientRequired(1)) c.SetGIBroadcast(1, c.Op("Mul", [go, normalized]), c.O(0));
        if (c.IsGradientRequired(2)) c.SetGIBroadcast(2, go, c.O(0));
    }

    /// <summary>
    /// Dropout as an identity: with training_mode absent or a constant false the node passes its input through (ratio is
    /// not applied and the mask is all true), so dX = GO. Nodes trained with random masks (a constant true
    /// training_mode, or <see cref="DropoutMode.Train"/>) are replaced by standard ops before the autodiff
    /// (<see cref="TrainingModes"/>) and never reach this rule; a training_mode computed at run time is refused. The seed
    /// attribute only matters in training mode and is ignored.
    /// </summary>
    private static void DropoutGradient(GradientContext c)
    {
        KnownAttributes(c, "seed");
        if (c.HasInput(2))
        {
            var mode = c.ConstantInts(2)
                ?? throw c.Fail($"training_mode ('{c.I(2)}') is not a constant; only Dropout with training_mode absent or a constant is supported");
            if (mode.Any(v => v != 0))
                throw c.Fail("training_mode is true; build the training graph with DropoutMode.Train (--dropout train) to apply random masks, or set training_mode to false");
        }
        c.SetGI(0, c.GO(0)!);
    }
}
