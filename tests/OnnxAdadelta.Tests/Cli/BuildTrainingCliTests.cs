using System.Text.RegularExpressions;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Tests.Cli;

public class BuildTrainingCliTests : IDisposable
{
    private readonly TestData.TempDir _dir = new();
    private static string Model(string name) => Path.Combine(RepoPaths.Models, name);
    private static string Data(string split) => Path.Combine(RepoPaths.Models, "data", $"digits-{split}.npz");

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void BuildTrainingThenRewriteThenTrain()
    {
        var training = _dir.File("mlp.training.onnx");
        var r = CliRunner.Run("build-training", Model("digits-mlp.onnx"), "--loss", "cross-entropy", "--output", "logits", "--freeze", "b2", "-o", training);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("parameters: 3 trainable (9,600 values), 1 left out (1 --freeze)", r.Out);
        var graph = TrainingGraph.Analyze(ModelIO.Load(training));
        Assert.Equal(["W1", "b1", "W2"], graph.Parameters.Select(p => p.Name));
        Assert.Equal(["X", "labels"], graph.DataInputs);

        var ckpt = _dir.File("mlp.ckpt.onnx");
        r = CliRunner.Run("train", training, "--data", Data("train"), "--steps", "200", "--batch-size", "64", "--shuffle", "--lr", "1.0", "--threads", "1", "-o", ckpt);
        Assert.True(r.ExitCode == 0, r.Err);
        r = CliRunner.Run("evaluate", ckpt, "--data", Data("test"));
        Assert.True(r.ExitCode == 0, r.Err);
        var accuracy = double.Parse(Regex.Match(r.Out, @"accuracy (\d+\.\d+) %").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(accuracy > 85, r.Out);
    }

    [Fact]
    public void TrainFromTheInferenceModelReportsHeldOutAccuracy()
    {
        var ckpt = _dir.File("mlp.ckpt.onnx");
        var r = CliRunner.Run("train", Model("digits-mlp.onnx"), "--loss", "cross-entropy", "--output", "logits", "--data", Data("train"),
            "--steps", "300", "--batch-size", "64", "--shuffle", "--lr", "1.0", "--eval", Data("test"), "-o", ckpt);
        Assert.True(r.ExitCode == 0, r.Err);
        var accuracy = double.Parse(Regex.Match(r.Out, @"held-out accuracy (\d+\.\d+) %").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(accuracy > 90, r.Out);
        var exported = _dir.File("mlp.onnx");
        Assert.Equal(0, CliRunner.Run("export", ckpt, "-o", exported).ExitCode);
        var model = ModelIO.Load(exported);
        Assert.Equal(["X"], model.Graph.Input.Select(i => i.Name));
        Assert.Equal(["W1", "W2", "b1", "b2"], model.Graph.Initializer.Select(t => t.Name).Order(StringComparer.Ordinal));
        Assert.Contains($"accuracy {accuracy:F2} %", CliRunner.Run("evaluate", exported, "--data", Data("test")).Out);
    }

    [Fact]
    public void MseAgainstAFloatTarget()
    {
        var r = CliRunner.Run("build-training", Model("digits-mlp.onnx"), "--loss", "mse", "--output", "logits", "--target", "onehot", "-o", _dir.File("t.onnx"));
        Assert.True(r.ExitCode == 0, r.Err);
        var g = ModelIO.Load(_dir.File("t.onnx"));
        Assert.Equal("float[batch,10]", OnnxAdadelta.Graphs.TypeProtos.Describe(g.Graph.Input.Single(i => i.Name == "onehot").Type));
    }

    private void Fails(string expected, params string[] args)
    {
        var output = _dir.File("out.onnx");
        var r = CliRunner.Run([.. args, "-o", output]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(expected, Assert.Single(r.ErrLines));
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void BadInput()
    {
        Fails("The loss 'logits' has shape [?,10]; a scalar is expected", "build-training", Model("digits-mlp.onnx"), "--loss", "output", "--output", "logits");
        Fails("Parameter 'W9' (named by --trainable) matches no float initializer of the model (an exact name may also be a graph input).", "build-training", Model("digits-mlp.onnx"), "--loss", "cross-entropy", "--output", "logits", "--trainable", "W9");
        Fails("Parameter 'bias' (named by --freeze) matches no float initializer", "build-training", Model("digits-mlp.onnx"), "--loss", "cross-entropy", "--output", "logits", "--freeze", "bias");
        Fails("Every parameter with a path to the loss 'loss' is left out (4 --freeze)", "build-training", Model("digits-mlp.onnx"), "--loss", "cross-entropy", "--output", "logits", "--freeze", "W1", "--freeze", "b1", "--freeze", "W2", "--freeze", "b2");
        Fails("--loss hinge: expected cross-entropy, nll, bce, mse or output.", "build-training", Model("digits-mlp.onnx"), "--loss", "hinge", "--output", "logits");
        Fails("--eval nowhere.npz: no such file or folder.", "train", Model("digits-mlp.onnx"), "--loss", "cross-entropy", "--output", "logits", "--data", Data("test"), "--steps", "1", "--eval", "nowhere.npz");
        Fails("--steps 0: expected at least 1.", "train", Model("digits-mlp.onnx"), "--loss", "cross-entropy", "--output", "logits", "--data", Data("test"), "--steps", "0");
        Fails("has no array 'labels' for graph input 'labels'", "train", Model("digits-mlp.onnx"), "--loss", "cross-entropy", "--output", "logits", "--target", "labels", "--data", MissingLabels(), "--steps", "1");
    }

    [Fact]
    public void ParameterListInputShapesAndTrainingModeFlags()
    {
        var training = _dir.File("mlp.training.onnx");
        var r = CliRunner.Run("build-training", Model("digits-mlp.onnx"), "--loss", "cross-entropy", "--output", "logits", "--freeze", "W*",
            "--input-shape", "X=8,64", "--list-parameters", "--batchnorm", "train", "--dropout", "train", "--trainable-constants", "false", "-o", training);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("parameters: 2 trainable (138 values), 2 left out (2 --freeze)", r.Out);
        Assert.Matches(@"W1\s*│\s*\[64,128\]\s*│\s*no\s*│\s*--freeze", r.Out);
        Assert.Matches(@"b2\s*│\s*\[10\]\s*│\s*yes\s*│\s*trainable", r.Out);
        var model = ModelIO.Load(training);
        Assert.Equal("float[8,64]", model.Graph.Input.Single(i => i.Name == "X").Type.Describe());
        Assert.Equal(["b1", "b2"], TrainingGraph.Analyze(model).Parameters.Select(p => p.Name));

        Fails("--batchnorm maybe: expected inference or train.", "build-training", Model("digits-mlp.onnx"), "--loss", "cross-entropy", "--output", "logits", "--batchnorm", "maybe");
        Fails("--dropout on: expected identity or train.", "build-training", Model("digits-mlp.onnx"), "--loss", "cross-entropy", "--output", "logits", "--dropout", "on");
        Fails("--input-shape X: dimension 1 is fixed at 64 in the model, not 32.", "build-training", Model("digits-mlp.onnx"), "--loss", "cross-entropy", "--output", "logits", "--input-shape", "X=8,32");
        Fails("--class-axis 2: out of range for 'logits' of rank 2", "build-training", Model("digits-mlp.onnx"), "--loss", "cross-entropy", "--output", "logits", "--class-axis", "2");
    }

    private string MissingLabels()
    {
        var path = _dir.File("nolabels.npz");
        var arrays = Npz.Read(Data("test"));
        Npz.Write(path, new Dictionary<string, DataArray> { ["X"] = arrays["X"] });
        return path;
    }
}
