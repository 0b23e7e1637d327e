using static OnnxAdadelta.Tests.Gradients.GradientCheck;
using A = OnnxAdadelta.Gradients.GradientContext;

namespace OnnxAdadelta.Tests.Gradients;

public class NormalizationGradientTests
{
    [Fact]
    public void BatchNormalizationInferenceForm()
    {
        // Running mean and variance are constants; X, scale and B are checked.
        Check("BatchNormalization", [Random("x", [2, 3, 2, 2], 1, -2, 2), Random("scale", [3], 2, 0.5, 2), Random("b", [3], 3),
            Fixed("mean", [0.3, -0.2, 0.1], 3), Fixed("var", [0.5, 1.5, 0.8], 3)], [A.Attr("epsilon", 1e-3f)]);
        Check("BatchNormalization", [Random("x", [4, 3], 4, -2, 2), Random("scale", [3], 5, 0.5, 2), Random("b", [3], 6),
            Fixed("mean", [0.3, -0.2, 0.1], 3), Fixed("var", [0.5, 1.5, 0.8], 3)]);
        Check("BatchNormalization", [Random("x", [2, 2, 3], 7, -2, 2), Fixed("scale", [1.5, -0.5], 2), Random("b", [2], 8),
            Fixed("mean", [0.3, -0.2], 2), Fixed("var", [0.5, 1.5], 2)], [A.Attr("momentum", 0.8f)]);
    }

    [Fact]
    public void BatchNormalizationTrainingMode()
    {
        // Batch statistics: the gradient flows to X through the mean and variance too; running statistics get none.
        Check("BatchNormalization", [Random("x", [2, 3, 2, 2], 9, -2, 2), Random("scale", [3], 10, 0.5, 2), Random("b", [3], 11),
            Fixed("mean", [0.3, -0.2, 0.1], 3), Fixed("var", [0.5, 1.5, 0.8], 3)], [A.Attr("training_mode", 1L), A.Attr("epsilon", 1e-3f)], outputs: 3, lossOutputs: [0]);
        Check("BatchNormalization", [Random("x", [5, 3], 12, -2, 2), Random("scale", [3], 13, 0.5, 2), Random("b", [3], 14),
            Fixed("mean", [0, 0, 0], 3), Fixed("var", [1, 1, 1], 3)], [A.Attr("training_mode", 1L), A.Attr("momentum", 0.7f)], outputs: 3, lossOutputs: [0]);
        Check("BatchNormalization", [Random("x", [3, 2, 4], 15, -2, 2), Fixed("scale", [1.5, -0.5], 2), Random("b", [2], 16),
            Fixed("mean", [0.3, -0.2], 2), Fixed("var", [0.5, 1.5], 2)], [A.Attr("training_mode", 1L)], outputs: 3, lossOutputs: [0]);
        // Opset 18 takes ReduceMean's axes as an input.
        Check("BatchNormalization", [Random("x", [3, 2, 2], 17, -2, 2), Random("scale", [2], 18, 0.5, 2), Random("b", [2], 19),
            Fixed("mean", [0.3, -0.2], 2), Fixed("var", [0.5, 1.5], 2)], [A.Attr("training_mode", 1L)], outputs: 3, lossOutputs: [0], opset: 18);
    }

    [Fact]
    public void LayerNormalizationLastAxis()
    {
        Check("LayerNormalization", [Random("x", [2, 3, 4], 20, -2, 2), Random("scale", [4], 21, 0.5, 2), Random("b", [4], 22)], [A.Attr("epsilon", 1e-3f)]);
        Check("LayerNormalization", [Random("x", [3, 5], 23, -2, 2), Random("scale", [5], 24, -2, 2)]);
    }

    [Theory]
    [InlineData(17)]
    [InlineData(18)] // ReduceMean takes its axes as an input from opset 18 on
    public void LayerNormalizationOverTwoAxes(int opset)
    {
        Check("LayerNormalization", [Random("x", [2, 3, 4], 25, -2, 2), Random("scale", [3, 4], 26, 0.5, 2), Random("b", [3, 4], 27)], [A.Attr("axis", 1L)], opset: opset);
        Check("LayerNormalization", [Random("x", [2, 3, 4], 28, -2, 2), Random("scale", [3, 4], 29, 0.5, 2)], [A.Attr("axis", -2L)], opset: opset);
    }

    [Fact]
    public void LayerNormalizationWithStatisticsOutputs()
    {
        // Mean and InvStdDev may be outputs as long as no gradient flows into them.
        Check("LayerNormalization", [Random("x", [2, 4], 30, -2, 2), Random("scale", [4], 31), Random("b", [4], 32)], outputs: 3, lossOutputs: [0]);
        var e = Assert.Throws<OnnxAdadeltaException>(() =>
            Check("LayerNormalization", [Random("x", [2, 4], 33, -2, 2), Random("scale", [4], 34)], outputs: 3, lossOutputs: [0, 1], float32: true));
        Assert.Contains("Mean", e.Message);
    }

    [Fact]
    public void DropoutIsAnIdentity()
    {
        Check("Dropout", [Random("x", [2, 3], 40)]);
        Check("Dropout", [Random("x", [2, 3], 41), Fixed("ratio", [0.3]), Bool("training_mode", [false])], outputs: 2, lossOutputs: [0]);
        Check("Dropout", [Random("x", [2, 3], 42), Fixed("ratio", [0.5])], [A.Attr("seed", 7L)]);
    }
}
