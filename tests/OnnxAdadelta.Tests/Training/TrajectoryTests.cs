using OnnxAdadelta.Onnx;
using OnnxAdadelta.Tests.Cli;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Tests.Training;

/// <summary>
/// <c>verify --against</c> without Node: a trajectory recorded by our own Trainer (no gradients, so the step model
/// computes them from the data) replays exactly, a one-ULP change is found at its step, and bad files are named.
/// </summary>
public class TrajectoryTests
{
    private const int Steps = 8;

    private static Trajectory Recorded()
    {
        var step = TestData.StepModel();
        var values = TestData.ValuesByName(step);
        using var trainer = new Trainer(step);
        var parameters = new Dictionary<string, float[][]> { ["W"] = new float[Steps][], ["b"] = new float[Steps][] };
        for (int s = 0; s < Steps; s++)
        {
            trainer.Step(TestData.Batch(s), stateToHost: true);
            foreach (var p in parameters.Keys) parameters[p][s] = trainer.ReadState()[p].ToFloatArray();
        }
        return new Trajectory(new Dictionary<string, float[]> { ["W"] = values["W"].ToFloatArray(), ["b"] = values["b"].ToFloatArray() }, parameters, null);
    }

    [Fact]
    public void ARunReplaysExactlyFromTheDataAndAOneUlpChangeIsFoundAtItsStep()
    {
        var trajectory = Recorded();
        var errors = TrajectoryCheck.Run(TestData.StepModel(), trajectory, i => TestData.Batch(i));
        Assert.Equal(2 * 2 * Steps, errors.Count);
        Assert.All(errors, e => Assert.Equal(0, e.MaxUlp));

        trajectory.Parameters["W"][5][4] = MathF.BitIncrement(trajectory.Parameters["W"][5][4]);
        errors = TrajectoryCheck.Run(TestData.StepModel(), trajectory, i => TestData.Batch(i));
        var over = errors.Where(e => e.MaxUlp > 0).ToList();
        Assert.Equal([("graph", "W", 6, 1L), ("reference", "W", 6, 1L)], over.Select(e => (e.Source, e.Parameter, e.Step, e.MaxUlp)));
        Assert.True(over[0].MaxAbs > 0 && over[0].MaxRel > 0);
    }

    [Fact]
    public void BadTrajectoriesAreNamed()
    {
        using var dir = new TestData.TempDir();
        var step = dir.File("step.onnx");
        ModelIO.Save(TestData.StepModel(), step);
        string Error(Dictionary<string, DataArray> arrays, params string[] more)
        {
            var path = dir.File("t.npz");
            Npz.Write(path, arrays);
            var r = CliRunner.Run(["verify", step, "--against", path, .. more]);
            Assert.NotEqual(0, r.ExitCode);
            return Assert.Single(r.ErrLines);
        }
        var w = DataArray.FromFloat(new float[TestData.Features * TestData.Classes], TestData.Features, TestData.Classes);
        var b = DataArray.FromFloat(new float[TestData.Classes], TestData.Classes);
        var wSteps = DataArray.FromFloat(new float[2 * TestData.Features * TestData.Classes], 2, TestData.Features, TestData.Classes);
        var bSteps = DataArray.FromFloat(new float[2 * TestData.Classes], 2, TestData.Classes);

        Assert.Equal("onnx-adadelta: error: t.npz: 'initial/b' has no 'params/b' (the value after each step).",
            Error(new() { ["initial/W"] = w, ["initial/b"] = b, ["params/W"] = wSteps }));
        Assert.Equal("onnx-adadelta: error: t.npz: 'params/b' has shape (3,); [steps, ...] with 3 elements per step is expected.",
            Error(new() { ["initial/W"] = w, ["initial/b"] = b, ["params/W"] = wSteps, ["params/b"] = b }));
        Assert.Equal("onnx-adadelta: error: --against t.npz has no grads/ arrays: give --data so the step model computes the gradients.",
            Error(new() { ["initial/W"] = w, ["initial/b"] = b, ["params/W"] = wSteps, ["params/b"] = bSteps }));
        Assert.Equal("onnx-adadelta: error: The trajectory has no 'initial/b' for parameter 'b'; it has W.",
            Error(new() { ["initial/W"] = w, ["params/W"] = wSteps, ["grads/W"] = wSteps }));
        Assert.Equal("onnx-adadelta: error: --steps 3: the trajectory records 2 steps.",
            Error(new() { ["initial/W"] = w, ["initial/b"] = b, ["params/W"] = wSteps, ["params/b"] = bSteps, ["grads/W"] = wSteps, ["grads/b"] = bSteps }, "--steps", "3"));
    }
}
