namespace OnnxAdadelta.Tests.Cli;

/// <summary>Parse errors of every verb: one plain line, a pointer to the verb's help, exit 2; never a help dump or a .NET type name.</summary>
public class UsageErrorTests
{
    private static void AssertUsage(CliRunner.Result r, string expected, string verb)
    {
        Assert.Equal(2, r.ExitCode);
        Assert.Equal("", r.Out);
        Assert.Equal([$"onnx-adadelta: error: {expected}", $"See 'onnx-adadelta {verb}--help'."], r.ErrLines.Select(l => l.TrimEnd('\r')));
        Assert.DoesNotContain("System.", r.Err);
    }

    [Fact]
    public void ANumberThatDoesNotParse() =>
        AssertUsage(CliRunner.Run("train", "m.onnx", "--data", "d.npz", "--steps", "3", "-o", "c.onnx", "--lr", "abc"), "--lr: 'abc' is not a number", "train ");

    [Fact]
    public void AWholeNumberThatDoesNotParse() =>
        AssertUsage(CliRunner.Run("verify", "s.onnx", "--data", "d.npz", "--steps", "2.5"), "--steps: '2.5' is not a whole number", "verify ");

    [Fact]
    public void AnUnknownDevice() =>
        AssertUsage(CliRunner.Run("verify", "s.onnx", "--data", "d.npz", "--steps", "2", "--device", "tpu"), "--device: 'tpu' is not one of cpu, cuda", "verify ");

    [Fact]
    public void AnUnknownOptionWithASuggestion() =>
        AssertUsage(CliRunner.Run("rewrite", "t.onnx", "-o", "s.onnx", "--rhoo", "0.9"), "unknown option '--rhoo' (did you mean '--rho'?)", "rewrite ");

    [Fact]
    public void AnUnknownOptionFarFromAnyOther() =>
        AssertUsage(CliRunner.Run("export", "c.onnx", "-o", "m.onnx", "--frobnicate"), "unknown option '--frobnicate'", "export ");

    [Fact]
    public void AnUnknownVerb() =>
        AssertUsage(CliRunner.Run("trian", "m.onnx"), "unknown command 'trian' (did you mean 'train'?)", "");

    [Fact]
    public void AMissingRequiredOption() =>
        AssertUsage(CliRunner.Run("evaluate", "m.onnx"), "missing required option --data <DATA>", "evaluate ");

    [Fact]
    public void AMissingArgument() =>
        AssertUsage(CliRunner.Run("inspect"), "missing argument MODEL.onnx", "inspect ");

    [Fact]
    public void AnOptionWithoutItsValue() =>
        AssertUsage(CliRunner.Run("import-ort", "a.onnx", "-o"), "--out: missing value (expected <FILE.onnx>)", "import-ort ");

    [Fact]
    public void BadInputIsExitOneWithoutAPointerToHelp()
    {
        var r = CliRunner.Run("inspect", Path.Combine(Path.GetTempPath(), $"no-such-{Guid.NewGuid():N}.onnx"));
        Assert.Equal(1, r.ExitCode);
        var line = Assert.Single(r.ErrLines);
        Assert.StartsWith("onnx-adadelta: error: ", line);
    }

    [Fact]
    public void HelpEndsWithTheExitCodes()
    {
        var r = CliRunner.Run("train", "--help");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("Exit codes: 0 ok, 1 bad input or failed verify, 2 usage error, 3 training stopped on NaN/Inf, 130 interrupted (SIGINT), 143 terminated (SIGTERM).", r.Out);
    }
}

/// <summary>Help placeholders say what to type.</summary>
public class HelpPlaceholderTests
{
    [Theory]
    [InlineData("train", "--data <DATA>")]
    [InlineData("train", "--lr <RATE>")]
    [InlineData("train", "--device <cpu|cuda>")]
    [InlineData("verify", "--max-ulp <K>")]
    [InlineData("rewrite", "--rho <NUMBER>")]
    [InlineData("rewrite", "--preset <keras|pytorch|paper>")]
    public void HelpShowsWhatToType(string verb, string expected)
    {
        var r = CliRunner.Run(verb, "--help");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains(expected, r.Out);
        Assert.DoesNotContain("<Cpu|Cuda>", r.Out);
    }

    [Fact]
    public void AMissingRequiredOptionNamesItsPlaceholder() =>
        Assert.Contains("onnx-adadelta: error: missing required option --out <FILE.onnx>", CliRunner.Run("import-ort", "a.onnx").Err);
}

/// <summary>Each default is stated once in help, as it is typed.</summary>
public class HelpDefaultTests
{
    [Fact]
    public void DefaultsAppearOnceAndInLowercase()
    {
        var help = CliRunner.Run("verify", "--help").Out;
        var maxUlp = Assert.Single(help.Split('\n'), l => l.TrimStart().StartsWith("--max-ulp"));
        Assert.DoesNotContain("[default:", maxUlp);
        Assert.Contains("(default 0", maxUlp);
        var device = Assert.Single(help.Split('\n'), l => l.TrimStart().StartsWith("--device"));
        Assert.Contains("[default: cpu]", device);
    }
}
