using System.Text.RegularExpressions;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Tests.Cli;

/// <summary>The README's "Training" commands and its C# training-loop example, run as written.</summary>
[Collection(ProcessWideState.Name)]
public class ReadmeTrainingTests
{
    private static string Readme => File.ReadAllText(Path.Combine(RepoPaths.Root, "README.md"));

    [Fact]
    public void TheTrainingSectionsCommandsRun()
    {
        var section = Readme[Readme.IndexOf("\n## Training\n", StringComparison.Ordinal)..];
        var block = Regex.Match(section, "```sh\n(.*?)```", RegexOptions.Singleline).Groups[1].Value;
        var commands = block.Split('\n').Where(l => l.StartsWith("onnx-adadelta ", StringComparison.Ordinal)).ToList();
        Assert.Equal(3, commands.Count);
        ProcessWideState.InModelsFolder(dir =>
        {
            foreach (var command in commands)
            {
                var r = CliRunner.Run(Regex.Split(command["onnx-adadelta ".Length..].Trim(), @"\s+"));
                Assert.True(r.ExitCode == 0, $"{command}\n{r.Out}\n{r.Err}");
            }
            Assert.True(File.Exists("mlp.ckpt.onnx") && File.Exists("mlp.ckpt.best.onnx") && File.Exists("run.svg") && File.Exists("run.png"));
            // Two --save-every checkpoints kept; 6 epochs of 23 steps unless stopped early, then 2 more epochs.
            Assert.Equal(2, Directory.GetFiles(dir, "mlp.ckpt.step*.onnx").Length);
            var iterations = TestData.ValuesByName(ModelIO.Load("mlp.ckpt.onnx"))["Adadelta/iterations"].ToInt64Array()[0];
            Assert.Equal(0, iterations % 23);
            // The resumed run's rate: 0.5, or less where the plateau rule lowered it.
            var rate = Assert.IsType<ConstantLearningRate>(StepModelInfo.Read(ModelIO.Load("mlp.ckpt.onnx"), "ckpt").Optimizer.LearningRate);
            Assert.InRange(rate.Value, 0.1f, 0.5f);
            Assert.Equal(CsvLog.Header, File.ReadLines("run.csv").First());
        });
    }

    [Fact]
    public void TheFitExampleIsThisCodeAndItRuns()
    {
        var section = Readme[Readme.IndexOf("### The training loop from C#", StringComparison.Ordinal)..];
        var block = Regex.Match(section, "```csharp\n(.*?)```", RegexOptions.Singleline).Groups[1].Value;
        var source = File.ReadAllText(Path.Combine(RepoPaths.Root, "tests", "OnnxAdadelta.Tests", "Cli", "ReadmeTrainingTests.cs"));
        var body = Regex.Match(source, @"// README-FIT-BEGIN\n(.*?)\s*// README-FIT-END", RegexOptions.Singleline).Groups[1].Value;
        static string[] Lines(string s) => s.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0).ToArray();
        Assert.Equal(Lines(body), Lines(block));

        History? kept = null;
        var output = ProcessWideState.InModelsFolder(_ =>
        {
            // README-FIT-BEGIN
            var training = GradientGraphBuilder.Build(ModelIO.Load("models/digits-mlp.onnx"), new BuildTrainingOptions { Loss = LossKind.CrossEntropy, Output = "logits" });
            var step = AdadeltaRewrite.Apply(training, new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) });
            var train = Dataset.Open("models/data/digits-train.npz", TrainingRun.InputSpecs(step));
            var heldOut = Dataset.Open("models/data/digits-test.npz", TrainingRun.InputSpecs(step));
            using var trainer = new Trainer(step);
            var history = Fit.Run(trainer, train, new FitOptions
            {
                Epochs = 10,
                BatchSize = 64,
                Shuffle = true,
                OnNonFinite = NonFinitePolicy.Stop,
                Callbacks = [new ValidationCallback(heldOut), new EarlyStopping("val_loss", patience: 3),
                    new BestCheckpoint("mlp.best.onnx", "val_accuracy")],
            });
            foreach (var e in history.Epochs) Console.WriteLine($"epoch {e.Epoch}: loss {e.Loss:F4}");
            Console.WriteLine($"{history.StopReason}: val_accuracy {history.Latest["val_accuracy"]:P1}");
            using var evaluator = new Evaluator(trainer);
            Console.WriteLine($"held-out loss {evaluator.Evaluate(heldOut).Loss:F4}");
            // README-FIT-END
            kept = history;
            Assert.True(File.Exists("mlp.best.onnx"));
        });
        Assert.NotNull(kept);
        Assert.True(kept.Latest["val_accuracy"] > 0.9, output);
        Assert.Equal(kept.Epochs.Count, Regex.Matches(output, "^epoch ", RegexOptions.Multiline).Count);
        Assert.Matches(@"held-out loss \d+\.\d{4}", output);
    }
}
