using OnnxAdadelta.Onnx;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Tests.Training;

/// <summary>
/// The learning rate a trainer reports is the step model's learning-rate output, read back with the loss: equal to the
/// host formula for every schedule, following a changed optimizer, carried through checkpoints and the fused op; older
/// step models without the output fall back to the host formula.
/// </summary>
public class LearningRateOutputTests
{
    private static void SameRate(float expected, float? actual, string what)
    {
        Assert.NotNull(actual);
        Assert.True(Math.Abs(actual.Value - expected) <= 1e-6f * Math.Max(1f, Math.Abs(expected)), $"{what}: graph {actual:R}, host {expected:R}");
    }

    // Runs `steps` steps and returns the rate each reported, checking each against the host formula at that step.
    private static List<float> Rates(Trainer trainer, int steps, string what)
    {
        var rates = new List<float>();
        for (int i = 0; i < steps; i++)
        {
            long before = trainer.Iteration;
            trainer.Step(TestData.Batch(before % 5));
            SameRate(trainer.Info.Optimizer.LearningRateAt(before), trainer.LearningRate, $"{what}, step {before + 1}");
            rates.Add(trainer.LearningRate!.Value);
        }
        return rates;
    }

    [Theory]
    [InlineData("constant:value=0.7")]
    [InlineData("exponential:initial=1.0,decay_steps=2,decay_rate=0.5,staircase=true")]
    [InlineData("piecewise:boundaries=2;4,values=0.1;1.0;0.3")]
    [InlineData("polynomial:initial=1.0,decay_steps=3,end=0.01,power=2,cycle=true")]
    [InlineData("inverse_time:initial=1.0,decay_steps=1,decay_rate=0.5")]
    [InlineData("cosine:initial=1.0,decay_steps=5,alpha=0.1")]
    [InlineData("cosine_restarts:initial=1.0,first_decay_steps=2,t_mul=2,m_mul=0.5")]
    public void EachScheduleIsReadFromTheGraphAndEqualsTheHostFormula(string spec)
    {
        var options = new AdadeltaOptions { LearningRate = LearningRateSchedules.Parse(spec) };
        var step = TestData.StepModel(options);
        var info = StepModelInfo.Read(step, "step");
        Assert.Equal("Adadelta/learning_rate", info.LearningRateOutput);
        using var trainer = new Trainer(step, info);
        Assert.Null(trainer.LearningRate);
        Assert.True(trainer.LearningRateFromGraph);
        var rates = Rates(trainer, 7, spec);
        if (!spec.StartsWith("constant", StringComparison.Ordinal)) Assert.True(rates.Distinct().Count() > 1, $"{spec}: {string.Join(", ", rates)}");
    }

    [Fact]
    public void TheLegacyDecayIsInTheGraphsRate()
    {
        var options = new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), Decay = 0.5 };
        using var trainer = new Trainer(TestData.StepModel(options));
        var rates = Rates(trainer, 3, "decay");
        Assert.Equal([1f, 1f / 1.5f, 0.5f], rates);
    }

    [Fact]
    public void TheRateIsTheGraphsOutputNotARecomputation()
    {
        // The output's Identity is pointed at another constant: the update is unchanged, the reported rate is the constant.
        var step = TestData.StepModel(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) });
        var info = StepModelInfo.Read(step, "step");
        var identity = step.Graph.Node.Single(n => n.Output.Contains(info.LearningRateOutput!));
        step.Graph.Initializer.Add(Tensors.Create("marker", [0.375f]));
        identity.Input[0] = "marker";
        using var trainer = new Trainer(step);
        trainer.Step(TestData.Batch(1));
        Assert.Equal(0.375f, trainer.LearningRate);
    }

    [Fact]
    public void WithParameterGroupsTheOutputIsTheDefaultGroupsRate()
    {
        // b has a rate of its own; W follows the schedule, which is what the output reports.
        var options = new AdadeltaOptions
        {
            LearningRate = LearningRateSchedules.Parse("exponential:initial=2.0,decay_steps=1,decay_rate=0.5"),
            Groups = [new ParameterGroup("b", learningRate: 0.25)],
        };
        using var trainer = new Trainer(TestData.StepModel(options));
        Assert.Equal([2f, 1f, 0.5f], Rates(trainer, 3, "groups"));

        // Every parameter in a group of its own: the default rate is still computed for the output.
        var all = options with { Groups = [new ParameterGroup("*", learningRate: 0.25)] };
        using var grouped = new Trainer(TestData.StepModel(all));
        Assert.Equal([2f, 1f], Rates(grouped, 2, "all grouped"));
    }

    [Fact]
    public void AChangedOptimizerIsFollowedByTheGraphsRate()
    {
        using var trainer = new Trainer(TestData.StepModel(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) }));
        Rates(trainer, 2, "before");
        trainer.ChangeOptimizer(trainer.Info.Optimizer with { LearningRate = new ConstantLearningRate(0.25) });
        // The last step's rate stays what that step applied until the next step.
        Assert.Equal(1f, trainer.LearningRate);
        Assert.Equal([0.25f, 0.25f], Rates(trainer, 2, "after"));
        Assert.Equal(4L, trainer.Iteration);
    }

    [Fact]
    public void ReduceLearningRateOnPlateauIsSeenInTheReportedRates()
    {
        // As FitTests: a rate of 1e-30 stalls the epoch loss, so after two stalled epochs (iteration 12) it is halved.
        float tiny = (float)1e-30;
        var step = TestData.StepModel(new AdadeltaOptions { LearningRate = new ConstantLearningRate(tiny) });
        using var trainer = new Trainer(step);
        var data = Dataset.FromArrays(FitTests.Arrays(64), TrainingRun.InputSpecs(step));
        var reducer = new ReduceLearningRateOnPlateau("loss", 0.5, patience: 2);
        var seen = new RateRecorder();
        var history = Fit.Run(trainer, data, new FitOptions { Epochs = 4, BatchSize = 16, Callbacks = [reducer, seen] });
        Assert.Equal([12L], reducer.Reductions.Select(r => r.Iteration));
        Assert.All(seen.Rates.Where(r => r.Iteration <= 12), r => Assert.Equal(tiny, r.Rate));
        Assert.All(seen.Rates.Where(r => r.Iteration > 12), r => Assert.Equal((float)(tiny * 0.5), r.Rate));
        Assert.Equal(16, seen.Rates.Count);
        Assert.Equal((float)(tiny * 0.5), history.Last!.LearningRate);
    }

    private sealed class RateRecorder : TrainingCallback
    {
        public List<(long Iteration, float Rate)> Rates { get; } = [];

        public override void OnStepEnd(FitContext context, StepReport step) => Rates.Add((step.Iteration, step.LearningRate));
    }

    [Fact]
    public void AResumedCheckpointGoesOnWithTheScheduleFromTheGraph()
    {
        var options = new AdadeltaOptions { LearningRate = LearningRateSchedules.Parse("exponential:initial=1.0,decay_steps=1,decay_rate=0.5") };
        using var tmp = new TestData.TempDir();
        using (var first = new Trainer(TestData.StepModel(options)))
        {
            Rates(first, 3, "first");
            first.Step(TestData.Batch(3), stateToHost: true);
            Checkpoints.Save(first, tmp.File("ckpt.onnx"));
        }
        using var resumed = new Trainer(ModelIO.Load(tmp.File("ckpt.onnx")));
        Assert.Equal(4L, resumed.Iteration);
        Assert.Equal([1f / 16, 1f / 32], Rates(resumed, 2, "resumed"));
    }

    /// <summary>The step model as this library wrote it before the learning-rate output: no entry, no output, no Identity.</summary>
    internal static ModelProto WithoutLearningRateOutput(ModelProto step)
    {
        var old = step.DeepCopy();
        var info = StepModelInfo.Read(old, "step");
        var name = info.LearningRateOutput!;
        old.Graph.Output.Remove(old.Graph.Output.Single(o => o.Name == name));
        old.Graph.Node.Remove(old.Graph.Node.Single(n => n.Output.Contains(name)));
        (info with { LearningRateOutput = null }).WriteTo(old);
        return old;
    }

    [Fact]
    public void AnOlderStepModelWithoutTheOutputTrainsWithTheHostsRate()
    {
        var options = new AdadeltaOptions { LearningRate = LearningRateSchedules.Parse("exponential:initial=1.0,decay_steps=1,decay_rate=0.5") };
        var old = WithoutLearningRateOutput(TestData.StepModel(options));
        Assert.DoesNotContain("learning_rate_output", old.MetadataProps.Single(p => p.Key == StepModelInfo.MetadataKey).Value);
        using var trainer = new Trainer(old);
        Assert.False(trainer.LearningRateFromGraph);
        Assert.Equal([1f, 0.5f], Rates(trainer, 2, "old"));
        Assert.Contains(ModelSummary.Of(old).Notes, n => n.StartsWith("learning rate: no output", StringComparison.Ordinal));

        // A new optimizer rewrites the update, which brings the output.
        trainer.ChangeOptimizer(trainer.Info.Optimizer with { LearningRate = new ConstantLearningRate(0.3) });
        Assert.True(trainer.LearningRateFromGraph);
        Assert.Equal([0.3f], Rates(trainer, 1, "changed"));
    }

    [Fact]
    public void TheFusedOpReportsTheSameRatesAsTheGraphUpdate()
    {
        var options = new AdadeltaOptions { LearningRate = LearningRateSchedules.Parse("cosine:initial=1.0,decay_steps=4,alpha=0.2") };
        var step = TestData.StepModel(options);
        using var graph = new Trainer(step);
        using var fused = new Trainer(step, new TrainerOptions { Update = UpdateMode.Fused });
        Assert.True(fused.LearningRateFromGraph);
        var swapped = FusedUpdate.Swap(step);
        Assert.Contains(swapped.Graph.Output, o => o.Name == "Adadelta/learning_rate");
        Assert.Contains(swapped.Graph.Node, n => n.Output.Contains("Adadelta/learning_rate"));
        Assert.Equal(Rates(graph, 5, "graph"), Rates(fused, 5, "fused"));
    }

    [Fact]
    public void ALearningRateEntryThatNamesNoOutputIsRefused()
    {
        var step = TestData.StepModel();
        var info = StepModelInfo.Read(step, "step");
        (info with { LearningRateOutput = "nowhere" }).WriteTo(step);
        var e = Assert.Throws<OnnxAdadeltaException>(() => StepModelInfo.Read(step, "step.onnx"));
        Assert.Equal("step.onnx: step-model metadata 'onnx_adadelta.step_model': the learning-rate output 'nowhere' is not a graph output.", e.Message);

        (info with { LearningRateOutput = info.Loss }).WriteTo(step);
        e = Assert.Throws<OnnxAdadeltaException>(() => StepModelInfo.Read(step, "step.onnx"));
        Assert.Contains($"the learning-rate output '{info.Loss}' is also the loss", e.Message);
    }
}
