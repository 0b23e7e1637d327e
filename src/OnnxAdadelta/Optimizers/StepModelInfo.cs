using System.Text.Json;
using System.Text.Json.Serialization;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Onnx.Proto;

namespace OnnxAdadelta.Optimizers;

/// <summary>What one state tensor is.</summary>
public enum StateKind
{
    /// <summary>A trainable parameter.</summary>
    Parameter,

    /// <summary>An optimizer slot of one parameter (accum_grad, accum_var).</summary>
    Slot,

    /// <summary>The int64 iteration counter.</summary>
    Iterations,

    /// <summary>
    /// A tensor the forward pass updates (a BatchNormalization running mean or variance): no gradient, untouched by
    /// the optimizer, and kept by export as an initializer holding its trained value.
    /// </summary>
    Buffer,
}

/// <summary>One state tensor of a training-step model: read from <see cref="Input"/>, its next value written to <see cref="Output"/>.</summary>
/// <param name="Input">The graph input (and initializer) holding the current value.</param>
/// <param name="Output">The graph output holding the value after the step.</param>
/// <param name="Kind">Parameter, slot, counter or buffer.</param>
/// <param name="Parameter">The parameter this tensor belongs to (null for the counter and buffers).</param>
/// <param name="Slot">The slot name for <see cref="StateKind.Slot"/>.</param>
public sealed record StateBinding(string Input, string Output, StateKind Kind, string? Parameter = null, string? Slot = null);

/// <summary>
/// The contract of a training-step model, stored in its <c>metadata_props</c> so that any ONNX Runtime binding can loop
/// it: which output feeds which input on the next step, the loss, the gradients, and the optimizer arguments.
/// </summary>
public sealed record StepModelInfo
{
    /// <summary>The metadata key that holds this record as JSON.</summary>
    public const string MetadataKey = "onnx_adadelta.step_model";

    /// <summary>Version of this record's format.</summary>
    public int FormatVersion { get; init; } = 1;

    /// <summary>The loss output (a float32 scalar), the first graph output.</summary>
    public required string Loss { get; init; }

    /// <summary>The outputs of the training graph other than gradients, in order (loss first).</summary>
    public required IReadOnlyList<string> Outputs { get; init; }

    /// <summary>The data inputs (everything the caller feeds per step).</summary>
    public required IReadOnlyList<string> DataInputs { get; init; }

    /// <summary>Each state tensor and where its next value comes out.</summary>
    public required IReadOnlyList<StateBinding> State { get; init; }

    /// <summary>Parameter name to the graph value holding its raw (unclipped) gradient.</summary>
    public required IReadOnlyDictionary<string, string> Gradients { get; init; }

    /// <summary>The optimizer's arguments.</summary>
    public required OptimizerRecord Optimizer { get; init; }

    /// <summary>
    /// Values computed differently in training (random dropout, batch statistics): export replaces each key by the value
    /// it maps to (left out when none; see <see cref="Graphs.TrainingGraphInfo.InferenceValues"/>).
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyDictionary<string, string>? InferenceValues { get; init; }

    /// <summary>
    /// The label inputs checked as each batch is bound (left out when none; older files have none, and
    /// <see cref="LabelChecks"/> then finds them in the graph).
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<LabelCheck>? Labels { get; init; }

    /// <summary>The label checks of <paramref name="model"/>: those recorded in <see cref="Labels"/>, else those <see cref="LabelCheck.Find"/> finds in its graph.</summary>
    public IReadOnlyList<LabelCheck> LabelChecks(ModelProto model) => Labels ?? LabelCheck.Find(model.Graph);

    /// <summary>The iteration counter's binding.</summary>
    [JsonIgnore]
    public StateBinding Iterations => State.Single(s => s.Kind == StateKind.Iterations);

    /// <summary>The trainable parameters, in order.</summary>
    [JsonIgnore]
    public IEnumerable<string> Parameters => State.Where(s => s.Kind == StateKind.Parameter).Select(s => s.Input);

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = false,
        Converters = { new JsonStringEnumConverter() },
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
    };

    /// <summary>Writes this record into the model's metadata, replacing an earlier one.</summary>
    public void WriteTo(ModelProto model)
    {
        var old = model.MetadataProps.Where(p => p.Key == MetadataKey).ToList();
        foreach (var p in old) model.MetadataProps.Remove(p);
        model.MetadataProps.Add(new StringStringEntryProto { Key = MetadataKey, Value = JsonSerializer.Serialize(this, Json) });
    }

    /// <summary>
    /// The record stored in <paramref name="model"/>, checked against its graph (<see cref="Validate"/>), or null if it
    /// is not a training-step model.
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">The metadata is not valid JSON of this record, or disagrees with the graph; the message names the binding.</exception>
    public static StepModelInfo? TryRead(ModelProto model, string source = "the model")
    {
        ArgumentNullException.ThrowIfNull(model);
        var entry = model.MetadataProps.FirstOrDefault(p => p.Key == MetadataKey);
        if (entry is null) return null;
        StepModelInfo? info;
        try { info = JsonSerializer.Deserialize<StepModelInfo>(entry.Value, Json); }
        catch (JsonException e) { throw new OnnxAdadeltaException($"{source}: metadata '{MetadataKey}' is not valid: {OneLine(e.Message)}", e); }
        if (info is null) throw new OnnxAdadeltaException($"{source}: metadata '{MetadataKey}' is null; expected the step model's JSON record (loss, data_inputs, state, gradients, optimizer).");
        info.Validate(model, source);
        return info;
    }

    /// <summary>The record stored in <paramref name="model"/>; throws naming <paramref name="source"/> if there is none.</summary>
    public static StepModelInfo Read(ModelProto model, string source) =>
        TryRead(model, source) ?? throw new OnnxAdadeltaException($"{source}: not a training-step model (no '{MetadataKey}' metadata); make one with 'onnx-adadelta rewrite'.");

    /// <summary>
    /// Checks the record against <paramref name="model"/>'s graph, so that a hand-edited or damaged record fails here,
    /// naming the binding, rather than deep inside a run: every field present; one iteration counter (an int64
    /// initializer of one element); each state binding reading a graph input that has an initializer and writing a
    /// graph output, with no input or output bound twice; each parameter with its gradient and the slots its optimizer
    /// keeps (accum_grad and accum_var, plus ema or gradient_accumulator where the options use them); the loss and the
    /// other outputs among the graph outputs and the data inputs among the graph inputs; valid optimizer arguments.
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">The first disagreement, naming <paramref name="source"/> and the binding.</exception>
    public void Validate(ModelProto model, string source)
    {
        ArgumentNullException.ThrowIfNull(model);
        string Bad(string what) => $"{source}: step-model metadata '{MetadataKey}': {what}";
        if (string.IsNullOrEmpty(Loss)) throw new OnnxAdadeltaException(Bad("'loss' is missing or empty; expected the name of the loss output."));
        if (Outputs is null) throw new OnnxAdadeltaException(Bad("'outputs' is null; expected the list of the training graph's outputs."));
        if (DataInputs is null) throw new OnnxAdadeltaException(Bad("'data_inputs' is null; expected the list of the inputs fed per step."));
        if (State is null || State.Count == 0) throw new OnnxAdadeltaException(Bad("'state' is empty; expected one {input, output} binding per parameter, slot and the iteration counter."));
        if (Gradients is null) throw new OnnxAdadeltaException(Bad("'gradients' is null; expected the gradient value of each parameter."));
        if (Optimizer is null) throw new OnnxAdadeltaException(Bad("'optimizer' is null; expected the optimizer's arguments."));

        var graph = model.Graph;
        var inputs = graph.Input.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        var outputs = graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        var initializers = new Dictionary<string, TensorProto>(StringComparer.Ordinal);
        foreach (var t in graph.Initializer) initializers.TryAdd(t.Name, t);
        if (!outputs.Contains(Loss)) throw new OnnxAdadeltaException(Bad($"the loss '{Loss}' is not a graph output."));
        foreach (var o in Outputs)
            if (o is null || !outputs.Contains(o)) throw new OnnxAdadeltaException(Bad($"output '{o}' is not a graph output."));
        foreach (var d in DataInputs)
        {
            if (d is null || !inputs.Contains(d)) throw new OnnxAdadeltaException(Bad($"data input '{d}' is not a graph input."));
            if (initializers.ContainsKey(d)) throw new OnnxAdadeltaException(Bad($"data input '{d}' has an initializer, so it is state or a constant, not data fed per step."));
        }

        var boundInputs = new HashSet<string>(StringComparer.Ordinal);
        var boundOutputs = new HashSet<string>(StringComparer.Ordinal);
        var iterations = new List<StateBinding>();
        var parameters = new List<string>();
        var slots = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        foreach (var s in State)
        {
            if (s is null) throw new OnnxAdadeltaException(Bad("a state binding is null; expected {input, output, kind}."));
            var label = $"state binding {{input '{s.Input}', output '{s.Output}', kind {s.Kind}}}";
            if (string.IsNullOrEmpty(s.Input) || string.IsNullOrEmpty(s.Output))
                throw new OnnxAdadeltaException(Bad($"{label} lacks an input or output name."));
            if (!Enum.IsDefined(s.Kind)) throw new OnnxAdadeltaException(Bad($"{label} has an unknown kind; expected Parameter, Slot, Iterations or Buffer."));
            if (!inputs.Contains(s.Input)) throw new OnnxAdadeltaException(Bad($"{label}: '{s.Input}' is not a graph input."));
            if (!initializers.ContainsKey(s.Input)) throw new OnnxAdadeltaException(Bad($"{label}: '{s.Input}' has no initializer holding its current value."));
            if (!outputs.Contains(s.Output)) throw new OnnxAdadeltaException(Bad($"{label}: '{s.Output}' is not a graph output."));
            if (!boundInputs.Add(s.Input)) throw new OnnxAdadeltaException(Bad($"{label}: input '{s.Input}' is bound twice."));
            if (!boundOutputs.Add(s.Output)) throw new OnnxAdadeltaException(Bad($"{label}: output '{s.Output}' is bound twice."));
            switch (s.Kind)
            {
                case StateKind.Iterations: iterations.Add(s); break;
                case StateKind.Parameter: parameters.Add(s.Input); break;
                case StateKind.Slot:
                    if (string.IsNullOrEmpty(s.Parameter) || string.IsNullOrEmpty(s.Slot))
                        throw new OnnxAdadeltaException(Bad($"{label} names no parameter or slot."));
                    if (!slots.TryGetValue(s.Parameter, out var set)) slots[s.Parameter] = set = new HashSet<string>(StringComparer.Ordinal);
                    if (!set.Add(s.Slot)) throw new OnnxAdadeltaException(Bad($"{label}: parameter '{s.Parameter}' has slot '{s.Slot}' twice."));
                    break;
            }
        }
        if (iterations.Count != 1)
            throw new OnnxAdadeltaException(Bad(iterations.Count == 0 ? "no state binding of kind Iterations; expected exactly one iteration counter."
                : $"{iterations.Count} state bindings of kind Iterations ({string.Join(", ", iterations.Select(i => $"'{i.Input}'"))}); expected exactly one."));
        var counter = initializers[iterations[0].Input];
        if (counter.DataType != (int)TensorProto.Types.DataType.Int64 || Tensors.ElementCount(counter.Dims) != 1)
            throw new OnnxAdadeltaException(Bad($"the iteration counter '{counter.Name}' is {DataTypes.Name((TensorProto.Types.DataType)counter.DataType)}[{string.Join(",", counter.Dims)}]; expected one int64."));

        AdadeltaOptions options;
        try { options = Optimizer.ToOptions(); }
        catch (Exception e) when (e is ArgumentException or OnnxAdadeltaException or NullReferenceException)
        {
            throw new OnnxAdadeltaException(Bad($"'optimizer' is not valid: {OneLine(e.Message)}"), e);
        }
        var required = new List<string> { ScaleByAdadelta.AccumGrad, ScaleByAdadelta.AccumVar };
        if (options.UseEma) required.Add(MovingAverage.Slot);
        if (options.GradientAccumulationSteps is not null) required.Add(AccumulateGradients.Accumulator);
        var parameterSet = parameters.ToHashSet(StringComparer.Ordinal);
        foreach (var p in parameters)
        {
            if (!this.Gradients.TryGetValue(p, out var g) || string.IsNullOrEmpty(g))
                throw new OnnxAdadeltaException(Bad($"parameter '{p}' has no entry in 'gradients'."));
            var have = slots.GetValueOrDefault(p);
            if (required.FirstOrDefault(r => have is null || !have.Contains(r)) is { } missing)
                throw new OnnxAdadeltaException(Bad($"parameter '{p}' has no '{missing}' state binding; the optimizer keeps {string.Join(", ", required)} per parameter."));
        }
        foreach (var l in Labels ?? [])
        {
            if (l is null || string.IsNullOrEmpty(l.Input) || !DataInputs.Contains(l.Input))
                throw new OnnxAdadeltaException(Bad($"label check '{l?.Input}' does not name a data input."));
            if (l.Classes < 1) throw new OnnxAdadeltaException(Bad($"label check '{l.Input}' has {l.Classes} classes; expected at least 1."));
        }
        if (slots.Keys.FirstOrDefault(k => !parameterSet.Contains(k)) is { } orphan)
            throw new OnnxAdadeltaException(Bad($"slot state names parameter '{orphan}', which has no state binding of kind Parameter."));
    }

    /// <summary>
    /// Refuses stored state no run could have produced: a non-finite element (NaN, ±Inf) in a parameter, slot or buffer,
    /// a negative element in an accumulator of squares (<c>accum_grad</c>, <c>accum_var</c>), or a negative iteration count.
    /// Reads every state initializer once.
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">The first such element, naming <paramref name="source"/>, the tensor and the index.</exception>
    public void ValidateState(ModelProto model, string source)
    {
        ArgumentNullException.ThrowIfNull(model);
        var initializers = new Dictionary<string, TensorProto>(StringComparer.Ordinal);
        foreach (var t in model.Graph.Initializer) initializers.TryAdd(t.Name, t);
        foreach (var s in State)
        {
            if (!initializers.TryGetValue(s.Input, out var t)) continue;
            if (s.Kind == StateKind.Iterations)
            {
                if (t.DataType == (int)TensorProto.Types.DataType.Int64 && t.ToInt64Array() is [var it] && it < 0)
                    throw new OnnxAdadeltaException($"{source}: the iteration counter '{s.Input}' is {it}; a count of steps cannot be negative.");
                continue;
            }
            if (!MixedPrecision.IsTrainable((TensorProto.Types.DataType)t.DataType)) continue;
            var values = MixedPrecision.ToFloats(t);
            bool squares = s.Kind == StateKind.Slot && s.Slot is ScaleByAdadelta.AccumGrad or ScaleByAdadelta.AccumVar;
            for (int i = 0; i < values.Length; i++)
            {
                if (!float.IsFinite(values[i]))
                    throw new OnnxAdadeltaException($"{source}: state tensor '{s.Input}' ({Describe(s)}) holds {Format(values[i])} at element {i}; stored state must be finite (the run that wrote it diverged).");
                if (squares && values[i] < 0)
                    throw new OnnxAdadeltaException($"{source}: state tensor '{s.Input}' ({Describe(s)}) holds {Format(values[i])} at element {i}; an accumulator of squares cannot be negative.");
            }
        }
    }

    private static string Describe(StateBinding s) => s.Kind switch
    {
        StateKind.Slot => $"slot {s.Slot} of parameter '{s.Parameter}'",
        StateKind.Parameter => "a parameter",
        StateKind.Buffer => "a buffer",
        _ => s.Kind.ToString(),
    };

    private static string Format(float v) => float.IsNaN(v) ? "NaN" : float.IsPositiveInfinity(v) ? "+Inf" : float.IsNegativeInfinity(v) ? "-Inf"
        : v.ToString("R", System.Globalization.CultureInfo.InvariantCulture);

    private static string OneLine(string message) => message.ReplaceLineEndings(" ");
}

/// <summary>The optimizer's arguments as stored in a step model, enough to rebuild <see cref="AdadeltaOptions"/>.</summary>
public sealed record OptimizerRecord
{
    /// <summary>Always "Adadelta".</summary>
    public string Type { get; init; } = "Adadelta";

    /// <summary>The learning-rate schedule spec (<c>constant:value=…</c> for a float).</summary>
    public required string LearningRate { get; init; }

    /// <summary>rho.</summary>
    public required float Rho { get; init; }

    /// <summary>epsilon.</summary>
    public required float Epsilon { get; init; }

    /// <summary>The name prefix.</summary>
    public required string Name { get; init; }

    /// <summary>clipnorm, or null.</summary>
    public float? ClipNorm { get; init; }

    /// <summary>clipvalue, or null.</summary>
    public float? ClipValue { get; init; }

    /// <summary>global_clipnorm, or null (left out of the JSON when unset).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public float? GlobalClipNorm { get; init; }

    /// <summary>Decoupled weight decay, or null (left out when unset).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public float? WeightDecay { get; init; }

    /// <summary>Coupled L2 weight decay, or null (left out when unset).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public float? L2 { get; init; }

    /// <summary>Patterns of parameters excluded from weight decay, or null (left out when none).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<string>? ExcludeFromWeightDecay { get; init; }

    /// <summary>Whether the gradient is negated (left out when false).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool Maximize { get; init; }

    /// <summary>TF 2.4 legacy decay, or null (left out when unset).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public float? Decay { get; init; }

    /// <summary>Loss scale factor, or null (left out when unset).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public float? LossScaleFactor { get; init; }

    /// <summary>Whether an EMA of the parameters is kept (left out when false).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool UseEma { get; init; }

    /// <summary>The EMA momentum, or null without EMA (left out when unset).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public float? EmaMomentum { get; init; }

    /// <summary>The EMA overwrite frequency, or null (left out when unset).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? EmaOverwriteFrequency { get; init; }

    /// <summary>Gradient accumulation steps, or null (left out when unset).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? GradientAccumulationSteps { get; init; }

    /// <summary>Parameter groups as specs (<see cref="ParameterGroup.ToSpec"/>), or null (left out when none).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<string>? Groups { get; init; }

    /// <summary>Frozen parameter patterns, or null (left out when none).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<string>? Frozen { get; init; }

    /// <summary>Whether float16/bfloat16 parameters keep float32 optimizer slots (left out when false).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool Fp32State { get; init; }

    /// <summary>Whether float16/bfloat16 parameters keep float32 master weights (left out when false).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool MasterWeights { get; init; }

    /// <summary>The record of <paramref name="options"/>.</summary>
    public static OptimizerRecord From(AdadeltaOptions options) => new()
    {
        LearningRate = options.LearningRate.ToSpec(),
        Rho = options.Rho,
        Epsilon = options.Epsilon,
        Name = options.Name,
        ClipNorm = options.ClipNorm,
        ClipValue = options.ClipValue,
        GlobalClipNorm = options.GlobalClipNorm,
        WeightDecay = options.WeightDecay,
        L2 = options.L2,
        ExcludeFromWeightDecay = options.ExcludeFromWeightDecay.Patterns.Count > 0 ? options.ExcludeFromWeightDecay.Patterns : null,
        Maximize = options.Maximize,
        Decay = options.Decay,
        LossScaleFactor = options.LossScaleFactor,
        UseEma = options.UseEma,
        EmaMomentum = options.UseEma ? options.EmaMomentum : null,
        EmaOverwriteFrequency = options.EmaOverwriteFrequency,
        GradientAccumulationSteps = options.GradientAccumulationSteps,
        Groups = options.Groups.Count > 0 ? options.Groups.Select(g => g.ToSpec()).ToList() : null,
        Frozen = options.Frozen.Patterns.Count > 0 ? options.Frozen.Patterns : null,
        Fp32State = options.Fp32State,
        MasterWeights = options.MasterWeights,
    };

    /// <summary>Rebuilds the options.</summary>
    public AdadeltaOptions ToOptions() =>
        new(LearningRateSchedules.Parse(LearningRate), Rho, Epsilon, Name, ClipNorm, ClipValue, GlobalClipNorm,
            WeightDecay, L2, ExcludeFromWeightDecay, Maximize, Decay, LossScaleFactor, UseEma, EmaMomentum, EmaOverwriteFrequency,
            GradientAccumulationSteps, Groups?.Select(ParameterGroup.Parse), Frozen, Fp32State, MasterWeights);
}
