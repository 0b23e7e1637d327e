using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using static OnnxAdadelta.Tests.Gradients.GradientCheck;
using A = OnnxAdadelta.Gradients.GradientContext;

namespace OnnxAdadelta.Tests.Gradients;

// ONNX Runtime's CPU provider runs Conv, ConvTranspose and the pools in float32 only: checked with float32 tolerances.
public class ConvolutionGradientTests
{
    private static AttributeProto Ints(string name, params long[] v) => A.Attr(name, v);

    [Fact]
    public void Conv1DWithStridePadsAndBias() =>
        // Output 4 of (7 + 1 + 2 − 3) / 2 + 1, one input element left over: dX needs output_padding, dW a crop.
        Check("Conv", [Random("x", [2, 2, 7], 1), Random("w", [3, 2, 3], 2), Random("b", [3], 3)],
            [Ints("strides", 2), Ints("pads", 1, 2)], float32: true);

    [Fact]
    public void Conv2DWithStridesDilationsAndAsymmetricPads() =>
        Check("Conv", [Random("x", [1, 2, 7, 6], 4), Random("w", [3, 2, 2, 3], 5), Random("b", [3], 6)],
            [Ints("strides", 2, 3), Ints("dilations", 2, 1), Ints("pads", 1, 0, 0, 2)], float32: true);

    [Fact]
    public void Conv2DWithoutBias() =>
        Check("Conv", [Random("x", [2, 3, 4, 5], 7), Random("w", [2, 3, 3, 2], 8)], [Ints("pads", 1, 0, 1, 1)], float32: true);

    [Fact]
    public void Conv2DGrouped()
    {
        // group=2 with 2 input and 3 output channels per group, strides and dilations.
        Check("Conv", [Random("x", [2, 4, 5, 5], 9), Random("w", [6, 2, 3, 3], 10), Random("b", [6], 11)],
            [A.Attr("group", 2L), Ints("strides", 2, 1), Ints("dilations", 1, 2), Ints("pads", 1, 1, 0, 1)], float32: true);
        // Depthwise with a channel multiplier of 2 (group = C = 3).
        Check("Conv", [Random("x", [1, 3, 4, 4], 12), Random("w", [6, 1, 2, 2], 13)], [A.Attr("group", 3L), Ints("strides", 2, 2)], float32: true);
    }

    [Fact]
    public void Conv3D() =>
        Check("Conv", [Random("x", [1, 2, 4, 3, 3], 14), Random("w", [2, 2, 2, 2, 2], 15), Random("b", [2], 16)],
            [Ints("strides", 2, 1, 1), Ints("dilations", 1, 1, 2), Ints("pads", 1, 0, 0, 0, 1, 1)], float32: true);

    [Theory]
    [InlineData("SAME_UPPER")]
    [InlineData("SAME_LOWER")]
    public void ConvAutoPadSame(string mode)
    {
        // Odd total padding on both axes: UPPER pads the end, LOWER the beginning.
        Check("Conv", [Random("x", [1, 2, 6, 5], 17), Random("w", [3, 2, 3, 2], 18), Random("b", [3], 19)],
            [A.Attr("auto_pad", mode), Ints("strides", 2, 2)], float32: true);
        Check("Conv", [Random("x", [1, 1, 4, 4], 20), Random("w", [2, 1, 2, 3], 21)], [A.Attr("auto_pad", mode)], float32: true);
        // A 1×1 kernel with stride 2 on an even size: the total pad is −1 (no leading pad, the last element unread).
        Check("Conv", [Random("x", [2, 2, 6], 26), Random("w", [3, 2, 1], 27)], [A.Attr("auto_pad", mode), Ints("strides", 2)], float32: true);
    }

    [Fact]
    public void ConvAutoPadSameWithANegativeLeadingPadIsRefused()
    {
        // Total pad (3 − 1)·4 + 1 − 12 = −3: SAME_UPPER puts −1 at the beginning.
        var e = Assert.Throws<OnnxAdadeltaException>(() =>
            Check("Conv", [Random("x", [1, 1, 12], 28), Random("w", [1, 1, 1], 29)], [A.Attr("auto_pad", "SAME_UPPER"), Ints("strides", 4)], float32: true));
        Assert.Contains("negative leading pad", e.Message);
    }

    [Fact]
    public void ConvAutoPadValid() =>
        Check("Conv", [Random("x", [1, 2, 5, 6], 22), Random("w", [2, 2, 2, 2], 23)],
            [A.Attr("auto_pad", "VALID"), Ints("strides", 2, 2)], float32: true);

    [Fact]
    public void ConvOnlyTheWeightTrained() =>
        Check("Conv", [Fixed("x", Random("x", [1, 2, 5, 5], 24).Values, 1, 2, 5, 5), Random("w", [2, 1, 3, 3], 25)],
            [A.Attr("group", 2L), Ints("strides", 2, 2)], float32: true);

    [Fact]
    public void ConvTranspose1DWithStridePadsOutputPaddingAndBias() =>
        // Output (4 − 1)·2 + 1 + 3 − 1 − 0 = 9; W is [C, M/group, K].
        Check("ConvTranspose", [Random("x", [2, 2, 4], 50), Random("w", [2, 3, 3], 51), Random("b", [3], 52)],
            [Ints("strides", 2), Ints("pads", 1, 0), Ints("output_padding", 1)], float32: true);

    [Fact]
    public void ConvTranspose2DWithStridesDilationsAndAsymmetricPads() =>
        Check("ConvTranspose", [Random("x", [1, 2, 3, 4], 53), Random("w", [2, 2, 2, 3], 54), Random("b", [2], 55)],
            [Ints("strides", 2, 3), Ints("dilations", 2, 1), Ints("pads", 1, 0, 0, 2), Ints("output_padding", 1, 2)], float32: true);

    [Fact]
    public void ConvTransposeGrouped()
    {
        Check("ConvTranspose", [Random("x", [2, 4, 3, 3], 58), Random("w", [4, 3, 2, 2], 59), Random("b", [6], 60)],
            [A.Attr("group", 2L), Ints("strides", 2, 1), Ints("pads", 0, 1, 1, 0)], float32: true);
        // Depthwise (group = C) with a channel multiplier of 2.
        Check("ConvTranspose", [Random("x", [1, 3, 3, 2], 61), Random("w", [3, 2, 3, 2], 62)], [A.Attr("group", 3L), Ints("strides", 2, 2)], float32: true);
    }

    [Fact]
    public void ConvTranspose3D() =>
        Check("ConvTranspose", [Random("x", [1, 2, 2, 3, 2], 63), Random("w", [2, 2, 2, 2, 2], 64), Random("b", [2], 65)],
            [Ints("strides", 2, 1, 1), Ints("dilations", 1, 1, 2), Ints("pads", 1, 0, 0, 0, 1, 1)], float32: true);

    [Theory]
    [InlineData("NOTSET")]
    [InlineData("SAME_UPPER")]
    [InlineData("SAME_LOWER")]
    [InlineData("VALID")]
    public void ConvTransposeOutputShape(string mode)
    {
        // Full size (3 − 1)·2 + 3 = 7 and (4 − 1)·2 + 2 = 8: total pads 2 and 1 (odd: the split depends on auto_pad).
        Check("ConvTranspose", [Random("x", [1, 2, 3, 4], 66), Random("w", [2, 3, 3, 2], 67), Random("b", [3], 68)],
            [A.Attr("auto_pad", mode), Ints("strides", 2, 2), Ints("output_shape", 5, 7)], float32: true);
    }

    [Theory]
    [InlineData("SAME_UPPER")]
    [InlineData("SAME_LOWER")]
    public void ConvTransposeAutoPadSame(string mode)
    {
        // Output in·stride: total pads (3 − 1)·2 + 3 − 6 = 1 and (4 − 1)·2 + 2 − 8 = 0; dilation 2 on the first axis. (With
        // output_padding, ONNX shape inference and ONNX Runtime disagree on the output size of SAME_UPPER/SAME_LOWER.)
        Check("ConvTranspose", [Random("x", [1, 2, 3, 4], 72), Random("w", [2, 2, 2, 2], 73), Random("b", [2], 74)],
            [A.Attr("auto_pad", mode), Ints("strides", 2, 2), Ints("dilations", 2, 1)], float32: true);
        Check("ConvTranspose", [Random("x", [2, 1, 5], 75), Random("w", [1, 2, 4], 76)], [A.Attr("auto_pad", mode)], float32: true);
    }

    [Fact]
    public void ConvTransposeAutoPadValid() =>
        Check("ConvTranspose", [Random("x", [1, 2, 3, 3], 77), Random("w", [2, 2, 3, 2], 78)],
            [A.Attr("auto_pad", "VALID"), Ints("strides", 2, 3)], float32: true);

    [Theory]
    [InlineData("NOTSET", "output_shape is given")]
    [InlineData("SAME_UPPER", "auto_pad=SAME_UPPER")]
    public void ConvTransposeWithSymbolicSpatialSizesIsRefused(string mode, string named)
    {
        var w = Tensors.Create("w", Enumerable.Repeat(0.5f, 16).ToArray(), 2, 2, 2, 2);
        AttributeProto[] attributes = mode == "NOTSET" ? [Ints("strides", 2, 2), Ints("output_shape", 6, 6)] : [Ints("strides", 2, 2), A.Attr("auto_pad", mode)];
        var e = ResamplingGradientTests.BuildFails("ConvTranspose", [1, 2, "H", "W"], ["x", "w"], [w], attributes);
        Assert.Contains(named, e.Message);
        Assert.Contains("must be static", e.Message);
    }

    [Fact]
    public void ConvTransposeOnlyTheWeightTrained() =>
        Check("ConvTranspose", [Fixed("x", Random("x", [1, 2, 3, 3], 79).Values, 1, 2, 3, 3), Random("w", [2, 2, 2, 2], 80)],
            [A.Attr("group", 2L), Ints("strides", 2, 2)], float32: true);

    /// <summary>Distinct values (a scaled permutation, 0.1 apart) so that every max is unique and stays so under the finite-difference step.</summary>
    private static In Distinct(string name, long[] shape, int seed)
    {
        int n = (int)shape.Aggregate(1L, (a, b) => a * b);
        var values = Enumerable.Range(0, n).Select(i => (i - n / 2) * 0.1).ToArray();
        new Random(seed).Shuffle(values);
        return new In(name, values, shape);
    }

    [Fact]
    public void MaxPoolNonOverlapping() =>
        Check("MaxPool", [Distinct("x", [2, 2, 4, 4], 30)], [Ints("kernel_shape", 2, 2), Ints("strides", 2, 2)], float32: true);

    [Fact]
    public void MaxPoolOverlappingWithPads() =>
        // Stride 1 with a 3×3 window: one element is often the max of several windows, whose gradients add.
        Check("MaxPool", [Distinct("x", [2, 1, 4, 5], 31)], [Ints("kernel_shape", 3, 3), Ints("pads", 1, 1, 1, 1)], float32: true);

    [Fact]
    public void MaxPoolCeilModeAndDilations()
    {
        Check("MaxPool", [Distinct("x", [1, 2, 5, 5], 32)], [Ints("kernel_shape", 2, 2), Ints("strides", 2, 2), A.Attr("ceil_mode", 1L)], float32: true);
        Check("MaxPool", [Distinct("x", [1, 1, 6, 5], 33)], [Ints("kernel_shape", 2, 2), Ints("dilations", 2, 1), Ints("pads", 0, 1, 1, 0)], float32: true);
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(1L)]
    public void MaxPoolWithItsIndicesOutput(long storageOrder) =>
        // Row-major Indices are reused; column-major ones are not, and a second MaxPool computes row-major ones.
        Check("MaxPool", [Distinct("x", [2, 2, 3, 4], 34)], [Ints("kernel_shape", 2, 2), Ints("pads", 1, 0, 0, 1), A.Attr("storage_order", storageOrder)],
            outputs: 2, lossOutputs: [0], float32: true);

    [Fact]
    public void MaxPool1DAnd3D()
    {
        Check("MaxPool", [Distinct("x", [2, 2, 7], 35)], [Ints("kernel_shape", 3), Ints("strides", 2), Ints("pads", 1, 1)], float32: true);
        Check("MaxPool", [Distinct("x", [1, 2, 3, 4, 3], 36)], [Ints("kernel_shape", 2, 2, 2), Ints("strides", 1, 2, 1)], float32: true);
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(1L)]
    public void AveragePoolWithPads(long countIncludePad)
    {
        var count = A.Attr("count_include_pad", countIncludePad);
        Check("AveragePool", [Random("x", [1, 2, 5, 5], 40)], [Ints("kernel_shape", 3, 3), Ints("strides", 2, 2), Ints("pads", 1, 1, 1, 1), count], float32: true);
        Check("AveragePool", [Random("x", [2, 1, 5, 4], 41)], [Ints("kernel_shape", 3, 2), Ints("pads", 0, 1, 2, 0), count], float32: true);
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(1L)]
    public void AveragePoolCeilMode(long countIncludePad) =>
        // The last window on each axis hangs over the end of the (padded) input.
        Check("AveragePool", [Random("x", [1, 2, 5, 6], 42)],
            [Ints("kernel_shape", 2, 3), Ints("strides", 2, 2), Ints("pads", 1, 0, 0, 0), A.Attr("ceil_mode", 1L), A.Attr("count_include_pad", countIncludePad)], float32: true);

    [Theory]
    [InlineData("SAME_UPPER", 0L)]
    [InlineData("SAME_LOWER", 0L)]
    [InlineData("SAME_UPPER", 1L)]
    [InlineData("VALID", 0L)]
    public void AveragePoolAutoPad(string mode, long countIncludePad) =>
        Check("AveragePool", [Random("x", [1, 2, 5, 4], 43)],
            [Ints("kernel_shape", 2, 3), Ints("strides", 1, 2), A.Attr("auto_pad", mode), A.Attr("count_include_pad", countIncludePad)], float32: true);

    [Fact]
    public void AveragePoolDilationsAnd1D()
    {
        Check("AveragePool", [Random("x", [1, 2, 6, 5], 44)], [Ints("kernel_shape", 2, 2), Ints("dilations", 2, 1), Ints("pads", 1, 0, 0, 1)], float32: true, opset: 19);
        Check("AveragePool", [Random("x", [2, 2, 7], 45)], [Ints("kernel_shape", 3), Ints("strides", 2), Ints("pads", 1, 1)], float32: true);
    }

    [Fact]
    public void GlobalPools()
    {
        Check("GlobalAveragePool", [Random("x", [2, 3, 2, 3], 50)], float32: true);
        Check("GlobalAveragePool", [Random("x", [2, 2, 5], 51)], float32: true);
        Check("GlobalMaxPool", [Distinct("x", [2, 2, 3, 3], 52)], float32: true);
    }

    [Fact]
    public void ANetworkWithASymbolicBatchMatchesTheStaticOne()
    {
        // Conv (grouped) → BatchNormalization → Relu → MaxPool → Conv (SAME_UPPER) → AveragePool → LayerNormalization
        // → Dropout → GlobalAveragePool → Σ y²: every rule built once with a fixed batch of 2 and once with a symbolic
        // batch (reshapes and transposes must not depend on N); both training graphs give the same gradients.
        var rng = new Random(60);
        var inits = new (string Name, long[] Shape)[]
        {
            ("w1", [6, 2, 3, 3]), ("b1", [6]), ("scale", [6]), ("shift", [6]), ("mean", [6]), ("var", [6]),
            ("w2", [4, 6, 2, 2]), ("ln_scale", [3, 3]), ("ln_bias", [3, 3]),
        }.Select(i => Tensors.Create(i.Name, Enumerable.Range(0, (int)Tensors.ElementCount(i.Shape))
            .Select(_ => i.Name == "var" ? (float)(0.5 + rng.NextDouble()) : (float)(rng.NextDouble() * 2 - 1)).ToArray(), i.Shape)).ToList();
        var x = Enumerable.Range(0, 2 * 4 * 6 * 6).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();

        ModelProto Model(bool symbolic)
        {
            var g = new GraphProto { Name = "net" };
            var type = TypeProtos.Tensor(TensorProto.Types.DataType.Float, [2, 4, 6, 6]);
            if (symbolic) type.TensorType.Shape.Dim[0] = new TensorShapeProto.Types.Dimension { DimParam = "batch" };
            g.Input.Add(new ValueInfoProto { Name = "x", Type = type });
            g.Initializer.AddRange(inits.Select(t => t.Clone()));
            void Node(string op, string[] inputs, string output, params AttributeProto[] attributes) =>
                g.Node.Add(new NodeProto { OpType = op, Name = output, Input = { inputs }, Output = { output }, Attribute = { attributes } });
            Node("Conv", ["x", "w1", "b1"], "c1", A.Attr("group", 2L), Ints("pads", 1, 1, 1, 1));
            Node("BatchNormalization", ["c1", "scale", "shift", "mean", "var"], "bn");
            Node("Relu", ["bn"], "r");
            Node("MaxPool", ["r"], "mp", Ints("kernel_shape", 2, 2), Ints("strides", 2, 2));
            Node("Conv", ["mp", "w2"], "c2", A.Attr("auto_pad", "SAME_UPPER"));
            Node("AveragePool", ["c2"], "ap", Ints("kernel_shape", 3, 3), Ints("pads", 1, 1, 1, 1));
            Node("LayerNormalization", ["ap", "ln_scale", "ln_bias"], "ln", A.Attr("axis", 2L));
            Node("Dropout", ["ln"], "dr");
            Node("GlobalAveragePool", ["dr"], "gap");
            Node("Mul", ["gap", "gap"], "sq");
            Node("ReduceSum", ["sq"], "L", A.Attr("keepdims", 0L));
            g.Output.Add(TypeProtos.ValueInfo("L", TensorProto.Types.DataType.Float, []));
            var m = new ModelProto { IrVersion = 9, Graph = g };
            m.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
            var trainable = new[] { "x", "w1", "b1", "scale", "shift", "w2", "ln_scale", "ln_bias" };
            return GradientGraphBuilder.Build(m, new BuildTrainingOptions { Loss = LossKind.Output, Output = "L", Trainable = trainable });
        }

        Dictionary<string, float[]> Run(ModelProto model)
        {
            using var session = new InferenceSession(model.ToByteArray());
            using var input = OrtValue.CreateTensorValueFromMemory(x, [2, 4, 6, 6]);
            var names = model.Graph.Output.Select(o => o.Name).ToArray();
            using var results = session.Run(new RunOptions(), ["x"], [input], names);
            return names.Zip(results).ToDictionary(p => p.First, p => p.Second.GetTensorDataAsSpan<float>().ToArray());
        }

        var symbolicModel = Model(symbolic: true);
        Assert.NotEqual(TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue, symbolicModel.Graph.Output.Single(o => o.Name == "x_grad").Type.TensorType.Shape.Dim[0].ValueCase);
        var expected = Run(Model(symbolic: false));
        var actual = Run(symbolicModel);
        Assert.Equal(9, expected.Count);
        foreach (var (name, values) in expected)
        {
            Assert.Equal(values.Length, actual[name].Length);
            for (int i = 0; i < values.Length; i++)
                Assert.True(Math.Abs(values[i] - actual[name][i]) <= 1e-5 + 1e-4 * Math.Abs(values[i]), $"{name}[{i}]: {values[i]} vs {actual[name][i]}");
        }
    }
}
