using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Tests.Gradients;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;
using static OnnxAdadelta.Tests.Gradients.ControlFlowGradientTests;

namespace OnnxAdadelta.Tests.Graphs;

public class FunctionInliningTests
{
    private static AttributeProto Ref(string name, string refName, AttributeProto.Types.AttributeType type) =>
        new() { Name = name, RefAttrName = refName, Type = type };

    private static NodeProto Call(string function, string[] inputs, string[] outputs, params AttributeProto[] attributes)
    {
        var n = N(function, inputs, outputs, attributes);
        n.Domain = "local";
        return n;
    }

    /// <summary>
    /// Scale(X; alpha = 2) = X * alpha. Block(X, W; beta, leak) = (LeakyRelu(Scale(X @ W; alpha = beta); alpha = leak), X):
    /// a function calling a function, attribute references with and without defaults.
    /// </summary>
    private static ModelProto Model(long functionOpset = 18)
    {
        var scale = new FunctionProto { Name = "Scale", Domain = "local", Input = { "X" }, Output = { "Y" } };
        scale.AttributeProto.Add(GraphBuilder.Attr("alpha", 2f));
        scale.Node.Add(N("Constant", [], ["c"], Ref("value_float", "alpha", AttributeProto.Types.AttributeType.Float)));
        scale.Node.Add(N("Mul", ["X", "c"], ["Y"]));
        scale.OpsetImport.Add(new OperatorSetIdProto { Version = functionOpset });

        var block = new FunctionProto { Name = "Block", Domain = "local", Input = { "X", "W" }, Output = { "Y", "Z" }, Attribute = { "beta", "leak" } };
        block.Node.Add(N("MatMul", ["X", "W"], ["h"]));
        block.Node.Add(Call("Scale", ["h"], ["s"], Ref("alpha", "beta", AttributeProto.Types.AttributeType.Float)));
        block.Node.Add(N("LeakyRelu", ["s"], ["Y"], Ref("alpha", "leak", AttributeProto.Types.AttributeType.Float)));
        block.Node.Add(N("Identity", ["X"], ["Z"]));
        block.OpsetImport.Add(new OperatorSetIdProto { Version = 18 });
        block.OpsetImport.Add(new OperatorSetIdProto { Domain = "local", Version = 1 });

        var g = Graph("g", [V("x", DataType.Float, 2, 3)], [V("y3", DataType.Float, 2, 3), V("z", DataType.Float, 2, 3)],
            Call("Block", ["x", "w"], ["y", "z"], GraphBuilder.Attr("beta", 0.5f), GraphBuilder.Attr("leak", 0.2f)),
            Call("Scale", ["y"], ["y2"]),
            Call("Block", ["y2", "w"], ["y3", "z3"], GraphBuilder.Attr("beta", -1.5f)));
        g.Initializer.Add(Tensors.Create("w", [0.3f, -0.2f, 0.5f, 0.1f, 0.7f, -0.4f, -0.6f, 0.2f, 0.9f], 3, 3));
        var m = new ModelProto { IrVersion = 9, Graph = g, Functions = { scale, block } };
        m.OpsetImport.Add(new OperatorSetIdProto { Version = 18 });
        m.OpsetImport.Add(new OperatorSetIdProto { Domain = "local", Version = 1 });
        return m;
    }

    private static float[][] Run(ModelProto m, float[] x)
    {
        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        using var session = new InferenceSession(m.ToByteArray(), options);
        using var input = OrtValue.CreateTensorValueFromMemory(x, [2, 3]);
        using var results = session.Run(new RunOptions(), ["x"], [input], ["y3", "z"]);
        return results.Select(r => r.GetTensorDataAsSpan<float>().ToArray()).ToArray();
    }

    [Fact]
    public void InlinedNestedFunctionsComputeTheSameOutputs()
    {
        var model = Model();
        var inlined = FunctionInlining.Inline(model);
        Assert.Empty(inlined.Functions);
        Assert.All(inlined.Graph.Node, n => Assert.Equal("", n.Domain));
        Assert.DoesNotContain(inlined.OpsetImport, o => o.Domain == "local");
        Assert.Equal(2, model.Functions.Count); // the input is left unchanged
        Assert.Equal(2, inlined.Graph.Node.Count(n => n.OpType == "LeakyRelu"));
        // The second Block call leaves leak unset: its LeakyRelu has no alpha (the op's default 0.01).
        Assert.Single(inlined.Graph.Node, n => n.OpType == "LeakyRelu" && n.Attribute.Count == 0);
        var x = new[] { 0.5f, -1f, 2f, -0.3f, 0.8f, 1.5f };
        var before = Run(model, x);
        var after = Run(inlined, x);
        Assert.Equal(before[0], after[0]);
        Assert.Equal(before[1], after[1]);
        Assert.Equal(x, after[1]);
    }

    [Fact]
    public void ConflictingOpsetsAreRefused()
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() => FunctionInlining.Inline(Model(functionOpset: 17)));
        Assert.Equal("Function 'local.Scale' imports ai.onnx opset 17, the model opset 18; inlining it would change what its ops mean (convert the model so that both use one version).", e.Message);
    }

    [Fact]
    public void BuildInlinesFunctionsFirst()
    {
        var training = GradientGraphBuilder.Build(Model(), new BuildTrainingOptions { Loss = LossKind.Mse, Output = "y3" });
        Assert.Contains(training.Graph.Output, o => o.Name == "w_grad");
        Assert.Empty(training.Functions);
    }

    [SharedFact]
    public void TheDynamoLeNetWithAFunctionPerLayerBuilds()
    {
        var path = SharedCorpus.RealModel("lenet_dynamo_functions.onnx");
        var model = ModelIO.Load(path);
        Assert.NotEmpty(model.Functions);
        var training = GradientGraphBuilder.Build(model, new BuildTrainingOptions { Loss = LossKind.CrossEntropy, Output = "fc3_1" });
        var grads = training.Graph.Output.Where(o => o.Name.EndsWith("_grad", StringComparison.Ordinal)).ToList();
        Assert.Equal(model.Graph.Initializer.Count(t => t.DataType == (int)DataType.Float), grads.Count);
        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        using var session = new InferenceSession(training.ToByteArray(), options);
        Assert.Contains("labels", session.InputMetadata.Keys);
    }
}
