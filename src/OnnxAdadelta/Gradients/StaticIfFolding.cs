using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;
using OnnxAdadelta.Runtime;

namespace OnnxAdadelta.Gradients;

/// <summary>
/// Replaces each If of the main graph whose condition is known when the graph is built by the branch it always takes.
/// Exporters guard code paths by the rank or static sizes of a tensor (torch.onnx's dynamo export does it in every
/// pooling and convolution function); the branch that cannot run would otherwise be differentiated against types it
/// was never meant for.
/// </summary>
/// <remarks>
/// A condition is known when it follows from constants (initializers that are not graph inputs, Constant nodes) and
/// from shapes that shape inference found static, through Shape, Size, Cast, CastLike, Identity, Gather, Squeeze,
/// Unsqueeze, comparisons and logic ops. Folding repeats until nothing more folds (a folded branch may expose another).
/// </remarks>
public static class StaticIfFolding
{
    private const int MaxRounds = 16;

    /// <summary>Folds the Ifs of <paramref name="model"/>'s main graph in place; returns how many were folded.</summary>
    public static int Fold(ModelProto model)
    {
        int total = 0;
        for (int round = 0; round < MaxRounds; round++)
        {
            if (!model.Graph.Node.Any(n => n.OpType == "If" && n.Domain is "" or "ai.onnx")) break;
            var types = ShapeInference.Infer(model);
            var eval = new Evaluator(model.Graph, types);
            var b = new GraphBuilder(model.Graph);
            var nodes = new List<NodeProto>();
            int folded = 0;
            foreach (var node in model.Graph.Node)
            {
                if (node.OpType != "If" || node.Domain is not ("" or "ai.onnx") || eval.Value(node.Input[0]) is not [var c])
                {
                    nodes.Add(node);
                    continue;
                }
                var branch = node.Attribute.FirstOrDefault(a => a.Name == (c != 0 ? "then_branch" : "else_branch"))?.G
                    ?? throw new OnnxAdadeltaException($"Node '{node.Name}' (If) has no {(c != 0 ? "then_branch" : "else_branch")}.");
                var scratch = new GraphProto();
                var sb = new GraphBuilder(scratch, b);
                var prefix = node.Name.Length > 0 ? node.Name : node.Output[0];
                var map = SubgraphCopy.Inline(sb, branch, new Dictionary<string, string>(), prefix);
                nodes.AddRange(scratch.Node);
                model.Graph.Initializer.AddRange(scratch.Initializer);
                for (int k = 0; k < node.Output.Count; k++)
                    if (node.Output[k].Length > 0)
                        nodes.Add(new NodeProto
                        {
                            OpType = "Identity", Name = b.UniqueName($"{prefix}/folded_{k}"),
                            Input = { map.GetValueOrDefault(branch.Output[k].Name, branch.Output[k].Name) }, Output = { node.Output[k] },
                        });
                folded++;
            }
            if (folded == 0) break;
            model.Graph.Node.Clear();
            model.Graph.Node.AddRange(nodes);
            total += folded;
        }
        return total;
    }

    /// <summary>Int64 (bools as 0/1) values computable from constants and static shapes, or null.</summary>
    private sealed class Evaluator(GraphProto graph, IReadOnlyDictionary<string, TypeAndShape> types)
    {
        private readonly Dictionary<string, NodeProto> _producer = graph.Node.SelectMany(n => n.Output.Where(o => o.Length > 0).Select(o => (o, n)))
            .GroupBy(p => p.o).ToDictionary(g => g.Key, g => g.First().n, StringComparer.Ordinal);
        private readonly HashSet<string> _inputs = graph.Input.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        private readonly Dictionary<string, TensorProto> _inits = graph.Initializer.GroupBy(t => t.Name).ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);
        private readonly Dictionary<string, long[]?> _memo = new(StringComparer.Ordinal);

        public long[]? Value(string name)
        {
            if (_memo.TryGetValue(name, out var v)) return v;
            _memo[name] = null; // guards against cycles
            return _memo[name] = Compute(name);
        }

        private static long[]? Ints(TensorProto t) => t.DataType switch
        {
            (int)DataType.Int64 => t.ToInt64Array(),
            (int)DataType.Int32 => t.ToArray<int>().Select(x => (long)x).ToArray(),
            (int)DataType.Bool => t.ToArray<bool>().Select(x => x ? 1L : 0L).ToArray(),
            _ => null,
        };

        private static long? Attr(NodeProto n, string name, long? fallback) => n.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.I : fallback;

        private long[]? Compute(string name)
        {
            if (_inits.TryGetValue(name, out var init)) return _inputs.Contains(name) ? null : Ints(init);
            if (!_producer.TryGetValue(name, out var n) || n.Domain is not ("" or "ai.onnx")) return null;
            long[]? In(int i) => i < n.Input.Count && n.Input[i].Length > 0 ? Value(n.Input[i]) : null;
            long[]? Binary(Func<long, long, long> f)
            {
                if (In(0) is not { } a || In(1) is not { } b) return null;
                if (a.Length == b.Length) return a.Zip(b, f).ToArray();
                if (a.Length == 1) return b.Select(y => f(a[0], y)).ToArray();
                if (b.Length == 1) return a.Select(x => f(x, b[0])).ToArray();
                return null;
            }
            switch (n.OpType)
            {
                case "Constant":
                    var value = n.Attribute.FirstOrDefault();
                    return value?.Name switch
                    {
                        "value" => Ints(value.T),
                        "value_int" => [value.I],
                        "value_ints" => [.. value.Ints],
                        _ => null,
                    };
                case "Shape":
                {
                    if (types.GetValueOrDefault(n.Input[0])?.Dims is not { } dims) return null;
                    int r = dims.Length;
                    long start = Attr(n, "start", 0)!.Value, end = Attr(n, "end", r)!.Value;
                    start = Math.Clamp(start < 0 ? start + r : start, 0, r);
                    end = Math.Clamp(end < 0 ? end + r : end, 0, r);
                    var slice = dims.Skip((int)start).Take((int)Math.Max(0, end - start)).ToArray();
                    return slice.All(d => d is not null) ? slice.Select(d => d!.Value).ToArray() : null;
                }
                case "Size":
                    return types.GetValueOrDefault(n.Input[0])?.Dims is { } sd && sd.All(d => d is not null) ? [sd.Aggregate(1L, (p, d) => p * d!.Value)] : null;
                case "Identity" or "Cast" or "CastLike" or "Squeeze" or "Unsqueeze":
                {
                    if (In(0) is not { } x) return null;
                    var to = n.OpType == "Cast" ? (DataType?)Attr(n, "to", null) : n.OpType == "CastLike" ? types.GetValueOrDefault(n.Input[1])?.ElementType : null;
                    if (to is DataType.Bool) return x.Select(e => e != 0 ? 1L : 0L).ToArray();
                    if (to is not (null or DataType.Int64 or DataType.Int32 or DataType.Int16 or DataType.Int8 or DataType.Uint8)) return null;
                    return x;
                }
                case "Gather":
                {
                    if (In(0) is not { } data || In(1) is not { } idx || Attr(n, "axis", 0) != 0) return null;
                    if (types.GetValueOrDefault(n.Input[0])?.Rank != 1) return null;
                    var picked = new long[idx.Length];
                    for (int k = 0; k < idx.Length; k++)
                    {
                        var j = idx[k] < 0 ? idx[k] + data.Length : idx[k];
                        if (j < 0 || j >= data.Length) return null;
                        picked[k] = data[j];
                    }
                    return picked;
                }
                case "Equal": return Binary((a, b) => a == b ? 1 : 0);
                case "Less": return Binary((a, b) => a < b ? 1 : 0);
                case "LessOrEqual": return Binary((a, b) => a <= b ? 1 : 0);
                case "Greater": return Binary((a, b) => a > b ? 1 : 0);
                case "GreaterOrEqual": return Binary((a, b) => a >= b ? 1 : 0);
                case "And": return Binary((a, b) => a != 0 && b != 0 ? 1 : 0);
                case "Or": return Binary((a, b) => a != 0 || b != 0 ? 1 : 0);
                case "Xor": return Binary((a, b) => (a != 0) ^ (b != 0) ? 1 : 0);
                case "Not": return In(0)?.Select(x => x == 0 ? 1L : 0L).ToArray();
                default: return null;
            }
        }
    }
}
