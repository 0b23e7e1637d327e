using OnnxAdadelta.Onnx.Proto;

namespace OnnxAdadelta.Graphs;

/// <summary>
/// Answers "who produces this value, who uses it" for one graph. Built once from the graph as it is; rebuild it after
/// a pass changes the graph.
/// </summary>
public sealed class GraphIndex
{
    private readonly Dictionary<string, NodeProto> _producer = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<(NodeProto Node, int Input)>> _consumers = new(StringComparer.Ordinal);

    /// <summary>Indexes <paramref name="graph"/>.</summary>
    public GraphIndex(GraphProto graph)
    {
        Graph = graph;
        Initializers = graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        Inputs = graph.Input.ToDictionary(v => v.Name, StringComparer.Ordinal);
        Outputs = graph.Output.ToDictionary(v => v.Name, StringComparer.Ordinal);
        ValueInfos = graph.ValueInfo.ToDictionary(v => v.Name, StringComparer.Ordinal);
        foreach (var node in graph.Node)
        {
            foreach (var o in node.Output)
                if (o.Length > 0) _producer[o] = node;
            for (int i = 0; i < node.Input.Count; i++)
            {
                var name = node.Input[i];
                if (name.Length == 0) continue;
                if (!_consumers.TryGetValue(name, out var list)) _consumers[name] = list = [];
                list.Add((node, i));
            }
            foreach (var outer in GraphPasses.OuterScopeInputs(node))
            {
                if (!_consumers.TryGetValue(outer, out var list)) _consumers[outer] = list = [];
                list.Add((node, -1));
            }
        }
    }

    /// <summary>The indexed graph.</summary>
    public GraphProto Graph { get; }

    /// <summary>Initializers by name.</summary>
    public IReadOnlyDictionary<string, TensorProto> Initializers { get; }

    /// <summary>Graph inputs by name.</summary>
    public IReadOnlyDictionary<string, ValueInfoProto> Inputs { get; }

    /// <summary>Graph outputs by name.</summary>
    public IReadOnlyDictionary<string, ValueInfoProto> Outputs { get; }

    /// <summary>Value infos (intermediate types and shapes) by name.</summary>
    public IReadOnlyDictionary<string, ValueInfoProto> ValueInfos { get; }

    /// <summary>The node that computes <paramref name="value"/>, or null for graph inputs, initializers and unknown names.</summary>
    public NodeProto? Producer(string value) => _producer.GetValueOrDefault(value);

    /// <summary>The nodes that read <paramref name="value"/>, with the input slot (-1 for a use inside a subgraph).</summary>
    public IReadOnlyList<(NodeProto Node, int Input)> Consumers(string value) =>
        _consumers.TryGetValue(value, out var list) ? list : [];

    /// <summary>The declared type of a value: from the graph inputs, outputs, value_info or initializers, or null.</summary>
    public TypeProto? TypeOf(string value)
    {
        if (Inputs.TryGetValue(value, out var v) && v.Type is not null) return v.Type;
        if (Outputs.TryGetValue(value, out v) && v.Type is not null) return v.Type;
        if (ValueInfos.TryGetValue(value, out v) && v.Type is not null) return v.Type;
        if (Initializers.TryGetValue(value, out var t)) return TypeProtos.Tensor((TensorProto.Types.DataType)t.DataType, t.Dims);
        return null;
    }
}

/// <summary>Helpers for building and reading <see cref="TypeProto"/> values.</summary>
public static class TypeProtos
{
    /// <summary>A tensor type with fixed dimensions.</summary>
    public static TypeProto Tensor(TensorProto.Types.DataType elementType, IEnumerable<long> dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims) shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
        return new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)elementType, Shape = shape } };
    }

    /// <summary>A value info for a tensor with fixed dimensions.</summary>
    public static ValueInfoProto ValueInfo(string name, TensorProto.Types.DataType elementType, IEnumerable<long> dims) =>
        new() { Name = name, Type = Tensor(elementType, dims) };

    /// <summary>The element type of a tensor type, or Undefined.</summary>
    public static TensorProto.Types.DataType ElementType(this TypeProto? type) =>
        type?.TensorType is { } t ? (TensorProto.Types.DataType)t.ElemType : TensorProto.Types.DataType.Undefined;

    /// <summary>The dimensions of a tensor type: a number, a symbol, or null for an unknown dimension; null when the rank is unknown.</summary>
    public static IReadOnlyList<object?>? Dims(this TypeProto? type)
    {
        if (type?.TensorType?.Shape is not { } shape) return null;
        return shape.Dim.Select(d => d.ValueCase switch
        {
            TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue => (object?)d.DimValue,
            TensorShapeProto.Types.Dimension.ValueOneofCase.DimParam => d.DimParam,
            _ => null,
        }).ToList();
    }

    /// <summary>A readable form such as <c>float[batch,64]</c>.</summary>
    public static string Describe(this TypeProto? type)
    {
        var dims = type.Dims();
        var elem = type.ElementType().ToString().ToLowerInvariant();
        return dims is null ? $"{elem}[?]" : $"{elem}[{string.Join(",", dims.Select(d => d?.ToString() ?? "?"))}]";
    }
}
