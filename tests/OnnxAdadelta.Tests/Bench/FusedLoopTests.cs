using OnnxAdadelta.Bench;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Reference;

namespace OnnxAdadelta.Tests.Bench;

/// <summary>
/// The benchmark's fused SIMD loop computes exactly the update of <see cref="ReferenceAdadelta"/>, and its
/// <c>--check</c> mode passes on small shapes and notices constant folding. No timings are asserted.
/// </summary>
public class FusedLoopTests
{
    public static TheoryData<int, double, double, double> Cases() => new()
    {
        // Odd lengths: below, around and well past the vector width, so both the SIMD body and the scalar tail run.
        { 1, 0.001, 0.95, 1e-7 },
        { 7, 0.001, 0.95, 1e-7 },
        { 13, 1.0, 0.95, 1e-7 },
        { 1001, 0.001, 0.95, 1e-7 },
        { 4099, 1.0, 0.9, 1e-6 },
        { 10_007, 0.5, 0.99, 1e-3 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void FusedLoopIsBitIdenticalToTheReferenceOverSeveralSteps(int length, double lr, double rho, double epsilon)
    {
        var options = new AdadeltaOptions { LearningRate = new ConstantLearningRate(lr), Rho = rho, Epsilon = epsilon };
        var random = new Random(length);
        var initial = Values(random, length, 2f);
        var reference = new ReferenceAdadelta(options, new Dictionary<string, float[]> { ["p"] = initial });
        var p = (float[])initial.Clone();
        var accumGrad = new float[length];
        var accumVar = new float[length];
        float oneMinusRho = 1f - (float)options.Rho;

        for (int step = 0; step < 6; step++)
        {
            var g = Values(random, length, step % 2 == 0 ? 1f : 50f);
            if (length > 3) { g[0] = 0f; g[1] = 1e-20f; g[2] = -3e4f; } // zero, underflowing square, large
            float lrNow = reference.LearningRate;
            reference.Step(new Dictionary<string, float[]> { ["p"] = g });
            FusedAdadelta.Step(p, accumGrad, accumVar, g, lrNow, (float)options.Rho, oneMinusRho, (float)options.Epsilon);

            AssertBitIdentical(reference.Parameters["p"], p, $"p after step {step + 1}");
            AssertBitIdentical(reference.State("p", ScaleByAdadelta.AccumGrad), accumGrad, $"accum_grad after step {step + 1}");
            AssertBitIdentical(reference.State("p", ScaleByAdadelta.AccumVar), accumVar, $"accum_var after step {step + 1}");
        }
    }

    [Fact]
    public void FusedLoopRejectsSpansOfDifferentLengths()
    {
        var ex = Assert.Throws<ArgumentException>(() => FusedAdadelta.Step(new float[9], new float[9], new float[8], new float[9], 0.1f, 0.95f, 0.05f, 1e-7f));
        Assert.Contains("accum_var 8", ex.Message);
    }

    [Fact]
    public void CheckModePassesOnSmallShapes()
    {
        var log = new StringWriter();
        var problems = BenchCheck.Run([new UpdateShape(1, 1003, "1 x 1003"), new UpdateShape(3, 2000, "3 x 2000")], log);
        Assert.True(problems.Count == 0, log.ToString());
        Assert.Contains("3 x 2000", log.ToString());
    }

    [Fact]
    public void TheFoldingCheckSeesAFoldedUpdate()
    {
        var shape = new UpdateShape(2, 64, "2 x 64");
        Assert.Null(BenchCheck.FoldingProblem(AdadeltaRewrite.Apply(UpdateGraphs.Build(shape), AdadeltaUpdateBenchmarks.Options)));
        // With Identity gradients ONNX Runtime precomputes (1-rho)*g*g: the check must say so.
        var folded = BenchCheck.FoldingProblem(AdadeltaRewrite.Apply(UpdateGraphs.Build(shape, foldableGradients: true), AdadeltaUpdateBenchmarks.Options));
        Assert.NotNull(folded);
        Assert.Contains("folded", folded);
    }

    [Fact]
    public void ThroughputFiguresFollowFromParametersAndTime()
    {
        Assert.Equal(1000.0, Throughput.MparamPerSecond(1_000_000, 1e6), 9); // 1M parameters in 1 ms
        Assert.Equal(28.0, Throughput.GigabytesPerSecond(1_000_000, 1e6), 9);  // 28 MB in 1 ms
    }

    private static float[] Values(Random random, int length, float scale)
    {
        var v = new float[length];
        for (int i = 0; i < length; i++) v[i] = (float)(random.NextDouble() * 2 - 1) * scale;
        return v;
    }

    private static void AssertBitIdentical(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        var at = BenchCheck.FirstDifference(expected, actual);
        Assert.True(at is null, at is int i ? $"{what}[{i}]: fused {actual[i]:R}, reference {expected[i]:R}" : "");
    }
}
