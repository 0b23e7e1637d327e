using System.Diagnostics;
using System.Globalization;
using OnnxAdadelta.Distributed;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Bench;

/// <summary>
/// Data-parallel training under mpirun: the all-reduce time per call against the gradient size, steps/s of the README
/// MLP and CNN on 1, 2 and 4 ranks (one intra-op thread each) with the graph update and with the fused update, and how
/// far the runs land from plain single-process training after 50 and 200 steps. <c>--distributed</c> launches <c>mpirun -np N</c> over this same
/// program (<c>--distributed-rank</c>) for N = 1, 2, 4, collects rank 0's lines, and prints the tables.
/// </summary>
public static class DistributedBench
{
    /// <summary>What starts each of rank 0's result lines in the job's output.</summary>
    public const string Prefix = "RESULT ";
    private static readonly int[] Sizes = [1 << 10, 1 << 14, 1 << 18, 1 << 20, 1 << 22];
    private const int Steps = 200;
    private const int Warmup = 20;
    private const int Repeats = 3;

    /// <summary>The driver: one mpirun job per rank count; returns the exit code.</summary>
    public static int Run(TextWriter output)
    {
        var mpirun = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, "mpirun")).FirstOrDefault(File.Exists);
        if (mpirun is null)
        {
            output.WriteLine("--distributed needs Open MPI's mpirun on PATH (apt-get install openmpi-bin libopenmpi-dev).");
            return 1;
        }
        var lines = new List<string[]>();
        foreach (var ranks in new[] { 1, 2, 4 })
        {
            var start = new ProcessStartInfo(mpirun) { RedirectStandardOutput = true };
            foreach (var a in new[] { "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", ranks.ToString(CultureInfo.InvariantCulture),
                Environment.ProcessPath!, typeof(DistributedBench).Assembly.Location, "--distributed-rank" }) start.ArgumentList.Add(a);
            start.Environment["OMPI_MCA_btl_vader_single_copy_mechanism"] = "none";
            // Ranks waiting in a collective yield the core instead of spinning (the ranks outnumber the cores here).
            start.Environment["OMPI_MCA_mpi_yield_when_idle"] = "1";
            using var process = Process.Start(start)!;
            var text = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            if (process.ExitCode != 0)
            {
                output.WriteLine($"mpirun -np {ranks} failed (exit code {process.ExitCode}):\n{text}");
                return 1;
            }
            // Rank 0's lines; mpirun may interleave other output on the same line, so the prefix is looked for anywhere.
            lines.AddRange(ResultLines(text));
        }
        WriteTables(lines, output);
        return 0;
    }

    /// <summary>Rank 0's result lines in a job's output, split into fields (the prefix may follow other output on its line).</summary>
    public static IEnumerable<string[]> ResultLines(string jobOutput) =>
        jobOutput.Split('\n').Where(l => l.Contains(Prefix, StringComparison.Ordinal)).Select(l => l[(l.IndexOf(Prefix, StringComparison.Ordinal) + Prefix.Length)..].Trim().Split(' '));

    /// <summary>The all-reduce table and the training table, from the result lines of every job.</summary>
    public static void WriteTables(IReadOnlyList<string[]> lines, TextWriter output)
    {
        output.WriteLine("All-reduce (MPI_Allreduce, float32 sum, in place), milliseconds per call (median):");
        output.WriteLine();
        output.WriteLine("| values | bytes | 2 ranks | 4 ranks |");
        output.WriteLine("|---:|---:|---:|---:|");
        foreach (var size in Sizes)
        {
            string Ms(int r) => lines.FirstOrDefault(l => l[0] == "allreduce" && l[1] == r.ToString(CultureInfo.InvariantCulture) && l[2] == size.ToString(CultureInfo.InvariantCulture))?[3] ?? "–";
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {size:N0} | {size * 4L:N0} | {Ms(2)} | {Ms(4)} |"));
        }
        output.WriteLine();
        output.WriteLine($"Training steps/s (global batch 64; from the median step time of {Repeats} runs per update mode, taking turns, {Steps - Warmup} steps each after {Warmup}), median all-reduce time per step, relative parameter difference from one process:");
        output.WriteLine();
        output.WriteLine("| model | ranks | update | gradient values | steps/s | all-reduce ms/step | difference after 50 | after 200 |");
        output.WriteLine("|---|---:|---|---:|---:|---:|---:|---:|");
        foreach (var l in lines.Where(l => l[0] == "steps"))
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {l[2]} | {l[1]} | {l[3]} | {int.Parse(l[4], CultureInfo.InvariantCulture):N0} | {l[5]} | {l[6]} | {l[7]} | {l[8]} |"));
    }

    /// <summary>One rank of the job (launched by <see cref="Run"/>): measures and prints rank 0's results.</summary>
    public static int Rank()
    {
        using var mpi = new MpiCollective();
        void Report(string line)
        {
            if (mpi.Rank == 0) Console.WriteLine(Prefix + line);
        }
        var inv = CultureInfo.InvariantCulture;

        if (mpi.Size > 1)
        {
            foreach (var size in Sizes)
            {
                var buffer = new float[size];
                int reps = Math.Clamp((1 << 24) / size, 5, 200);
                var times = new double[reps];
                mpi.Barrier();
                for (int i = 0; i < reps; i++)
                {
                    var clock = Stopwatch.StartNew();
                    mpi.AllReduceSum(buffer);
                    times[i] = clock.Elapsed.TotalMilliseconds;
                }
                Array.Sort(times);
                Report(string.Create(inv, $"allreduce {mpi.Size} {size} {times[reps / 2]:F3}"));
            }
        }

        foreach (var name in new[] { "mlp", "cnn" })
        {
            var inference = ModelIO.Load($"models/digits-{name}.onnx");
            var step = AdadeltaRewrite.Apply(GradientGraphBuilder.Build(inference, new BuildTrainingOptions { Loss = LossKind.CrossEntropy, Output = "logits" }), new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) });
            var data = Dataset.Open("models/data/digits-train.npz", TrainingRun.InputSpecs(step));
            var run = new TrainingRunOptions { Steps = Steps, BatchSize = 64, Shuffle = true, Seed = 5 };
            // Plain single-process training (rank 0 alone), the reference of both update modes.
            IReadOnlyDictionary<string, OnnxAdadelta.Onnx.Proto.TensorProto>? plain50 = null, plain200 = null;
            if (mpi.Rank == 0)
            {
                using var plain = new Trainer(step, new TrainerOptions { Threads = 1 });
                TrainingRun.Run(plain, data, run with { Steps = 50 });
                plain50 = plain.ReadState();
                TrainingRun.Run(plain, data, run with { Steps = Steps - 50 });
                plain200 = plain.ReadState();
            }
            // The two update modes take turns, Repeats runs each, so that a change in the machine's load hits both alike;
            // the rate is from the median step time (after the warm-up steps of each run), which a descheduled step
            // does not move. Every run of a mode computes the same values; the first one's are compared.
            UpdateMode[] modes = [UpdateMode.Graph, UpdateMode.Fused];
            var stepSeconds = modes.ToDictionary(m => m, _ => new List<double>());
            var reduceSeconds = modes.ToDictionary(m => m, _ => new List<double>());
            var differences = new Dictionary<UpdateMode, (string At50, string At200)>();
            int gradientCount = 0;
            for (int repeat = 0; repeat < Repeats; repeat++)
                foreach (var update in modes)
                {
                    using var trainer = new DistributedTrainer(step, mpi, new DistributedOptions { Threads = 1, Update = update });
                    gradientCount = trainer.GradientCount;
                    IReadOnlyDictionary<string, OnnxAdadelta.Onnx.Proto.TensorProto>? at50 = null;
                    double previous = 0;
                    mpi.Barrier();
                    DistributedRun.Run(trainer, data, run, s =>
                    {
                        if (s.Step > Warmup)
                        {
                            stepSeconds[update].Add(s.ElapsedSeconds - previous);
                            reduceSeconds[update].Add(trainer.LastAllReduceSeconds);
                        }
                        if (s.Step == 50) at50 = trainer.ReadState();
                        previous = s.ElapsedSeconds;
                    });
                    if (repeat == 0)
                        differences[update] = mpi.Rank == 0
                            ? (Difference(at50!, plain50!, trainer.Info).ToString("E2", inv), Difference(trainer.ReadState(), plain200!, trainer.Info).ToString("E2", inv))
                            : ("–", "–");
                    mpi.Barrier();
                }
            foreach (var update in modes)
                Report(string.Create(inv, $"steps {mpi.Size} {name} {update.ToString().ToLowerInvariant()} {gradientCount} {1 / Median(stepSeconds[update]):F1} {Median(reduceSeconds[update]) * 1000:F3} {differences[update].At50} {differences[update].At200}"));
        }
        return 0;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    private static double Difference(IReadOnlyDictionary<string, OnnxAdadelta.Onnx.Proto.TensorProto> a, IReadOnlyDictionary<string, OnnxAdadelta.Onnx.Proto.TensorProto> b, StepModelInfo info)
    {
        double diff = 0, norm = 0;
        foreach (var p in info.Parameters)
        {
            var x = a[p].ToFloatArray();
            var y = b[p].ToFloatArray();
            for (int i = 0; i < x.Length; i++) { diff += Math.Pow(x[i] - (double)y[i], 2); norm += (double)y[i] * y[i]; }
        }
        return Math.Sqrt(diff / norm);
    }
}
