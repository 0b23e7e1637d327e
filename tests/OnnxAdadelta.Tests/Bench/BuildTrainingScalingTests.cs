using System.Text.RegularExpressions;
using OnnxAdadelta.Bench;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Optimizers;

namespace OnnxAdadelta.Tests.Bench;

/// <summary>The build-training scaling mode of the benchmark, at tiny sizes: its chains and its table, never its timings.</summary>
public class BuildTrainingScalingTests
{
    [Fact]
    public void AChainHasTheNodesAndParametersAsked()
    {
        var model = ChainModels.Build(9);
        Assert.Equal(9, model.Graph.Node.Count);
        Assert.Equal(5, model.Graph.Initializer.Count);
        Assert.Equal(ChainModels.Output, model.Graph.Node[^1].Output[0]);
        var training = GradientGraphBuilder.Build(model, new BuildTrainingOptions { Loss = LossKind.Mse, Output = ChainModels.Output });
        Assert.Equal(5, TrainingGraph.Analyze(training).Parameters.Count);
    }

    [Fact]
    public void TheTableHasOneRowPerSize()
    {
        var text = new StringWriter();
        BuildTrainingScaling.Run([10, 30], text);
        var rows = text.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(4, rows.Length);
        Assert.Matches(new Regex(@"^\| 10 \| \d+ \| \d+\.\d \| \d+\.\d \| \d+ \| [\d,]+ \|$"), rows[2]);
        Assert.StartsWith("| 30 |", rows[3]);
    }

    [Fact]
    public void SizesAreParsedAndCheckedWhereTheyEnter()
    {
        Assert.Equal([2_000, 20_000], BuildTrainingScaling.ParseSizes("2000,20_000"));
        var e = Assert.Throws<ArgumentException>(() => BuildTrainingScaling.ParseSizes("2000,-5"));
        Assert.Contains("'-5' is not a node count of at least 2", e.Message);
    }

    [Fact]
    public void TheReadmeDocumentsTheCommand() =>
        Assert.Contains("dotnet run -c Release --project tools/OnnxAdadelta.Bench -- --build-training 2000,20000,200000",
            File.ReadAllText(Path.Combine(RepoPaths.Root, "README.md")));
}
