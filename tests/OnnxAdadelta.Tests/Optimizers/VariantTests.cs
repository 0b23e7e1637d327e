using System.Text.Json;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Reference;
using OnnxAdadelta.Tests.Cli;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Tests.Optimizers;

/// <summary>
/// <c>--variant keras|pytorch|tfjs|optax</c>: each reproduces its framework's update as the framework's source writes it
/// (torch/optim/adadelta.py, optax scale_by_adadelta + scale_by_learning_rate, tfjs-core adadelta_optimizer.ts), in the
/// graph and in the reference alike. TF.js itself is run in <c>FrameworkRunnerTests</c>.
/// </summary>
public class VariantTests
{
    // The frameworks' formulas, written out here in float32 scalar code from their sources (not from the pieces).
    private static (float P, float A, float V) Scalar(AdadeltaVariant variant, float lr, double rho, float eps, float p, float a, float v, float g)
    {
        float r = (float)rho;
        float c32 = 1f - r, c64 = (float)(1.0 - rho);
        switch (variant)
        {
            case AdadeltaVariant.Keras: // (1-rho) in float32, then left to right
            {
                float a2 = r * a + c32 * g * g;
                float d = MathF.Sqrt(v + eps) / MathF.Sqrt(a2 + eps) * g;
                return (p - lr * d, a2, r * v + c32 * d * d);
            }
            case AdadeltaVariant.PyTorch: // square_avg.mul_(rho).addcmul_(g, g, value=1-rho); delta = sqrt(acc+eps)/sqrt(avg+eps)*g; param.add_(delta, alpha=-lr)
            {
                float a2 = a * r + c64 * g * g;
                float d = MathF.Sqrt(v + eps) / MathF.Sqrt(a2 + eps) * g;
                return (p + -lr * d, a2, v * r + c64 * d * d);
            }
            case AdadeltaVariant.Tfjs: // add(mul(A, rho), mul(square(g), 1 - rho)); the update divides by the old A; add(mul(updates, -lr), value)
            {
                float d = MathF.Sqrt(v + eps) / MathF.Sqrt(a + eps) * g;
                return (d * -lr + p, a * r + g * g * c64, v * r + d * d * c64);
            }
            default: // optax: (1 - decay) * g**2 + decay * t; (sqrt(e_x + eps) / sqrt(e_g + eps)) * g; params + (-lr) * update
            {
                float a2 = c64 * (g * g) + r * a;
                float d = MathF.Sqrt(v + eps) / MathF.Sqrt(a2 + eps) * g;
                return (p + d * -lr, a2, c64 * (d * d) + r * v);
            }
        }
    }

    public static TheoryData<AdadeltaVariant, double, double, double> Cases => new()
    {
        { AdadeltaVariant.Keras, 1.0, 0.95, 1e-6 },
        { AdadeltaVariant.PyTorch, 1.0, 0.9, 1e-6 },
        { AdadeltaVariant.PyTorch, 0.5, 0.7, 1e-5 },
        { AdadeltaVariant.Tfjs, 1.0, 0.95, 1e-6 },
        { AdadeltaVariant.Tfjs, 0.001, 0.9, 1e-7 },
        { AdadeltaVariant.Optax, 1.0, 0.9, 1e-6 },
        { AdadeltaVariant.Optax, 0.3, 0.99, 1e-8 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void GraphAndReferenceFollowTheFrameworksFormulasBitForBit(AdadeltaVariant variant, double lr, double rho, double eps)
    {
        const int n = 7, steps = 40;
        var rng = new Random(3);
        var initial = Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var options = new AdadeltaOptions { LearningRate = new ConstantLearningRate(lr), Rho = rho, Epsilon = eps, Variant = variant };
        var reference = new ReferenceAdadelta(options, new Dictionary<string, float[]> { ["p"] = initial });
        using var trainer = new Trainer(AdadeltaRewrite.Apply(GoldenVectorTests.GradientInputGraph(initial), options));
        var (p, a, v) = ((float[])initial.Clone(), new float[n], new float[n]);
        for (int s = 0; s < steps; s++)
        {
            var scale = Math.Pow(10, rng.NextDouble() * 4 - 2);
            var g = Enumerable.Range(0, n).Select(_ => (float)((rng.NextDouble() * 2 - 1) * scale)).ToArray();
            for (int i = 0; i < n; i++) (p[i], a[i], v[i]) = Scalar(variant, (float)lr, rho, (float)eps, p[i], a[i], v[i], g[i]);
            reference.Step(new Dictionary<string, float[]> { ["p"] = g });
            trainer.Step(new Dictionary<string, (byte[], long[])> { ["g"] = (GoldenVectorTests.Bytes(g), [n]) });
            var state = trainer.ReadState();
            Assert.Equal(p, reference.Parameters["p"]);
            Assert.Equal(a, reference.State("p", ScaleByAdadelta.AccumGrad));
            Assert.Equal(v, reference.State("p", ScaleByAdadelta.AccumVar));
            Assert.Equal(p, state["p"].ToFloatArray());
            Assert.Equal(a, state["Adadelta/p/accum_grad"].ToFloatArray());
            Assert.Equal(v, state["Adadelta/p/accum_var"].ToFloatArray());
        }
    }

    [Fact]
    public void TfjsFirstStepMovesByTheWholeGradient()
    {
        float[] initial = [1f, -2f];
        float[] g = [0.1f, 0.1f];
        float Moved(AdadeltaVariant variant)
        {
            var reference = new ReferenceAdadelta(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), Rho = 0.95, Epsilon = 1e-6, Variant = variant }, new Dictionary<string, float[]> { ["p"] = initial });
            reference.Step(new Dictionary<string, float[]> { ["p"] = g });
            return initial[0] - reference.Parameters["p"][0];
        }
        Assert.Equal(1f - 0.1f, 1f - Moved(AdadeltaVariant.Tfjs)); // sqrt(0+eps)/sqrt(0+eps) = 1: the step is g exactly
        Assert.InRange(Moved(AdadeltaVariant.Keras), 0.0044, 0.0046);
        Assert.InRange(Moved(AdadeltaVariant.PyTorch), 0.0044, 0.0046);
        Assert.InRange(Moved(AdadeltaVariant.Optax), 0.0044, 0.0046);
    }

    [Theory]
    [InlineData(AdadeltaVariant.PyTorch)]
    [InlineData(AdadeltaVariant.Optax)]
    public void PyTorchAndOptaxReproduceThePublishedTrajectories(AdadeltaVariant variant)
    {
        // The golden cases share the recurrence these variants compute (the rounding differs by a few ULP at most).
        var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Golden", "adadelta-public-vectors.json")));
        foreach (var name in new[] { "keras3_golden", "tf_basic_lr1", "seed_defaults" })
        {
            var c = doc.RootElement.GetProperty("cases").EnumerateArray().Single(x => x.GetProperty("name").GetString() == name);
            var options = new AdadeltaOptions { LearningRate = new ConstantLearningRate(c.GetProperty("learning_rate").GetDouble()), Rho = c.GetProperty("rho").GetDouble(), Epsilon = c.GetProperty("epsilon").GetDouble(), Variant = variant };
            int n = c.GetProperty("elements").GetInt32();
            var reference = new ReferenceAdadelta(options, new Dictionary<string, float[]> { ["p"] = Enumerable.Repeat((float)c.GetProperty("initial").GetDouble(), n).ToArray() });
            var tol = c.GetProperty("tolerance");
            double rtol = tol.GetProperty("rtol").GetDouble(), atol = tol.TryGetProperty("atol", out var at) ? at.GetDouble() : 0;
            var grads = c.GetProperty("grads_per_step").EnumerateArray().Select(x => x.GetDouble()).ToList();
            var expected = c.GetProperty("expected_after_each_step").EnumerateArray().Select(x => x.GetDouble()).ToList();
            for (int s = 0; s < grads.Count; s++)
            {
                reference.Step(new Dictionary<string, float[]> { ["p"] = Enumerable.Repeat((float)grads[s], n).ToArray() });
                var actual = reference.Parameters["p"][0];
                Assert.True(Math.Abs(actual - expected[s]) <= atol + rtol * Math.Abs(expected[s]), $"{variant} {name} step {s + 1}: {actual} vs {expected[s]}");
            }
        }
    }

    [Fact]
    public void TheVariantIsRecordedAndReadBack()
    {
        var step = TestData.StepModel(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), Variant = AdadeltaVariant.Tfjs });
        var info = StepModelInfo.Read(step, "test");
        Assert.Equal(AdadeltaVariant.Tfjs, info.Optimizer.Variant);
        Assert.Equal(AdadeltaVariant.Tfjs, info.Optimizer.Variant);
        Assert.Contains("\"variant\":\"Tfjs\"", step.MetadataProps.Single(p => p.Key == StepModelInfo.MetadataKey).Value);
        // Keras, the default, is left out of the record, so older readers see what they always saw.
        Assert.DoesNotContain("variant", TestData.StepModel().MetadataProps.Single(p => p.Key == StepModelInfo.MetadataKey).Value);
        Assert.Equal(AdadeltaVariant.Keras, StepModelInfo.Read(TestData.StepModel(), "test").Optimizer.Variant);
    }

    [Fact]
    public void TheCliFlagSetsTheVariantAndItsDefaults()
    {
        var dir = Directory.CreateTempSubdirectory("onnx-adadelta-variant-").FullName;
        try
        {
            var training = Path.Combine(dir, "training.onnx");
            ModelIO.Save(TestData.TrainingGraph(), training);
            var step = Path.Combine(dir, "step.onnx");
            Assert.Equal(0, CliRunner.Run("rewrite", training, "-o", step, "--variant", "pytorch").ExitCode);
            var o = StepModelInfo.Read(ModelIO.Load(step), "test").Optimizer;
            Assert.Equal((AdadeltaVariant.PyTorch, "constant:value=1", 0.9, 1e-6), (o.Variant, o.LearningRate.ToSpec(), o.Rho, o.Epsilon));
            Assert.Contains("variant=pytorch", CliRunner.Run("inspect", step).Out);

            Assert.Equal(0, CliRunner.Run("rewrite", training, "-o", step, "--variant", "tfjs", "--rho", "0.9").ExitCode);
            o = StepModelInfo.Read(ModelIO.Load(step), "test").Optimizer;
            Assert.Equal((AdadeltaVariant.Tfjs, "constant:value=0.001", 0.9, 1e-7), (o.Variant, o.LearningRate.ToSpec(), o.Rho, o.Epsilon));

            var optax = CliRunner.Run("rewrite", training, "-o", step, "--variant", "optax");
            Assert.NotEqual(0, optax.ExitCode);
            Assert.Equal(["onnx-adadelta: error: --variant optax has no default learning rate (optax.adadelta needs one): give --lr or --schedule."], optax.ErrLines);
            var bad = CliRunner.Run("rewrite", training, "-o", step, "--variant", "jax");
            Assert.Equal(["onnx-adadelta: error: Invalid variant: 'jax' (expected one of keras, pytorch, tfjs, optax)."], bad.ErrLines);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
