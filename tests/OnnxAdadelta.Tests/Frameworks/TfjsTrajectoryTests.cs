using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Tests.Cli;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Tests.Frameworks;

/// <summary>
/// TensorFlow.js's own Adadelta (npm @tensorflow/tfjs 4.22, pure-JS CPU backend, tests/node/tfjs-adadelta.mjs) records
/// 100 steps on seeded gradients; <c>verify --against</c> replays them with <c>--variant tfjs</c> in the graph and the
/// reference. The whole trajectory must agree bit for bit. Each case starts one node process (about 2 s).
/// </summary>
public class TfjsTrajectoryTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("onnx-adadelta-tfjs-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Record(string lr, string rho, string eps, int seed)
    {
        var path = Path.Combine(_dir, $"tfjs-{seed}.npz");
        var said = NodeRunner.Run("tfjs-adadelta.mjs", path, "--lr", lr, "--rho", rho, "--eps", eps, "--steps", "100", "--seed", seed.ToString(),
            "--param", $"W:{TestData.Features}x{TestData.Classes}", "--param", $"b:{TestData.Classes}");
        Assert.Contains("tfjs 4.22.0 backend cpu", said);
        return path;
    }

    [NodeTheory]
    [InlineData("1", "0.95", "1e-6", 1)]
    [InlineData("0.001", "0.95", "1e-7", 2)]
    [InlineData("0.5", "0.9", "1e-5", 3)]
    [InlineData("2", "0.99", "1e-8", 4)]
    public void TfjsVariantReplaysTfjsBitForBit(string lr, string rho, string eps, int seed)
    {
        var trajectory = Record(lr, rho, eps, seed);
        var options = new AdadeltaOptions { LearningRate = new ConstantLearningRate(double.Parse(lr)), Rho = double.Parse(rho), Epsilon = double.Parse(eps), Variant = AdadeltaVariant.Tfjs };
        var errors = TrajectoryCheck.Run(TestData.StepModel(options), Trajectory.Read(trajectory));
        Assert.Equal(2 * 2 * 100, errors.Count); // graph and reference, W and b, 100 steps
        Assert.All(errors, e => Assert.True(e.MaxUlp == 0, $"{e.Source} {e.Parameter} step {e.Step}: {e.MaxUlp} ULP"));

        // The Keras update is not TF.js's: the check can fail, and names the first step.
        var keras = TrajectoryCheck.Run(TestData.StepModel(options with { Variant = AdadeltaVariant.Keras }), Trajectory.Read(trajectory));
        Assert.Equal(1, keras.Where(e => e.MaxUlp > 0).Min(e => e.Step));
    }

    [NodeFact]
    public void TheCliReadsTheTrajectoryAndReportsTheFirstStepOver()
    {
        var trajectory = Record("1", "0.95", "1e-6", 5);
        var training = Path.Combine(_dir, "training.onnx");
        ModelIO.Save(TestData.TrainingGraph(), training);
        var step = Path.Combine(_dir, "step.onnx");
        Assert.Equal(0, CliRunner.Run("rewrite", training, "-o", step, "--variant", "tfjs", "--lr", "1", "--epsilon", "1e-6").ExitCode);
        var ok = CliRunner.Run("verify", step, "--against", trajectory);
        Assert.True(ok.ExitCode == 0, ok.Out + ok.Err);
        Assert.Contains("100 steps against tfjs-5.npz (recorded gradients): max ULP 0 (limit 0) -> pass", ok.Out);

        Assert.Equal(0, CliRunner.Run("rewrite", training, "-o", step, "--lr", "1", "--epsilon", "1e-6").ExitCode);
        var keras = CliRunner.Run("verify", step, "--against", trajectory, "--steps", "20");
        Assert.Equal(1, keras.ExitCode);
        Assert.Contains("20 steps against tfjs-5.npz (recorded gradients)", keras.Out);
        Assert.Contains("FAIL (first at step 1)", keras.Out);
    }
}
