using System.Diagnostics;
using System.Globalization;
using OnnxAdadelta.Gradients;

namespace OnnxAdadelta.Bench;

/// <summary>
/// How build-training's time grows with the model: <c>GradientGraphBuilder.Build</c>
/// (mse loss on <c>y</c>) on generated chains (<see cref="ChainModels"/>) of each size, timed once each in one process.
/// </summary>
public static class BuildTrainingScaling
{
    /// <summary>The sizes measured by default.</summary>
    public static IReadOnlyList<int> DefaultSizes { get; } = [2_000, 20_000, 200_000];

    /// <summary>Parses <c>2000,20000</c>.</summary>
    public static IReadOnlyList<int> ParseSizes(string text) =>
        text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(s =>
            int.TryParse(s.Replace("_", ""), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n >= 2 ? n
            : throw new ArgumentException($"--build-training: '{s}' is not a node count of at least 2 (expected a list such as 2000,20000)."))
            .ToList();

    /// <summary>
    /// Builds the training graph of a chain of each size; prints a markdown table: nodes, nodes of the training graph,
    /// wall-clock seconds, CPU seconds of the process (all threads: on a shared machine the steadier figure), CPU
    /// milliseconds per 1,000 nodes (flat when the build is linear), and the process's peak working set so far.
    /// </summary>
    public static void Run(IReadOnlyList<int> sizes, TextWriter output)
    {
        ArgumentNullException.ThrowIfNull(sizes);
        ArgumentNullException.ThrowIfNull(output);
        // A small build first, so that JIT compilation and ONNX Runtime's start-up are not counted in the first row.
        GradientGraphBuilder.Build(ChainModels.Build(20), Options);
        output.WriteLine("| nodes | training-graph nodes | seconds | CPU seconds | CPU ms per 1,000 nodes | peak working set MB |");
        output.WriteLine("|---:|---:|---:|---:|---:|---:|");
        foreach (var n in sizes)
        {
            var model = ChainModels.Build(n);
            GC.Collect();
            using var process = Process.GetCurrentProcess();
            var cpu0 = process.TotalProcessorTime;
            var clock = Stopwatch.StartNew();
            var training = GradientGraphBuilder.Build(model, Options);
            clock.Stop();
            process.Refresh();
            var cpu = (process.TotalProcessorTime - cpu0).TotalSeconds;
            output.WriteLine(FormattableString.Invariant(
                $"| {n:N0} | {training.Graph.Node.Count:N0} | {clock.Elapsed.TotalSeconds:F1} | {cpu:F1} | {cpu * 1e6 / n:F0} | {process.PeakWorkingSet64 / (1 << 20):N0} |"));
            output.Flush();
        }
    }

    private static BuildTrainingOptions Options => new() { Loss = LossKind.Mse, Output = ChainModels.Output };
}
