using OnnxAdadelta.Onnx;
using OnnxAdadelta.Onnx.Proto;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Graphs;

/// <summary>
/// The same model computed in float64: every float32, float16 and bfloat16 tensor, value type, cast target and
/// constant becomes float64, in the main graph and in every subgraph. Finite differences need it: a float32 loss
/// difference loses most of its digits to rounding. ONNX Runtime then refuses the model where an op on the path has
/// no float64 kernel; callers fall back to the original precision.
/// </summary>
public static class Float64Cast
{
    private static bool IsLowerFloat(int type) => (DataType)type is DataType.Float or DataType.Float16 or DataType.Bfloat16;

    /// <summary>A float64 copy of <paramref name="model"/>; the model itself is left unchanged.</summary>
    public static ModelProto Apply(ModelProto model)
    {
        var copy = model.DeepCopy();
        Graph(copy.Graph);
        foreach (var function in copy.Functions)
            foreach (var node in function.Node) Node(node);
        return copy;
    }

    private static void Graph(GraphProto graph)
    {
        for (int i = 0; i < graph.Initializer.Count; i++)
            if (IsLowerFloat(graph.Initializer[i].DataType)) graph.Initializer[i] = Tensor(graph.Initializer[i]);
        foreach (var v in graph.Input.Concat(graph.Output).Concat(graph.ValueInfo)) Type(v.Type);
        foreach (var node in graph.Node) Node(node);
    }

    private static void Type(TypeProto? type)
    {
        if (type is null) return;
        if (type.TensorType is { } tensor && IsLowerFloat(tensor.ElemType)) tensor.ElemType = (int)DataType.Double;
        Type(type.SequenceType?.ElemType);
        Type(type.OptionalType?.ElemType);
        Type(type.MapType?.ValueType);
    }

    private static TensorProto Tensor(TensorProto t)
    {
        var wide = Tensors.Create(t.Name, t.ToDoubles(), [.. t.Dims]);
        wide.DocString = t.DocString;
        return wide;
    }

    private static void Node(NodeProto node)
    {
        foreach (var a in node.Attribute)
        {
            switch (a.Type)
            {
                case AttributeProto.Types.AttributeType.Graph:
                    Graph(a.G);
                    break;
                case AttributeProto.Types.AttributeType.Graphs:
                    foreach (var g in a.Graphs) Graph(g);
                    break;
                case AttributeProto.Types.AttributeType.Tensor when IsLowerFloat(a.T.DataType):
                    a.T = Tensor(a.T);
                    break;
                case AttributeProto.Types.AttributeType.Int when a.Name is "to" or "dtype" && IsLowerFloat((int)a.I):
                    a.I = (long)DataType.Double;
                    break;
            }
        }
        if (node.OpType != "Constant" || node.Domain is not ("" or "ai.onnx")) return;
        // Float constants given as attributes of their own kind become a float64 tensor.
        var scalar = node.Attribute.FirstOrDefault(a => a.Name is "value_float" or "value_floats");
        if (scalar is null) return;
        var values = scalar.Name == "value_float" ? [(double)scalar.F] : scalar.Floats.Select(f => (double)f).ToArray();
        node.Attribute.Remove(scalar);
        node.Attribute.Add(new AttributeProto
        {
            Name = "value", Type = AttributeProto.Types.AttributeType.Tensor,
            T = scalar.Name == "value_float" ? Tensors.Create("", values) : Tensors.Create("", values, values.Length),
        });
    }
}
