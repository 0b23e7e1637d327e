using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Onnx;

namespace OnnxAdadelta.Tests.Cli;

/// <summary>rewrite loads its result into ONNX Runtime before writing it, and writes nothing when that fails.</summary>
public class RewriteValidationTests : IDisposable
{
    private readonly TestData.TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static ModelProto Broken(string damage)
    {
        var model = TestData.TrainingGraph();
        var g = model.Graph;
        switch (damage)
        {
            case "short-raw-data":
                var k = g.Initializer.ToList().FindIndex(t => t.Name == "off_on");
                g.Initializer[k].RawData = Google.Protobuf.ByteString.CopyFrom(g.Initializer[k].RawData.Span[..4]);
                break;
            case "unknown-op":
                g.Node.Single(n => n.OpType == "Softmax").OpType = "Softmaxx";
                break;
            case "dangling-output":
                g.Output.Add(new ValueInfoProto { Name = "ghost", Type = g.Output[1].Type.Clone() });
                break;
            case "wrong-attribute-type":
                var axis = g.Node.Single(n => n.OpType == "Softmax").Attribute.Single(a => a.Name == "axis");
                axis.Type = AttributeProto.Types.AttributeType.Float;
                axis.F = 1f;
                axis.ClearI();
                break;
        }
        return model;
    }

    [Theory]
    [InlineData("short-raw-data")]
    [InlineData("unknown-op")]
    [InlineData("dangling-output")]
    [InlineData("wrong-attribute-type")]
    public void ABrokenTrainingGraphGivesOneLineAndNoFile(string damage)
    {
        var input = _dir.File($"{damage}.onnx");
        ModelIO.Save(Broken(damage), input);
        var output = _dir.File("step.onnx");
        var r = CliRunner.Run("rewrite", input, "-o", output);
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith($"onnx-adadelta: error: ONNX Runtime rejected the step model rewritten from {input}: ", Assert.Single(r.ErrLines));
        Assert.False(File.Exists(output));
        Assert.Empty(Directory.GetFiles(_dir.Path, "*.tmp", SearchOption.AllDirectories));
    }

    [Fact]
    public void AnIntactTrainingGraphIsWritten()
    {
        var input = _dir.File("intact.onnx");
        ModelIO.Save(Broken("none"), input);
        var output = _dir.File("step.onnx");
        var r = CliRunner.Run("rewrite", input, "-o", output);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.True(File.Exists(output));
    }
}
