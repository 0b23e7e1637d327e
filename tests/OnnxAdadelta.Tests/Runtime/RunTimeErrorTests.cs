using System.Runtime.InteropServices;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Runtime;
using OnnxAdadelta.Tests.Cli;
using OnnxAdadelta.Training;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Runtime;

/// <summary>
/// An error ONNX Runtime raises while running a model (train, evaluate, verify) is one line naming the node, its op
/// and the likely cause, never an unhandled OnnxRuntimeException.
/// </summary>
public class RunTimeErrorTests : IDisposable
{
    private readonly TestData.TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>ids int64[batch] → Gather from a 4×2 table (node 'lookup') → y float[batch, 2].</summary>
    private static ModelProto Lookup()
    {
        var g = new GraphProto { Name = "lookup" };
        g.Input.Add(new ValueInfoProto { Name = "ids", Type = BatchType(DataType.Int64) });
        g.Initializer.Add(Tensors.Create("table", new float[] { 1, 2, 3, 4, 5, 6, 7, 8 }, 4, 2));
        g.Node.Add(new NodeProto { OpType = "Gather", Name = "lookup", Input = { "table", "ids" }, Output = { "y" } });
        g.Output.Add(TypeProtos.ValueInfo("y", DataType.Float, [-1, 2]));
        g.Output[0].Type.TensorType.Shape.Dim[0].ClearValue();
        var m = new ModelProto { IrVersion = 8, Graph = g };
        m.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        return m;
    }

    /// <summary>n int64[1] → ConstantOfShape (node 'bomb') → y float: the size of y is the value of n.</summary>
    private static ModelProto ConstantOfShapeBomb()
    {
        var g = new GraphProto { Name = "bomb" };
        g.Input.Add(TypeProtos.ValueInfo("n", DataType.Int64, [1]));
        g.Node.Add(new NodeProto { OpType = "ConstantOfShape", Name = "bomb", Input = { "n" }, Output = { "y" } });
        g.Output.Add(new ValueInfoProto { Name = "y", Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)DataType.Float } } });
        var m = new ModelProto { IrVersion = 8, Graph = g };
        m.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        return m;
    }

    private static TypeProto BatchType(DataType type)
    {
        var t = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = new TensorShapeProto() } };
        t.TensorType.Shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = "batch" });
        return t;
    }

    [Fact]
    public void AnIndexOutOfRangeInEvaluateNamesTheNodeTheDataInputAndTheCause()
    {
        var data = _dir.File("ids.npz");
        Npz.Write(data, new Dictionary<string, DataArray> { ["ids"] = DataArray.FromInt64([0, 9]), ["labels"] = DataArray.FromInt64([0, 1]) });
        var e = Assert.Throws<OnnxAdadeltaException>(() => Evaluation.Run(Lookup(), data, "labels"));
        Assert.StartsWith("ONNX Runtime failed running the evaluation (rows 0 to 1) at node 'lookup' (Gather), reading data input 'ids': ", e.Message);
        Assert.Contains("likely cause: an index outside its axis", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.DoesNotContain(".cc:", e.Message);

        var model = _dir.File("lookup.onnx");
        ModelIO.Save(Lookup(), model);
        var r = CliRunner.Run("evaluate", model, "--data", data, "--target", "labels");
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith("onnx-adadelta: error: ONNX Runtime failed running the evaluation", Assert.Single(r.ErrLines));
    }

    [Fact]
    public void AConstantOfShapeBombIsOneLineNamingTheOp()
    {
        var data = _dir.File("n.npz");
        Npz.Write(data, new Dictionary<string, DataArray> { ["n"] = DataArray.FromInt64([10_000_000_000_000L], 1), ["target"] = DataArray.FromFloat([0f], 1) });
        var model = _dir.File("bomb.onnx");
        ModelIO.Save(ConstantOfShapeBomb(), model);
        var r = CliRunner.Run("evaluate", model, "--data", data, "--target", "target");
        Assert.Equal(1, r.ExitCode);
        var line = Assert.Single(r.ErrLines);
        Assert.StartsWith("onnx-adadelta: error: ONNX Runtime failed running the evaluation (rows 0 to 0) at node 'bomb' (ConstantOfShape), reading data input 'n': ", line);
        Assert.Contains("likely cause: a tensor too large for memory, whose size ConstantOfShape takes from the values of its input", line);
    }

    [Fact]
    public void AnIndexOutOfRangeInATrainingStepNamesTheStepAndTheNode()
    {
        // An embedding: loss = ReduceSum(Gather(E, ids)); the ids come from the data.
        var g = new GraphProto { Name = "embedding" };
        g.Input.Add(new ValueInfoProto { Name = "ids", Type = BatchType(DataType.Int64) });
        g.Initializer.Add(Tensors.Create("E", new float[] { 1, 2, 3, 4, 5, 6, 7, 8 }, 4, 2));
        g.Node.Add(new NodeProto { OpType = "Gather", Name = "embed", Input = { "E", "ids" }, Output = { "h" } });
        g.Node.Add(new NodeProto { OpType = "ReduceSum", Name = "sum", Input = { "h" }, Output = { "s" }, Attribute = { GraphBuilder.Attr("keepdims", 0L) } });
        g.Output.Add(new ValueInfoProto { Name = "s", Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)DataType.Float, Shape = new TensorShapeProto() } } });
        var m = new ModelProto { IrVersion = 8, Graph = g };
        m.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        var step = AdadeltaRewrite.Apply(GradientGraphBuilder.Build(m, new BuildTrainingOptions { Loss = LossKind.Output, Output = "s" }), new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) });
        using var trainer = new Trainer(step);
        long[] ids = [1, 2];
        var batch = new Dictionary<string, (byte[], long[])> { ["ids"] = (MemoryMarshal.AsBytes(ids.AsSpan()).ToArray(), [2]) };
        trainer.Step(batch);
        ids = [1, 40];
        batch["ids"] = (MemoryMarshal.AsBytes(ids.AsSpan()).ToArray(), [2]);
        var e = Assert.Throws<OnnxAdadeltaException>(() => trainer.Step(batch));
        Assert.StartsWith("ONNX Runtime failed running training step 2 at node '", e.Message);
        Assert.Contains("(Gather", e.Message);
        Assert.Contains("likely cause: an index outside its axis", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData("[ErrorCode:RuntimeException] Non-zero status code returned while running GatherElements node. Name:'x/g' Status Message: /onnxruntime_src/onnxruntime/core/providers/cpu/tensor/gather_elements.cc:213 void f() GatherElements op: Out of range value in index tensor\nstack",
        "ONNX Runtime failed running the step at node 'x/g' (GatherElements) (a node ONNX Runtime made while optimizing the graph): GatherElements op: Out of range value in index tensor; likely cause: an index outside its axis: class labels outside [0, classes), or ids outside an embedding table, in the data.")]
    [InlineData("[ErrorCode:Fail] some other failure\nmore",
        "ONNX Runtime failed running the step: some other failure.")]
    [InlineData("[ErrorCode:RuntimeException] Non-zero status code returned while running MatMul node. Name:'mm' Status Message: /a/b/bfc_arena.cc:376 void* onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*, bool, onnxruntime::WaitNotificationFn) Failed to allocate memory for requested buffer of size 34359738368",
        "ONNX Runtime failed running the step at node 'mm' (MatMul) (a node ONNX Runtime made while optimizing the graph): Failed to allocate memory for requested buffer of size 34359738368; likely cause: a tensor too large for memory: the batch is too large (lower --batch-size) or a size in the model is huge.")]
    public void OrtMessagesBecomeOneLine(string ortMessage, string expected) =>
        Assert.Equal(expected, OrtErrors.Message(ortMessage, new ModelProto { Graph = new GraphProto() }, "the step"));
}
