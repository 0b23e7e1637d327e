using OnnxAdadelta.Onnx;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Training;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Training;

/// <summary>The training loop of the library: Fit, its callbacks, the NaN policy, undo, live evaluation and optimizer changes.</summary>
public class FitTests : IDisposable
{
    private readonly TestData.TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>Rows of the test problem as arrays; <paramref name="poison"/> puts a NaN into X of that row.</summary>
    internal static Dictionary<string, DataArray> Arrays(int rows = 64, long seed = 5, int? poison = null)
    {
        var batch = TestData.Batch(seed, rows);
        var x = batch["X"].Data;
        if (poison is { } row) BitConverter.TryWriteBytes(x.AsSpan(row * TestData.Features * 4), float.NaN);
        return new Dictionary<string, DataArray>
        {
            ["X"] = new(DataType.Float, batch["X"].Shape, x),
            ["labels"] = new(DataType.Int64, batch["labels"].Shape, batch["labels"].Data),
        };
    }

    private static Dataset Data(ModelProto step, int rows = 64, long seed = 5, int? poison = null) =>
        Dataset.FromArrays(Arrays(rows, seed, poison), TrainingRun.InputSpecs(step));

    private static float[] State(Trainer t, string name) => MixedPrecision.ToFloats(t.ReadState()[name]);

    internal static long Iterations(ModelProto checkpoint) => TestData.ValuesByName(checkpoint)["Adadelta/iterations"].ToInt64Array()[0];

    private static AdadeltaOptions Lr(double rate) => new() { LearningRate = new ConstantLearningRate(rate) };

    [Fact]
    public void EpochsRunEveryBatchOfEachEpochAndRecordTheirMeanLoss()
    {
        var step = TestData.StepModel();
        using var trainer = new Trainer(step);
        var losses = new List<float>();
        var history = Fit.Run(trainer, Data(step), new FitOptions
        {
            Epochs = 3,
            BatchSize = 16,
            Callbacks = [new Recorder(s => losses.Add(s.Loss))],
        });
        Assert.Equal(StopReason.Completed, history.StopReason);
        Assert.Equal(12, losses.Count);
        Assert.Equal(12L, trainer.Iteration);
        Assert.Equal([1L, 2L, 3L], history.Epochs.Select(e => e.Epoch));
        Assert.Equal(losses.Skip(4).Take(4).Average(), history.Epochs[1].Loss, 5);
        Assert.True(history.Epochs[2].Loss < history.Epochs[0].Loss);
        Assert.Equal(12, history.Last!.Step);
    }

    [Fact]
    public void GivingNeitherOrBothOfStepsAndEpochsIsRefused()
    {
        var step = TestData.StepModel();
        using var trainer = new Trainer(step);
        Assert.Throws<ArgumentException>(() => Fit.Run(trainer, Data(step), new FitOptions()));
        Assert.Throws<ArgumentException>(() => Fit.Run(trainer, Data(step), new FitOptions { Steps = 2, Epochs = 1 }));
        Assert.Throws<ArgumentException>(() => Fit.Run(trainer, Data(step), new FitOptions { Steps = 0 }));
    }

    [Theory]
    [InlineData(UpdateMode.Graph)]
    [InlineData(UpdateMode.Fused)]
    public void ANaNBatchStopsTheRunWithTheLastFiniteStateKept(UpdateMode update)
    {
        var step = TestData.StepModel();
        using var trainer = new Trainer(step, new TrainerOptions { Update = update });
        // Row 40 is in the third batch of 16: steps 1 and 2 are finite, step 3 sees the NaN.
        var data = Data(step, poison: 40);
        var history = Fit.Run(trainer, data, new FitOptions { Steps = 3, BatchSize = 16 });
        Assert.Equal(StopReason.NonFinite, history.StopReason);
        Assert.Contains("step 3", history.StopMessage);
        Assert.Equal(2L, trainer.Iteration);
        Assert.Null(trainer.FindNonFinite());

        using var clean = new Trainer(step);
        for (int i = 0; i < 2; i++) clean.Step(TrainingRun.BatchAt(data, data.Plan(16), i), stateToHost: true);
        foreach (var name in clean.Info.State.Select(s => s.Input).Where(n => n != clean.Info.Iterations.Input))
            Assert.Equal(State(clean, name), State(trainer, name));
        var path = _dir.File("kept.onnx");
        Checkpoints.Save(trainer, path);
        Assert.Equal(2L, Iterations(ModelIO.Load(path)));
    }

    [Theory]
    [InlineData(UpdateMode.Graph)]
    [InlineData(UpdateMode.Fused)]
    public void SkipUndoesTheBadStepCountsItAndGoesOn(UpdateMode update)
    {
        var step = TestData.StepModel();
        using var trainer = new Trainer(step, new TrainerOptions { Update = update });
        var skipped = new List<long>();
        var history = Fit.Run(trainer, Data(step, poison: 40), new FitOptions
        {
            Steps = 8,
            BatchSize = 16,
            OnNonFinite = NonFinitePolicy.Skip,
            Callbacks = [new Recorder(s => { if (s.Skipped) skipped.Add(s.Iteration); })],
        });
        Assert.Equal(StopReason.Completed, history.StopReason);
        // The poisoned batch comes every fourth step (epochs of 4 batches, no shuffle).
        Assert.Equal([3L, 7L], skipped);
        Assert.Equal(2, history.SkippedSteps);
        Assert.Equal(8L, trainer.Iteration);
        Assert.Null(trainer.FindNonFinite());

        // The run equals one that never saw the bad batches: the same steps, with the poisoned ones left out.
        var data = Data(step, poison: 40);
        using var clean = new Trainer(step, new TrainerOptions { Update = update });
        var plan = data.Plan(16);
        for (long i = 0; i < 8; i++)
        {
            if (i is 2 or 6) continue;
            var rows = plan.RowsForStep(i);
            clean.Step(new Batch()
                .Add("X", BatchTensor.FromFloats(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(data.Gather("X", rows).Data).ToArray(), rows.Length, TestData.Features))
                .Add("labels", BatchTensor.FromInt64s(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(data.Gather("labels", rows).Data).ToArray(), rows.Length)), stateToHost: true);
        }
        foreach (var name in clean.Info.State.Select(s => s.Input).Where(n => n != clean.Info.Iterations.Input))
            Assert.Equal(State(clean, name), State(trainer, name));
    }

    [Fact]
    public void ContinueKeepsTheNaNAndACheckpointOfItIsRefused()
    {
        var step = TestData.StepModel();
        using var trainer = new Trainer(step);
        var history = Fit.Run(trainer, Data(step, poison: 40), new FitOptions { Steps = 3, BatchSize = 16, OnNonFinite = NonFinitePolicy.Continue });
        Assert.Equal(StopReason.Completed, history.StopReason);
        Assert.NotNull(trainer.FindNonFinite());
        var path = _dir.File("nan.onnx");
        var e = Assert.Throws<OnnxAdadeltaException>(() => Checkpoints.Save(trainer, path));
        Assert.Contains("NaN", e.Message);
        Assert.False(File.Exists(path));
        Checkpoints.Save(trainer, path, allowNonFinite: true);
        Assert.Throws<OnnxAdadeltaException>(() => new Trainer(ModelIO.Load(path)));
    }

    [Theory]
    [InlineData(UpdateMode.Graph)]
    [InlineData(UpdateMode.Fused)]
    public void UndoPutsBackTheStateBeforeTheStepOnce(UpdateMode update)
    {
        using var trainer = new Trainer(TestData.StepModel(), new TrainerOptions { Update = update });
        trainer.Step(TestData.Batch(0));
        Assert.False(trainer.CanUndo);
        trainer.KeepUndo = true;
        trainer.Step(TestData.Batch(1), stateToHost: true);
        var afterTwo = trainer.ReadState().ToDictionary(kv => kv.Key, kv => kv.Value.ToRawBytes());
        trainer.Step(TestData.Batch(2));
        trainer.UndoLastStep();
        Assert.False(trainer.CanUndo);
        Assert.Throws<InvalidOperationException>(() => trainer.UndoLastStep());
        Assert.Equal(2L, trainer.Iteration);
        foreach (var (name, value) in trainer.ReadState()) Assert.Equal(afterTwo[name], value.ToRawBytes());

        // Undone with the counter kept (a skipped step): parameters and slots as before, the counter one further.
        trainer.Step(TestData.Batch(2));
        trainer.UndoLastStep(keepCounter: true);
        Assert.Equal(3L, trainer.Iteration);
        var state = trainer.ReadState();
        Assert.Equal(3L, state["Adadelta/iterations"].ToInt64Array()[0]);
        foreach (var (name, value) in state.Where(kv => kv.Key != "Adadelta/iterations")) Assert.Equal(afterTwo[name], value.ToRawBytes());
        // The next step runs from there (the ping-pong buffers are rebuilt).
        Assert.True(float.IsFinite(trainer.Step(TestData.Batch(3))));
        Assert.Equal(4L, trainer.Iteration);
    }

    [Theory]
    [InlineData(UpdateMode.Graph)]
    [InlineData(UpdateMode.Fused)]
    public void LiveEvaluationAgreesWithEvaluatingTheExportedCheckpoint(UpdateMode update)
    {
        var step = TestData.StepModel();
        using var trainer = new Trainer(step, new TrainerOptions { Update = update });
        Fit.Run(trainer, Data(step), new FitOptions { Steps = 20, BatchSize = 16, Shuffle = true });
        var heldOut = Arrays(48, seed: 9);
        using var evaluator = new Evaluator(trainer);
        Assert.Equal("labels", evaluator.Target);
        var live = evaluator.Evaluate(Dataset.FromArrays(heldOut, TrainingRun.InputSpecs(step)), batchSize: 20);
        var exported = Evaluation.Run(trainer.Checkpoint(), heldOut, "labels", evaluator.Output);
        Assert.Equal(48, live.Rows);
        Assert.Equal(exported.Accuracy, live.Accuracy);
        Assert.NotNull(live.Loss);
        Assert.InRange(live.Loss!.Value, 0, 5);

        // A second evaluation after more steps sees the new parameters, through the same session.
        var first = live.Loss.Value;
        Fit.Run(trainer, Data(step), new FitOptions { Steps = 40, BatchSize = 16 });
        var later = evaluator.Evaluate(Dataset.FromArrays(heldOut, TrainingRun.InputSpecs(step)));
        Assert.NotEqual(first, later.Loss!.Value);
    }

    [Fact]
    public void ValidationRunsEveryKStepsAndFeedsTheLogAndEarlyStopping()
    {
        var step = TestData.StepModel(Lr(0.0));
        using var trainer = new Trainer(step);
        var log = _dir.File("log.csv");
        var heldOut = Dataset.FromArrays(Arrays(32, seed: 9), TrainingRun.InputSpecs(step));
        History history;
        using (var csv = new CsvLog(log))
        {
            // With lr 0 nothing improves, so early stopping on val_loss with patience 2 stops at the third evaluation.
            history = Fit.Run(trainer, Data(step), new FitOptions
            {
                Steps = 50,
                BatchSize = 16,
                Callbacks = [new ValidationCallback(heldOut, everySteps: 5), new EarlyStopping("val_loss", patience: 2), csv],
            });
        }
        Assert.Equal(StopReason.EarlyStopping, history.StopReason);
        Assert.Equal([5L, 10L, 15L], history.Validations.Select(v => v.Iteration));
        var rows = File.ReadAllLines(log);
        Assert.Equal(CsvLog.Header, rows[0]);
        Assert.Equal(16, rows.Length);
        Assert.Equal("", rows[4].Split(',')[5]);
        Assert.NotEqual("", rows[5].Split(',')[5]);
        Assert.NotEqual("", rows[5].Split(',')[6]);
    }

    [Fact]
    public void PeriodicCheckpointsKeepTheLastNAndBestFollowsTheMetric()
    {
        var step = TestData.StepModel();
        using var trainer = new Trainer(step);
        var periodic = new PeriodicCheckpoint(i => _dir.File($"ckpt.step{i}.onnx"), everySteps: 3, keep: 2);
        var best = new BestCheckpoint(_dir.File("best.onnx"), "loss");
        Fit.Run(trainer, Data(step), new FitOptions { Steps = 12, BatchSize = 16, Callbacks = [periodic, best] });
        Assert.Equal(["ckpt.step12.onnx", "ckpt.step9.onnx"], Directory.GetFiles(_dir.Path, "ckpt.*").Select(Path.GetFileName).Order());
        Assert.Equal(9L, Iterations(ModelIO.Load(_dir.File("ckpt.step9.onnx"))));
        // The epoch loss falls every epoch here, so the best checkpoint is the last epoch's.
        Assert.Equal(12L, best.SavedIteration);
        Assert.True(File.Exists(_dir.File("best.onnx")));
    }

    [Fact]
    public void ChangingTheOptimizerKeepsTheStateAndTheSameSettingsChangeNothing()
    {
        var step = TestData.StepModel();
        using var a = new Trainer(step);
        for (int i = 0; i < 5; i++) a.Step(TestData.Batch(i), stateToHost: true);
        var checkpoint = a.Checkpoint();
        var info = StepModelInfo.Read(checkpoint, "ckpt");

        // Rebuilt with the same options, the model continues bit for bit.
        var same = OptimizerChange.Apply(checkpoint, info.Optimizer);
        using var b = new Trainer(same);
        Assert.Equal(5L, b.Iteration);
        a.Step(TestData.Batch(5), stateToHost: true);
        b.Step(TestData.Batch(5), stateToHost: true);
        foreach (var (name, value) in a.ReadState()) Assert.Equal(value.ToRawBytes(), b.ReadState()[name].ToRawBytes());

        // With lr 0 the parameters stay, while the accumulators carried over keep moving.
        a.ChangeOptimizer(Lr(0.0));
        Assert.Equal(new ConstantLearningRate(0.0), a.Info.Optimizer.LearningRate);
        Assert.Equal(6L, a.Iteration);
        var w = State(a, "W");
        var accum = State(a, "Adadelta/W/accum_grad");
        Assert.Contains(accum, v => v != 0);
        a.Step(TestData.Batch(6), stateToHost: true);
        Assert.Equal(w, State(a, "W"));
        Assert.NotEqual(accum, State(a, "Adadelta/W/accum_grad"));
        Assert.Equal(0f, a.LearningRateAt(6));
    }

    [Fact]
    public void ReduceOnPlateauLowersTheRateOfTheLiveTrainer()
    {
        // A rate of 1e-30 moves nothing the loss can see, so the epoch loss stalls: after two stalled epochs (epoch 3,
        // iteration 12) the rate is halved.
        var step = TestData.StepModel(Lr(1e-30));
        using var trainer = new Trainer(step);
        var reduce = new ReduceLearningRateOnPlateau("loss", 0.5, patience: 2);
        Fit.Run(trainer, Data(step), new FitOptions { Epochs = 4, BatchSize = 16, Callbacks = [reduce] });
        Assert.Equal([(12L, (double)(float)1e-30 * 0.5)], reduce.Reductions);
        Assert.Equal(16L, trainer.Iteration);
        Assert.Equal(new ConstantLearningRate((double)(float)1e-30 * 0.5), trainer.Info.Optimizer.LearningRate);
    }

    [Fact]
    public void CancellationEndsTheRunAfterAWholeStep()
    {
        var step = TestData.StepModel();
        using var trainer = new Trainer(step);
        using var cts = new CancellationTokenSource();
        var history = Fit.Run(trainer, Data(step), new FitOptions
        {
            Steps = 100,
            BatchSize = 16,
            Callbacks = [new Recorder(s => { if (s.Step == 4) cts.Cancel(); })],
        }, cts.Token);
        Assert.Equal(StopReason.Interrupted, history.StopReason);
        Assert.Equal(5L, trainer.Iteration);
        Assert.NotNull(trainer.Checkpoint());
    }

    [Fact]
    public void ABatchIsTypedAndChecked()
    {
        var batch = new Batch().Add("X", new float[12], 2, 6).Add("labels", new long[] { 0, 2 }, 2);
        Assert.Equal(2, batch.Rows);
        Assert.Equal([2L, 6L], batch.Tensors["X"].Shape);
        Assert.False(batch.Tensors.ContainsKey("Y"));
        var e = Assert.Throws<ArgumentException>(() => new Batch().Add("X", new float[5], 2, 3));
        Assert.Contains("[2,3]", e.Message);
        using var trainer = new Trainer(TestData.StepModel());
        Assert.True(float.IsFinite(trainer.Step(batch)));
        var missing = Assert.Throws<OnnxAdadeltaException>(() => trainer.Step(new Batch().Add("X", new float[12], 2, 6)));
        Assert.Contains("'labels'", missing.Message);
    }

    private sealed class Recorder(Action<StepReport> onStep) : TrainingCallback
    {
        public override void OnStepEnd(FitContext context, StepReport step) => onStep(step);
    }
}
