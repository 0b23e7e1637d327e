using OnnxAdadelta.Bench;

namespace OnnxAdadelta.Tests.Bench;

/// <summary>The distributed benchmark's tables, from result lines as rank 0 prints them (never its timings).</summary>
public class DistributedBenchTests
{
    [Fact]
    public void TheTablesHaveARowPerSizeAndPerModelRankAndUpdate()
    {
        var job = "noise RESULT allreduce 2 1024 0.011\n"
            + "[host:1] RESULT allreduce 2 16384 0.035\n"
            + "RESULT steps 2 cnn graph 2730 372.2 1.272 6.70E-008 1.70E-007\n"
            + "RESULT steps 2 cnn fused 2730 548.4 0.941 6.70E-008 1.70E-007\n"
            + "other output\n";
        var lines = DistributedBench.ResultLines(job).ToList();
        Assert.Equal(4, lines.Count);
        var text = new StringWriter();
        DistributedBench.WriteTables(lines, text);
        var rows = text.ToString().Split('\n').Select(l => l.TrimEnd('\r')).ToList();
        Assert.Contains("| 1,024 | 4,096 | 0.011 | – |", rows);
        Assert.Contains("| 16,384 | 65,536 | 0.035 | – |", rows);
        Assert.Contains("| 4,194,304 | 16,777,216 | – | – |", rows);
        Assert.Contains("| cnn | 2 | graph | 2,730 | 372.2 | 1.272 | 6.70E-008 | 1.70E-007 |", rows);
        Assert.Contains("| cnn | 2 | fused | 2,730 | 548.4 | 0.941 | 6.70E-008 | 1.70E-007 |", rows);
    }

    [Fact]
    public void TheReadmeDocumentsTheCommand() =>
        Assert.Contains("dotnet run -c Release --project tools/OnnxAdadelta.Bench -- --distributed\n",
            File.ReadAllText(Path.Combine(RepoPaths.Root, "README.md")).ReplaceLineEndings("\n"));
}
