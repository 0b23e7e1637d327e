using Onnx;
using OnnxAdadelta.Onnx;
using DataType = Onnx.TensorProto.Types.DataType;

namespace OnnxAdadelta.Gradients;

/// <summary>
/// Partial evaluation of the small int64 tensors that exporters compute shapes with (Shape, Slice, Gather, Concat,
/// arithmetic), each element a number or unknown, to recover the static dimensions of Reshape outputs that ONNX
/// Runtime's shape inference leaves unknown because their shape input is computed (PyTorch's dynamo export reshapes
/// this way between stacked LSTM layers).
/// </summary>
internal static class ShapeTensors
{
    private const int MaxElements = 64;

    /// <summary>
    /// The dimensions of Reshape outputs that the partial evaluation knows better than <paramref name="types"/>:
    /// output name to dimensions (null where still unknown), for outputs with at least one newly known dimension.
    /// </summary>
    public static Dictionary<string, long?[]> RefinedReshapes(GraphProto graph, IReadOnlyDictionary<string, ValueType> types)
    {
        var values = new Dictionary<string, long?[]>(StringComparer.Ordinal);
        foreach (var t in graph.Initializer)
            if (t.DataType == (int)DataType.Int64 && t.Dims.Count <= 1 && t.Dims.Aggregate(1L, (a, b) => a * b) <= MaxElements)
                values[t.Name] = t.ToInt64Array().Select(v => (long?)v).ToArray();
        var refined = new Dictionary<string, long?[]>(StringComparer.Ordinal);
        foreach (var node in graph.Node)
        {
            if (node.Domain is not ("" or "ai.onnx") || node.Output.Count == 0) continue;
            if (node.OpType == "Reshape" && Reshaped(node, types, values) is { } dims)
            {
                var known = types.GetValueOrDefault(node.Output[0])?.Dims;
                if (known is null || known.Length == dims.Length && known.Zip(dims).Any(p => p.First is null && p.Second is not null))
                    refined[node.Output[0]] = known is null ? dims : known.Zip(dims).Select(p => p.First ?? p.Second).ToArray();
            }
            if (Evaluate(node, types, values) is { Length: <= MaxElements } v) values[node.Output[0]] = v;
        }
        return refined;
    }

    private static long? Attr(NodeProto n, string name) => n.Attribute.FirstOrDefault(a => a.Name == name)?.I;

    /// <summary>The partial value of a node's first output, or null when it is not a small int64 tensor this evaluates.</summary>
    private static long?[]? Evaluate(NodeProto n, IReadOnlyDictionary<string, ValueType> types, Dictionary<string, long?[]> values)
    {
        long?[]? In(int i) => i < n.Input.Count && n.Input[i].Length > 0 ? values.GetValueOrDefault(n.Input[i]) : null;
        long[]? Known(int i) => In(i) is { } v && v.All(x => x is not null) ? v.Select(x => x!.Value).ToArray() : null;
        switch (n.OpType)
        {
            case "Constant":
                var t = n.Attribute.FirstOrDefault(a => a.Name == "value")?.T;
                return t is { DataType: (int)DataType.Int64 } && t.Dims.Count <= 1 ? t.ToInt64Array().Select(v => (long?)v).ToArray() : null;
            case "Shape":
                if (types.GetValueOrDefault(n.Input[0])?.Dims is not { } dims) return null;
                int r = dims.Length;
                long start = Attr(n, "start") ?? 0, end = Attr(n, "end") ?? r;
                start = Math.Clamp(start < 0 ? start + r : start, 0, r);
                end = Math.Clamp(end < 0 ? end + r : end, 0, r);
                return dims.Skip((int)start).Take((int)Math.Max(0, end - start)).ToArray();
            case "Identity" or "Reshape" or "Squeeze" or "Unsqueeze":
                return In(0);
            case "Cast":
                return Attr(n, "to") == (long)DataType.Int64 ? In(0) : null;
            case "Concat":
                var parts = Enumerable.Range(0, n.Input.Count).Select(In).ToList();
                return parts.All(p => p is not null) ? parts.SelectMany(p => p!).ToArray() : null;
            case "Gather":
                if (In(0) is not { } data || Known(1) is not { } idx || (Attr(n, "axis") ?? 0) != 0) return null;
                return idx.All(i => i >= -data.Length && i < data.Length) ? idx.Select(i => data[i < 0 ? i + data.Length : i]).ToArray() : null;
            case "Slice":
                if (In(0) is not { } x || Known(1) is not [var s] || Known(2) is not [var e]) return null;
                if (n.Input.Count > 3 && n.Input[3].Length > 0 && Known(3) is not [0 or -1]) return null;
                if (n.Input.Count > 4 && n.Input[4].Length > 0 && Known(4) is not [1]) return null;
                int len = x.Length;
                s = Math.Clamp(s < 0 ? s + len : s, 0, len);
                e = Math.Clamp(e < 0 ? e + len : e, 0, len);
                return x.Skip((int)s).Take((int)Math.Max(0, e - s)).ToArray();
            case "Mul" or "Add" or "Sub":
                if (In(0) is not { } a || In(1) is not { } b || (a.Length != b.Length && a.Length != 1 && b.Length != 1)) return null;
                int count = Math.Max(a.Length, b.Length);
                return Enumerable.Range(0, count).Select(k =>
                {
                    var (p, q) = (a[a.Length == 1 ? 0 : k], b[b.Length == 1 ? 0 : k]);
                    if (p is null || q is null) return (long?)null;
                    return n.OpType switch { "Mul" => p * q, "Add" => p + q, _ => p - q };
                }).ToArray();
            default:
                return null;
        }
    }

    /// <summary>A Reshape's output dimensions from its partially known shape input (0 copies the input's dimension unless allowzero; -1 is inferred).</summary>
    private static long?[]? Reshaped(NodeProto n, IReadOnlyDictionary<string, ValueType> types, Dictionary<string, long?[]> values)
    {
        if (n.Input.Count < 2 || values.GetValueOrDefault(n.Input[1]) is not { } shape) return null;
        var input = types.GetValueOrDefault(n.Input[0])?.Dims;
        bool allowZero = Attr(n, "allowzero") == 1;
        var dims = shape.Select((d, k) => d == 0 && !allowZero ? (input is not null && k < input.Length ? input[k] : null) : d).ToArray();
        int inferred = Array.IndexOf(dims, -1L);
        if (inferred >= 0)
        {
            long? total = input?.Aggregate((long?)1, (acc, d) => acc * d);
            long? others = dims.Where((_, k) => k != inferred).Aggregate((long?)1, (acc, d) => acc * d);
            dims[inferred] = total is { } tt && others is { } o && o > 0 && tt % o == 0 ? tt / o : null;
        }
        return dims.Any(d => d is < 0) ? null : dims;
    }
}
