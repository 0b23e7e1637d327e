using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Reference;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Tests.Reference;

public class BitExactTests
{
    [Fact]
    public void CpuUpdateIsBitIdenticalToReferenceOver1000Steps()
    {
        var step = TestData.StepModel(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) });
        var errors = NumericsCheck.Run(step, 1000, i => TestData.Batch(i % 7));
        Assert.Equal(3 * 2, errors.Count); // W, b and their two accumulators each
        Assert.All(errors, e => Assert.True(e.Compared > 0));
        Assert.All(errors, e => Assert.True(e.MaxUlp == 0, $"{e.Name}: {e.MaxUlp} ULP, abs {e.MaxAbs}"));
    }

    [Fact]
    public void TheCheckerSeesADifferentOptimizer()
    {
        // The same ORT run checked against a reference with another rho must report errors: the check can fail.
        var step = TestData.StepModel(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) });
        var info = StepModelInfo.Read(step, "test");
        var tampered = step.Clone();
        (info with { Optimizer = info.Optimizer with { Rho = 0.9f } }).WriteTo(tampered);
        var errors = NumericsCheck.Run(tampered, 5, i => TestData.Batch(i));
        Assert.Contains(errors, e => e.MaxUlp > 1000);
    }
}
