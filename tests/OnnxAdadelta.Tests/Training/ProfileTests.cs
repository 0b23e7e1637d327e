using System.Text.Json;
using OnnxAdadelta.Training;
using OnnxAdadelta.Tests.Cli;

namespace OnnxAdadelta.Tests.Training;

public class ProfileTests
{
    [Fact]
    public void EndProfilingWritesAChromeTraceOfTheStepModelsNodesAtTheRequestedPath()
    {
        using var dir = new TestData.TempDir();
        var path = dir.File("steps.json");
        var step = TestData.StepModel();
        using var trainer = new Trainer(step, new TrainerOptions { ProfilePath = path });
        for (int i = 0; i < 3; i++) trainer.Step(TestData.Batch(i));
        Assert.Equal(Path.GetFullPath(path), trainer.EndProfiling());
        Assert.Null(trainer.EndProfiling());

        Assert.Equal([Path.GetFullPath(path)], Directory.GetFiles(dir.Path));
        using (var doc = JsonDocument.Parse(File.ReadAllText(path)))
            Assert.Equal(JsonValueKind.Array, doc.RootElement.ValueKind);
        var profile = OrtProfile.Read(path);
        Assert.Equal(3, profile.Runs);
        var names = step.Graph.Node.Select(n => n.Name).ToHashSet();
        // Nodes ORT keeps as they are (not fused or folded) appear under their own names, three runs each.
        var ours = profile.Nodes.Where(n => names.Contains(n.Node)).ToList();
        Assert.NotEmpty(ours);
        Assert.All(ours, n => Assert.Equal(3, n.Runs));
        Assert.All(ours, n => Assert.Equal(step.Graph.Node.First(m => m.Name == n.Node).OpType, n.OpType));
        Assert.Contains(ours, n => n.Node.StartsWith("Adadelta/", StringComparison.Ordinal));
        Assert.True(profile.MicrosecondsUnder("Adadelta/") <= profile.NodeMicroseconds);

        var later = OrtProfile.Read(path, skipRuns: 1);
        Assert.Equal(2, later.Runs);
        Assert.All(later.Nodes.Where(n => names.Contains(n.Node)), n => Assert.Equal(2, n.Runs));
    }

    [Fact]
    public void ATrainerDisposedWithoutEndProfilingLeavesNoFile()
    {
        using var dir = new TestData.TempDir();
        using (var trainer = new Trainer(TestData.StepModel(), new TrainerOptions { ProfilePath = dir.File("p.json") }))
            trainer.Step(TestData.Batch(1));
        Assert.Empty(Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void AProfileInAMissingFolderIsRefusedBeforeAnyStep()
    {
        using var dir = new TestData.TempDir();
        var path = Path.Combine(dir.Path, "nope", "p.json");
        var e = Assert.Throws<OnnxAdadeltaException>(() => new Trainer(TestData.StepModel(), new TrainerOptions { ProfilePath = path }));
        Assert.Contains(path, e.Message);
        Assert.Contains("does not exist", e.Message);
    }

    [Fact]
    public void ATraceThatIsNotAnArrayIsRefusedNamingTheFile()
    {
        using var dir = new TestData.TempDir();
        var path = dir.File("x.json");
        File.WriteAllText(path, "{\"traceEvents\": 3}");
        var e = Assert.Throws<OnnxAdadeltaException>(() => OrtProfile.Read(path));
        Assert.Contains("x.json", e.Message);
        Assert.Contains("JSON Object", e.Message);
    }

    [Fact]
    public void TrainProfileWritesTheTraceAndSaysTheUpdatesShare()
    {
        using var dir = new TestData.TempDir();
        var training = dir.File("training.onnx");
        OnnxAdadelta.Onnx.ModelIO.Save(TestData.TrainingGraph(), training);
        var batch = TestData.Batch(5, 32);
        var data = dir.File("data.npz");
        Npz.Write(data, new Dictionary<string, DataArray>
        {
            ["X"] = new(OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType.Float, batch["X"].Shape, batch["X"].Data),
            ["labels"] = new(OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType.Int64, batch["labels"].Shape, batch["labels"].Data),
        });
        var trace = dir.File("trace.json");
        var r = CliRunner.Run("train", training, "--data", data, "--steps", "4", "--batch-size", "8", "--profile", trace, "-o", dir.File("ckpt.onnx"));
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains($"profile: wrote {Path.GetFullPath(trace)} (4 steps", r.Out);
        Assert.Contains("of the kernel time", r.Out);
        Assert.Equal(4, OrtProfile.Read(trace).Runs);
    }

    [Fact]
    public void TheReadmesProfileCommandWritesATrace()
    {
        var readme = File.ReadAllText(Path.Combine(RepoPaths.Root, "README.md"));
        var line = readme.Split('\n').Single(l => l.StartsWith("dotnet run -c Release --project tools/OnnxAdadelta.Cli -- train ", StringComparison.Ordinal) && l.Contains("--profile"));
        var args = System.Text.RegularExpressions.Regex.Split(line[(line.IndexOf(" -- ", StringComparison.Ordinal) + 4)..].Trim(), @"\s+");
        using var dir = new TestData.TempDir();
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i].StartsWith("models/", StringComparison.Ordinal)) args[i] = Path.Combine(RepoPaths.Root, args[i]);
            else if (i > 0 && args[i - 1] is "--profile" or "-o") args[i] = dir.File(args[i]);
        }
        var r = CliRunner.Run(args);
        Assert.True(r.ExitCode == 0, r.Err);
        var trace = args[Array.IndexOf(args, "--profile") + 1];
        Assert.Contains($"profile: wrote {trace}", r.Out);
        Assert.True(OrtProfile.Read(trace).Runs > 0);
    }
}
