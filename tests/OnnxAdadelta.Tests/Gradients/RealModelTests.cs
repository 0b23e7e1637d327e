using System.Runtime.InteropServices;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Training;
using Xunit.Abstractions;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Gradients;

/// <summary>
/// Every model of ../shared/corpus/real-models (real exports of torch.onnx, the dynamo exporter, tf2onnx and CNTK)
/// builds a training graph, trains 20 Adadelta steps with a finite loss that goes down, and its gradients agree with
/// central finite differences of the loss computed by ONNX Runtime on the model's own forward graph.
/// </summary>
public class RealModelTests(ITestOutputHelper output)
{
    /// <summary>How one model is trained: the build options, and inputs that are not plain random floats.</summary>
    private sealed record Spec(BuildTrainingOptions Options, int Classes = 0, Dictionary<string, (Array Values, long[] Shape)>? Fixed = null);

    private static Dictionary<string, long?[]> Shapes(string name, params long[] dims) => new() { [name] = dims.Select(d => (long?)d).ToArray() };

    private static readonly Dictionary<string, Spec> Specs = new()
    {
        ["bvae_decoder_resize.onnx"] = new(new() { Loss = LossKind.Bce, Output = "28", InputShapes = Shapes("input", 2, 2) }),
        ["cifar100_selu.onnx"] = new(new() { Loss = LossKind.CrossEntropy, Output = "output" }, Classes: 100),
        ["genomic_transformer.onnx"] = new(new() { Loss = LossKind.Bce, Output = "logit", InputShapes = new Dictionary<string, long?[]> { ["ref_input"] = [2, 5, 1024], ["alt_input"] = [2, 5, 1024] } }),
        ["keras_kwt_transformer.onnx"] = new(new() { Loss = LossKind.CrossEntropy, Output = "dense_222", InputShapes = Shapes("input_3", 1, 98, 32) }, Classes: 10),
        ["keras_lstm_vae_enc.onnx"] = new(new() { Loss = LossKind.Mse, Output = "dense", InputShapes = Shapes("input", 2, 30, 7) }),
        ["lenet_dynamo_functions.onnx"] = new(new() { Loss = LossKind.CrossEntropy, Output = "fc3_1" }, Classes: 10),
        ["lenet_torch26.onnx"] = new(new() { Loss = LossKind.CrossEntropy, Output = "22" }, Classes: 10),
        ["old_cntk_mnist_op8.onnx"] = new(new() { Loss = LossKind.CrossEntropy, Output = "Plus214_Output_0" }, Classes: 10),
        ["old_superres_op10.onnx"] = new(new() { Loss = LossKind.Mse, Output = "output", InputShapes = Shapes("input", 1, 1, 224, 224) }),
        ["oww_alexa.onnx"] = new(new() { Loss = LossKind.Bce, Output = "13" }),
        ["oww_hey_jarvis.onnx"] = new(new() { Loss = LossKind.Mse, Output = "53" }),
        ["sedgen_unet.onnx"] = new(new() { Loss = LossKind.Mse, Output = "output", InputShapes = Shapes("input", 1, 1, 224, 224) }),
        ["silero_legacy.onnx"] = new(new() { Loss = LossKind.Mse, Output = "output", InputShapes = Shapes("input", 1, 512) },
            Fixed: new() { ["sr"] = (new long[] { 16000 }, []), ["h"] = (new float[128], [2, 1, 64]), ["c"] = (new float[128], [2, 1, 64]) }),
        ["weather_lstm_dynamo.onnx"] = new(new() { Loss = LossKind.Mse, Output = "temperature", InputShapes = Shapes("input", 1, 168, 14) }),
    };

    public static TheoryData<string> Models => [.. Specs.Keys.Order(StringComparer.Ordinal)];

    [SharedFact]
    public void EveryCorpusModelHasASpec()
    {
        var files = Directory.GetFiles(Path.Combine(RepoPaths.Shared!, "corpus", "real-models"), "*.onnx").Select(Path.GetFileName).Order(StringComparer.Ordinal);
        Assert.Equal(files, Specs.Keys.Order(StringComparer.Ordinal));
    }

    [SharedTheory]
    [MemberData(nameof(Models))]
    public void BuildsTrainsAndMatchesFiniteDifferences(string file)
    {
        var spec = Specs[file];
        var inference = ModelIO.Load(SharedCorpus.RealModel(file));
        var training = GradientGraphBuilder.Build(inference, spec.Options, out var report);
        output.WriteLine(report.Summary());
        foreach (var note in report.Notes) output.WriteLine(note);
        var graph = TrainingGraph.Analyze(training);
        var feeds = Feeds(training, graph.DataInputs, spec);

        // 1. Gradients against central finite differences on the forward graph (the model plus its loss, no backward).
        CheckGradients(training, graph, feeds);

        // 2. 20 Adadelta steps on one batch: finite, and the loss goes down.
        using var trainer = new Trainer(AdadeltaRewrite.Apply(training, new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) }));
        var batch = feeds.ToDictionary(f => f.Key, f => (Bytes(f.Value.Values), f.Value.Shape));
        var losses = Enumerable.Range(0, 20).Select(_ => trainer.Step(batch)).ToList();
        output.WriteLine($"loss {losses[0]} -> {losses[^1]}");
        Assert.All(losses, l => Assert.True(float.IsFinite(l), $"non-finite loss in {string.Join(", ", losses)}"));
        Assert.True(losses[^1] < losses[0], $"the loss did not go down: {string.Join(", ", losses)}");
    }

    private static byte[] Bytes(Array values) => values switch
    {
        float[] f => MemoryMarshal.AsBytes(f.AsSpan()).ToArray(),
        long[] l => MemoryMarshal.AsBytes(l.AsSpan()).ToArray(),
        _ => throw new ArgumentException("feed type"),
    };

    /// <summary>
    /// Random data for every data input (floats in [-1, 1], labels in [0, classes), float targets in [0, 1]). A
    /// dimension still symbolic (a label's batch axis that shape inference could not tie to the input's) takes the
    /// batch size of the spec's first fixed input shape.
    /// </summary>
    private static Dictionary<string, (Array Values, long[] Shape)> Feeds(ModelProto training, IReadOnlyList<string> dataInputs, Spec spec)
    {
        var rng = new SplitMix64(42);
        long batch = spec.Options.InputShapes.Values.FirstOrDefault()?[0] ?? 1;
        var feeds = new Dictionary<string, (Array, long[])>(StringComparer.Ordinal);
        foreach (var name in dataInputs)
        {
            if (spec.Fixed?.TryGetValue(name, out var fixedValue) == true) { feeds[name] = fixedValue; continue; }
            var type = training.Graph.Input.Single(i => i.Name == name).Type;
            var shape = type.Dims()!.Select(d => d is long v ? v : batch).ToArray();
            var n = (int)shape.Aggregate(1L, (a, b) => a * b);
            bool target = name is "labels" or "target";
            feeds[name] = type.ElementType() switch
            {
                DataType.Int64 => (Enumerable.Range(0, n).Select(_ => (long)(rng.NextDouble() * spec.Classes)).ToArray(), shape),
                DataType.Float => (Enumerable.Range(0, n).Select(_ => target ? (float)rng.NextDouble() : (float)(2 * rng.NextDouble() - 1)).ToArray(), shape),
                var t => throw new InvalidOperationException($"no generator for {name} ({t})"),
            };
        }
        return feeds;
    }

    /// <summary>
    /// Directional derivatives along the gradient and along the gradient plus an equally long random direction: the
    /// analytic value g·d against (L(p + h·d) − L(p − h·d)) / 2h, in float32, for the first of several steps h that agrees
    /// (a step too large meets curvature and kinks, one too small meets rounding). Passes within 2% relative, or,
    /// where kinks make every point estimate drift, when the loss difference equals the path integral of the
    /// analytic gradient within 1%.
    /// </summary>
    private void CheckGradients(ModelProto training, TrainingGraph graph, Dictionary<string, (Array Values, long[] Shape)> feeds)
    {
        var parameters = graph.Parameters.ToDictionary(p => p.Name, p => p.Value.ToFloatArray(), StringComparer.Ordinal);
        using var full = Session(training);
        var grads = Run(full, feeds, parameters, [.. graph.Parameters.Select(p => p.Gradient)]);
        var gradient = graph.Parameters.Select((p, k) => (p.Name, Values: grads[k])).ToDictionary(x => x.Name, x => x.Values, StringComparer.Ordinal);

        var forward = training.Clone();
        forward.Graph.Output.Clear();
        forward.Graph.Output.Add(training.Graph.Output[0].Clone());
        GraphPasses.RemoveDeadCode(forward.Graph);
        using var loss = Session(forward);

        var rng = new SplitMix64(7);
        var norm = Math.Sqrt(gradient.Values.Sum(g => g.Sum(v => (double)v * v)));
        Assert.True(norm > 0 && double.IsFinite(norm), $"gradient norm {norm}");
        var random = gradient.ToDictionary(g => g.Key, g => g.Value.Select(_ => rng.NextDouble() * 2 - 1).ToArray());
        var randomNorm = Math.Sqrt(random.Values.Sum(r => r.Sum(v => v * v)));
        foreach (var mix in new[] { 0.0, 1.0 })
        {
            var direction = gradient.ToDictionary(g => g.Key, g => g.Value.Select((v, i) => v / norm + mix * random[g.Key][i] / randomNorm).ToArray());
            var dnorm = Math.Sqrt(direction.Values.Sum(d => d.Sum(v => v * v)));
            foreach (var d in direction.Values) for (int i = 0; i < d.Length; i++) d[i] /= dnorm;
            double analytic = gradient.Sum(g => g.Value.Select((v, i) => v * direction[g.Key][i]).Sum());
            double best = double.MaxValue;
            string tried = "";
            double LossAt(double t) => Run(loss, feeds, Moved(parameters, direction, t), [forward.Graph.Output[0].Name])[0][0];
            foreach (var h in new[] { 1e-3, 3e-3, 1e-2, 3e-4 })
            {
                double numeric = (LossAt(h) - LossAt(-h)) / (2 * h);
                double error = Math.Abs(numeric - analytic) / Math.Max(Math.Abs(analytic), 1e-12);
                tried += $" h={h}: {numeric:G6} ({error:P2});";
                best = Math.Min(best, error);
                if (best < 0.02) break;
            }
            if (best >= 0.02)
            {
                // Kinks within reach of every step (thousands of ReLUs) make the point estimate drift from g(p)·d. The
                // gradient theorem holds across kinks: L(p + h·d) − L(p − h·d) equals the integral of g(p + t·d)·d over
                // [−h, h], here by the trapezoid rule over 100 segments, each g from the training graph. A wrong rule
                // breaks this too.
                const double h = 1e-3;
                const int segments = 100;
                double integral = 0;
                for (int k = 0; k <= segments; k++)
                {
                    double t = -h + 2 * h * k / segments;
                    var g = Run(full, feeds, Moved(parameters, direction, t), [.. graph.Parameters.Select(p => p.Gradient)]);
                    double along = graph.Parameters.Select((p, j) => g[j].Select((v, i) => v * direction[p.Name][i]).Sum()).Sum();
                    integral += (k == 0 || k == segments ? 0.5 : 1) * along * (2 * h / segments);
                }
                double difference = LossAt(h) - LossAt(-h);
                double pathError = Math.Abs(difference - integral) / Math.Max(Math.Abs(difference), 1e-12);
                tried += $" path integral over ±{h}: {integral:G6} against L+ − L− = {difference:G6} ({pathError:P2});";
                best = pathError < 0.01 ? pathError : best;
            }
            output.WriteLine($"direction mix {mix}: analytic {analytic:G6};{tried}");
            Assert.True(best < 0.02, $"gradient check failed along direction mix {mix}: analytic {analytic:G6};{tried}");
        }
    }

    /// <summary>The parameters moved by <paramref name="t"/> along <paramref name="direction"/>, rounded to float32.</summary>
    private static Dictionary<string, float[]> Moved(Dictionary<string, float[]> parameters, Dictionary<string, double[]> direction, double t) =>
        parameters.ToDictionary(p => p.Key, p => p.Value.Select((v, i) => (float)(v + t * direction[p.Key][i])).ToArray());

    private static InferenceSession Session(ModelProto model)
    {
        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        return new InferenceSession(model.ToByteArray(), options);
    }

    private static List<float[]> Run(InferenceSession session, Dictionary<string, (Array Values, long[] Shape)> feeds, Dictionary<string, float[]> parameters, string[] outputs)
    {
        var names = new List<string>();
        var values = new List<OrtValue>();
        try
        {
            foreach (var (name, (array, shape)) in feeds)
            {
                names.Add(name);
                values.Add(array switch
                {
                    float[] f => OrtValue.CreateTensorValueFromMemory(f, shape),
                    long[] l => OrtValue.CreateTensorValueFromMemory(l, shape),
                    _ => throw new ArgumentException("feed type"),
                });
            }
            foreach (var (name, v) in parameters)
            {
                if (!session.InputMetadata.ContainsKey(name) && !session.OverridableInitializerMetadata.ContainsKey(name)) continue;
                var meta = session.InputMetadata.TryGetValue(name, out var m) ? m : session.OverridableInitializerMetadata[name];
                names.Add(name);
                values.Add(OrtValue.CreateTensorValueFromMemory(v, meta.Dimensions.Select(d => (long)d).ToArray()));
            }
            using var results = session.Run(new RunOptions(), names, values, outputs);
            return results.Select(r => r.GetTensorDataAsSpan<float>().ToArray()).ToList();
        }
        finally { foreach (var v in values) v.Dispose(); }
    }
}
