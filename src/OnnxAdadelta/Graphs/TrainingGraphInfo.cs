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
/// A data input of class labels and the classes a loss reads them against: each label must lie in [0,
/// <see cref="Classes"/>) or equal <see cref="IgnoreIndex"/>. Checked as each batch is bound, because ONNX Runtime
/// either fails deep inside a kernel or, for a negative label, silently reads another class.
/// </summary>
/// <param name="Input">The int64 or int32 data input holding the labels.</param>
/// <param name="Classes">The number of classes (the size of the scores' class axis).</param>
/// <param name="IgnoreIndex">A label value that the loss skips, or null.</param>
public sealed record LabelCheck(string Input, long Classes, long? IgnoreIndex = null)
{
    /// <summary>Losses whose input 1 is a class label per sample and input 0 the scores with classes on axis 1.</summary>
    private static readonly string[] LabelLosses = ["SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss"];

    /// <summary>
    /// The label checks of a graph that records none: each SoftmaxCrossEntropyLoss or NegativeLogLikelihoodLoss node
    /// reading a graph input without a value as its labels, whose scores have a declared, static class axis (axis 1).
    /// </summary>
    public static IReadOnlyList<LabelCheck> Find(GraphProto graph)
    {
        ArgumentNullException.ThrowIfNull(graph);
        var index = new GraphIndex(graph);
        var result = new List<LabelCheck>();
        foreach (var node in graph.Node)
        {
            if (node.Domain is not ("" or "ai.onnx") || !LabelLosses.Contains(node.OpType) || node.Input.Count < 2) continue;
            var labels = node.Input[1];
            if (!index.Inputs.ContainsKey(labels) || index.Initializers.ContainsKey(labels)) continue;
            if (index.TypeOf(node.Input[0])?.TensorType?.Shape is not { Dim.Count: >= 2 } shape) continue;
            var classes = shape.Dim[1];
            if (classes.ValueCase != TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue || classes.DimValue < 1) continue;
            var ignore = node.Attribute.FirstOrDefault(a => a.Name == "ignore_index");
            result.Add(new LabelCheck(labels, classes.DimValue, ignore?.I));
        }
        return result;
    }

    /// <summary>
    /// Checks the labels of one batch (int64 or int32, little-endian <paramref name="data"/>); <paramref name="where"/>
    /// says which batch ("training step 7").
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">The first label out of range, with its position in the batch.</exception>
    public void Check(ReadOnlySpan<byte> data, bool int32, string where)
    {
        int width = int32 ? 4 : 8;
        int count = data.Length / width;
        for (int i = 0; i < count; i++)
        {
            long v = int32 ? System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(data.Slice(i * 4, 4))
                : System.Buffers.Binary.BinaryPrimitives.ReadInt64LittleEndian(data.Slice(i * 8, 8));
            if ((v < 0 || v >= Classes) && v != IgnoreIndex)
                throw new OnnxAdadeltaException(
                    $"Label input '{Input}': target {v} at element {i} of the batch of {where} is out of bounds; expected a class in [0, {Classes})" +
                    (IgnoreIndex is { } ignore ? $" or the ignore_index {ignore}." : "."));
        }
    }
}

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

    /// <summary>The label inputs of the loss, with their class counts (left out when none).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<LabelCheck>? Labels { get; init; }

    /// <summary>Whether the record holds nothing.</summary>
    [JsonIgnore]
    public bool IsEmpty => (Buffers is null || Buffers.Count == 0) && StepInput is null && (InferenceValues is null || InferenceValues.Count == 0)
        && (Labels is null || Labels.Count == 0);

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
