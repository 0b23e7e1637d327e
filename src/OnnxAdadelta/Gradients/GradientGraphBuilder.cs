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
    public static ModelProto Build(ModelProto inference, BuildTrainingOptions options) => Build(inference, options, out _);

    /// <summary>
    /// Builds the training graph, and reports which parameters train (and why the others do not) and the decisions
    /// worth telling the user.
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">Bad options or an op without a rule; the message names the culprit.</exception>
    public static ModelProto Build(ModelProto inference, BuildTrainingOptions options, out BuildTrainingReport report)
    {
        var model = OpsetUpgrade.Apply(inference);
        var graph = model.Graph;
        InputShapes.Apply(model, options.InputShapes);
        ConstantWeights.Apply(graph, options.TrainableConstants);
        Opsets.RaiseForRewrite(model);
        GraphPasses.TopologicalSort(graph);
        // Training forms first: their buffer outputs join the original outputs.
        var trainingInfo = TrainingModes.Apply(model, options);
        var originalOutputs = graph.Output.Select(o => o.Clone()).ToList();
        var builder = new GraphBuilder(graph);
        var notes = new List<string>();
        var loss = TrainingLoss.Append(model, builder, options, notes);
        var types = ShapeInference.Infer(model);
        var lossType = types.GetValueOrDefault(loss);
        if (lossType is { Dims: { } lossDims } && lossDims.Any(d => d != 1))
            throw new OnnxAdadeltaException($"The loss '{loss}' has shape [{string.Join(",", lossDims.Select(d => d?.ToString() ?? "?"))}]; a scalar is expected (use --loss cross-entropy or mse, or output a scalar).");
        if (lossType is not null && !lossType.IsFloat)
            throw new OnnxAdadeltaException($"The loss '{loss}' is {lossType.ElementType}; a float scalar is expected.");

        var index = new GraphIndex(graph);
        var reaches = ValuesReachingLoss(graph, types, loss);
        var (parameters, choices) = ParameterSelection.Choose(graph, index, types, reaches, options, loss);
        report = new BuildTrainingReport(choices, notes);
        var (required, origin) = ValuesRequiringGradient(graph, types, parameters);

        var contributions = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        var summed = new Dictionary<string, string>(StringComparer.Ordinal);
        string? GradientOf(string value)
        {
            if (summed.TryGetValue(value, out var s)) return s;
            if (!contributions.TryGetValue(value, out var list) || list.Count == 0) return null;
            return summed[value] = list.Count == 1 ? list[0] : builder.Add("Sum", list, $"{value}_grad_sum");
        }
        var one = builder.Add("CastLike", [builder.Initializer($"{loss}_grad/one", Tensors.Create("", new[] { 1.0 })), loss], $"{loss}_grad/one_like");
        contributions[loss] = [builder.Add("Expand", [one, builder.Add("Shape", [loss], $"{loss}_grad/shape")], $"{loss}_grad")];

        int opset = (int)model.OpsetImport.Single(o => o.Domain is "" or "ai.onnx").Version;
        var tensors = ConstantTensors(graph);
        var constants = ConstantInts(tensors);
        foreach (var node in graph.Node.Reverse().ToList())
        {
            bool relevant = node.Input.Any(required.Contains) && node.Output.Any(reaches.Contains);
            if (!relevant) continue;
            var info = RuleFor(node);
            if (info?.Rule is null)
            {
                if (info is not null) continue; // an op with no gradient: nothing flows back through it
                var param = node.Input.Where(required.Contains).Select(i => origin[i]).First();
                throw new OnnxAdadeltaException($"Op '{(node.Domain.Length > 0 ? node.Domain + "." : "")}{node.OpType}' (node '{node.Name}') has no gradient rule, and parameter '{param}' needs one through it; supported ops: see 'onnx-adadelta build-training --help' or the README.");
            }
            if (node.Output.All(o => GradientOf(o) is null)) continue;
            var ctx = new GradientContext(builder, node, opset, types, GradientOf,
                i => required.Contains(node.Input[i]) && info.IsDifferentiable(i) && types.GetValueOrDefault(node.Input[i])?.IsFloat == true)
            { ConstantValues = constants, ConstantTensorOf = tensors };
            info.Rule(ctx);
            foreach (var (i, g) in ctx.InputGradients)
            {
                if (!contributions.TryGetValue(node.Input[i], out var list)) contributions[node.Input[i]] = list = [];
                list.Add(g);
            }
        }

        graph.Output.Clear();
        graph.Output.Add(TypeProtos.ValueInfo(loss, lossType?.ElementType ?? DataType.Float, []));
        graph.Output.AddRange(originalOutputs.Where(o => o.Name != loss));
        var inputs = graph.Input.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var p in parameters)
        {
            var g = GradientOf(p) ?? throw new OnnxAdadeltaException($"Parameter '{p}' receives no gradient from the loss '{loss}'.");
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

    /// <summary>The rule of a node's op: ai.onnx ops only (a custom-domain op with a standard name has none).</summary>
    private static GradientRuleInfo? RuleFor(NodeProto node) =>
        node.Domain is "" or "ai.onnx" ? GradientRules.Find(node.OpType) : null;

    /// <summary>Values from which a float gradient path leads to the loss.</summary>
    private static HashSet<string> ValuesReachingLoss(GraphProto graph, IReadOnlyDictionary<string, ValueType> types, string loss)
    {
        var reaches = new HashSet<string>(StringComparer.Ordinal) { loss };
        foreach (var node in graph.Node.Reverse())
        {
            if (!node.Output.Any(o => reaches.Contains(o) && types.GetValueOrDefault(o)?.IsFloat != false)) continue;
            var info = RuleFor(node);
            for (int i = 0; i < node.Input.Count; i++)
            {
                var input = node.Input[i];
                if (input.Length == 0 || types.GetValueOrDefault(input)?.IsFloat == false) continue;
                if (info is null || info.IsDifferentiable(i)) reaches.Add(input);
            }
        }
        return reaches;
    }

    private static (HashSet<string> Required, Dictionary<string, string> Origin) ValuesRequiringGradient(
        GraphProto graph, IReadOnlyDictionary<string, ValueType> types, List<string> parameters)
    {
        var required = new HashSet<string>(parameters, StringComparer.Ordinal);
        var origin = parameters.ToDictionary(p => p, p => p, StringComparer.Ordinal);
        foreach (var node in graph.Node)
        {
            var info = RuleFor(node);
            var source = Enumerable.Range(0, node.Input.Count).FirstOrDefault(i => required.Contains(node.Input[i]) && (info is null || info.IsDifferentiable(i)), -1);
            if (source < 0) continue;
            foreach (var o in node.Output)
                if (o.Length > 0 && types.GetValueOrDefault(o)?.IsFloat != false && required.Add(o)) origin[o] = origin[node.Input[source]];
        }
        return (required, origin);
    }

    /// <summary>
    /// Int64 (and bool, as 0/1) values of initializers and Constant nodes, for rules that need static axes, shapes or
    /// flags. An initializer that is also a graph input is only a default the caller may override, so it is not a constant.
    /// </summary>
    private static Func<string, long[]?> ConstantInts(Func<string, TensorProto?> tensors) =>
        name =>
        {
            var t = tensors(name);
            return t switch
            {
                { DataType: (int)DataType.Int64 } => t.ToInt64Array(),
                { DataType: (int)DataType.Bool } => t.ToArray<bool>().Select(b => b ? 1L : 0L).ToArray(),
                _ => null,
            };
        };

    /// <summary>
    /// The tensors of initializers and Constant nodes (an initializer that is also a graph input is only a default the
    /// caller may override, so it is not a constant).
    /// </summary>
    private static Func<string, TensorProto?> ConstantTensors(GraphProto graph)
    {
        var overridable = graph.Input.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        var inits = graph.Initializer.Where(t => !overridable.Contains(t.Name)).ToDictionary(t => t.Name, StringComparer.Ordinal);
        var constants = graph.Node.Where(n => n.OpType == "Constant" && n.Attribute.Any(a => a.Name == "value"))
            .ToDictionary(n => n.Output[0], n => n.Attribute.First(a => a.Name == "value").T, StringComparer.Ordinal);
        return name => inits.GetValueOrDefault(name) ?? constants.GetValueOrDefault(name);
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
