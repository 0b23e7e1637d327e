using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Optimizers;

public class BadInputTests
{
    private static string Fails(ModelProto training, RewriteOptions? rewrite = null) =>
        Assert.Throws<OnnxAdadeltaException>(() => AdadeltaRewrite.Apply(training, new AdadeltaOptions(), rewrite)).Message;

    private static ValueInfoProto Output(ModelProto m, string name) => m.Graph.Output.Single(o => o.Name == name);

    [Fact]
    public void AParameterWithoutAGradient()
    {
        var m = TestData.TrainingGraph();
        m.Graph.Output.Remove(Output(m, "b_grad"));
        Assert.Equal("Parameter 'b' has no gradient: expected an output 'b_grad' or --grad b=OUTPUT.", Fails(m));
    }

    [Fact]
    public void AGradientWithTheWrongShape()
    {
        var m = TestData.TrainingGraph();
        Output(m, "W_grad").Type = TypeProtos.Tensor(DataType.Float, [TestData.Classes, TestData.Features]);
        Assert.Equal($"Gradient 'W_grad' has shape [{TestData.Classes},{TestData.Features}], but parameter 'W' has shape [{TestData.Features},{TestData.Classes}].", Fails(m));
    }

    [Fact]
    public void AGradientWithTheWrongDtype()
    {
        var m = TestData.TrainingGraph();
        Output(m, "b_grad").Type = TypeProtos.Tensor(DataType.Double, [TestData.Classes]);
        Assert.Equal("Gradient 'b_grad' of parameter 'b' is float64, but the parameter is float32; a gradient must have its parameter's dtype.", Fails(m));
    }

    [Fact]
    public void ANonFloatParameter()
    {
        var m = TestData.TrainingGraph();
        m.Graph.Initializer.Add(Tensors.Create("steps", [3L], 1));
        var b = new GraphBuilder(m.Graph);
        b.Add("Identity", ["steps"], "steps_grad");
        m.Graph.Output.Add(TypeProtos.ValueInfo("steps_grad", DataType.Int64, [1]));
        Assert.Equal("Parameter 'steps' is int64; only float32, float16 and bfloat16 parameters can be trained.", Fails(m));
    }

    [Fact]
    public void AParameterWithoutAValue()
    {
        var m = TestData.TrainingGraph();
        m.Graph.Initializer.Remove(m.Graph.Initializer.Single(t => t.Name == "b"));
        Assert.Equal("No value for parameter 'b': give it as initializers or with --params MODEL.onnx.", Fails(m));
    }

    [Fact]
    public void ValuesFromAParamsModel()
    {
        var m = TestData.TrainingGraph();
        m.Graph.Initializer.Remove(m.Graph.Initializer.Single(t => t.Name == "b"));
        var values = new ModelProto { Graph = new GraphProto() };
        values.Graph.Initializer.Add(Tensors.Create("b", [1f, 2f, 3f], 3));
        var step = AdadeltaRewrite.Apply(m, new AdadeltaOptions(), new RewriteOptions { ParameterValues = values });
        Assert.Equal([1f, 2f, 3f], TestData.ValuesByName(step)["b"].ToFloatArray());
    }

    [Fact]
    public void AnExplicitGradientMap()
    {
        var m = TestData.TrainingGraph();
        Output(m, "b_grad").Name = "bias_gradient";
        m.Graph.Node.Single(n => n.Output.Contains("b_grad")).Output[0] = "bias_gradient";
        Assert.Contains("'b' has no gradient", Fails(m));
        var step = AdadeltaRewrite.Apply(m, new AdadeltaOptions(), new RewriteOptions { Gradients = new Dictionary<string, string> { ["b"] = "bias_gradient" } });
        Assert.Equal("bias_gradient", StepModelInfo.Read(step, "t").Gradients["b"]);
        Assert.Contains("no value 'nothing'", Fails(m, new RewriteOptions { Gradients = new Dictionary<string, string> { ["b"] = "nothing" } }));
        Assert.Contains("no parameter 'c'", Fails(m, new RewriteOptions { Gradients = new Dictionary<string, string> { ["c"] = "bias_gradient" } }));
    }

    [Fact]
    public void AGradientNameWithoutItsParameter()
    {
        var m = TestData.TrainingGraph();
        new GraphBuilder(m.Graph).Add("Identity", ["b_grad"], "ghost_grad");
        m.Graph.Output.Add(TypeProtos.ValueInfo("ghost_grad", DataType.Float, [TestData.Classes]));
        Assert.Equal("Output 'ghost_grad' is named like a gradient, but the graph has no parameter 'ghost'; map it with --grad PARAM=ghost_grad.", Fails(m));
    }

    [Fact]
    public void ALossThatIsNotAScalar()
    {
        var m = TestData.TrainingGraph();
        Output(m, "loss").Type = TypeProtos.Tensor(DataType.Float, [4]);
        Assert.Equal("The loss 'loss' has shape float[4]; a scalar is expected.", Fails(m));
    }

    [Theory]
    [InlineData(-0.1, 0.95, 1e-7, null, null, "Invalid learning_rate value: -0.1")]
    [InlineData(double.NaN, 0.95, 1e-7, null, null, "Invalid learning_rate value: NaN")]
    [InlineData(double.PositiveInfinity, 0.95, 1e-7, null, null, "Invalid learning_rate value: Infinity")]
    [InlineData(0.001, -0.5, 1e-7, null, null, "Invalid rho value: -0.5")]
    [InlineData(0.001, 1.5, 1e-7, null, null, "Invalid rho value: 1.5")]
    [InlineData(0.001, 0.95, 0.0, null, null, "Invalid epsilon value: 0")]
    [InlineData(0.001, 0.95, -1e-7, null, null, "Invalid epsilon value: -1E-07")]
    [InlineData(0.001, 0.95, 1e-7, 0.0, null, "Invalid clipnorm value: 0")]
    [InlineData(0.001, 0.95, 1e-7, null, -2.0, "Invalid clipvalue value: -2")]
    [InlineData(0.001, 0.95, 1e-7, 1.0, 2.0, "clipnorm (1) and clipvalue (2) cannot both be set")]
    public void InvalidArgumentsNameTheValue(double lr, double rho, double eps, double? clipNorm, double? clipValue, string message)
    {
        var e = Assert.Throws<ArgumentException>(() => new AdadeltaOptions { LearningRate = new ConstantLearningRate(lr), Rho = rho, Epsilon = eps, ClipNorm = clipNorm, ClipValue = clipValue }.Validate());
        Assert.StartsWith(message, e.Message);
    }

    [Fact]
    public void DefaultsAreKeras()
    {
        var o = new AdadeltaOptions();
        Assert.Equal(0.001f, o.LearningRate.Evaluate(0));
        Assert.Equal(0.95, o.Rho);
        Assert.Equal(1e-7, o.Epsilon);
        Assert.Equal("Adadelta", o.Name);
        Assert.Null(o.ClipNorm);
        Assert.Null(o.ClipValue);
    }
}
