using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Bench;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;

namespace OnnxAdadelta.Tests.Gradients;

/// <summary>
/// Large graphs are shape-inferred in segments (build-training stays linear in the number of nodes); the segments
/// must give every value the type that inferring the whole graph at once gives it.
/// </summary>
public class ShapeInferenceSegmentTests
{
    /// <summary>A chain of 40 nodes, with a Constant shape made near the start and a Reshape by it near the end.</summary>
    private static ModelProto ChainWithCrossingConstant()
    {
        var model = ChainModels.Build(40);
        var g = model.Graph;
        var constant = new NodeProto { OpType = "Constant", Name = "shape_const", Output = { "shape" },
            Attribute = { new AttributeProto { Name = "value", Type = AttributeProto.Types.AttributeType.Tensor, T = Tensors.Create("", new long[] { -1, 4, 2 }, 3) } } };
        g.Node.Insert(1, constant);
        g.Node.Add(new NodeProto { OpType = "Reshape", Name = "reshape", Input = { ChainModels.Output, "shape" }, Output = { "reshaped" } });
        g.Node.Add(new NodeProto { OpType = "Shape", Name = "shape_of", Input = { "reshaped" }, Output = { "dims" } });
        g.Output.Add(new ValueInfoProto { Name = "dims" });
        return model;
    }

    [Theory]
    [InlineData(3)]
    [InlineData(7)]
    [InlineData(20)]
    public void SegmentsGiveTheTypesOfAWholeGraphRun(int segmentNodes)
    {
        var model = ChainWithCrossingConstant();
        var whole = ShapeInference.Infer(model, 10_000);
        var segmented = ShapeInference.Infer(model, segmentNodes);
        Assert.Equal(whole.Keys.Order(), segmented.Keys.Order());
        foreach (var (name, type) in whole)
        {
            var other = segmented[name];
            Assert.Equal(type.ElementType, other.ElementType);
            Assert.Equal(type.Dims, other.Dims);
            Assert.Equal(type.Symbols ?? [], other.Symbols ?? []);
        }
        // The Reshape's static sizes come from the Constant made in another segment; the batch symbol carries through.
        Assert.Equal([null, 4L, 2L], segmented["reshaped"].Dims);
        Assert.Equal("batch", segmented["h38"].Symbol(0));
        Assert.Equal([3L], segmented["dims"].Dims);
    }

    [Fact]
    public void AnUnsortedGraphIsInferredWhole()
    {
        var model = ChainWithCrossingConstant();
        var probe = model.Clone();
        var last = probe.Graph.Node[^1];
        probe.Graph.Node.RemoveAt(probe.Graph.Node.Count - 1);
        probe.Graph.Node.Insert(0, last);
        Assert.Null(ShapeInference.ReadInSegments(probe, 5));
        Assert.Equal([3L], ShapeInference.Infer(probe, 5)["dims"].Dims);
    }
}
