using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Gradients;
using static OnnxAdadelta.Tests.Import.LoweringCheck;
using A = OnnxAdadelta.Import.LoweringContext;

namespace OnnxAdadelta.Tests.Import;

// Each lowered *Grad op is checked against the gradient of Σ(y·dY) of the standard forward op, computed by the
// autodiff through ONNX Runtime. Conv and the pools run in float32 only on ORT's CPU provider.
public class ConvPoolLoweringTests
{
    private static AttributeProto Ints(string name, params long[] v) => A.Attr(name, v);

    /// <summary>The output shape of a standard one-node model, as ORT infers it.</summary>
    private static long[] OutputShape(string op, Feed[] inputs, AttributeProto[] attributes, string output = "y", int outputs = 1) =>
        [.. ShapeInference.Infer(OneNode(op, "", inputs, [.. new[] { "y", "indices" }.Take(outputs)], attributes))[output].Dims!.Select(d => d!.Value)];

    private static void CheckConvGrad(long[] xShape, long[] wShape, AttributeProto[] attributes, int seed, bool[]? wanted = null)
    {
        wanted ??= [true, true, true];
        var x = Floats("x", xShape, seed);
        var w = Floats("w", wShape, seed + 1);
        var b = Floats("b", [wShape[0]], seed + 2);
        var dy = Floats("dY", OutputShape("Conv", [x, w], attributes), seed + 3);
        var expected = GradientOf("Conv", [x, w, b], ["x", "w", "b"], [dy], attributes);
        string[] outputs = [.. new[] { "dX", "dW", "dB" }.Select((o, i) => wanted[i] ? o : "")];
        var actual = RunLowered("ConvGrad", [dy, x, w], outputs, attributes);
        int k = 0;
        for (int i = 0; i < 3; i++)
            if (wanted[i]) AssertClose(expected[i], actual[k++], rtol: 1e-4, atol: 1e-5, what: outputs[i]);
    }

    [Fact]
    public void ConvGrad2DWithStridesPadsAndDilations() =>
        // 7 + 1 + 0 − 3 = 5 is not a multiple of the stride 2 on axis 0: a leftover element, so output_padding and a crop.
        CheckConvGrad([2, 3, 7, 6], [4, 3, 2, 3], [Ints("strides", 2, 1), Ints("dilations", 2, 1), Ints("pads", 1, 0, 0, 2)], 1);

    [Fact]
    public void ConvGrad1DWithLeftover() =>
        CheckConvGrad([2, 2, 8], [3, 2, 3], [Ints("strides", 2), Ints("pads", 1, 2)], 10);

    [Fact]
    public void ConvGradGrouped() =>
        CheckConvGrad([2, 4, 5, 5], [6, 2, 3, 3], [A.Attr("group", 2L), Ints("strides", 2, 1), Ints("dilations", 1, 2), Ints("pads", 1, 1, 0, 1)], 20);

    [Fact]
    public void ConvGradDepthwise3D() =>
        CheckConvGrad([1, 2, 4, 3, 3], [4, 1, 2, 2, 2], [A.Attr("group", 2L), Ints("strides", 2, 1, 1), Ints("pads", 1, 0, 0, 0, 1, 1)], 30);

    [Fact]
    public void ConvGradAutoPadSameUpper() =>
        CheckConvGrad([1, 2, 6, 5], [3, 2, 3, 2], [A.Attr("auto_pad", "SAME_UPPER"), Ints("strides", 2, 2), Ints("kernel_shape", 3, 2)], 40);

    [Fact]
    public void ConvGradWithOnlySomeOutputs()
    {
        CheckConvGrad([2, 2, 5, 5], [3, 2, 3, 3], [Ints("pads", 1, 1, 1, 1)], 50, wanted: [false, true, false]);
        CheckConvGrad([2, 2, 5, 5], [3, 2, 3, 3], [Ints("strides", 2, 2)], 60, wanted: [true, false, true]);
    }

    [Fact]
    public void ConvGradRefusesAnUnknownAttribute()
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() => RunLowered("ConvGrad",
            [Floats("dY", [1, 1, 2, 2], 1), Floats("x", [1, 1, 3, 3], 2), Floats("w", [1, 1, 2, 2], 3)], ["dX"], [A.Attr("activation", "Relu")]));
        Assert.Contains("attribute 'activation' is not supported", e.Message);
    }

    private static void CheckMaxPoolGrad(long[] xShape, AttributeProto[] attributes, int seed)
    {
        var x = Floats("x", xShape, seed);
        var yShape = OutputShape("MaxPool", [x], attributes, "indices", outputs: 2);
        var indices = RunStandard("MaxPool", [x], ["y", "indices"], attributes)[1].Select(v => (long)v).ToArray();
        var dy = Floats("dY", yShape, seed + 1);
        var expected = GradientOf("MaxPool", [x], ["x"], [dy], attributes)[0];
        var actual = RunLowered("MaxPoolGrad", [dy, new Feed("indices", indices, yShape)], ["dX"], attributes, declared: [("dX", xShape)])[0];
        AssertClose(expected, actual, what: "dX");
        Assert.Contains(actual, v => v != 0);
    }

    [Fact]
    public void MaxPoolGradOverlappingWindowsWithPads() =>
        // Stride 1 under a 3×2 kernel: elements are the max of several windows and their gradients add up.
        CheckMaxPoolGrad([2, 3, 5, 6], [Ints("kernel_shape", 3, 2), Ints("strides", 1, 2), Ints("pads", 1, 0, 1, 1)], 100);

    [Fact]
    public void MaxPoolGrad1DWithDilationsAndCeilMode() =>
        CheckMaxPoolGrad([2, 2, 9], [Ints("kernel_shape", 2), Ints("strides", 2), Ints("dilations", 2), A.Attr("ceil_mode", 1L)], 110);

    [Fact]
    public void MaxPoolGradNeedsADeclaredOutputShapeAndRowMajorIndices()
    {
        Feed[] inputs = [Floats("dY", [1, 1, 2, 2], 1), new Feed("indices", new long[] { 0, 1, 2, 3 }, [1, 1, 2, 2])];
        var e = Assert.Throws<OnnxAdadeltaException>(() => RunLowered("MaxPoolGrad", inputs, ["dX"], [Ints("kernel_shape", 2, 2)]));
        Assert.Contains("the shape of the output dX 'dX' is unknown", e.Message);
        e = Assert.Throws<OnnxAdadeltaException>(() => RunLowered("MaxPoolGrad", inputs, ["dX"],
            [Ints("kernel_shape", 2, 2), A.Attr("storage_order", 1L)], declared: [("dX", [1, 1, 4, 4])]));
        Assert.Contains("storage_order=1", e.Message);
    }

    private static void CheckAveragePoolGrad(long[] xShape, AttributeProto[] attributes, int seed)
    {
        var x = Floats("x", xShape, seed);
        var dy = Floats("dY", OutputShape("AveragePool", [x], attributes), seed + 1);
        var expected = GradientOf("AveragePool", [x], ["x"], [dy], attributes)[0];
        var actual = RunLowered("AveragePoolGrad", [dy], ["dX"], attributes, declared: [("dX", xShape)])[0];
        AssertClose(expected, actual, rtol: 1e-5, atol: 1e-6, what: "dX");
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(1L)]
    public void AveragePoolGradWithPads(long countIncludePad) =>
        // Padded border windows: their divisor is the in-bounds count (0) or the kernel size (1).
        CheckAveragePoolGrad([2, 3, 5, 6], [Ints("kernel_shape", 3, 2), Ints("strides", 2, 1), Ints("pads", 1, 1, 1, 0),
            A.Attr("count_include_pad", countIncludePad)], 200);

    [Fact]
    public void AveragePoolGradWithCeilModeAndLeftover()
    {
        // Ceil mode adds a last partial window on axis 0 (7 − 2 = 5, stride 2); axis 1 leaves an element unread.
        CheckAveragePoolGrad([1, 2, 7, 6], [Ints("kernel_shape", 2, 3), Ints("strides", 2, 2), A.Attr("ceil_mode", 1L)], 210);
        CheckAveragePoolGrad([1, 2, 7, 6], [Ints("kernel_shape", 2, 3), Ints("strides", 2, 2)], 220);
    }

    [Fact]
    public void AveragePoolGrad1DAnd3D()
    {
        CheckAveragePoolGrad([2, 2, 9], [Ints("kernel_shape", 3), Ints("strides", 2), Ints("pads", 1, 1), A.Attr("count_include_pad", 1L)], 230);
        CheckAveragePoolGrad([1, 2, 4, 3, 5], [Ints("kernel_shape", 2, 2, 3), Ints("strides", 2, 1, 2)], 240);
    }
}
