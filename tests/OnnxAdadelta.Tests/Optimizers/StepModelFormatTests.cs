using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Tests.Cli;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Tests.Optimizers;

/// <summary>
/// The two forms of the step-model contract (see <see cref="StepModelState"/>). Golden/format1 holds files written by
/// the library before format 2: the digits softmax step model (lr 1), its checkpoint after 5 steps and after 10 steps
/// (train --data models/data/digits-train.npz --batch-size 32).
/// </summary>
public class StepModelFormatTests : IDisposable
{
    private static readonly string Format1 = Path.Combine(AppContext.BaseDirectory, "Golden", "format1");
    private readonly string _dir = Directory.CreateTempSubdirectory("onnx-adadelta-format-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Old(string name) => Path.Combine(Format1, name);

    [Fact]
    public void TheOldFilesAreInFormat1()
    {
        var model = ModelIO.Load(Old("ckpt-v1.onnx"));
        var info = StepModelInfo.Read(model, "test");
        Assert.Equal(1, info.FormatVersion);
        Assert.All(info.State, s => Assert.Null(s.Initial));
        Assert.All(info.State, s => Assert.Contains(model.Graph.Initializer, t => t.Name == s.Input));
    }

    [Fact]
    public void AnOldCheckpointResumesBitForBitAndIsWrittenBackInFormat2()
    {
        var data = Path.Combine(RepoPaths.Models, "data", "digits-train.npz");
        var resumed = Path.Combine(_dir, "resumed.onnx");
        var run = CliRunner.Run("train", Old("ckpt-v1.onnx"), "--data", data, "--steps", "5", "--batch-size", "32", "-o", resumed);
        Assert.True(run.ExitCode == 0, run.Err);

        var mine = ModelIO.Load(resumed);
        var info = StepModelInfo.Read(mine, "test");
        Assert.Equal(StepModelInfo.CurrentFormatVersion, info.FormatVersion);
        Assert.All(info.State, s => Assert.DoesNotContain(mine.Graph.Initializer, t => t.Name == s.Input));
        var expected = TestData.ValuesByName(ModelIO.Load(Old("ckpt10-v1.onnx")));
        var actual = TestData.ValuesByName(mine);
        Assert.Equal(10L, actual[info.Iterations.Input].ToInt64Array()[0]);
        foreach (var s in info.State)
            Assert.True(expected[s.Input].RawData.Equals(actual[s.Input].RawData), $"{s.Input} differs from the 10-step run of the format-1 library");
    }

    [Fact]
    public void ExportInspectAndVerifyReadBothForms()
    {
        var old = ModelIO.Load(Old("ckpt-v1.onnx"));
        var upgraded = StepModelState.Upgrade(old);
        Assert.NotSame(old, upgraded);
        Assert.Same(upgraded, StepModelState.Upgrade(upgraded));
        var a = InferenceExport.Export(old).Graph.Initializer.ToDictionary(t => t.Name, t => t.RawData);
        var b = InferenceExport.Export(upgraded).Graph.Initializer.ToDictionary(t => t.Name, t => t.RawData);
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        Assert.Contains("W", a.Keys);
        foreach (var (k, v) in a) Assert.True(v.Equals(b[k]), k);

        var inspect = CliRunner.Run("inspect", Old("ckpt-v1.onnx"));
        Assert.Equal(0, inspect.ExitCode);
        Assert.Contains("iterations: 5", inspect.Out);
        Assert.Contains("state values: format 1", inspect.Out);
        var path = Path.Combine(_dir, "v2.onnx");
        ModelIO.Save(upgraded, path);
        Assert.Contains("state values: format 2", CliRunner.Run("inspect", path).Out);

        var verify = CliRunner.Run("verify", Old("step-v1.onnx"), "--data", Path.Combine(RepoPaths.Models, "data", "digits-train.npz"), "--steps", "3", "--batch-size", "32");
        Assert.True(verify.ExitCode == 0, verify.Out + verify.Err);
    }

    [Fact]
    public void BothFormsConvertIntoEachOtherWithoutLoss()
    {
        var step = TestData.StepModel();
        var defaults = StepModelState.WithInputDefaults(step);
        var info1 = StepModelInfo.Read(defaults, "test");
        Assert.Equal(1, info1.FormatVersion);
        Assert.All(info1.State, s => Assert.Contains(defaults.Graph.Initializer, t => t.Name == s.Input));
        var back = StepModelState.Upgrade(defaults);
        Assert.Equal(step.Graph.Initializer.Select(t => t.Name).Order(), back.Graph.Initializer.Select(t => t.Name).Order());
        Assert.Equal(TestData.ValuesByName(step).ToDictionary(p => p.Key, p => p.Value.RawData), TestData.ValuesByName(back).ToDictionary(p => p.Key, p => p.Value.RawData));

        // Training either form gives the same checkpoint, written in format 2.
        using var t1 = new Trainer(step);
        using var t2 = new Trainer(defaults);
        for (int i = 0; i < 4; i++) { t1.Step(TestData.Batch(i)); t2.Step(TestData.Batch(i)); }
        var c1 = TestData.ValuesByName(t1.Checkpoint());
        var c2 = TestData.ValuesByName(t2.Checkpoint());
        Assert.All(StepModelInfo.Read(t2.Checkpoint(), "test").State, s => Assert.True(c1[s.Input].RawData.Equals(c2[s.Input].RawData), s.Input));
        Assert.Equal(4L, c1["Adadelta/iterations"].ToInt64Array()[0]);
    }

    [Fact]
    public void ACheckpointSuppliesParameterValuesInEitherFormat()
    {
        // rewrite --params CHECKPOINT: the trained values, read under the parameters' own names.
        using var t = new Trainer(TestData.StepModel());
        for (int i = 0; i < 3; i++) t.Step(TestData.Batch(i));
        var checkpoint = t.Checkpoint();
        var trained = TestData.ValuesByName(checkpoint)["W"].RawData;
        foreach (var source in new[] { checkpoint, StepModelState.WithInputDefaults(checkpoint) })
        {
            var step = AdadeltaRewrite.Apply(TestData.TrainingGraph(), new AdadeltaOptions(), new OnnxAdadelta.Graphs.RewriteOptions { ParameterValues = source });
            Assert.True(trained.Equals(TestData.ValuesByName(step)["W"].RawData));
        }
    }

    [Fact]
    public void AMissingValueInitializerIsNamed()
    {
        var step = TestData.StepModel();
        step.Graph.Initializer.Remove(step.Graph.Initializer.Single(t => t.Name == "W.initial"));
        var e = Assert.Throws<OnnxAdadeltaException>(() => new Trainer(step));
        Assert.Contains("'W.initial'", e.Message);
        Assert.Contains("'W'", e.Message);
    }
}
