using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Runtime;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Gradients;

/// <summary>
/// Types and shapes of every value in a graph, as ONNX Runtime's own shape inference sees them: the graph is loaded
/// with every node output exposed as a graph output, and the session's output metadata is read back.
/// </summary>
public static class ShapeInference
{
    /// <summary>Infers the type of every graph input, initializer and node output of the main graph.</summary>
    public static IReadOnlyDictionary<string, TypeAndShape> Infer(ModelProto model)
    {
        var probe = model.Clone();
        var g = probe.Graph;
        var outputs = g.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var node in g.Node)
            foreach (var o in node.Output)
                if (o.Length > 0 && outputs.Add(o)) g.Output.Add(new ValueInfoProto { Name = o });
        var result = OrtShapeInference.Read(probe);
        // Reshapes whose shape input is computed get no static dimensions from ORT; where the shape tensor's
        // elements are known by partial evaluation, they are written into the probe and inference runs again.
        var applied = new HashSet<string>(StringComparer.Ordinal);
        for (int round = 0; round < 4; round++)
        {
            var refined = ShapeTensors.RefinedReshapes(g, result).Where(p => applied.Add(p.Key)).ToList();
            if (refined.Count == 0) break;
            foreach (var (name, dims) in refined)
            {
                var info = g.Output.First(o => o.Name == name);
                var shape = new TensorShapeProto();
                for (int k = 0; k < dims.Length; k++)
                {
                    var dim = new TensorShapeProto.Types.Dimension();
                    if (dims[k].Value is { } d) dim.DimValue = d;
                    else if (dims[k].Symbol is { } symbol) dim.DimParam = symbol;
                    shape.Dim.Add(dim);
                }
                var element = result.GetValueOrDefault(name)?.ElementType ?? DataType.Undefined;
                if (element == DataType.Undefined) continue;
                info.Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)element, Shape = shape } };
            }
            try { result = OrtShapeInference.Read(probe); }
            catch (OnnxAdadeltaException) { break; } // ORT disagrees with a refinement: keep its own inference
        }
        OrtShapeInference.ResolveUnknownRanks(probe, result);
        return result;
    }

}
