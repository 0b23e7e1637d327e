using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;
using OnnxAdadelta.Runtime;

namespace OnnxAdadelta.Gradients;

/// <summary>How <see cref="GradientGraphBuilder"/> trains BatchNormalization nodes.</summary>
public enum BatchNormMode
{
    /// <summary>
    /// Each node as exported: inference-form nodes normalize with their constant running statistics, and nodes with
    /// training_mode=1 normalize with the batch's statistics and update the running ones.
    /// </summary>
    Inference,

    /// <summary>Every node normalizes with the batch's statistics and updates its running mean and variance.</summary>
    Train,
}

/// <summary>How <see cref="GradientGraphBuilder"/> trains Dropout nodes.</summary>
public enum DropoutMode
{
    /// <summary>Dropout stays an identity (as in inference); a node with a constant true training_mode is still trained.</summary>
    Identity,

    /// <summary>Every Dropout node drops a random part of its input on each step.</summary>
    Train,
}

/// <summary>
/// Puts BatchNormalization and Dropout nodes into their training form before the autodiff runs, and records what the
/// rewrite and export need in a <see cref="TrainingGraphInfo"/>.
/// </summary>
/// <remarks>
/// <para>BatchNormalization: the batch's mean and biased variance over every axis but 1 are computed beside the node in
/// standard ops, and the next running statistics from them, following opset 15 exactly:
/// running = input_running·momentum + current·(1 − momentum). The node is in ONNX's training form (training_mode=1)
/// while the autodiff runs, so that the gradient rule flows through the batch statistics; then
/// <see cref="UseBatchStatistics"/> makes it an inference-form node that reads the batch statistics (the same Y on every
/// execution provider). The running mean and variance must be initializers; each becomes a buffer whose next value is
/// the graph output <c>&lt;name&gt;.next</c>, and export gives the node the trained running statistics back.</para>
/// <para>Dropout: the node is replaced by Y = X·mask/(1 − ratio). The mask keeps each element with probability
/// 1 − ratio; it is a counter-based hash, in int64 ONNX ops, of the element's flat index, the node's salt (its seed
/// attribute and output name) and the step number, which the graph reads from the int64 scalar input
/// <see cref="StepInputName"/> (the rewrite feeds it from the iteration counter). The same step gives the same mask,
/// so a resumed run repeats them; each step gives another. Indices are taken modulo 2³¹ − 1.</para>
/// </remarks>
public static class TrainingModes
{
    /// <summary>The name of the step-number input a training graph with random dropout takes.</summary>
    public const string StepInputName = "training_step";

    // The hash works in the field of integers modulo the prime 2^31 - 1: products of two residues fit in int64, and
    // x -> x^5 is a bijection there (5 does not divide p - 1), so that distinct indices keep distinct hashes.
    private const long Prime = 2147483647L;
    private static readonly long[] RoundKeys = [0x2545F491L, 0x4F6CDD1DL, 0x1B873593L];

    /// <summary>Rewrites the nodes of <paramref name="model"/> in place; returns what the training graph must record.</summary>
    /// <exception cref="OnnxAdadeltaException">A node cannot be trained in its training form; the message names it.</exception>
    public static TrainingGraphInfo Apply(ModelProto model, BuildTrainingOptions options)
    {
        var graph = model.Graph;
        var targets = graph.Node.Where(n => n.Domain is "" or "ai.onnx" && n.OpType switch
        {
            "BatchNormalization" => options.BatchNorm == BatchNormMode.Train || IntAttribute(n, "training_mode", 0) != 0,
            "Dropout" => DropoutTrains(graph, n, options.Dropout),
            _ => false,
        }).ToList();
        if (targets.Count == 0) return new TrainingGraphInfo();

        var types = ShapeInference.Infer(model);
        var b = new GraphBuilder(graph);
        int opset = (int)model.OpsetImport.Single(o => o.Domain is "" or "ai.onnx").Version;
        var buffers = new List<BufferBinding>();
        var inference = new Dictionary<string, string>(StringComparer.Ordinal);
        string? step = null;
        foreach (var node in targets)
        {
            if (node.OpType == "BatchNormalization") buffers.AddRange(BatchNormalization(b, types, node, opset, buffers, inference));
            else
            {
                if (step is null)
                {
                    step = b.UniqueName(StepInputName);
                    graph.Input.Add(TypeProtos.ValueInfo(step, DataType.Int64, []));
                }
                inference[node.Output[0]] = Dropout(b, types, node, step);
            }
        }
        GraphPasses.TopologicalSort(graph);
        return new TrainingGraphInfo
        {
            Buffers = buffers.Count > 0 ? buffers : null,
            StepInput = step,
            InferenceValues = inference.Count > 0 ? inference : null,
        };
    }

    private static long IntAttribute(NodeProto n, string name, long fallback) => n.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.I : fallback;

    private static OnnxAdadeltaException Fail(NodeProto node, string problem) =>
        new($"{node.OpType} node '{(node.Name.Length > 0 ? node.Name : node.Output[0])}' in training mode: {problem}.");

    private static void KnownAttributes(NodeProto node, params string[] known)
    {
        foreach (var a in node.Attribute)
            if (!known.Contains(a.Name)) throw Fail(node, $"attribute '{a.Name}' is not supported");
    }

    private static string Constant(GraphBuilder b, string hint, TensorProto value) =>
        b.Add("Constant", [], hint, new AttributeProto { Name = "value", Type = AttributeProto.Types.AttributeType.Tensor, T = value });

    private static string Cast(GraphBuilder b, string x, DataType to, string hint) => b.Add("Cast", [x], hint, GraphBuilder.Attr("to", (long)to));

    private static string ReduceMean(GraphBuilder b, int opset, string x, long[] axes, bool keepDims, string hint) => opset >= 18
        ? b.Add("ReduceMean", [x, b.Initializer($"{hint}/axes", Tensors.Create("", axes, axes.Length))], hint, GraphBuilder.Attr("keepdims", keepDims ? 1L : 0L))
        : b.Add("ReduceMean", [x], hint, GraphBuilder.Attr("axes", axes), GraphBuilder.Attr("keepdims", keepDims ? 1L : 0L));

    /// <summary>
    /// Sets training_mode=1 and computes the next running mean and variance beside the node; returns the two buffers and
    /// records in <paramref name="inference"/> that the node's inputs 3 and 4 are the running statistics in inference.
    /// </summary>
    private static IEnumerable<BufferBinding> BatchNormalization(GraphBuilder b, IReadOnlyDictionary<string, TypeAndShape> types, NodeProto node, int opset,
        List<BufferBinding> earlier, Dictionary<string, string> inference)
    {
        KnownAttributes(node, "epsilon", "momentum", "training_mode");
        if (node.Output.Count > 3)
            throw Fail(node, $"it has {node.Output.Count} outputs; opset 14+ BatchNormalization has at most 3 (Y, running_mean, running_var): convert the model's older form first");
        if (node.Input.Count < 5) throw Fail(node, $"it has {node.Input.Count} inputs; 5 (X, scale, B, input_mean, input_var) are required");
        var graph = b.Graph;
        var x = node.Input[0];
        int rank = types.GetValueOrDefault(x)?.Rank ?? throw Fail(node, $"the rank of the input '{x}' is unknown");
        if (rank < 2) throw Fail(node, $"the input '{x}' has rank {rank}; at least 2 (N, C, …) was expected");
        var momentum = (double)(node.Attribute.FirstOrDefault(a => a.Name == "momentum")?.F ?? 0.9f);
        var prefix = $"{(node.Name.Length > 0 ? node.Name : node.Output[0])}/training";
        long[] axes = [0, .. Enumerable.Range(2, rank - 2).Select(a => (long)a)];

        var mean = ReduceMean(b, opset, x, axes, keepDims: true, $"{prefix}/batch_mean");
        var centered = b.Add("Sub", [x, mean], $"{prefix}/centered");
        var current = new[]
        {
            ReduceMean(b, opset, x, axes, keepDims: false, $"{prefix}/current_mean"),
            ReduceMean(b, opset, b.Add("Mul", [centered, centered], $"{prefix}/squared"), axes, keepDims: false, $"{prefix}/current_var"),
        };
        var result = new List<BufferBinding>();
        for (int k = 0; k < 2; k++)
        {
            var running = node.Input[3 + k];
            var what = k == 0 ? "input_mean" : "input_var";
            if (!graph.Initializer.Any(t => t.Name == running))
                throw Fail(node, $"{what} '{running}' is not an initializer; the running statistics must be initializers so that training can update them");
            if (earlier.Concat(result).Any(e => e.Input == running))
                throw Fail(node, $"{what} '{running}' is also the running statistic of another BatchNormalization node; each needs its own");
            // An overridable initializer (a graph input too) becomes a plain one: the step model owns its value.
            foreach (var input in graph.Input.Where(i => i.Name == running).ToList()) graph.Input.Remove(input);
            var type = types.GetValueOrDefault(running)?.ElementType ?? throw Fail(node, $"the type of '{running}' is unknown");
            var m = Cast(b, Constant(b, $"{prefix}/momentum", Tensors.Create("", [momentum])), type, $"{prefix}/momentum_as_{what}");
            var rest = Cast(b, Constant(b, $"{prefix}/one_minus_momentum", Tensors.Create("", [1 - momentum])), type, $"{prefix}/one_minus_momentum_as_{what}");
            var batch = Cast(b, current[k], type, $"{prefix}/{what}_current");
            var next = b.Reserve(running + TrainingGraphInfo.NextSuffix);
            b.Graph.Node.Add(new NodeProto
            {
                OpType = "Add", Name = b.UniqueName($"{next}/Add"), Output = { next },
                Input = { b.Add("Mul", [running, m], $"{prefix}/{what}_kept"), b.Add("Mul", [batch, rest], $"{prefix}/{what}_new") },
            });
            var dims = types.GetValueOrDefault(running)?.Dims?.Select(d => d ?? -1) ?? [];
            graph.Output.Add(TypeProtos.ValueInfo(next, type, dims));
            // Consumers of the node's own running outputs read the spec-exact values computed here instead.
            if (node.Output.Count > 1 + k && node.Output[1 + k].Length > 0)
                b.Graph.Node.Add(new NodeProto { OpType = "Identity", Name = b.UniqueName($"{node.Output[1 + k]}/Identity"), Input = { next }, Output = { node.Output[1 + k] } });
            // After the autodiff the node reads the batch statistic (UseBatchStatistics); in inference, the running one.
            inference[batch] = running;
            result.Add(new BufferBinding(running, next));
        }
        // Until UseBatchStatistics, the node is in ONNX's training form, which the gradient rule differentiates.
        while (node.Output.Count < 3) node.Output.Add("");
        for (int k = 1; k < 3; k++) node.Output[k] = b.UniqueName($"{prefix}/unused_running_{(k == 1 ? "mean" : "var")}");
        foreach (var a in node.Attribute.Where(a => a.Name == "training_mode").ToList()) node.Attribute.Remove(a);
        node.Attribute.Add(GraphBuilder.Attr("training_mode", 1L));
        return result;
    }

    /// <summary>
    /// After the autodiff: each BatchNormalization node <see cref="Apply"/> put into training form becomes an
    /// inference-form node that reads the batch's mean and variance computed beside it. It computes the same Y, and
    /// ONNX Runtime's inference kernel runs on every execution provider and leaves the running statistics alone (its
    /// training kernel writes its running outputs into the buffers of inputs 3 and 4).
    /// </summary>
    public static void UseBatchStatistics(GraphProto graph, TrainingGraphInfo info)
    {
        var buffers = (info.Buffers ?? []).Select(x => x.Input).ToHashSet(StringComparer.Ordinal);
        var batch = (info.InferenceValues ?? new Dictionary<string, string>()).Where(p => buffers.Contains(p.Value)).ToDictionary(p => p.Value, p => p.Key, StringComparer.Ordinal);
        foreach (var node in graph.Node.Where(n => n.Domain is "" or "ai.onnx" && n.OpType == "BatchNormalization" && IntAttribute(n, "training_mode", 0) != 0))
        {
            for (int k = 3; k < 5; k++) node.Input[k] = batch[node.Input[k]];
            foreach (var a in node.Attribute.Where(a => a.Name == "training_mode").ToList()) node.Attribute.Remove(a);
            while (node.Output.Count > 1) node.Output.RemoveAt(node.Output.Count - 1);
        }
    }

    /// <summary>Whether a Dropout node is trained with random masks: a constant true training_mode, or the Train mode.</summary>
    private static bool DropoutTrains(GraphProto graph, NodeProto node, DropoutMode mode)
    {
        if (node.Input.Count > 2 && node.Input[2].Length > 0 && ConstantOf(graph, node.Input[2]) is { } t
            && t.DataType == (int)DataType.Bool && t.ToRawBytes().Any(v => v != 0))
            return true;
        return mode == DropoutMode.Train;
    }

    /// <summary>The tensor of a constant value (a plain initializer or a Constant node's value), or null.</summary>
    private static TensorProto? ConstantOf(GraphProto graph, string name)
    {
        if (!graph.Input.Any(i => i.Name == name) && graph.Initializer.FirstOrDefault(t => t.Name == name) is { } init) return init;
        return graph.Node.FirstOrDefault(n => n.OpType == "Constant" && n.Output.Contains(name))?.Attribute.FirstOrDefault(a => a.Name == "value")?.T;
    }

    /// <summary>Replaces the node by X·mask/(1 − ratio); returns its input (what its output is in inference).</summary>
    private static string Dropout(GraphBuilder b, IReadOnlyDictionary<string, TypeAndShape> types, NodeProto node, string step)
    {
        KnownAttributes(node, "seed");
        var graph = b.Graph;
        var x = node.Input[0];
        var y = node.Output[0];
        if (node.Output.Count > 1 && node.Output[1].Length > 0
            && (graph.Node.Any(n => n.Input.Contains(node.Output[1])) || graph.Output.Any(o => o.Name == node.Output[1])))
            throw Fail(node, $"its mask output '{node.Output[1]}' is used; only a Dropout whose mask is unused can be trained with random masks");
        if (node.Input.Count > 2 && node.Input[2].Length > 0 && ConstantOf(graph, node.Input[2]) is null)
            throw Fail(node, $"training_mode ('{node.Input[2]}') is not a constant");
        double ratio = 0.5;
        if (node.Input.Count > 1 && node.Input[1].Length > 0)
        {
            var t = ConstantOf(graph, node.Input[1]) ?? throw Fail(node, $"ratio ('{node.Input[1]}') is not a constant; random masks need a constant ratio");
            var values = t.ToDoubles();
            if (values.Length != 1) throw Fail(node, $"ratio ('{node.Input[1]}') has {values.Length} values; a scalar is expected");
            ratio = values[0];
        }
        if (!(ratio >= 0 && ratio < 1)) throw Fail(node, $"ratio={ratio} is outside [0, 1)");
        if (types.GetValueOrDefault(x) is not { IsFloat: true } xType) throw Fail(node, $"the input '{x}' is not a float tensor");

        var name = node.Name.Length > 0 ? node.Name : y;
        var prefix = $"{name}/training";
        var seed = node.Attribute.FirstOrDefault(a => a.Name == "seed") is { } s ? (long)s.F : 0L;
        var salt = Modulo((long)(Fnv1a(y) % (ulong)Prime) + seed);
        string Int(long v, string hint) => b.Initializer($"{prefix}/{hint}", Tensors.Create("", [v]));
        var p = Int(Prime, "prime");
        string Mod(string v) => b.Add("Mod", [v, p], $"{prefix}/mod");
        string Pow5(string v)
        {
            var square = Mod(b.Add("Mul", [v, v], $"{prefix}/square"));
            var fourth = Mod(b.Add("Mul", [square, square], $"{prefix}/fourth"));
            return Mod(b.Add("Mul", [fourth, v], $"{prefix}/fifth"));
        }
        // Round keys from the step and the salt, then three rounds h <- (h + key)^5 over the element indices.
        var key = Mod(b.Add("Add", [Mod(step), Int(salt, "salt")], $"{prefix}/salted_step"));
        var keys = new List<string>();
        foreach (var c in RoundKeys) keys.Add(key = Pow5(Mod(b.Add("Add", [key, Int(c, "round_constant")], $"{prefix}/key"))));
        var count = b.Add("Size", [x], $"{prefix}/size");
        var flat = b.Add("Range", [Int(0, "zero"), count, Int(1, "one")], $"{prefix}/index");
        var h = Mod(b.Add("Reshape", [flat, b.Add("Shape", [x], $"{prefix}/shape")], $"{prefix}/element_index"));
        foreach (var k in keys) h = Pow5(Mod(b.Add("Add", [h, k], $"{prefix}/keyed")));
        // Keep when h >= ceil(ratio·p): probability (p − threshold)/p, within 1/p of 1 − ratio.
        var keep = b.Add("GreaterOrEqual", [h, Int((long)Math.Ceiling(ratio * Prime), "threshold")], $"{prefix}/keep");
        // Cast rather than CastLike: the mask and scale must not read X, so that no gradient path runs through them.
        var scale = Cast(b, Constant(b, $"{prefix}/scale", Tensors.Create("", [1 / (1 - ratio)])), xType.ElementType, $"{prefix}/scale_as_input");
        var factor = b.Add("Mul", [Cast(b, keep, xType.ElementType, $"{prefix}/mask"), scale], $"{prefix}/factor");
        graph.Node.Remove(node);
        graph.Node.Add(new NodeProto { OpType = "Mul", Name = b.UniqueName($"{prefix}/Mul"), Input = { x, factor }, Output = { y } });
        return x;
    }

    private static long Modulo(long v) => ((v % Prime) + Prime) % Prime;

    private static ulong Fnv1a(string s)
    {
        ulong h = 14695981039346656037UL;
        foreach (var ch in s) { h ^= ch; h *= 1099511628211UL; }
        return h;
    }
}
