using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Graphs;

public class GraphTests
{
    private static NodeProto Node(string name, string op, string[] inputs, params string[] outputs)
    {
        var n = new NodeProto { Name = name, OpType = op };
        n.Input.AddRange(inputs);
        n.Output.AddRange(outputs);
        return n;
    }

    private static GraphProto Chain()
    {
        var g = new GraphProto { Name = "g" };
        g.Input.Add(TypeProtos.ValueInfo("x", DataType.Float, [2]));
        g.Node.Add(Node("c", "Add", ["b_out", "a_out"], "c_out"));
        g.Node.Add(Node("b", "Neg", ["a_out"], "b_out"));
        g.Node.Add(Node("a", "Relu", ["x"], "a_out"));
        g.Node.Add(Node("dead", "Exp", ["x"], "dead_out"));
        g.Output.Add(TypeProtos.ValueInfo("c_out", DataType.Float, [2]));
        return g;
    }

    [Fact]
    public void TopologicalSortOrdersProducersFirst()
    {
        var g = Chain();
        GraphPasses.TopologicalSort(g);
        Assert.Equal(["a", "b", "c", "dead"], g.Node.Select(n => n.Name)); // among ready nodes, the earliest in the original order first
    }

    [Fact]
    public void SubgraphReadsOfOuterValuesCountAsDependencies()
    {
        var g = Chain();
        var body = new GraphProto { Name = "then" };
        body.Node.Add(Node("inner", "Identity", ["b_out"], "y"));
        body.Output.Add(TypeProtos.ValueInfo("y", DataType.Float, [2]));
        var iff = Node("if", "If", ["cond"], "if_out");
        iff.Attribute.Add(new AttributeProto { Name = "then_branch", Type = AttributeProto.Types.AttributeType.Graph, G = body });
        g.Node.Insert(0, iff);
        g.Input.Add(TypeProtos.ValueInfo("cond", DataType.Bool, []));
        GraphPasses.TopologicalSort(g);
        var order = g.Node.Select(n => n.Name).ToList();
        Assert.True(order.IndexOf("b") < order.IndexOf("if"), string.Join(",", order));
    }

    [Fact]
    public void CyclesAndMissingValuesAreNamed()
    {
        var g = Chain();
        g.Node.Single(n => n.Name == "a").Input[0] = "c_out";
        Assert.StartsWith("Graph 'g' has a cycle through", Assert.Throws<OnnxAdadeltaException>(() => GraphPasses.TopologicalSort(g)).Message);
        g = Chain();
        g.Node.Single(n => n.Name == "b").Input[0] = "ghost";
        Assert.Equal("Node 'b' (Neg) reads 'ghost', which no node, input or initializer provides.",
            Assert.Throws<OnnxAdadeltaException>(() => GraphPasses.TopologicalSort(g)).Message);
    }

    [Fact]
    public void DeadCodeIsRemoved()
    {
        var g = Chain();
        g.Initializer.Add(OnnxAdadelta.Onnx.Tensors.Create("unused", [1f], 1));
        g.ValueInfo.Add(TypeProtos.ValueInfo("dead_out", DataType.Float, [2]));
        GraphPasses.RemoveDeadCode(g);
        Assert.Equal(["c", "b", "a"], g.Node.Select(n => n.Name));
        Assert.Empty(g.Initializer);
        Assert.Empty(g.ValueInfo);
        Assert.Equal(["x"], g.Input.Select(i => i.Name));
    }

    [Fact]
    public void BuilderNamesAreUnique()
    {
        var g = Chain();
        var b = new GraphBuilder(g);
        Assert.Equal("a_out_1", b.UniqueName("a_out"));
        Assert.Equal("a_out_2", b.UniqueName("a_out"));
        Assert.Equal("fresh", b.UniqueName("fresh"));
        Assert.Equal("c_out_1", b.Add("Relu", ["x"], "c_out"));
        Assert.Throws<OnnxAdadeltaException>(() => b.Reserve("x"));
        Assert.Equal(g.Node.Count, g.Node.Select(n => n.Name).Distinct().Count());
    }

    [Fact]
    public void IndexAnswersProducersConsumersAndTypes()
    {
        var g = Chain();
        var index = new GraphIndex(g);
        Assert.Equal("a", index.Producer("a_out")!.Name);
        Assert.Null(index.Producer("x"));
        Assert.Equal([("b", 0), ("c", 1)], index.Consumers("a_out").Select(c => (c.Node.Name, c.Input)).OrderBy(c => c.Item1));
        Assert.Equal("float[2]", index.TypeOf("x").Describe());
        Assert.Null(index.TypeOf("b_out"));
    }
}
