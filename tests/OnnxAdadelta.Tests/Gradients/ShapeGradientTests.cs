using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Gradients;
using static OnnxAdadelta.Tests.Gradients.GradientCheck;
using A = OnnxAdadelta.Gradients.GradientContext;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Gradients;

public class ShapeGradientTests
{
    /// <summary>An int32 constant input: not an int64 constant, so rules that read constants take their general path.</summary>
    private static In Int32(string name, long[] values, params long[] shape)
    {
        var t = new TensorProto { Name = name, DataType = (int)DataType.Int32 };
        t.Dims.AddRange(shape);
        t.Int32Data.AddRange(values.Select(v => (int)v));
        return new In(name, [], shape, Differentiable: false) { Ints = t };
    }

    [Fact]
    public void ReshapeWithZeroAndMinusOne()
    {
        Check("Reshape", [Random("x", [2, 3, 4], 1), Int64("s", [0, 4, -1], 3)]);        // [2,4,3]: 0 copies, -1 infers
        Check("Reshape", [Random("x", [2, 3, 4], 2), Int64("s", [-1, 6], 2)]);
        Check("Reshape", [Random("x", [2, 3, 4], 3), Int64("s", [4, 6], 2)], [A.Attr("allowzero", 1L)]);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(-1)]
    public void FlattenAtEachAxis(long axis) =>
        Check("Flatten", [Random("x", [2, 3, 4], 4)], [A.Attr("axis", axis)]);

    [Fact]
    public void SqueezeAndUnsqueezeWithNegativeAxes()
    {
        Check("Squeeze", [Random("x", [2, 1, 3, 1], 5), Int64("axes", [-1, 1], 2)]);
        Check("Squeeze", [Random("x", [1, 3, 1], 6)]);                                    // every size-1 axis
        Check("Unsqueeze", [Random("x", [2, 3], 7), Int64("axes", [-1, 0], 2)]);
    }

    [Fact]
    public void TransposeWithPermAndByDefault()
    {
        Check("Transpose", [Random("x", [2, 3, 4], 8)], [A.Attr("perm", new long[] { 2, 0, 1 })]); // not its own inverse
        Check("Transpose", [Random("x", [2, 3, 4], 9)]);
    }

    [Fact]
    public void ConcatOfThreeInputsAlongAxisOne()
    {
        Check("Concat", [Random("a", [2, 1, 3], 10), Random("b", [2, 3, 3], 11), Random("c", [2, 2, 3], 12)], [A.Attr("axis", 1L)]);
        Check("Concat", [Random("a", [2, 1, 3], 10), Random("b", [2, 3, 3], 11), Random("c", [2, 2, 3], 12)], [A.Attr("axis", -2L)]);
    }

    [Fact]
    public void ConcatAlongTheLastAxisWithDifferentSizes() =>
        Check("Concat", [Random("a", [2, 1], 13), Random("b", [2, 3], 14), Random("c", [2, 2], 15)], [A.Attr("axis", -1L)]);

    [Fact]
    public void ConcatOfAValueWithItself() =>
        Check("Concat", [Random("a", [2, 3], 16)], [A.Attr("axis", 0L)], nodeInputs: ["a", "a", "a"]);

    [Fact]
    public void SplitWithExplicitSizes()
    {
        Check("Split", [Random("x", [2, 6], 17), Int64("split", [1, 3, 2], 3)], [A.Attr("axis", 1L)], outputs: 3);
        Check("Split", [Random("x", [5, 2], 18), Int64("split", [2, 3], 2)], outputs: 2, lossOutputs: [1]);
    }

    [Fact]
    public void SplitWithNumOutputsWhereSomeOutputsCarryNoGradient()
    {
        // 7 along axis -1 into 3: sizes 3, 3, 1; the middle output feeds no loss.
        Check("Split", [Random("x", [2, 7], 19)], [A.Attr("axis", -1L), A.Attr("num_outputs", 3L)], outputs: 3, opset: 18, lossOutputs: [0, 2]);
        Check("Split", [Random("x", [4, 3], 20)], [A.Attr("num_outputs", 2L)], outputs: 2, opset: 18, lossOutputs: [0]);
    }

    [Fact]
    public void SliceWithNegativeAndClampedBounds()
    {
        // Constant step-1 slices (undone by Pad): negative starts/ends, out-of-range ends, an axes subset.
        Check("Slice", [Random("x", [4, 5], 21), Int64("s", [-3, 1], 2), Int64("e", [-1, 100], 2)]);
        Check("Slice", [Random("x", [3, 4, 5], 22), Int64("s", [1], 1), Int64("e", [long.MaxValue], 1), Int64("axes", [-1], 1)]);
        Check("Slice", [Random("x", [3, 4, 5], 23), Int64("s", [-100, 1], 2), Int64("e", [2, 3], 2), Int64("axes", [2, 0], 2), Int64("st", [1, 1], 2)]);
    }

    [Fact]
    public void SliceWithStepsTwoAndMinusOne()
    {
        Check("Slice", [Random("x", [5, 6], 24), Int64("s", [0, 1], 2), Int64("e", [5, 6], 2), Int64("axes", [0, 1], 2), Int64("st", [2, 2], 2)]);
        Check("Slice", [Random("x", [4, 5], 25), Int64("s", [-1], 1), Int64("e", [long.MinValue], 1), Int64("axes", [1], 1), Int64("st", [-1], 1)]);   // reversal
        Check("Slice", [Random("x", [3, 4, 5], 26), Int64("s", [3, 10], 2), Int64("e", [0, -100], 2), Int64("axes", [-2, 2], 2), Int64("st", [-2, -3], 2)]);
    }

    [Fact]
    public void SliceWithComputedBoundsUsesTheIndexMap()
    {
        // int32 bounds are not read as int64 constants: step 1 goes through the index map too.
        Check("Slice", [Random("x", [4, 5], 27), Int32("s", [-3, 1], 2), Int32("e", [-1, 100], 2)]);
        Check("Slice", [Random("x", [3, 4], 28), Int32("s", [1], 1), Int32("e", [3], 1), Int32("axes", [-1], 1)]);
    }

    [Fact]
    public void SliceBoundsThatCanBeOverriddenAreNotConstants()
    {
        // starts is an initializer that is also a graph input: its stored value [1] is only a default.
        var g = new GraphProto { Name = "slice" };
        g.Input.Add(TypeProtos.ValueInfo("x", DataType.Double, [4, 5]));
        g.Input.Add(TypeProtos.ValueInfo("s", DataType.Int64, [1]));
        g.Initializer.Add(Tensors.Create("s", [1L], 1));
        g.Initializer.Add(Tensors.Create("e", [3L], 1));
        g.Initializer.Add(Tensors.Create("axes", [1L], 1));
        g.Node.Add(new NodeProto { OpType = "Slice", Name = "slice", Input = { "x", "s", "e", "axes" }, Output = { "y" } });
        g.Node.Add(new NodeProto { OpType = "ReduceSum", Name = "sum", Input = { "y" }, Output = { "L" }, Attribute = { A.Attr("keepdims", 0L) } });
        g.Output.Add(TypeProtos.ValueInfo("L", DataType.Double, []));
        var model = new ModelProto { IrVersion = 9, Graph = g, OpsetImport = { new OperatorSetIdProto { Version = 17 } } };
        var training = GradientGraphBuilder.Build(model, new BuildTrainingOptions { Loss = LossKind.Output, Output = "L", Trainable = ["x"] });

        using var session = new InferenceSession(training.ToByteArray());
        using var x = OrtValue.CreateTensorValueFromMemory(new double[20], [4, 5]);
        using var starts = OrtValue.CreateTensorValueFromMemory(new[] { 0L }, [1]);
        using var results = session.Run(new RunOptions(), ["x", "s"], [x, starts], ["x_grad"]);
        var expected = Enumerable.Range(0, 20).Select(k => k % 5 < 3 ? 1.0 : 0.0).ToArray();
        Assert.Equal(expected, results[0].GetTensorDataAsSpan<double>().ToArray());
    }

    [Fact]
    public void ExpandWithBroadcasting()
    {
        Check("Expand", [Random("x", [3, 1], 29), Int64("shape", [2, 3, 4], 3)]);
        Check("Expand", [Random("x", [2, 1], 30), Int64("shape", [1, 3], 2)]);             // both sides broadcast
        Check("Expand", [Random("x", [2, 3], 31), Int64("shape", [3, 1, 1], 3)]);          // output keeps x's sizes
    }

    [Fact]
    public void GatherEmbeddingLookupWithRepeatedAndNegativeIndices()
    {
        // [vocab 5, dim 3] rows gathered by [2,3] indices: 0 and 2 repeat, -1 is row 4 (also named as 4).
        Check("Gather", [Random("table", [5, 3], 32), Int64("ids", [0, 2, -1, 2, 4, 0], 2, 3)]);
        Check("Gather", [Random("table", [5, 3], 33), Int64("id", [-2])]);                 // a scalar index
    }

    [Fact]
    public void GatherAlongAxisOne()
    {
        Check("Gather", [Random("x", [2, 4, 3], 34), Int64("i", [3, -1, 0, 1], 2, 2)], [A.Attr("axis", 1L)]);
        Check("Gather", [Random("x", [2, 4, 3], 35), Int32("i", [2, -4, 2], 3)], [A.Attr("axis", -2L)]);
        Check("Gather", [Random("x", [2, 4, 3], 36), Int64("i", [1, 1], 2)], [A.Attr("axis", 2L)]);
    }

    [Fact]
    public void PadConstant()
    {
        Check("Pad", [Random("x", [2, 3], 37), Int64("pads", [1, 0, 2, 1], 4)]);
        Check("Pad", [Random("x", [2, 3], 38), Int64("pads", [0, 2, 1, 1], 4), Random("v", [], 39)], [A.Attr("mode", "constant")]);
        Check("Pad", [Random("x", [2, 3, 2], 40), Int64("pads", [2, 1], 2), Random("v", [], 41), Int64("axes", [-2], 1)], opset: 18);
    }

    [Fact]
    public void PadWithNegativePadsCrops() =>
        Check("Pad", [Random("x", [4, 5], 42), Int64("pads", [-1, 2, 1, -2], 4), Random("v", [], 43)]);

    [Theory]
    [InlineData("reflect")]
    [InlineData("edge")]
    public void PadOtherModesAreRefused(string mode)
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() => Check("Pad", [Random("x", [3, 3], 44), Int64("pads", [1, 1, 1, 1], 4)], [A.Attr("mode", mode)]));
        Assert.Contains($"mode='{mode}'", e.Message);
        Assert.Contains("(Pad)", e.Message);
    }

    [Fact]
    public void TileSumsTheRepeats()
    {
        Check("Tile", [Random("x", [2, 3], 45), Int64("r", [2, 3], 2)]);
        Check("Tile", [Random("x", [3], 46), Int64("r", [4], 1)]);
        Check("Tile", [Random("x", [2, 1, 3], 47), Int64("r", [1, 2, 2], 3)]);
    }

    [Theory]
    [InlineData("Transpose")]
    [InlineData("Reshape")]
    [InlineData("Slice")]
    [InlineData("Gather")]
    public void AttributesARuleDoesNotKnowAreRefusedByName(string op)
    {
        // ONNX Runtime rejects unknown attributes of the model's opset itself; this guards against newer ones.
        var node = new NodeProto { OpType = op, Name = "n", Input = { "x", "i" }, Output = { "y" } };
        node.Attribute.Add(A.Attr("future", 1L));
        var types = new Dictionary<string, OnnxAdadelta.Runtime.TypeAndShape>
        {
            ["x"] = new(DataType.Double, [2, 3]), ["i"] = new(DataType.Int64, [2]), ["y"] = new(DataType.Double, [3, 2]),
        };
        var context = new GradientContext(new GraphBuilder(new GraphProto()), node, 17, types, _ => "gy", _ => true);
        var e = Assert.Throws<OnnxAdadeltaException>(() => GradientRules.Find(op)!.Rule!(context));
        Assert.Contains("attribute 'future'", e.Message);
    }

    [Fact]
    public void ConstantsCarryNoGradient()
    {
        Assert.Contains("Constant", GradientRules.NoGradient);
        Assert.Contains("ConstantOfShape", GradientRules.NoGradient);
        foreach (var op in new[] { "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split", "Slice", "Expand", "Gather", "Pad", "Tile" })
            Assert.Contains(op, GradientRules.Supported);
    }
}
