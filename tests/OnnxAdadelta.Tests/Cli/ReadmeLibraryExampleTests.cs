using System.Text.RegularExpressions;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Tests.Cli;

/// <summary>Tests that change process-wide state (the working directory, Console.Out) run alone.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ProcessWideState
{
    public const string Name = "process-wide state";

    /// <summary>Runs <paramref name="body"/> in a temporary folder holding a link to models/, with Console.Out captured.</summary>
    public static string InModelsFolder(Action<string> body)
    {
        var previous = Environment.CurrentDirectory;
        using var dir = new TestData.TempDir();
        Directory.CreateSymbolicLink(Path.Combine(dir.Path, "models"), RepoPaths.Models);
        Environment.CurrentDirectory = dir.Path;
        var output = new StringWriter();
        var console = Console.Out;
        Console.SetOut(output);
        try { body(dir.Path); }
        finally
        {
            Console.SetOut(console);
            Environment.CurrentDirectory = previous;
        }
        return output.ToString();
    }
}

/// <summary>The README's C# example is this test's body, line for line, run in a temporary folder.</summary>
[Collection(ProcessWideState.Name)]
public class ReadmeLibraryExampleTests
{
    [Fact]
    public void TheReadmeExampleIsThisCodeAndItRuns()
    {
        var readme = File.ReadAllText(Path.Combine(RepoPaths.Root, "README.md"));
        var block = Regex.Match(readme, "```csharp\n(.*?)```", RegexOptions.Singleline).Groups[1].Value;
        var source = File.ReadAllText(Path.Combine(RepoPaths.Root, "tests", "OnnxAdadelta.Tests", "Cli", "ReadmeLibraryExampleTests.cs"));
        var body = Regex.Match(source, @"// README-BEGIN\n(.*?)\s*// README-END", RegexOptions.Singleline).Groups[1].Value;
        static string[] Lines(string s) => s.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith("using ")).ToArray();
        Assert.Equal(Lines(body), Lines(block));

        double? accuracy = null;
        var output = ProcessWideState.InModelsFolder(_ =>
        {
            // README-BEGIN
            var inference = ModelIO.Load("models/digits-cnn.onnx");
            var training = GradientGraphBuilder.Build(inference, new BuildTrainingOptions { Loss = LossKind.CrossEntropy, Output = "logits" });
            var step = AdadeltaRewrite.Apply(training, new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), ClipNorm = 5.0 });
            var data = Dataset.Open("models/data/digits-train.npz", TrainingRun.InputSpecs(step));
            using var trainer = new Trainer(step);
            TrainingRun.Run(trainer, data, new TrainingRunOptions { Steps = 300, BatchSize = 64, Shuffle = true },
                s => { if (s.Step % 100 == 0) Console.WriteLine($"step {s.Iteration}: loss {s.Loss}"); });
            ModelIO.Save(trainer.Checkpoint(), "digits-cnn.ckpt.onnx");
            ModelIO.Save(InferenceExport.Export(trainer.Checkpoint()), "digits-cnn.trained.onnx");
            var result = Evaluation.Run(trainer.Checkpoint(), "models/data/digits-test.npz", target: "labels");
            Console.WriteLine($"held-out accuracy {result.Accuracy:P1}");
            // README-END
            accuracy = result.Accuracy;
            Assert.True(File.Exists("digits-cnn.ckpt.onnx") && File.Exists("digits-cnn.trained.onnx"));
        });
        Assert.True(accuracy > 0.9, output);
        Assert.Equal(3, Regex.Matches(output, "^step ", RegexOptions.Multiline).Count);
    }
}
