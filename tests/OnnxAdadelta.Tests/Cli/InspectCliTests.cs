using OnnxAdadelta.Onnx;
using static OnnxAdadelta.Tests.Import.OrtArtifacts;

namespace OnnxAdadelta.Tests.Cli;

/// <summary><c>inspect</c> names every kind of model it can take, with the exact next command, in 80 columns.</summary>
public class InspectCliTests : IDisposable
{
    private readonly TestData.TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static string Model(string name) => Path.Combine(RepoPaths.Root, "models", name);

    private static CliRunner.Result Inspect(string path)
    {
        var r = CliRunner.Run("inspect", path);
        Assert.True(r.ExitCode == 0, r.Err);
        // The next commands stay whole so that they can be copied; everything else fits 80 columns.
        foreach (var line in r.Out.Split('\n').Where(l => !l.StartsWith("next: ") && !l.StartsWith("  or: ")))
            Assert.True(line.TrimEnd('\r').Length <= 80, $"wider than 80 columns: {line}");
        return r;
    }

    [Fact]
    public void AnInferenceModelIsCalledOneAndPointsToBuildTraining()
    {
        var path = Model("digits-mlp.onnx");
        var r = Inspect(path);
        Assert.StartsWith("inference model", r.Out);
        Assert.DoesNotContain("not a training graph", r.Out);
        var output = ModelIO.Load(path).Graph.Output[0].Name;
        Assert.Contains($"next: onnx-adadelta build-training {path} --loss cross-entropy --output {output} -o training.onnx", r.Out);
        var parameters = ModelIO.Load(path).Graph.Initializer.Where(t => t.DataType == 1).ToList();
        Assert.Contains($"{parameters.Count} parameters, {parameters.Sum(t => t.Dims.Aggregate(1L, (a, d) => a * d)):N0} values", r.Out);
    }

    [Fact]
    public void ATrainingGraphPointsToRewrite()
    {
        var path = Model("digits-softmax.training.onnx");
        var r = Inspect(path);
        Assert.StartsWith("training graph", r.Out);
        Assert.Contains($"next: onnx-adadelta rewrite {path} -o step.onnx\n", r.Out);
        Assert.Contains($"  or: onnx-adadelta train {path} --data DATA.npz --steps N -o ckpt.onnx\n", r.Out);
    }

    [Fact]
    public void AStepModelAndACheckpointPointToTrainAndExport()
    {
        var training = _dir.File("training.onnx");
        ModelIO.Save(TestData.TrainingGraph(), training);
        var step = _dir.File("step.onnx");
        Assert.Equal(0, CliRunner.Run("rewrite", training, "-o", step).ExitCode);
        var r = Inspect(step);
        Assert.StartsWith("training-step model (not trained yet)", r.Out);
        Assert.Contains($"next: onnx-adadelta train {step} --data DATA.npz --steps N -o ckpt.onnx", r.Out);

        var checkpoint = StepModelAfter(step, 2);
        r = Inspect(checkpoint);
        Assert.StartsWith("training-step model: a checkpoint after 2 steps", r.Out);
        Assert.Contains($"next: onnx-adadelta export {checkpoint} -o model.onnx", r.Out);
    }

    [Fact]
    public void OrtTrainingArtifactsPointToImportOrt()
    {
        var path = _dir.File("training_model.onnx");
        ModelIO.Save(LinearRegression(), path);
        var r = Inspect(path);
        Assert.StartsWith("ONNX Runtime training model", r.Out);
        Assert.Contains($"next: onnx-adadelta import-ort {path} --checkpoint CHECKPOINT -o training.onnx", r.Out);
    }

    [Fact]
    public void LongNamesKeepTheirHeadAndTail()
    {
        Assert.Equal("encoder/lay…kernel_grad", OnnxAdadelta.Cli.InspectCommand.Shorten("encoder/layer_11/attention/kernel_grad", 23));
        Assert.Equal("short", OnnxAdadelta.Cli.InspectCommand.Shorten("short", 23));
        Assert.Equal(["a bb", "  ccc", "  d"], OnnxAdadelta.Cli.InspectCommand.Wrap("a bb ccc d", 5));
    }

    /// <summary>A checkpoint: the step model trained for <paramref name="steps"/> steps through the CLI.</summary>
    private string StepModelAfter(string step, int steps)
    {
        var batch = TestData.Batch(5, 16);
        var data = _dir.File("data.npz");
        OnnxAdadelta.Training.Npz.Write(data, new Dictionary<string, OnnxAdadelta.Training.DataArray>
        {
            ["X"] = new(OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType.Float, batch["X"].Shape, batch["X"].Data),
            ["labels"] = new(OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType.Int64, batch["labels"].Shape, batch["labels"].Data),
        });
        var path = _dir.File("ckpt.onnx");
        var r = CliRunner.Run("train", step, "--data", data, "--steps", steps.ToString(), "-o", path);
        Assert.True(r.ExitCode == 0, r.Err);
        return path;
    }
}
