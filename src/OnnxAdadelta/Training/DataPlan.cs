using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Onnx;

namespace OnnxAdadelta.Training;

/// <summary>
/// What decides which rows each step trains on: the data file (its size and SHA-256), the batch size, the shuffle and
/// its seed. A checkpoint records it in <c>metadata_props</c> (<see cref="MetadataKey"/>), so that a resumed run can
/// tell whether it sees the batches an uninterrupted run would have seen.
/// </summary>
/// <param name="File">The data file's name, for messages (not compared: a copy elsewhere is the same data).</param>
/// <param name="Bytes">The data file's size in bytes.</param>
/// <param name="Sha256">The SHA-256 of the data file, lower-case hex.</param>
/// <param name="BatchSize">Rows per step, as planned (the whole dataset when no batch size was given).</param>
/// <param name="Shuffle">Whether rows are shuffled each epoch.</param>
/// <param name="Seed">The seed of the shuffle.</param>
public sealed record DataPlan(string File, long Bytes, string Sha256, int BatchSize, bool Shuffle, long Seed)
{
    /// <summary>The <c>metadata_props</c> key a checkpoint keeps the plan under.</summary>
    public const string MetadataKey = "onnx_adadelta.data_plan";


    /// <summary>The plan of a run over the data file <paramref name="path"/> with the batches of <paramref name="plan"/>.</summary>
    public static DataPlan Of(string path, BatchPlan plan)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(plan);
        using var stream = SafeFile.OpenRead(path, ".npz data file");
        string hash;
        try { hash = Convert.ToHexStringLower(SHA256.HashData(stream)); }
        catch (IOException e) { throw new OnnxAdadeltaException($"{path}: cannot read ({e.Message.ReplaceLineEndings(" ")}).", e); }
        return new DataPlan(Path.GetFileName(path), stream.Length, hash, plan.BatchSize, plan.Shuffle, plan.Seed);
    }

    /// <summary>The plan a checkpoint recorded, or null when it has none (a fresh step model).</summary>
    /// <exception cref="OnnxAdadeltaException">The recorded plan is not valid JSON of this shape.</exception>
    public static DataPlan? Read(ModelProto model, string source)
    {
        ArgumentNullException.ThrowIfNull(model);
        var entry = model.MetadataProps.FirstOrDefault(p => p.Key == MetadataKey);
        if (entry is null) return null;
        try
        {
            return JsonSerializer.Deserialize(entry.Value, DataPlanJson.Default.DataPlan) is { File: not null, Sha256: not null } plan
                ? plan
                : throw new JsonException("missing fields");
        }
        catch (JsonException e)
        {
            throw new OnnxAdadeltaException(
                $"{source}: metadata '{MetadataKey}' is not a valid data plan ({e.Message.ReplaceLineEndings(" ")}); expected the JSON a checkpoint of 'onnx-adadelta train' holds.", e);
        }
    }

    /// <summary>Records this plan in <paramref name="model"/>, replacing any earlier one.</summary>
    public void WriteTo(ModelProto model)
    {
        ArgumentNullException.ThrowIfNull(model);
        foreach (var old in model.MetadataProps.Where(p => p.Key == MetadataKey).ToList()) model.MetadataProps.Remove(old);
        model.MetadataProps.Add(new StringStringEntryProto { Key = MetadataKey, Value = JsonSerializer.Serialize(this, DataPlanJson.Default.DataPlan) });
    }

    /// <summary>What changed from this (recorded) plan to <paramref name="now"/>, one phrase each; empty when nothing did.</summary>
    public IReadOnlyList<string> ChangesTo(DataPlan now)
    {
        ArgumentNullException.ThrowIfNull(now);
        var changes = new List<string>();
        if (Bytes != now.Bytes || !string.Equals(Sha256, now.Sha256, StringComparison.OrdinalIgnoreCase))
            changes.Add($"the data file differs ({File}, {Bytes} bytes, sha256 {Sha256[..Math.Min(12, Sha256.Length)]} before; " +
                        $"{now.File}, {now.Bytes} bytes, sha256 {now.Sha256[..12]} now)");
        if (BatchSize != now.BatchSize)
            changes.Add($"batch size {BatchSize.ToString(CultureInfo.InvariantCulture)} before, {now.BatchSize.ToString(CultureInfo.InvariantCulture)} now");
        if (Shuffle != now.Shuffle)
            changes.Add(Shuffle ? "--shuffle before, not now" : "no --shuffle before, --shuffle now");
        else if (Shuffle && Seed != now.Seed)
            changes.Add($"shuffle seed {Seed.ToString(CultureInfo.InvariantCulture)} before, {now.Seed.ToString(CultureInfo.InvariantCulture)} now");
        return changes;
    }

    /// <summary>A one-line summary of <see cref="ChangesTo"/> for a checkpoint at <paramref name="source"/>.</summary>
    public static string Describe(string source, IReadOnlyList<string> changes) =>
        $"{source} was trained with another data plan: {string.Join("; ", changes)}; " +
        "resuming breaks the exact-resume guarantee (the batches differ from an uninterrupted run's)";
}

/// <summary>The data plan's metadata entry, serialized without reflection (AOT- and trim-safe).</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(DataPlan))]
internal sealed partial class DataPlanJson : JsonSerializerContext;
