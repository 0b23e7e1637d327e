using static OnnxAdadelta.Tests.Gradients.GradientCheck;
using A = OnnxAdadelta.Gradients.GradientContext;

namespace OnnxAdadelta.Tests.Gradients;

public class ElementwiseGradientTests
{
    private static readonly long[] S = [2, 3];

    [Theory]
    [InlineData("Add")]
    [InlineData("Sub")]
    [InlineData("Mul")]
    [InlineData("Div")]
    public void BinaryOpsWithBroadcasting(string op)
    {
        Check(op, [Random("a", [2, 3], 1), Random("b", [2, 3], 2, 0.5, 2)]);
        Check(op, [Random("a", [2, 1, 3], 3), Random("b", [4, 1], 4, 0.5, 2)]);   // both sides broadcast
        Check(op, [Random("a", [3], 5), Random("b", [2, 3], 6, 0.5, 2)]);        // rank broadcast
        Check(op, [Random("a", [2, 3], 7), Random("b", [], 8, 0.5, 2)]);         // scalar
    }

    [Theory]
    [InlineData("Neg", -2, 2, null)]
    [InlineData("Identity", -2, 2, null)]
    [InlineData("Sqrt", 0.2, 3, null)]
    [InlineData("Reciprocal", 0.3, 2, null)]
    [InlineData("Exp", -2, 2, null)]
    [InlineData("Log", 0.2, 3, null)]
    [InlineData("Abs", -2, 2, 0.0)]
    [InlineData("Tanh", -2, 2, null)]
    [InlineData("Sigmoid", -3, 3, null)]
    [InlineData("Relu", -2, 2, 0.0)]
    public void UnaryOps(string op, double lo, double hi, double? kink)
    {
        Check(op, [Random("x", [2, 3], 11, lo, hi, kink is null ? null : [kink.Value])]);
    }

    [Fact]
    public void OpsOrtRunsInFloat32Only()
    {
        // ONNX Runtime's CPU provider has no float64 kernels for these: checked in float32 with looser tolerance.
        Check("Softplus", [Random("x", S, 12, -3, 3)], float32: true);
        Check("Erf", [Random("x", S, 13, -2, 2)], float32: true);
        Check("LeakyRelu", [Random("x", S, 14, -2, 2, [0])], [A.Attr("alpha", 0.2f)], float32: true);
        Check("Elu", [Random("x", S, 15, -2, 2, [0])], [A.Attr("alpha", 0.7f)], float32: true);
    }

    [Theory]
    [InlineData("none")]
    [InlineData("tanh")]
    public void Gelu(string approximate) =>
        Check("Gelu", [Random("x", S, 16, -3, 3)], [A.Attr("approximate", approximate)], float32: true, opset: 20);

    [Fact]
    public void PowWithAConstantExponent()
    {
        Check("Pow", [Random("x", S, 17, 0.3, 2), Fixed("e", [2.5], 1)]);
        Check("Pow", [Random("x", [3], 18, 0.3, 2), Fixed("e", [1.5, 2, 3], 3)]);
    }

    [Fact]
    public void ClipPassesInsideTheBounds()
    {
        Check("Clip", [Random("x", [3, 4], 19, -2, 2, [-0.5, 0.7]), Fixed("lo", [-0.5]), Fixed("hi", [0.7])]);
        Check("Clip", [Random("x", [3, 4], 20, -2, 2, [-0.5]), Fixed("lo", [-0.5])]);
    }

    [Fact]
    public void WhereRoutesByTheCondition()
    {
        Check("Where", [Bool("c", [true, false, true, false, false, true], 2, 3), Random("a", [2, 3], 21), Random("b", [3], 22)]);
    }

    [Theory]
    [InlineData("Max")]
    [InlineData("Min")]
    public void MaxAndMinSelectOneInput(string op)
    {
        Check(op, [Random("a", [2, 3], 23), Random("b", [2, 3], 24), Random("c", [3], 25)]);
    }

    [Theory]
    [InlineData("Sum")]
    [InlineData("Mean")]
    public void Variadic(string op)
    {
        // ORT has no float64 Mean kernel.
        Check(op, [Random("a", [2, 3], 26), Random("b", [3], 27), Random("c", [2, 1], 28)], float32: op == "Mean");
    }

    [Fact]
    public void CastBetweenFloatTypes()
    {
        Check("Cast", [Random("x", S, 29)], [A.Attr("to", (long)global::OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType.Double)]);
        // CastLike: x takes the type of 'like' (a float32 constant), and its gradient comes back as float64.
        Check("CastLike", [Random("x", S, 30), Fixed("like", [1.0], 1)]);
    }

    [Fact]
    public void AValueUsedTwiceSumsItsGradients()
    {
        Check("Mul", [Random("x", S, 30)], nodeInputs: ["x", "x"]);
    }
}
