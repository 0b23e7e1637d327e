using System.Runtime.InteropServices;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Samples;
using OnnxAdadelta.Training;
using OnnxAdadelta.Graphs;

namespace OnnxAdadelta.Tests;

/// <summary>Small models and batches shared by the tests.</summary>
internal static class TestData
{
    public const int Features = 6;
    public const int Classes = 3;

    /// <summary>The softmax-regression training graph at a small size.</summary>
    public static ModelProto TrainingGraph(int features = Features, int classes = Classes) => SoftmaxRegression.Build(features, classes, seed: 7);

    /// <summary>The same graph rewritten with <paramref name="options"/> (defaults: lr 1.0 so that parameters move visibly).</summary>
    public static ModelProto StepModel(AdadeltaOptions? options = null, RewriteOptions? rewrite = null) =>
        AdadeltaRewrite.Apply(TrainingGraph(), options ?? new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) }, rewrite);

    /// <summary>
    /// A step model's or checkpoint's initializers by name, with each state input's value (which format 2 keeps under
    /// <c>&lt;input&gt;.initial</c>) under the input's own name.
    /// </summary>
    public static Dictionary<string, TensorProto> ValuesByName(ModelProto model)
    {
        var values = model.Graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        foreach (var (name, value) in StepModelState.Values(model, StepModelInfo.Read(model, "test")))
        {
            values[name] = value.Clone();
            values[name].Name = name;
        }
        return values;
    }

    /// <summary>A random, learnable classification batch: X uniform in [-1, 1]; the label is the class c whose features
    /// f ≡ c (mod classes) have the largest sum.</summary>
    public static Dictionary<string, (byte[] Data, long[] Shape)> Batch(long seed, int rows = 16, int features = Features, int classes = Classes)
    {
        var rng = new SplitMix64((ulong)seed * 7919 + 13);
        var x = new float[rows * features];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        var labels = new long[rows];
        for (int i = 0; i < rows; i++)
        {
            var sums = new float[classes];
            for (int f = 0; f < features; f++) sums[f % classes] += x[i * features + f];
            labels[i] = Array.IndexOf(sums, sums.Max());
        }
        return new()
        {
            ["X"] = (MemoryMarshal.AsBytes(x.AsSpan()).ToArray(), [rows, features]),
            ["labels"] = (MemoryMarshal.AsBytes(labels.AsSpan()).ToArray(), [rows]),
        };
    }

    /// <summary>A fresh temporary folder, deleted when disposed.</summary>
    public sealed class TempDir : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("onnx-adadelta-test-").FullName;
        public string File(string name) => System.IO.Path.Combine(Path, name);
        public void Dispose() { try { Directory.Delete(Path, recursive: true); } catch (IOException) { } }
    }
}
