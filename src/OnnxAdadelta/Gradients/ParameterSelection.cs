using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;
using OnnxAdadelta.Runtime;

namespace OnnxAdadelta.Gradients;

/// <summary>Whether one float value of a model trains, and why.</summary>
/// <param name="Name">The initializer or graph input.</param>
/// <param name="Shape">Its dimensions (null for a symbolic one).</param>
/// <param name="Trainable">Whether it trains.</param>
/// <param name="Reason">Why: <c>trainable</c>, <c>--trainable</c>, <c>--freeze</c>, <c>one element</c>,
/// <c>non-finite values</c> or <c>buffer name</c>.</param>
public sealed record ParameterChoice(string Name, long?[] Shape, bool Trainable, string Reason);

/// <summary>What <see cref="GradientGraphBuilder.Build(ModelProto, BuildTrainingOptions, out BuildTrainingReport)"/> decided.</summary>
/// <param name="Parameters">Every float initializer with a differentiable path to the loss (and every value named by
/// <c>--trainable</c>), trained or not, in graph order.</param>
/// <param name="Notes">Decisions worth one line each (a Softmax input taken as logits, for example).</param>
public sealed record BuildTrainingReport(IReadOnlyList<ParameterChoice> Parameters, IReadOnlyList<string> Notes)
{
    /// <summary>What the appended loss reads (null only where a report is made without a build).</summary>
    public LossReading? Loss { get; init; }

    /// <summary>One line: how many parameters train, and how many are left out, by reason.</summary>
    public string Summary()
    {
        var trained = Parameters.Where(p => p.Trainable).ToList();
        long values = trained.Sum(p => p.Shape.All(d => d is not null) ? p.Shape.Aggregate(1L, (a, d) => a * d!.Value) : 0);
        var left = Parameters.Where(p => !p.Trainable).GroupBy(p => p.Reason).Select(g => $"{g.Count()} {g.Key}").ToList();
        return $"parameters: {trained.Count} trainable ({values:N0} values)" + (left.Count == 0 ? "" : $", {Parameters.Count - trained.Count} left out ({string.Join(", ", left)})");
    }
}

/// <summary>
/// Chooses the trainable parameters of an inference model. By default these are the weights a PyTorch or Keras user
/// would call parameters: float initializers with a differentiable path to the loss, except one-element tensors
/// (epsilons, scale factors, exponents) that are not a layer's weight or bias, tensors holding infinities or NaN (attention masks) and tensors named like
/// buffers (a name token such as <c>buffer</c>, <c>pe</c>, <c>mask</c>, <c>window</c>, <c>basis</c>, <c>mel</c>,
/// <c>fbank</c> or <c>running</c>). <c>--trainable</c> replaces the default with the values it names;
/// <c>--freeze</c> removes values.
/// </summary>
internal static class ParameterSelection
{
    private static readonly HashSet<string> BufferTokens = new(StringComparer.Ordinal)
    {
        "buffer", "buffers", "pe", "mask", "masks", "window", "basis", "mel", "melscale", "fbank", "fbanks", "filterbank", "filterbanks", "running",
    };

    public static (List<string> Chosen, List<ParameterChoice> Report) Choose(GraphProto graph, GraphIndex index, IReadOnlyDictionary<string, TypeAndShape> types,
        HashSet<string> reaches, BuildTrainingOptions o, string loss)
    {
        var floats = graph.Initializer.Select(t => t.Name).Concat(graph.Input.Select(i => i.Name)).Distinct()
            .Where(n => types.GetValueOrDefault(n)?.IsFloat == true).ToList();
        var trainable = Select(o.Trainable, "--trainable", floats, index, types);
        var frozen = Select(o.Freeze, "--freeze", floats, index, types);
        foreach (var name in trainable)
            if (!reaches.Contains(name))
                throw new OnnxAdadeltaException($"--trainable {name}: no differentiable path leads from '{name}' to the loss '{loss}'.");

        var candidates = trainable.Count > 0
            ? floats.Where(trainable.Contains).ToList()
            : graph.Initializer.Where(t => reaches.Contains(t.Name) && types.GetValueOrDefault(t.Name)?.IsFloat == true).Select(t => t.Name).ToList();
        var report = new List<ParameterChoice>();
        foreach (var name in candidates)
        {
            var shape = types.GetValueOrDefault(name)?.Dims ?? [];
            string reason = frozen.Contains(name) ? "--freeze"
                : trainable.Count > 0 ? "--trainable"
                : DefaultExclusion(index.Initializers[name], index) ?? "trainable";
            report.Add(new ParameterChoice(name, shape, reason is "trainable" or "--trainable", reason));
        }
        var chosen = report.Where(p => p.Trainable).Select(p => p.Name).ToList();
        if (chosen.Count == 0)
            throw new OnnxAdadeltaException(report.Count == 0
                ? $"No trainable parameter has a differentiable path to the loss '{loss}' (float initializers, or inputs named with --trainable)."
                : $"Every parameter with a path to the loss '{loss}' is left out ({string.Join(", ", report.GroupBy(p => p.Reason).Select(g => $"{g.Count()} {g.Key}"))}); name the ones to train with --trainable.");
        return (chosen, report);
    }

    private static readonly HashSet<string> WeightOps = new(StringComparer.Ordinal) { "Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum" };

    private static readonly HashSet<string> AffineOps = new(StringComparer.Ordinal)
    {
        "BatchNormalization", "LayerNormalization", "InstanceNormalization", "GroupNormalization",
    };

    /// <summary>Why a float initializer is not a weight by default, or null when it is one.</summary>
    private static string? DefaultExclusion(TensorProto t, GraphIndex index)
    {
        if (Tensors.ElementCount(t.Dims) <= 1 && !IsLayerWeight(t.Name, index)) return "one element";
        if (HasNonFinite(t)) return "non-finite values";
        var tokens = t.Name.ToLowerInvariant().Split(['.', '/', ':', '_', '-', ' '], StringSplitOptions.RemoveEmptyEntries);
        if (tokens.Any(BufferTokens.Contains)) return "buffer name";
        return null;
    }

    /// <summary>
    /// Whether a one-element tensor is still a layer's weight or bias (the bias of a Linear layer with one output, say):
    /// an operand of a Conv, ConvTranspose, Gemm, MatMul or Einsum, the scale or bias of a normalization, or added to
    /// the result of one of the first five.
    /// </summary>
    /// <remarks>Uses inside If, Loop and Scan bodies count too.</remarks>
    private static bool IsLayerWeight(string name, GraphIndex index) => index.Consumers(name).Any(c =>
        WeightOps.Contains(c.Node.OpType)
        || (AffineOps.Contains(c.Node.OpType) && c.Input is 1 or 2)
        || (c.Node.OpType is "Add" && c.Node.Input.Any(i => i != name && index.Producer(i) is { } p && WeightOps.Contains(p.OpType)))
        || (c.Input < 0 && c.Node.Attribute.SelectMany(a => a.G is null ? a.Graphs : a.Graphs.Prepend(a.G)).Any(g => IsLayerWeight(name, new GraphIndex(g)))));

    private static bool HasNonFinite(TensorProto t) => (DataType)t.DataType switch
    {
        DataType.Float => t.ToFloatArray().Any(v => !float.IsFinite(v)),
        DataType.Double => t.ToArray<double>().Any(v => !double.IsFinite(v)),
        DataType.Float16 => t.ToArray<Half>().Any(v => !Half.IsFinite(v)),
        _ => false,
    };

    /// <summary>
    /// The float values that <paramref name="patterns"/> select: a pattern that is a value's exact name selects it
    /// alone; any other is a <see cref="ParameterPatterns"/> pattern (a substring, <c>*</c> matching anything). A
    /// pattern that selects nothing is an error.
    /// </summary>
    private static HashSet<string> Select(IReadOnlyList<string> patterns, string flag, List<string> floats, GraphIndex index, IReadOnlyDictionary<string, TypeAndShape> types)
    {
        var selected = new HashSet<string>(StringComparer.Ordinal);
        foreach (var pattern in patterns)
        {
            if (string.IsNullOrWhiteSpace(pattern)) throw new OnnxAdadeltaException($"{flag}: an empty pattern; expected a parameter name or a pattern such as 'conv*.weight'.");
            if (index.Initializers.ContainsKey(pattern) || index.Inputs.ContainsKey(pattern))
            {
                if (!floats.Contains(pattern))
                    throw new OnnxAdadeltaException($"{flag} {pattern}: the value is {types.GetValueOrDefault(pattern)?.ElementType.ToString() ?? "of unknown type"}; only float parameters are trainable.");
                selected.Add(pattern);
                continue;
            }
            var matcher = new ParameterPatterns([pattern]);
            var hits = floats.Where(n => index.Initializers.ContainsKey(n) && matcher.Matches(n)).ToList();
            if (hits.Count == 0)
                throw new OnnxAdadeltaException($"Parameter '{pattern}' (named by {flag}) matches no float initializer of the model (an exact name may also be a graph input).");
            selected.UnionWith(hits);
        }
        return selected;
    }
}
