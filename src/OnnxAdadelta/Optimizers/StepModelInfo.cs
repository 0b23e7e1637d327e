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
/// <param name="Initial">
/// The initializer holding the value the input starts from (format 2: <c>&lt;input&gt;.initial</c>, read by no node);
/// null in format 1, where the input's own initializer holds it. See <see cref="StepModelState"/>.
/// </param>
public sealed record StateBinding(string Input, string Output, StateKind Kind, string? Parameter = null, string? Slot = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Initial = null);

/// <summary>
/// The contract of a training-step model, stored in its <c>metadata_props</c> so that any ONNX Runtime binding can loop
/// it: which output feeds which input on the next step, the loss, the gradients, and the optimizer arguments.
/// </summary>
public sealed record StepModelInfo
{
    /// <summary>The metadata key that holds this record as JSON.</summary>
    public const string MetadataKey = "onnx_adadelta.step_model";

    /// <summary>The format this library writes: 2, state inputs without initializers of their own names (see <see cref="StepModelState"/>).</summary>
    public const int CurrentFormatVersion = 2;

    /// <summary>Version of this record's format: 1 (state values in initializers named as the inputs) or 2.</summary>
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

    /// <summary>The optimizer's arguments, stored as the <see cref="AdadeltaOptions"/> record itself.</summary>
    public required AdadeltaOptions Optimizer { get; init; }

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

    /// <summary>Writes this record into the model's metadata, replacing an earlier one.</summary>
    public void WriteTo(ModelProto model)
    {
        var old = model.MetadataProps.Where(p => p.Key == MetadataKey).ToList();
        foreach (var p in old) model.MetadataProps.Remove(p);
        model.MetadataProps.Add(new StringStringEntryProto { Key = MetadataKey, Value = JsonSerializer.Serialize(this, MetadataJson.Of<StepModelInfo>()) });
    }

    /// <summary>The record stored in <paramref name="model"/>, or null if it is not a training-step model.</summary>
    public static StepModelInfo? TryRead(ModelProto model)
    {
        var entry = model.MetadataProps.FirstOrDefault(p => p.Key == MetadataKey);
        if (entry is null) return null;
        try
        {
            var info = JsonSerializer.Deserialize(entry.Value, MetadataJson.Of<StepModelInfo>());
            info?.Optimizer.Validate();
            return info;
        }
        catch (JsonException e) { throw new OnnxAdadeltaException($"metadata '{MetadataKey}' is not valid: {e.Message}", e); }
        catch (ArgumentException e)
        {
            var message = e.ParamName is { } param ? e.Message.Replace($" (Parameter '{param}')", "", StringComparison.Ordinal) : e.Message;
            throw new OnnxAdadeltaException($"metadata '{MetadataKey}' is not valid: {message}", e);
        }
    }

    /// <summary>The record stored in <paramref name="model"/>; throws naming <paramref name="source"/> if there is none.</summary>
    public static StepModelInfo Read(ModelProto model, string source) =>
        TryRead(model) ?? throw new OnnxAdadeltaException($"{source}: not a training-step model (no '{MetadataKey}' metadata); make one with 'onnx-adadelta rewrite'.");
}
