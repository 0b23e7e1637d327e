using Google.Protobuf;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Optimizers;

namespace OnnxAdadelta.Tests.Onnx;

/// <summary>The two copies of a whole model: a deep copy (counted), and a copy of the lists that shares their elements.</summary>
public class ModelCopiesTests
{
    [Fact]
    public void ADeepCopyIsIndependentAndCounted()
    {
        var model = TestData.StepModel();
        int before = PipelineCounts.ModelCopies;
        var copy = model.DeepCopy();
        Assert.Equal(before + 1, PipelineCounts.ModelCopies);
        copy.Graph.Node[0].Name = "changed";
        copy.Graph.Initializer[0].Name = "changed";
        Assert.NotEqual("changed", model.Graph.Node[0].Name);
        Assert.NotEqual("changed", model.Graph.Initializer[0].Name);
    }

    [Fact]
    public void ASharedCopyHasItsOwnListsOverTheSameElements()
    {
        var model = TestData.StepModel();
        var bytes = model.ToByteArray();
        int before = PipelineCounts.ModelCopies;
        var copy = model.ShareElements();
        Assert.Equal(before, PipelineCounts.ModelCopies);
        Assert.Equal(bytes, copy.ToByteArray());
        Assert.NotSame(model.Graph, copy.Graph);
        Assert.Same(model.Graph.Node[0], copy.Graph.Node[0]);
        Assert.Same(model.Graph.Initializer[0], copy.Graph.Initializer[0]);

        // Replacing, removing and adding entries of the copy's lists leaves the original as it was.
        copy.Graph.Initializer[0] = Tensors.Create(model.Graph.Initializer[0].Name, [1f]);
        copy.Graph.Node.RemoveAt(0);
        copy.Graph.Output.Clear();
        copy.MetadataProps.Add(new StringStringEntryProto { Key = "k", Value = "v" });
        copy.OpsetImport.Add(new OperatorSetIdProto { Domain = "x", Version = 1 });
        Assert.Equal(bytes, model.ToByteArray());
    }

    [Fact]
    public void ACheckpointOfTheTrainerSharesItsNodesAndLeavesTheModelAsItWas()
    {
        var step = TestData.StepModel();
        using var trainer = new OnnxAdadelta.Training.Trainer(step);
        var bytes = trainer.Model.ToByteArray();
        trainer.Step(TestData.Batch(1));
        int before = PipelineCounts.ModelCopies;
        var shared = trainer.SharedCheckpoint();
        Assert.Equal(before, PipelineCounts.ModelCopies);
        Assert.Same(trainer.Model.Graph.Node[0], shared.Graph.Node[0]);
        Assert.Equal(bytes, trainer.Model.ToByteArray());
        Assert.Equal(1L, TestData.ValuesByName(shared)["Adadelta/iterations"].ToInt64Array()[0]);
        // The public checkpoint is one deep copy of the shared one, with the same content.
        var checkpoint = trainer.Checkpoint();
        Assert.Equal(before + 1, PipelineCounts.ModelCopies);
        Assert.Equal(shared.ToByteArray(), checkpoint.ToByteArray());
        Assert.NotSame(trainer.Model.Graph.Node[0], checkpoint.Graph.Node[0]);
    }
}
