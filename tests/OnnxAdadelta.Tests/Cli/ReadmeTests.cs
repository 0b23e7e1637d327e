using System.Text.RegularExpressions;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;

namespace OnnxAdadelta.Tests.Cli;

/// <summary>The README's commands, run as written, so the front door stays true.</summary>
public class ReadmeTests
{
    private static string Readme => File.ReadAllText(Path.Combine(RepoPaths.Root, "README.md"));

    /// <summary>The onnx-adadelta arguments of the README's first command (after <c>--</c>).</summary>
    private static string[] QuickStartArgs()
    {
        var line = Readme.Split('\n').First(l => l.StartsWith("dotnet run -c Release --project tools/OnnxAdadelta.Cli -- train "));
        return Regex.Split(line[(line.IndexOf(" -- ", StringComparison.Ordinal) + 4)..].Trim(), @"\s+");
    }

    [Fact]
    public void TheTestCommandIsTheOneCiRuns()
    {
        Assert.Contains("\ndotnet test OnnxAdadelta.sln -c Release\n", Readme);
        Assert.Contains("dotnet test OnnxAdadelta.sln -c Release", File.ReadAllText(Path.Combine(RepoPaths.Root, ".ci", "run")));
    }

    [Fact]
    public void ThePackagingStageIsTheOneTheReadmeShowsAndTurnsOnThePackagingTests()
    {
        var variable = Packaging.PackagingFactAttribute.Variable;
        var readmeLine = Assert.Single(Readme.Split('\n'), l => l.Trim().StartsWith($"{variable}=1 dotnet test", StringComparison.Ordinal));
        Assert.Equal($"{variable}=1 dotnet test OnnxAdadelta.sln -c Release --filter FullyQualifiedName~OnnxAdadelta.Tests.Packaging", readmeLine.Trim());
        var ci = File.ReadAllText(Path.Combine(RepoPaths.Root, ".ci", "run"));
        Assert.Contains($"{variable}=1 dotnet test OnnxAdadelta.sln -c Release --no-build --filter \"FullyQualifiedName~OnnxAdadelta.Tests.Packaging\"", ci);
        // The namespace the filter names is where the packaging tests live.
        Assert.Equal("OnnxAdadelta.Tests.Packaging", typeof(Packaging.ToolPackageTests).Namespace);
    }

    [Fact]
    public void TheQuickStartTrainsTheShippedCnnToNinetyFivePercentHeldOut()
    {
        using var dir = new TestData.TempDir();
        var args = QuickStartArgs();
        var outIndex = Array.IndexOf(args, "-o") + 1;
        Assert.Equal("digits-cnn.ckpt.onnx", args[outIndex]);
        args[outIndex] = dir.File("digits-cnn.ckpt.onnx");
        for (int i = 0; i < args.Length; i++)
            if (args[i].StartsWith("models/")) args[i] = Path.Combine(RepoPaths.Root, args[i]);

        var r = CliRunner.Run(args);
        Assert.True(r.ExitCode == 0, r.Err);
        var losses = Regex.Matches(r.Out, @"^step .* loss (\d+\.\d+)", RegexOptions.Multiline).Select(m => double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.True(losses.Count >= 10, r.Out);
        Assert.True(losses[^1] < losses[0] / 3, $"loss {losses[0]} -> {losses[^1]}");
        var accuracy = double.Parse(Regex.Match(r.Out, @"held-out accuracy (\d+\.\d+) %").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(accuracy >= 95, r.Out);
        var checkpoint = ModelIO.Load(args[outIndex]);
        Assert.Equal(1500L, TestData.ValuesByName(checkpoint)["Adadelta/iterations"].ToInt64Array()[0]);
        Assert.NotNull(StepModelInfo.TryRead(checkpoint));
    }

    [Fact]
    public void TheReadmeListsExactlyTheOpsWithAGradientRule()
    {
        var start = Readme.IndexOf("<!-- GRADIENT-OPS -->", StringComparison.Ordinal);
        var end = Readme.IndexOf("<!-- /GRADIENT-OPS -->", StringComparison.Ordinal);
        Assert.True(start >= 0 && end > start, "README lacks the GRADIENT-OPS block");
        var listed = Regex.Matches(Readme[start..end], "`([A-Za-z0-9]+)`").Select(m => m.Groups[1].Value).ToHashSet();
        Assert.Equal(OnnxAdadelta.Gradients.GradientRules.Supported.Order(StringComparer.Ordinal), listed.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void TheReadmeListsExactlyTheLoweredContribOps()
    {
        var start = Readme.IndexOf("<!-- CONTRIB-OPS -->", StringComparison.Ordinal);
        var end = Readme.IndexOf("<!-- /CONTRIB-OPS -->", StringComparison.Ordinal);
        Assert.True(start >= 0 && end > start, "README lacks the CONTRIB-OPS block");
        var listed = Regex.Matches(Readme[start..end], "`([A-Za-z0-9_]+)`").Select(m => m.Groups[1].Value).ToHashSet();
        Assert.Equal(OnnxAdadelta.Import.LoweringRules.Supported.Order(StringComparer.Ordinal), listed.Order(StringComparer.Ordinal));
    }
}
