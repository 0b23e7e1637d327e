// OnnxAdadelta.Bench: how fast the in-graph Adadelta update runs on ONNX Runtime (CPU), against this machine's limit.
//
// What is measured: the throughput, in million parameters updated per second (Mparam/s), of one Adadelta step over
// three shapes (1 x 1M, 1 x 16M and 200 x 10k float32 parameters), two ways:
//   * InGraphUpdate: one Trainer.Step of the step model AdadeltaRewrite makes from a training graph whose gradients
//     are fixed tensors held by ONNX Runtime (UpdateGraphs), so the step runs the update and nothing else: state stays
//     in ORT buffers (ping-pong IOBinding), the only data fed is two 1-element inputs, and no part of the update can be
//     constant-folded (see UpdateGraphs.Build and the --check mode).
//   * FusedOpUpdate: the same Trainer.Step with the step model's update swapped for the fused op
//     ai.onnxadadelta.AdadeltaUpdate (one multi-tensor node, parameters and state bound in place).
//   * FusedLoop (the baseline): the same float32 update written as one SIMD pass in C# (FusedAdadelta.Step).
//
// Why the fused loop is the reference point: the update is element-wise with almost no arithmetic per byte, so its
// speed is set by memory traffic. One fused pass must read g, p, accum_grad and accum_var and write p, accum_grad and
// accum_var: 28 bytes per parameter, the least any implementation can move. The graph runs ~16 separate element-wise
// kernels, each of which reads and writes whole tensors, so it moves several times more. The loop's throughput (and
// the bandwidth it implies at 28 B/param) is therefore what this machine can do, and "in-graph / loop" says how much
// of it the in-graph update achieves. The loop produces bit-identical results to ReferenceAdadelta (checked by
// --check and by the unit tests), so both sides compute the same thing.
//
// Usage (from the repository root):
//   dotnet run -c Release --project tools/OnnxAdadelta.Bench                 all shapes, full job (about 1 min on 2 cores)
//   dotnet run -c Release --project tools/OnnxAdadelta.Bench -- --quick      smoke run: fewer, shorter iterations
//   dotnet run -c Release --project tools/OnnxAdadelta.Bench -- --check      each case a few steps, no BenchmarkDotNet;
//                                                                             verifies results; exit code 1 on a mismatch
//   dotnet run -c Release --project tools/OnnxAdadelta.Bench -- --whole-step [--update graph|fused] [--cases a,b] [--blocks N]
//                                  whole training steps of the README's CNN and MLP and a 512-4096-4096-10 MLP: steps/s,
//                                  the update's share of the step (ORT profile), peak memory; one child process per case
//   dotnet run -c Release --project tools/OnnxAdadelta.Bench -- --memory [--cases a,b] [--blocks N]
//                                  the same cases with the standard-op update (state ping-pong) and the fused op (state in
//                                  place), each in its own process: state buffers and peak RSS, as README table rows
//   dotnet run -c Release --project tools/OnnxAdadelta.Bench -- --distributed
//                                  data-parallel training under mpirun on 1, 2 and 4 ranks (DistributedBench)
//   dotnet run -c Release --project tools/OnnxAdadelta.Bench -- --build-training 2000,20000,200000
//                                                                             build-training's time on generated chains of
//                                                                             that many nodes (default those three sizes)
//   Other arguments go to BenchmarkDotNet, for example: -- --filter '*FusedLoop*'
using System.Diagnostics;
using BenchmarkDotNet.Running;
using OnnxAdadelta.Bench;

var rest = args.ToList();
bool check = rest.Remove("--check");
bool quick = rest.Remove("--quick");
int scaling = rest.IndexOf("--build-training");
if (scaling >= 0)
{
    var sizes = scaling + 1 < rest.Count ? BuildTrainingScaling.ParseSizes(rest[scaling + 1]) : BuildTrainingScaling.DefaultSizes;
    BuildTrainingScaling.Run(sizes, Console.Out);
    return 0;
}
bool wholeStep = rest.Remove("--whole-step");
bool memory = rest.Remove("--memory");
string? Take(string flag)
{
    int i = rest.IndexOf(flag);
    if (i < 0) return null;
    if (i + 1 >= rest.Count) throw new ArgumentException($"{flag} needs a value.");
    var v = rest[i + 1];
    rest.RemoveRange(i, 2);
    return v;
}
var stepCase = Take("--step-case");
if (wholeStep || memory || stepCase is not null)
{
    var ort = new List<string>();
    while (Take("--ort") is { } o) ort.Add(o);
    var settings = new WholeStep.Settings(
        Update: Take("--update") ?? "graph",
        Threads: Take("--threads") is { } t ? int.Parse(t, System.Globalization.CultureInfo.InvariantCulture) : null,
        Ort: ort,
        Blocks: Take("--blocks") is { } b ? int.Parse(b, System.Globalization.CultureInfo.InvariantCulture) : 5,
        ProfileFolder: Take("--profiles"));
    var cases = Take("--cases")?.Split(',') ?? StepCase.All.Select(c => c.Name).ToArray();
    var plotPath = Take("--plot");
    if (rest.Count > 0) throw new ArgumentException($"Unknown arguments: {string.Join(" ", rest)}");
    if (stepCase is not null) return WholeStep.RunCase(stepCase, settings, Console.Out);
    if (memory)
    {
        var graph = WholeStep.RunAll(cases, settings with { Update = "graph" }, Console.Out);
        var fused = WholeStep.RunAll(cases, settings with { Update = "fused" }, Console.Out);
        foreach (var (r, s) in new[] { (graph, settings with { Update = "graph" }), (fused, settings with { Update = "fused" }) })
        {
            Console.WriteLine();
            Console.WriteLine(WholeStepReport.Markdown(r, s));
        }
        Console.WriteLine(MemoryReport.Markdown(graph, fused, settings));
        if (plotPath is not null)
        {
            WholeStepPlot.Save([.. graph.Zip(fused).SelectMany(p => new[] { p.First, p.Second })], plotPath);
            Console.WriteLine($"wrote {plotPath}");
        }
        return 0;
    }
    var results = WholeStep.RunAll(cases, settings, Console.Out);
    Console.WriteLine();
    Console.WriteLine(WholeStepReport.Markdown(results, settings));
    if (plotPath is not null)
    {
        WholeStepPlot.Save(results, plotPath);
        Console.WriteLine($"wrote {plotPath}");
    }
    return 0;
}

if (rest.Remove("--distributed-rank")) return DistributedBench.Rank();
if (rest.Remove("--distributed")) return DistributedBench.Run(Console.Out);

if (check)
{
    var problems = BenchCheck.Run(UpdateShape.All, Console.Out).Concat(BenchCheck.CheckOptionCases(new UpdateShape(3, 1037, "3 x 1037"), 7, Console.Out)).ToList();
    Console.WriteLine(problems.Count == 0 ? "check passed" : $"check FAILED: {problems.Count} problem(s)");
    return problems.Count == 0 ? 0 : 1;
}

var clock = Stopwatch.StartNew();
var summary = BenchmarkRunner.Run<AdadeltaUpdateBenchmarks>(BenchConfig.Create(quick), [.. rest]);
Console.WriteLine();
Console.WriteLine(ReadmeTable.Markdown(summary));
Console.WriteLine($"Total time: {clock.Elapsed.TotalSeconds:F0} s");
return summary.Reports.All(r => r.Success) && !summary.HasCriticalValidationErrors ? 0 : 1;
