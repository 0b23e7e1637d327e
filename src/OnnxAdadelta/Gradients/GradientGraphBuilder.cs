using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;
using OnnxAdadelta.Runtime;

namespace OnnxAdadelta.Gradients;

/// <summary>The loss that <see cref="GradientGraphBuilder"/> appends to an inference model.</summary>
public enum LossKind
{
    /// <summary>SoftmaxCrossEntropyLoss (mean) between the output logits and an int64 label input.</summary>
    CrossEntropy,

    /// <summary>Mean squared error against a float target input of the output's shape.</summary>
    Mse,

    /// <summary>Negative log-likelihood of integer labels under the output's class probabilities (mean).</summary>
    Nll,

    /// <summary>Binary cross-entropy (mean) against a float target of the output's shape, on logits: a Sigmoid's input where the output is a Sigmoid's output.</summary>
    Bce,

    /// <summary>The named output is already a scalar loss.</summary>
    Output,
}

/// <summary>What <see cref="GradientGraphBuilder.Build(ModelProto, BuildTrainingOptions)"/> differentiates, and with respect to what.</summary>
public sealed record BuildTrainingOptions
{
    /// <summary>The loss to append.</summary>
    public required LossKind Loss { get; init; }

    /// <summary>The float value the loss reads (or that is the loss): a graph output or any other value of the graph.</summary>
    public required string Output { get; init; }

    /// <summary>
    /// The class axis of <see cref="Output"/> for cross-entropy and nll (negative counts from the end). Default: the
    /// axis of a Softmax that produced it, else the one the label input's shape leaves out, else 1 for rank 2.
    /// </summary>
    public int? ClassAxis { get; init; }

    /// <summary>Fixed sizes for symbolic dimensions of graph inputs (null keeps a dimension as it is); see <see cref="InputShapes"/>.</summary>
    public IReadOnlyDictionary<string, long?[]> InputShapes { get; init; } = new Dictionary<string, long?[]>();

    /// <summary>The label/target input; default <c>labels</c> for cross-entropy and <c>target</c> for mse.</summary>
    public string? Target { get; init; }

    /// <summary>The label/target input the loss reads (<see cref="Target"/> or its default), or null for <see cref="LossKind.Output"/>.</summary>
    public string? TargetName => Loss == LossKind.Output ? null : Target ?? (Loss is LossKind.CrossEntropy or LossKind.Nll ? "labels" : "target");

    /// <summary>Parameters to leave untrained: exact names, or patterns (a substring; <c>*</c> matches anything).</summary>
    public IReadOnlyList<string> Freeze { get; init; } = [];

    /// <summary>
    /// If not empty, only these are trained, and the default exclusions do not apply: exact names (graph inputs without
    /// values included), or patterns over initializer names.
    /// </summary>
    public IReadOnlyList<string> Trainable { get; init; } = [];

    /// <summary>
    /// How BatchNormalization nodes train: <see cref="BatchNormMode.Inference"/> (default) keeps each node as exported,
    /// <see cref="BatchNormMode.Train"/> normalizes every one with the batch's statistics and updates its running ones.
    /// </summary>
    public BatchNormMode BatchNorm { get; init; } = BatchNormMode.Inference;

    /// <summary>
    /// How Dropout nodes train: <see cref="DropoutMode.Identity"/> (default) leaves them identities unless their
    /// training_mode is a constant true, <see cref="DropoutMode.Train"/> drops random elements on every step.
    /// </summary>
    public DropoutMode Dropout { get; init; } = DropoutMode.Identity;

    /// <summary>
    /// Whether float Constant nodes with more than one element become trainable initializers of the same name
    /// (<see cref="ConstantWeights"/>): null (default) where the model has no float initializers, true always, false never.
    /// </summary>
    public bool? TrainableConstants { get; init; }
}

/// <summary>
/// Reverse-mode autodiff in standard ONNX ops: from an inference model plus a loss to a training graph (loss output
/// first, one <c>&lt;param&gt;_grad</c> output per trainable parameter) that the Adadelta rewrite consumes.
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
    public static ModelProto Build(ModelProto inference, BuildTrainingOptions options) => Build(inference, options, out _);

    /// <summary>
    /// Builds the training graph, and reports which parameters train (and why the others do not) and the decisions
    /// worth telling the user.
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">Bad options or an op without a rule; the message names the culprit.</exception>
    public static ModelProto Build(ModelProto inference, BuildTrainingOptions options, out BuildTrainingReport report)
    {
        // One deep copy (function inlining's); the opset upgrade works on that copy.
        var model = FunctionInlining.Inline(inference);
        OpsetImports.Normalize(model);
        OpsetUpgrade.UpgradeInPlace(model);
        var graph = model.Graph;
        InputShapes.Apply(model, options.InputShapes);
        ConstantWeights.Apply(graph, options.TrainableConstants);
        Opsets.RaiseForRewrite(model);
        GraphPasses.TopologicalSort(graph);
        StaticIfFolding.Fold(model);
        GraphPasses.HoistSubgraphInitializers(graph);
        // Training forms first: their buffer outputs join the original outputs.
        var trainingInfo = TrainingModes.Apply(model, options);
        var originalOutputs = graph.Output.Select(o => o.Clone()).ToList();
        var builder = new GraphBuilder(graph);
        var notes = new List<string>();
        var labels = new List<LabelCheck>();
        var loss = TrainingLoss.Append(model, builder, options, notes, out var reading, labels);
        if (labels.Count > 0) trainingInfo = trainingInfo with { Labels = labels };
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
        var (parameters, choices) = ParameterSelection.Choose(graph, index, types, reaches, options, loss);
        report = new BuildTrainingReport(choices, notes) { Loss = reading };

        var one = builder.Add("CastLike", [builder.Initializer($"{loss}_grad/one", Tensors.Create("", new[] { 1.0 })), loss], $"{loss}_grad/one_like");
        var seed = builder.Add("Expand", [one, builder.Add("Shape", [loss], $"{loss}_grad/shape")], $"{loss}_grad");
        var pass = new ReversePass(builder, model, types, () => ShapeInference.Infer(model));
        var gradients = pass.Run([(loss, seed)], parameters);
        types = pass.Types;

        // Models of IR version 3 list every initializer as a graph input too; one that does not train is a constant
        // of the training graph, not a parameter the training-graph contract would expect a gradient for.
        var chosen = parameters.ToHashSet(StringComparer.Ordinal);
        var initialized = graph.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        var keptInputs = graph.Input.Where(i => !initialized.Contains(i.Name) || chosen.Contains(i.Name) || types.GetValueOrDefault(i.Name)?.IsFloat != true).ToList();
        graph.Input.Clear();
        graph.Input.AddRange(keptInputs);
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
        TrainingModes.UseBatchStatistics(graph, trainingInfo);
        FixUnknownDims(graph);
        GraphPasses.RemoveDeadCode(graph);
        GraphPasses.TopologicalSort(graph);
        trainingInfo.WriteTo(model);
        return model;
    }

    /// <summary>
    /// Values from which a float gradient path leads to the loss. Outer-scope values that subgraphs (If, Loop, Scan
    /// bodies) read count as inputs of the node that holds the subgraph.
    /// </summary>
    private static HashSet<string> ValuesReachingLoss(GraphProto graph, IReadOnlyDictionary<string, TypeAndShape> types, string loss)
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
    private static string PathBlockers(GraphProto graph, IReadOnlyDictionary<string, TypeAndShape> types, string loss, HashSet<string> reaches)
    {
        var depends = graph.Initializer.Where(t => types.GetValueOrDefault(t.Name)?.IsFloat == true).Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var node in graph.Node)
            if (ReversePass.AllInputs(node).Any(depends.Contains))
                foreach (var o in node.Output) if (o.Length > 0) depends.Add(o);
        // Values from which the rules (not the types) let a gradient reach the loss.
        var open = new HashSet<string>(StringComparer.Ordinal) { loss };
        foreach (var node in graph.Node.Reverse())
        {
            if (!node.Output.Any(open.Contains)) continue;
            var info = ReversePass.RuleFor(node);
            int k = 0;
            foreach (var i in ReversePass.AllInputs(node)) if (ReversePass.Passes(info, node, k++)) open.Add(i);
        }
        var blockers = new List<string>();
        foreach (var node in graph.Node)
        {
            var stopped = ReversePass.AllInputs(node).Select((v, k) => (v, k))
                .Where(p => depends.Contains(p.v) && types.GetValueOrDefault(p.v)?.IsFloat == true && !reaches.Contains(p.v)).ToList();
            if (stopped.Count == 0 || !node.Output.Any(open.Contains)) continue;
            var info = ReversePass.RuleFor(node);
            var integer = node.Output.Where(open.Contains).Select(o => (o, t: types.GetValueOrDefault(o))).FirstOrDefault(p => p.t is { IsFloat: false });
            var blocked = stopped.FirstOrDefault(p => !ReversePass.Passes(info, node, p.k)).v;
            string? why = info is { HasGradient: false } ? "the op has no gradient"
                : integer.o is not null ? $"its output '{integer.o}' is {integer.t!.ElementType.ToString().ToLowerInvariant()}"
                : blocked is not null ? $"its input '{blocked}' is not differentiable"
                : null;
            if (why is not null) blockers.Add($"{node.OpType} (node '{node.Name}': {why})");
        }
        return blockers.Count == 0 ? "; nothing connects a float initializer to the loss"
            : $"; paths stop at {string.Join(", ", blockers.Take(6))}{(blockers.Count > 6 ? $" and {blockers.Count - 6} more" : "")}";
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
