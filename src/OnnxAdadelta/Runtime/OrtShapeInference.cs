using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using OnnxAdadelta.Onnx.Proto;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Runtime;

/// <summary>The element type and dimensions of a value: each dimension a size, or null when symbolic or unknown.</summary>
/// <param name="ElementType">The element type.</param>
/// <param name="Dims">The dimensions, or null when even the rank is unknown.</param>
/// <param name="Symbols">For each dimension, its symbol (dim_param) where it has one, as shape inference propagated it.</param>
public sealed record TypeAndShape(DataType ElementType, long?[]? Dims, string?[]? Symbols = null)
{
    /// <summary>The symbol of dimension <paramref name="axis"/>, or null.</summary>
    public string? Symbol(int axis) => Symbols is { } s && axis < s.Length && !string.IsNullOrEmpty(s[axis]) ? s[axis] : null;

    /// <summary>The rank, or null.</summary>
    public int? Rank => Dims?.Length;

    /// <summary>Whether the element type is a floating-point one (float, double, float16, bfloat16).</summary>
    public bool IsFloat => ElementType is DataType.Float or DataType.Double or DataType.Float16 or DataType.Bfloat16;
}

/// <summary>
/// What ONNX Runtime's own shape inference reports for a model: the types and shapes of its inputs and outputs, and
/// the ranks it leaves unknown, found by one run on placeholder inputs.
/// </summary>
public static class OrtShapeInference
{
    /// <summary>The types ORT's session reports for <paramref name="probe"/>'s inputs and outputs, plus its initializers'.</summary>
    public static Dictionary<string, TypeAndShape> Read(ModelProto probe)
    {
        var result = new Dictionary<string, TypeAndShape>(StringComparer.Ordinal);
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        using var session = OrtSessions.Create(probe, options);
        foreach (var (name, meta) in session.InputMetadata.Concat(session.OutputMetadata).Concat(session.OverridableInitializerMetadata))
            if (meta.OnnxValueType == OnnxValueType.ONNX_TYPE_TENSOR)
                result[name] = new TypeAndShape(FromOrt(meta.ElementDataType), meta.Dimensions.Select(d => d < 0 ? (long?)null : d).ToArray(),
                    meta.SymbolicDimensions.Select(d => string.IsNullOrEmpty(d) ? null : d).ToArray());
        foreach (var t in probe.Graph.Initializer)
            result.TryAdd(t.Name, new TypeAndShape((DataType)t.DataType, t.Dims.Select(d => (long?)d).ToArray()));
        return result;
    }

    /// <summary>
    /// ONNX Runtime reports a value whose shape it could not infer with no dimensions, exactly like a scalar. Such
    /// node outputs (those not provably scalar, see <see cref="ProvablyScalar"/>) get their rank from one run on small
    /// placeholder inputs (every symbolic dimension set to 2, then 16, then 1, until a run succeeds) of the nodes they
    /// depend on (<see cref="RankProbe"/>): ranks do not change with sizes, so the dimensions stay unknown but the rank
    /// is right. Where no run succeeds, their rank becomes unknown (null), so that a rule that needs it fails naming
    /// the value instead of reading it as 0.
    /// </summary>
    public static void ResolveUnknownRanks(ModelProto probe, Dictionary<string, TypeAndShape> types)
    {
        ArgumentNullException.ThrowIfNull(probe);
        ArgumentNullException.ThrowIfNull(types);
        using var rankProbe = RankProbe(probe, types, out var unknown);
        if (rankProbe is null) return;
        foreach (var size in new long[] { 2, 16, 1 })
        {
            var ranks = TryRun(rankProbe.Session, unknown, size);
            if (ranks is null) continue;
            foreach (var (name, rank) in ranks)
                if (rank > 0) types[name] = types[name] with { Dims = new long?[rank], Symbols = new string?[rank] };
            return;
        }
        foreach (var name in unknown) types[name] = types[name] with { Dims = null, Symbols = null };
    }

    /// <summary>A session of the rank probe: the model it loaded and the session itself.</summary>
    internal sealed class ProbeSession(ModelProto model, InferenceSession session) : IDisposable
    {
        /// <summary>The model the session loaded: the nodes the values asked about depend on, those values as outputs.</summary>
        public ModelProto Model { get; } = model;

        /// <summary>The session.</summary>
        public InferenceSession Session { get; } = session;

        /// <inheritdoc/>
        public void Dispose() => Session.Dispose();
    }

    /// <summary>
    /// The run that settles the ranks ONNX Runtime left unknown (reported as []): null when every such output is
    /// provably a scalar or has a rank the model declares (value_info), which settles it in place in
    /// <paramref name="types"/>. Otherwise a session of a model holding only the nodes the remaining values
    /// (<paramref name="unknown"/>) depend on, with those values as its only outputs: a session's set-up grows faster
    /// than linearly with its nodes and outputs, so a question about one value does not load the whole graph.
    /// </summary>
    internal static ProbeSession? RankProbe(ModelProto probe, Dictionary<string, TypeAndShape> types, out string[] unknown)
    {
        var graph = probe.Graph;
        var declared = graph.Initializer.Select(t => t.Name).Concat(graph.Input.Select(i => i.Name)).ToHashSet(StringComparer.Ordinal);
        var scalars = ProvablyScalar(graph, types);
        unknown = graph.Node.Where(n => n.OpType != "Constant").SelectMany(n => n.Output)
            .Where(o => o.Length > 0 && !declared.Contains(o) && !scalars.Contains(o) && types.TryGetValue(o, out var t) && t.Dims is { Length: 0 })
            .Distinct().ToArray();
        // A rank the model itself declares (value_info) settles it without a run.
        var declaredRanks = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var v in graph.ValueInfo)
            if (v.Type?.TensorType?.Shape is { } shape) declaredRanks.TryAdd(v.Name, shape.Dim.Count);
        foreach (var name in unknown)
            if (declaredRanks.TryGetValue(name, out var r) && r > 0) types[name] = types[name] with { Dims = new long?[r], Symbols = new string?[r] };
        unknown = unknown.Where(n => !declaredRanks.ContainsKey(n)).ToArray();
        if (unknown.Length == 0) return null;

        // Only the nodes the values asked about depend on (outer-scope reads of subgraphs included), in graph order.
        var producer = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int k = 0; k < graph.Node.Count; k++)
            foreach (var o in graph.Node[k].Output) if (o.Length > 0) producer.TryAdd(o, k);
        var needed = new bool[graph.Node.Count];
        var read = new HashSet<string>(StringComparer.Ordinal);
        var pending = new Stack<string>(unknown);
        while (pending.TryPop(out var value))
        {
            if (!read.Add(value) || !producer.TryGetValue(value, out var k) || needed[k]) continue;
            needed[k] = true;
            foreach (var i in graph.Node[k].Input) if (i.Length > 0) pending.Push(i);
            SubgraphReads(graph.Node[k], pending);
        }
        var model = new ModelProto { IrVersion = probe.IrVersion, Graph = new GraphProto { Name = graph.Name } };
        model.OpsetImport.AddRange(probe.OpsetImport);
        model.Functions.AddRange(probe.Functions);
        model.Graph.Input.AddRange(graph.Input.Where(i => read.Contains(i.Name)));
        model.Graph.Initializer.AddRange(graph.Initializer.Where(t => read.Contains(t.Name)));
        for (int k = 0; k < graph.Node.Count; k++) if (needed[k]) model.Graph.Node.Add(graph.Node[k]);
        foreach (var name in unknown) model.Graph.Output.Add(new ValueInfoProto { Name = name });
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        return new ProbeSession(model, OrtSessions.Create(model, options));
    }

    /// <summary>Reductions: with keepdims=0 and no axes (and noop_with_empty_axes unset) the result is a scalar.</summary>
    private static readonly HashSet<string> Reductions = new(StringComparer.Ordinal)
    {
        "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
        "ReduceLogSumExp", "ReduceSumSquare",
    };

    /// <summary>Element-wise ops (with broadcasting): scalar inputs give a scalar output.</summary>
    private static readonly HashSet<string> Elementwise = new(StringComparer.Ordinal)
    {
        "Add", "Sub", "Mul", "Div", "Pow", "Neg", "Abs", "Sqrt", "Exp", "Log", "Reciprocal", "Tanh", "Sigmoid", "Relu",
        "Identity", "Cast", "Max", "Min", "Sum", "Mean", "Where", "Equal", "Less", "Greater", "Not", "And", "Or",
    };

    /// <summary>
    /// Node outputs that are scalars whatever the input sizes, found in one pass over a topologically sorted graph: a
    /// full reduction with keepdims=0, a SoftmaxCrossEntropyLoss or NegativeLogLikelihoodLoss that reduces, CastLike
    /// of a scalar, and element-wise ops whose inputs are all such scalars, scalar initializers or rank-0 graph inputs.
    /// ONNX Runtime reports these with no dimensions, rightly, so no run is needed to tell their rank.
    /// </summary>
    internal static HashSet<string> ProvablyScalar(GraphProto graph, IReadOnlyDictionary<string, TypeAndShape> types)
    {
        var scalars = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in graph.Initializer) if (t.Dims.Count == 0) scalars.Add(t.Name);
        foreach (var i in graph.Input)
            if (i.Type?.TensorType?.Shape is { Dim.Count: 0 }) scalars.Add(i.Name);
        foreach (var n in graph.Node)
        {
            if (n.Domain is not ("" or "ai.onnx") || n.Output.Count == 0 || n.Output[0].Length == 0) continue;
            bool scalar;
            if (Reductions.Contains(n.OpType))
                scalar = Int(n, "keepdims", 1) == 0 && Int(n, "noop_with_empty_axes", 0) == 0
                    && !n.Attribute.Any(a => a.Name == "axes") && (n.Input.Count < 2 || n.Input[1].Length == 0);
            else if (n.OpType is "SoftmaxCrossEntropyLoss" or "NegativeLogLikelihoodLoss")
                scalar = n.Attribute.FirstOrDefault(a => a.Name == "reduction") is not { } r || r.S.ToStringUtf8() != "none";
            else if (n.OpType == "CastLike")
                scalar = n.Input.Count > 0 && scalars.Contains(n.Input[0]);
            else
                scalar = Elementwise.Contains(n.OpType) && n.Output.Count == 1 && n.Input.Count > 0 && n.Input.All(scalars.Contains);
            if (scalar && types.TryGetValue(n.Output[0], out var t) && t.Dims is { Length: 0 }) scalars.Add(n.Output[0]);
        }
        return scalars;
    }

    /// <summary>
    /// Every name the subgraphs of <paramref name="node"/> read, at any depth: a superset of its outer-scope reads (ONNX
    /// names are unique across scopes, so the names a subgraph defines itself have no producer outside it).
    /// </summary>
    private static void SubgraphReads(NodeProto node, Stack<string> into)
    {
        foreach (var a in node.Attribute)
            foreach (var g in a.G is null ? a.Graphs : a.Graphs.Prepend(a.G))
                foreach (var n in g.Node)
                {
                    foreach (var i in n.Input) if (i.Length > 0) into.Push(i);
                    SubgraphReads(n, into);
                }
    }

    private static long Int(NodeProto node, string name, long fallback) => node.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.I : fallback;

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
