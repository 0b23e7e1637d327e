using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;
using OnnxAdadelta.Runtime;

namespace OnnxAdadelta.Gradients;

/// <summary>
/// The core of the autodiff, for one graph (the main graph or a subgraph being differentiated): from seed gradients
/// at some values to the gradients of a set of values, by the rules of <see cref="GradientRules"/>.
/// </summary>
/// <remarks>
/// The forward nodes are the graph's nodes when <see cref="Run"/> starts. Ops differentiated by a decomposition get
/// their recompute first (rounds until no relevant node is left to decompose, re-inferring types after each round);
/// the recompute takes the forward node's place in the backward order, the gradient of each forward output going to
/// its recomputed value. Outer-scope values that a node's subgraphs read count as its inputs everywhere.
/// </remarks>
internal sealed class ReversePass
{
    private readonly GraphBuilder _b;
    private readonly int _opset;
    private readonly ModelProto _template;
    private readonly Func<IReadOnlyDictionary<string, TypeAndShape>> _infer;
    private readonly Func<string, TensorProto?> _outerConstants;

    /// <summary>A pass over <paramref name="builder"/>'s graph.</summary>
    /// <param name="builder">Where backward nodes go (the graph being differentiated).</param>
    /// <param name="template">The model (its opset imports, IR version and functions serve probe models of subgraphs).</param>
    /// <param name="types">Types of every value visible in the graph (outer scopes included).</param>
    /// <param name="infer">Re-infers <paramref name="types"/> after decompositions added nodes.</param>
    /// <param name="outerConstants">Constant tensors of enclosing graphs.</param>
    public ReversePass(GraphBuilder builder, ModelProto template, IReadOnlyDictionary<string, TypeAndShape> types,
        Func<IReadOnlyDictionary<string, TypeAndShape>> infer, Func<string, TensorProto?>? outerConstants = null)
    {
        _b = builder;
        _template = template;
        _opset = (int)template.OpsetImport.Single(o => o.Domain is "" or "ai.onnx").Version;
        Types = types;
        _infer = infer;
        _outerConstants = outerConstants ?? (_ => null);
    }

    /// <summary>Types of the values visible in the graph, updated after decompositions.</summary>
    public IReadOnlyDictionary<string, TypeAndShape> Types { get; private set; }

    /// <summary>The graph differentiated.</summary>
    public GraphBuilder Builder => _b;

    /// <summary>The model the graph belongs to.</summary>
    public ModelProto Template => _template;

    /// <summary>Constant int values visible in the graph.</summary>
    public Func<string, long[]?> Constants { get; private set; } = _ => null;

    /// <summary>Constant tensors (initializers and Constant nodes) visible in the graph.</summary>
    public Func<string, TensorProto?> ConstantTensors { get; private set; } = _ => null;

    /// <summary>One step of the backward order: a forward node, or the point where a decomposed node's output gradients move to its recompute.</summary>
    private abstract record Step;

    private sealed record NodeStep(NodeProto Node) : Step;

    private sealed record AliasStep(NodeProto Node, IReadOnlyList<(string Output, string Recompute)> Pairs) : Step;

    /// <summary>
    /// Differentiates: <paramref name="seeds"/> (value, gradient) pairs start the backward pass; returns the gradient
    /// of each value of <paramref name="wrt"/>, or null where none reaches it.
    /// </summary>
    public Dictionary<string, string?> Run(IReadOnlyList<(string Value, string Gradient)> seeds, IReadOnlyCollection<string> wrt)
    {
        var steps = _b.Graph.Node.Select(n => (Step)new NodeStep(n)).ToList();
        UpdateConstants();
        var seedValues = seeds.Select(s => s.Value).ToHashSet(StringComparer.Ordinal);
        HashSet<string> reaches, required;
        Dictionary<string, string> origin;
        while (true)
        {
            reaches = Reaching(steps, seedValues);
            (required, origin) = Requiring(steps, wrt);
            var pending = steps.Select((s, k) => (s, k)).Where(p => p.s is NodeStep { Node: var n } && RuleFor(n) is { Rule: null, Decompose: not null }
                && Relevant(n, required, reaches)).ToList();
            if (pending.Count == 0) break;
            foreach (var (step, k) in pending.AsEnumerable().Reverse())
            {
                var node = ((NodeStep)step).Node;
                int start = _b.Graph.Node.Count;
                var ctx = new DecompositionContext(_b, node, _opset, Types, Constants);
                RuleFor(node)!.Decompose!(ctx);
                var pairs = new List<(string, string)>();
                for (int o = 0; o < node.Output.Count; o++)
                {
                    var output = node.Output[o];
                    if (output.Length == 0) continue;
                    if (ctx.Outputs.TryGetValue(o, out var value)) pairs.Add((output, value));
                    else if (reaches.Contains(output) && Types.GetValueOrDefault(output)?.IsFloat != false)
                        throw ctx.Fail($"output '{output}' needs a gradient, but the decomposition does not recompute it");
                }
                var emitted = _b.Graph.Node.Skip(start).Select(n => (Step)new NodeStep(n)).ToList();
                emitted.Add(new AliasStep(node, pairs));
                steps.RemoveAt(k);
                steps.InsertRange(k, emitted);
            }
            Types = _infer();
            UpdateConstants();
        }

        var contributions = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        var summed = new Dictionary<string, string>(StringComparer.Ordinal);
        void Contribute(string value, string gradient)
        {
            if (summed.ContainsKey(value)) throw new OnnxAdadeltaException($"Internal error: a gradient of '{value}' arrived after it was summed.");
            if (!contributions.TryGetValue(value, out var list)) contributions[value] = list = [];
            list.Add(gradient);
        }
        string? GradientOf(string value)
        {
            if (summed.TryGetValue(value, out var s)) return s;
            if (!contributions.TryGetValue(value, out var list) || list.Count == 0) return null;
            return summed[value] = list.Count == 1 ? list[0] : _b.Add("Sum", list, $"{value}_grad_sum");
        }
        foreach (var (value, gradient) in seeds) Contribute(value, gradient);

        for (int s = steps.Count - 1; s >= 0; s--)
        {
            if (steps[s] is AliasStep alias)
            {
                foreach (var (output, recompute) in alias.Pairs)
                    if (GradientOf(output) is { } g) Contribute(recompute, g);
                continue;
            }
            var node = ((NodeStep)steps[s]).Node;
            if (!Relevant(node, required, reaches)) continue;
            var info = RuleFor(node);
            if (info?.Rule is null)
            {
                if (info is not null) continue; // no gradient (or a decomposition that left nothing relevant)
                var param = AllInputs(node).Where(required.Contains).Select(i => origin[i]).First();
                throw new OnnxAdadeltaException($"Op '{(node.Domain.Length > 0 ? node.Domain + "." : "")}{node.OpType}' (node '{node.Name}') has no gradient rule, and parameter '{param}' needs one through it; supported ops: see 'onnx-adadelta build-training --help' or the README.");
            }
            if (node.Output.All(o => GradientOf(o) is null)) continue;
            var ctx = new GradientContext(_b, node, _opset, Types, GradientOf,
                i => required.Contains(node.Input[i]) && info.IsDifferentiable(i) && Types.GetValueOrDefault(node.Input[i])?.IsFloat == true)
            {
                ConstantValues = Constants,
                ConstantTensorOf = ConstantTensors,
                Pass = this,
                OuterRequired = v => required.Contains(v) && Types.GetValueOrDefault(v)?.IsFloat == true,
            };
            info.Rule(ctx);
            foreach (var (i, g) in ctx.InputGradients) Contribute(node.Input[i], g);
            foreach (var (v, g) in ctx.OuterInputGradients) Contribute(v, g);
        }
        return wrt.Distinct().ToDictionary(w => w, GradientOf, StringComparer.Ordinal);
    }

    /// <summary>The rule of a node's op: ai.onnx ops only (a custom-domain op with a standard name has none).</summary>
    internal static GradientRuleInfo? RuleFor(NodeProto node) =>
        node.Domain is "" or "ai.onnx" ? GradientRules.Find(node.OpType) : null;

    /// <summary>A node's inputs followed by the outer-scope values its subgraphs read.</summary>
    internal static IEnumerable<string> AllInputs(NodeProto node) => node.Input.Concat(GraphPasses.OuterScopeInputs(node));

    private static bool Relevant(NodeProto node, HashSet<string> required, HashSet<string> reaches) =>
        AllInputs(node).Any(required.Contains) && node.Output.Any(reaches.Contains);

    /// <summary>
    /// Whether a gradient can pass from the node's outputs into its input <paramref name="i"/> (an index into
    /// <see cref="AllInputs"/>: past the listed inputs come outer-scope reads, differentiable whenever the op has a
    /// gradient). An op unknown to the autodiff passes, so that the error can name it.
    /// </summary>
    internal static bool Passes(GradientRuleInfo? info, NodeProto node, int i) =>
        info is null || (i < node.Input.Count ? info.IsDifferentiable(i) : info.HasGradient);

    /// <summary>Values from which a float gradient path leads to a seed.</summary>
    private HashSet<string> Reaching(List<Step> steps, IEnumerable<string> seeds)
    {
        var reaches = new HashSet<string>(seeds, StringComparer.Ordinal);
        for (int s = steps.Count - 1; s >= 0; s--)
        {
            if (steps[s] is AliasStep alias)
            {
                foreach (var (o, r) in alias.Pairs) if (reaches.Contains(o)) reaches.Add(r);
                continue;
            }
            var node = ((NodeStep)steps[s]).Node;
            if (!node.Output.Any(o => reaches.Contains(o) && Types.GetValueOrDefault(o)?.IsFloat != false)) continue;
            var info = RuleFor(node);
            int k = 0;
            foreach (var input in AllInputs(node))
            {
                if (input.Length > 0 && Types.GetValueOrDefault(input)?.IsFloat != false && Passes(info, node, k)) reaches.Add(input);
                k++;
            }
        }
        return reaches;
    }

    /// <summary>Values that depend differentiably on <paramref name="wrt"/>, each with the value of <paramref name="wrt"/> it comes from.</summary>
    private (HashSet<string> Required, Dictionary<string, string> Origin) Requiring(List<Step> steps, IEnumerable<string> wrt)
    {
        var required = new HashSet<string>(wrt, StringComparer.Ordinal);
        var origin = required.ToDictionary(p => p, p => p, StringComparer.Ordinal);
        foreach (var step in steps)
        {
            if (step is AliasStep alias)
            {
                foreach (var (o, r) in alias.Pairs)
                    if (required.Contains(r) && required.Add(o)) origin[o] = origin[r];
                continue;
            }
            var node = ((NodeStep)step).Node;
            var info = RuleFor(node);
            var source = AllInputs(node).Select((v, k) => (v, k)).FirstOrDefault(p => required.Contains(p.v) && Passes(info, node, p.k)).v;
            if (source is null) continue;
            foreach (var o in node.Output)
                if (o.Length > 0 && Types.GetValueOrDefault(o)?.IsFloat != false && required.Add(o)) origin[o] = origin[source];
        }
        return (required, origin);
    }

    /// <summary>
    /// Reads the constants of the graph: tensors of initializers and Constant nodes, then of the enclosing graphs (an
    /// initializer that is also a graph input is only a default the caller may override, so it is not a constant), and
    /// their int64 (and bool, as 0/1) values.
    /// </summary>
    private void UpdateConstants()
    {
        var graph = _b.Graph;
        var overridable = graph.Input.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        var inits = graph.Initializer.Where(t => !overridable.Contains(t.Name)).GroupBy(t => t.Name).ToDictionary(t => t.Key, t => t.First(), StringComparer.Ordinal);
        var constants = graph.Node.Where(n => n.OpType == "Constant" && n.Attribute.Any(a => a.Name == "value"))
            .ToDictionary(n => n.Output[0], n => n.Attribute.First(a => a.Name == "value").T, StringComparer.Ordinal);
        var outer = _outerConstants;
        ConstantTensors = name => inits.GetValueOrDefault(name) ?? constants.GetValueOrDefault(name) ?? (overridable.Contains(name) ? null : outer(name));
        var tensors = ConstantTensors;
        Constants = name => tensors(name) switch
        {
            { DataType: (int)DataType.Int64 } t => t.ToInt64Array(),
            { DataType: (int)DataType.Bool } t => t.ToArray<bool>().Select(b => b ? 1L : 0L).ToArray(),
            _ => null,
        };
    }

    /// <summary>
    /// Differentiates a subgraph of <paramref name="owner"/> (an If branch) inside a new graph: its nodes are copied
    /// under fresh names, then differentiated from <paramref name="outputGradients"/> (the gradient arriving at each
    /// subgraph output, values of this pass's graph, or null) with respect to the outer-scope values
    /// <paramref name="wrt"/>. The new graph outputs one gradient per value of <paramref name="wrt"/>, zeros where none
    /// reaches it, each of that value's type.
    /// </summary>
    public GraphProto DifferentiateSubgraph(NodeRuleContext owner, GraphProto body, IReadOnlyList<string?> outputGradients,
        IReadOnlyList<string> wrt, string tag)
    {
        var prefix = $"{owner.Prefix}/{tag}";
        var g = new GraphProto { Name = _b.UniqueName(prefix) };
        var sb = new GraphBuilder(g, _b);
        var map = SubgraphCopy.Inline(sb, body, new Dictionary<string, string>(), prefix);
        var seeds = new List<(string, string)>();
        for (int j = 0; j < body.Output.Count && j < outputGradients.Count; j++)
            if (outputGradients[j] is { } go) seeds.Add((map.GetValueOrDefault(body.Output[j].Name, body.Output[j].Name), go));

        ModelProto ProbeModel()
        {
            var probe = new ModelProto { IrVersion = _template.IrVersion, Graph = new GraphProto { Name = g.Name } };
            probe.OpsetImport.AddRange(_template.OpsetImport.Select(o => o.Clone()));
            probe.Functions.AddRange(_template.Functions.Select(f => f.Clone()));
            probe.Graph.Node.AddRange(g.Node.Select(n => n.Clone()));
            probe.Graph.Initializer.AddRange(g.Initializer.Select(t => t.Clone()));
            var host = new NodeProto { Attribute = { new AttributeProto { Name = "g", Type = AttributeProto.Types.AttributeType.Graph, G = probe.Graph } } };
            foreach (var outer in GraphPasses.OuterScopeInputs(host).Distinct())
            {
                var t = Types.GetValueOrDefault(outer) ?? throw owner.Fail($"the type of outer-scope value '{outer}' is unknown (shape inference found none)");
                probe.Graph.Input.Add(ValueInfoOf(outer, t));
            }
            return probe;
        }

        IReadOnlyDictionary<string, TypeAndShape> Probe()
        {
            var merged = new Dictionary<string, TypeAndShape>(Types, StringComparer.Ordinal);
            if (g.Node.Count > 0)
                foreach (var (k, v) in ShapeInference.Infer(ProbeModel())) merged[k] = v;
            return merged;
        }

        // Ifs inside the branch whose condition the outer types settle (rank and static-size guards) take their branch.
        if (g.Node.Any(n => n.OpType == "If") && ProbeModel() is var folding && StaticIfFolding.Fold(folding) > 0)
        {
            g.Node.Clear();
            g.Node.AddRange(folding.Graph.Node);
            g.Initializer.Clear();
            g.Initializer.AddRange(folding.Graph.Initializer);
            sb = new GraphBuilder(g, _b);
        }

        var sub = new ReversePass(sb, _template, Probe(), Probe, ConstantTensors);
        var grads = sub.Run(seeds, wrt);
        foreach (var w in wrt)
        {
            var grad = grads[w] ?? sb.Add("CastLike", [sb.Add("ConstantOfShape", [sb.Add("Shape", [w], $"{prefix}/{w}_shape")], $"{prefix}/{w}_zeros"), w], $"{prefix}/{w}_zeros_like");
            var name = sb.Add("Identity", [grad], $"{prefix}/{w}_grad");
            g.Output.Add(ValueInfoOf(name, Types.GetValueOrDefault(w) ?? throw owner.Fail($"the type of outer-scope value '{w}' is unknown")));
        }
        GraphPasses.RemoveDeadCode(g);
        return g;
    }

    /// <summary>A value info of a tensor type: sizes where known, symbols where shape inference gave one, else unknown dimensions.</summary>
    internal static ValueInfoProto ValueInfoOf(string name, TypeAndShape t)
    {
        var tensor = new TypeProto.Types.Tensor { ElemType = (int)t.ElementType };
        if (t.Dims is { } dims)
        {
            tensor.Shape = new TensorShapeProto();
            for (int a = 0; a < dims.Length; a++)
            {
                var d = new TensorShapeProto.Types.Dimension();
                if (dims[a] is { } size) d.DimValue = size;
                else if (t.Symbol(a) is { } sym) d.DimParam = sym;
                tensor.Shape.Dim.Add(d);
            }
        }
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = tensor } };
    }
}
