using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;

namespace OnnxAdadelta.Gradients;

/// <summary>The element type and dimensions of a value: each dimension a size, or null when symbolic or unknown.</summary>
/// <param name="ElementType">The element type.</param>
/// <param name="Dims">The dimensions, or null when even the rank is unknown.</param>
/// <param name="Symbols">For each dimension, its symbol (dim_param) where it has one, as shape inference propagated it.</param>
public sealed record ValueType(DataType ElementType, long?[]? Dims, string?[]? Symbols = null)
{
    /// <summary>The symbol of dimension <paramref name="axis"/>, or null.</summary>
    public string? Symbol(int axis) => Symbols is { } s && axis < s.Length && !string.IsNullOrEmpty(s[axis]) ? s[axis] : null;

    /// <summary>The rank, or null.</summary>
    public int? Rank => Dims?.Length;

    /// <summary>Whether the element type is a floating-point one (float, double, float16, bfloat16).</summary>
    public bool IsFloat => ElementType is DataType.Float or DataType.Double or DataType.Float16 or DataType.Bfloat16;
}

/// <summary>
/// Types and shapes of every value in a graph, as ONNX Runtime's own shape inference sees them: the graph is loaded
/// with every node output exposed as a graph output, and the session's output metadata is read back.
/// </summary>
public static class ShapeInference
{
    /// <summary>Infers the type of every graph input, initializer and node output of the main graph.</summary>
    public static IReadOnlyDictionary<string, ValueType> Infer(ModelProto model) => Infer(model, SegmentNodes);

    /// <summary>As <see cref="Infer(ModelProto)"/>, inferring graphs of more than <paramref name="segmentNodes"/> nodes in segments.</summary>
    internal static IReadOnlyDictionary<string, ValueType> Infer(ModelProto model, int segmentNodes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(segmentNodes, 1);
        var probe = model.Clone();
        var g = probe.Graph;
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
        ResolveUnknownRanks(probe, result);
        return result;
    }

    /// <summary>
    /// Graphs of more nodes than this are inferred in segments of about this many nodes: ONNX Runtime's session set-up
    /// grows with the number of nodes times the number of graph outputs, so exposing every value of a 200,000-node graph
    /// at once takes minutes, where segments keep the whole linear in the number of nodes.
    /// </summary>
    internal const int SegmentNodes = 10_000;

    /// <summary>The types ORT's session reports for <paramref name="probe"/>'s inputs and outputs, plus its initializers'.</summary>
    private static Dictionary<string, ValueType> Read(ModelProto probe, int segmentNodes)
    {
        var result = probe.Graph.Node.Count > segmentNodes && ReadInSegments(probe, segmentNodes) is { } segmented ? segmented : ReadSession(probe);
        foreach (var t in probe.Graph.Initializer)
            result.TryAdd(t.Name, new ValueType((DataType)t.DataType, t.Dims.Select(d => (long?)d).ToArray()));
        return result;
    }

    private static Dictionary<string, ValueType> ReadSession(ModelProto probe, Dictionary<string, ValueType>? into = null)
    {
        var result = into ?? new Dictionary<string, ValueType>(StringComparer.Ordinal);
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        using var session = Training.OrtSessions.Create(probe, options);
        foreach (var (name, meta) in session.InputMetadata.Concat(session.OutputMetadata).Concat(session.OverridableInitializerMetadata))
            if (meta.OnnxValueType == OnnxValueType.ONNX_TYPE_TENSOR)
                result[name] = new ValueType(FromOrt(meta.ElementDataType), meta.Dimensions.Select(d => d < 0 ? (long?)null : d).ToArray(),
                    meta.SymbolicDimensions.Select(d => string.IsNullOrEmpty(d) ? null : d).ToArray());
        return result;
    }

    /// <summary>
    /// Infers a topologically sorted graph in consecutive segments of about <paramref name="segmentNodes"/> nodes, each a
    /// model of its own: its nodes, the initializers they read, the graph inputs they read, and, as typed inputs, the values
    /// earlier segments computed (with the types inferred there, symbols included). A Constant node read across a boundary
    /// is copied into the reading segment, so ONNX Runtime still sees its value. Returns null (infer the whole graph at
    /// once) where the node order is not topological or a value crossing a boundary is not a tensor of known type.
    /// </summary>
    internal static Dictionary<string, ValueType>? ReadInSegments(ModelProto probe, int segmentNodes)
    {
        var graph = probe.Graph;
        var initializers = new Dictionary<string, TensorProto>(StringComparer.Ordinal);
        foreach (var t in graph.Initializer) initializers.TryAdd(t.Name, t);
        var inputs = new Dictionary<string, ValueInfoProto>(StringComparer.Ordinal);
        foreach (var i in graph.Input) inputs.TryAdd(i.Name, i);
        var declaredOutputs = new Dictionary<string, ValueInfoProto>(StringComparer.Ordinal);
        foreach (var o in graph.Output) declaredOutputs.TryAdd(o.Name, o);
        var producerSegment = new Dictionary<string, int>(StringComparer.Ordinal);
        var constants = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
        int segments = (graph.Node.Count + segmentNodes - 1) / segmentNodes;
        int size = (graph.Node.Count + segments - 1) / segments;
        var result = new Dictionary<string, ValueType>(StringComparer.Ordinal);
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
                foreach (var value in n.Input.Concat(Graphs.GraphPasses.OuterScopeInputs(n)))
                {
                    if (value.Length == 0 || produced.Contains(value) || !added.Add(value)) continue;
                    if (initializers.TryGetValue(value, out var t))
                    {
                        sub.Graph.Initializer.Add(t);
                        if (inputs.TryGetValue(value, out var overridable)) sub.Graph.Input.Add(overridable);
                    }
                    else if (inputs.TryGetValue(value, out var input)) sub.Graph.Input.Add(input);
                    else if (constants.TryGetValue(value, out var constant)) copiedConstants.Add(constant);
                    else if (producerSegment.ContainsKey(value) && result.TryGetValue(value, out var type) && type.Dims is not null)
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
            ReadSession(sub, result);
            foreach (var n in nodes)
            {
                foreach (var o in n.Output) if (o.Length > 0) producerSegment[o] = s;
                if (n.OpType == "Constant" && n.Domain is "" or "ai.onnx" && n.Output.Count == 1) constants[n.Output[0]] = n;
            }
        }
        return result;
    }

    /// <summary>
    /// ONNX Runtime reports a value whose shape it could not infer with no dimensions, exactly like a scalar. Such
    /// node outputs (those not provably scalar: outputs of Constant nodes and of ops that always return a scalar are
    /// left alone) get their rank from one run of the model on small placeholder inputs (every symbolic dimension set
    /// to 2, then 16, then 1, until a run succeeds): ranks do not change with sizes, so the dimensions stay unknown
    /// but the rank is right. Where no run succeeds, their rank becomes unknown (null), so that a rule that needs it
    /// fails naming the value instead of reading it as 0.
    /// </summary>
    private static void ResolveUnknownRanks(ModelProto probe, Dictionary<string, ValueType> types)
    {
        var graph = probe.Graph;
        var declared = graph.Initializer.Select(t => t.Name).Concat(graph.Input.Select(i => i.Name)).ToHashSet(StringComparer.Ordinal);
        var unknown = graph.Node.Where(n => n.OpType != "Constant").SelectMany(n => n.Output)
            .Where(o => o.Length > 0 && !declared.Contains(o) && types.TryGetValue(o, out var t) && t.Dims is { Length: 0 })
            .Distinct().ToArray();
        // A rank the model itself declares (value_info) settles it without a run.
        var declaredRanks = graph.ValueInfo.Where(v => v.Type?.TensorType?.Shape is not null)
            .GroupBy(v => v.Name, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First().Type.TensorType.Shape.Dim.Count, StringComparer.Ordinal);
        foreach (var name in unknown)
            if (declaredRanks.TryGetValue(name, out var r) && r > 0) types[name] = types[name] with { Dims = new long?[r], Symbols = new string?[r] };
        unknown = unknown.Where(n => !declaredRanks.ContainsKey(n)).ToArray();
        if (unknown.Length == 0) return;
        // Only the values asked about are outputs: a session's set-up grows with nodes times outputs.
        var rankProbe = probe.Clone();
        rankProbe.Graph.Output.Clear();
        foreach (var name in unknown) rankProbe.Graph.Output.Add(new ValueInfoProto { Name = name });
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        using var session = Training.OrtSessions.Create(rankProbe, options);
        foreach (var size in new long[] { 2, 16, 1 })
        {
            var ranks = TryRun(session, unknown, size);
            if (ranks is null) continue;
            foreach (var (name, rank) in ranks)
                if (rank > 0) types[name] = types[name] with { Dims = new long?[rank], Symbols = new string?[rank] };
            return;
        }
        foreach (var name in unknown) types[name] = types[name] with { Dims = null, Symbols = null };
    }

    private static Dictionary<string, int>? TryRun(InferenceSession session, string[] outputs, long symbolicSize)
    {
        var feeds = new List<OrtValue>();
        try
        {
            var names = new List<string>();
            foreach (var (name, meta) in session.InputMetadata)
            {
                if (meta.OnnxValueType != OnnxValueType.ONNX_TYPE_TENSOR) return null;
                var shape = meta.Dimensions.Select(d => d < 0 ? symbolicSize : (long)d).ToArray();
                var value = Placeholder(meta.ElementDataType, shape);
                if (value is null) return null;
                feeds.Add(value);
                names.Add(name);
            }
            using var run = new RunOptions();
            using var results = session.Run(run, names, feeds, outputs);
            return outputs.Zip(results).ToDictionary(p => p.First, p => p.Second.GetTensorTypeAndShape().Shape.Length, StringComparer.Ordinal);
        }
        catch (OnnxRuntimeException) { return null; }
        finally { foreach (var f in feeds) f.Dispose(); }
    }

    /// <summary>A placeholder input: zeros for integers and bools (valid indices and flags), 0.5 for floats.</summary>
    private static OrtValue? Placeholder(TensorElementType type, long[] shape)
    {
        var n = (int)shape.Aggregate(1L, (a, b) => a * b);
        return type switch
        {
            TensorElementType.Float => OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(0.5f, n).ToArray(), shape),
            TensorElementType.Double => OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(0.5, n).ToArray(), shape),
            TensorElementType.Float16 => OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat((Float16)0.5f, n).ToArray(), shape),
            TensorElementType.Int64 => OrtValue.CreateTensorValueFromMemory(new long[n], shape),
            TensorElementType.Int32 => OrtValue.CreateTensorValueFromMemory(new int[n], shape),
            TensorElementType.Bool => OrtValue.CreateTensorValueFromMemory(new bool[n], shape),
            TensorElementType.UInt8 => OrtValue.CreateTensorValueFromMemory(new byte[n], shape),
            _ => null,
        };
    }

    private static DataType FromOrt(TensorElementType t) => t switch
    {
        TensorElementType.Float => DataType.Float,
        TensorElementType.Double => DataType.Double,
        TensorElementType.Float16 => DataType.Float16,
        TensorElementType.BFloat16 => DataType.Bfloat16,
        TensorElementType.Int64 => DataType.Int64,
        TensorElementType.Int32 => DataType.Int32,
        TensorElementType.Int16 => DataType.Int16,
        TensorElementType.Int8 => DataType.Int8,
        TensorElementType.UInt8 => DataType.Uint8,
        TensorElementType.UInt16 => DataType.Uint16,
        TensorElementType.UInt32 => DataType.Uint32,
        TensorElementType.UInt64 => DataType.Uint64,
        TensorElementType.Bool => DataType.Bool,
        TensorElementType.String => DataType.String,
        _ => DataType.Undefined,
    };
}
