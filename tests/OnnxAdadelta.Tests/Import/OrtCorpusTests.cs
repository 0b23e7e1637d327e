using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Import;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Tests.Cli;
using OnnxAdadelta.Training;
using Xunit.Abstractions;
using static OnnxAdadelta.Tests.Import.OrtArtifacts;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;
using OnnxAdadelta.Graphs;

namespace OnnxAdadelta.Tests.Import;

/// <summary>
/// The real generate_artifacts output in ../shared/corpus/ort-artifacts: imported (which lowers their com.microsoft
/// gradient ops), their gradients must equal those our autodiff builds from the forward graph, and Adadelta must train
/// them. Each test returns early, with a message, where the corpus is absent.
/// </summary>
public class OrtCorpusTests(ITestOutputHelper output) : IDisposable
{
    private readonly TestData.TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private const string SimpleNet = "simplenet-training_model.onnx", SimpleNet2Ffn = "simplenet-training_model_2FFN.onnx",
        Lora = "lora-linear-training_model.onnx", LoraCheckpoint = "lora-linear-checkpoint";
    private const string SimpleNetLoss = "onnx::loss::6", MseLoss = "onnx::reducemean_output::6";
    private const int Batch = 16;

    /// <summary>The com.microsoft ops of each corpus training model besides the gradient accumulators, with counts.</summary>
    public static TheoryData<string, string> MicrosoftOps => new()
    {
        { SimpleNet, "ReluGrad ×1, SoftmaxCrossEntropyLossGrad ×1" },
        { SimpleNet2Ffn, "ReluGrad ×1, Scale ×1" },
        { Lora, "Scale ×1" },
    };

    [SharedTheory]
    [MemberData(nameof(MicrosoftOps))]
    public void TheCorpusModelsUseExactlyTheseMicrosoftOps(string file, string ops)
    {
        var dir = Corpus();
        var model = ModelIO.Load(Path.Combine(dir, file));
        Assert.Equal(4, model.Graph.Node.Count(n => n.Domain == Lowering.MicrosoftDomain && n.OpType == OrtArtifactImport.AccumulatorOp));
        Assert.Equal(ops, Inventory(model.Graph.Node.Where(n => n.OpType != OrtArtifactImport.AccumulatorOp), _ => true));
        Assert.DoesNotContain(model.Graph.Node, n => n.Domain is not ("" or "ai.onnx" or Lowering.MicrosoftDomain));
    }

    [SharedTheory]
    [MemberData(nameof(MicrosoftOps))]
    public void AnImportThatFailsListsExactlyTheOpsWithoutALowering(string file, string ops)
    {
        var dir = Corpus();
        var model = ModelIO.Load(Path.Combine(dir, file));
        var values = new OrtImportOptions { ParameterValues = ParamsModel(RandomParameters(model, 3)) };
        var missing = Inventory(model.Graph.Node.Where(n => n.OpType != OrtArtifactImport.AccumulatorOp), op => LoweringRules.Find(op) is null);
        if (missing.Length == 0)
        {
            Assert.DoesNotContain(OrtArtifactImport.Import(model, values).Graph.Node, n => n.Domain.Length > 0);
            return;
        }
        output.WriteLine($"{file}: {ops}; without a lowering: {missing}");
        var e = Assert.Throws<OnnxAdadeltaException>(() => OrtArtifactImport.Import(model, values));
        Assert.StartsWith($"Unsupported ops in the training model: {missing}.", e.Message);
    }

    [SharedFact]
    public void SimpleNetGradientsEqualOurAutodiffOfTheEvalModel()
    {
        var dir = Corpus();
        var artifact = ModelIO.Load(Path.Combine(dir, SimpleNet));
        var values = RandomParameters(artifact, 11).ToDictionary(t => t.Name, StringComparer.Ordinal);
        var eval = WithValues(ModelIO.Load(Path.Combine(dir, "simplenet-eval_model.onnx")), values);
        CompareGradients(artifact, values, eval, SimpleNetLoss, ClassBatch(21));
    }

    [SharedFact]
    public void SimpleNetMseGradientsEqualOurAutodiffOfItsForwardGraph()
    {
        var dir = Corpus();
        var artifact = ModelIO.Load(Path.Combine(dir, SimpleNet2Ffn));
        var values = RandomParameters(artifact, 12).ToDictionary(t => t.Name, StringComparer.Ordinal);
        // No eval model ships with the MSE variant: its forward graph is the training model without the backward pass.
        var forward = OrtImportTests.ForwardOf(artifact, values, MseLoss, "output");
        CompareGradients(artifact, values, forward, MseLoss, RegressionBatch(22, 784, 10));
    }

    [SharedFact]
    public void LoraGradientsEqualOurAutodiffOfTheEvalModelAtTheCheckpoint()
    {
        var dir = Corpus();
        var artifact = ModelIO.Load(Path.Combine(dir, Lora));
        var checkpoint = Path.Combine(dir, LoraCheckpoint);
        var values = OrtCheckpoint.Load(checkpoint).Parameters.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);
        var eval = WithValues(ModelIO.Load(Path.Combine(dir, "lora-linear-eval_model.onnx")), values);
        // LoRA starts with B = 0, so A's gradient is zero there: compare at random values as well.
        CompareGradients(artifact, values, eval, MseLoss, RegressionBatch(23, 10, 2), checkpoint);
        var random = RandomParameters(artifact, 14).ToDictionary(t => t.Name, StringComparer.Ordinal);
        CompareGradients(artifact, random, WithValues(ModelIO.Load(Path.Combine(dir, "lora-linear-eval_model.onnx")), random), MseLoss, RegressionBatch(24, 10, 2));
    }

    [SharedFact]
    public void LoraTrainsWithAdadelta()
    {
        var dir = Corpus();
        var training = OrtArtifactImport.Import(ModelIO.Load(Path.Combine(dir, Lora)), new OrtImportOptions { CheckpointPath = Path.Combine(dir, LoraCheckpoint) });
        AssertTrains(training, RegressionBatch(31, 10, 2, rows: 64), steps: 300);
    }

    [SharedFact]
    public void SimpleNetTrainsWithAdadelta()
    {
        var dir = Corpus();
        var artifact = ModelIO.Load(Path.Combine(dir, SimpleNet));
        var training = OrtArtifactImport.Import(artifact, new OrtImportOptions { ParameterValues = ParamsModel(RandomParameters(artifact, 13)) });
        AssertTrains(training, ClassBatch(32, rows: 32), steps: 200);
    }

    [SharedFact]
    public void TheCliImportsTrainsAndExportsTheLoraArtifacts()
    {
        var dir = Corpus();
        var batch = RegressionBatch(41, 10, 2, rows: 64);
        var data = _dir.File("data.npz");
        Npz.Write(data, Raw(batch).ToDictionary(b => b.Key, b => new DataArray(DataType.Float, b.Value.Shape, b.Value.Data)));

        var imported = _dir.File("training.onnx");
        var r = CliRunner.Run("import-ort", Path.Combine(dir, Lora), "--checkpoint", Path.Combine(dir, LoraCheckpoint), "-o", imported);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("4 parameters", r.Out);
        var step = _dir.File("step.onnx");
        r = CliRunner.Run("rewrite", imported, "--lr", "1.0", "-o", step);
        Assert.True(r.ExitCode == 0, r.Err);

        var trained = _dir.File("trained.onnx");
        r = CliRunner.Run("train", Path.Combine(dir, Lora), "--checkpoint", Path.Combine(dir, LoraCheckpoint), "--data", data, "--steps", "300", "--lr", "1.0", "-o", trained);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Matches(@"loss (\S+) -> (\S+)", r.Out);
        var m = System.Text.RegularExpressions.Regex.Match(r.Out, @"loss (\S+) -> (\S+);");
        Assert.True(float.Parse(m.Groups[2].Value) < 0.5f * float.Parse(m.Groups[1].Value), r.Out);

        var exported = _dir.File("model.onnx");
        r = CliRunner.Run("export", trained, "-o", exported);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("output", ModelIO.Load(exported).Graph.Output.Select(o => o.Name));
    }

    /// <summary>
    /// Imports <paramref name="artifact"/> with <paramref name="values"/> (from the checkpoint when given), runs it, and
    /// compares loss and every gradient with those of our autodiff of <paramref name="forward"/> at the same values.
    /// </summary>
    private void CompareGradients(ModelProto artifact, Dictionary<string, TensorProto> values, ModelProto forward, string loss,
        Dictionary<string, (Array Values, long[] Shape)> batch, string? checkpoint = null)
    {
        var options = checkpoint is null ? new OrtImportOptions { ParameterValues = ParamsModel(values.Values) } : new OrtImportOptions { CheckpointPath = checkpoint };
        var training = OrtArtifactImport.Import(artifact, options);
        Assert.DoesNotContain(training.Graph.Node, n => n.Domain.Length > 0);
        var found = TrainingGraph.Analyze(training);
        Assert.Equal(loss, found.Loss);
        var parameters = AccumulatedParameters(artifact).Keys.ToArray();
        Assert.Equal(parameters, found.Parameters.Select(p => p.Name));

        var grads = parameters.Select(p => p + TrainingGraph.GradientSuffix).ToArray();
        var got = Run(training, batch, [loss, .. grads]);
        var reference = GradientGraphBuilder.Build(forward, new BuildTrainingOptions { Loss = LossKind.Output, Output = loss, Trainable = parameters });
        var referenceLoss = reference.Graph.Output[0].Name;
        var want = Run(reference, batch, [referenceLoss, .. grads]);
        AssertClose(want[referenceLoss], got[loss], 1e-6, "loss");
        foreach (var g in grads) AssertClose(want[g], got[g], 1e-5, g);
        var zero = grads.Where(g => got[g].All(v => v == 0)).ToList();
        Assert.True(zero.Count < grads.Length, "every gradient is zero");
        output.WriteLine($"loss {got[loss][0]}; {grads.Length} gradients agree within 1e-5{(zero.Count > 0 ? $" (zero: {string.Join(", ", zero)})" : "")}");
    }

    private void AssertTrains(ModelProto training, Dictionary<string, (Array Values, long[] Shape)> batch, int steps)
    {
        using var trainer = new Trainer(AdadeltaRewrite.Apply(training, new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) }));
        var raw = Raw(batch);
        float first = trainer.Step(raw), last = first;
        for (int i = 1; i < steps; i++) last = trainer.Step(raw);
        output.WriteLine($"loss {first} -> {last} in {steps} steps");
        Assert.True(last < 0.5 * first, $"loss {first} -> {last}");
    }

    /// <summary>"Op ×count" of the com.microsoft nodes whose op passes <paramref name="include"/>, ordinal order.</summary>
    private static string Inventory(IEnumerable<NodeProto> nodes, Func<string, bool> include) => string.Join(", ",
        nodes.Where(n => n.Domain == Lowering.MicrosoftDomain && include(n.OpType)).GroupBy(n => n.OpType)
            .OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => $"{g.Key} ×{g.Count()}"));

    /// <summary>Seeded values for the parameters of an ORT training model, uniform in ±1/√fan-in.</summary>
    private static List<TensorProto> RandomParameters(ModelProto artifact, int seed) =>
        AccumulatedParameters(artifact).Select((p, k) =>
        {
            int count = (int)p.Value.Aggregate(1L, (a, b) => a * b);
            double scale = 1 / Math.Sqrt(p.Value.Length > 1 ? p.Value[^1] : p.Value[0]);
            return Tensors.Create(p.Key, Uniform(count, seed * 100 + k, scale), p.Value);
        }).ToList();

    /// <summary>The model with <paramref name="values"/> added as initializers of its same-named graph inputs.</summary>
    private static ModelProto WithValues(ModelProto model, Dictionary<string, TensorProto> values)
    {
        foreach (var i in model.Graph.Input.Where(i => values.ContainsKey(i.Name)))
        {
            var v = values[i.Name].Clone();
            v.Name = i.Name;
            model.Graph.Initializer.Add(v);
        }
        return model;
    }

    /// <summary>A SimpleNet batch: 784 features in [-1, 1] and a label per row in 0..9.</summary>
    private static Dictionary<string, (Array Values, long[] Shape)> ClassBatch(int seed, int rows = Batch)
    {
        var x = Uniform(rows * 784, seed);
        var labels = new long[rows];
        for (int i = 0; i < rows; i++) labels[i] = i % 10;
        return new() { ["input"] = (x, [rows, 784]), ["labels"] = (labels, [rows]) };
    }

    /// <summary>A regression batch: inputs in [-1, 1] and targets from a fixed random linear map of them.</summary>
    private static Dictionary<string, (Array Values, long[] Shape)> RegressionBatch(int seed, int features, int outputs, int rows = Batch)
    {
        var x = Uniform(rows * features, seed);
        var map = Uniform(features * outputs, seed + 1, 1 / Math.Sqrt(features));
        var t = new float[rows * outputs];
        for (int i = 0; i < rows; i++)
            for (int o = 0; o < outputs; o++)
                for (int f = 0; f < features; f++) t[i * outputs + o] += x[i * features + f] * map[f * outputs + o];
        return new() { ["input"] = (x, [rows, features]), ["target"] = (t, [rows, outputs]) };
    }
}
