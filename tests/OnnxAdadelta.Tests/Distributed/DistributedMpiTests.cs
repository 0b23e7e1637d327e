using System.Diagnostics;
using System.Text.RegularExpressions;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Distributed;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Tests.Cli;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Tests.Distributed;

/// <summary>A fact that launches mpirun: reported as skipped, with the reason, where Open MPI is absent.</summary>
public sealed class MpiFactAttribute : FactAttribute
{
    /// <summary>Skips without mpirun or libmpi.</summary>
    public MpiFactAttribute()
    {
        if (MpiJob.Mpirun is null || !MpiCollective.IsAvailable())
            Skip = "Open MPI is absent (no mpirun on PATH or no libmpi.so.40): install openmpi-bin and libopenmpi-dev to run the distributed tests.";
    }
}

/// <summary>Runs the CLI under mpirun, one intra-op thread per rank.</summary>
internal static class MpiJob
{
    public static string? Mpirun { get; } = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':')
        .Select(d => Path.Combine(d, "mpirun")).FirstOrDefault(File.Exists);

    public static string Cli => Path.Combine(AppContext.BaseDirectory, "onnx-adadelta.dll");

    /// <summary>Runs <c>mpirun -np N</c> over <paramref name="command"/> (a shell command line); kills it after <paramref name="timeout"/>.</summary>
    public static (int ExitCode, string Out, string Err) Run(int ranks, string command, TimeSpan timeout, IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo(Mpirun!) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = RepoPaths.Root };
        foreach (var a in new[] { "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", ranks.ToString(), "sh", "-c", command }) start.ArgumentList.Add(a);
        // Some container kernels refuse the cross-memory attach of Open MPI's shared-memory transport.
        start.Environment["OMPI_MCA_btl_vader_single_copy_mechanism"] = "none";
        // Ranks waiting in a collective yield the core instead of spinning (the ranks outnumber the cores here).
        start.Environment["OMPI_MCA_mpi_yield_when_idle"] = "1";
        foreach (var (k, v) in environment ?? new Dictionary<string, string>()) start.Environment[k] = v;
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"mpirun -np {ranks} did not finish within {timeout.TotalSeconds} s: {command}");
        }
        return (process.ExitCode, output.Result, error.Result);
    }

    public static string Train(string step, string data, string output, int steps, string extra = "") =>
        $"exec dotnet {Cli} train {step} --data {data} --steps {steps} --batch-size 64 --shuffle --seed 5 --threads 1 -o {output} {extra}";
}

/// <summary>
/// Data-parallel training of the README CNN under mpirun, against the same computation in one process. Launches
/// several mpirun jobs of 2 and 4 .NET processes: about 40 s on 2 cores.
/// </summary>
public class DistributedMpiTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(2);

    // Measured on this project's 2-core machine (README CNN, batch 64, seed 5, 200 steps, one thread per process;
    // tools/OnnxAdadelta.Bench -- --distributed, and these tests): how far (relative L2 over all parameters) a run lands
    // from plain training in one process. The same in every run; the tests allow twice that.
    private const double MeasuredTwoRankDifference200 = 1.7e-7;
    private const double MeasuredFourRankDifference200 = 3.3e-5;
    private const int Steps = 200;

    // Plain single-process training with the global batch, the reference the distributed runs differ from by rounding.
    private static double PlainDifference(string step, string data, string checkpoint)
    {
        var model = ModelIO.Load(step);
        using var plain = new Trainer(model, new TrainerOptions { Threads = 1 });
        TrainingRun.Run(plain, Dataset.Open(data, TrainingRun.InputSpecs(model)), new TrainingRunOptions { Steps = Steps, BatchSize = 64, Shuffle = true, Seed = 5 });
        using var distributed = new Trainer(ModelIO.Load(checkpoint));
        return DistributedTests.ParameterDifference(distributed.ReadState(), plain.ReadState(), plain.Info);
    }

    private static (string Step, string Data) Files(TestData.TempDir tmp)
    {
        var step = tmp.File("step.onnx");
        ModelIO.Save(DistributedTests.DigitsStep("digits-cnn.onnx"), step);
        return (step, Path.Combine(RepoPaths.Models, "data", "digits-train.npz"));
    }

    private static DistributedTrainer Reference(string step, string data, int ranks, int steps, UpdateMode update = UpdateMode.Graph)
    {
        var model = ModelIO.Load(step);
        var trainer = DistributedTrainer.Simulated(model, ranks, new DistributedOptions { Threads = 1, Update = update });
        DistributedRun.Run(trainer, Dataset.Open(data, TrainingRun.InputSpecs(model)), new TrainingRunOptions { Steps = steps, BatchSize = 64, Shuffle = true, Seed = 5 });
        return trainer;
    }

    private static void AssertBitIdentical(IReadOnlyDictionary<string, TensorProto> expected, string checkpoint)
    {
        var actual = ModelIO.Load(checkpoint).Graph.Initializer.ToDictionary(t => t.Name);
        foreach (var (name, value) in expected)
            Assert.True(value.ToRawBytes().SequenceEqual(actual[name].ToRawBytes()), $"'{name}' differs from the one-process computation");
    }

    // The 2-rank job runs the fused update (parameters and slots in place, the reduced flat gradient buffer read by the
    // op); the 4-rank job and the README command run the graph update. DistributedTests shows the simulated fused run
    // bit-identical to the simulated graph run, so both references below hold for either.
    [MpiFact]
    public void TwoRanksWithTheFusedUpdateMatchTheOneProcessComputationBitForBitAndPlainTrainingWithinTheBound()
    {
        using var tmp = new TestData.TempDir();
        var (step, data) = Files(tmp);
        var ckpt = tmp.File("two.onnx");
        var log = tmp.File("two.csv");
        // A bucket of 0.01 MiB splits the CNN's 2,731 gradient and loss values into two all-reduce calls.
        var (code, output, error) = MpiJob.Run(2, MpiJob.Train(step, data, ckpt, Steps, $"--distributed --update fused --check-replicas --bucket-mb 0.01 --log {log}"), Timeout);
        Assert.True(code == 0, $"mpirun exited {code}: {error}");
        Assert.Contains("2 ranks", output);
        Assert.Single(Regex.Matches(output, $"trained {Steps} steps")); // rank 0 alone prints
        Assert.Single(Regex.Matches(output, Regex.Escape("update: fused (ai.onnxadadelta.AdadeltaUpdate, parameters and state in place); on every rank after the all-reduce")));
        // Rank 0 alone writes the log: a header and one row per step.
        Assert.Equal(1 + Steps, File.ReadAllLines(log).Length);

        using var reference = Reference(step, data, 2, Steps, UpdateMode.Fused);
        AssertBitIdentical(reference.ReadState(), ckpt);

        double difference = PlainDifference(step, data, ckpt);
        Assert.True(difference <= 2 * MeasuredTwoRankDifference200, $"2 ranks are {difference:E2} from one process after {Steps} steps; measured {MeasuredTwoRankDifference200:E1}");
        Assert.True(difference > 0, "2 ranks equal one process bit for bit: the shards were not computed apart");
    }

    [MpiFact]
    public void FourRanksWithAnUnevenLastBatchMatchTheOneProcessComputationBitForBit()
    {
        using var tmp = new TestData.TempDir();
        var (step, data) = Files(tmp);
        var ckpt = tmp.File("four.onnx");
        // 200 steps pass the epoch's last batch 8 times (every 23rd step: 30 rows, shards of 7, 8, 7 and 8). Open MPI's
        // basic component reduces linearly, the order the one-process reference sums in.
        var (code, output, error) = MpiJob.Run(4, MpiJob.Train(step, data, ckpt, Steps, "--distributed --update graph --check-replicas"), Timeout,
            new Dictionary<string, string> { ["OMPI_MCA_coll"] = "basic,self,libnbc" });
        Assert.True(code == 0, $"mpirun exited {code}: {error}");
        Assert.Contains("4 ranks", output);
        Assert.Contains("update: graph (standard ONNX ops, state ping-pong); on every rank after the all-reduce", output); // the 2-rank test runs the fused update
        using var reference = Reference(step, data, 4, Steps);
        AssertBitIdentical(reference.ReadState(), ckpt);
        double difference = PlainDifference(step, data, ckpt);
        Assert.True(difference <= 2 * MeasuredFourRankDifference200, $"4 ranks are {difference:E2} from one process after {Steps} steps; measured {MeasuredFourRankDifference200:E1}");

        // The checkpoint of 4 ranks resumes in one process.
        var resumed = CliRunner.Run("train", ckpt, "--data", data, "--steps", "2", "--batch-size", "64", "--threads", "1", "-o", tmp.File("resumed.onnx"));
        Assert.True(resumed.ExitCode == 0, resumed.Err);
        Assert.Contains($"(iteration {Steps + 2})", resumed.Out);
    }

    [MpiFact]
    public void TheReadmeCommandTrainsOnTwoRanks()
    {
        var readme = File.ReadAllText(Path.Combine(RepoPaths.Root, "README.md"));
        var line = readme.Split('\n').Single(l => l.StartsWith("mpirun -np 2 dotnet ", StringComparison.Ordinal));
        using var tmp = new TestData.TempDir();
        Assert.Contains(" -o digits-cnn.ckpt.onnx", line);
        var command = line["mpirun -np 2 ".Length..]
            .Replace("tools/OnnxAdadelta.Cli/bin/Release/net10.0/onnx-adadelta.dll", MpiJob.Cli)
            .Replace(" -o digits-cnn.ckpt.onnx", $" -o {tmp.File("digits-cnn.ckpt.onnx")}");
        var (code, output, error) = MpiJob.Run(2, "exec " + command, Timeout);
        Assert.True(code == 0, $"mpirun exited {code}: {error}");
        Assert.Matches(@"trained \d+ steps .*; 2 ranks", output);
        var accuracy = double.Parse(Regex.Match(output, @"held-out accuracy (\d+\.\d+) %").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(accuracy >= 90, output);
        Assert.True(File.Exists(tmp.File("digits-cnn.ckpt.onnx")));
    }

    [Fact]
    public async Task ASingleProcessRunDoesNotLoadOpenMpi()
    {
        // The dynamic loader's trace of every library the process opens (glibc's LD_DEBUG), Open MPI installed or not.
        using var tmp = new TestData.TempDir();
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { MpiJob.Cli, "train", Path.Combine(RepoPaths.Models, "digits-mlp.onnx"), "--loss", "cross-entropy", "--output", "logits",
            "--data", Path.Combine(RepoPaths.Models, "data", "digits-train.npz"), "--steps", "1", "--update", "fused", "-o", tmp.File("one.onnx") }) start.ArgumentList.Add(a);
        start.Environment["LD_DEBUG"] = "files";
        foreach (var name in start.Environment.Keys.Where(k => k.StartsWith("OMPI_", StringComparison.Ordinal) || k.StartsWith("PMI", StringComparison.Ordinal)).ToList())
            start.Environment.Remove(name);
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var trace = await process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(Timeout), "the single-process run did not finish");
        Assert.True(process.ExitCode == 0, trace);
        Assert.Contains("libonnxruntime.so", trace); // the trace sees libraries .NET opens at run time
        Assert.DoesNotContain("libmpi", trace);
        Assert.Contains("trained 1 steps", await output);
    }

    [MpiFact]
    public void ARankThatFailsStopsTheJobWithItsNameAndNoCheckpoint()
    {
        using var tmp = new TestData.TempDir();
        var (step, data) = Files(tmp);
        var ckpt = tmp.File("never.onnx");
        var missing = tmp.File("missing-on-rank-1.npz");
        var command = $"if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then d={missing}; else d={data}; fi; " + MpiJob.Train(step, "$d", ckpt, 50, "--distributed");
        var (code, _, error) = MpiJob.Run(2, command, Timeout); // throws if the job hangs past the timeout
        Assert.NotEqual(0, code);
        Assert.Contains("onnx-adadelta: error: rank 1 of 2:", error);
        Assert.Contains("missing-on-rank-1.npz", error);
        Assert.False(File.Exists(ckpt), "a checkpoint was written although rank 1 failed");
    }
}
