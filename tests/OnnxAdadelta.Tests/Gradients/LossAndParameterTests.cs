using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Training;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Gradients;

/// <summary>The losses build-training appends, the class axis, --input-shape, --output on any value, and the default parameters.</summary>
public class LossAndParameterTests
{
    private static TensorShapeProto.Types.Dimension Dim(long v) => new() { DimValue = v };

    /// <summary>x float[2,3,4] · W[4,4] + b → logits [2,3,4]; then <paramref name="head"/> ("" for none, Softmax, LogSoftmax or Sigmoid) on the last axis.</summary>
    private static ModelProto Classifier(string head, int seed = 1)
    {
        var g = new GraphProto { Name = "c" };
        g.Input.Add(TypeProtos.ValueInfo("x", DataType.Float, [2, 3, 4]));
        var rng = new SplitMix64((ulong)seed);
        g.Initializer.Add(Tensors.Create("W", Enumerable.Range(0, 16).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray(), 4, 4));
        g.Initializer.Add(Tensors.Create("b", Enumerable.Range(0, 4).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray(), 4));
        var bld = new GraphBuilder(g);
        var logits = bld.Add("Add", [bld.Add("MatMul", ["x", "W"], "xw"), "b"], "logits");
        var output = head.Length == 0 ? logits : bld.Add(head, [logits], "out", head == "Sigmoid" ? [] : [GraphBuilder.Attr("axis", -1L)]);
        g.Output.Add(TypeProtos.ValueInfo(output, DataType.Float, [2, 3, 4]));
        var m = new ModelProto { IrVersion = 8, Graph = g };
        m.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        return m;
    }

    private static readonly float[] X = Enumerable.Range(0, 24).Select(i => (float)Math.Sin(i * 0.7)).ToArray();
    private static readonly long[] Labels = [0, 3, 2, 1, 1, 2];

    private static Dictionary<string, float[]> Run(ModelProto m, Dictionary<string, (Array Values, long[] Shape)> feeds, params string[] outputs)
    {
        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        using var session = new InferenceSession(m.ToByteArray(), options);
        var values = feeds.Select(f => f.Value.Values switch
        {
            float[] v => OrtValue.CreateTensorValueFromMemory(v, f.Value.Shape),
            long[] v => OrtValue.CreateTensorValueFromMemory(v, f.Value.Shape),
            _ => throw new ArgumentException("feed type"),
        }).ToList();
        try
        {
            using var results = session.Run(new RunOptions(), feeds.Keys.ToArray(), values, outputs);
            return outputs.Zip(results).ToDictionary(p => p.First, p => p.Second.GetTensorDataAsSpan<float>().ToArray());
        }
        finally { foreach (var v in values) v.Dispose(); }
    }

    /// <summary>Mean cross-entropy over the last axis of logits [2,3,4], labels [2,3], in float64.</summary>
    private static double ExpectedCrossEntropy(float[] logits)
    {
        double total = 0;
        for (int r = 0; r < 6; r++)
        {
            var row = logits.Skip(r * 4).Take(4).Select(v => (double)v).ToArray();
            var max = row.Max();
            var logSum = max + Math.Log(row.Sum(v => Math.Exp(v - max)));
            total += logSum - row[Labels[r]];
        }
        return total / 6;
    }

    private static Dictionary<string, (Array, long[])> Feeds(string labelName = "labels") => new()
    {
        ["x"] = (X, [2, 3, 4]),
        [labelName] = (Labels, [2, 3]),
    };

    [Fact]
    public void CrossEntropyOnASoftmaxOutputUsesTheLogitsOnce()
    {
        var plain = Classifier("");
        var logits = Run(plain, new() { ["x"] = (X, [2, 3, 4]) }, "logits")["logits"];
        var expected = ExpectedCrossEntropy(logits);

        var viaSoftmax = GradientGraphBuilder.Build(Classifier("Softmax"), new BuildTrainingOptions { Loss = LossKind.CrossEntropy, Output = "out" }, out var report);
        Assert.Contains(report.Notes, n => n.Contains("its input 'logits' is used as the logits", StringComparison.Ordinal));
        var direct = GradientGraphBuilder.Build(plain, new BuildTrainingOptions { Loss = LossKind.CrossEntropy, Output = "logits", ClassAxis = -1 });
        var a = Run(viaSoftmax, Feeds(), "loss", "W_grad", "b_grad");
        var b = Run(direct, Feeds(), "loss", "W_grad", "b_grad");
        Assert.Equal(expected, a["loss"][0], 5);
        Assert.Equal(b["loss"], a["loss"]);
        Assert.Equal(b["W_grad"], a["W_grad"]);
        Assert.Equal(b["b_grad"], a["b_grad"]);
    }

    [Fact]
    public void NllOnProbabilitiesAndLogProbabilitiesEqualsCrossEntropy()
    {
        var direct = GradientGraphBuilder.Build(Classifier(""), new BuildTrainingOptions { Loss = LossKind.CrossEntropy, Output = "logits", ClassAxis = 2 });
        var reference = Run(direct, Feeds(), "loss", "W_grad");
        foreach (var head in new[] { "Softmax", "LogSoftmax" })
        {
            var nll = GradientGraphBuilder.Build(Classifier(head), new BuildTrainingOptions { Loss = LossKind.Nll, Output = "out" });
            var got = Run(nll, Feeds(), "loss", "W_grad");
            Assert.Equal(reference["loss"][0], got["loss"][0], 5);
            for (int i = 0; i < 16; i++) Assert.Equal(reference["W_grad"][i], got["W_grad"][i], 5);
        }
    }

    [Fact]
    public void BinaryCrossEntropyOnASigmoidOutputOrOnLogits()
    {
        var target = Enumerable.Range(0, 24).Select(i => (float)(i % 3 == 0 ? 1 : 0)).ToArray();
        var logits = Run(Classifier(""), new() { ["x"] = (X, [2, 3, 4]) }, "logits")["logits"];
        double expected = logits.Zip(target).Average(p =>
        {
            double s = 1 / (1 + Math.Exp(-p.First));
            return -(p.Second * Math.Log(s) + (1 - p.Second) * Math.Log(1 - s));
        });
        var sigmoid = GradientGraphBuilder.Build(Classifier("Sigmoid"), new BuildTrainingOptions { Loss = LossKind.Bce, Output = "out" }, out var report);
        Assert.Contains(report.Notes, n => n.Contains("is the output of Sigmoid node", StringComparison.Ordinal));
        var onLogits = GradientGraphBuilder.Build(Classifier(""), new BuildTrainingOptions { Loss = LossKind.Bce, Output = "logits" }, out var report2);
        Assert.Contains(report2.Notes, n => n.Contains("read as logits", StringComparison.Ordinal));
        var feeds = new Dictionary<string, (Array, long[])> { ["x"] = (X, [2, 3, 4]), ["target"] = (target, [2, 3, 4]) };
        var a = Run(sigmoid, feeds, "loss", "b_grad");
        var b = Run(onLogits, feeds, "loss", "b_grad");
        Assert.Equal(expected, a["loss"][0], 5);
        Assert.Equal(b["loss"], a["loss"]);
        // d/db of mean BCE with logits is mean over rows of (sigmoid(z) - t) per class.
        for (int c = 0; c < 4; c++)
        {
            double g = Enumerable.Range(0, 6).Sum(r => 1 / (1 + Math.Exp(-logits[r * 4 + c])) - target[r * 4 + c]) / 24;
            Assert.Equal(g, a["b_grad"][c], 5);
        }
    }

    [Fact]
    public void TheClassAxisComesFromTheLabelsOrTheFlagOrIsRefused()
    {
        var refused = Assert.Throws<OnnxAdadeltaException>(() => GradientGraphBuilder.Build(Classifier(""), new BuildTrainingOptions { Loss = LossKind.CrossEntropy, Output = "logits" })).Message;
        Assert.Equal("--loss cross-entropy: 'logits' has rank 3 ([2,3,4]), so the class axis is ambiguous; give it with --class-axis (1 for PyTorch's [N, C, ...], -1 for Keras's [..., C]).", refused);

        var withLabels = Classifier("");
        withLabels.Graph.Input.Add(TypeProtos.ValueInfo("labels", DataType.Int64, [2, 3]));
        var decided = GradientGraphBuilder.Build(withLabels, new BuildTrainingOptions { Loss = LossKind.CrossEntropy, Output = "logits" });
        var loss = Run(decided, Feeds(), "loss")["loss"][0];
        var logits = Run(Classifier(""), new() { ["x"] = (X, [2, 3, 4]) }, "logits")["logits"];
        Assert.Equal(ExpectedCrossEntropy(logits), loss, 5);

        // Axis 1 (PyTorch's convention) reads the classes along the 3-long axis: labels [2,4] then.
        var axis1 = GradientGraphBuilder.Build(Classifier(""), new BuildTrainingOptions { Loss = LossKind.CrossEntropy, Output = "logits", ClassAxis = 1 });
        Assert.Equal("int64[2,4]", axis1.Graph.Input.Single(i => i.Name == "labels").Type.Describe());
        Assert.StartsWith("--class-axis 3: out of range", Assert.Throws<OnnxAdadeltaException>(() =>
            GradientGraphBuilder.Build(Classifier(""), new BuildTrainingOptions { Loss = LossKind.CrossEntropy, Output = "logits", ClassAxis = 3 })).Message);
    }

    [Fact]
    public void OutputMayNameAnyFloatValueButNotAnIntegerOne()
    {
        var m = Classifier("Softmax");
        var cast = new GraphBuilder(m.Graph).Add("Cast", ["out"], "as_int", GraphBuilder.Attr("to", (long)DataType.Uint8));
        m.Graph.Output.Add(TypeProtos.ValueInfo(cast, DataType.Uint8, [2, 3, 4]));
        Assert.Equal("--output as_int: the value is uint8; a loss needs a float value. Name the float value before its Cast: --output out.",
            Assert.Throws<OnnxAdadeltaException>(() => GradientGraphBuilder.Build(m, new BuildTrainingOptions { Loss = LossKind.Mse, Output = "as_int" })).Message);
        var training = GradientGraphBuilder.Build(m, new BuildTrainingOptions { Loss = LossKind.Mse, Output = "xw" });
        Assert.Equal("float[2,3,4]", training.Graph.Input.Single(i => i.Name == "target").Type.Describe());
        Assert.Equal(["W_grad"], training.Graph.Output.Select(o => o.Name).Where(n => n.EndsWith("_grad", StringComparison.Ordinal)));
    }

    [Fact]
    public void InputShapesFixSymbolicDimensions()
    {
        var m = Classifier("");
        m.Graph.Input[0].Type.TensorType.Shape.Dim[0].DimParam = "batch";
        InputShapes.Apply(m, new Dictionary<string, long?[]> { ["x"] = [5, null, 4] });
        Assert.Equal("float[5,3,4]", m.Graph.Input[0].Type.Describe());
        var (name, dims) = InputShapes.Parse("x=5,?,4");
        Assert.Equal("x", name);
        Assert.Equal([5, null, 4], dims);
        Assert.Equal("--input-shape x: dimension 1 is fixed at 3 in the model, not 7.",
            Assert.Throws<OnnxAdadeltaException>(() => InputShapes.Apply(m, new Dictionary<string, long?[]> { ["x"] = [5, 7, 4] })).Message);
        Assert.Equal("--input-shape x: 2 dimensions given, but 'x' has rank 3 (float[5,3,4]).",
            Assert.Throws<OnnxAdadeltaException>(() => InputShapes.Apply(m, new Dictionary<string, long?[]> { ["x"] = [5, 3] })).Message);
        Assert.StartsWith("--input-shape nope: the model has no graph input 'nope'",
            Assert.Throws<OnnxAdadeltaException>(() => InputShapes.Apply(m, new Dictionary<string, long?[]> { ["nope"] = [1] })).Message);
        Assert.Equal("--input-shape 'x=0,3': '0' is not a size (a whole number >= 1, or '?').", Assert.Throws<OnnxAdadeltaException>(() => InputShapes.Parse("x=0,3")).Message);
        Assert.StartsWith("--input-shape 'x': expected NAME=D0,D1,...", Assert.Throws<OnnxAdadeltaException>(() => InputShapes.Parse("x")).Message);
    }

    /// <summary>A model with weights and the things that are not: a scalar, a one-element epsilon, a −inf mask and a positional-encoding buffer.</summary>
    private static ModelProto WithBuffers()
    {
        var m = Classifier("");
        var g = m.Graph;
        g.Initializer.Add(Tensors.Create("scale", [0.5f]));
        g.Initializer.Add(Tensors.Create("eps", [1e-5f], 1));
        g.Initializer.Add(Tensors.Create("attn_mask", [0, float.NegativeInfinity, 0, 0], 4));
        g.Initializer.Add(Tensors.Create("pos_enc.pe", Enumerable.Range(0, 12).Select(i => i * 0.01f).ToArray(), 3, 4));
        var b = new GraphBuilder(g);
        var h = b.Add("Add", [b.Add("Add", [b.Add("Mul", ["logits", "scale"], "scaled"), "eps"], "eps_added"), "pos_enc.pe"], "pos");
        var masked = b.Add("Add", [h, "attn_mask"], "masked");
        g.Output.Clear();
        g.Output.Add(TypeProtos.ValueInfo(masked, DataType.Float, [2, 3, 4]));
        return m;
    }

    [Fact]
    public void DefaultParametersLeaveOutScalarsMasksAndBuffers()
    {
        GradientGraphBuilder.Build(WithBuffers(), new BuildTrainingOptions { Loss = LossKind.Mse, Output = "masked" }, out var report);
        Assert.Equal([("W", "trainable"), ("b", "trainable"), ("scale", "one element"), ("eps", "one element"), ("attn_mask", "non-finite values"), ("pos_enc.pe", "buffer name")],
            report.Parameters.Select(p => (p.Name, p.Reason)));
        Assert.Equal("parameters: 2 trainable (20 values), 4 left out (2 one element, 1 non-finite values, 1 buffer name)", report.Summary());

        // --trainable replaces the default (exact names and patterns); --freeze takes patterns.
        GradientGraphBuilder.Build(WithBuffers(), new BuildTrainingOptions { Loss = LossKind.Mse, Output = "masked", Trainable = ["pos_enc.pe", "scal*"] }, out var explicitly);
        Assert.Equal(["scale", "pos_enc.pe"], explicitly.Parameters.Where(p => p.Trainable).Select(p => p.Name));
        var frozen = GradientGraphBuilder.Build(WithBuffers(), new BuildTrainingOptions { Loss = LossKind.Mse, Output = "masked", Freeze = ["W*"] }, out var report3);
        Assert.Equal(["b_grad"], frozen.Graph.Output.Select(o => o.Name).Where(n => n.EndsWith("_grad", StringComparison.Ordinal)));
        Assert.Equal("--freeze", report3.Parameters.Single(p => p.Name == "W").Reason);
    }

    [Fact]
    public void AOneElementBiasOfALayerStillTrains()
    {
        // y = x·W + b with one output: b has one element but is a Linear layer's bias; 'scale' multiplies it and is not.
        var g = new GraphProto { Name = "one" };
        g.Input.Add(TypeProtos.ValueInfo("x", DataType.Float, [2, 3]));
        g.Initializer.Add(Tensors.Create("W", [0.1f, -0.2f, 0.3f], 3, 1));
        g.Initializer.Add(Tensors.Create("b", [0.5f], 1));
        g.Initializer.Add(Tensors.Create("scale", [2f], 1));
        var bld = new GraphBuilder(g);
        bld.Add("Mul", [bld.Add("Add", [bld.Add("MatMul", ["x", "W"], "xw"), "b"], "lin"), "scale"], "y");
        g.Output.Add(TypeProtos.ValueInfo("y", DataType.Float, [2, 1]));
        var m = new ModelProto { IrVersion = 8, Graph = g };
        m.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        GradientGraphBuilder.Build(m, new BuildTrainingOptions { Loss = LossKind.Mse, Output = "y" }, out var report);
        Assert.Equal([("W", "trainable"), ("b", "trainable"), ("scale", "one element")], report.Parameters.Select(p => (p.Name, p.Reason)));
    }

    [Fact]
    public void AFloat16ModelGetsAFloat32LossAndFloat16Gradients()
    {
        var g = new GraphProto { Name = "half" };
        g.Input.Add(TypeProtos.ValueInfo("x", DataType.Float16, [2, 3]));
        g.Initializer.Add(Tensors.Create("W", new Half[] { (Half)0.5f, (Half)(-0.25f), (Half)1f, (Half)0.75f, (Half)(-1f), (Half)0.125f }, 3, 2));
        new GraphBuilder(g).Add("MatMul", ["x", "W"], "y");
        g.Output.Add(TypeProtos.ValueInfo("y", DataType.Float16, [2, 2]));
        var m = new ModelProto { IrVersion = 8, Graph = g };
        m.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        foreach (var loss in new[] { LossKind.Mse, LossKind.Bce })
        {
            var training = GradientGraphBuilder.Build(m, new BuildTrainingOptions { Loss = loss, Output = "y" });
            var graph = OnnxAdadelta.Graphs.TrainingGraph.Analyze(training);
            Assert.Equal("float[]", training.Graph.Output[0].Type.Describe());
            Assert.Equal("float16[3,2]", training.Graph.Output.Single(o => o.Name == "W_grad").Type.Describe());
            Assert.Equal(["W"], graph.Parameters.Select(p => p.Name));
        }
    }

    [Fact]
    public void InitializersListedAsInputsThatDoNotTrainStayConstants()
    {
        // IR version 3 models list every initializer as a graph input too.
        var m = Classifier("");
        foreach (var t in m.Graph.Initializer) m.Graph.Input.Add(TypeProtos.ValueInfo(t.Name, DataType.Float, [.. t.Dims]));
        var training = GradientGraphBuilder.Build(m, new BuildTrainingOptions { Loss = LossKind.CrossEntropy, Output = "logits", ClassAxis = -1, Freeze = ["b"] });
        Assert.DoesNotContain(training.Graph.Input, i => i.Name == "b");
        Assert.Equal(["W"], OnnxAdadelta.Graphs.TrainingGraph.Analyze(training).Parameters.Select(p => p.Name));
    }

    [Fact]
    public void AWeightStoredInsideAnIfBranchTrains()
    {
        // y = If(c) then x·Wt else x·We, each weight an initializer of its own branch (as torch.onnx writes them).
        GraphProto Branch(string name, float[] w)
        {
            var bg = new GraphProto { Name = name };
            bg.Initializer.Add(Tensors.Create($"{name}_W", w, 3, 1));
            new GraphBuilder(bg).Add("MatMul", ["x", $"{name}_W"], $"{name}_y");
            bg.Output.Add(TypeProtos.ValueInfo($"{name}_y", DataType.Float, [2, 1]));
            return bg;
        }
        var g = new GraphProto { Name = "branchy" };
        g.Input.Add(TypeProtos.ValueInfo("x", DataType.Float, [2, 3]));
        g.Input.Add(TypeProtos.ValueInfo("c", DataType.Bool, []));
        g.Node.Add(new NodeProto
        {
            OpType = "If", Name = "if", Input = { "c" }, Output = { "y" },
            Attribute = { new AttributeProto { Name = "then_branch", Type = AttributeProto.Types.AttributeType.Graph, G = Branch("then", [1, 2, 3]) },
                          new AttributeProto { Name = "else_branch", Type = AttributeProto.Types.AttributeType.Graph, G = Branch("else", [-1, 0.5f, 2]) } },
        });
        g.Output.Add(TypeProtos.ValueInfo("y", DataType.Float, [2, 1]));
        var m = new ModelProto { IrVersion = 8, Graph = g };
        m.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        var training = GradientGraphBuilder.Build(m, new BuildTrainingOptions { Loss = LossKind.Mse, Output = "y" });
        Assert.Equal(["then_W", "else_W"], OnnxAdadelta.Graphs.TrainingGraph.Analyze(training).Parameters.Select(p => p.Name));
        // With the condition true, only the then-branch weight gets a gradient: d mean((x·W - t)²)/dW = 2/n · xᵀ(x·W - t).
        var x = new float[] { 1, 2, 3, 4, 5, 6 };
        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        using var session = new InferenceSession(training.ToByteArray(), options);
        using var xv = OrtValue.CreateTensorValueFromMemory(x, [2, 3]);
        using var cv = OrtValue.CreateTensorValueFromMemory(new[] { true }, []);
        using var tv = OrtValue.CreateTensorValueFromMemory(new float[] { 0, 0 }, [2, 1]);
        using var results = session.Run(new RunOptions(), ["x", "c", "target"], [xv, cv, tv], ["then_W_grad", "else_W_grad"]);
        float[] y = [1 * 1 + 2 * 2 + 3 * 3, 4 * 1 + 5 * 2 + 6 * 3];
        Assert.Equal(Enumerable.Range(0, 3).Select(j => (x[j] * y[0] + x[3 + j] * y[1]) * 2 / 2f), results[0].GetTensorDataAsSpan<float>().ToArray());
        Assert.Equal([0f, 0f, 0f], results[1].GetTensorDataAsSpan<float>().ToArray());
    }

    [Fact]
    public void ARankShapeInferenceDoesNotKnowComesFromARun()
    {
        // Squeeze without axes: ONNX Runtime cannot tell the rank of its output from symbolic dimensions.
        var g = new GraphProto { Name = "u" };
        g.Input.Add(new ValueInfoProto { Name = "x", Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)DataType.Float, Shape = new TensorShapeProto { Dim = { new TensorShapeProto.Types.Dimension { DimParam = "n" }, Dim(3) } } } } });
        g.Initializer.Add(Tensors.Create("w", [0.5f, -1f, 2f], 3));
        g.Initializer.Add(Tensors.Create("idx", [0L, 2L], 2));
        var b = new GraphBuilder(g);
        var sq = b.Add("Squeeze", [b.Add("Mul", ["x", "w"], "xw")], "sq");
        var picked = b.Add("Gather", [sq, "idx"], "picked", GraphBuilder.Attr("axis", 1L));
        b.Add("ReduceSum", [picked], "total", GraphBuilder.Attr("keepdims", 0L));
        g.Output.Add(TypeProtos.ValueInfo("total", DataType.Float, []));
        var m = new ModelProto { IrVersion = 8, Graph = g };
        m.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });

        Assert.Equal(2, ShapeInference.Infer(m)["sq"].Rank);
        var training = GradientGraphBuilder.Build(m, new BuildTrainingOptions { Loss = LossKind.Output, Output = "total" });
        var x = new float[] { 1, 2, 3, 4, 5, 6 };
        var grad = Run(training, new() { ["x"] = (x, [2, 3]) }, "w_grad")["w_grad"];
        Assert.Equal([1 + 4, 0, 3 + 6], grad);
    }
}
