using System.Text.Json;

namespace OnnxAdadelta.Training;

/// <summary>One node's time in an ONNX Runtime profile, summed over the runs it records.</summary>
/// <param name="Node">The node's name in the model.</param>
/// <param name="OpType">Its op type.</param>
/// <param name="Runs">How many times it ran.</param>
/// <param name="Microseconds">Its kernel time over all runs, in microseconds.</param>
public sealed record NodeTime(string Node, string OpType, int Runs, long Microseconds);

/// <summary>
/// The node events of an ONNX Runtime profile (the Chrome-trace JSON that <c>SessionOptions.EnableProfiling</c> writes):
/// each kernel run is an event of category <c>Node</c> named <c>&lt;node&gt;_kernel_time</c>, with its duration in
/// microseconds and the op type in its arguments. Session set-up and the per-run totals are other categories.
/// </summary>
public sealed class OrtProfile
{
    private const string KernelSuffix = "_kernel_time";

    private OrtProfile(IReadOnlyList<NodeTime> nodes, int runs, long runMicroseconds)
    {
        Nodes = nodes;
        Runs = runs;
        RunMicroseconds = runMicroseconds;
    }

    /// <summary>Every node that ran, by total time, longest first.</summary>
    public IReadOnlyList<NodeTime> Nodes { get; }

    /// <summary>The number of session runs (steps) the profile records.</summary>
    public int Runs { get; }

    /// <summary>The wall time of all recorded runs together, in microseconds (ORT's <c>model_run</c> events).</summary>
    public long RunMicroseconds { get; }

    /// <summary>The kernel time of all nodes together, in microseconds.</summary>
    public long NodeMicroseconds => Nodes.Sum(n => n.Microseconds);

    /// <summary>Kernel time of the nodes whose name starts with <paramref name="prefix"/>, in microseconds.</summary>
    public long MicrosecondsUnder(string prefix) =>
        Nodes.Where(n => n.Node.StartsWith(prefix, StringComparison.Ordinal)).Sum(n => n.Microseconds);

    /// <summary>Kernel time by op type, longest first.</summary>
    public IReadOnlyList<(string OpType, int Nodes, long Microseconds)> ByOpType() =>
        Nodes.GroupBy(n => n.OpType).Select(g => (g.Key, g.Count(), g.Sum(n => n.Microseconds)))
            .OrderByDescending(t => t.Item3).ToList();

    /// <summary>
    /// Reads a profile file, leaving out the first <paramref name="skipRuns"/> runs (the first run of a session also
    /// allocates its buffers); a file that is not an ONNX Runtime trace is an <see cref="OnnxAdadeltaException"/>.
    /// </summary>
    public static OrtProfile Read(string path, int skipRuns = 0)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentOutOfRangeException.ThrowIfNegative(skipRuns);
        try
        {
            using var stream = File.OpenRead(path);
            using var doc = JsonDocument.Parse(stream);
            return Parse(doc.RootElement, path, skipRuns);
        }
        catch (JsonException e) { throw new OnnxAdadeltaException($"{path}: not a JSON trace ({e.Message}).", e); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new OnnxAdadeltaException($"{path}: can't read it ({e.Message}).", e);
        }
    }

    private static OrtProfile Parse(JsonElement root, string path, int skipRuns)
    {
        if (root.ValueKind != JsonValueKind.Array)
            throw new OnnxAdadeltaException($"{path}: an ONNX Runtime profile is a JSON array of trace events; this is a JSON {root.ValueKind}.");
        static long Int(JsonElement e, string key) => e.TryGetProperty(key, out var v) && v.TryGetInt64(out var n) ? n : 0;
        var events = root.EnumerateArray()
            .Where(e => e.ValueKind == JsonValueKind.Object && e.TryGetProperty("cat", out _) && e.TryGetProperty("name", out _))
            .ToList();
        var modelRuns = events.Where(e => e.GetProperty("cat").ValueEquals("Session") && e.GetProperty("name").ValueEquals("model_run"))
            .Select(e => (Start: Int(e, "ts"), Duration: Int(e, "dur"))).OrderBy(r => r.Start).ToList();
        // Events before the end of the last skipped run belong to the skipped runs.
        long cutoff = skipRuns == 0 ? long.MinValue : skipRuns <= modelRuns.Count ? modelRuns[skipRuns - 1].Start + modelRuns[skipRuns - 1].Duration : long.MaxValue;
        var kept = modelRuns.Skip(skipRuns).ToList();
        int runs = kept.Count;
        long runUs = kept.Sum(r => r.Duration);
        var nodes = new Dictionary<string, (string Op, int Runs, long Us)>(StringComparer.Ordinal);
        foreach (var e in events)
        {
            var cat = e.GetProperty("cat");
            var n = e.GetProperty("name").GetString() ?? "";
            long dur = Int(e, "dur");
            if (cat.ValueEquals("Node") && n.EndsWith(KernelSuffix, StringComparison.Ordinal) && Int(e, "ts") >= cutoff)
            {
                var node = n[..^KernelSuffix.Length];
                var op = e.TryGetProperty("args", out var args) && args.ValueKind == JsonValueKind.Object
                    && args.TryGetProperty("op_name", out var o) ? o.GetString() ?? "" : "";
                nodes[node] = nodes.TryGetValue(node, out var t) ? (t.Op, t.Runs + 1, t.Us + dur) : (op, 1, dur);
            }
        }
        var list = nodes.Select(kv => new NodeTime(kv.Key, kv.Value.Op, kv.Value.Runs, kv.Value.Us))
            .OrderByDescending(t => t.Microseconds).ThenBy(t => t.Node, StringComparer.Ordinal).ToList();
        return new OrtProfile(list, runs, runUs);
    }
}
