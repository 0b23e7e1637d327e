using OnnxAdadelta.Import;
using static OnnxAdadelta.Tests.Import.LoweringCheck;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Import;

/// <summary>
/// The softmax gradients and softmax cross-entropy training ops, lowered and run in ONNX Runtime, against the core
/// autodiff's gradients of the standard ops (or the standard forward op itself).
/// </summary>
public class SoftmaxLossLoweringTests
{
    private static global::OnnxAdadelta.Onnx.Proto.AttributeProto Axis(long axis) => LoweringContext.Attr("axis", axis);

    [Theory]
    [InlineData("Softmax", -1)]
    [InlineData("Softmax", 1)]
    [InlineData("Softmax", -3)]
    [InlineData("LogSoftmax", -1)]
    [InlineData("LogSoftmax", 0)]
    public void Opset13GradientsMatchTheAutodiff(string op, long axis)
    {
        long[] shape = [2, 3, 4];
        var x = Floats("x", shape, 1, -2, 2);
        var dY = Floats("dY", shape, 2);
        var y = RunStandard(op, [x], ["y"], [Axis(axis)], opset: 13)[0];
        var expected = GradientOf(op, [x], ["x"], [dY], [Axis(axis)], opset: 13)[0];
        var actual = RunLowered($"{op}Grad_13", [dY, new Feed("Y", y, shape)], ["dX"], [Axis(axis)])[0];
        AssertClose(expected, actual, rtol: 1e-4, atol: 1e-6);
    }

    [Fact]
    public void Opset13DefaultAxisIsTheLast()
    {
        long[] shape = [3, 5];
        var x = Floats("x", shape, 3, -2, 2);
        var dY = Floats("dY", shape, 4);
        var y = RunStandard("Softmax", [x], ["y"], [Axis(-1)], opset: 13)[0];
        var expected = GradientOf("Softmax", [x], ["x"], [dY], [Axis(-1)], opset: 13)[0];
        AssertClose(expected, RunLowered("SoftmaxGrad_13", [dY, new Feed("Y", y, shape)], ["dX"])[0], rtol: 1e-4, atol: 1e-6);
    }

    /// <summary>
    /// The pre-13 ops coerce to 2-D around the axis: the same as the opset-13 op along the last axis of the input
    /// flattened to [prod(before axis), prod(from axis)] (Y itself comes from the opset-11 op).
    /// </summary>
    [Theory]
    [InlineData("Softmax", 1)]
    [InlineData("Softmax", -2)]
    [InlineData("Softmax", null)]
    [InlineData("LogSoftmax", 2)]
    [InlineData("LogSoftmax", null)]
    public void CoercedGradientsMatchTheAutodiffOnTheFlattenedInput(string op, int? axis)
    {
        long[] shape = [2, 3, 4];
        int a = axis is null ? 1 : axis.Value < 0 ? axis.Value + 3 : axis.Value;
        long rows = shape.Take(a).Aggregate(1L, (p, d) => p * d), cols = 24 / rows;
        var x = Floats("x", shape, 5, -2, 2);
        var dY = Floats("dY", shape, 6);
        global::OnnxAdadelta.Onnx.Proto.AttributeProto[] attrs = axis is null ? [] : [Axis(axis.Value)];
        var y = RunStandard(op, [x], ["y"], attrs, opset: 11)[0];
        var expected = GradientOf(op, [x with { Shape = [rows, cols] }], ["x"], [dY with { Shape = [rows, cols] }], [Axis(-1)], opset: 13)[0];
        var actual = RunLowered($"{op}Grad", [dY, new Feed("Y", y, shape)], ["dX"], attrs)[0];
        AssertClose(expected, actual, rtol: 1e-4, atol: 1e-6);
    }

    [Fact]
    public void AnOutOfRangeAxisIsRefusedWhenTheRankIsKnown()
    {
        var dY = Floats("dY", [2, 3], 7);
        var e = Assert.Throws<OnnxAdadeltaException>(() => RunLowered("SoftmaxGrad_13", [dY, dY with { Name = "Y" }], ["dX"], [Axis(2)]));
        Assert.Contains("axis=2 is out of range for rank 2", e.Message);
    }

    [Fact]
    public void UnknownAttributesAreRefusedByName()
    {
        var dY = Floats("dY", [2, 3], 7);
        var e = Assert.Throws<OnnxAdadeltaException>(() => RunLowered("SoftmaxGrad_13", [dY, dY with { Name = "Y" }], ["dX"], [LoweringContext.Attr("bogus", 1L)]));
        Assert.Contains("attribute 'bogus' is not supported", e.Message);
        var d = Floats("dY", [], 7);
        e = Assert.Throws<OnnxAdadeltaException>(() => RunLowered("SoftmaxCrossEntropyLossGrad", [d, Floats("log_prob", [2, 3], 1), new Feed("label", new long[] { 0, 1 }, [2])], ["dX"], [LoweringContext.Attr("reduction", "max")]));
        Assert.Contains("reduction='max' is not supported", e.Message);
    }

    // Scores [N, C] or [N, C, D]; labels in range, some repeated; optional weights, ignore_index (in range or not).
    public static TheoryData<string, bool, long?, bool> LossCases()
    {
        var data = new TheoryData<string, bool, long?, bool>();
        foreach (var reduction in new[] { "none", "mean", "sum" })
        {
            data.Add(reduction, false, null, false);
            data.Add(reduction, true, null, false);
            data.Add(reduction, false, 2L, true);
            data.Add(reduction, true, 1L, false);
            data.Add(reduction, true, -100L, true);
        }
        return data;
    }

    private static (Feed Scores, Feed Labels, Feed Weights) LossInputs(bool spatial, long? ignore)
    {
        long[] scoreShape = spatial ? [3, 4, 2] : [5, 4];
        long[] labelShape = spatial ? [3, 2] : [5];
        long[] labels = spatial ? [0, 3, 2, 2, 1, 3] : [1, 3, 0, 2, 1];
        if (ignore is { } ii) { labels[1] = ii; labels[labels.Length - 1] = ii; }
        return (Floats("scores", scoreShape, 11, -2, 2), new Feed("labels", labels, labelShape), new Feed("weights", new[] { 0.5f, 2f, 1.25f, 0.75f }, [4]));
    }

    private static global::OnnxAdadelta.Onnx.Proto.AttributeProto[] LossAttributes(string reduction, long? ignore) =>
        ignore is { } ii ? [LoweringContext.Attr("reduction", reduction), LoweringContext.Attr("ignore_index", ii)] : [LoweringContext.Attr("reduction", reduction)];

    [Theory]
    [MemberData(nameof(LossCases))]
    public void CrossEntropyGradMatchesTheAutodiff(string reduction, bool weighted, long? ignore, bool spatial)
    {
        var (scores, labels, weights) = LossInputs(spatial, ignore);
        var dY = Floats("dY", reduction == "none" ? labels.Shape : [], 12, 0.5, 2);
        Feed[] forward = weighted ? [scores, labels, weights] : [scores, labels];
        var expected = GradientOf("SoftmaxCrossEntropyLoss", forward, ["scores"], [dY], LossAttributes(reduction, ignore), opset: 13)[0];
        var logProb = new Feed("log_prob", RunStandard("LogSoftmax", [scores], ["lp"], [Axis(1)], opset: 13)[0], scores.Shape);
        Feed[] inputs = weighted ? [dY, logProb, labels, weights] : [dY, logProb, labels];
        var actual = RunLowered("SoftmaxCrossEntropyLossGrad", inputs, ["dX"], LossAttributes(reduction, ignore))[0];
        AssertClose(expected, actual, rtol: 1e-4, atol: 1e-6);
    }

    [Theory]
    [MemberData(nameof(LossCases))]
    public void InternalGradTakesIgnoreIndexAsAnInput(string reduction, bool weighted, long? ignore, bool spatial)
    {
        var (scores, labels, weights) = LossInputs(spatial, ignore);
        var dY = Floats("dY", reduction == "none" ? labels.Shape : [], 13, 0.5, 2);
        Feed[] forward = weighted ? [scores, labels, weights] : [scores, labels];
        var expected = GradientOf("SoftmaxCrossEntropyLoss", forward, ["scores"], [dY], LossAttributes(reduction, ignore), opset: 13)[0];
        var logProb = new Feed("log_prob", RunStandard("LogSoftmax", [scores], ["lp"], [Axis(1)], opset: 13)[0], scores.Shape);
        var ignoreFeed = new Feed("ignore_index", new[] { ignore ?? -1L }, []);
        List<Feed> inputs = [dY, logProb, labels];
        if (weighted) inputs.Add(weights);
        if (ignore is not null) inputs.Add(ignoreFeed);
        string[] nodeInputs = ["dY", "log_prob", "labels", weighted ? "weights" : "", ignore is null ? "" : "ignore_index"];
        var actual = RunLowered("SoftmaxCrossEntropyLossInternalGrad", [.. inputs], ["dX"], [LoweringContext.Attr("reduction", reduction)], nodeInputs: nodeInputs)[0];
        AssertClose(expected, actual, rtol: 1e-4, atol: 1e-6);
    }

    [Fact]
    public void InternalGradAddsBiasAndCastsToOutputType()
    {
        var (scores, labels, weights) = LossInputs(spatial: false, ignore: 2);
        var dY = Floats("dY", [], 14, 0.5, 2);
        var bias = Floats("bias", scores.Shape, 15);
        var attrs = LossAttributes("mean", 2);
        var expected = GradientOf("SoftmaxCrossEntropyLoss", [scores, labels, weights], ["scores"], [dY], attrs, opset: 13)[0]
            .Zip((float[])bias.Values, (g, b) => (float)((double)g + b)).ToArray();
        var logProb = new Feed("log_prob", RunStandard("LogSoftmax", [scores], ["lp"], [Axis(1)], opset: 13)[0], scores.Shape);
        var biasD = new Feed("bias", ((float[])bias.Values).Select(v => (double)v).ToArray(), bias.Shape);
        var actual = RunLowered("SoftmaxCrossEntropyLossInternalGrad",
            [dY, logProb, labels, weights, new Feed("ignore_index", new[] { 2L }, []), biasD], ["dX"],
            [LoweringContext.Attr("reduction", "mean"), LoweringContext.Attr("output_type", (long)DataType.Double)])[0];
        AssertClose(expected, actual, rtol: 1e-4, atol: 1e-6);
    }

    [Theory]
    [MemberData(nameof(LossCases))]
    public void InternalForwardMatchesTheStandardLoss(string reduction, bool weighted, long? ignore, bool spatial)
    {
        var (scores, labels, weights) = LossInputs(spatial, ignore);
        Feed[] forward = weighted ? [scores, labels, weights] : [scores, labels];
        var expected = RunStandard("SoftmaxCrossEntropyLoss", forward, ["loss", "log_prob"], LossAttributes(reduction, ignore), opset: 13);
        List<Feed> inputs = [.. forward];
        if (ignore is not null) inputs.Add(new Feed("ignore_index", new[] { ignore.Value }, []));
        string[] nodeInputs = ["scores", "labels", weighted ? "weights" : "", ignore is null ? "" : "ignore_index"];
        var actual = RunLowered("SoftmaxCrossEntropyLossInternal", [.. inputs], ["loss", "log_prob"], [LoweringContext.Attr("reduction", reduction)], nodeInputs: nodeInputs);
        AssertClose(expected[0], actual[0], rtol: 1e-5, atol: 1e-6, what: "loss");
        AssertClose(expected[1], actual[1], rtol: 1e-5, atol: 1e-6, what: "log_prob");
    }

    [Fact]
    public void InternalForwardDefaultsToMeanAndIgnoresMinusOne()
    {
        var scores = Floats("scores", [4, 3], 21, -2, 2);
        var labels = new Feed("labels", new long[] { 2, -1, 0, 1 }, [4]);
        var expected = RunStandard("SoftmaxCrossEntropyLoss", [scores, labels], ["loss"], [LoweringContext.Attr("ignore_index", -1L)], opset: 13)[0];
        var actual = RunLowered("SoftmaxCrossEntropyLossInternal", [scores, labels], ["loss", ""])[0];
        AssertClose(expected, actual, rtol: 1e-5, atol: 1e-6);
    }
}
