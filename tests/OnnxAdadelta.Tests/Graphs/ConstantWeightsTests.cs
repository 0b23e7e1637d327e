using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Training;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Graphs;

/// <summary>
/// <see cref="ConstantWeights"/> and <see cref="BuildTrainingOptions.TrainableConstants"/>: a model whose weights are
/// Constant nodes (as spox or paddle2onnx write them) trains, with gradients equal to finite differences.
/// </summary>
public class ConstantWeightsTests
{
    private const int Rows = 2, In = 3, Out = 4;

    private static double[] Random(int n, int seed)
    {
        var rng = new SplitMix64((ulong)seed * 104729UL + 11);
        return Enumerable.Range(0, n).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
    }

    private static NodeProto Constant(string output, TensorProto value) => new()
    {
        OpType = "Constant", Name = $"{output}/Constant", Output = { output },
        Attribute = { new AttributeProto { Name = "value", Type = AttributeProto.Types.AttributeType.Tensor, T = value } },
    };

    /// <summary>
    /// y = tanh(x·W + b) · s with W [3,4] and b [4] Constant nodes and s a scalar Constant (float64); with
    /// <paramref name="biasInitializer"/>, b is an initializer instead.
    /// </summary>
    private static ModelProto ConstantModel(bool biasInitializer = false)
    {
        var g = new GraphProto { Name = "constants" };
        g.Input.Add(TypeProtos.ValueInfo("x", DataType.Double, [Rows, In]));
        g.Output.Add(TypeProtos.ValueInfo("y", DataType.Double, [Rows, Out]));
        g.Node.Add(Constant("W", Tensors.Create("", Random(In * Out, 1), In, Out)));
        var b = Tensors.Create("", Random(Out, 2), Out);
        if (biasInitializer) { b.Name = "b"; g.Initializer.Add(b); }
        else g.Node.Add(Constant("b", b));
        g.Node.Add(Constant("s", Tensors.Create("", [1.5])));
        g.Node.Add(new NodeProto { OpType = "MatMul", Name = "mm", Input = { "x", "W" }, Output = { "xw" } });
        g.Node.Add(new NodeProto { OpType = "Add", Name = "add", Input = { "xw", "b" }, Output = { "h" } });
        g.Node.Add(new NodeProto { OpType = "Tanh", Name = "tanh", Input = { "h" }, Output = { "t" } });
        g.Node.Add(new NodeProto { OpType = "Mul", Name = "mul", Input = { "t", "s" }, Output = { "y" } });
        return new ModelProto { IrVersion = 8, OpsetImport = { new OperatorSetIdProto { Domain = "", Version = 17 } }, Graph = g };
    }

    private static Dictionary<string, double[]> Run(ModelProto model, Dictionary<string, (double[] Values, long[] Shape)> feeds, params string[] outputs)
    {
        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        using var session = new InferenceSession(model.ToByteArray(), options);
        var names = feeds.Keys.ToArray();
        var values = names.Select(n => OrtValue.CreateTensorValueFromMemory(feeds[n].Values, feeds[n].Shape)).ToList();
        try
        {
            using var results = session.Run(new RunOptions(), names, values, outputs);
            return outputs.Zip(results).ToDictionary(p => p.First, p => p.Second.GetTensorDataAsSpan<double>().ToArray());
        }
        finally { foreach (var v in values) v.Dispose(); }
    }

    [Fact]
    public void ConstantWeightsTrainWithGradientsEqualToFiniteDifferences()
    {
        var training = GradientGraphBuilder.Build(ConstantModel(), new BuildTrainingOptions { Loss = LossKind.Mse, Output = "y" });
        var grads = training.Graph.Output.Select(o => o.Name).Where(n => n.EndsWith("_grad", StringComparison.Ordinal)).Order().ToArray();
        Assert.Equal(["W_grad", "b_grad"], grads);
        Assert.Contains(training.Graph.Node, n => n.OpType == "Constant" && n.Output[0] == "s");

        var weights = new Dictionary<string, (double[] Values, long[] Shape)>
        {
            ["W"] = (Random(In * Out, 1), [In, Out]),
            ["b"] = (Random(Out, 2), [Out]),
        };
        var feeds = new Dictionary<string, (double[] Values, long[] Shape)>(weights)
        {
            ["x"] = (Random(Rows * In, 3), [Rows, In]),
            ["target"] = (Random(Rows * Out, 4), [Rows, Out]),
        };
        var analytic = Run(training, feeds, "W_grad", "b_grad");
        const double h = 1e-6;
        foreach (var (name, (values, shape)) in weights)
        {
            for (int i = 0; i < values.Length; i++)
            {
                double Loss(double delta)
                {
                    var perturbed = (double[])values.Clone();
                    perturbed[i] += delta;
                    var f = new Dictionary<string, (double[] Values, long[] Shape)>(feeds) { [name] = (perturbed, shape) };
                    return Run(training, f, GradientGraphBuilder.LossName)[GradientGraphBuilder.LossName][0];
                }
                double numeric = (Loss(h) - Loss(-h)) / (2 * h);
                double a = analytic[$"{name}_grad"][i];
                Assert.True(Math.Abs(a - numeric) <= 1e-7 + 1e-5 * Math.Abs(numeric), $"{name}[{i}]: analytic {a}, numeric {numeric}");
            }
        }
    }

    [Fact]
    public void TheAutomaticModeLeavesModelsWithFloatInitializersAlone()
    {
        var model = ConstantModel(biasInitializer: true);
        Assert.True(ConstantWeights.HasFloatInitializers(model.Graph));
        var auto = GradientGraphBuilder.Build(model, new BuildTrainingOptions { Loss = LossKind.Mse, Output = "y" });
        Assert.Equal(["b_grad"], auto.Graph.Output.Select(o => o.Name).Where(n => n.EndsWith("_grad", StringComparison.Ordinal)));
        var always = GradientGraphBuilder.Build(model, new BuildTrainingOptions { Loss = LossKind.Mse, Output = "y", TrainableConstants = true });
        Assert.Equal(["W_grad", "b_grad"], always.Graph.Output.Select(o => o.Name).Where(n => n.EndsWith("_grad", StringComparison.Ordinal)).Order());
    }

    [Fact]
    public void NeverPromotingLeavesNothingToTrain()
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() =>
            GradientGraphBuilder.Build(ConstantModel(), new BuildTrainingOptions { Loss = LossKind.Mse, Output = "y", TrainableConstants = false }));
        Assert.StartsWith("No trainable parameter", e.Message);
    }

    [Fact]
    public void OnlyMultiElementFloatConstantsOfTheMainGraphArePromoted()
    {
        var model = ConstantModel();
        model.Graph.Node.Add(Constant("ints", Tensors.Create("", new long[] { 1, 2 }, 2)));
        model.Graph.Node.Add(Constant("one", Tensors.Create("", new float[] { 2f }, 1)));
        var promoted = ConstantWeights.Promote(model.Graph);
        Assert.Equal(["W", "b"], promoted);
        Assert.Equal(["W", "b"], model.Graph.Initializer.Select(t => t.Name));
        Assert.Equal(["s", "ints", "one"], model.Graph.Node.Where(n => n.OpType == "Constant").Select(n => n.Output[0]));
        Assert.Equal(Random(In * Out, 1), model.Graph.Initializer[0].ToArray<double>());
    }
}
