using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Tests.Cli;
using OnnxAdadelta.Training;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Training;

/// <summary>Class labels are checked against the class count as each batch is bound, honouring ignore_index.</summary>
public class LabelCheckTests : IDisposable
{
    private readonly TestData.TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static Dictionary<string, (byte[] Data, long[] Shape)> WithLabels(params long[] labels)
    {
        var batch = TestData.Batch(3, labels.Length);
        batch["labels"] = (MemoryMarshal.AsBytes(labels.AsSpan()).ToArray(), [labels.Length]);
        return batch;
    }

    [Fact]
    public void TheRewriteRecordsTheLabelInputAndItsClassCount()
    {
        var info = StepModelInfo.Read(TestData.StepModel(), "t");
        Assert.Equal([new LabelCheck("labels", TestData.Classes)], info.Labels!);
    }

    [Theory]
    [InlineData(-5, 1, "target -5 at element 1 of the batch of training step 1 is out of bounds; expected a class in [0, 3).")]
    [InlineData(3, 2, "target 3 at element 2 of the batch of training step 1 is out of bounds; expected a class in [0, 3).")]
    public void ALabelOutsideTheClassesIsRefusedBeforeTheStepRuns(long bad, int at, string expected)
    {
        using var trainer = new Trainer(TestData.StepModel());
        var labels = new long[] { 0, 1, 2, 1 };
        labels[at] = bad;
        var e = Assert.Throws<OnnxAdadeltaException>(() => trainer.Step(WithLabels(labels)));
        Assert.Equal($"Label input 'labels': {expected}", e.Message);
        Assert.Equal(0, trainer.Iteration);
        trainer.Step(WithLabels(0, 1, 2, 1));
        Assert.Equal(1, trainer.Iteration);
    }

    [Fact]
    public void IgnoreIndexIsAcceptedAndNamedInTheMessage()
    {
        var training = TestData.TrainingGraph();
        training.Graph.Node.Single(n => n.OpType == "SoftmaxCrossEntropyLoss").Attribute.Add(GraphBuilder.Attr("ignore_index", -100L));
        var step = AdadeltaRewrite.Apply(training, new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) });
        Assert.Equal([new LabelCheck("labels", TestData.Classes, -100)], StepModelInfo.Read(step, "t").Labels!);
        using var trainer = new Trainer(step);
        trainer.Step(WithLabels(0, -100, 2, 1));
        var e = Assert.Throws<OnnxAdadeltaException>(() => trainer.Step(WithLabels(0, -5, 2, 1)));
        Assert.EndsWith("expected a class in [0, 3) or the ignore_index -100.", e.Message);
        Assert.Contains("training step 2", e.Message);
    }

    [Fact]
    public void StepModelsWrittenBeforeTheRecordAreCheckedFromTheirGraph()
    {
        var step = TestData.StepModel();
        var entry = step.MetadataProps.Single(p => p.Key == StepModelInfo.MetadataKey);
        var json = JsonNode.Parse(entry.Value)!.AsObject();
        Assert.True(json.Remove("labels"));
        entry.Value = json.ToJsonString();
        Assert.Null(StepModelInfo.Read(step, "t").Labels);
        using var trainer = new Trainer(step);
        var e = Assert.Throws<OnnxAdadeltaException>(() => trainer.Step(WithLabels(0, 1, 7, 1)));
        Assert.Contains("target 7 at element 2", e.Message);
    }

    [Fact]
    public void BuildTrainingRecordsTheClassCountOfCrossEntropyAndNll()
    {
        // X [batch, 6] -> MatMul W [6, 4] -> logits [batch, 4], with no declared type for logits' class axis
        var g = new GraphProto { Name = "mlp" };
        var x = TypeProtos.ValueInfo("X", DataType.Float, [-1, 6]);
        x.Type.TensorType.Shape.Dim[0].DimParam = "batch";
        g.Input.Add(x);
        g.Initializer.Add(Tensors.Create("W", Enumerable.Range(0, 24).Select(i => i / 24f).ToArray(), 6, 4));
        g.Node.Add(new NodeProto { OpType = "MatMul", Name = "mm", Input = { "X", "W" }, Output = { "logits" } });
        g.Node.Add(new NodeProto { OpType = "Softmax", Name = "sm", Input = { "logits" }, Output = { "probs" }, Attribute = { GraphBuilder.Attr("axis", 1L) } });
        g.Output.Add(new ValueInfoProto { Name = "probs", Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)DataType.Float } } });
        var model = new ModelProto { IrVersion = 8, Graph = g };
        model.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        foreach (var loss in new[] { LossKind.CrossEntropy, LossKind.Nll })
        {
            var training = GradientGraphBuilder.Build(model, new BuildTrainingOptions { Loss = loss, Output = "probs" });
            Assert.Equal([new LabelCheck("labels", 4)], TrainingGraphInfo.Read(training).Labels!);
            var step = AdadeltaRewrite.Apply(training, new AdadeltaOptions());
            Assert.Equal([new LabelCheck("labels", 4)], StepModelInfo.Read(step, "t").Labels!);
        }
    }

    [Fact]
    public void TrainRefusesBadLabelsInOneLineAndWritesNothing()
    {
        var step = _dir.File("step.onnx");
        ModelIO.Save(TestData.StepModel(), step);
        var batch = WithLabels(0, 1, 2, 1, 0, 2, 1, -5);
        var data = _dir.File("data.npz");
        Npz.Write(data, new Dictionary<string, DataArray>
        {
            ["X"] = new(DataType.Float, batch["X"].Shape, batch["X"].Data),
            ["labels"] = new(DataType.Int64, batch["labels"].Shape, batch["labels"].Data),
        });
        var output = _dir.File("out.onnx");
        var r = CliRunner.Run("train", step, "--data", data, "--steps", "3", "--batch-size", "4", "-o", output);
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("onnx-adadelta: error: Label input 'labels': target -5 at element 3 of the batch of training step 2 is out of bounds; expected a class in [0, 3).", Assert.Single(r.ErrLines));
        Assert.False(File.Exists(output));
    }
}
