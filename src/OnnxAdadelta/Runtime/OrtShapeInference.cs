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
    /// node outputs (those not provably scalar: outputs of Constant nodes and of ops that always return a scalar are
    /// left alone) get their rank from one run of the model on small placeholder inputs (every symbolic dimension set
    /// to 2, then 16, then 1, until a run succeeds): ranks do not change with sizes, so the dimensions stay unknown
    /// but the rank is right. Where no run succeeds, their rank becomes unknown (null), so that a rule that needs it
    /// fails naming the value instead of reading it as 0.
    /// </summary>
    public static void ResolveUnknownRanks(ModelProto probe, Dictionary<string, TypeAndShape> types)
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
        using var session = OrtSessions.Create(rankProbe, options);
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
