using System.Text.Json;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Reference;
using OnnxAdadelta.Training;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Optimizers;

/// <summary>
/// The published Keras/TensorFlow expectations in Golden/adadelta-public-vectors.json (a copy of
/// ../shared/golden), reproduced by the C# reference and by the in-graph update through ONNX Runtime.
/// </summary>
public class GoldenVectorTests
{
    private static readonly string VectorsPath = Path.Combine(AppContext.BaseDirectory, "Golden", "adadelta-public-vectors.json");

    private static JsonElement Case(string name) =>
        JsonDocument.Parse(File.ReadAllText(VectorsPath)).RootElement.GetProperty("cases").EnumerateArray()
            .Single(c => c.GetProperty("name").GetString() == name);

    private static double[] Doubles(JsonElement e) => e.EnumerateArray().Select(x => x.GetDouble()).ToArray();

    [SharedFact]
    public void TheShippedCopyMatchesSharedGolden()
    {
        Assert.Equal(File.ReadAllText(Path.Combine(RepoPaths.Shared!, "golden", "adadelta-public-vectors.json")), File.ReadAllText(VectorsPath));
    }

    [Theory]
    [InlineData("keras3_golden")]
    [InlineData("tf_basic_lr1")]
    [InlineData("seed_defaults")]
    [InlineData("keras3_single_step_lr_half")]
    public void ReferenceAndGraphReproducePublishedTrajectories(string name)
    {
        var c = Case(name);
        var options = new AdadeltaOptions { LearningRate = new ConstantLearningRate(c.GetProperty("learning_rate").GetDouble()), Rho = c.GetProperty("rho").GetDouble(), Epsilon = c.GetProperty("epsilon").GetDouble() };
        float[] initial;
        List<float[]> grads;
        List<double[]> expected;
        if (c.TryGetProperty("initial_per_element", out var perElement))
        {
            initial = Doubles(perElement).Select(v => (float)v).ToArray();
            grads = [Doubles(c.GetProperty("grads_per_element")).Select(v => (float)v).ToArray()];
            expected = [Doubles(c.GetProperty("expected_after_one_step"))];
        }
        else
        {
            int n = c.GetProperty("elements").GetInt32();
            initial = Enumerable.Repeat((float)c.GetProperty("initial").GetDouble(), n).ToArray();
            grads = Doubles(c.GetProperty("grads_per_step")).Select(g => Enumerable.Repeat((float)g, n).ToArray()).ToList();
            expected = Doubles(c.GetProperty("expected_after_each_step")).Select(v => Enumerable.Repeat(v, n).ToArray()).ToList();
        }
        var tol = c.GetProperty("tolerance");
        double rtol = tol.GetProperty("rtol").GetDouble();
        double atol = tol.TryGetProperty("atol", out var a) ? a.GetDouble() : 0;

        var reference = new ReferenceAdadelta(options, new Dictionary<string, float[]> { ["p"] = initial });
        var step = AdadeltaRewrite.Apply(GradientInputGraph(initial), options);
        using var trainer = new Trainer(step);
        for (int s = 0; s < grads.Count; s++)
        {
            reference.Step(new Dictionary<string, float[]> { ["p"] = grads[s] });
            trainer.Step(new Dictionary<string, (byte[], long[])> { ["g"] = (Bytes(grads[s]), [initial.Length]) });
            var graph = trainer.ReadState()["p"].ToFloatArray();
            for (int i = 0; i < initial.Length; i++)
            {
                Assert.True(Math.Abs(reference.Parameters["p"][i] - expected[s][i]) <= atol + rtol * Math.Abs(expected[s][i]),
                    $"{name} step {s + 1} element {i}: reference {reference.Parameters["p"][i]}, expected {expected[s][i]}");
                Assert.Equal(reference.Parameters["p"][i], graph[i]);
            }
        }
    }

    [Fact]
    public void DecoupledWeightDecayMatchesKeras3()
    {
        // Keras 3 test_weight_decay: zero gradients, so only var - var*wd*lr moves the variable (the Adadelta delta is 0).
        var c = Case("keras3_decoupled_weight_decay");
        var options = new AdadeltaOptions { LearningRate = new ConstantLearningRate(c.GetProperty("learning_rate").GetDouble()), WeightDecay = c.GetProperty("weight_decay").GetDouble() };
        int decimals = c.GetProperty("tolerance").GetProperty("decimal").GetInt32();
        double expected = c.GetProperty("expected_final").GetDouble();
        float[] initial = [(float)c.GetProperty("initial").GetDouble()];
        var reference = new ReferenceAdadelta(options, new Dictionary<string, float[]> { ["p"] = initial });
        using var trainer = new Trainer(AdadeltaRewrite.Apply(GradientInputGraph(initial), options));
        foreach (var g in Doubles(c.GetProperty("grads_per_step")))
        {
            float[] grad = [(float)g];
            reference.Step(new Dictionary<string, float[]> { ["p"] = grad });
            trainer.Step(new Dictionary<string, (byte[], long[])> { ["g"] = (Bytes(grad), [1]) });
        }
        var graph = trainer.ReadState()["p"].ToFloatArray()[0];
        Assert.Equal(expected, reference.Parameters["p"][0], decimals);
        Assert.Equal(expected, graph, decimals);
        Assert.Equal(reference.Parameters["p"][0], graph);
        Assert.NotEqual(initial[0], graph);
    }

    [Fact]
    public void ClipnormMatchesKeras()
    {
        var c = Case("keras_clipnorm");
        var clipped = ClipInGraphAndReference(new ClipByNorm((float)c.GetProperty("clipnorm").GetDouble()), Doubles(c.GetProperty("gradient")));
        Assert.Equal(Doubles(c.GetProperty("expected_clipped_gradient")), clipped.Select(v => (double)v), (x, y) => Math.Abs(x - y) < 1e-6);
    }

    [Fact]
    public void ClipvalueMatchesKeras()
    {
        var c = Case("keras_clipvalue");
        var clipped = ClipInGraphAndReference(new ClipByValue((float)c.GetProperty("clipvalue").GetDouble()), Doubles(c.GetProperty("gradient")));
        Assert.Equal(Doubles(c.GetProperty("expected_clipped_gradient")), clipped.Select(v => (double)v));
    }

    /// <summary>Applies one clip piece through ORT and through ArrayMath; asserts they agree within 1 ULP; returns ORT's.</summary>
    private static float[] ClipInGraphAndReference(IUpdatePiece piece, double[] gradient)
    {
        var g = gradient.Select(v => (float)v).ToArray();
        var graph = new GraphProto { Name = "clip" };
        graph.Input.Add(TypeProtos.ValueInfo("g", DataType.Float, [g.Length]));
        var math = new GraphMath(new GraphBuilder(graph), "t");
        var result = piece.Apply(math, new ParameterStep<string>("g", new Dictionary<string, string>(), "g"), "g");
        math.Rename(result, "clipped");
        graph.Output.Add(TypeProtos.ValueInfo("clipped", DataType.Float, [g.Length]));
        var model = new ModelProto { IrVersion = 8, Graph = graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        using var session = new Microsoft.ML.OnnxRuntime.InferenceSession(Google.Protobuf.MessageExtensions.ToByteArray(model));
        using var input = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(g, [g.Length]);
        using var outputs = session.Run(new Microsoft.ML.OnnxRuntime.RunOptions(), ["g"], [input], ["clipped"]);
        var fromGraph = outputs[0].GetTensorDataAsSpan<float>().ToArray();
        var fromReference = piece.Apply(ArrayMath.Instance, new ParameterStep<float[]>(g, new Dictionary<string, float[]>(), [0f]), g);
        Assert.All(fromGraph.Zip(fromReference), p => Assert.True(FloatDistance.Ulp(p.First, p.Second) <= 1));
        return fromGraph;
    }

    /// <summary>A training graph whose gradient is fed from outside: input g, parameter p, output p_grad = g.</summary>
    internal static ModelProto GradientInputGraph(float[] initial)
    {
        var graph = new GraphProto { Name = "gradient_input" };
        graph.Initializer.Add(Tensors.Create("p", initial, initial.Length));
        graph.Input.Add(TypeProtos.ValueInfo("g", DataType.Float, [initial.Length]));
        graph.Input.Add(TypeProtos.ValueInfo("p", DataType.Float, [initial.Length]));
        var b = new GraphBuilder(graph);
        b.Add("ReduceSumSquare", ["p"], "loss", GraphBuilder.Attr("keepdims", 0L));
        b.Add("Identity", ["g"], "p_grad");
        graph.Output.Add(TypeProtos.ValueInfo("loss", DataType.Float, []));
        graph.Output.Add(TypeProtos.ValueInfo("p_grad", DataType.Float, [initial.Length]));
        var model = new ModelProto { IrVersion = 8, Graph = graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        return model;
    }

    internal static byte[] Bytes(float[] v) => System.Runtime.InteropServices.MemoryMarshal.AsBytes(v.AsSpan()).ToArray();
}
