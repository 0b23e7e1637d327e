using static OnnxAdadelta.Tests.Gradients.GradientCheck;
using A = OnnxAdadelta.Gradients.GradientContext;

namespace OnnxAdadelta.Tests.Gradients;

public class ActivationGradientTests
{
    private static readonly long[] S = [3, 4];

    [Fact]
    public void SeluWithDefaultAndGivenAttributes()
    {
        Check("Selu", [Random("x", S, 1, -2, 2, [0])], float32: true);
        Check("Selu", [Random("x", S, 2, -2, 2, [0])], [A.Attr("alpha", 1.3f), A.Attr("gamma", 0.8f)], float32: true);
        Check("Selu", [Random("x", S, 3, -2, 2, [0])], [A.Attr("gamma", 2f)], float32: true, opset: 22);
    }

    [Fact]
    public void HardSigmoidIsLinearBetweenItsClips()
    {
        // Defaults α = 0.2, β = 0.5: kinks at x = −2.5 and 2.5.
        Check("HardSigmoid", [Random("x", S, 4, -4, 4, [-2.5, 2.5])], float32: true);
        // α = 0.5, β = 0.25: kinks at x = −0.5 and 1.5.
        Check("HardSigmoid", [Random("x", S, 5, -2, 3, [-0.5, 1.5])], [A.Attr("alpha", 0.5f), A.Attr("beta", 0.25f)], float32: true);
        Check("HardSigmoid", [Random("x", S, 6, -4, 4, [-2.5, 2.5])], [A.Attr("alpha", 0.2f)], float32: true, opset: 22);
    }

    [Fact]
    public void HardSwish()
    {
        Check("HardSwish", [Random("x", [4, 5], 7, -5, 5, [-3, 3])], float32: true);
        Check("HardSwish", [Random("x", S, 8, -5, 5, [-3, 3])], float32: true, opset: 22);
    }

    [Fact]
    public void PReluTrainsItsSlopeThroughBroadcasting()
    {
        // Per-channel slope [C, 1, 1] as PyTorch exports it, a single shared slope, a slope of X's shape, and a
        // slope of lower rank broadcast from the right.
        Check("PRelu", [Random("x", [2, 3, 2, 2], 9, -2, 2, [0]), Random("slope", [3, 1, 1], 10, 0.1, 0.5)], float32: true);
        Check("PRelu", [Random("x", [2, 3], 11, -2, 2, [0]), Random("slope", [1], 12, 0.1, 0.5)], float32: true);
        Check("PRelu", [Random("x", [2, 3], 13, -2, 2, [0]), Random("slope", [2, 3], 14, -0.5, 0.5)], float32: true);
        Check("PRelu", [Random("x", [2, 3, 4], 15, -2, 2, [0]), Random("slope", [4], 16, 0.1, 0.5)], float32: true, opset: 22);
    }

    [Fact]
    public void PReluWithAFixedSlope()
    {
        Check("PRelu", [Random("x", [2, 3], 17, -2, 2, [0]), Fixed("slope", [0.25, 0.5, 0.1], 3)], float32: true);
    }

    [Fact]
    public void Softsign()
    {
        Check("Softsign", [Random("x", S, 18, -3, 3, [0])], float32: true);
        Check("Softsign", [Random("x", S, 19, -3, 3, [0])], float32: true, opset: 22);
    }

    [Fact]
    public void ThresholdedReluPassesAboveAlpha()
    {
        Check("ThresholdedRelu", [Random("x", S, 20, -1, 3, [1])], float32: true);
        Check("ThresholdedRelu", [Random("x", S, 21, -2, 2, [-0.5])], [A.Attr("alpha", -0.5f)], float32: true);
        Check("ThresholdedRelu", [Random("x", S, 22, -1, 3, [0.7])], [A.Attr("alpha", 0.7f)], float32: true, opset: 22);
    }

    [Fact]
    public void Celu()
    {
        // ONNX defines Celu for float32 only.
        Check("Celu", [Random("x", S, 23, -3, 2, [0])], float32: true);
        Check("Celu", [Random("x", S, 24, -3, 2, [0])], [A.Attr("alpha", 2.5f)], float32: true);
        Check("Celu", [Random("x", S, 25, -3, 2, [0])], [A.Attr("alpha", 0.5f)], float32: true);
    }

    [Fact]
    public void CeluWithAZeroAlphaIsRefused()
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() => Check("Celu", [Random("x", S, 26, -3, 2, [0])], [A.Attr("alpha", 0f)], float32: true));
        Assert.Contains("alpha=0", e.Message);
    }

    [Theory]
    [InlineData(18)]
    [InlineData(22)]
    public void Mish(int opset) => Check("Mish", [Random("x", S, 27, -4, 3)], float32: opset >= 22, opset: opset);

    [Fact]
    public void SinAndCos()
    {
        Check("Sin", [Random("x", S, 28, -4, 4)]);
        Check("Cos", [Random("x", S, 29, -4, 4)]);
        Check("Sin", [Random("x", S, 30, -4, 4)], opset: 22);
        Check("Cos", [Random("x", S, 31, -4, 4)], opset: 22);
    }

    [Theory]
    [InlineData("Sign", new[] { 0.0 })]
    [InlineData("Floor", new[] { -2.0, -1.0, 0.0, 1.0, 2.0 })]
    [InlineData("Ceil", new[] { -2.0, -1.0, 0.0, 1.0, 2.0 })]
    [InlineData("Round", new[] { -1.5, -0.5, 0.5, 1.5 })]
    public void PiecewiseConstantOpsGiveAnExplicitZeroGradient(string op, double[] kinks)
    {
        // The input is trained and its only path to the loss runs through the op: it gets a zero gradient of its
        // shape (the check compares it with finite differences, which are zero away from the jumps).
        Check(op, [Random("x", [2, 3, 2], 32, -2.4, 2.4, kinks)]);
    }
}
