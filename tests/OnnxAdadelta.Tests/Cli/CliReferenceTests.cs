using System.Text.Json;
using System.Text.RegularExpressions;

namespace OnnxAdadelta.Tests.Cli;

/// <summary>The README's command-line reference, run as written; and the --json documents parse.</summary>
public class CliReferenceTests
{
    private static string Readme => File.ReadAllText(Path.Combine(RepoPaths.Root, "README.md"));

    private static string[] Args(string commandLine) =>
        Regex.Split(commandLine.Trim(), @"\s+").Select(a => a.StartsWith("models/") ? Path.Combine(RepoPaths.Root, a) : a).ToArray();

    private static string Relative(string text) => text.Replace(RepoPaths.Root + Path.DirectorySeparatorChar, "");

    [Fact]
    public void TheReadmeExamplesPrintWhatTheReadmeShows()
    {
        var start = Readme.IndexOf("<!-- CLI-EXAMPLES -->", StringComparison.Ordinal);
        var end = Readme.IndexOf("<!-- /CLI-EXAMPLES -->", StringComparison.Ordinal);
        Assert.True(start >= 0 && end > start, "README lacks the CLI-EXAMPLES block");
        var lines = Readme[start..end].Split('\n').Select(l => l.TrimEnd('\r')).Where(l => !l.StartsWith("```") && !l.StartsWith("<!--")).ToList();
        int examples = 0;
        for (int i = 0; i < lines.Count; i++)
        {
            var m = Regex.Match(lines[i], @"^\$ onnx-adadelta (.*?)\s+# exit (\d+)$");
            if (!m.Success) continue;
            var expected = lines.Skip(i + 1).TakeWhile(l => !l.StartsWith("$ ") && l.Length > 0).ToList();
            var r = CliRunner.Run(Args(m.Groups[1].Value));
            Assert.True(int.Parse(m.Groups[2].Value) == r.ExitCode, $"{lines[i]}: exit {r.ExitCode}\n{r.Out}{r.Err}");
            var actual = Relative(r.Out + r.Err).Split('\n').Select(l => l.TrimEnd('\r')).ToList();
            Assert.Equal(expected, actual.Take(expected.Count));
            examples++;
        }
        Assert.Equal(4, examples);
    }

    [Fact]
    public void InspectJsonIsOneDocumentWithTheKindAndTheNextCommand()
    {
        var path = Path.Combine(RepoPaths.Root, "models", "digits-softmax.training.onnx");
        var r = CliRunner.Run("inspect", path, "--json");
        Assert.Equal(0, r.ExitCode);
        using var doc = JsonDocument.Parse(r.Out);
        Assert.Equal("training graph", doc.RootElement.GetProperty("kind").GetString());
        Assert.Equal($"onnx-adadelta rewrite {path} -o step.onnx", doc.RootElement.GetProperty("next")[0].GetString());
        var parameters = doc.RootElement.GetProperty("tensors").EnumerateArray().Where(t => t.GetProperty("role").GetString() == "parameter").ToList();
        Assert.Equal(parameters.Count, doc.RootElement.GetProperty("parameters").GetInt32());
        Assert.Equal(2, parameters.Count);
    }

    [Fact]
    public void VerifyJsonReportsEveryTensorAndPasses()
    {
        using var dir = new TestData.TempDir();
        var training = dir.File("training.onnx");
        OnnxAdadelta.Onnx.ModelIO.Save(TestData.TrainingGraph(), training);
        var step = dir.File("step.onnx");
        Assert.Equal(0, CliRunner.Run("rewrite", training, "-o", step).ExitCode);
        var batch = TestData.Batch(5, 16);
        var data = dir.File("data.npz");
        OnnxAdadelta.Training.Npz.Write(data, new Dictionary<string, OnnxAdadelta.Training.DataArray>
        {
            ["X"] = new(OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType.Float, batch["X"].Shape, batch["X"].Data),
            ["labels"] = new(OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType.Int64, batch["labels"].Shape, batch["labels"].Data),
        });
        var r = CliRunner.Run("verify", step, "--data", data, "--steps", "3", "--json");
        Assert.True(r.ExitCode == 0, r.Err + r.Out);
        using var doc = JsonDocument.Parse(r.Out);
        Assert.True(doc.RootElement.GetProperty("pass").GetBoolean());
        Assert.Equal(3, doc.RootElement.GetProperty("steps").GetInt32());
        Assert.Contains(doc.RootElement.GetProperty("tensors").EnumerateArray(), t => t.GetProperty("name").GetString()!.EndsWith("accum_grad"));
    }
}
