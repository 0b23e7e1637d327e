using static OnnxAdadelta.Tests.Gradients.GradientCheck;
using A = OnnxAdadelta.Gradients.GradientContext;

namespace OnnxAdadelta.Tests.Gradients;

public class ReductionGradientTests
{
    /// <summary>Every Reduce op with inputs where it is smooth: positive for ReduceLogSum, away from 0 for ReduceL1.</summary>
    private static In X(string op, long[] shape, int seed) => op switch
    {
        "ReduceLogSum" => Random("x", shape, seed, 0.5, 2),
        "ReduceL1" => Random("x", shape, seed, kinks: [0]),
        _ => Random("x", shape, seed),
    };

    public static TheoryData<string> All => new()
    {
        "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
    };

    public static TheoryData<string> AxesAttributeOps => new()
    {
        "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
    };

    [Theory]
    [MemberData(nameof(All))]
    public void AxesAsInputWithAndWithoutKeepdims(string op)
    {
        Check(op, [X(op, [2, 3, 4], 40), Int64("axes", [1], 1)], [A.Attr("keepdims", 0L)], opset: 18);
        Check(op, [X(op, [2, 3, 4], 41), Int64("axes", [-1, 0], 2)], [A.Attr("keepdims", 1L)], opset: 18);
        Check(op, [X(op, [2, 3], 42)], [A.Attr("keepdims", 0L)], opset: 18); // all axes
        Check(op, [X(op, [2, 3], 45)], opset: 18);                           // all axes, keepdims by default
    }

    [Theory]
    [MemberData(nameof(AxesAttributeOps))]
    public void AxesAsAttributeBeforeOpset18(string op)
    {
        Check(op, [X(op, [2, 3, 4], 43)], [A.Attr("axes", new long[] { 2 }), A.Attr("keepdims", 0L)], opset: 17);
        Check(op, [X(op, [2, 3, 4], 46)], [A.Attr("axes", new long[] { 0, -1 })], opset: 17);
        Check(op, [X(op, [2, 3], 47)], [A.Attr("keepdims", 0L)], opset: 17); // all axes
    }

    [Theory]
    [MemberData(nameof(All))]
    public void NoopWithEmptyAxesKeepsOnlyTheElementwisePart(string op)
    {
        Check(op, [X(op, [2, 3], 44)], [A.Attr("noop_with_empty_axes", 1L)], opset: 18);
    }

    [Theory]
    [InlineData("ReduceMax")]
    [InlineData("ReduceMin")]
    public void TiesShareTheGradient(string op)
    {
        // Two equal extremes in the first row: the central difference sees each at half the slope.
        var x = new In("x", [0.5, -0.5, 0.5, 0.1, 0.2, -0.3], [2, 3]);
        var y = new In("x", [-0.5, 0.5, -0.5, 0.1, 0.2, -0.3], [2, 3]);
        Check(op, [op == "ReduceMax" ? x : y, Int64("axes", [1], 1)], opset: 18);
    }

    [Fact]
    public void ReduceProdWithZerosIsTheProductOfTheOthers()
    {
        // Rows: no zero, one zero, two zeros; the product is linear in each element, so differences are exact there.
        var x = new In("x", [0.5, -1.5, 2.0, 0.7, 0.0, -1.2, 0.0, 0.9, 0.0], [3, 3]);
        Check("ReduceProd", [x, Int64("axes", [1], 1)], [A.Attr("keepdims", 0L)], opset: 18);
        Check("ReduceProd", [x], [A.Attr("axes", new long[] { 0 })], opset: 17);
    }

    [Fact]
    public void ReduceL2OfAnAllZeroGroupGivesZeroNotNaN()
    {
        // √Σx² is symmetric about an all-zero group, so its central difference there is 0, the rule's subgradient.
        Check("ReduceL2", [new In("x", [0.3, -0.4, 1.2, 0.0, 0.0, 0.0], [2, 3]), Int64("axes", [1], 1)], opset: 18);
    }
}
