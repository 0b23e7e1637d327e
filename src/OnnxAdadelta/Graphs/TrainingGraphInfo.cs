using System.Text.Json;
using System.Text.Json.Serialization;
using OnnxAdadelta.Onnx.Proto;

namespace OnnxAdadelta.Graphs;

/// <summary>
/// A tensor the forward pass of a training graph updates (a BatchNormalization running mean or variance): the graph
/// reads it from the initializer <see cref="Input"/> and writes its next value to the output <see cref="Output"/>.
/// It has no gradient, and the optimizer leaves it alone.
/// </summary>
/// <param name="Input">The initializer holding the current value.</param>
/// <param name="Output">The graph output holding the value after the step.</param>
public sealed record BufferBinding(string Input, string Output);

/// <summary>
/// What a training graph made by <c>build-training</c> holds besides its loss and gradients, stored in its
/// <c>metadata_props</c> under <see cref="MetadataKey"/> so that the rewrite can bind it: buffers the forward pass
/// updates, the input that takes the step number (random dropout masks), and the values that export puts back into
/// their inference form.
/// </summary>
public sealed record TrainingGraphInfo
{
    /// <summary>Suffix of the output that carries a state tensor's (or buffer's) next value in a step model.</summary>
    public const string NextSuffix = ".next";

    /// <summary>The metadata key that holds this record as JSON.</summary>
    public const string MetadataKey = "onnx_adadelta.training_graph";

    /// <summary>Tensors the forward pass updates (left out when none).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<BufferBinding>? Buffers { get; init; }

    /// <summary>
    /// An int64 scalar graph input that takes the step number, from which random masks are derived; the rewrite feeds it
    /// from the iteration counter (left out when none).
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? StepInput { get; init; }

    /// <summary>
    /// Values that are computed differently in training: in the inference model each key is replaced by the value it
    /// maps to, so that a dropout's output is its input again and a BatchNormalization's batch mean is its running mean
    /// (left out when none).
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyDictionary<string, string>? InferenceValues { get; init; }

    /// <summary>Whether the record holds nothing.</summary>
    [JsonIgnore]
    public bool IsEmpty => (Buffers is null || Buffers.Count == 0) && StepInput is null && (InferenceValues is null || InferenceValues.Count == 0);

    /// <summary>Writes this record into the model's metadata, replacing an earlier one (or removing it when empty).</summary>
    public void WriteTo(ModelProto model)
    {
        foreach (var p in model.MetadataProps.Where(p => p.Key == MetadataKey).ToList()) model.MetadataProps.Remove(p);
        if (!IsEmpty) model.MetadataProps.Add(new StringStringEntryProto { Key = MetadataKey, Value = JsonSerializer.Serialize(this, TrainingGraphJson.Default.TrainingGraphInfo) });
    }

    /// <summary>The record stored in <paramref name="model"/>, or an empty one.</summary>
    /// <exception cref="OnnxAdadeltaException">The metadata is not valid JSON of this record.</exception>
    public static TrainingGraphInfo Read(ModelProto model)
    {
        var entry = model.MetadataProps.FirstOrDefault(p => p.Key == MetadataKey);
        if (entry is null) return new TrainingGraphInfo();
        try { return JsonSerializer.Deserialize(entry.Value, TrainingGraphJson.Default.TrainingGraphInfo) ?? new TrainingGraphInfo(); }
        catch (JsonException e) { throw new OnnxAdadeltaException($"metadata '{MetadataKey}' is not valid: {e.Message}", e); }
    }
}

/// <summary>The JSON of <see cref="TrainingGraphInfo"/>, generated at build time (no reflection: trim- and AOT-safe).</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = false)]
[JsonSerializable(typeof(TrainingGraphInfo))]
internal sealed partial class TrainingGraphJson : JsonSerializerContext;
