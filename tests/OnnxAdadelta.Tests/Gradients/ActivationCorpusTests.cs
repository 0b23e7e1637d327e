using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Onnx;

namespace OnnxAdadelta.Tests.Gradients;

/// <summary>Real models with the activations of <c>ActivationRules</c>, from ../shared/corpus/real-models (skipped, with a message, where absent).</summary>
public class ActivationCorpusTests
{
    /// <summary>
    /// cifar100_selu (torch 1.13, opset 14): four Conv + Selu layers, MaxPool, Gemm. With a cross-entropy loss every
    /// parameter gets a finite gradient, and the first layer's bias, whose path runs through all four Selus, matches
    /// finite differences of the training graph's own loss.
    /// </summary>
    [SharedFact]
    public void SeluCnnTrainsEveryParameter()
    {
        var path = SharedCorpus.RealModel("cifar100_selu.onnx");
        var training = GradientGraphBuilder.Build(ModelIO.Load(path), new BuildTrainingOptions { Loss = LossKind.CrossEntropy, Output = "output" });
        var grads = training.Graph.Output.Select(o => o.Name).Where(n => n.EndsWith("_grad", StringComparison.Ordinal)).ToArray();
        Assert.Equal(10, grads.Length);

        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        using var session = new InferenceSession(training.ToByteArray(), options);
        var rng = new Random(3);
        var image = Enumerable.Range(0, 3 * 32 * 32).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var bias = training.Graph.Initializer.Single(t => t.Name == "conv1.bias").ToArray<float>();
        (float Loss, float[][] Grads) Run(float[] conv1Bias)
        {
            using var x = OrtValue.CreateTensorValueFromMemory(image, [1, 3, 32, 32]);
            using var labels = OrtValue.CreateTensorValueFromMemory(new long[] { 42 }, [1]);
            using var b = OrtValue.CreateTensorValueFromMemory(conv1Bias, [conv1Bias.Length]);
            using var results = session.Run(new RunOptions(), ["input", "labels", "conv1.bias"], [x, labels, b], ["loss", .. grads]);
            return (results[0].GetTensorDataAsSpan<float>()[0], [.. results.Skip(1).Select(r => r.GetTensorDataAsSpan<float>().ToArray())]);
        }

        var (_, analytic) = Run(bias);
        foreach (var (name, g) in grads.Zip(analytic))
        {
            Assert.All(g, v => Assert.True(float.IsFinite(v), $"{name} is not finite"));
            Assert.Contains(g, v => v != 0);
        }
        var conv1Bias = analytic[Array.IndexOf(grads, "conv1.bias_grad")];
        for (int j = 0; j < bias.Length; j++)
        {
            // Small: the loss is far from smooth here (forward and backward differences disagree by 15% at h = 1e-2, as
            // values cross Selu's kink at 0 and max-pool picks change); central differences converge to the analytic
            // gradient as h shrinks, down to float32 noise (~1e-3 at h = 1e-4).
            const float h = 1e-4f;
            var plus = (float[])bias.Clone();
            plus[j] += h;
            var minus = (float[])bias.Clone();
            minus[j] -= h;
            var numeric = (Run(plus).Loss - Run(minus).Loss) / (2 * h);
            Assert.True(Math.Abs(numeric - conv1Bias[j]) <= 1e-2 + 1e-2 * Math.Abs(numeric), $"conv1.bias[{j}]: analytic {conv1Bias[j]}, numeric {numeric}");
        }
    }
}
