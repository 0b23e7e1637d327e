using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Reference;
using OnnxAdadelta.Training;
using OnnxAdadelta.Tests.Cli;

namespace OnnxAdadelta.Tests.Optimizers;

/// <summary>
/// Options that add state or select parameters (EMA, gradient accumulation, parameter groups, frozen parameters):
/// checked in the graph against the reference and against values computed by hand, so a graph that ignored one fails.
/// </summary>
public class StateOptionTests
{
    private static float[] W(Trainer t) => t.ReadState()["W"].ToFloatArray();

    private static float[] State(Trainer t, string name) => t.ReadState()[name].ToFloatArray();

    public static TheoryData<string> Cases => new() { "ema", "ema_overwrite", "accumulation", "accumulation_clip_decay_ema", "groups", "frozen" };

    private static AdadeltaOptions Case(string name) => name switch
    {
        "ema" => new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), UseEma = true, EmaMomentum = 0.9 },
        "ema_overwrite" => new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), UseEma = true, EmaOverwriteFrequency = 7 },
        "accumulation" => new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), GradientAccumulationSteps = 3 },
        "accumulation_clip_decay_ema" => new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), ClipValue = 0.05, WeightDecay = 0.01, LossScaleFactor = 4, GradientAccumulationSteps = 4, UseEma = true, EmaOverwriteFrequency = 10 },
        "groups" => new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), Groups = [new ParameterGroup("b", learningRate: 0.25, rho: 0.8, epsilon: 1e-5, weightDecay: 0.02)] },
        "frozen" => new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), Frozen = ["b"] },
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void GraphIsBitIdenticalToTheReference(string name)
    {
        var errors = NumericsCheck.Run(TestData.StepModel(Case(name)), 300, i => TestData.Batch(i % 5));
        Assert.All(errors, e => Assert.True(e.Compared > 0));
        Assert.All(errors, e => Assert.True(e.MaxUlp == 0, $"{name}: {e.Name} {e.MaxUlp} ULP"));
    }

    [Fact]
    public void EmaFirstStepCopiesTheVariableThenAverages()
    {
        using var t = new Trainer(TestData.StepModel(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), UseEma = true, EmaMomentum = 0.9 }));
        t.Step(TestData.Batch(0));
        Assert.Equal(W(t), State(t, "Adadelta/W/ema"));
        var ema = State(t, "Adadelta/W/ema");
        t.Step(TestData.Batch(1));
        var w = W(t);
        var expected = ema.Select((e, i) => 0.9f * e + (1f - 0.9f) * w[i]).ToArray();
        Assert.Equal(expected, State(t, "Adadelta/W/ema"));
        Assert.NotEqual(w, expected);
    }

    [Fact]
    public void EmaOverwritesTheParametersEveryNSteps()
    {
        using var t = new Trainer(TestData.StepModel(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), UseEma = true, EmaOverwriteFrequency = 3 }));
        for (int s = 1; s <= 6; s++)
        {
            t.Step(TestData.Batch(s));
            if (s % 3 == 0) Assert.Equal(State(t, "Adadelta/W/ema"), W(t));
            else if (s > 1) Assert.NotEqual(State(t, "Adadelta/W/ema"), W(t));
        }
    }

    [Fact]
    public void ExportWithEmaGivesTheAverages()
    {
        using var t = new Trainer(TestData.StepModel(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), UseEma = true }));
        for (int s = 0; s < 4; s++) t.Step(TestData.Batch(s));
        var checkpoint = t.Checkpoint();
        var ema = InferenceExport.Export(checkpoint, useEma: true).Graph.Initializer.Single(i => i.Name == "W").ToFloatArray();
        var plain = InferenceExport.Export(checkpoint).Graph.Initializer.Single(i => i.Name == "W").ToFloatArray();
        Assert.Equal(State(t, "Adadelta/W/ema"), ema);
        Assert.Equal(W(t), plain);
        Assert.NotEqual(plain, ema);
        Assert.Throws<OnnxAdadeltaException>(() => InferenceExport.Export(TestData.StepModel(), useEma: true));
    }

    [Fact]
    public void AccumulationKeepsParametersOnOtherStepsAndAppliesTheMeanOnTheNthStep()
    {
        var model = TestData.StepModel(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), GradientAccumulationSteps = 3 });
        var info = StepModelInfo.Read(model, "t");
        using var t = new Trainer(NumericsCheck.WithGradientOutputs(model, info), new TrainerOptions { ExtraOutputs = info.Gradients.Values.ToList() });
        var initial = t.ReadState().ToDictionary(s => s.Key, s => s.Value.ToRawBytes());
        var grads = new List<Dictionary<string, float[]>>();
        for (int s = 0; s < 3; s++)
        {
            t.Step(TestData.Batch(s), stateToHost: true);
            grads.Add(info.Gradients.ToDictionary(g => g.Key, g => t.ReadOutput(g.Value)));
            var state = t.ReadState();
            if (s < 2)
                foreach (var key in new[] { "W", "b", "Adadelta/W/accum_grad", "Adadelta/W/accum_var" })
                    Assert.Equal(initial[key], state[key].ToRawBytes());
        }
        Assert.Equal(3, t.Iteration); // the counter advances on every micro-batch, as Keras 3's iterations
        Assert.All(t.ReadState()["Adadelta/W/gradient_accumulator"].ToFloatArray(), v => Assert.Equal(0f, v));

        // One plain step on the mean gradient, summed in Keras's order: (g3 + (g2 + g1)) / 3, with the counter at 2.
        var parameters = TestData.ValuesByName(TestData.StepModel()).Where(i => i.Key is "W" or "b").ToDictionary(i => i.Key, i => i.Value.ToFloatArray());
        var plain = new ReferenceAdadelta(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) }, parameters, iteration: 2);
        plain.Step(info.Gradients.Keys.ToDictionary(p => p, p =>
            grads[2][p].Select((g, i) => (g + (grads[1][p][i] + grads[0][p][i])) / 3f).ToArray()));
        Assert.Equal(plain.Parameters["W"], W(t));
        Assert.Equal(plain.Parameters["b"], t.ReadState()["b"].ToFloatArray());
    }

    [Fact]
    public void AccumulationScheduleSeesEveryMicroStep()
    {
        // Keras 3 evaluates the schedule at optimizer.iterations, which counts micro-batches: the apply step of the
        // first group of 2 reads the counter 1, past the boundary 0, so it uses the second value.
        var schedule = LearningRateSchedules.Parse("piecewise:boundaries=0,values=1.0;0.0");
        using var t = new Trainer(TestData.StepModel(new AdadeltaOptions { LearningRate = schedule, GradientAccumulationSteps = 2 }));
        var initial = W(t);
        t.Step(TestData.Batch(0));
        t.Step(TestData.Batch(1));
        Assert.Equal(initial, W(t));
        using var every = new Trainer(TestData.StepModel(new AdadeltaOptions { LearningRate = schedule }));
        every.Step(TestData.Batch(0));
        Assert.NotEqual(initial, W(every));
    }

    [Fact]
    public void AGroupWithItsOwnLearningRateMovesDifferently()
    {
        float[] Run(AdadeltaOptions o, string p)
        {
            using var t = new Trainer(TestData.StepModel(o));
            for (int s = 0; s < 5; s++) t.Step(TestData.Batch(s));
            return t.ReadState()[p].ToFloatArray();
        }
        var plain = new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) };
        var grouped = new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), Groups = [new ParameterGroup("b", learningRate: 0.1), new ParameterGroup("*", learningRate: 5)] };
        Assert.NotEqual(Run(plain, "b"), Run(grouped, "b"));
        Assert.NotEqual(Run(plain, "W"), Run(grouped, "W"));
        // First match wins: with "*" (0.1) before "b" (5), b takes 0.1.
        var first = new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), Groups = [new ParameterGroup("*", learningRate: 0.1), new ParameterGroup("b", learningRate: 5)] };
        Assert.Equal(Run(new AdadeltaOptions { LearningRate = new ConstantLearningRate(0.1) }, "b"), Run(first, "b"));
    }

    [Fact]
    public void AFrozenParameterKeepsItsBytesAndHasNoState()
    {
        foreach (var o in new[] { new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), Frozen = ["b"] }, new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), Groups = [new ParameterGroup("b", frozen: true)] } })
        {
            var model = TestData.StepModel(o);
            var before = TestData.TrainingGraph().Graph.Initializer.Single(i => i.Name == "b").ToRawBytes();
            Assert.DoesNotContain(model.Graph.Input, i => i.Name == "b" || i.Name.Contains("/b/"));
            var info = StepModelInfo.Read(model, "t");
            Assert.DoesNotContain(info.State, s => s.Parameter == "b");
            Assert.DoesNotContain("b", info.Gradients.Keys);
            using var t = new Trainer(model);
            var w0 = W(t);
            for (int s = 0; s < 5; s++) t.Step(TestData.Batch(s));
            Assert.NotEqual(w0, W(t));
            Assert.Equal(before, t.Checkpoint().Graph.Initializer.Single(i => i.Name == "b").ToRawBytes());
        }
    }

    [Fact]
    public void TheRecordRebuildsTheStateOptions()
    {
        var o = new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), UseEma = true, EmaMomentum = 0.95, EmaOverwriteFrequency = 5, GradientAccumulationSteps = 2, Groups = [new ParameterGroup("W", learningRate: 0.5, rho: 0.9, epsilon: 1e-6, weightDecay: 0.01, l2: 0.001), new ParameterGroup("x", frozen: true)], Frozen = ["norm"] };
        var back = StepModelInfo.Read(TestData.StepModel(o), "t").Optimizer;
        Assert.True(back.UseEma);
        Assert.Equal(0.95, back.EmaMomentum);
        Assert.Equal(5, back.EmaOverwriteFrequency);
        Assert.Equal(2, back.GradientAccumulationSteps);
        Assert.Equal(o.Groups, back.Groups, (a, b) => a.ToSpec() == b.ToSpec());
        Assert.Equal(["norm"], back.Frozen);
        Assert.Equal(o.Chain(), back.Chain(), (a, b) => a.GetType() == b.GetType());
    }

    [Theory]
    [InlineData("ema_momentum", 1.5, null, null)]
    [InlineData("ema_momentum", -0.1, null, null)]
    [InlineData("ema_overwrite_frequency", null, 0, null)]
    [InlineData("gradient_accumulation_steps", null, null, 0)]
    public void InvalidValuesNameTheOption(string option, double? momentum, int? frequency, int? accumulation)
    {
        var e = Assert.Throws<ArgumentException>(() => new AdadeltaOptions { UseEma = true, EmaMomentum = momentum, EmaOverwriteFrequency = frequency, GradientAccumulationSteps = accumulation }.Validate());
        Assert.Contains(option, e.Message);
    }

    [Fact]
    public void InvalidCombinationsNameBothOptions()
    {
        var e = Assert.Throws<ArgumentException>(() => new AdadeltaOptions { EmaMomentum = 0.9 }.Validate());
        Assert.Contains("ema_momentum", e.Message);
        Assert.Contains("use_ema", e.Message);
        e = Assert.Throws<ArgumentException>(() => new AdadeltaOptions { EmaOverwriteFrequency = 3 }.Validate());
        Assert.Contains("ema_overwrite_frequency", e.Message);
        Assert.Contains("use_ema", e.Message);
        e = Assert.Throws<ArgumentException>(() => new ParameterGroup("b", learningRate: 0.1, frozen: true));
        Assert.Contains("frozen", e.Message);
        Assert.Contains("lr", e.Message);
        Assert.Throws<ArgumentException>(() => ParameterGroup.Parse("b:momentum=0.9"));
        Assert.Throws<ArgumentException>(() => ParameterGroup.Parse("b:rho=2"));
        Assert.Contains("frozen", Assert.Throws<ArgumentException>(() => new AdadeltaOptions { Frozen = [" "] }.Validate()).Message);
    }

    [Fact]
    public void GroupSpecsRoundTrip()
    {
        var g = ParameterGroup.Parse("bias*:lr=0.1,rho=0.9");
        Assert.Equal("bias*", g.Pattern);
        Assert.Equal(0.1f, g.LearningRate);
        Assert.Equal(0.9f, g.Rho);
        Assert.Equal("bias*:lr=0.1,rho=0.9", g.ToSpec());
        Assert.True(ParameterGroup.Parse("emb:frozen").Frozen);
    }

    [Fact]
    public void CliFlagsAreRecordedAndShownByInspect()
    {
        using var dir = new TestData.TempDir();
        var training = dir.File("training.onnx");
        ModelIO.Save(TestData.TrainingGraph(), training);
        var step = dir.File("step.onnx");
        var r = CliRunner.Run("rewrite", training, "-o", step, "--lr", "1.0", "--use-ema", "--ema-momentum", "0.9", "--ema-overwrite-frequency", "4",
            "--gradient-accumulation-steps", "2", "--group", "W:lr=0.5,rho=0.9", "--frozen", "b");
        Assert.True(r.ExitCode == 0, r.Err);
        var o = StepModelInfo.Read(ModelIO.Load(step), "t").Optimizer;
        Assert.True(o.UseEma);
        Assert.Equal(0.9, o.EmaMomentum);
        Assert.Equal(4, o.EmaOverwriteFrequency);
        Assert.Equal(2, o.GradientAccumulationSteps);
        Assert.Equal(["W:lr=0.5,rho=0.9"], o.Groups.Select(g => g.ToSpec()));
        Assert.Equal(["b"], o.Frozen);
        var inspect = CliRunner.Run("inspect", step).Out;
        foreach (var s in new[] { "use_ema=true", "ema_momentum=0.9", "ema_overwrite_frequency=4", "gradient_accumulation_steps=2", "group=W:lr=0.5,rho=0.9", "frozen=b", "Adadelta/W/ema", "gradient_accumulat" })
            Assert.Contains(s, inspect);

        var exported = dir.File("ema.onnx");
        Assert.Equal(0, CliRunner.Run("export", step, "-o", exported, "--ema").ExitCode);
        var stepModel = ModelIO.Load(step);
        Assert.Equal(TestData.ValuesByName(stepModel)["Adadelta/W/ema"].ToFloatArray(),
            ModelIO.Load(exported).Graph.Initializer.Single(i => i.Name == "W").ToFloatArray());

        var bad = CliRunner.Run("rewrite", training, "-o", dir.File("bad.onnx"), "--ema-momentum", "0.9");
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("use_ema", bad.Err);
    }
}
