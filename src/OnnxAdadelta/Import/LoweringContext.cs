using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;
using OnnxAdadelta.Runtime;

namespace OnnxAdadelta.Import;

/// <summary>
/// What a lowering rule sees of one com.microsoft node: its inputs, outputs and attributes, the types ONNX Runtime
/// inferred for the values it could, and a way to emit standard ai.onnx nodes. A rule computes each output it supports
/// from standard ops and binds it with <see cref="SetOutput"/>; the original node is then removed.
/// </summary>
public sealed class LoweringContext : NodeRuleContext
{
    private readonly Dictionary<int, string> _outputs = [];
    private readonly Func<string, Runtime.TypeAndShape?>? _infer;

    internal LoweringContext(GraphBuilder builder, NodeProto node, IReadOnlyDictionary<string, Runtime.TypeAndShape> types, int opset,
        Func<string, Runtime.TypeAndShape?>? infer = null)
        : base(builder, node, opset, "_Lowered")
    {
        _infer = infer;
        Types = types;
    }

    /// <summary>
    /// Types ONNX Runtime could infer; values computed only by unlowered training ops are missing unless the model
    /// declares them (value_info or a graph output with a shape).
    /// </summary>
    public IReadOnlyDictionary<string, Runtime.TypeAndShape> Types { get; }

    internal IReadOnlyDictionary<int, string> Outputs => _outputs;

    /// <summary>Output <paramref name="i"/> ("" when absent).</summary>
    public string O(int i) => i < Node.Output.Count ? Node.Output[i] : "";

    /// <summary>Whether output <paramref name="i"/> is present (and so must be computed).</summary>
    public bool HasOutput(int i) => O(i).Length > 0;

    /// <summary>Binds output <paramref name="i"/> of the original node to <paramref name="value"/>.</summary>
    public void SetOutput(int i, string value)
    {
        if (HasOutput(i)) _outputs[i] = value;
    }

    /// <summary>The inferred type of a value, or null.</summary>
    /// <remarks>
    /// A value that only training ops computed is unknown at first; once those ops are lowered (the nodes before this
    /// one), ONNX Runtime is asked again, so gradients flowing into a later op have types too.
    /// </remarks>
    public Runtime.TypeAndShape? TypeOf(string value) => Types.GetValueOrDefault(value) ?? _infer?.Invoke(value);

    /// <summary>The rank of a value; fails naming it when unknown.</summary>
    public int Rank(string value) => TypeOf(value)?.Rank ?? throw Fail($"the rank of '{value}' is unknown");

    /// <summary>Refuses attributes other than <paramref name="known"/>, naming the first unknown one.</summary>
    public void OnlyAttributes(params string[] known)
    {
        foreach (var a in Node.Attribute)
            if (!known.Contains(a.Name)) throw Fail($"attribute '{a.Name}' is not supported (known: {string.Join(", ", known)})");
    }

    /// <summary>
    /// The dimensions of a value from <paramref name="skip"/> on (all of them: rank − skip values), which must be
    /// static; fails naming the value (<paramref name="what"/> describes it) when its shape is unknown or not static there.
    /// </summary>
    public long[] StaticDims(string value, string what, int skip = 0)
    {
        var dims = TypeOf(value)?.Dims ?? throw Fail($"the shape of {what} '{value}' is unknown (neither inferred nor declared in the model's value_info)");
        if (dims.Length < skip) throw Fail($"{what} '{value}' has rank {dims.Length}; at least {skip} was expected");
        if (dims.Skip(skip).Any(d => d is null))
            throw Fail($"{what} '{value}' has shape [{string.Join(",", dims.Select(d => d?.ToString() ?? "?"))}]; its dimensions from axis {skip} on must be static");
        return [.. dims.Skip(skip).Select(d => d!.Value)];
    }
    /// <summary>An error naming this node and its op.</summary>
    public override OnnxAdadeltaException Fail(string problem) =>
        new($"Cannot lower node '{Node.Name}' ({(Node.Domain.Length == 0 ? "ai.onnx" : Node.Domain)}.{Node.OpType}): {problem}.");
}

/// <summary>A lowering rule: computes the outputs of one com.microsoft node from standard ops.</summary>
public delegate void LoweringRule(LoweringContext c);

/// <summary>
/// The registry of com.microsoft op lowerings, keyed by op type; each family lives in its own file and registers
/// itself here.
/// </summary>
public static partial class LoweringRules
{
    private static readonly Dictionary<string, LoweringRule> Registry = Build();

    /// <summary>The rule of a com.microsoft op type, or null.</summary>
    public static LoweringRule? Find(string opType) => Registry.GetValueOrDefault(opType);

    /// <summary>Every com.microsoft op type that can be lowered.</summary>
    public static IEnumerable<string> Supported => Registry.Keys.Order(StringComparer.Ordinal);

    private static Dictionary<string, LoweringRule> Build()
    {
        var r = new Dictionary<string, LoweringRule>(StringComparer.Ordinal);
        RegisterConvPool(r);
        RegisterNormalization(r);
        RegisterSoftmaxLoss(r);
        RegisterDropoutGather(r);
        RegisterActivations(r);
        RegisterForwardContrib(r);
        return r;
    }

    private static void Add(Dictionary<string, LoweringRule> r, LoweringRule rule, params string[] ops)
    {
        foreach (var op in ops) r[op] = rule;
    }
}

/// <summary>Replaces every lowerable com.microsoft node of a graph by standard ops.</summary>
public static class Lowering
{
    /// <summary>The domain of ONNX Runtime's contrib and training ops.</summary>
    public const string MicrosoftDomain = "com.microsoft";

    /// <summary>
    /// Whether <paramref name="node"/> is a training op this class lowers: a com.microsoft op with a rule, or an op with a
    /// rule in the ai.onnx domain that is not a standard op of <paramref name="opset"/> (older onnxruntime-training
    /// registered some of its training ops, ConvGrad and the pool gradients among them, in the ONNX domain).
    /// </summary>
    public static bool IsLowered(NodeProto node, long opset) =>
        LoweringRules.Find(node.OpType) is not null
        && (node.Domain == MicrosoftDomain || (node.Domain is "" or "ai.onnx" && !OnnxOperators.IsStandard(node.OpType, opset)));

    /// <summary>
    /// The ops of a training model that neither are standard ops of its ai.onnx opset nor have a lowering (subgraphs
    /// included, where nothing is lowered), as "op ×count" sorted by op (com.microsoft ops by their bare type, others
    /// with their domain); empty when everything can be imported.
    /// </summary>
    public static List<string> Unsupported(ModelProto model)
    {
        long opset = model.OpsetImport.FirstOrDefault(o => o.Domain is "" or "ai.onnx")?.Version ?? 1;
        var found = new List<string>();
        void Visit(IEnumerable<NodeProto> nodes, bool main)
        {
            foreach (var n in nodes)
            {
                bool standard = n.Domain is "" or "ai.onnx" && OnnxOperators.IsStandard(n.OpType, opset);
                if (!standard && !(main && IsLowered(n, opset)))
                {
                    var name = n.Domain == MicrosoftDomain ? n.OpType : $"{(n.Domain.Length == 0 ? "ai.onnx" : n.Domain)}.{n.OpType}";
                    found.Add(main ? name : $"{name} (in a subgraph)");
                }
                foreach (var a in n.Attribute)
                {
                    if (a.G is not null) Visit(a.G.Node, false);
                    foreach (var g in a.Graphs) Visit(g.Node, false);
                }
            }
        }
        Visit(model.Graph.Node, true);
        return found.GroupBy(x => x).OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => $"{g.Key} ×{g.Count()}").ToList();
    }

    /// <summary>
    /// Lowers every training-op node of <paramref name="model"/> (<see cref="IsLowered"/>) in place, in topological
    /// order. Ops that are neither standard ops of the model's opset nor lowerable are all collected first: the error
    /// lists every one with its count, so the whole gap is known at once.
    /// </summary>
    public static void Apply(ModelProto model)
    {
        var graph = model.Graph;
        var unsupported = Unsupported(model);
        if (unsupported.Count > 0)
            throw new OnnxAdadeltaException($"Unsupported ops in the training model: {string.Join(", ", unsupported)}. " +
                $"Ops that can be lowered (com.microsoft, or ai.onnx where the opset has no such op): {string.Join(", ", LoweringRules.Supported)}.");
        long modelOpset = model.OpsetImport.FirstOrDefault(o => o.Domain is "" or "ai.onnx")?.Version ?? 1;
        bool Lowered(NodeProto n) => IsLowered(n, modelOpset);
        if (!graph.Node.Any(Lowered)) return;

        Graphs.Opsets.RaiseForRewrite(model);
        int opset = (int)model.OpsetImport.Single(o => o.Domain is "" or "ai.onnx").Version;
        GraphPasses.TopologicalSort(graph);
        var types = InferableTypes(model, Lowered);
        var builder = new GraphBuilder(graph);
        var original = graph.Node.ToList();
        graph.Node.Clear();
        int refreshedAt = -1;
        for (int k = 0; k < original.Count; k++)
        {
            var node = original[k];
            if (!Lowered(node)) { graph.Node.Add(node); continue; }
            int position = k;
            Runtime.TypeAndShape? Infer(string value)
            {
                // Re-infer at most once per lowered node, on the lowered prefix plus the nodes still to lower.
                if (refreshedAt != position)
                {
                    refreshedAt = position;
                    var probe = model.DeepCopy();
                    probe.Graph.Node.Clear();
                    probe.Graph.Node.AddRange(graph.Node.Concat(original.Skip(position)).Select(n => n.Clone()));
                    types = InferableTypes(probe, Lowered);
                }
                return types.GetValueOrDefault(value);
            }
            var ctx = new LoweringContext(builder, node, types, opset, Infer);
            LoweringRules.Find(node.OpType)!(ctx);
            for (int i = 0; i < node.Output.Count; i++)
            {
                if (node.Output[i].Length == 0) continue;
                if (!ctx.Outputs.TryGetValue(i, out var value))
                    throw ctx.Fail($"output {i} ('{node.Output[i]}') is used but the lowering does not compute it");
                graph.Node.Add(new NodeProto { OpType = "Identity", Name = builder.UniqueName($"{ctx.Prefix}/output_{i}"), Input = { value }, Output = { node.Output[i] } });
            }
        }
        var remaining = model.OpsetImport.Where(o => o.Domain == MicrosoftDomain).ToList();
        foreach (var o in remaining) model.OpsetImport.Remove(o);
        GraphPasses.TopologicalSort(graph);
    }

    /// <summary>
    /// Types ONNX Runtime infers for the part of the graph it can load: training-only ops (which stock ORT has no
    /// kernels for) are cut out, and the values they compute are left unknown.
    /// </summary>
    private static IReadOnlyDictionary<string, Runtime.TypeAndShape> InferableTypes(ModelProto model, Func<NodeProto, bool> lowered)
    {
        var probe = model.DeepCopy();
        var g = probe.Graph;
        var cut = new HashSet<string>(StringComparer.Ordinal);
        var kept = new List<NodeProto>();
        foreach (var node in g.Node)
        {
            bool training = lowered(node) && !(node.Domain == MicrosoftDomain && OrtInferenceContribOps.Contains(node.OpType));
            if (training || node.Input.Any(cut.Contains)) { foreach (var o in node.Output) cut.Add(o); continue; }
            kept.Add(node);
        }
        g.Node.Clear();
        g.Node.AddRange(kept);
        var outputs = g.Output.Where(o => !cut.Contains(o.Name)).ToList();
        g.Output.Clear();
        g.Output.AddRange(outputs);
        Dictionary<string, Runtime.TypeAndShape> types;
        try { types = new(ShapeInference.Infer(probe), StringComparer.Ordinal); }
        catch (OnnxAdadeltaException) { types = new(StringComparer.Ordinal); }
        // Declared types fill the gaps: graph inputs and initializers (known even when nothing inferable is left for
        // ORT to load), and values only training ops compute, which ORT cannot infer but the model may declare in its
        // value_info or outputs (ONNX Runtime's own pool gradient kernels read their output shape from there).
        foreach (var info in model.Graph.Input.Concat(model.Graph.ValueInfo).Concat(model.Graph.Output))
            if (info.Type?.TensorType is { Shape: not null } && !types.ContainsKey(info.Name))
                types[info.Name] = new Runtime.TypeAndShape(info.Type.ElementType(), [.. info.Type.Dims()!.Select(d => d as long?)]);
        foreach (var t in model.Graph.Initializer)
            types.TryAdd(t.Name, new Runtime.TypeAndShape((TensorProto.Types.DataType)t.DataType, [.. t.Dims.Select(d => (long?)d)]));
        return types;
    }

    /// <summary>com.microsoft ops that the stock (inference) ONNX Runtime build has CPU kernels for.</summary>
    private static readonly HashSet<string> OrtInferenceContribOps = new(StringComparer.Ordinal)
    {
        "FusedMatMul", "Gelu", "FastGelu", "BiasGelu", "SkipLayerNormalization", "SimplifiedLayerNormalization", "LayerNormalization",
    };
}
