using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Onnx;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;
using OnnxAdadelta.Runtime;

namespace OnnxAdadelta.Gradients;

/// <summary>
/// Partial evaluation of the small int64 (and int32) tensors that exporters compute shapes with (Shape, Slice, Gather, Concat,
/// arithmetic), each element a number or unknown, to recover the static dimensions of Reshape outputs that ONNX
/// Runtime's shape inference leaves unknown because their shape input is computed (PyTorch's dynamo export reshapes
/// this way between stacked LSTM layers), and of Expands likewise (the zero initial states of tf2onnx's LSTMs).
/// </summary>
internal static class ShapeTensors
{
    /// <summary>One element of a shape tensor: its value where known, else the symbol of the dimension it copies, if any.</summary>
    public readonly record struct Dim(long? Value, string? Symbol);

    private const int MaxElements = 64;

    /// <summary>
    /// The dimensions of Reshape outputs that the partial evaluation knows better than <paramref name="types"/>:
    /// output name to dimensions, for outputs with at least one dimension newly known (by size, or by the symbol of
    /// the dimension it copies, so that the autodiff can tell equal symbolic sizes apart from possibly broadcast ones).
    /// </summary>
    public static Dictionary<string, Dim[]> RefinedReshapes(GraphProto graph, IReadOnlyDictionary<string, TypeAndShape> types)
    {
        var values = new Dictionary<string, Dim[]>(StringComparer.Ordinal);
        foreach (var t in graph.Initializer)
            if (t.DataType is (int)DataType.Int64 or (int)DataType.Int32 && t.Dims.Count <= 1 && t.Dims.Aggregate(1L, (a, b) => a * b) <= MaxElements)
                values[t.Name] = (t.DataType == (int)DataType.Int64 ? t.ToInt64Array() : t.ToArray<int>().Select(v => (long)v).ToArray()).Select(v => new Dim(v, null)).ToArray();
        var refined = new Dictionary<string, Dim[]>(StringComparer.Ordinal);
        foreach (var node in graph.Node)
        {
            if (node.Domain is not ("" or "ai.onnx") || node.Output.Count == 0) continue;
            if (node.OpType is "Reshape" or "Expand" && (node.OpType == "Reshape" ? Reshaped(node, types, values) : Expanded(node, types, values)) is { } dims)
            {
                var type = types.GetValueOrDefault(node.Output[0]);
                var known = type?.Dims;
                if (known is null)
                    refined[node.Output[0]] = dims;
                else if (known.Length == dims.Length && dims.Select((d, k) => known[k] is null && (d.Value is not null || (d.Symbol is not null && type!.Symbol(k) is null))).Any(x => x))
                    refined[node.Output[0]] = dims.Select((d, k) => known[k] is { } v ? new Dim(v, null) : d.Value is not null ? d : new Dim(null, type!.Symbol(k) ?? d.Symbol)).ToArray();
            }
            if (Evaluate(node, types, values) is { Length: <= MaxElements } v) values[node.Output[0]] = v;
        }
        return refined;
    }

    private static long? Attr(NodeProto n, string name) => n.Attribute.FirstOrDefault(a => a.Name == name)?.I;

    /// <summary>The partial value of a node's first output, or null when it is not a small int64 tensor this evaluates.</summary>
    private static Dim[]? Evaluate(NodeProto n, IReadOnlyDictionary<string, TypeAndShape> types, Dictionary<string, Dim[]> values)
    {
        Dim[]? In(int i) => i < n.Input.Count && n.Input[i].Length > 0 ? values.GetValueOrDefault(n.Input[i]) : null;
        long[]? Known(int i) => In(i) is { } v && v.All(x => x.Value is not null) ? v.Select(x => x.Value!.Value).ToArray() : null;
        switch (n.OpType)
        {
            case "Constant":
                var t = n.Attribute.FirstOrDefault(a => a.Name == "value")?.T;
                return t is { DataType: (int)DataType.Int64 } && t.Dims.Count <= 1 ? t.ToInt64Array().Select(v => new Dim(v, null)).ToArray() : null;
            case "Shape":
                var shaped = types.GetValueOrDefault(n.Input[0]);
                if (shaped?.Dims is not { } dims) return null;
                int r = dims.Length;
                long start = Attr(n, "start") ?? 0, end = Attr(n, "end") ?? r;
                start = Math.Clamp(start < 0 ? start + r : start, 0, r);
                end = Math.Clamp(end < 0 ? end + r : end, 0, r);
                return dims.Select((d, k) => new Dim(d, d is null ? shaped.Symbol(k) : null)).Skip((int)start).Take((int)Math.Max(0, end - start)).ToArray();
            case "Identity" or "Reshape" or "Squeeze" or "Unsqueeze":
                return In(0);
            case "Cast":
                return Attr(n, "to") is (long)DataType.Int64 or (long)DataType.Int32 ? In(0) : null;
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
                    if (p.Value is { } u && q.Value is { } w) return new Dim(n.OpType switch { "Mul" => u * w, "Add" => u + w, _ => u - w }, null);
                    long identity = n.OpType == "Mul" ? 1 : 0;
                    if (q.Value == identity) return p;                                    // x*1, x+0, x-0 keep x's symbol
                    if (p.Value == identity && n.OpType != "Sub") return q;
                    return new Dim(null, null);
                }).ToArray();
            default:
                return null;
        }
    }

    /// <summary>
    /// An Expand's output dimensions: its input's dimensions and the shape tensor broadcast together, right-aligned
    /// (a shape element 1 keeps the input's dimension; an input dimension 1 takes the shape's element, number or symbol).
    /// </summary>
    private static Dim[]? Expanded(NodeProto n, IReadOnlyDictionary<string, TypeAndShape> types, Dictionary<string, Dim[]> values)
    {
        if (n.Input.Count < 2 || values.GetValueOrDefault(n.Input[1]) is not { } shape) return null;
        var inputType = types.GetValueOrDefault(n.Input[0]);
        if (inputType?.Dims is not { } input) return null;
        int rank = Math.Max(input.Length, shape.Length);
        var dims = new Dim[rank];
        for (int k = 0; k < rank; k++)
        {
            int i = k - (rank - input.Length), s = k - (rank - shape.Length);
            var a = i >= 0 ? new Dim(input[i], input[i] is null ? inputType.Symbol(i) : null) : new Dim(1, null);
            var b = s >= 0 ? shape[s] : new Dim(1, null);
            dims[k] = b.Value == 1 ? a : a.Value == 1 ? b : a.Value is { } x && b.Value is { } y ? new Dim(Math.Max(x, y), null)
                : a.Value is > 1 ? a : b.Value is > 1 ? b : new Dim(null, null);
        }
        return dims;
    }

    /// <summary>A Reshape's output dimensions from its partially known shape input (0 copies the input's dimension unless allowzero; -1 is inferred).</summary>
    private static Dim[]? Reshaped(NodeProto n, IReadOnlyDictionary<string, TypeAndShape> types, Dictionary<string, Dim[]> values)
    {
        if (n.Input.Count < 2 || values.GetValueOrDefault(n.Input[1]) is not { } shape) return null;
        var inputType = types.GetValueOrDefault(n.Input[0]);
        var input = inputType?.Dims;
        bool allowZero = Attr(n, "allowzero") == 1;
        var dims = shape.Select((d, k) => d.Value == 0 && !allowZero
            ? (input is not null && k < input.Length ? new Dim(input[k], input[k] is null ? inputType!.Symbol(k) : null) : new Dim(null, null))
            : d).ToArray();
        int inferred = Array.FindIndex(dims, d => d.Value == -1);
        if (inferred >= 0)
        {
            long? total = input?.Aggregate((long?)1, (acc, d) => acc * d);
            long? others = dims.Where((_, k) => k != inferred).Aggregate((long?)1, (acc, d) => acc * d.Value);
            dims[inferred] = new Dim(total is { } tt && others is { } o && o > 0 && tt % o == 0 ? tt / o : null, null);
        }
        return dims.Any(d => d.Value is < 0) ? null : dims;
    }
}
