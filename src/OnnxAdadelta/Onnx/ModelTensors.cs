using OnnxAdadelta.Onnx.Proto;

namespace OnnxAdadelta.Onnx;

/// <summary>One tensor of a model and a phrase that tells a user where it sits (for messages).</summary>
internal readonly record struct FoundTensor(TensorProto Tensor, string Where);

/// <summary>
/// Finds every <see cref="TensorProto"/> a model holds: initializers and sparse initializers of the main graph, of every
/// subgraph in node attributes and of training graphs; tensors in attributes (such as Constant's <c>value</c>); and
/// those in functions. These are the tensors that may keep their data in an external file.
/// </summary>
internal static class ModelTensors
{
    /// <summary>All tensors of <paramref name="model"/>, in a fixed order (document order, depth first).</summary>
    internal static List<FoundTensor> All(ModelProto model)
    {
        var found = new List<FoundTensor>();
        if (model.Graph is not null) Graph(model.Graph, found);
        foreach (var info in model.TrainingInfo)
        {
            if (info.Initialization is not null) Graph(info.Initialization, found);
            if (info.Algorithm is not null) Graph(info.Algorithm, found);
        }
        foreach (var function in model.Functions)
        {
            foreach (var a in function.AttributeProto) Attribute(a, $"attribute '{a.Name}' of function '{function.Name}'", found);
            foreach (var n in function.Node) Node(n, found);
        }
        return found;
    }

    private static void Graph(GraphProto g, List<FoundTensor> found)
    {
        foreach (var t in g.Initializer) Add(t, $"an initializer of graph '{g.Name}'", found);
        foreach (var s in g.SparseInitializer) Sparse(s, $"a sparse initializer of graph '{g.Name}'", found);
        foreach (var n in g.Node) Node(n, found);
    }

    private static void Node(NodeProto n, List<FoundTensor> found)
    {
        foreach (var a in n.Attribute) Attribute(a, $"attribute '{a.Name}' of node '{n.Name}'", found);
    }

    private static void Attribute(AttributeProto a, string where, List<FoundTensor> found)
    {
        if (a.T is not null) Add(a.T, where, found);
        foreach (var t in a.Tensors) Add(t, where, found);
        if (a.SparseTensor is not null) Sparse(a.SparseTensor, where, found);
        foreach (var s in a.SparseTensors) Sparse(s, where, found);
        if (a.G is not null) Graph(a.G, found);
        foreach (var g in a.Graphs) Graph(g, found);
    }

    private static void Sparse(SparseTensorProto s, string where, List<FoundTensor> found)
    {
        if (s.Values is not null) Add(s.Values, $"the values of {where}", found);
        if (s.Indices is not null) Add(s.Indices, $"the indices of {where}", found);
    }

    private static void Add(TensorProto t, string where, List<FoundTensor> found) =>
        found.Add(new FoundTensor(t, t.Name.Length > 0 ? $"tensor '{t.Name}'" : $"the tensor in {where}"));
}
