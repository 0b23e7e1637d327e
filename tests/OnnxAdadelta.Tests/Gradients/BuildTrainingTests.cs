using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Training;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Gradients;

public class BuildTrainingTests
{
    /// <summary>y = Relu(X·w + b) elementwise (X float[batch,4], w and b float[4]), plus a scale s that is a plain constant.</summary>
    private static ModelProto Model()
    {
        var g = new GraphProto { Name = "m" };
        g.Input.Add(new ValueInfoProto { Name = "X", Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)DataType.Float, Shape = new TensorShapeProto { Dim = { new TensorShapeProto.Types.Dimension { DimParam = "batch" }, new TensorShapeProto.Types.Dimension { DimValue = 4 } } } } } });
        g.Initializer.Add(Tensors.Create("w", [0.5f, -0.3f, 0.8f, 0.1f], 4));
        g.Initializer.Add(Tensors.Create("b", [0.1f, 0.2f, -0.1f, 0.05f], 4));
        g.Initializer.Add(Tensors.Create("shape", [-1L, 4L], 2));
        var b = new GraphBuilder(g);
        var y = b.Add("Relu", [b.Add("Add", [b.Add("Mul", ["X", "w"], "xw"), "b"], "pre")], "y");
        var reshaped = b.Add("Reshape", [y, "shape"], "y2");
        b.Add("ReduceMean", [reshaped], "mean", GraphBuilder.Attr("keepdims", 0L));
        g.Output.Add(new ValueInfoProto { Name = "y", Type = g.Input[0].Type.Clone() });
        g.Output.Add(TypeProtos.ValueInfo("mean", DataType.Float, []));
        var m = new ModelProto { IrVersion = 8, Graph = g };
        m.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        return m;
    }

    private static string Fails(BuildTrainingOptions o, ModelProto? m = null) =>
        Assert.Throws<OnnxAdadeltaException>(() => GradientGraphBuilder.Build(m ?? Model(), o)).Message;

    [Fact]
    public void MseFollowsTheTrainingGraphContract()
    {
        var training = GradientGraphBuilder.Build(Model(), new BuildTrainingOptions { Loss = LossKind.Mse, Output = "y" });
        Assert.Equal(["loss", "y", "mean", "w_grad", "b_grad"], training.Graph.Output.Select(o => o.Name));
        Assert.Equal(["X", "target", "w", "b"], training.Graph.Input.Select(i => i.Name));
        Assert.Equal("float[batch,4]", training.Graph.Input.Single(i => i.Name == "target").Type.Describe());
        Assert.All(training.Graph.Node, n => Assert.Equal("", n.Domain));
        var analyzed = TrainingGraph.Analyze(training);
        Assert.Equal(["w", "b"], analyzed.Parameters.Select(p => p.Name));
        // rewrite consumes it unchanged
        Assert.NotNull(StepModelInfo.TryRead(AdadeltaRewrite.Apply(training, new AdadeltaOptions())));
    }

    [Fact]
    public void TrainingTheBuiltGraphLowersTheLoss()
    {
        var training = GradientGraphBuilder.Build(Model(), new BuildTrainingOptions { Loss = LossKind.Mse, Output = "y" });
        using var trainer = new Trainer(AdadeltaRewrite.Apply(training, new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) }));
        var rng = new SplitMix64(3);
        var x = Enumerable.Range(0, 32).Select(_ => (float)rng.NextDouble()).ToArray();
        var target = x.Select((v, i) => Math.Max(0, 2 * v - 0.5f)).ToArray();
        var batch = new Dictionary<string, (byte[], long[])>
        {
            ["X"] = (GradientCheckBytes(x), [8, 4]),
            ["target"] = (GradientCheckBytes(target), [8, 4]),
        };
        var first = trainer.Step(batch);
        float last = first;
        for (int i = 0; i < 300; i++) last = trainer.Step(batch);
        Assert.True(last < first / 5, $"{first} -> {last}");
    }

    private static byte[] GradientCheckBytes(float[] v) => System.Runtime.InteropServices.MemoryMarshal.AsBytes(v.AsSpan()).ToArray();

    [Fact]
    public void OutputLossAndFreezing()
    {
        var training = GradientGraphBuilder.Build(Model(), new BuildTrainingOptions { Loss = LossKind.Output, Output = "mean", Freeze = ["b"] });
        Assert.Equal(["mean", "y", "w_grad"], training.Graph.Output.Select(o => o.Name));
        Assert.DoesNotContain(training.Graph.Input, i => i.Name == "b");
        var trainableOnly = GradientGraphBuilder.Build(Model(), new BuildTrainingOptions { Loss = LossKind.Output, Output = "mean", Trainable = ["b"] });
        Assert.Equal(["b_grad"], trainableOnly.Graph.Output.Skip(2).Select(o => o.Name));
    }

    [Fact]
    public void AParameterThatIsAGraphInputWithoutAValue()
    {
        var m = Model();
        m.Graph.Initializer.Remove(m.Graph.Initializer.Single(t => t.Name == "w"));
        m.Graph.Input.Add(TypeProtos.ValueInfo("w", DataType.Float, [4]));
        var training = GradientGraphBuilder.Build(m, new BuildTrainingOptions { Loss = LossKind.Output, Output = "mean", Trainable = ["w", "b"] });
        Assert.Contains(training.Graph.Output, o => o.Name == "w_grad");
        Assert.Equal("No value for parameter 'w': give it as initializers or with --params MODEL.onnx.",
            Assert.Throws<OnnxAdadeltaException>(() => AdadeltaRewrite.Apply(training, new AdadeltaOptions())).Message);
    }

    [Fact]
    public void BadInputIsNamed()
    {
        Assert.Equal("The loss 'y' has shape [?,4]; a scalar is expected (use --loss cross-entropy or mse, or output a scalar).",
            Fails(new BuildTrainingOptions { Loss = LossKind.Output, Output = "y" }));
        Assert.Equal("Parameter 'nope' (named by --trainable) matches no float initializer of the model (an exact name may also be a graph input).",
            Fails(new BuildTrainingOptions { Loss = LossKind.Mse, Output = "y", Trainable = ["nope"] }));
        Assert.Equal("Parameter 'ghost' (named by --freeze) matches no float initializer of the model (an exact name may also be a graph input).",
            Fails(new BuildTrainingOptions { Loss = LossKind.Mse, Output = "y", Freeze = ["ghost"] }));
        Assert.StartsWith("--output z: the model has no value 'z'", Fails(new BuildTrainingOptions { Loss = LossKind.Mse, Output = "z" }));
        Assert.Equal("Every parameter with a path to the loss 'loss' is left out (2 --freeze); name the ones to train with --trainable.",
            Fails(new BuildTrainingOptions { Loss = LossKind.Mse, Output = "y", Freeze = ["w", "b"] }));
        var unconnected = Model();
        unconnected.Graph.Initializer.Add(Tensors.Create("spare", [1f], 1));
        Assert.Equal("--trainable spare: no differentiable path leads from 'spare' to the loss 'loss'.",
            Fails(new BuildTrainingOptions { Loss = LossKind.Mse, Output = "y", Trainable = ["spare"] }, unconnected));
    }

    [Fact]
    public void IntegerValuesStopTheGradient()
    {
        Assert.Equal("--trainable shape: the value is Int64; only float parameters are trainable.",
            Fails(new BuildTrainingOptions { Loss = LossKind.Mse, Output = "y", Trainable = ["shape"] }));
    }

    [Fact]
    public void AnOpWithoutARuleIsNamedWithTheParameterThatNeedsIt()
    {
        var m = Model();
        m.Graph.Node.Single(n => n.OpType == "Relu").OpType = "Hardmax";
        Assert.Equal("Op 'Hardmax' (node 'y/Relu') has no gradient rule, and parameter 'w' needs one through it; supported ops: see 'onnx-adadelta build-training --help' or the README.",
            Fails(new BuildTrainingOptions { Loss = LossKind.Mse, Output = "y" }, m));
    }

    [Fact]
    public void ACustomDomainOpIsNotMistakenForTheStandardOne()
    {
        // com.microsoft has a Gelu too; only ai.onnx's Gelu has a rule here.
        var m = Model();
        var relu = m.Graph.Node.Single(n => n.OpType == "Relu");
        relu.OpType = "Gelu";
        relu.Domain = "com.microsoft";
        m.OpsetImport.Add(new OperatorSetIdProto { Domain = "com.microsoft", Version = 1 });
        Assert.Equal("Op 'com.microsoft.Gelu' (node 'y/Relu') has no gradient rule, and parameter 'w' needs one through it; supported ops: see 'onnx-adadelta build-training --help' or the README.",
            Fails(new BuildTrainingOptions { Loss = LossKind.Mse, Output = "y" }, m));
    }

    [Fact]
    public void BroadcastingAgainstASymbolicSizeThatIsOneAtRunTime()
    {
        // r = Reshape(B·w) has a symbolic first dimension that is 1 at run time; Add broadcasts it against X's N rows.
        // Its gradient must be summed over those rows, which only run time can tell (the symbols differ).
        var g = new GraphProto { Name = "m" };
        ValueInfoProto Input(string name, string rows) => new()
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)DataType.Float, Shape = new TensorShapeProto { Dim = { new TensorShapeProto.Types.Dimension { DimParam = rows }, new TensorShapeProto.Types.Dimension { DimValue = 4 } } } } },
        };
        g.Input.Add(Input("B", "M"));
        g.Input.Add(Input("X", "N"));
        g.Initializer.Add(Tensors.Create("w", [0.5f, -1f, 2f, 0.25f], 4));
        g.Initializer.Add(Tensors.Create("shape", [-1L, 4L], 2));
        var b = new GraphBuilder(g);
        var r = b.Add("Reshape", [b.Add("Mul", ["B", "w"], "bw"), "shape"], "r");
        b.Add("ReduceSum", [b.Add("Add", [r, "X"], "y")], "L", GraphBuilder.Attr("keepdims", 0L));
        g.Output.Add(TypeProtos.ValueInfo("L", DataType.Float, []));
        var m = new ModelProto { IrVersion = 8, Graph = g };
        m.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });

        var training = GradientGraphBuilder.Build(m, new BuildTrainingOptions { Loss = LossKind.Output, Output = "L" });
        using var session = new Microsoft.ML.OnnxRuntime.InferenceSession(Google.Protobuf.MessageExtensions.ToByteArray(training));
        float[] bValues = [1f, 2f, 3f, 4f];
        using var bv = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(bValues, [1, 4]);
        using var xv = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(new float[12], [3, 4]);
        using var results = session.Run(new Microsoft.ML.OnnxRuntime.RunOptions(), ["B", "X"], [bv, xv], ["w_grad"]);
        Assert.Equal(bValues.Select(v => 3 * v), results[0].GetTensorDataAsSpan<float>().ToArray()); // dL/dw = N·B
    }
}
