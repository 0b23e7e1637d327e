namespace OnnxAdadelta.Gradients;

/// <summary>
/// Gradients of BatchNormalization (inference and training form), LayerNormalization, InstanceNormalization,
/// GroupNormalization, LpNormalization and Dropout (as an identity).
/// </summary>
public static partial class GradientRules
{
    private static void RegisterNormalization(Dictionary<string, GradientRuleInfo> r)
    {
        Add(r, BatchNormalizationGradient, Inputs(0, 1, 2), "BatchNormalization");
        Add(r, LayerNormalizationGradient, Inputs(0, 1, 2), "LayerNormalization");
        Add(r, DropoutGradient, Inputs(0), "Dropout");
        Add(r, InstanceNormalizationGradient, Inputs(0, 1, 2), "InstanceNormalization");
        Add(r, GroupNormalizationGradient, Inputs(0, 1, 2), "GroupNormalization");
        Add(r, LpNormalizationGradient, Inputs(0), "LpNormalization");
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
            var (r, xHat) = NormalizationGradients.Statistics(c, x, notChannel, x);
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

        var (inv, normalized) = NormalizationGradients.Statistics(c, x, axes, x);
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

    /// <summary>[C] → [C, 1, …, 1], so that a per-channel value broadcasts against [N, C, D…] of rank <paramref name="rank"/>.</summary>
    private static string PerChannel(GradientContext c, string v, int rank) =>
        rank > 2 ? c.Op("Unsqueeze", [v, c.Ints64([.. Enumerable.Range(1, rank - 2).Select(a => (long)a)])]) : v;

    /// <summary>Every axis of a rank-<paramref name="rank"/> [N, C, D…] value but the channel axis 1.</summary>
    private static long[] NotChannel(int rank) => [0, .. Enumerable.Range(2, rank - 2).Select(a => (long)a)];

    /// <summary>
    /// InstanceNormalization: per sample and channel, μ and σ² over the spatial axes [2, rank), r = 1/√(σ² + ε),
    /// x̂ = (x − μ)·r and y = scale·x̂ + B (scale and B per channel). dX = r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) with
    /// ĝ = GO·scale, means over the spatial axes; dScale = Σ GO·x̂ and dB = Σ GO over every axis but the channel axis.
    /// </summary>
    private static void InstanceNormalizationGradient(GradientContext c)
    {
        KnownAttributes(c, "epsilon");
        var x = c.I(0);
        var go = c.GO(0)!;
        int rank = c.Rank(x);
        if (rank < 3) throw c.Fail($"the input '{x}' has rank {rank}; at least 3 (N, C and a spatial axis) was expected");
        long[] spatial = [.. Enumerable.Range(2, rank - 2).Select(a => (long)a)];
        var (inv, normalized) = NormalizationGradients.Statistics(c, x, spatial, x);
        if (c.IsGradientRequired(0))
            c.SetGI(0, NormalizationGradients.Input(c, c.Op("Mul", [go, PerChannel(c, c.I(1), rank)]), normalized, inv, spatial, centered: true));
        if (c.IsGradientRequired(1)) c.SetGI(1, c.ReduceSum(c.Op("Mul", [go, normalized]), NotChannel(rank), keepDims: false));
        if (c.IsGradientRequired(2)) c.SetGI(2, c.ReduceSum(go, NotChannel(rank), keepDims: false));
    }

    /// <summary>
    /// GroupNormalization: X [N, C, D…] is viewed as [N, G, C/G·D…] (G = num_groups); per sample and group, μ and σ²
    /// over the last axis, r = 1/√(σ² + ε) and x̂ = (x − μ)·r; y = scale·x̂ + bias. In opset 18 scale and bias hold one
    /// value per group, from opset 21 on one per channel. dX = r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) in the grouped view with
    /// ĝ = GO·scale; dScale = Σ GO·x̂ and dBias = Σ GO over everything but the group (18) or channel (21) axis. The
    /// statistics are recomputed in X's element type; stash_type (opset 21, the forward's internal precision) is accepted
    /// as for LayerNormalization, so a float16 X gets float16 statistics in the backward pass.
    /// </summary>
    private static void GroupNormalizationGradient(GradientContext c)
    {
        KnownAttributes(c, "epsilon", "num_groups", "stash_type");
        if (c.Attribute("stash_type") is not null && c.Opset < 21)
            throw c.Fail($"stash_type is an attribute of GroupNormalization from opset 21 on; the model's opset is {c.Opset}");
        long groups = c.Attribute("num_groups") is { } g ? g.I : throw c.Fail("the required attribute num_groups is missing");
        if (groups < 1) throw c.Fail($"num_groups={groups} must be positive");
        var x = c.I(0);
        var go = c.GO(0)!;
        int rank = c.Rank(x);
        if (rank < 2) throw c.Fail($"the input '{x}' has rank {rank}; at least 2 (N, C, …) was expected");
        if (c.Type(x).Dims![1] is { } channels && channels % groups != 0)
            throw c.Fail($"{channels} channels of '{x}' do not split into num_groups={groups}");
        var grouped = c.Ints64(0, groups, -1);
        long[] last = [2];
        var xg = c.Op("Reshape", [x, grouped]);
        var (inv, normalized) = NormalizationGradients.Statistics(c, xg, last, x);
        bool perChannel = c.Opset >= 21;
        if (c.IsGradientRequired(0))
        {
            var scaled = perChannel
                ? c.Op("Reshape", [c.Op("Mul", [go, PerChannel(c, c.I(1), rank)]), grouped])
                : c.Op("Mul", [c.Op("Reshape", [go, grouped]), c.Op("Unsqueeze", [c.I(1), c.Ints64(1)])]);
            c.SetGI(0, c.ReshapeLike(NormalizationGradients.Input(c, scaled, normalized, inv, last, centered: true), x));
        }
        if (perChannel)
        {
            if (c.IsGradientRequired(1)) c.SetGI(1, c.ReduceSum(c.Op("Mul", [go, c.ReshapeLike(normalized, x)]), NotChannel(rank), keepDims: false));
            if (c.IsGradientRequired(2)) c.SetGI(2, c.ReduceSum(go, NotChannel(rank), keepDims: false));
        }
        else
        {
            var gog = c.Op("Reshape", [go, grouped]);
            if (c.IsGradientRequired(1)) c.SetGI(1, c.ReduceSum(c.Op("Mul", [gog, normalized]), [0, 2], keepDims: false));
            if (c.IsGradientRequired(2)) c.SetGI(2, c.ReduceSum(gog, [0, 2], keepDims: false));
        }
    }

    /// <summary>
    /// LpNormalization: y = x/n along <c>axis</c> (default −1), n = Σ|x| (p = 1) or √Σx² (p = 2, the default).
    /// dX = (GO − s·Σ(GO·y))/n with s = ∂n/∂x = sign(x) for p = 1 and y for p = 2; where n = 0 the gradient is 0.
    /// </summary>
    private static void LpNormalizationGradient(GradientContext c)
    {
        KnownAttributes(c, "axis", "p");
        var x = c.I(0);
        var go = c.GO(0)!;
        int rank = c.Rank(x);
        long axis = c.Int("axis", -1);
        if (axis < -rank || axis >= rank) throw c.Fail($"axis={axis} is out of range for rank {rank}");
        if (axis < 0) axis += rank;
        long p = c.Int("p", 2);
        var norm = p switch
        {
            1 => c.ReduceSum(c.Op("Abs", [x]), [axis], keepDims: true),
            2 => c.Op("Sqrt", [c.ReduceSum(c.Op("Mul", [x, x]), [axis], keepDims: true)]),
            _ => throw c.Fail($"p={p} is not supported; ONNX LpNormalization takes p=1 or p=2"),
        };
        var slope = p == 1 ? c.Op("Sign", [x]) : c.O(0);
        var dot = c.ReduceSum(c.Op("Mul", [go, c.O(0)]), [axis], keepDims: true);
        var gradient = c.Op("Div", [c.Op("Sub", [go, c.Op("Mul", [slope, dot])]), norm]);
        var zero = c.Scalar(0, x);
        c.SetGI(0, c.Op("Where", [c.Op("Greater", [norm, zero]), gradient, zero]));
    }
}
