using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Bench;

/// <summary>What one whole-step case measured (one child process per case, so that its peak memory is its own).</summary>
/// <param name="Case">The case name.</param>
/// <param name="Update">The update mode (graph: the step model's standard ops).</param>
/// <param name="StepsPerSecond">Median over the timed blocks.</param>
/// <param name="MinStepsPerSecond">Slowest block.</param>
/// <param name="MaxStepsPerSecond">Fastest block.</param>
/// <param name="TimedSteps">Steps in all timed blocks.</param>
/// <param name="UpdateShare">The update's ('Adadelta/' nodes) share of the kernel time in the profiled steps.</param>
/// <param name="ProfiledSteps">Steps in the profile (after its first, which is left out).</param>
/// <param name="ProfiledStepMs">Mean wall time of a profiled step, ms (ORT's model_run events).</param>
/// <param name="Parameters">Trainable parameters.</param>
/// <param name="RssBeforeTrainerMiB">Resident memory once the step model and data are loaded, before the ORT session.</param>
/// <param name="PeakRssMiB">The process's peak resident memory after the timed steps (VmHWM).</param>
/// <param name="TopOps">The op types with the most kernel time, with their shares.</param>
/// <param name="StepsPeakRssMiB">Peak resident memory while the steps ran: VmHWM reset (Linux <c>/proc/self/clear_refs</c>)
/// once the trainer is built, read after the timed steps; the state, the session's buffers and the steps' own peak, without
/// the transient cost of building the step model and the session. -1 where the reset is not available.</param>
/// <param name="StateMiB">The trainer's CPU buffers for parameters and optimizer state (<see cref="Trainer.StateMemoryBytes"/>).</param>
public sealed record StepResult(string Case, string Update, double StepsPerSecond, double MinStepsPerSecond, double MaxStepsPerSecond,
    int TimedSteps, double UpdateShare, int ProfiledSteps, double ProfiledStepMs, long Parameters, long RssBeforeTrainerMiB, long PeakRssMiB, string TopOps,
    long StepsPeakRssMiB, double StateMiB);

/// <summary>
/// Whole training steps, as <c>train</c> runs them: batch gathered from the dataset, one session run of the step model
/// (forward, backward, update), loss read back. Steps per second over timed blocks of about a second, the update's
/// share of the step from ONNX Runtime's profile, and peak memory.
/// </summary>
public static class WholeStep
{
    private const string ResultPrefix = "RESULT ";

    /// <summary>Settings of one measurement.</summary>
    /// <param name="Update">The update mode: graph (the step model's standard ops, state ping-pong) or fused (the fused op, state in place).</param>
    /// <param name="Threads">ONNX Runtime intra-op threads; null for its default.</param>
    /// <param name="Ort">Extra session settings, KEY=VALUE (see <see cref="Configure"/>).</param>
    /// <param name="Blocks">Timed blocks.</param>
    /// <param name="BlockSeconds">Target length of one block.</param>
    /// <param name="ProfileFolder">Where to keep each case's ORT profile (CASE.json); null to delete them.</param>
    public sealed record Settings(string Update, int? Threads, IReadOnlyList<string> Ort, int Blocks = 5, double BlockSeconds = 1.0, string? ProfileFolder = null);

    /// <summary>Measures every case named in <paramref name="cases"/>, each in a child process; returns the results.</summary>
    public static List<StepResult> RunAll(IEnumerable<string> cases, Settings settings, TextWriter log)
    {
        var results = new List<StepResult>();
        foreach (var name in cases)
        {
            var args = new List<string> { "--step-case", name, "--update", settings.Update, "--blocks", settings.Blocks.ToString(CultureInfo.InvariantCulture) };
            if (settings.Threads is { } t) args.AddRange(["--threads", t.ToString(CultureInfo.InvariantCulture)]);
            foreach (var o in settings.Ort) args.AddRange(["--ort", o]);
            if (settings.ProfileFolder is { } folder) args.AddRange(["--profiles", folder]);
            var psi = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, UseShellExecute = false };
            if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") psi.ArgumentList.Add(typeof(WholeStep).Assembly.Location);
            foreach (var a in args) psi.ArgumentList.Add(a);
            using var child = Process.Start(psi)!;
            StepResult? result = null;
            while (child.StandardOutput.ReadLine() is { } line)
            {
                if (line.StartsWith(ResultPrefix, StringComparison.Ordinal)) result = JsonSerializer.Deserialize<StepResult>(line[ResultPrefix.Length..]);
                else log.WriteLine(line);
            }
            child.WaitForExit();
            if (child.ExitCode != 0 || result is null) throw new InvalidOperationException($"Case {name} failed (exit code {child.ExitCode}).");
            results.Add(result);
        }
        return results;
    }

    /// <summary>Measures one case in this process and prints its result line.</summary>
    public static int RunCase(string name, Settings settings, TextWriter output)
    {
        var c = StepCase.Named(name);
        var update = settings.Update switch
        {
            "graph" => UpdateMode.Graph,
            "fused" => UpdateMode.Fused,
            _ => throw new ArgumentException($"--update {settings.Update}: expected graph or fused."),
        };
        var (inference, dataPath) = c.Build();
        var step = StepCase.StepModel(inference);
        var data = Dataset.Open(dataPath, TrainingRun.InputSpecs(step));
        var stateValues = OnnxAdadelta.Optimizers.StepModelState.Values(step, OnnxAdadelta.Optimizers.StepModelInfo.Read(step, "the step model"));
        long parameters = StepModelParameters(step).Sum(p => stateValues[p].Dims.Aggregate(1L, (a, d) => a * d));
        GC.Collect();
        long before = Process.GetCurrentProcess().WorkingSet64;

        var options = new TrainerOptions { Threads = settings.Threads, ConfigureSession = o => Configure(o, settings.Ort), Update = update };
        var rates = new List<double>();
        int timed = 0;
        long peak, stepsPeak;
        double stateMiB;
        using (var trainer = new Trainer(step, options))
        {
            long loadPeak = PeakRss();
            bool reset = ResetPeakRss();
            stateMiB = trainer.StateMemoryBytes / 1048576.0;
            // Warm-up: at least 3 steps and about half a second; it also sizes the timed blocks.
            var clock = Stopwatch.StartNew();
            int warm = 0;
            while (warm < 3 || clock.Elapsed.TotalSeconds < 0.5) { Run(trainer, data, c.BatchSize, 1); warm++; }
            int perBlock = Math.Max(3, (int)(warm / clock.Elapsed.TotalSeconds * settings.BlockSeconds));
            for (int b = 0; b < settings.Blocks; b++)
            {
                clock.Restart();
                Run(trainer, data, c.BatchSize, perBlock);
                rates.Add(perBlock / clock.Elapsed.TotalSeconds);
                timed += perBlock;
            }
            peak = PeakRss();
            stepsPeak = reset ? peak : -1;
            peak = Math.Max(peak, loadPeak);
        }

        // The profile: a separate trainer, so the timed steps ran without the profiler's cost.
        var profilePath = settings.ProfileFolder is { } keep
            ? Path.Combine(Directory.CreateDirectory(keep).FullName, $"{c.Name}.json")
            : Path.Combine(Path.GetTempPath(), $"onnx-adadelta-bench-{c.Name}-{Environment.ProcessId}.json");
        int profiled = Math.Clamp((int)(rates.Order().ElementAt(rates.Count / 2) * 2), 5, 200);
        OrtProfile profile;
        using (var trainer = new Trainer(step, options with { ProfilePath = profilePath }))
        {
            Run(trainer, data, c.BatchSize, profiled + 1);
            trainer.EndProfiling();
            profile = OrtProfile.Read(profilePath, skipRuns: 1);
            if (settings.ProfileFolder is null) File.Delete(profilePath);
        }
        long total = profile.NodeMicroseconds;
        double share = total > 0 ? (double)profile.MicrosecondsUnder(step.StepOptimizerName() + "/") / total : 0;
        var top = string.Join(", ", profile.ByOpType().Take(8).Select(t => $"{t.OpType} {100.0 * t.Microseconds / total:F1}% ({t.Nodes})"));
        output.WriteLine($"{c.Name}: kernel time by op type (nodes): {top}");
        foreach (var n in profile.Nodes.Take(12))
            output.WriteLine($"  {n.Microseconds / (double)n.Runs / 1000.0,9:F3} ms  {n.OpType,-22} {n.Node}");

        var sorted = rates.Order().ToList();
        var result = new StepResult(c.Name, settings.Update, sorted[sorted.Count / 2], sorted[0], sorted[^1], timed, share, profile.Runs,
            profile.Runs > 0 ? profile.RunMicroseconds / 1000.0 / profile.Runs : 0, parameters, before >> 20, peak >> 20, top, stepsPeak < 0 ? -1 : stepsPeak >> 20, stateMiB);
        output.WriteLine(ResultPrefix + JsonSerializer.Serialize(result));
        return 0;
    }

    private static HashSet<string> StepModelParameters(OnnxAdadelta.Onnx.Proto.ModelProto step) =>
        Optimizers.StepModelInfo.Read(step, "the step model").Parameters.ToHashSet(StringComparer.Ordinal);

    private static string StepOptimizerName(this OnnxAdadelta.Onnx.Proto.ModelProto step) => Optimizers.StepModelInfo.Read(step, "the step model").Optimizer.Name;

    private static void Run(Trainer trainer, Dataset data, int batchSize, int steps) =>
        TrainingRun.Run(trainer, data, new TrainingRunOptions { Steps = steps, BatchSize = batchSize, Shuffle = true, Seed = 1 });

    /// <summary>
    /// Resets this process's peak resident set (VmHWM) to its current resident set by writing 5 to
    /// <c>/proc/self/clear_refs</c> (Linux); false where that is not possible, and then the peak is that of the whole run.
    /// </summary>
    private static bool ResetPeakRss()
    {
        if (!OperatingSystem.IsLinux()) return false;
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    /// <summary>The peak resident set of this process (VmHWM on Linux), in bytes.</summary>
    private static long PeakRss()
    {
        using var self = Process.GetCurrentProcess();
        self.Refresh();
        return self.PeakWorkingSet64;
    }

    /// <summary>
    /// Applies KEY=VALUE session settings: opt=disabled|basic|extended|all, mempattern=on|off, arena=on|off,
    /// spinning=on|off (session.intra_op.allow_spinning), mode=sequential|parallel.
    /// </summary>
    public static void Configure(SessionOptions o, IReadOnlyList<string> settings)
    {
        foreach (var s in settings)
        {
            var (key, value) = s.Split('=', 2) is [var k, var v] ? (k, v) : throw new ArgumentException($"--ort {s}: expected KEY=VALUE.");
            bool On() => value switch { "on" => true, "off" => false, _ => throw new ArgumentException($"--ort {s}: expected on or off.") };
            switch (key)
            {
                case "opt":
                    o.GraphOptimizationLevel = value switch
                    {
                        "disabled" => GraphOptimizationLevel.ORT_DISABLE_ALL,
                        "basic" => GraphOptimizationLevel.ORT_ENABLE_BASIC,
                        "extended" => GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                        "all" => GraphOptimizationLevel.ORT_ENABLE_ALL,
                        _ => throw new ArgumentException($"--ort {s}: expected disabled, basic, extended or all."),
                    };
                    break;
                case "mempattern": o.EnableMemoryPattern = On(); break;
                case "arena": o.EnableCpuMemArena = On(); break;
                case "spinning": o.AddSessionConfigEntry("session.intra_op.allow_spinning", On() ? "1" : "0"); break;
                case "mode": o.ExecutionMode = value == "parallel" ? ExecutionMode.ORT_PARALLEL : ExecutionMode.ORT_SEQUENTIAL; break;
                default: throw new ArgumentException($"--ort {s}: unknown setting '{key}' (opt, mempattern, arena, spinning, mode).");
            }
        }
    }
}
