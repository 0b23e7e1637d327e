using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Reference;
using OnnxAdadelta.Training;
using OnnxAdadelta.Graphs;

namespace OnnxAdadelta.Tests.Optimizers;

/// <summary>
/// The options beyond Keras 2.4 (global_clipnorm, weight decay, L2, maximize, legacy decay, loss scaling): each is
/// checked in the graph against the C# reference over many steps, and shown to change the trajectory, so a graph that
/// ignored it would fail.
/// </summary>
public class OptionTests
{
    private static float[] Train(AdadeltaOptions o, int steps = 5)
    {
        using var t = new Trainer(TestData.StepModel(o));
        for (int i = 0; i < steps; i++) t.Step(TestData.Batch(i));
        return t.ReadState()["W"].ToFloatArray();
    }

    public static TheoryData<string> BitExactCases => new()
    {
        "maximize", "loss_scale_factor", "weight_decay", "l2", "decay", "weight_decay_excluding_b", "decay_with_schedule", "all_elementwise",
    };

    private static AdadeltaOptions Case(string name) => name switch
    {
        "maximize" => new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), Maximize = true },
        "loss_scale_factor" => new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), LossScaleFactor = 1000 },
        "weight_decay" => new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), WeightDecay = 0.01 },
        "l2" => new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), L2 = 0.01 },
        "decay" => new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), Decay = 0.05 },
        "weight_decay_excluding_b" => new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), WeightDecay = 0.01, ExcludeFromWeightDecay = ["b"] },
        "decay_with_schedule" => new AdadeltaOptions { LearningRate = LearningRateSchedules.Parse("piecewise:boundaries=50;100,values=1.0;0.5;0.25"), Decay = 0.05 },
        "all_elementwise" => new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), ClipValue = 0.01, WeightDecay = 0.01, L2 = 0.001, Maximize = true, Decay = 0.01, LossScaleFactor = 8 },
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(BitExactCases))]
    public void ElementwiseOptionsAreBitIdenticalToTheReference(string name)
    {
        // No reduction is involved, so the graph and the reference perform the same float32 operations: 0 ULP.
        var errors = NumericsCheck.Run(TestData.StepModel(Case(name)), 300, i => TestData.Batch(i % 5));
        Assert.All(errors, e => Assert.True(e.Compared > 0));
        Assert.All(errors, e => Assert.True(e.MaxUlp == 0, $"{name}: {e.Name} {e.MaxUlp} ULP"));
    }

    [Theory]
    [MemberData(nameof(BitExactCases))]
    public void EachOptionChangesTheTrajectory(string name)
    {
        var plain = Train(name == "decay_with_schedule" ? new AdadeltaOptions { LearningRate = LearningRateSchedules.Parse("piecewise:boundaries=50;100,values=1.0;0.5;0.25") } : new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) });
        Assert.NotEqual(plain, Train(Case(name)));
    }

    [Fact]
    public void TheReferenceSeesEachOptionTheGraphRuns()
    {
        // The same ORT run checked against a reference whose record drops the option must report errors.
        foreach (var name in new[] { "maximize", "loss_scale_factor", "weight_decay", "l2", "decay" })
        {
            var step = TestData.StepModel(Case(name));
            var info = StepModelInfo.Read(step, "test");
            var o = info.Optimizer;
            (info with { Optimizer = o with { Maximize = false, LossScaleFactor = null, WeightDecay = null, L2 = null, Decay = null } }).WriteTo(step);
            // The graph's update (the fused op would read the edited record and agree with it).
            Assert.Contains(NumericsCheck.Run(step, 10, i => TestData.Batch(i % 5), update: UpdateMode.Graph), e => e.MaxUlp > 0);
        }
    }

    [Fact]
    public void GlobalClipnormStaysWithinMeasuredBoundsOfTheReference()
    {
        // The global norm adds ReduceSumSquare of W and b; ORT's summation order inside each tensor differs from the
        // reference's loop, so the shared clip factor may differ by an ULP. Measured on this model (clip 0.05, lr 1.0):
        // per step (reference resynchronized each step) the accumulators differ by at most 5 ULP and the parameters by
        // at most 3e-8 absolute (64 ULP on a W element near zero, where var - lr*delta cancels); over a 300-step
        // trajectory the differences add up to 1.8e-7 absolute, 4e-4 relative (W), 2e-6 relative elsewhere.
        // The bounds leave headroom over these measurements.
        var model = TestData.StepModel(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), GlobalClipNorm = 0.05 });
        var perStep = NumericsCheck.Run(model, 300, i => TestData.Batch(i % 5), resync: true);
        Assert.All(perStep, e => Assert.True(e.Name.Contains("/accum_") ? e.MaxUlp <= 8 : e.MaxAbs <= 1e-7, $"{e.Name}: {e.MaxUlp} ULP, abs {e.MaxAbs} in one step"));
        var trajectory = NumericsCheck.Run(model, 300, i => TestData.Batch(i % 5));
        Assert.All(trajectory, e => Assert.True(e.MaxAbs <= 1e-6 && e.MaxRel <= 2e-3, $"{e.Name}: abs {e.MaxAbs}, relative {e.MaxRel} over 300 steps"));
        Assert.Contains(trajectory, e => e.MaxUlp > 0); // the check does see the reduction's rounding
    }

    [Fact]
    public void GlobalClipnormClipsAllParametersTogether()
    {
        var plain = Train(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) });
        var global = Train(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), GlobalClipNorm = 0.01 });
        Assert.NotEqual(plain, global);
        Assert.NotEqual(Train(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), ClipNorm = 0.01 }), global); // not per tensor

        // The reference computes one norm over both tensors: its clipped step matches sqrt(|gW|^2 + |gb|^2).
        var g = new Dictionary<string, float[]> { ["W"] = [3f, 0f], ["b"] = [4f] };
        var reference = new ReferenceAdadelta(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), Rho = 0, GlobalClipNorm = 1 }, new Dictionary<string, float[]> { ["W"] = [0f, 0f], ["b"] = [0f] });
        reference.Step(g);
        Assert.Equal(0.6f, reference.State("W", ScaleByAdadelta.AccumGrad)[0] is var v ? MathF.Sqrt(v) : 0, 6);
        Assert.Equal(0.8f, MathF.Sqrt(reference.State("b", ScaleByAdadelta.AccumGrad)[0]), 6);
    }

    [Fact]
    public void GlobalClipnormOfOneParameterIsClipnorm()
    {
        var initial = Enumerable.Range(0, 37).Select(i => 0.1f * i - 1.5f).ToArray();
        var grads = Enumerable.Range(0, 37).Select(i => MathF.Sin(i) * 3f).ToArray();
        float[] Run(AdadeltaOptions o)
        {
            using var t = new Trainer(AdadeltaRewrite.Apply(GoldenVectorTests.GradientInputGraph(initial), o));
            for (int s = 0; s < 5; s++) t.Step(new Dictionary<string, (byte[], long[])> { ["g"] = (GoldenVectorTests.Bytes(grads), [grads.Length]) });
            return t.ReadState()["p"].ToFloatArray();
        }
        Assert.Equal(Run(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), ClipNorm = 0.5 }), Run(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), GlobalClipNorm = 0.5 }));
    }

    [Fact]
    public void ExcludedParametersAreNotDecayed()
    {
        var initial = new[] { 2f, -1f, 0.5f };
        var zeros = new float[3];
        float[] Run(AdadeltaOptions o)
        {
            using var t = new Trainer(AdadeltaRewrite.Apply(GoldenVectorTests.GradientInputGraph(initial), o));
            for (int s = 0; s < 3; s++) t.Step(new Dictionary<string, (byte[], long[])> { ["g"] = (GoldenVectorTests.Bytes(zeros), [3]) });
            return t.ReadState()["p"].ToFloatArray();
        }
        Assert.NotEqual(initial, Run(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), WeightDecay = 0.1 }));
        Assert.NotEqual(initial, Run(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), L2 = 0.1 }));
        Assert.Equal(initial, Run(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), WeightDecay = 0.1, ExcludeFromWeightDecay = ["p"] }));
        Assert.Equal(initial, Run(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), L2 = 0.1, ExcludeFromWeightDecay = ["*"] }));
        Assert.NotEqual(initial, Run(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), WeightDecay = 0.1, ExcludeFromWeightDecay = ["bias"] }));
    }

    [Theory]
    [InlineData("bias", "dense/bias", true)]
    [InlineData("bias", "dense/kernel", false)]
    [InlineData("conv*/kernel", "model/conv2/kernel", true)]
    [InlineData("conv*/kernel", "model/dense/kernel", false)]
    [InlineData("a.b", "axb", false)]
    [InlineData("a.b", "x.a.b", true)]
    [InlineData("Bias", "bias", false)]
    public void PatternsMatchSubstringsWithStarWildcards(string pattern, string name, bool matches) =>
        Assert.Equal(matches, new ParameterPatterns([pattern]).Matches(name));

    [Fact]
    public void LegacyDecayFollowsTf24()
    {
        // lr_t = lr / (1. + decay_t * local_step), all float32, local_step the counter before the step.
        var o = new AdadeltaOptions { LearningRate = new ConstantLearningRate(0.5), Decay = 0.01 };
        Assert.Equal(0.5f, o.LearningRateAt(0));
        for (long it = 1; it < 2000; it += 97)
            Assert.Equal(0.5f / (1f + 0.01f * (float)it), o.LearningRateAt(it));
        var scheduled = new AdadeltaOptions { LearningRate = LearningRateSchedules.Parse("piecewise:boundaries=10,values=1.0;0.5"), Decay = 0.1 };
        Assert.Equal(0.5f / (1f + 0.1f * 20f), scheduled.LearningRateAt(20));
        Assert.Equal(1f, new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), Decay = 0 }.LearningRateAt(100));
    }

    [Fact]
    public void DecoupledWeightDecayUsesTheScheduledLearningRate()
    {
        // Keras 3: variable - variable * wd * lr, lr the current (scheduled) one; zero gradients leave only the decay.
        var schedule = LearningRateSchedules.Parse("piecewise:boundaries=0,values=1.0;0.5");
        var reference = new ReferenceAdadelta(new AdadeltaOptions { LearningRate = schedule, WeightDecay = 0.1 }, new Dictionary<string, float[]> { ["p"] = [2f] });
        reference.Step(new Dictionary<string, float[]> { ["p"] = [0f] });
        reference.Step(new Dictionary<string, float[]> { ["p"] = [0f] });
        float expected = 2f - 2f * 0.1f * 1f;
        expected -= expected * 0.1f * 0.5f;
        Assert.Equal(expected, reference.Parameters["p"][0]);
    }

    [Fact]
    public void TheRecordRebuildsEveryOption()
    {
        var o = new AdadeltaOptions { LearningRate = new ConstantLearningRate(0.5), Rho = 0.9, Epsilon = 1e-6, GlobalClipNorm = 2, WeightDecay = 0.004, L2 = 0.001, ExcludeFromWeightDecay = ["bias", "norm*"], Maximize = true, Decay = 0.01, LossScaleFactor = 128 };
        var step = TestData.StepModel(o);
        var back = StepModelInfo.Read(step, "t").Optimizer;
        Assert.Equal(2, back.GlobalClipNorm);
        Assert.Equal(0.004, back.WeightDecay);
        Assert.Equal(0.001, back.L2);
        Assert.Equal(["bias", "norm*"], back.ExcludeFromWeightDecay);
        Assert.True(back.Maximize);
        Assert.Equal(0.01, back.Decay);
        Assert.Equal(128, back.LossScaleFactor);
        Assert.Equal(o.Chain(), back.Chain(), (a, b) => a.GetType() == b.GetType());
    }

    [Fact]
    public void PlainOptionsWriteNoNewMetadataKeys()
    {
        var json = TestData.StepModel().MetadataProps.Single(p => p.Key == StepModelInfo.MetadataKey).Value;
        foreach (var key in new[] { "global_clip_norm", "weight_decay", "\"l2\"", "exclude_from_weight_decay", "maximize", "\"decay\"", "loss_scale_factor" })
            Assert.DoesNotContain(key, json);
    }

    [Theory]
    [InlineData("keras", 0.001f, 0.95f, 1e-7f)]
    [InlineData("pytorch", 1f, 0.9f, 1e-6f)]
    [InlineData("PAPER", 1f, 0.95f, 1e-6f)]
    public void Presets(string name, float lr, float rho, float eps)
    {
        var p = AdadeltaPreset.Parse(name);
        Assert.Equal((lr, rho, eps), ((float)p.LearningRate, (float)p.Rho, (float)p.Epsilon));
    }
}
