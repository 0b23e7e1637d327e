using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Tests.Cli;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Tests.Training;

/// <summary><c>train --update fused|graph</c>: the choice is printed, both write the same checkpoint, and a fused run that cannot be is one error line.</summary>
public sealed class FusedUpdateCliTests : IDisposable
{
    private readonly TestData.TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private (string Graph, string Data) Files()
    {
        var graph = _dir.File("training.onnx");
        ModelIO.Save(TestData.TrainingGraph(), graph);
        var batch = TestData.Batch(5, 64);
        var data = _dir.File("data.npz");
        Npz.Write(data, new Dictionary<string, DataArray>
        {
            ["X"] = new(TensorProto.Types.DataType.Float, batch["X"].Shape, batch["X"].Data),
            ["labels"] = new(TensorProto.Types.DataType.Int64, batch["labels"].Shape, batch["labels"].Data),
        });
        return (graph, data);
    }

    [Fact]
    public void TrainPrintsTheUpdateAndBothModesWriteTheSameCheckpoint()
    {
        var (graph, data) = Files();
        var fused = CliRunner.Run("train", graph, "--data", data, "--steps", "4", "--batch-size", "16", "--update", "fused", "-o", _dir.File("fused.onnx"));
        Assert.True(fused.ExitCode == 0, fused.Err);
        Assert.Contains("update: fused (ai.onnxadadelta.AdadeltaUpdate, parameters and state in place)", fused.Out);
        var graphRun = CliRunner.Run("train", graph, "--data", data, "--steps", "4", "--batch-size", "16", "--update", "graph", "-o", _dir.File("graph.onnx"));
        Assert.True(graphRun.ExitCode == 0, graphRun.Err);
        Assert.Contains("update: graph (standard ONNX ops, state ping-pong)", graphRun.Out);
        var a = ModelIO.Load(_dir.File("fused.onnx")).Graph.Initializer.ToDictionary(t => t.Name, t => t.RawData);
        var b = ModelIO.Load(_dir.File("graph.onnx")).Graph.Initializer.ToDictionary(t => t.Name, t => t.RawData);
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var (k, v) in a) Assert.True(v.Equals(b[k]), $"{k} differs between --update fused and graph");
        Assert.DoesNotContain(ModelIO.Load(_dir.File("fused.onnx")).Graph.Node, n => n.Domain == FusedUpdate.Domain);
    }

    [Fact]
    public void TheReadmeUpdateGraphCommandRunsAndPrintsItsChoice()
    {
        var readme = File.ReadAllText(Path.Combine(RepoPaths.Root, "README.md"));
        var line = readme.Split('\n').Single(l => l.StartsWith("dotnet run -c Release --project tools/OnnxAdadelta.Cli -- train ") && l.Contains("--update graph"));
        var args = System.Text.RegularExpressions.Regex.Split(line[(line.IndexOf(" -- ", StringComparison.Ordinal) + 4)..].Trim(), @"\s+");
        for (int i = 0; i < args.Length; i++)
            if (args[i].StartsWith("models/")) args[i] = Path.Combine(RepoPaths.Root, args[i]);
        args[Array.IndexOf(args, "-o") + 1] = _dir.File("ckpt.onnx");
        var r = CliRunner.Run(args);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("update: graph (standard ONNX ops, state ping-pong)", r.Out);
        Assert.Contains("update: graph (standard ONNX ops, state ping-pong)", readme);
        Assert.Contains("update: fused (ai.onnxadadelta.AdadeltaUpdate, parameters and state in place)", readme);
        Assert.Equal(20L, TestData.ValuesByName(ModelIO.Load(_dir.File("ckpt.onnx")))["Adadelta/iterations"].ToInt64Array()[0]);
    }

    [Fact]
    public void ClipnormRunsInTheFusedOpByDefaultAndBothUpdatesWriteTheSameCheckpoint()
    {
        var (graph, data) = Files();
        var fused = CliRunner.Run("train", graph, "--data", data, "--steps", "3", "--clipnorm", "0.05", "-o", _dir.File("fused.onnx"));
        Assert.True(fused.ExitCode == 0, fused.Err);
        Assert.Contains("update: fused (ai.onnxadadelta.AdadeltaUpdate, parameters and state in place)", fused.Out);
        var standard = CliRunner.Run("train", graph, "--data", data, "--steps", "3", "--clipnorm", "0.05", "--update", "graph", "-o", _dir.File("graph.onnx"));
        Assert.True(standard.ExitCode == 0, standard.Err);
        Assert.Contains("update: graph (standard ONNX ops, state ping-pong)", standard.Out);
        Assert.Equal(File.ReadAllBytes(_dir.File("graph.onnx")), File.ReadAllBytes(_dir.File("fused.onnx")));
    }
}
