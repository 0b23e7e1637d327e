using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Runtime;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Gradients;

/// <summary>
/// Types and shapes of every value in a graph, as ONNX Runtime's own shape inference sees them: the graph is loaded
/// with every node output exposed as a graph output, and the session's output metadata is read back. Graphs of more
/// than <see cref="SegmentNodes"/> nodes are loaded in consecutive segments, so the time stays linear in the nodes.
/// </summary>
public static class ShapeInference
{
    /// <summary>
    /// Graphs of more nodes than this are inferred in segments of at most this many nodes: ONNX Runtime's session set-up
    /// grows with the number of nodes times the number of graph outputs, so exposing every value of a 200,000-node graph
    /// at once takes minutes, where segments keep the whole linear in the number of nodes.
    /// </summary>
    internal const int SegmentNodes = 10_000;

    /// <summary>Infers the type of every graph input, initializer and node output of the main graph.</summary>
    public static IReadOnlyDictionary<string, TypeAndShape> Infer(ModelProto model) => Infer(model, SegmentNodes);

    /// <summary>As <see cref="Infer(ModelProto)"/>, inferring graphs of more than <paramref name="segmentNodes"/> nodes in segments.</summary>
    internal static IReadOnlyDictionary<string, TypeAndShape> Infer(ModelProto model, int segmentNodes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(segmentNodes, 1);
        // The probe shares the model's nodes and tensors (ORT only reads them, and segments and rank probes are built from
        // them by reference); it adds outputs to its own lists, and the refinement below retypes its outputs in place, so
        // the model's own outputs are copied first (a few value infos, not the model).
        var probe = model.ShareElements();
        var g = probe.Graph;
        for (int i = 0; i < g.Output.Count; i++) g.Output[i] = g.Output[i].Clone();
        var outputs = g.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var node in g.Node)
            foreach (var o in node.Output)
                if (o.Length > 0 && outputs.Add(o)) g.Output.Add(new ValueInfoProto { Name = o });
        var result = Read(probe, segmentNodes);
        // Reshapes whose shape input is computed get no static dimensions from ORT; where the shape tensor's
        // elements are known by partial evaluation, they are written into the probe and inference runs again.
        var applied = new HashSet<string>(StringComparer.Ordinal);
        for (int round = 0; round < 4; round++)
        {
            var refined = ShapeTensors.RefinedReshapes(g, result).Where(p => applied.Add(p.Key)).ToList();
            if (refined.Count == 0) break;
            var byName = new Dictionary<string, ValueInfoProto>(StringComparer.Ordinal);
            foreach (var o in g.Output) byName.TryAdd(o.Name, o);
            foreach (var (name, dims) in refined)
            {
                var info = byName[name];
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
            try { result = Read(probe, segmentNodes); }
            catch (OnnxAdadeltaException) { break; } // ORT disagrees with a refinement: keep its own inference
        }
        OrtShapeInference.ResolveUnknownRanks(probe, result);
        return result;
    }

    private static Dictionary<string, TypeAndShape> Read(ModelProto probe, int segmentNodes) =>
        probe.Graph.Node.Count > segmentNodes && ReadInSegments(probe, segmentNodes) is { } segmented ? segmented : OrtShapeInference.Read(probe);

    /// <summary>
    /// Infers a topologically sorted graph in consecutive segments of at most <paramref name="segmentNodes"/> nodes, each a
    /// model of its own: its nodes, the initializers they read, the graph inputs they read, and, as typed inputs, the values
    /// earlier segments computed (with the types inferred there, symbols included). A Constant node read across a boundary
    /// is copied into the reading segment, so ONNX Runtime still sees its value. Returns null (infer the whole graph at
    /// once) where the node order is not topological or a value crossing a boundary is not a tensor of known rank.
    /// </summary>
    internal static Dictionary<string, TypeAndShape>? ReadInSegments(ModelProto probe, int segmentNodes)
    {
        var graph = probe.Graph;
        var initializers = new Dictionary<string, TensorProto>(StringComparer.Ordinal);
        foreach (var t in graph.Initializer) initializers.TryAdd(t.Name, t);
        var inputs = new Dictionary<string, ValueInfoProto>(StringComparer.Ordinal);
        foreach (var i in graph.Input) inputs.TryAdd(i.Name, i);
        var declaredOutputs = new Dictionary<string, ValueInfoProto>(StringComparer.Ordinal);
        foreach (var o in graph.Output) declaredOutputs.TryAdd(o.Name, o);
        var computed = new HashSet<string>(StringComparer.Ordinal);
        var constants = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
        int segments = (graph.Node.Count + segmentNodes - 1) / segmentNodes;
        int size = (graph.Node.Count + segments - 1) / segments;
        var result = new Dictionary<string, TypeAndShape>(StringComparer.Ordinal);
        for (int s = 0; s < segments; s++)
        {
            var nodes = graph.Node.Skip(s * size).Take(size).ToList();
            var produced = new HashSet<string>(nodes.SelectMany(n => n.Output).Where(o => o.Length > 0), StringComparer.Ordinal);
            var sub = new ModelProto { IrVersion = probe.IrVersion, Graph = new GraphProto { Name = $"{graph.Name}_segment{s}" } };
            sub.OpsetImport.AddRange(probe.OpsetImport);
            sub.Functions.AddRange(probe.Functions);
            var added = new HashSet<string>(StringComparer.Ordinal);
            var copiedConstants = new List<NodeProto>();
            foreach (var n in nodes)
            {
                foreach (var value in n.Input.Concat(GraphPasses.OuterScopeInputs(n)))
                {
                    if (value.Length == 0 || produced.Contains(value) || !added.Add(value)) continue;
                    if (initializers.TryGetValue(value, out var t))
                    {
                        sub.Graph.Initializer.Add(t);
                        if (inputs.TryGetValue(value, out var overridable)) sub.Graph.Input.Add(overridable);
                    }
                    else if (inputs.TryGetValue(value, out var input)) sub.Graph.Input.Add(input);
                    else if (constants.TryGetValue(value, out var constant)) copiedConstants.Add(constant);
                    else if (computed.Contains(value) && result.TryGetValue(value, out var type) && type.Dims is not null)
                        sub.Graph.Input.Add(ReversePass.ValueInfoOf(value, type));
                    else return null; // read before it is produced, or of a type an input cannot declare
                }
            }
            // The first segment declares every graph input, so that unused ones get their types as in a whole-graph run.
            if (s == 0)
                foreach (var i in graph.Input)
                    if (!initializers.ContainsKey(i.Name) && added.Add(i.Name)) sub.Graph.Input.Add(i);
            sub.Graph.Node.AddRange(copiedConstants);
            sub.Graph.Node.AddRange(nodes);
            // Every value the segment computes is an output, typed where the probe declares a type (refined Reshapes).
            var exposed = new HashSet<string>(StringComparer.Ordinal);
            foreach (var n in copiedConstants.Concat(nodes))
                foreach (var o in n.Output)
                    if (o.Length > 0 && exposed.Add(o))
                        sub.Graph.Output.Add(declaredOutputs.TryGetValue(o, out var declared) ? declared : new ValueInfoProto { Name = o });
            foreach (var (name, type) in OrtShapeInference.Read(sub)) result[name] = type;
            foreach (var n in nodes)
            {
                foreach (var o in n.Output) if (o.Length > 0) computed.Add(o);
                if (n.OpType == "Constant" && n.Domain is "" or "ai.onnx" && n.Output.Count == 1) constants[n.Output[0]] = n;
            }
        }
        return result;
    }
}
