using static OnnxAdadelta.Tests.Gradients.GradientCheck;
using A = OnnxAdadelta.Gradients.GradientContext;

namespace OnnxAdadelta.Tests.Gradients;

public class SoftmaxGradientTests
{
    [Theory]
    [InlineData("Softmax")]
    [InlineData("LogSoftmax")]
    public void AlongTheLastAxisByDefault(string op)
    {
        Check(op, [Random("x", [3, 4], 200, -2, 2)]);
        Check(op, [Random("x", [3, 4], 201, -2, 2)], [A.Attr("axis", -1L)]);
        Check(op, [Random("x", [5], 202, -2, 2)]);
    }

    [Theory]
    [InlineData("Softmax")]
    [InlineData("LogSoftmax")]
    public void AlongOtherAxes(string op)
    {
        Check(op, [Random("x", [3, 4], 203, -2, 2)], [A.Attr("axis", 0L)]);
        Check(op, [Random("x", [2, 3, 4], 204, -2, 2)], [A.Attr("axis", 1L)]);   // a middle axis
        Check(op, [Random("x", [2, 3, 4], 205, -2, 2)], [A.Attr("axis", -2L)]);  // the same, counted from the end
    }
}

public class SoftmaxCrossEntropyLossGradientTests
{
    private static global::OnnxAdadelta.Onnx.Proto.AttributeProto[] Attrs(string reduction, long? ignore = null) =>
        ignore is null ? [A.Attr("reduction", reduction)] : [A.Attr("reduction", reduction), A.Attr("ignore_index", ignore.Value)];

    [Theory]
    [InlineData("none")]
    [InlineData("mean")]
    [InlineData("sum")]
    public void TwoDimensionalScores(string reduction)
    {
        Check("SoftmaxCrossEntropyLoss", [Random("scores", [4, 3], 210, -2, 2), Int64("labels", [2, 0, 1, 2], 4)], Attrs(reduction));
    }

    [Theory]
    [InlineData("none")]
    [InlineData("mean")]
    [InlineData("sum")]
    public void HigherDimensionalScores(string reduction)
    {
        Check("SoftmaxCrossEntropyLoss", [Random("scores", [2, 3, 2, 2], 211, -2, 2), Int64("labels", [0, 1, 2, 2, 1, 0, 0, 2], 2, 2, 2)], Attrs(reduction));
        Check("SoftmaxCrossEntropyLoss", [Random("scores", [2, 4, 3], 212, -2, 2), Int64("labels", [3, 1, 0, 2, 2, 1], 2, 3)], Attrs(reduction));
    }

    [Theory]
    [InlineData("none")]
    [InlineData("mean")]
    [InlineData("sum")]
    public void ClassWeights(string reduction)
    {
        Check("SoftmaxCrossEntropyLoss",
            [Random("scores", [5, 3], 213, -2, 2), Int64("labels", [2, 0, 1, 2, 2], 5), Fixed("weights", [0.5, 2.0, 1.25], 3)], Attrs(reduction));
        Check("SoftmaxCrossEntropyLoss",
            [Random("scores", [2, 3, 2], 214, -2, 2), Int64("labels", [0, 2, 1, 1], 2, 2), Fixed("weights", [0.3, 1.5, 0.8], 3)], Attrs(reduction));
    }

    [Theory]
    [InlineData("none")]
    [InlineData("mean")]
    [InlineData("sum")]
    public void IgnoredLabelsOutsideTheClasses(string reduction)
    {
        Check("SoftmaxCrossEntropyLoss", [Random("scores", [5, 3], 215, -2, 2), Int64("labels", [2, -100, 1, -100, 0], 5)], Attrs(reduction, -100));
        Check("SoftmaxCrossEntropyLoss",
            [Random("scores", [5, 3], 216, -2, 2), Int64("labels", [2, -100, 1, 0, 0], 5), Fixed("weights", [0.5, 2.0, 1.25], 3)], Attrs(reduction, -100));
        Check("SoftmaxCrossEntropyLoss",
            [Random("scores", [2, 3, 3], 217, -2, 2), Int64("labels", [0, 7, 1, 2, 7, 7], 2, 3), Fixed("weights", [0.3, 1.5, 0.8], 3)], Attrs(reduction, 7));
    }

    [Theory]
    [InlineData("none")]
    [InlineData("mean")]
    [InlineData("sum")]
    public void IgnoredLabelThatIsAClass(string reduction)
    {
        // ignore_index = 1 is a valid class: its samples must drop out, other samples of class 0 and 2 stay.
        Check("SoftmaxCrossEntropyLoss", [Random("scores", [5, 3], 218, -2, 2), Int64("labels", [2, 1, 1, 0, 2], 5)], Attrs(reduction, 1));
        Check("SoftmaxCrossEntropyLoss",
            [Random("scores", [5, 3], 219, -2, 2), Int64("labels", [2, 1, 1, 0, 2], 5), Fixed("weights", [0.5, 2.0, 1.25], 3)], Attrs(reduction, 1));
    }

    [Fact]
    public void IgnoreIndexThatNoLabelUses() =>
        Check("SoftmaxCrossEntropyLoss", [Random("scores", [4, 3], 220, -2, 2), Int64("labels", [2, 0, 1, 2], 4)], Attrs("mean", -1));

    [Theory]
    [InlineData("none")]
    [InlineData("mean")]
    [InlineData("sum")]
    public void LogProbOutputInTheLoss(string reduction)
    {
        Check("SoftmaxCrossEntropyLoss", [Random("scores", [4, 3], 221, -2, 2), Int64("labels", [2, 0, 1, 2], 4)],
            Attrs(reduction), outputs: 2, lossOutputs: [0, 1]);
        Check("SoftmaxCrossEntropyLoss",
            [Random("scores", [2, 3, 2], 222, -2, 2), Int64("labels", [0, -100, 1, 2], 2, 2), Fixed("weights", [0.3, 1.5, 0.8], 3)],
            Attrs(reduction, -100), outputs: 2, lossOutputs: [0, 1]);
    }

    [Fact]
    public void OnlyTheLogProbOutputInTheLoss() =>
        Check("SoftmaxCrossEntropyLoss", [Random("scores", [2, 3, 2], 223, -2, 2), Int64("labels", [0, 1, 1, 2], 2, 2)],
            Attrs("mean"), outputs: 2, lossOutputs: [1]);

    [Fact]
    public void Int32Labels()
    {
        var int32 = new global::OnnxAdadelta.Onnx.Proto.TensorProto { Name = "labels", DataType = (int)global::OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType.Int32, Dims = { 4 }, Int32Data = { 2, 0, 1, 2 } };
        Check("SoftmaxCrossEntropyLoss", [Random("scores", [4, 3], 224, -2, 2), new In("labels", [], [4], Differentiable: false) { Ints = int32 }], Attrs("mean", 0));
    }
}
