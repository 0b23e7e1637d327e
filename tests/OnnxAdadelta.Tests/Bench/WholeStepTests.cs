using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using OnnxAdadelta.Bench;

namespace OnnxAdadelta.Tests.Bench;

/// <summary>
/// The whole-step benchmark measures a case end to end (a short run of the README's MLP) and draws its plot. No timings
/// are asserted: only that the measurement is complete and consistent.
/// </summary>
public class WholeStepTests
{
    [Fact]
    public void ACaseReportsStepsPerSecondTheUpdatesShareAndPeakMemory()
    {
        var output = new StringWriter();
        var settings = new WholeStep.Settings("graph", Threads: 1, Ort: [], Blocks: 1, BlockSeconds: 0.05);
        Assert.Equal(0, WholeStep.RunCase("digits-mlp", settings, output));
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var result = JsonSerializer.Deserialize<StepResult>(Assert.Single(lines, l => l.StartsWith("RESULT ", StringComparison.Ordinal))["RESULT ".Length..])!;
        Assert.Equal("digits-mlp", result.Case);
        Assert.Equal(64 * 128 + 128 + 128 * 10 + 10, result.Parameters);
        Assert.InRange(result.UpdateShare, 0.01, 0.99);
        Assert.InRange(result.ProfiledSteps, 5, 200);
        Assert.True(result.StepsPerSecond > 0 && result.MinStepsPerSecond <= result.StepsPerSecond && result.StepsPerSecond <= result.MaxStepsPerSecond);
        Assert.True(result.PeakRssMiB >= result.RssBeforeTrainerMiB && result.RssBeforeTrainerMiB > 0);
        Assert.Contains("Gemm", result.TopOps);
        Assert.Contains(lines, l => l.StartsWith("digits-mlp: kernel time by op type", StringComparison.Ordinal));

        using var dir = new TestData.TempDir();
        var svg = dir.File("steps.svg");
        WholeStepPlot.Save([result, result with { Case = "other", UpdateShare = 0.25 }], svg);
        Assert.Contains("<svg", File.ReadAllText(svg));
        Assert.Contains("| digits MLP 64-128-10, batch 64 | 9,610 |", WholeStepReport.Markdown([result], settings));
        Assert.InRange(result.StepsPeakRssMiB, 1, result.PeakRssMiB);

        // The same case with the fused op: parameters and slots in place, so the trainer's state buffers are half as large
        // (parameters and two slots once instead of twice, plus the counter).
        var fusedOutput = new StringWriter();
        Assert.Equal(0, WholeStep.RunCase("digits-mlp", settings with { Update = "fused" }, fusedOutput));
        var fused = JsonSerializer.Deserialize<StepResult>(fusedOutput.ToString().Split('\n').Single(l => l.StartsWith("RESULT ", StringComparison.Ordinal))["RESULT ".Length..])!;
        Assert.Equal("fused", fused.Update);
        Assert.InRange(fused.UpdateShare, 0.001, 0.99);
        double parameterBytes = 3.0 * 4 * result.Parameters / 1048576;
        Assert.InRange(result.StateMiB, 2 * parameterBytes, 2 * parameterBytes + 0.05);
        Assert.InRange(fused.StateMiB, parameterBytes, parameterBytes + 0.05);
        var table = MemoryReport.Markdown([result], [fused], settings);
        Assert.Contains("| digits MLP 64-128-10, batch 64 | 9,610 | standard ops, ping-pong |", table);
        Assert.Contains("| digits MLP 64-128-10, batch 64 | 9,610 | fused op, in place |", table);
        // The README's command for this table (the same measurement, all cases, each in a child process).
        Assert.Contains("dotnet run -c Release --project tools/OnnxAdadelta.Bench -- --memory --blocks 3 --plot docs/whole-step.svg", File.ReadAllText(Path.Combine(RepoPaths.Root, "README.md")));
        // Both updates in one plot: one bar per case and update, labelled with the update.
        var both = dir.File("both.svg");
        WholeStepPlot.Save([result, fused], both);
        var text = File.ReadAllText(both);
        Assert.Contains("standard-op (graph) and fused update", text);
        Assert.Contains($"{fused.Case}, fused", text);
    }

    [Fact]
    public void UnknownSettingsAndUpdateModesAreRefused()
    {
        using var options = new SessionOptions();
        var e = Assert.Throws<ArgumentException>(() => WholeStep.Configure(options, ["threads=2"]));
        Assert.Contains("unknown setting 'threads'", e.Message);
        WholeStep.Configure(options, ["opt=basic", "mempattern=off", "arena=off", "spinning=off"]);
        Assert.Equal(GraphOptimizationLevel.ORT_ENABLE_BASIC, options.GraphOptimizationLevel);
        Assert.False(options.EnableMemoryPattern);
        Assert.False(options.EnableCpuMemArena);
        e = Assert.Throws<ArgumentException>(() => WholeStep.RunCase("digits-mlp", new WholeStep.Settings("ping", null, []), TextWriter.Null));
        Assert.Contains("--update ping: expected graph or fused", e.Message);
        Assert.Throws<ArgumentException>(() => StepCase.Named("resnet"));
    }
}
