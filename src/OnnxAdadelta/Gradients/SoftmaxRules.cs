using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Gradients;

/// <summary>Gradients of Softmax, LogSoftmax (opset 13 semantics: along one axis) and SoftmaxCrossEntropyLoss.</summary>
public static partial class GradientRules
{
    private static void RegisterSoftmax(Dictionary<string, GradientRuleInfo> r)
    {
        Add(r, c =>
        {
            // y = softmax(x): dx = y ⊙ (g − Σ_axis g ⊙ y).
            var axis = SoftmaxAxis(c);
            string y = c.O(0), g = c.GO(0)!;
            var dot = c.ReduceSum(c.Op("Mul", [g, y]), [axis], keepDims: true);
            c.SetGI(0, c.Op("Mul", [y, c.Op("Sub", [g, dot])]));
        }, null, "Softmax");
        Add(r, c =>
        {
            var axis = SoftmaxAxis(c);
            c.SetGI(0, LogSoftmaxBackward(c, c.O(0), c.GO(0)!, axis, probabilities: null));
        }, null, "LogSoftmax");
        Add(r, SoftmaxCrossEntropyGradient, Inputs(0), "SoftmaxCrossEntropyLoss");
    }

    /// <summary>The axis of Softmax/LogSoftmax (default −1; negative counts from the end).</summary>
    private static long SoftmaxAxis(GradientContext c)
    {
        RefuseUnknownAttributes(c, "axis");
        // Below opset 13 the op flattened to 2-D around the axis; the driver raises models to 17 before rules run.
        if (c.Opset < 13) throw c.Fail($"opset {c.Opset} semantics (coerced to 2-D) are not supported; opset 13 or newer is needed");
        var axis = c.Int("axis", -1);
        int rank = c.Rank(c.I(0));
        if (axis < -rank || axis >= Math.Max(rank, 1)) throw c.Fail($"axis={axis} is out of range for rank {rank}");
        return axis;
    }

    /// <summary>
    /// y = logsoftmax(x): dx = g − softmax(x) ⊙ Σ_axis g, with softmax(x) = exp(y) unless
    /// <paramref name="probabilities"/> already names it.
    /// </summary>
    private static string LogSoftmaxBackward(GradientContext c, string y, string g, long axis, string? probabilities)
    {
        var p = probabilities ?? c.Op("Exp", [y]);
        var total = c.ReduceSum(g, [axis], keepDims: true);
        return c.Op("Sub", [g, c.Op("Mul", [p, total])]);
    }

    /// <summary>
    /// SoftmaxCrossEntropyLoss (opset 13), scores [N,C,D…], labels [N,D…], optional class weights [C].
    /// Per sample l = −w[label]·m·log p[label] with p = softmax(scores, axis 1) and m = (label ≠ ignore_index), so
    /// dl/dscores = w[label]·m·(p − onehot(label)). reduction=sum scales that by the scalar GO, none by GO's own
    /// sample, and mean by GO / Σ w[label]·m (ONNX's weighted mean; unweighted: the number of samples not ignored).
    /// A gradient reaching the log_prob output adds the LogSoftmax rule along axis 1.
    /// </summary>
    private static void SoftmaxCrossEntropyGradient(GradientContext c)
    {
        RefuseUnknownAttributes(c, "ignore_index", "reduction");
        var reduction = c.String("reduction", "mean");
        if (reduction is not ("none" or "mean" or "sum"))
            throw c.Fail($"reduction='{reduction}' is not an ONNX SoftmaxCrossEntropyLoss mode (none, mean, sum)");
        var scores = c.I(0);
        int rank = c.Rank(scores);
        if (rank < 2) throw c.Fail($"scores '{scores}' have rank {rank}; [N, C] or [N, C, D1, …] is expected");
        string? lossGrad = c.GO(0), logProbGrad = c.GO(1);
        bool hasLogProb = c.Node.Output.Count > 1 && c.O(1).Length > 0;
        var p = hasLogProb ? c.Op("Exp", [c.O(1)]) : c.Op("Softmax", [scores], GradientContext.Attr("axis", 1L));

        string? grad = null;
        if (lossGrad is not null)
        {
            var labels = c.Type(c.I(1)).ElementType == DataType.Int64
                ? c.I(1)
                : c.Op("Cast", [c.I(1)], GradientContext.Attr("to", (long)DataType.Int64));

            // Ignored labels may lie outside [0, C): they are replaced by 0 before indexing and masked out.
            string? keep = null;
            var safe = labels;
            if (c.Attribute("ignore_index") is not null)
            {
                keep = c.Op("Not", [c.Op("Equal", [labels, ConstantInt64(c, c.Int("ignore_index", 0))])]);
                safe = c.Op("Where", [keep, labels, ConstantInt64(c, 0)]);
            }

            // The per-sample factor w[label]·m, shaped like labels (null: every sample weighs 1).
            string? weight = c.HasInput(2) ? c.Op("Gather", [c.I(2), safe]) : null;
            if (keep is not null)
            {
                var m = c.Op("CastLike", [keep, scores]);
                weight = weight is null ? m : c.Op("Mul", [weight, m]);
            }

            var scale = lossGrad;
            if (reduction == "mean")
            {
                var total = weight is null
                    ? c.Op("CastLike", [c.Op("Size", [labels]), scores])
                    : c.Op("ReduceSum", [weight], GradientContext.Attr("keepdims", 0L));
                // Nothing counted (every label ignored, or zero weights): the forward loss is 0/0; the gradient is 0.
                var zero = c.Scalar(0, scores);
                total = c.Op("Where", [c.Op("Equal", [total, zero]), c.Scalar(1, scores), total]);
                scale = c.Op("Div", [scale, total]);
            }
            if (weight is not null) scale = c.Op("Mul", [scale, weight]);
            if (reduction == "none" || weight is not null) scale = Unsqueeze(c, scale, 1); // [N, 1, D…]

            // One-hot of the labels along axis 1: labels [N,1,D…] == classes [1,C,1…].
            var classCount = c.Op("Gather", [c.Shape(scores), ConstantInt64(c, 1)]);
            var classes = c.Op("Range", [ConstantInt64(c, 0), classCount, ConstantInt64(c, 1)]);
            var classShape = Enumerable.Repeat(1L, rank).ToArray();
            classShape[1] = -1;
            classes = c.Op("Reshape", [classes, c.Ints64(classShape)]);
            var onehot = c.Op("CastLike", [c.Op("Equal", [Unsqueeze(c, safe, 1), classes]), scores]);
            grad = c.Op("Mul", [c.Op("Sub", [p, onehot]), scale]);
        }
        if (logProbGrad is not null)
        {
            var fromLogProb = LogSoftmaxBackward(c, c.O(1), logProbGrad, 1, p);
            grad = grad is null ? fromLogProb : c.Op("Add", [grad, fromLogProb]);
        }
        if (grad is not null) c.SetGI(0, grad);
    }

    /// <summary>A scalar (rank-0) int64 constant.</summary>
    private static string ConstantInt64(GradientContext c, long value) =>
        c.Op("Constant", [], GradientContext.Attr("value_int", value));
}
