using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Onnx;

namespace OnnxAdadelta.Graphs;

/// <summary>
/// Appends nodes and initializers to a graph with unique, deterministic names. Every name it hands out is checked
/// against all values, nodes and initializers already in the graph (subgraphs included).
/// </summary>
public sealed class GraphBuilder
{
    private readonly HashSet<string> _names;

    /// <summary>Wraps <paramref name="graph"/>; new nodes are appended to it.</summary>
    public GraphBuilder(GraphProto graph)
    {
        _names = new HashSet<string>(StringComparer.Ordinal);
        Graph = graph;
        Collect(graph);
    }

    /// <summary>
    /// Wraps <paramref name="graph"/>, a subgraph being built inside <paramref name="scope"/>'s graph: both hand out
    /// names from one set, so no name repeats anywhere in the model.
    /// </summary>
    public GraphBuilder(GraphProto graph, GraphBuilder scope)
    {
        _names = scope._names;
        Graph = graph;
        Collect(graph);
    }

    /// <summary>The graph being built.</summary>
    public GraphProto Graph { get; }

    private void Collect(GraphProto g)
    {
        foreach (var v in g.Input) _names.Add(v.Name);
        foreach (var v in g.Output) _names.Add(v.Name);
        foreach (var v in g.ValueInfo) _names.Add(v.Name);
        foreach (var t in g.Initializer) _names.Add(t.Name);
        foreach (var n in g.Node)
        {
            _names.Add(n.Name);
            foreach (var o in n.Output) _names.Add(o);
            foreach (var a in n.Attribute)
            {
                if (a.G is not null) Collect(a.G);
                foreach (var sub in a.Graphs) Collect(sub);
            }
        }
    }

    /// <summary>Whether <paramref name="name"/> is already used in the graph.</summary>
    public bool IsTaken(string name) => _names.Contains(name);

    /// <summary>Reserves <paramref name="name"/> exactly, or throws if the graph already uses it.</summary>
    public string Reserve(string name)
    {
        if (!_names.Add(name)) throw new OnnxAdadeltaException($"The name '{name}' is already used in graph '{Graph.Name}'.");
        return name;
    }

    /// <summary>Returns <paramref name="hint"/>, or <c>hint_1</c>, <c>hint_2</c>… if taken, and reserves it.</summary>
    public string UniqueName(string hint)
    {
        if (_names.Add(hint)) return hint;
        for (int k = 1; ; k++)
        {
            var candidate = $"{hint}_{k}";
            if (_names.Add(candidate)) return candidate;
        }
    }

    /// <summary>Appends a one-output node named after <paramref name="outputHint"/>; returns the output's name.</summary>
    public string Add(string opType, IEnumerable<string> inputs, string outputHint, params AttributeProto[] attributes) =>
        Add(opType, inputs, [outputHint], attributes)[0];

    /// <summary>Appends a node with one output per hint; returns the outputs' names.</summary>
    public string[] Add(string opType, IEnumerable<string> inputs, IReadOnlyList<string> outputHints, params AttributeProto[] attributes)
    {
        var outputs = outputHints.Select(UniqueName).ToArray();
        var node = new NodeProto { OpType = opType, Name = UniqueName($"{outputs[0]}/{opType}") };
        node.Input.AddRange(inputs);
        node.Output.AddRange(outputs);
        node.Attribute.AddRange(attributes);
        Graph.Node.Add(node);
        return outputs;
    }

    /// <summary>Adds an initializer under a unique name derived from <paramref name="hint"/>; returns its name.</summary>
    public string Initializer(string hint, TensorProto tensor)
    {
        tensor.Name = UniqueName(hint);
        Graph.Initializer.Add(tensor);
        return tensor.Name;
    }

    /// <summary>A float32 scalar constant (an initializer).</summary>
    public string Scalar(string hint, float value) => Initializer(hint, Tensors.Create("", [value]));

    /// <summary>An int64 scalar constant (an initializer).</summary>
    public string Scalar(string hint, long value) => Initializer(hint, Tensors.Create("", [value]));

    /// <summary>An int attribute.</summary>
    public static AttributeProto Attr(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    /// <summary>A float attribute.</summary>
    public static AttributeProto Attr(string name, float value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

    /// <summary>An ints attribute.</summary>
    public static AttributeProto Attr(string name, long[] values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(values);
        return a;
    }

    /// <summary>A string attribute.</summary>
    public static AttributeProto Attr(string name, string value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.String, S = Google.Protobuf.ByteString.CopyFromUtf8(value) };
}
