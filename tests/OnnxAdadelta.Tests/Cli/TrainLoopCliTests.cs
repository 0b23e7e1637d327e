using System.Diagnostics;
using System.Runtime.InteropServices;
using OnnxAdadelta.Cli;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Tests.Training;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Tests.Cli;

/// <summary>The training loop of <c>train</c>: epochs, validation, checkpoints, early stopping, NaN, output checks, log and plot, resume with new settings.</summary>
public class TrainLoopCliTests : IDisposable
{
    private readonly TestData.TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private string Step(double lr = 1.0)
    {
        var path = _dir.File("step.onnx");
        ModelIO.Save(TestData.StepModel(new AdadeltaOptions { LearningRate = new ConstantLearningRate(lr) }), path);
        return path;
    }

    private string Data(string name = "data.npz", int rows = 64, long seed = 5, int? poison = null)
    {
        var path = _dir.File(name);
        Npz.Write(path, FitTests.Arrays(rows, seed, poison));
        return path;
    }

    private static long Iterations(string checkpoint) => FitTests.Iterations(ModelIO.Load(checkpoint));

    [Fact]
    public void EpochsWithEvaluationLogAndPlot()
    {
        var ckpt = _dir.File("ckpt.onnx");
        var log = _dir.File("run.csv");
        var plot = _dir.File("run.svg");
        var r = CliRunner.Run("train", Step(), "--data", Data(), "--epochs", "3", "--batch-size", "16", "--eval", Data("held.npz", 32, 9),
            "--log", log, "--plot", plot, "-o", ckpt);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Equal(12L, Iterations(ckpt));
        // One line per epoch, with the evaluation made at its end.
        Assert.Matches(@"epoch 1: loss \d+\.\d+  val_loss \d+\.\d+  val_accuracy \d+\.\d+ %", r.Out);
        Assert.Contains("epoch 3: loss", r.Out);
        Assert.Matches(@"held-out accuracy \d+\.\d+ % \(32 rows, output 'logits'\), loss \d+\.\d+", r.Out);
        var rows = File.ReadAllLines(log);
        Assert.Equal(13, rows.Length);
        Assert.Equal(3, rows.Skip(1).Count(l => l.Split(',')[5].Length > 0));
        Assert.Contains("<svg", File.ReadAllText(plot));

        var png = _dir.File("again.png");
        r = CliRunner.Run("plot", log, "-o", png);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("12 steps, 3 evaluations", r.Out);
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], File.ReadAllBytes(png).Take(4));
    }

    [Fact]
    public void PlotRefusesAFileThatIsNotATrainingLog()
    {
        var csv = _dir.File("other.csv");
        File.WriteAllText(csv, "a,b\n1,2\n");
        var r = CliRunner.Run("plot", csv, "-o", _dir.File("x.png"));
        Assert.Equal(1, r.ExitCode);
        Assert.Single(r.ErrLines);
        Assert.Contains("no 'step' and 'loss' columns", r.Err);
        Assert.False(File.Exists(_dir.File("x.png")));
    }

    [Theory]
    [InlineData("graph")]
    [InlineData("fused")]
    public void ANaNStopsWithExitThreeNamingTheStepAndKeepsTheLastFiniteState(string update)
    {
        // A good checkpoint resumed in place: the bad batch must not destroy it.
        var ckpt = _dir.File("ckpt.onnx");
        // Its first two batches are finite; the third holds the NaN.
        Assert.Equal(0, CliRunner.Run("train", Step(), "--data", Data(poison: 40), "--steps", "2", "--batch-size", "16", "--update", update, "-o", ckpt).ExitCode);
        var r = CliRunner.Run("train", ckpt, "--data", Data(poison: 40), "--steps", "10", "--batch-size", "16", "--update", update, "--save-every", "1", "-o", ckpt);
        Assert.Equal(ExitCodes.NonFinite, r.ExitCode);
        Assert.Single(r.ErrLines);
        Assert.Contains("step 3: the loss is NaN", r.Err);
        Assert.Contains("iteration 2", r.Err);
        Assert.Equal(2L, Iterations(ckpt));
        using (var trainer = new Trainer(ModelIO.Load(ckpt)))
            Assert.Null(trainer.FindNonFinite());
        // The run stopped before its first step was kept: no periodic checkpoint of a later step exists.
        Assert.Empty(Directory.GetFiles(_dir.Path, "ckpt.step*.onnx"));

        // --on-nan skip goes on past the bad batch (steps 3 and 7) and says how many it skipped.
        var skipped = _dir.File("skipped.onnx");
        r = CliRunner.Run("train", Step(), "--data", Data(poison: 40), "--steps", "10", "--batch-size", "16", "--on-nan", "skip", "--update", update, "-o", skipped);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("skipped 2 steps", r.Out);
        Assert.Equal(10L, Iterations(skipped));
        using (var trainer = new Trainer(ModelIO.Load(skipped)))
            Assert.Null(trainer.FindNonFinite());
    }

    [Fact]
    public void AnUnwritableOutputFailsBeforeTheFirstStep()
    {
        // A folder can't be made under a regular file.
        var file = _dir.File("a-file");
        File.WriteAllText(file, "x");
        var under = Path.Combine(file, "ckpt.onnx");
        var r = CliRunner.Run("train", Step(), "--data", Data(), "--steps", "5", "-o", under);
        Assert.Equal(1, r.ExitCode);
        Assert.Single(r.ErrLines);
        Assert.Contains(under, r.Err);
        Assert.DoesNotContain("step ", r.Out);

        r = CliRunner.Run("train", Step(), "--data", Data(), "--steps", "5", "--plot", under.Replace(".onnx", ".png"), "-o", _dir.File("ckpt.onnx"));
        Assert.Equal(1, r.ExitCode);
        Assert.Single(r.ErrLines);
        Assert.DoesNotContain("step ", r.Out);
        Assert.False(File.Exists(_dir.File("ckpt.onnx")));

        r = CliRunner.Run("train", Step(), "--data", Data(), "--steps", "5", "--log", _dir.Path, "-o", _dir.File("ckpt.onnx"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("--log", r.Err);
        Assert.Contains("is a folder", r.Err);
        Assert.False(File.Exists(_dir.File("ckpt.onnx")));
    }

    [Fact]
    public void SaveEveryKeepsTheLastNAndSaveBestAndEarlyStopFollowTheMetric()
    {
        var ckpt = _dir.File("run.onnx");
        // lr 0: nothing improves, so early stopping on val_loss (patience 1) stops at the second evaluation (step 8).
        var r = CliRunner.Run("train", Step(0), "--data", Data(), "--steps", "40", "--batch-size", "16", "--eval", Data("held.npz", 32, 9),
            "--eval-every", "4", "--save-every", "2", "--keep", "2", "--save-best", "val_accuracy", "--early-stop", "val_loss:1", "-o", ckpt);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("early stopping: val_loss has not improved", r.Out);
        Assert.Equal(8L, Iterations(ckpt));
        Assert.Equal(["run.best.onnx", "run.onnx", "run.step6.onnx", "run.step8.onnx"], Directory.GetFiles(_dir.Path, "run*.onnx").Select(Path.GetFileName).Order());
        Assert.Equal(4L, Iterations(_dir.File("run.best.onnx")));
    }

    [Fact]
    public void ResumingWithANewLearningRateKeepsTheAccumulatorsAndTheCounter()
    {
        var first = _dir.File("first.onnx");
        Assert.Equal(0, CliRunner.Run("train", Step(), "--data", Data(), "--steps", "6", "--batch-size", "16", "-o", first).ExitCode);
        var second = _dir.File("second.onnx");
        var r = CliRunner.Run("train", first, "--data", Data(), "--steps", "4", "--batch-size", "16", "--lr", "0.5", "--rho", "0.9", "-o", second);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("rewriting the optimizer", r.Out);
        var info = StepModelInfo.Read(ModelIO.Load(second), second);
        Assert.Equal(new ConstantLearningRate(0.5), info.Optimizer.LearningRate);
        Assert.Equal(0.9, info.Optimizer.Rho);
        Assert.Equal(10L, Iterations(second));
        var before = TestData.ValuesByName(ModelIO.Load(first));
        Assert.NotEqual(before["Adadelta/W/accum_grad"].ToRawBytes(), TestData.ValuesByName(ModelIO.Load(second))["Adadelta/W/accum_grad"].ToRawBytes());

        // The same 4 steps through the library, from the first checkpoint with its optimizer changed, match bit for bit.
        using var trainer = new Trainer(ModelIO.Load(first));
        trainer.ChangeOptimizer(trainer.Info.Optimizer with { LearningRate = new ConstantLearningRate(0.5), Rho = 0.9 });
        var data = Dataset.Open(Data(), TrainingRun.InputSpecs(trainer.Model));
        Fit.Run(trainer, data, new FitOptions { Steps = 4, BatchSize = 16 });
        var expected = TestData.ValuesByName(trainer.Checkpoint());
        var got = TestData.ValuesByName(ModelIO.Load(second));
        foreach (var name in trainer.Info.State.Select(s => s.Input))
            Assert.Equal(expected[name].ToRawBytes(), got[name].ToRawBytes());

        // Flags a resumed model can't change are refused, by name.
        r = CliRunner.Run("train", first, "--data", Data(), "--steps", "1", "--clipnorm", "0.5", "-o", _dir.File("third.onnx"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("--clipnorm is fixed in it", r.Err);
    }

    [Fact]
    public void JsonPrintsOneMachineReadableSummaryAndQuietPrintsOnlyTheSummary()
    {
        var ckpt = _dir.File("ckpt.onnx");
        var r = CliRunner.Run("train", Step(), "--data", Data(), "--epochs", "2", "--batch-size", "16", "--eval", Data("held.npz", 32, 9), "--json", "-o", ckpt);
        Assert.True(r.ExitCode == 0, r.Err);
        var line = Assert.Single(r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        using var doc = System.Text.Json.JsonDocument.Parse(line);
        var root = doc.RootElement;
        Assert.Equal(8, root.GetProperty("steps").GetInt32());
        Assert.Equal(2, root.GetProperty("epochs").GetInt32());
        Assert.Equal("completed", root.GetProperty("stop_reason").GetString());
        Assert.Equal(0, root.GetProperty("exit_code").GetInt32());
        Assert.Equal(Path.GetFullPath(ckpt), root.GetProperty("checkpoint").GetString());
        Assert.True(root.GetProperty("last_loss").GetDouble() < root.GetProperty("first_loss").GetDouble());
        Assert.Equal(32, root.GetProperty("eval").GetProperty("rows").GetInt32());
        Assert.InRange(root.GetProperty("eval").GetProperty("accuracy").GetDouble(), 0, 1);

        r = CliRunner.Run("train", Step(), "--data", Data(poison: 40), "--steps", "5", "--batch-size", "16", "--json", "-o", ckpt);
        Assert.Equal(ExitCodes.NonFinite, r.ExitCode);
        using var stopped = System.Text.Json.JsonDocument.Parse(r.Out);
        Assert.Equal("non_finite", stopped.RootElement.GetProperty("stop_reason").GetString());
        Assert.Equal(ExitCodes.NonFinite, stopped.RootElement.GetProperty("exit_code").GetInt32());
        Assert.Equal(2, stopped.RootElement.GetProperty("iteration").GetInt32());

        // From an inference model too: what build-training says stays off standard output.
        r = CliRunner.Run("train", Path.Combine(RepoPaths.Models, "digits-mlp.onnx"), "--loss", "cross-entropy", "--output", "logits", "--data", Path.Combine(RepoPaths.Models, "data", "digits-test.npz"),
            "--steps", "2", "--batch-size", "64", "--lr", "1.0", "--json", "-o", _dir.File("mlp.onnx"));
        Assert.True(r.ExitCode == 0, r.Err);
        using (var fromInference = System.Text.Json.JsonDocument.Parse(r.Out))
            Assert.Equal(2, fromInference.RootElement.GetProperty("steps").GetInt32());

        r = CliRunner.Run("train", Step(), "--data", Data(), "--steps", "4", "--batch-size", "16", "--quiet", "-o", ckpt);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.StartsWith("trained 4 steps", Assert.Single(r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries)));

        r = CliRunner.Run("train", Step(), "--data", Data(), "--steps", "4", "--batch-size", "16", "--verbosity", "detailed", "-o", ckpt);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Equal(4, r.Out.Split('\n').Count(l => l.StartsWith("step ", StringComparison.Ordinal)));

        r = CliRunner.Run("train", Step(), "--data", Data(), "--steps", "4", "--quiet", "--verbosity", "detailed", "-o", ckpt);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("contradict", r.Err);
    }

    [Fact]
    public void ARunFromAStepModelParsesTheContractOnceCopiesTheModelOnceAndOpensTwoSessionsWhateverItsLength()
    {
        // Tests run one at a time (xunit.runner.json), so the process-wide counts move only for these runs.
        var step = Step();
        var data = Data();
        var held = Data("held.npz", 32, 9);
        Counts Run(int steps) => Count(() => CliRunner.Run("train", step, "--data", data, "--eval", held, "--eval-every", "2",
            "--steps", steps.ToString(System.Globalization.CultureInfo.InvariantCulture), "--batch-size", "16", "--save-every", "2", "-o", _dir.File("ckpt.onnx")));
        // One parse (the file's contract, passed along to the trainer, the evaluator and every checkpoint), one deep copy
        // (the evaluator's inference form), one session to train and one to evaluate: none per step, evaluation or checkpoint.
        Assert.Equal(new Counts(1, 2, 1), Run(2));
        Assert.Equal(new Counts(1, 2, 1), Run(12));
        // The fused op swaps its nodes in the session's own lists: no more copies.
        Assert.Equal(new Counts(1, 2, 1), Count(() => CliRunner.Run("train", step, "--data", data, "--eval", held, "--steps", "4", "--batch-size", "16",
            "--update", "fused", "-o", _dir.File("fused.onnx"))));
    }

    [Fact]
    public void ARunFromAnInferenceModelNeverParsesTheContractAndCopiesTheModelAFixedNumberOfTimes()
    {
        var model = Path.Combine(RepoPaths.Models, "digits-mlp.onnx");
        var train = Path.Combine(RepoPaths.Models, "data", "digits-train.npz");
        var test = Path.Combine(RepoPaths.Models, "data", "digits-test.npz");
        Counts Run(int steps) => Count(() => CliRunner.Run("train", model, "--loss", "cross-entropy", "--output", "logits", "--data", train, "--eval", test,
            "--eval-every", "2", "--steps", steps.ToString(System.Globalization.CultureInfo.InvariantCulture), "--batch-size", "64", "--save-every", "2",
            "--lr", "1.0", "-o", _dir.File("mlp.ckpt.onnx")));
        // The rewrite hands its contract to the trainer (checked against the graph, never written and read back). The
        // copies: function inlining's (the autodiff works on it, leaving the file's model as it was), the rewrite's (the
        // training graph stays as it was) and the evaluator's inference form. The sessions: two shape inferences of the
        // autodiff (the loss's input, then the whole graph with the loss), one to train, one to evaluate.
        Assert.Equal(new Counts(0, 4, 3), Run(2));
        Assert.Equal(new Counts(0, 4, 3), Run(6));
    }

    [Fact]
    public void TheLogAndTheJsonSummaryCarryTheRateTheGraphApplied()
    {
        var step = _dir.File("scheduled.onnx");
        ModelIO.Save(TestData.StepModel(new AdadeltaOptions { LearningRate = LearningRateSchedules.Parse("exponential:initial=1.0,decay_steps=1,decay_rate=0.5") }), step);
        var old = _dir.File("old.onnx");
        ModelIO.Save(LearningRateOutputTests.WithoutLearningRateOutput(ModelIO.Load(step)), old);
        foreach (var (model, update, source) in new[] { (step, "graph", "graph"), (step, "fused", "graph"), (old, "graph", "host") })
        {
            var log = _dir.File($"{update}-{source}.csv");
            var r = CliRunner.Run("train", model, "--data", Data(), "--steps", "3", "--batch-size", "16", "--update", update, "--log", log, "--json", "-o", _dir.File("out.onnx"));
            Assert.True(r.ExitCode == 0, r.Err);
            Assert.Equal(["1", "0.5", "0.25"], File.ReadAllLines(log).Skip(1).Select(l => l.Split(',')[3]));
            using var json = System.Text.Json.JsonDocument.Parse(r.Out);
            Assert.Equal(0.25, json.RootElement.GetProperty("learning_rate").GetDouble());
            Assert.Equal(source, json.RootElement.GetProperty("learning_rate_source").GetString());
        }
    }

    private sealed record Counts(int Parses, int Sessions, int Copies);

    private static Counts Count(Func<CliRunner.Result> run)
    {
        int parses = PipelineCounts.ContractParses, sessions = PipelineCounts.Sessions, copies = PipelineCounts.ModelCopies;
        var r = run();
        Assert.True(r.ExitCode == 0, r.Err);
        return new Counts(PipelineCounts.ContractParses - parses, PipelineCounts.Sessions - sessions, PipelineCounts.ModelCopies - copies);
    }

    [Fact]
    public void TheKerasDefaultLearningRateIsWarnedOnce()
    {
        var ckpt = _dir.File("ckpt.onnx");
        var training = _dir.File("training.onnx");
        ModelIO.Save(TestData.TrainingGraph(), training);
        var r = CliRunner.Run("train", training, "--data", Data(), "--steps", "2", "-o", ckpt);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Single(r.ErrLines, l => l.Contains("warning: the learning rate is 0.001") && l.Contains("--preset"));
        r = CliRunner.Run("train", training, "--data", Data(), "--steps", "2", "--preset", "pytorch", "-o", ckpt);
        Assert.Empty(r.ErrLines);
    }

    [Theory]
    [InlineData("INT", 130, "interrupted (SIGINT)")]
    [InlineData("TERM", 143, "terminated (SIGTERM)")]
    public async Task ASignalWritesACheckpointAndExitsWithTheSignalsCode(string signal, int code, string said)
    {
        var ckpt = _dir.File("ckpt.onnx");
        var log = _dir.File("log.csv");
        var cli = Path.Combine(AppContext.BaseDirectory, "onnx-adadelta.dll");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { cli, "train", Step(), "--data", Data(), "--steps", "100000000", "--batch-size", "16", "--log", log, "-o", ckpt })
            start.ArgumentList.Add(a);
        // A shell runs background jobs with SIGINT ignored, and an ignored signal stays ignored in children: the CLI
        // is started with SIGINT at its default, as a terminal's foreground job has it.
        // Only an ignored SIGINT is touched (set to default around the start, then ignored again), so that a handler the
        // runtime installed is never replaced.
        bool ignored = SigIntIgnored();
        if (ignored) SetSignalHandler(SIGINT, SigDfl);
        Process process;
        try { process = Process.Start(start)!; }
        finally { if (ignored) SetSignalHandler(SIGINT, SigIgn); }
        using var owned = process;
        try
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            // Wait for a few logged steps (the log is flushed row by row), then signal.
            var clock = Stopwatch.StartNew();
            while (!(File.Exists(log) && ReadShared(log).Count(c => c == '\n') > 3))
            {
                if (process.HasExited) Assert.Fail(await stderr);
                Assert.True(clock.Elapsed < TimeSpan.FromMinutes(2), "the run did not start logging");
                await Task.Delay(50);
            }
            using (var kill = Process.Start("kill", ["-" + signal, process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) await kill.WaitForExitAsync();
            using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(1));
            await process.WaitForExitAsync(limit.Token);
            Assert.Equal(code, process.ExitCode);
            var err = await stderr;
            Assert.Contains(said, err);
            var iterations = Iterations(ckpt);
            Assert.InRange(iterations, 3, 100000000 - 1);
            Assert.Contains($"iteration {iterations}", err);
            Assert.Contains("trained", await stdout);
            using (var trainer = new Trainer(ModelIO.Load(ckpt)))
                Assert.Null(trainer.FindNonFinite());
        }
        finally
        {
            if (!process.HasExited) process.Kill();
        }
    }

    private const int SIGINT = 2;
    private static readonly IntPtr SigDfl = IntPtr.Zero;
    private static readonly IntPtr SigIgn = new(1);

    /// <summary>Whether this process ignores SIGINT (reads the disposition with sigaction, changing nothing).</summary>
    private static bool SigIntIgnored()
    {
        var old = Marshal.AllocHGlobal(512);
        try
        {
            Assert.Equal(0, SigAction(SIGINT, IntPtr.Zero, old));
            return Marshal.ReadIntPtr(old) == SigIgn;
        }
        finally { Marshal.FreeHGlobal(old); }
    }

    [DllImport("libc", EntryPoint = "sigaction")]
    private static extern int SigAction(int signum, IntPtr act, IntPtr oldact);

    [DllImport("libc", EntryPoint = "signal")]
    private static extern IntPtr SetSignalHandler(int signum, IntPtr handler);

    private static string ReadShared(string path)
    {
        using var s = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return new StreamReader(s).ReadToEnd();
    }
}
