using System.Text.Json;
using System.Text.Json.Serialization;
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

    /// <summary>The record stored in <paramref name="model"/>, or null if it is not a training-step model.</summary>
    public static StepModelInfo? TryRead(ModelProto model)
    {
        var entry = model.MetadataProps.FirstOrDefault(p => p.Key == MetadataKey);
        if (entry is null) return null;
        try { return JsonSerializer.Deserialize<StepModelInfo>(entry.Value, Json); }
        catch (JsonException e) { throw new OnnxAdadeltaException($"metadata '{MetadataKey}' is not valid: {e.Message}", e); }
    }

    /// <summary>The record stored in <paramref name="model"/>; throws naming <paramref name="source"/> if there is none.</summary>
    public static StepModelInfo Read(ModelProto model, string source) =>
        TryRead(model) ?? throw new OnnxAdadeltaException($"{source}: not a training-step model (no '{MetadataKey}' metadata); make one with 'onnx-adadelta rewrite'.");
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
