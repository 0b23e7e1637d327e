using Onnx;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using DataType = Onnx.TensorProto.Types.DataType;

namespace OnnxAdadelta.Gradients;

/// <summary>The loss that <see cref="GradientGraphBuilder"/> appends to an inference model.</summary>
public enum LossKind
{
    /// <summary>SoftmaxCrossEntropyLoss (mean) between the output logits and an int64 label input.</summary>
    CrossEntropy,

    /// <summary>Mean squared error against a float target input of the output's shape.</summary>
    Mse,

    /// <summary>The named output is already a scalar loss.</summary>
    Output,
}

/// <summary>What <see cref="GradientGraphBuilder.Build"/> differentiates, and with respect to what.</summary>
public sealed record BuildTrainingOptions
{
    /// <summary>The loss to append.</summary>
    public required LossKind Loss { get; init; }

    /// <summary>The model output the loss reads (or that is the loss).</summary>
    public required string Output { get; init; }

    /// <summary>The label/target input; default <c>labels</c> for cross-entropy and <c>target</c> for mse.</summary>
    public string? Target { get; init; }

    /// <summary>Parameters to leave untrained.</summary>
    public IReadOnlyList<string> Freeze { get; init; } = [];

    /// <summary>If not empty, only these parameters are trained (graph inputs without values included).</summary>
    public IReadOnlyList<string> Trainable { get; init; } = [];
}

/// <summary>
/// Reverse-mode autodiff in standard ONNX ops: from an inference model plus a loss to a training graph (loss output
/// first, one <c>&lt;param&gt;_grad</c> output per trainable parameter) that <see cref="AdadeltaRewrite"/> consumes.
/// </summary>
/// <remarks>
/// The driver seeds the loss gradient with ones, prunes nodes that do not lie between a trainable parameter and the
/// loss, stops at integer values and at ops without a gradient, asks each node's rule (<see cref="GradientRules"/>) for
/// its input gradients, sums the gradients of values with several consumers, and emits the backward nodes in order.
/// </remarks>
public static class GradientGraphBuilder
{
    /// <summary>The name of the appended loss output.</summary>
    public const string LossName = "loss";

    /// <summary>Builds the training graph; <paramref name="inference"/> is left unchanged.</summary>
    /// <exception cref="OnnxAdadeltaException">Bad options or an op without a rule; the message names the culprit.</exception>
    public static ModelProto Build(ModelProto inference, BuildTrainingOptions options)
    {
        var model = inference.Clone();
        var graph = model.Graph;
        Opsets.RaiseForRewrite(model);
        GraphPasses.TopologicalSort(graph);
        if (!graph.Output.Any(o => o.Name == options.Output))
            throw new OnnxAdadeltaException($"--output {options.Output}: the model has no output '{options.Output}'; outputs: {string.Join(", ", graph.Output.Select(o => o.Name))}.");
        var originalOutputs = graph.Output.Select(o => o.Clone()).ToList();
        var builder = new GraphBuilder(graph);
        var loss = AppendLoss(model, builder, options);
        var types = ShapeInference.Infer(model);
        var lossType = types.GetValueOrDefault(loss);
        if (lossType is { Dims: { } lossDims } && lossDims.Any(d => d != 1))
            throw new OnnxAdadeltaException($"The loss '{loss}' has shape [{string.Join(",", lossDims.Select(d => d?.ToString() ?? "?"))}]; a scalar is expected (use --loss cross-entropy or mse, or output a scalar).");
        if (lossType is not null && !lossType.IsFloat)
            throw new OnnxAdadeltaException($"The loss '{loss}' is {lossType.ElementType}; a float scalar is expected.");

        var index = new GraphIndex(graph);
        var reaches = ValuesReachingLoss(graph, types, loss);
        if (options.Trainable.Count == 0 && !graph.Initializer.Any(t => reaches.Contains(t.Name) && types.GetValueOrDefault(t.Name)?.IsFloat == true))
            throw new OnnxAdadeltaException($"No trainable parameter has a differentiable path to the loss '{loss}' (float initializers, or inputs named with --trainable){PathBlockers(graph, types, loss, reaches)}.");
        var parameters = ChooseParameters(graph, index, types, reaches, options, loss);

        var one = builder.Add("CastLike", [builder.Initializer($"{loss}_grad/one", Tensors.Create("", new[] { 1.0 })), loss], $"{loss}_grad/one_like");
        var seed = builder.Add("Expand", [one, builder.Add("Shape", [loss], $"{loss}_grad/shape")], $"{loss}_grad");
        var pass = new ReversePass(builder, model, types, () => ShapeInference.Infer(model));
        var gradients = pass.Run([(loss, seed)], parameters);
        types = pass.Types;

        graph.Output.Clear();
        graph.Output.Add(TypeProtos.ValueInfo(loss, lossType?.ElementType ?? DataType.Float, []));
        graph.Output.AddRange(originalOutputs.Where(o => o.Name != loss));
        var inputs = graph.Input.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var p in parameters)
        {
            var g = gradients[p] ?? throw new OnnxAdadeltaException($"Parameter '{p}' receives no gradient from the loss '{loss}'.");
            var name = builder.Reserve(p + TrainingGraph.GradientSuffix);
            graph.Node.Add(new NodeProto { OpType = "Identity", Name = builder.UniqueName($"{name}/Identity"), Input = { g }, Output = { name } });
            var t = types[p];
            graph.Output.Add(new ValueInfoProto { Name = name, Type = TypeProtos.Tensor(t.ElementType, t.Dims!.Select(d => d ?? -1)) });
            if (!inputs.Contains(p)) graph.Input.Add(TypeProtos.ValueInfo(p, t.ElementType, t.Dims!.Select(d => d ?? -1)));
        }
        FixUnknownDims(graph);
        GraphPasses.RemoveDeadCode(graph);
        GraphPasses.TopologicalSort(graph);
        return model;
    }

    private static string AppendLoss(ModelProto model, GraphBuilder b, BuildTrainingOptions o)
    {
        var graph = model.Graph;
        var output = graph.Output.Single(x => x.Name == o.Output);
        if (o.Loss == LossKind.Output) return o.Output;
        var target = o.Target ?? (o.Loss == LossKind.CrossEntropy ? "labels" : "target");
        var existing = graph.Input.FirstOrDefault(i => i.Name == target);
        var outType = output.Type?.TensorType ?? throw new OnnxAdadeltaException($"Output '{o.Output}' has no tensor type.");
        if (o.Loss == LossKind.CrossEntropy)
        {
            if (existing is null)
            {
                if (b.IsTaken(target)) throw new OnnxAdadeltaException($"--target {target}: the name is already used by a value that is not a graph input.");
                var dims = outType.Shape?.Dim.Where((_, k) => k != 1).ToList();
                var info = new ValueInfoProto { Name = b.Reserve(target), Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)DataType.Int64, Shape = dims is null ? null : new TensorShapeProto { Dim = { dims.Select(d => d.Clone()) } } } } };
                graph.Input.Add(info);
            }
            else if (existing.Type.ElementType() is not (DataType.Int64 or DataType.Int32))
                throw new OnnxAdadeltaException($"--target {target}: the input is {existing.Type.Describe()}; cross-entropy needs integer class labels.");
            return b.Add("SoftmaxCrossEntropyLoss", [o.Output, target], LossName, GraphBuilder.Attr("reduction", "mean"));
        }
        if (existing is null)
        {
            if (b.IsTaken(target)) throw new OnnxAdadeltaException($"--target {target}: the name is already used by a value that is not a graph input.");
            graph.Input.Add(new ValueInfoProto { Name = b.Reserve(target), Type = output.Type.Clone() });
        }
        else if (existing.Type.ElementType() != (DataType)outType.ElemType)
            throw new OnnxAdadeltaException($"--target {target}: the input is {existing.Type.Describe()}, the output '{o.Output}' is {output.Type.Describe()}.");
        var diff = b.Add("Sub", [o.Output, target], $"{LossName}/diff");
        return b.Add("ReduceMean", [b.Add("Mul", [diff, diff], $"{LossName}/squared")], LossName, GraphBuilder.Attr("keepdims", 0L));
    }

    /// <summary>
    /// Values from which a float gradient path leads to the loss. Outer-scope values that subgraphs (If, Loop, Scan
    /// bodies) read count as inputs of the node that holds the subgraph.
    /// </summary>
    private static HashSet<string> ValuesReachingLoss(GraphProto graph, IReadOnlyDictionary<string, ValueType> types, string loss)
    {
        var reaches = new HashSet<string>(StringComparer.Ordinal) { loss };
        foreach (var node in graph.Node.Reverse())
        {
            if (!node.Output.Any(o => reaches.Contains(o) && types.GetValueOrDefault(o)?.IsFloat != false)) continue;
            var info = ReversePass.RuleFor(node);
            int i = 0;
            foreach (var input in ReversePass.AllInputs(node))
            {
                bool passes = info is null || (i < node.Input.Count ? info.IsDifferentiable(i) : info.HasGradient);
                if (input.Length > 0 && types.GetValueOrDefault(input)?.IsFloat != false && passes) reaches.Add(input);
                i++;
            }
        }
        return reaches;
    }

    /// <summary>
    /// Why no float initializer reaches the loss: the nodes where a path from one to the loss stops (an op without a
    /// gradient, an input it does not differentiate, or an integer value), as a sentence tail, or "" when no path exists at all.
    /// </summary>
    private static string PathBlockers(GraphProto graph, IReadOnlyDictionary<string, ValueType> types, string loss, HashSet<string> reaches)
    {
        var depends = graph.Initializer.Where(t => types.GetValueOrDefault(t.Name)?.IsFloat == true).Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var node in graph.Node)
            if (ReversePass.AllInputs(node).Any(depends.Contains))
                foreach (var o in node.Output) if (o.Length > 0) depends.Add(o);
        var leads = new HashSet<string>(StringComparer.Ordinal) { loss };
        foreach (var node in graph.Node.Reverse())
            if (node.Output.Any(leads.Contains))
                foreach (var i in ReversePass.AllInputs(node)) leads.Add(i);
        var blockers = new List<string>();
        foreach (var node in graph.Node)
        {
            if (!ReversePass.AllInputs(node).Any(depends.Contains) || !node.Output.Any(leads.Contains)) continue;
            if (ReversePass.AllInputs(node).Any(i => depends.Contains(i) && reaches.Contains(i))) continue;
            var info = ReversePass.RuleFor(node);
            var integer = node.Output.Where(leads.Contains).Select(o => (o, t: types.GetValueOrDefault(o))).FirstOrDefault(p => p.t is { IsFloat: false });
            var why = integer.o is not null ? $"its output '{integer.o}' is {integer.t!.ElementType.ToString().ToLowerInvariant()}"
                : info is { HasGradient: false } ? "the op has no gradient"
                : "its float inputs are not differentiable";
            blockers.Add($"{node.OpType} (node '{node.Name}': {why})");
        }
        return blockers.Count == 0 ? "; nothing connects a float initializer to the loss"
            : $"; paths stop at {string.Join(", ", blockers.Take(6))}{(blockers.Count > 6 ? $" and {blockers.Count - 6} more" : "")}";
    }

    private static List<string> ChooseParameters(GraphProto graph, GraphIndex index, IReadOnlyDictionary<string, ValueType> types,
        HashSet<string> reaches, BuildTrainingOptions o, string loss)
    {
        foreach (var name in o.Trainable.Concat(o.Freeze))
            if (!index.Initializers.ContainsKey(name) && !index.Inputs.ContainsKey(name))
                throw new OnnxAdadeltaException($"Parameter '{name}' (named by {(o.Trainable.Contains(name) ? "--trainable" : "--freeze")}) is neither an initializer nor an input of the model.");
        List<string> chosen;
        if (o.Trainable.Count > 0)
        {
            foreach (var name in o.Trainable)
            {
                if (types.GetValueOrDefault(name)?.IsFloat != true)
                    throw new OnnxAdadeltaException($"--trainable {name}: the value is {types.GetValueOrDefault(name)?.ElementType.ToString() ?? "of unknown type"}; only float parameters are trainable.");
                if (!reaches.Contains(name))
                    throw new OnnxAdadeltaException($"--trainable {name}: no differentiable path leads from '{name}' to the loss '{loss}'.");
            }
            chosen = [.. o.Trainable];
        }
        else
        {
            chosen = graph.Initializer.Where(t => reaches.Contains(t.Name) && types.GetValueOrDefault(t.Name)?.IsFloat == true).Select(t => t.Name).ToList();
        }
        chosen = chosen.Except(o.Freeze).Distinct().ToList();
        if (chosen.Count == 0)
            throw new OnnxAdadeltaException($"No trainable parameter has a differentiable path to the loss '{loss}' (float initializers, or inputs named with --trainable).");
        return chosen;
    }

    // Dimensions written as -1 above stand for "unknown": clear them.
    private static void FixUnknownDims(GraphProto graph)
    {
        foreach (var v in graph.Input.Concat(graph.Output))
            if (v.Type?.TensorType?.Shape is { } shape)
                foreach (var d in shape.Dim)
                    if (d.ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue && d.DimValue < 0) d.ClearValue();
    }
}
