using OnnxAdadelta.Bench;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Runtime;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Runtime;

/// <summary>
/// The run that settles ranks ONNX Runtime leaves unknown loads only what it must: nothing for provable scalars, and
/// only the nodes a value depends on otherwise (a whole-graph session grows faster than linearly with the nodes).
/// Checked by counting the nodes the probe loads, never by timing.
/// </summary>
public class RankProbeTests
{
    /// <summary>The model as <see cref="ShapeInference"/> probes it (every node output exposed) and ORT's types for it.</summary>
    private static (ModelProto Probe, Dictionary<string, TypeAndShape> Types) Probe(ModelProto model)
    {
        var probe = model.Clone();
        var outputs = probe.Graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var n in probe.Graph.Node)
            foreach (var o in n.Output)
                if (outputs.Add(o)) probe.Graph.Output.Add(new ValueInfoProto { Name = o });
        return (probe, OrtShapeInference.Read(probe));
    }

    [Fact]
    public void TheScalarLossOfAChainNeedsNoRun()
    {
        var model = ChainModels.Build(200);
        var b = new GraphBuilder(model.Graph);
        b.Add("ReduceMean", [b.Add("Mul", [ChainModels.Output, ChainModels.Output], "squared")], "loss", GraphBuilder.Attr("keepdims", 0L));
        b.Add("Neg", [b.Add("CastLike", ["loss", "loss"], "loss_like")], "negated");
        var (probe, types) = Probe(model);
        // ORT reports the losses with no dimensions, as it does a value it could not infer.
        Assert.Equal(0, types["loss"].Rank);
        Assert.Equal(0, types["negated"].Rank);

        using var session = OrtShapeInference.RankProbe(probe, types, out var unknown);

        Assert.Null(session);
        Assert.Empty(unknown);
        Assert.Equal(0, types["loss"].Rank);
    }

    [Fact]
    public void AValueNearTheStartOfALongChainLoadsOnlyTheNodesItDependsOn()
    {
        // x [batch, 8] -> Unsqueeze -> [batch, 1, 8] -> Squeeze without axes: ORT cannot tell the rank from the symbol.
        var model = ChainModels.Build(400);
        var g = model.Graph;
        g.Initializer.Add(Tensors.Create("axis1", [1L], 1));
        g.Node.Insert(0, new NodeProto { OpType = "Unsqueeze", Name = "unsqueeze", Input = { ChainModels.Input, "axis1" }, Output = { "u" } });
        g.Node.Insert(1, new NodeProto { OpType = "Squeeze", Name = "squeeze", Input = { "u" }, Output = { "sq" } });
        g.Output.Add(new ValueInfoProto { Name = "sq" });
        var b = new GraphBuilder(g);
        b.Add("ReduceSum", [ChainModels.Output], "total", GraphBuilder.Attr("keepdims", 0L));
        var (probe, types) = Probe(model);
        Assert.Equal(0, types["sq"].Rank);

        using var session = OrtShapeInference.RankProbe(probe, types, out var unknown);

        Assert.Equal(["sq"], unknown);
        Assert.NotNull(session);
        Assert.Equal(["unsqueeze", "squeeze"], session.Model.Graph.Node.Select(n => n.Name));
        Assert.Equal([ChainModels.Input], session.Model.Graph.Input.Select(i => i.Name));
        Assert.Equal(["axis1"], session.Model.Graph.Initializer.Select(t => t.Name));
        Assert.Equal(2, ShapeInference.Infer(model)["sq"].Rank);
        Assert.Equal(0, ShapeInference.Infer(model)["total"].Rank);
    }

    [Fact]
    public void AReductionOverSomeAxesIsNotTakenForAScalar()
    {
        var g = new GraphProto { Name = "r" };
        g.Input.Add(TypeProtos.ValueInfo("x", DataType.Float, [2, 3]));
        g.Initializer.Add(Tensors.Create("axes", [1L], 1));
        g.Node.Add(new NodeProto { OpType = "ReduceSum", Name = "some", Input = { "x", "axes" }, Output = { "s" },
            Attribute = { GraphBuilder.Attr("keepdims", 0L) } });
        g.Node.Add(new NodeProto { OpType = "ReduceSum", Name = "all", Input = { "x" }, Output = { "t" },
            Attribute = { GraphBuilder.Attr("keepdims", 0L) } });
        // As ORT reports a value it could not infer: no dimensions.
        var types = new Dictionary<string, TypeAndShape>
        {
            ["s"] = new(DataType.Float, []),
            ["t"] = new(DataType.Float, []),
        };

        var scalars = OrtShapeInference.ProvablyScalar(g, types);

        Assert.Contains("t", scalars);
        Assert.DoesNotContain("s", scalars);
    }
}
