using System.Diagnostics;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Reference;
using OnnxAdadelta.Training;
using OnnxAdadelta.Runtime;

namespace OnnxAdadelta.Bench;

/// <summary>
/// The <c>--check</c> mode: runs each benchmark case a few times without BenchmarkDotNet and verifies that both compute
/// the Adadelta update they claim to, so that the throughput figures mean what they say.
/// </summary>
public static class BenchCheck
{
    /// <summary>Steps each case runs before its state is compared.</summary>
    public const int Steps = 3;

    /// <summary>Elements compared at the start and at the end of the first and the last tensor.</summary>
    public const int SliceLength = 1001;

    private static readonly HashSet<string> ElementWise = new(["Add", "Sub", "Mul", "Div", "Sqrt"], StringComparer.Ordinal);

    /// <summary>
    /// For each shape: checks that ONNX Runtime folded none of the update into constants (<see cref="FoldingProblem"/>);
    /// runs <see cref="Steps"/> steps of both cases; and checks, on slices of the first and last tensor, that the fused
    /// loop's parameters and accumulators are bit-identical to <see cref="ReferenceAdadelta"/>'s, and so are the
    /// trainer's. Writes one line per shape (with the time of the last step of each case, for orientation only) and one
    /// per problem to <paramref name="log"/>.
    /// </summary>
    /// <returns>The problems found; empty when every check passed.</returns>
    public static IReadOnlyList<string> Run(IEnumerable<UpdateShape> shapes, TextWriter log)
    {
        var problems = new List<string>();
        foreach (var shape in shapes)
        {
            var found = new List<string>();
            if (FoldingProblem(AdadeltaRewrite.Apply(UpdateGraphs.Build(shape), AdadeltaUpdateBenchmarks.Options)) is { } folded)
                found.Add($"{shape}: {folded}");

            var bench = new AdadeltaUpdateBenchmarks { Shape = shape };
            try
            {
                bench.SetupInGraph();
                bench.SetupFusedOp();
                bench.SetupFusedLoop();
                var graphTime = TimeSteps(() => bench.InGraphUpdate());
                var opTime = TimeSteps(() => bench.FusedOpUpdate());
                var loopTime = TimeSteps(bench.FusedLoop);
                found.AddRange(CompareWithReference(shape, bench));
                log.WriteLine($"{shape}: {shape.Parameters:N0} parameters; one step in-graph {graphTime.TotalMilliseconds:F2} ms, " +
                    $"fused op {opTime.TotalMilliseconds:F2} ms, fused loop {loopTime.TotalMilliseconds:F2} ms; {(found.Count == 0 ? "OK" : "FAILED")}");
            }
            finally { bench.Cleanup(); }
            foreach (var f in found) log.WriteLine("  " + f);
            problems.AddRange(found);
        }
        return problems;
    }

    private static TimeSpan TimeSteps(Action step)
    {
        var watch = new Stopwatch();
        for (int s = 0; s < Steps; s++)
        {
            watch.Restart();
            step();
            watch.Stop();
        }
        return watch.Elapsed;
    }

    /// <summary>
    /// Loads <paramref name="stepModel"/> with the session options the trainer uses, saves the graph ONNX Runtime
    /// optimized, and returns a problem when that graph has fewer element-wise nodes (Add, Sub, Mul, Div, Sqrt) than the
    /// step model or initializers the step model has not: signs that part of the update was folded into constants.
    /// </summary>
    public static string? FoldingProblem(ModelProto stepModel)
    {
        var path = Path.Combine(Path.GetTempPath(), $"onnx-adadelta-bench-{Environment.ProcessId}-{Guid.NewGuid():N}.onnx");
        try
        {
            using (var options = OrtSessions.Options(Device.Cpu))
            {
                options.OptimizedModelFilePath = path;
                using var session = new InferenceSession(stepModel.ToByteArray(), options);
            }
            ModelProto optimized;
            using (var file = File.OpenRead(path)) optimized = ModelProto.Parser.ParseFrom(file);
            int before = stepModel.Graph.Node.Count(n => ElementWise.Contains(n.OpType));
            int after = optimized.Graph.Node.Count(n => ElementWise.Contains(n.OpType));
            var known = stepModel.Graph.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
            // A graph output ORT computes once (a constant learning rate's output) becomes an initializer of its name: not the update.
            known.UnionWith(stepModel.Graph.Output.Select(o => o.Name));
            var added = optimized.Graph.Initializer.Select(t => t.Name).Where(n => !known.Contains(n)).ToList();
            if (after < before || added.Count > 0)
                return $"ONNX Runtime folded part of the update: {before} element-wise nodes became {after}; " +
                    $"new constants: {(added.Count == 0 ? "none" : string.Join(", ", added.Take(5)))}.";
            return null;
        }
        finally { File.Delete(path); }
    }

    private static IEnumerable<string> CompareWithReference(UpdateShape shape, AdadeltaUpdateBenchmarks bench)
    {
        var state = bench.Trainer.ReadState();
        var fusedState = bench.FusedTrainer.ReadState();
        var slots = bench.Trainer.Info.State.Where(s => s.Kind == StateKind.Slot)
            .ToDictionary(s => (s.Parameter!, s.Slot!), s => s.Input);
        int length = Math.Min(SliceLength, shape.Elements);
        foreach (int t in new[] { 0, shape.Tensors - 1 }.Distinct())
        foreach (int start in new[] { 0, shape.Elements - length }.Distinct())
        {
            string name = UpdateGraphs.Parameter(t);
            var gradient = UpdateGraphs.GradientValues(shape, t).AsSpan(start, length).ToArray();
            var reference = new ReferenceAdadelta(AdadeltaUpdateBenchmarks.Options,
                new Dictionary<string, float[]> { [name] = UpdateGraphs.InitialParameter(shape, t).AsSpan(start, length).ToArray() });
            for (int s = 0; s < Steps; s++) reference.Step(new Dictionary<string, float[]> { [name] = gradient });

            var expected = new[]
            {
                ("p", reference.Parameters[name]),
                (ScaleByAdadelta.AccumGrad, reference.State(name, ScaleByAdadelta.AccumGrad)),
                (ScaleByAdadelta.AccumVar, reference.State(name, ScaleByAdadelta.AccumVar)),
            };
            var loop = new[] { bench.LoopParameters[t], bench.LoopAccumGrad[t], bench.LoopAccumVar[t] };
            var graph = new[]
            {
                state[name].ToFloatArray(),
                state[slots[(name, ScaleByAdadelta.AccumGrad)]].ToFloatArray(),
                state[slots[(name, ScaleByAdadelta.AccumVar)]].ToFloatArray(),
            };
            var op = new[]
            {
                fusedState[name].ToFloatArray(),
                fusedState[slots[(name, ScaleByAdadelta.AccumGrad)]].ToFloatArray(),
                fusedState[slots[(name, ScaleByAdadelta.AccumVar)]].ToFloatArray(),
            };
            for (int k = 0; k < expected.Length; k++)
            {
                var (what, want) = expected[k];
                if (FirstDifference(want, op[k].AsSpan(start, length)) is { } f)
                    yield return $"fused op, {name} {what}[{start + f}]: {op[k][start + f]:R}, reference {want[f]:R}";
                if (FirstDifference(want, loop[k].AsSpan(start, length)) is { } i)
                    yield return $"fused loop, {name} {what}[{start + i}]: {loop[k][start + i]:R}, reference {want[i]:R}";
                if (FirstDifference(want, graph[k].AsSpan(start, length)) is { } j)
                    yield return $"in-graph, {name} {what}[{start + j}]: {graph[k][start + j]:R}, reference {want[j]:R}";
            }
        }
    }

    /// <summary>
    /// Trains the step model of <paramref name="shape"/> with each of <see cref="OptionCases.All"/> for
    /// <paramref name="steps"/> steps with the fused op and checks every parameter and slot against the reference, bit
    /// for bit (<see cref="NumericsCheck"/>). Writes one line per case to <paramref name="log"/>.
    /// </summary>
    /// <returns>The problems found; empty when every case is bit-identical.</returns>
    public static IReadOnlyList<string> CheckOptionCases(UpdateShape shape, int steps, TextWriter log)
    {
        var problems = new List<string>();
        foreach (var (name, options) in OptionCases.All)
        {
            var step = AdadeltaRewrite.Apply(UpdateGraphs.Build(shape), options);
            var errors = NumericsCheck.Run(step, steps, _ => UpdateGraphs.Batch(shape), update: UpdateMode.Fused);
            var bad = errors.Where(e => e.Compared == 0 || e.MaxUlp != 0).Select(e => $"fused op, {name}: {e.Name} {e.MaxUlp} ULP ({e.Compared} compared)").ToList();
            log.WriteLine($"options '{name}': {errors.Count} tensors over {steps} steps, {(bad.Count == 0 ? "bit-identical to the reference" : "FAILED")}");
            foreach (var b in bad) log.WriteLine("  " + b);
            problems.AddRange(bad);
        }
        return problems;
    }

    /// <summary>The first index where the two differ bitwise, or null.</summary>
    public static int? FirstDifference(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual)
    {
        if (expected.Length != actual.Length) return Math.Min(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i])) return i;
        return null;
    }
}
