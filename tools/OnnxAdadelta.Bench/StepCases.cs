using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Training;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Bench;

/// <summary>
/// A whole-training-step case: an inference model, trained with cross-entropy on its <c>logits</c> output and the
/// README's Adadelta settings (lr 1.0), on a dataset, at a batch size.
/// </summary>
/// <param name="Name">The name the command line and the table use.</param>
/// <param name="Description">What the model is, for the table.</param>
/// <param name="BatchSize">Rows per step.</param>
/// <param name="Build">The inference model and its training data.</param>
public sealed record StepCase(string Name, string Description, int BatchSize, Func<(ModelProto Model, string DataPath)> Build)
{
    /// <summary>The README's quick-start CNN, the README's MLP, and the 512-4096-4096-10 MLP at batch 16.</summary>
    public static IReadOnlyList<StepCase> All { get; } =
    [
        new("digits-cnn", "digits CNN (README quick start), batch 64", 64,
            () => (ModelIO.Load(Repo.File("models/digits-cnn.onnx")), Repo.File("models/data/digits-train.npz"))),
        new("digits-mlp", "digits MLP 64-128-10, batch 64", 64,
            () => (ModelIO.Load(Repo.File("models/digits-mlp.onnx")), Repo.File("models/data/digits-train.npz"))),
        new("mlp-4096", "MLP 512-4096-4096-10, batch 16", 16, () => (Perceptron([512, 4096, 4096, 10]), RandomData(512, 10, rows: 256))),
    ];

    /// <summary>The case named <paramref name="name"/>.</summary>
    public static StepCase Named(string name) => All.FirstOrDefault(c => c.Name == name)
        ?? throw new ArgumentException($"No step case '{name}'; the cases are {string.Join(", ", All.Select(c => c.Name))}.");

    /// <summary>The step model of this case: its training graph (our autodiff) rewritten with Adadelta at lr 1.0.</summary>
    public static ModelProto StepModel(ModelProto inference) =>
        AdadeltaRewrite.Apply(
            GradientGraphBuilder.Build(inference, new BuildTrainingOptions { Loss = LossKind.CrossEntropy, Output = "logits" }),
            new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) });

    /// <summary>
    /// A perceptron X float[batch, widths[0]] → (Gemm → Relu)… → Gemm → logits float[batch, widths[^1]], He-uniform
    /// weights from a fixed seed and zero biases, with an int64 <c>labels</c> input for the loss.
    /// </summary>
    public static ModelProto Perceptron(int[] widths, ulong seed = 1)
    {
        var model = new ModelProto { IrVersion = 8, ProducerName = "onnx-adadelta-bench", Graph = new GraphProto { Name = "mlp" } };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        var b = new GraphBuilder(model.Graph);
        var rng = new SplitMix64(seed);
        model.Graph.Input.Add(BatchOf("X", widths[0]));
        string x = "X";
        for (int layer = 1; layer < widths.Length; layer++)
        {
            int fanIn = widths[layer - 1], fanOut = widths[layer];
            var bound = Math.Sqrt(6.0 / fanIn);
            var w = new float[(long)fanIn * fanOut];
            for (long i = 0; i < w.LongLength; i++) w[i] = (float)((rng.NextDouble() * 2 - 1) * bound);
            var weight = b.Initializer($"W{layer}", Tensors.Create("", w, fanIn, fanOut));
            var bias = b.Initializer($"b{layer}", Tensors.Create("", new float[fanOut], fanOut));
            bool last = layer == widths.Length - 1;
            x = b.Add("Gemm", [x, weight, bias], last ? "logits" : $"hidden{layer}_pre");
            if (!last) x = b.Add("Relu", [x], $"hidden{layer}");
        }
        model.Graph.Output.Add(BatchOf("logits", widths[^1]));
        return model;
    }

    private static ValueInfoProto BatchOf(string name, long width)
    {
        var shape = new TensorShapeProto();
        shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = "batch" });
        shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = width });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)DataType.Float, Shape = shape } } };
    }

    /// <summary>An .npz in the temporary folder with <paramref name="rows"/> rows of uniform X in [-1, 1) and random labels.</summary>
    private static string RandomData(int features, int classes, int rows)
    {
        var rng = new SplitMix64(5);
        var x = new float[rows * features];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        var labels = new long[rows];
        for (int i = 0; i < rows; i++) labels[i] = (long)(rng.NextDouble() * classes);
        var path = Path.Combine(Path.GetTempPath(), $"onnx-adadelta-bench-{features}x{classes}-{rows}-{Environment.ProcessId}.npz");
        Npz.Write(path, new Dictionary<string, DataArray> { ["X"] = DataArray.FromFloat(x, rows, features), ["labels"] = DataArray.FromInt64(labels, rows) });
        return path;
    }
}

/// <summary>Paths in the repository the bench runs from.</summary>
public static class Repo
{
    private static readonly Lazy<string> Root = new(() =>
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
                if (System.IO.File.Exists(Path.Combine(dir.FullName, "OnnxAdadelta.sln"))) return dir.FullName;
        throw new InvalidOperationException("Run the bench from inside the repository (no OnnxAdadelta.sln above the current folder).");
    });

    /// <summary>The absolute path of <paramref name="relative"/> under the repository root.</summary>
    public static string File(string relative) => Path.Combine(Root.Value, relative);
}
