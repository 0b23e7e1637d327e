using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Import;

/// <summary>
/// Lowerings of ONNX Runtime's softmax gradients (SoftmaxGrad, LogSoftmaxGrad and their opset-13 variants) and of its
/// softmax cross-entropy training ops (SoftmaxCrossEntropyLossGrad, SoftmaxCrossEntropyLossInternal and
/// SoftmaxCrossEntropyLossInternalGrad).
/// </summary>
/// <remarks>
/// Conventions follow ONNX Runtime's kernels: the second input of the softmax gradients is the forward op's output
/// (softmax or log-softmax), not its input; cross-entropy labels equal to ignore_index (default −1 when neither the
/// attribute nor the input gives one, as in ORT's kernels) contribute nothing, and the mean divides by the summed
/// weights of the labels kept (their count when unweighted), or by 1 when that sum is 0.
/// </remarks>
public static partial class LoweringRules
{
    private static void RegisterSoftmaxLoss(Dictionary<string, LoweringRule> r)
    {
        Add(r, c => SoftmaxBackward(c, log: false, coerced: true), "SoftmaxGrad");
        Add(r, c => SoftmaxBackward(c, log: false, coerced: false), "SoftmaxGrad_13");
        Add(r, c => SoftmaxBackward(c, log: true, coerced: true), "LogSoftmaxGrad");
        Add(r, c => SoftmaxBackward(c, log: true, coerced: false), "LogSoftmaxGrad_13");
        Add(r, CrossEntropyLossGrad, "SoftmaxCrossEntropyLossGrad", "SoftmaxCrossEntropyLossInternalGrad");
        Add(r, CrossEntropyLossInternal, "SoftmaxCrossEntropyLossInternal");
    }

    /// <summary>
    /// (Log)SoftmaxGrad(dY, Y): softmax dX = Y ⊙ (dY − Σ dY ⊙ Y), log-softmax dX = dY − exp(Y) ⊙ Σ dY, the sums kept
    /// along the softmax axes. The opset-13 variants (axis default −1) sum along that one axis; the older ops (axis
    /// default 1) coerce to 2-D around the axis, so they sum along every axis from it to the last, computed at run time
    /// from dY's rank.
    /// </summary>
    private static void SoftmaxBackward(LoweringContext c, bool log, bool coerced)
    {
        c.OnlyAttributes("axis");
        var axis = c.Int("axis", coerced ? 1 : -1);
        string dY = c.I(0), y = c.I(1);
        if ((c.TypeOf(dY) ?? c.TypeOf(y))?.Rank is int rank && (axis < -rank || axis >= Math.Max(rank, 1)))
            throw c.Fail($"axis={axis} is out of range for rank {rank}");

        string axes;
        if (coerced)
        {
            var r = c.Op("Size", [c.Op("Shape", [dY])]);
            var start = axis >= 0 ? c.ScalarInt64(axis) : c.Op("Add", [r, c.ScalarInt64(axis)]);
            axes = c.Op("Range", [start, r, c.ScalarInt64(1)]);
        }
        else axes = c.Ints64(axis);

        if (log)
        {
            var total = c.Op("ReduceSum", [dY, axes], LoweringContext.Attr("keepdims", 1L));
            c.SetOutput(0, c.Op("Sub", [dY, c.Op("Mul", [c.Op("Exp", [y]), total])]));
        }
        else
        {
            var dot = c.Op("ReduceSum", [c.Op("Mul", [y, dY]), axes], LoweringContext.Attr("keepdims", 1L));
            c.SetOutput(0, c.Op("Mul", [y, c.Op("Sub", [dY, dot])]));
        }
    }

    /// <summary>The reduction attribute of the cross-entropy ops (none, mean or sum; default mean).</summary>
    private static string LossReduction(LoweringContext c)
    {
        var reduction = c.String("reduction", "mean");
        if (reduction is not ("none" or "mean" or "sum"))
            throw c.Fail($"reduction='{reduction}' is not supported (none, mean, sum)");
        return reduction;
    }

    /// <summary>
    /// What the cross-entropy ops share: labels as int64, the mask of labels kept (label ≠ ignore_index), labels with
    /// ignored ones replaced by 0 (safe to index with), and the per-sample factor w[label]·kept in
    /// <paramref name="like"/>'s type (kept alone when unweighted).
    /// </summary>
    private static (string Safe, string Factor) LossSamples(LoweringContext c, string labels, string? weights, string ignoreIndex, string like)
    {
        var ids = c.Op("Cast", [labels], LoweringContext.Attr("to", (long)DataType.Int64));
        var kept = c.Op("Not", [c.Op("Equal", [ids, ignoreIndex])]);
        var safe = c.Op("Where", [kept, ids, c.ScalarInt64(0)]);
        var factor = c.Op("CastLike", [kept, like]);
        if (weights is not null) factor = c.Op("Mul", [c.Op("Gather", [weights, safe]), factor]);
        return (safe, factor);
    }

    /// <summary>The ignore_index of an internal op: its optional scalar input, or −1 (ORT's kernel default).</summary>
    private static string IgnoreIndexInput(LoweringContext c, int input) =>
        c.HasInput(input) ? c.Op("Reshape", [c.I(input), c.Ints64()]) : c.ScalarInt64(-1);

    /// <summary>The denominator of reduction=mean: Σ factor, or 1 where that is 0 (ORT then leaves the sum undivided).</summary>
    private static string MeanDenominator(LoweringContext c, string factor)
    {
        var total = c.Op("ReduceSum", [factor], LoweringContext.Attr("keepdims", 0L));
        return c.Op("Where", [c.Op("Equal", [total, c.Scalar(0, total)]), c.Scalar(1, total), total]);
    }

    /// <summary>Casts to the output_type attribute of the internal ops when it is given.</summary>
    private static string OutputType(LoweringContext c, string value) =>
        c.Attribute("output_type") is { } t ? c.Op("Cast", [value], LoweringContext.Attr("to", t.I)) : value;

    /// <summary>
    /// SoftmaxCrossEntropyLossGrad(dY, log_prob, label, weight?) with the ignore_index attribute, and
    /// SoftmaxCrossEntropyLossInternalGrad(dY, log_prob, label, weight?, ignore_index?, bias?) with output_type:
    /// d_logits = (exp(log_prob) − onehot(label)) ⊙ s along axis 1, where the per-sample s is w[label]·kept times dY's
    /// sample (reduction none), dY (sum) or dY / Σ w[label]·kept (mean). The internal variant casts to output_type
    /// and adds bias.
    /// </summary>
    private static void CrossEntropyLossGrad(LoweringContext c)
    {
        bool isInternal = c.Node.OpType == "SoftmaxCrossEntropyLossInternalGrad";
        if (isInternal) c.OnlyAttributes("reduction", "output_type");
        else c.OnlyAttributes("reduction", "ignore_index");
        var reduction = LossReduction(c);
        string dY = c.I(0), logProb = c.I(1);
        var ignore = isInternal ? IgnoreIndexInput(c, 4) : c.ScalarInt64(c.Int("ignore_index", -1));
        var (safe, factor) = LossSamples(c, c.I(2), c.HasInput(3) ? c.I(3) : null, ignore, logProb);

        var scale = reduction == "mean" ? c.Op("Div", [dY, MeanDenominator(c, factor)]) : dY;
        scale = c.Op("Mul", [factor, scale]);
        scale = c.Op("Unsqueeze", [scale, c.Ints64(1)]); // [N, 1, D…]

        // One-hot of the labels along axis 1 (float values, then the log_prob type).
        var classes = c.Op("Gather", [c.Op("Shape", [logProb]), c.Ints64(1)]);
        var onehot = c.Op("OneHot", [safe, classes, c.Constant(OnnxAdadelta.Onnx.Tensors.Create("", new[] { 0f, 1f }, 2))], LoweringContext.Attr("axis", 1L));
        onehot = c.Op("CastLike", [onehot, logProb]);
        var grad = c.Op("Mul", [c.Op("Sub", [c.Op("Exp", [logProb]), onehot]), scale]);
        if (isInternal)
        {
            grad = OutputType(c, grad);
            if (c.HasInput(5)) grad = c.Op("Add", [grad, c.I(5)]);
        }
        c.SetOutput(0, grad);
    }

    /// <summary>
    /// SoftmaxCrossEntropyLossInternal(scores, labels, weights?, ignore_index?) with reduction and output_type:
    /// log_prob = LogSoftmax(scores, axis 1); the per-sample loss −log_prob[label]·w[label]·kept, then summed (sum),
    /// divided by Σ w[label]·kept (mean, or not when that is 0), or kept per sample (none).
    /// </summary>
    private static void CrossEntropyLossInternal(LoweringContext c)
    {
        c.OnlyAttributes("reduction", "output_type");
        var reduction = LossReduction(c);
        var logProb = c.Op("LogSoftmax", [c.I(0)], LoweringContext.Attr("axis", 1L));
        var (safe, factor) = LossSamples(c, c.I(1), c.HasInput(2) ? c.I(2) : null, IgnoreIndexInput(c, 3), logProb);

        var at = c.Ints64(1);
        var picked = c.Op("Squeeze", [c.Op("GatherElements", [logProb, c.Op("Unsqueeze", [safe, at])], LoweringContext.Attr("axis", 1L)), at]);
        var loss = c.Op("Mul", [c.Op("Neg", [picked]), factor]);
        if (reduction != "none")
        {
            loss = c.Op("ReduceSum", [loss], LoweringContext.Attr("keepdims", 0L));
            if (reduction == "mean") loss = c.Op("Div", [loss, MeanDenominator(c, factor)]);
        }
        c.SetOutput(0, OutputType(c, loss));
        c.SetOutput(1, OutputType(c, logProb));
    }
}
