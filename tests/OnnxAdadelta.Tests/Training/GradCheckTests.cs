using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Tests.Cli;
using OnnxAdadelta.Training;
using Xunit;
using Xunit.Abstractions;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Training;

/// <summary>
/// <c>gradcheck</c>: the training graph's gradients against finite differences of the loss that ONNX Runtime computes
/// on the original model, on the shipped models, on real exported models, and on a deliberately wrong rule.
/// </summary>
public class GradCheckTests(ITestOutputHelper output)
{
    private static string Model(string file) => Path.Combine(RepoPaths.Models, file);

    private static IReadOnlyDictionary<string, DataArray> Digits => Npz.Read(Path.Combine(RepoPaths.Models, "data", "digits-train.npz"));

    private GradCheckReport Check(string file, BuildTrainingOptions build, IReadOnlyDictionary<string, DataArray> data, int rows = 8)
    {
        var report = GradCheck.Run(ModelIO.Load(file), new GradCheckOptions { Build = build, Rows = rows }, data);
        output.WriteLine($"{report.Precision} {report.PrecisionNote} tolerance {report.Tolerance}");
        foreach (var p in report.Parameters) output.WriteLine($"{p.Name} {p.Status} {p.MaxError:G3} {p.Detail}");
        return report;
    }

    [Fact]
    public void TheMlpPassesWithAFloat64Loss()
    {
        var report = Check(Model("digits-mlp.onnx"), new() { Loss = LossKind.CrossEntropy, Output = "logits" }, Digits);
        Assert.Equal("float64", report.Precision);
        Assert.True(report.Passed);
        Assert.Equal(["W1", "b1", "W2", "b2"], report.Parameters.Select(p => p.Name));
        Assert.All(report.Parameters, p => Assert.True(p.Status == GradCheckStatus.Passed && p.MaxError < 1e-4, $"{p.Name}: {p.Status} {p.MaxError}"));
    }

    [Fact]
    public void TheCnnFallsBackToFloat32WhereOnnxRuntimeHasNoFloat64ConvAndPasses()
    {
        var report = Check(Model("digits-cnn.onnx"), new() { Loss = LossKind.CrossEntropy, Output = "logits" }, Digits);
        Assert.Equal("float32", report.Precision);
        Assert.Contains("Conv", report.PrecisionNote);
        Assert.True(report.Passed);
        Assert.All(report.Parameters, p => Assert.NotEqual(GradCheckStatus.NotChecked, p.Status));
    }

    [Fact]
    public void ASignErrorInAGradientRuleIsCaught()
    {
        // A test-only registry entry: Relu's gradient with its sign flipped. Only the parameters before the Relu see it.
        var wrong = new GradientRuleInfo(c => c.SetGI(0, c.Op("Neg", [c.Op("Where", [c.Op("Greater", [c.O(0), c.Scalar(0, c.O(0))]), c.GO(0)!, c.Scalar(0, c.O(0))])])));
        GradCheckReport report;
        using (GradientRules.Override("Relu", wrong))
            report = Check(Model("digits-mlp.onnx"), new() { Loss = LossKind.CrossEntropy, Output = "logits" }, Digits);
        Assert.False(report.Passed);
        var status = report.Parameters.ToDictionary(p => p.Name, p => p.Status);
        Assert.Equal(GradCheckStatus.Failed, status["W1"]);
        Assert.Equal(GradCheckStatus.Failed, status["b1"]);
        Assert.Equal(GradCheckStatus.Passed, status["W2"]);
        Assert.Equal(GradCheckStatus.Passed, status["b2"]);
        Assert.Contains("disagrees", report.Parameters.First(p => p.Name == "W1").Detail);
    }

    [Theory]
    [InlineData(LossKind.Mse)]
    [InlineData(LossKind.Bce)]
    public void FloatTargetLossesPass(LossKind loss)
    {
        // The host computes mse and bce from the logits on its own; a wrong formula would disagree with the graph's.
        var digits = Digits;
        var rng = new SplitMix64(3);
        var target = Enumerable.Range(0, 8 * 10).Select(_ => (float)rng.NextDouble()).ToArray();
        var data = new Dictionary<string, DataArray>(StringComparer.Ordinal)
        {
            ["X"] = digits["X"],
            ["target"] = DataArray.FromFloat(target, 8, 10),
        };
        var report = Check(Model("digits-mlp.onnx"), new() { Loss = loss, Output = "logits" }, data);
        Assert.True(report.Passed);
        Assert.Equal("float64", report.Precision);
    }

    [Fact]
    public void TheHostLossesFollowTheirFormulas()
    {
        // Two rows, three classes on axis 1.
        double[] p = [0.2, 0.5, 0.3, 0.6, 0.3, 0.1];
        var labels = DataArray.FromInt64([1, 0], 2);
        double nll = -(Math.Log(0.5) + Math.Log(0.6)) / 2;
        Assert.Equal(nll, HostLoss.Compute(LossKind.Nll, LossInputForm.Probabilities, p, [2, 3], 1, labels), 12);
        Assert.Equal(nll, HostLoss.Compute(LossKind.Nll, LossInputForm.LogProbabilities, [.. p.Select(v => Math.Log(v))], [2, 3], 1, labels), 12);
        // Cross-entropy on logits whose softmax is p gives the same loss.
        Assert.Equal(nll, HostLoss.Compute(LossKind.CrossEntropy, LossInputForm.Logits, [.. p.Select(v => Math.Log(v) + 7)], [2, 3], 1, labels), 12);
        // Classes on the last axis of a [1, 2, 3] value: the same two rows.
        Assert.Equal(nll, HostLoss.Compute(LossKind.Nll, LossInputForm.Probabilities, p, [1, 2, 3], 2, DataArray.FromInt64([1, 0], 1, 2)), 12);
        var error = Assert.Throws<OnnxAdadeltaException>(() => HostLoss.Compute(LossKind.Nll, LossInputForm.Probabilities, p, [2, 3], 1, DataArray.FromInt64([3, 0], 2)));
        Assert.Contains("Label 3", error.Message);
    }

    [Fact]
    public void DataFilesInEveryFormGiveTheSameCheck()
    {
        // The CNN's input is float32[batch,1,8,8]: a CSV gives it as 64 columns images[0]..images[63], shaped by the
        // model's input; the labels column is int64. The check on the CSV must equal the one on the .npz.
        using var dir = new TestData.TempDir();
        var images = Digits["images"].ToFloatArray();
        var labels = Digits["labels"];
        var csv = new System.Text.StringBuilder();
        csv.AppendLine(string.Join(",", Enumerable.Range(0, 64).Select(i => $"images[{i}]").Append("labels")));
        for (int r = 0; r < 8; r++)
            csv.AppendLine(string.Join(",", images.Skip(64 * r).Take(64).Select(v => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture))
                .Append(BitConverter.ToInt64(labels.Data, 8 * r).ToString(System.Globalization.CultureInfo.InvariantCulture))));
        File.WriteAllText(dir.File("digits.csv"), csv.ToString());
        var options = new GradCheckOptions { Build = new() { Loss = LossKind.CrossEntropy, Output = "logits" }, Rows = 8 };
        var fromNpz = GradCheck.Run(ModelIO.Load(Model("digits-cnn.onnx")), options, Path.Combine(RepoPaths.Models, "data", "digits-train.npz"));
        var fromCsv = GradCheck.Run(ModelIO.Load(Model("digits-cnn.onnx")), options, dir.File("digits.csv"));
        Assert.True(fromNpz.Passed);
        Assert.Equal(fromNpz.Parameters.Select(p => (p.Name, p.Status, p.MaxError)), fromCsv.Parameters.Select(p => (p.Name, p.Status, p.MaxError)));
        var missing = Assert.Throws<OnnxAdadeltaException>(() => GradCheck.Run(ModelIO.Load(Model("digits-cnn.onnx")), options, dir.File("none.csv")));
        Assert.Contains("none.csv", missing.Message);
    }

    [Fact]
    public void MissingDataAndBadOptionsAreNamed()
    {
        var build = new BuildTrainingOptions { Loss = LossKind.CrossEntropy, Output = "logits" };
        var missing = Assert.Throws<OnnxAdadeltaException>(() => GradCheck.Run(ModelIO.Load(Model("digits-mlp.onnx")), new GradCheckOptions { Build = build },
            new Dictionary<string, DataArray> { ["X"] = Digits["X"] }));
        Assert.Contains("'labels'", missing.Message);
        var rows = Assert.Throws<OnnxAdadeltaException>(() => new GradCheckOptions { Build = build, Rows = 0 }.Validate());
        Assert.Contains("--rows 0", rows.Message);
        var none = Assert.Throws<OnnxAdadeltaException>(() => GradCheck.Run(ModelIO.Load(Model("digits-mlp.onnx")), new GradCheckOptions { Build = build, Parameters = ["nothing*"] }, Digits));
        Assert.Contains("no trainable parameter matches", none.Message);
    }

    /// <summary>The README's gradcheck command, run as written (it passes), and the same command against a wrong rule.</summary>
    [Fact]
    public void TheReadmeCommandPassesAndAWrongRuleExitsNonZero()
    {
        var readme = File.ReadAllText(Path.Combine(RepoPaths.Root, "README.md"));
        var section = readme[readme.IndexOf("### `gradcheck`", StringComparison.Ordinal)..];
        var block = section[(section.IndexOf("```sh\n", StringComparison.Ordinal) + 6)..];
        var command = block[..block.IndexOf("```", StringComparison.Ordinal)].Trim();
        Assert.StartsWith("onnx-adadelta gradcheck ", command);
        var args = command.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1)
            .Select(a => a.StartsWith("models/", StringComparison.Ordinal) ? Path.Combine(RepoPaths.Root, a) : a).ToArray();
        var ok = CliRunner.Run(args);
        Assert.Equal(0, ok.ExitCode);
        Assert.Contains("loss in float64 on 8 rows", ok.Out);
        Assert.Contains("gradcheck passed: 4 parameters", ok.Out);
        var wrong = new GradientRuleInfo(c => c.SetGI(0, c.Op("Neg", [c.GO(0)!])));
        using (GradientRules.Override("Relu", wrong))
        {
            var failed = CliRunner.Run([.. args, "--directions", "1"]);
            Assert.Equal(1, failed.ExitCode);
            Assert.Contains("gradcheck FAILED: 2 of 4 parameters", failed.Out);
        }
    }

    public static TheoryData<string, string, int> CorpusModels => new()
    {
        { "lenet_torch26.onnx", "22", 10 },
        { "old_cntk_mnist_op8.onnx", "Plus214_Output_0", 10 },
    };

    [SharedTheory]
    [MemberData(nameof(CorpusModels))]
    public void RealExportedModelsPass(string file, string outputName, int classes)
    {
        var model = ModelIO.Load(SharedCorpus.RealModel(file));
        var input = model.Graph.Input.First(i => !model.Graph.Initializer.Any(t => t.Name == i.Name));
        // Both models fix their batch at 1.
        var dims = input.Type.Dims()!.Select(d => d is long v ? v : 1L).ToArray();
        Assert.Equal(1, dims[0]);
        var rng = new SplitMix64(11);
        var x = Enumerable.Range(0, (int)dims.Aggregate(1L, (a, b) => a * b)).Select(_ => (float)rng.NextDouble()).ToArray();
        var data = new Dictionary<string, DataArray>(StringComparer.Ordinal)
        {
            [input.Name] = DataArray.FromFloat(x, dims),
            ["labels"] = DataArray.FromInt64([classes - 3], 1),
        };
        var report = GradCheck.Run(model, new GradCheckOptions { Build = new() { Loss = LossKind.CrossEntropy, Output = outputName }, Rows = 1, Directions = 2 }, data);
        foreach (var p in report.Parameters) output.WriteLine($"{p.Name} {p.Status} {p.MaxError:G3} {p.Detail}");
        Assert.True(report.Passed, string.Join("; ", report.Parameters.Where(p => p.Status == GradCheckStatus.Failed).Select(p => $"{p.Name}: {p.Detail}")));
        Assert.Equal(DataType.Float, (DataType)input.Type.TensorType.ElemType);
    }
}
