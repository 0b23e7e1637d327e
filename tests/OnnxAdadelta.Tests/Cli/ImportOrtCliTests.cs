using System.Text.RegularExpressions;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Training;
using static OnnxAdadelta.Tests.Import.OrtArtifacts;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Cli;

/// <summary><c>import-ort</c> and <c>train --checkpoint</c> on a small artifact-like training model.</summary>
public class ImportOrtCliTests : IDisposable
{
    private readonly TestData.TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private string Artifact(bool useScale = false)
    {
        var path = _dir.File(useScale ? "scale_training_model.onnx" : "training_model.onnx");
        ModelIO.Save(LinearRegression(useScale), path);
        return path;
    }

    private string Params(params string[] names)
    {
        var path = _dir.File("params.onnx");
        ModelIO.Save(ParamsModel(LinearValues().Where(v => names.Contains(v.Key)).Select(v => v.Value)), path);
        return path;
    }

    private string Checkpoint()
    {
        var path = _dir.File("checkpoint");
        File.WriteAllBytes(path, WriteCheckpoint(LinearValues().Where(v => v.Key != "s").Select(v => CheckpointTensor.Of(v.Value))));
        return path;
    }

    private string Data()
    {
        var path = _dir.File("data.npz");
        Npz.Write(path, Raw(LinearBatch(rows: 32)).ToDictionary(b => b.Key, b => new DataArray(DataType.Float, b.Value.Shape, b.Value.Data)));
        return path;
    }

    private void AssertOneLineError(CliRunner.Result r, string expected, string outputFile)
    {
        Assert.Equal(1, r.ExitCode);
        var line = Assert.Single(r.ErrLines);
        Assert.StartsWith("onnx-adadelta: error: ", line);
        Assert.Contains(expected, line);
        Assert.False(File.Exists(outputFile), $"{outputFile} was left behind");
    }

    private static (float First, float Last) Losses(string output)
    {
        var m = Regex.Match(output, @"loss (\S+) -> (\S+);");
        Assert.True(m.Success, output);
        return (float.Parse(m.Groups[1].Value), float.Parse(m.Groups[2].Value));
    }

    [Fact]
    public void ImportOrtThenRewriteAndTrain()
    {
        var training = _dir.File("training.onnx");
        var r = CliRunner.Run("import-ort", Artifact(), "--params", Params("W", "b"), "-o", training);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Equal($"wrote {training}: loss 'loss', 2 parameters (4 values), data inputs X, target", r.Out.Trim());
        Assert.Equal(["loss", "y", "W_grad", "b_grad"], ModelIO.Load(training).Graph.Output.Select(o => o.Name));

        var step = _dir.File("step.onnx");
        r = CliRunner.Run("rewrite", training, "--lr", "1.0", "-o", step);
        Assert.True(r.ExitCode == 0, r.Err);
        var ckpt = _dir.File("ckpt.onnx");
        r = CliRunner.Run("train", step, "--data", Data(), "--steps", "300", "-o", ckpt);
        Assert.True(r.ExitCode == 0, r.Err);
        var (first, last) = Losses(r.Out);
        Assert.True(last < 0.5 * first, r.Out);
    }

    [Fact]
    public void TrainTakesTheArtifactsDirectly()
    {
        var ckpt = _dir.File("ckpt.onnx");
        var r = CliRunner.Run("train", Artifact(), "--checkpoint", Checkpoint(), "--data", Data(), "--steps", "300", "--lr", "1.0", "-o", ckpt);
        Assert.True(r.ExitCode == 0, r.Err);
        var (first, last) = Losses(r.Out);
        Assert.True(last < 0.5 * first, r.Out);
        var info = StepModelInfo.Read(ModelIO.Load(ckpt), ckpt);
        Assert.Equal(["W", "b"], info.Parameters);

        var exported = _dir.File("model.onnx");
        r = CliRunner.Run("export", ckpt, "-o", exported);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("y", ModelIO.Load(exported).Graph.Output.Select(o => o.Name));

        // --params works in place of the checkpoint.
        r = CliRunner.Run("train", Artifact(), "--params", Params("W", "b"), "--data", Data(), "--steps", "5", "-o", _dir.File("ckpt2.onnx"));
        Assert.True(r.ExitCode == 0, r.Err);
    }

    [Fact]
    public void MissingValuesAreOneLine()
    {
        var training = _dir.File("training.onnx");
        var artifact = Artifact();
        AssertOneLineError(CliRunner.Run("import-ort", artifact, "-o", training), $"{artifact}: no value for parameters 'W', 'b'", training);
        AssertOneLineError(CliRunner.Run("import-ort", artifact, "--params", Params("W"), "-o", training), "no value for parameter 'b'", training);
        var ckpt = _dir.File("ckpt.onnx");
        AssertOneLineError(CliRunner.Run("train", artifact, "--data", Data(), "--steps", "5", "-o", ckpt), "no value for parameters 'W', 'b'", ckpt);
    }

    [Fact]
    public void BadCheckpointsAndMisusedFlagsAreOneLine()
    {
        var training = _dir.File("training.onnx");
        var notACheckpoint = Params("W", "b");
        AssertOneLineError(CliRunner.Run("import-ort", Artifact(), "--checkpoint", notACheckpoint, "-o", training),
            $"{notACheckpoint}: not an ONNX Runtime training checkpoint", training);
        var truncated = _dir.File("truncated");
        File.WriteAllBytes(truncated, File.ReadAllBytes(Checkpoint())[..40]);
        AssertOneLineError(CliRunner.Run("import-ort", Artifact(), "--checkpoint", truncated, "-o", training), "truncated", training);

        var plain = _dir.File("plain.onnx");
        ModelIO.Save(TestData.TrainingGraph(), plain);
        AssertOneLineError(CliRunner.Run("import-ort", plain, "-o", training), "not an ONNX Runtime training model", training);
        var ckpt = _dir.File("ckpt.onnx");
        AssertOneLineError(CliRunner.Run("train", plain, "--checkpoint", Checkpoint(), "--data", Data(), "--steps", "5", "-o", ckpt),
            "--checkpoint applies only to ONNX Runtime training models", ckpt);
    }

    [Fact]
    public void UnsupportedOpsAreOneLine()
    {
        Assert.Null(global::OnnxAdadelta.Import.LoweringRules.Find(UnloweredOp));
        var artifact = _dir.File("unlowered_training_model.onnx");
        ModelIO.Save(WithUnloweredOp(), artifact);
        var training = _dir.File("training.onnx");
        AssertOneLineError(CliRunner.Run("import-ort", artifact, "--params", Params("W", "b"), "-o", training),
            $"Unsupported ops in the training model: {UnloweredOp} ×1.", training);
    }
}
