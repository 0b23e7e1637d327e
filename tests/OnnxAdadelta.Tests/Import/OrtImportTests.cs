using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Import;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Training;
using static OnnxAdadelta.Tests.Import.OrtArtifacts;

namespace OnnxAdadelta.Tests.Import;

/// <summary>The import of ORT training models, on small artifact-like graphs that need no com.microsoft lowering.</summary>
public class OrtImportTests : IDisposable
{
    private readonly TestData.TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static OrtImportOptions WithParams(params string[] names) =>
        new() { ParameterValues = ParamsModel(LinearValues().Where(v => names.Contains(v.Key)).Select(v => v.Value)) };

    [Fact]
    public void AccumulatorsBecomeGradientOutputsAndParametersInitializers()
    {
        var artifact = LinearRegression();
        var before = artifact.Clone();
        var training = OrtArtifactImport.Import(artifact, WithParams("W", "b"));

        Assert.Equal(before, artifact);
        Assert.DoesNotContain(training.Graph.Node, n => n.Domain.Length > 0);
        Assert.Equal(["X", "target", "W", "b"], training.Graph.Input.Select(i => i.Name));
        Assert.Equal(["loss", "y", "W_grad", "b_grad"], training.Graph.Output.Select(o => o.Name));
        Assert.Equal(LinearValues()["W"].ToFloatArray(), training.Graph.Initializer.Single(t => t.Name == "W").ToFloatArray());
        Assert.Equal(LinearValues()["b"].ToFloatArray(), training.Graph.Initializer.Single(t => t.Name == "b").ToFloatArray());
        Assert.DoesNotContain(training.Graph.Initializer, t => t.Name.Contains("accumulation"));
        var opset = Assert.Single(training.OpsetImport);
        Assert.Equal("", opset.Domain);
        Assert.Equal(Opsets.Minimum, opset.Version);
        Assert.True(training.IrVersion >= 8);

        var found = TrainingGraph.Analyze(training);
        Assert.Equal("loss", found.Loss);
        Assert.Equal(["X", "target"], found.DataInputs);
        Assert.Equal([("W", "W_grad"), ("b", "b_grad")], found.Parameters.Select(p => (p.Name, p.Gradient)));
    }

    [Fact]
    public void GradientsEqualOurAutodiffOfTheForwardGraph()
    {
        var training = OrtArtifactImport.Import(LinearRegression(), WithParams("W", "b"));
        var batch = LinearBatch();
        var got = Run(training, batch, "loss", "W_grad", "b_grad");

        var reference = GradientGraphBuilder.Build(ForwardOf(LinearRegression(), LinearValues(), "loss"),
            new BuildTrainingOptions { Loss = LossKind.Output, Output = "loss", Trainable = ["W", "b"] });
        var want = Run(reference, batch, reference.Graph.Output[0].Name, "W_grad", "b_grad");
        AssertClose(want[reference.Graph.Output[0].Name], got["loss"], 1e-6, "loss");
        AssertClose(want["W_grad"], got["W_grad"], 1e-5, "W_grad");
        AssertClose(want["b_grad"], got["b_grad"], 1e-5, "b_grad");
    }

    [Fact]
    public void TheImportedGraphTrainsWithAdadelta()
    {
        var step = AdadeltaRewrite.Apply(OrtArtifactImport.Import(LinearRegression(), WithParams("W", "b")), new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) });
        using var trainer = new Trainer(step);
        var batch = Raw(LinearBatch(rows: 32));
        float first = trainer.Step(batch), last = first;
        for (int i = 1; i < 300; i++) last = trainer.Step(batch);
        Assert.True(last < 0.5 * first, $"loss {first} -> {last}");
    }

    [Fact]
    public void MissingValuesAreAllListedInOneLine()
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() => OrtArtifactImport.Import(LinearRegression(), new OrtImportOptions { Source = "m.onnx" }));
        Assert.StartsWith("m.onnx: no value for parameters 'W', 'b':", e.Message);
        Assert.DoesNotContain('\n', e.Message);

        e = Assert.Throws<OnnxAdadeltaException>(() => OrtArtifactImport.Import(LinearRegression(), WithParams("W")));
        Assert.StartsWith("training model: no value for parameter 'b':", e.Message);
    }

    [Fact]
    public void CheckpointSuppliesValuesAndParamsOverrideThem()
    {
        var values = LinearValues();
        var path = _dir.File("checkpoint");
        File.WriteAllBytes(path, WriteCheckpoint([CheckpointTensor.Of(values["W"]), CheckpointTensor.Of(values["b"])]));
        var b = Tensors.Create("b", [42f], 1);

        var training = OrtArtifactImport.Import(LinearRegression(), new OrtImportOptions { CheckpointPath = path, ParameterValues = ParamsModel([b]) });

        Assert.Equal(values["W"].ToFloatArray(), training.Graph.Initializer.Single(t => t.Name == "W").ToFloatArray());
        Assert.Equal([42f], training.Graph.Initializer.Single(t => t.Name == "b").ToFloatArray());
    }

    [Fact]
    public void FrozenParametersBecomeConstants()
    {
        var values = LinearValues();
        var path = _dir.File("checkpoint");
        File.WriteAllBytes(path, WriteCheckpoint([CheckpointTensor.Of(values["W"]), CheckpointTensor.Of(values["b"])], [CheckpointTensor.Of(values["s"])]));

        var training = OrtArtifactImport.Import(LinearRegression(frozen: true), new OrtImportOptions { CheckpointPath = path });

        Assert.Equal(["X", "target", "W", "b"], training.Graph.Input.Select(i => i.Name));
        Assert.Equal([1.5f], training.Graph.Initializer.Single(t => t.Name == "s").ToFloatArray());
        Assert.Equal(["W", "b"], TrainingGraph.Analyze(training).Parameters.Select(p => p.Name));
        var reference = GradientGraphBuilder.Build(ForwardOf(LinearRegression(frozen: true), values, "loss"),
            new BuildTrainingOptions { Loss = LossKind.Output, Output = "loss", Trainable = ["W", "b"] });
        var batch = LinearBatch();
        AssertClose(Run(reference, batch, "W_grad")["W_grad"], Run(training, batch, "W_grad")["W_grad"], 1e-5, "W_grad");
    }

    [Fact]
    public void AnAccumulatorsBufferOutputIsDropped()
    {
        var artifact = LinearRegression();
        var acc = artifact.Graph.Node.Single(n => n.Name == "GradientAccumulator_W");
        acc.Output.Add("W_grad.accumulation.buffer_out");
        artifact.Graph.Output.Add(TypeProtos.ValueInfo("W_grad.accumulation.buffer_out", TensorProto.Types.DataType.Float, [Features, 1]));

        var training = OrtArtifactImport.Import(artifact, WithParams("W", "b"));

        Assert.Equal(["loss", "y", "W_grad", "b_grad"], training.Graph.Output.Select(o => o.Name));
    }

    [Fact]
    public void UnsupportedOpsAreListed()
    {
        Assert.Null(LoweringRules.Find(UnloweredOp));
        var e = Assert.Throws<OnnxAdadeltaException>(() => OrtArtifactImport.Import(WithUnloweredOp(), WithParams("W", "b")));
        Assert.StartsWith($"Unsupported ops in the training model: {UnloweredOp} ×1.", e.Message);
        Assert.DoesNotContain(OrtArtifactImport.AccumulatorOp, e.Message);
    }

    [Fact]
    public void AScaleBackwardPassImportsWhereTheRuleExists()
    {
        Assert.NotNull(LoweringRules.Find("Scale"));
        var training = OrtArtifactImport.Import(LinearRegression(useScale: true), WithParams("W", "b"));
        var plain = OrtArtifactImport.Import(LinearRegression(), WithParams("W", "b"));
        var batch = LinearBatch();
        AssertClose(Run(plain, batch, "W_grad")["W_grad"], Run(training, batch, "W_grad")["W_grad"], 1e-6, "W_grad");
    }

    [Fact]
    public void AGraphWithoutAccumulatorsIsNotAnArtifact()
    {
        Assert.False(OrtArtifactImport.IsArtifact(TestData.TrainingGraph()));
        Assert.True(OrtArtifactImport.IsArtifact(LinearRegression()));
        var e = Assert.Throws<OnnxAdadeltaException>(() => OrtArtifactImport.Import(TestData.TrainingGraph(), new OrtImportOptions { Source = "t.onnx" }));
        Assert.StartsWith("t.onnx: not an ONNX Runtime training model: it has no com.microsoft InPlaceAccumulatorV2 nodes", e.Message);
    }

    [Fact]
    public void AValueOfTheWrongShapeIsRefused()
    {
        var w = Tensors.Create("W", [1f, 2f, 3f], 1, 3);
        var options = new OrtImportOptions { ParameterValues = ParamsModel([w, LinearValues()["b"]]) };
        var e = Assert.Throws<OnnxAdadeltaException>(() => OrtArtifactImport.Import(LinearRegression(), options));
        Assert.Equal("training model: input 'W' has shape [3,1], but its value has shape [1,3].", e.Message);
    }

    [Fact]
    public void AnIntegerParameterValueIsRefused()
    {
        var w = Tensors.Create("W", [1L, 2L, 3L], 3, 1);
        var options = new OrtImportOptions { ParameterValues = ParamsModel([w, LinearValues()["b"]]) };
        var e = Assert.Throws<OnnxAdadeltaException>(() => OrtArtifactImport.Import(LinearRegression(), options));
        Assert.Equal("training model: the value of parameter 'W' is INT64; only float32 parameters can be trained.", e.Message);
    }

    /// <summary>
    /// The forward part of an ORT training model: accumulators and the backward pass removed, only
    /// <paramref name="outputs"/> kept, and <paramref name="values"/> as initializers (the parameters stay graph inputs).
    /// </summary>
    internal static ModelProto ForwardOf(ModelProto artifact, IReadOnlyDictionary<string, TensorProto> values, params string[] outputs)
    {
        var m = artifact.Clone();
        var g = m.Graph;
        foreach (var n in g.Node.Where(n => n.OpType == OrtArtifactImport.AccumulatorOp).ToList()) g.Node.Remove(n);
        var kept = g.Output.Where(o => outputs.Contains(o.Name)).ToList();
        g.Output.Clear();
        g.Output.AddRange(kept);
        GraphPasses.RemoveDeadCode(g);
        foreach (var i in g.Input.Where(i => i.Name.EndsWith(".accumulation.buffer", StringComparison.Ordinal) || i.Name == "lazy_reset_grad").ToList()) g.Input.Remove(i);
        foreach (var i in g.Input.Where(i => values.ContainsKey(i.Name)).ToList())
        {
            var v = values[i.Name].Clone();
            v.Name = i.Name;
            g.Initializer.Add(v);
        }
        foreach (var o in m.OpsetImport.Where(o => o.Domain.Length > 0).ToList()) m.OpsetImport.Remove(o);
        Assert.DoesNotContain(g.Node, n => n.Domain.Length > 0);
        return m;
    }
}
