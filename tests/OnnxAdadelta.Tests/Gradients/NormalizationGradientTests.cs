using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using static OnnxAdadelta.Tests.Gradients.GradientCheck;
using A = OnnxAdadelta.Gradients.GradientContext;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Gradients;

public class NormalizationGradientTests
{
    /// <summary>
    /// Builds the training graph of one <paramref name="op"/> node over float32 initializers of the given shapes (all
    /// trained), with loss Σy, and returns the error message: for inputs that ONNX Runtime itself refuses to run, so
    /// that the rule's own message can be checked without a forward pass.
    /// </summary>
    private static string BuildFails(string op, int opset, (string Name, long[] Shape)[] inputs, params AttributeProto[] attributes)
    {
        var g = new GraphProto { Name = op };
        foreach (var (name, shape) in inputs)
            g.Initializer.Add(Tensors.Create(name, new float[shape.Aggregate(1L, (a, b) => a * b)], shape));
        var b = new GraphBuilder(g);
        var y = b.Add(op, [.. inputs.Select(i => i.Name)], "y", attributes);
        b.Add("ReduceSum", [y], "L", GraphBuilder.Attr("keepdims", 0L));
        g.Output.Add(TypeProtos.ValueInfo("L", DataType.Float, []));
        var m = new ModelProto { IrVersion = 9, Graph = g };
        m.OpsetImport.Add(new OperatorSetIdProto { Version = opset });
        return Assert.Throws<OnnxAdadeltaException>(() => GradientGraphBuilder.Build(m, new BuildTrainingOptions { Loss = LossKind.Output, Output = "L" })).Message;
    }

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

    [Fact]
    public void InstanceNormalization()
    {
        Check("InstanceNormalization", [Random("x", [2, 3, 4], 50, -2, 2), Random("scale", [3], 51, 0.5, 2), Random("b", [3], 52)], float32: true);
        Check("InstanceNormalization", [Random("x", [2, 2, 2, 3], 53, -2, 2), Random("scale", [2], 54, -2, 2), Random("b", [2], 55)],
            [A.Attr("epsilon", 1e-2f)], float32: true);
        Check("InstanceNormalization", [Random("x", [1, 3, 5], 56, -2, 2), Fixed("scale", [1.5, -0.5, 2], 3), Fixed("b", [0.1, 0.2, 0.3], 3)], float32: true, opset: 22);
    }

    [Fact]
    public void InstanceNormalizationNeedsASpatialAxis()
    {
        var e = BuildFails("InstanceNormalization", 17, [("x", [2, 3]), ("scale", [3]), ("b", [3])]);
        Assert.Contains("'x' has rank 2", e);
    }

    [Theory]
    [InlineData(18)]
    [InlineData(21)]
    public void GroupNormalization(int opset)
    {
        // Opset 18: scale and bias per group; opset 21: per channel. Opset 21 computes the statistics in float32 by
        // default (stash_type=1), too coarse for float64 finite differences: checked in float32 here and in float64
        // with stash_type=11 below.
        long scaleLength(long groups, long channels) => opset >= 21 ? channels : groups;
        bool float32 = opset >= 21;
        Check("GroupNormalization", [Random("x", [2, 4, 3], 60, -2, 2), Random("scale", [scaleLength(2, 4)], 61, 0.5, 2), Random("b", [scaleLength(2, 4)], 62)],
            [A.Attr("num_groups", 2L)], float32: float32, opset: opset);
        Check("GroupNormalization", [Random("x", [2, 6, 2, 2], 63, -2, 2), Random("scale", [scaleLength(3, 6)], 64, -2, 2), Random("b", [scaleLength(3, 6)], 65)],
            [A.Attr("num_groups", 3L), A.Attr("epsilon", 1e-2f)], float32: float32, opset: opset);
        Check("GroupNormalization", [Random("x", [3, 4], 66, -2, 2), Random("scale", [scaleLength(1, 4)], 67, 0.5, 2), Random("b", [scaleLength(1, 4)], 68)],
            [A.Attr("num_groups", 1L)], float32: float32, opset: opset);
    }

    [Fact]
    public void GroupNormalizationStashType()
    {
        Check("GroupNormalization", [Random("x", [2, 4, 3], 69, -2, 2), Random("scale", [4], 70, 0.5, 2), Random("b", [4], 71)],
            [A.Attr("num_groups", 2L), A.Attr("stash_type", 11L)], opset: 21);
        Check("GroupNormalization", [Random("x", [2, 4, 3], 72, -2, 2), Random("scale", [4], 73, 0.5, 2), Random("b", [4], 74)],
            [A.Attr("num_groups", 4L), A.Attr("stash_type", 1L)], float32: true, opset: 21);
    }

    [Fact]
    public void GroupNormalizationBadAttributesAreRefused()
    {
        var e = BuildFails("GroupNormalization", 21, [("x", [2, 4, 3]), ("scale", [4]), ("b", [4])], A.Attr("num_groups", 3L));
        Assert.Contains("4 channels of 'x' do not split into num_groups=3", e);
        e = BuildFails("GroupNormalization", 18, [("x", [2, 4, 3]), ("scale", [2]), ("b", [2])], A.Attr("num_groups", 2L), A.Attr("stash_type", 1L));
        Assert.Contains("stash_type", e);
    }

    [Theory]
    [InlineData(1L)]
    [InlineData(2L)]
    public void LpNormalization(long p)
    {
        Check("LpNormalization", [Random("x", [3, 4], 80, -2, 2, [0])], [A.Attr("p", p)]);
        Check("LpNormalization", [Random("x", [2, 3, 2], 81, -2, 2, [0])], [A.Attr("p", p), A.Attr("axis", 1L)]);
        Check("LpNormalization", [Random("x", [2, 3, 2], 82, -2, 2, [0])], [A.Attr("p", p), A.Attr("axis", 0L)]);
    }

    [Fact]
    public void LpNormalizationDefaults() => Check("LpNormalization", [Random("x", [2, 5], 83, -2, 2)]);
}
