using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Onnx;

namespace OnnxAdadelta.Tests.Gradients;

/// <summary>Real models with control flow from ../shared/corpus/real-models (skipped, with the reason, where it is absent).</summary>
public class ControlFlowCorpusTests
{
    /// <summary>
    /// oww_hey_jarvis: an MLP whose sigmoid output picks, through an If, either itself or a second MLP read only inside
    /// the then branch. With the first MLP's last bias set far positive (then branch) or negative (else branch), the
    /// gradients of the branch taken match finite differences of the training graph's own loss, and the other
    /// branch's parameters get zeros.
    /// </summary>
    [SharedTheory]
    [InlineData(50f, "verifier_model.7.bias", "model.1.bias")]
    [InlineData(-4f, "model.7.bias", "verifier_model.7.bias")]
    public void WakeWordModelTrainsTheParametersOfTheTakenBranch(float forceBias, string live, string dead)
    {
        var path = SharedCorpus.RealModel("oww_hey_jarvis.onnx");
        var model = ModelIO.Load(path);
        var bias = model.Graph.Initializer.Single(t => t.Name == "model.7.bias");
        var forced = Enumerable.Repeat(forceBias, (int)bias.Dims.Aggregate(1L, (a, b) => a * b)).ToArray();
        model.Graph.Initializer.Remove(bias);
        model.Graph.Initializer.Add(Tensors.Create("model.7.bias", forced, [.. bias.Dims]));
        var training = GradientGraphBuilder.Build(model, new BuildTrainingOptions { Loss = LossKind.Mse, Output = "53" });
        Assert.Equal(20, training.Graph.Output.Count(o => o.Name.EndsWith("_grad", StringComparison.Ordinal)));

        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        using var session = new InferenceSession(training.ToByteArray(), options);
        var rng = new Random(5);
        var feeds = new Dictionary<string, (float[] Values, long[] Shape)>(StringComparer.Ordinal);
        foreach (var (name, meta) in session.InputMetadata)
        {
            if (training.Graph.Initializer.Any(t => t.Name == name)) continue;
            var shape = meta.Dimensions.Select(d => d < 0 ? 1L : d).ToArray();
            feeds[name] = (Enumerable.Range(0, (int)shape.Aggregate(1L, (a, b) => a * b)).Select(_ => (float)rng.NextDouble()).ToArray(), shape);
        }
        (float Loss, float[] Grad) Run(string? parameter, float[]? value, string grad)
        {
            var all = new Dictionary<string, (float[] Values, long[] Shape)>(feeds, StringComparer.Ordinal);
            if (parameter is not null)
                all[parameter] = (value!, [.. training.Graph.Initializer.Single(t => t.Name == parameter).Dims]);
            var values = all.Select(p => OrtValue.CreateTensorValueFromMemory(p.Value.Values, p.Value.Shape)).ToList();
            try
            {
                using var results = session.Run(new RunOptions(), all.Keys.ToArray(), values, ["loss", grad]);
                return (results[0].GetTensorDataAsSpan<float>()[0], results[1].GetTensorDataAsSpan<float>().ToArray());
            }
            finally { foreach (var v in values) v.Dispose(); }
        }

        Assert.All(Run(null, null, dead + "_grad").Grad, g => Assert.Equal(0f, g));
        var (_, analytic) = Run(null, null, live + "_grad");
        Assert.Contains(analytic, g => g != 0);
        var start = training.Graph.Initializer.Single(t => t.Name == live).ToArray<float>();
        for (int j = 0; j < Math.Min(4, start.Length); j++)
        {
            const float h = 1e-2f;
            var plus = (float[])start.Clone();
            plus[j] += h;
            var minus = (float[])start.Clone();
            minus[j] -= h;
            var numeric = (Run(live, plus, live + "_grad").Loss - Run(live, minus, live + "_grad").Loss) / (2 * h);
            Assert.True(Math.Abs(numeric - analytic[j]) <= 1e-3 + 2e-2 * Math.Abs(numeric), $"{live}[{j}]: analytic {analytic[j]}, numeric {numeric}");
        }
    }
}
