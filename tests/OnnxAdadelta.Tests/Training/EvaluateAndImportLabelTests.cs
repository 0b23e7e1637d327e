using System.Runtime.InteropServices;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Import;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Tests.Cli;
using OnnxAdadelta.Tests.Import;
using OnnxAdadelta.Training;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Training;

/// <summary>
/// Class labels are checked in <c>evaluate</c> too, and in step models built from ONNX Runtime training artifacts,
/// whose cross-entropy losses record their label input, class count and ignore_index at import.
/// </summary>
public class EvaluateAndImportLabelTests : IDisposable
{
    private readonly TestData.TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>An .npz of <see cref="TestData.Batch"/>'s features with <paramref name="labels"/>.</summary>
    private string Data(params long[] labels)
    {
        var batch = TestData.Batch(5, labels.Length);
        var path = _dir.File("data.npz");
        Npz.Write(path, new Dictionary<string, DataArray>
        {
            ["X"] = new(DataType.Float, batch["X"].Shape, batch["X"].Data),
            ["labels"] = DataArray.FromInt64(labels),
        });
        return path;
    }

    [Fact]
    public void EvaluateRefusesALabelOutsideTheClassesNamingTheRow()
    {
        var data = Data(0, 1, 2, 1, 0, -5, 2);
        var e = Assert.Throws<OnnxAdadeltaException>(() => Evaluation.Run(TestData.StepModel(), data, "labels", batchSize: 4));
        Assert.StartsWith($"{data}: target 'labels' row 5 holds label -5, out of bounds; expected a class in [0, 3) (output '", e.Message);
        Assert.EndsWith("' has 3 classes on axis 1).", e.Message);

        data = Data(3, 1);
        e = Assert.Throws<OnnxAdadeltaException>(() => Evaluation.Run(TestData.StepModel(), data, "labels"));
        Assert.Contains("row 0 holds label 3, out of bounds; expected a class in [0, 3)", e.Message);

        var model = _dir.File("step.onnx");
        ModelIO.Save(TestData.StepModel(), model);
        var r = CliRunner.Run("evaluate", model, "--data", data, "--target", "labels");
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith($"onnx-adadelta: error: {data}: target 'labels' row 0 holds label 3, out of bounds", Assert.Single(r.ErrLines));
    }

    [Fact]
    public void EvaluateSkipsTheIgnoreIndexOfTheStepModelsLoss()
    {
        var training = TestData.TrainingGraph();
        training.Graph.Node.Single(n => n.OpType == "SoftmaxCrossEntropyLoss").Attribute.Add(GraphBuilder.Attr("ignore_index", -100L));
        var step = AdadeltaRewrite.Apply(training, new AdadeltaOptions());
        var data = Data(0, -100, 2, 1, -100);

        var result = Evaluation.Run(step, data, "labels");
        Assert.Equal(3, result.Rows);
        Assert.InRange(result.Accuracy!.Value, 0, 1);
        // The same labels with an inference model, which has no ignore_index: -100 is out of bounds.
        var e = Assert.Throws<OnnxAdadeltaException>(() => Evaluation.Run(InferenceExport.Export(step), data, "labels"));
        Assert.Contains("row 1 holds label -100, out of bounds; expected a class in [0, 3)", e.Message);
        e = Assert.Throws<OnnxAdadeltaException>(() => Evaluation.Run(step, Data(0, 7), "labels"));
        Assert.EndsWith("classes on axis 1) or the ignore_index -100.", e.Message);
    }

    /// <summary>
    /// An ORT-style training model of a linear classifier: logits = X·W (X [batch, 3], W [3, 4]), loss and log_prob
    /// from com.microsoft SoftmaxCrossEntropyLossInternal with an ignore_index input, the gradient from
    /// SoftmaxCrossEntropyLossInternalGrad, accumulated by InPlaceAccumulatorV2 as generate_artifacts writes it.
    /// </summary>
    private static ModelProto OrtClassifier(long ignoreIndex)
    {
        var g = new GraphProto { Name = "classifier_training" };
        var x = TypeProtos.ValueInfo("X", DataType.Float, [1, 3]);
        x.Type.TensorType.Shape.Dim[0].ClearValue();
        x.Type.TensorType.Shape.Dim[0].DimParam = "batch";
        g.Input.Add(x);
        var labels = TypeProtos.ValueInfo("labels", DataType.Int64, [1]);
        labels.Type.TensorType.Shape.Dim[0].ClearValue();
        labels.Type.TensorType.Shape.Dim[0].DimParam = "batch";
        g.Input.Add(labels);
        g.Input.Add(TypeProtos.ValueInfo("W", DataType.Float, [3, 4]));
        g.Input.Add(TypeProtos.ValueInfo("W_grad.accumulation.buffer", DataType.Float, [3, 4]));
        g.Input.Add(TypeProtos.ValueInfo("lazy_reset_grad", DataType.Bool, [1]));
        g.Initializer.Add(Tensors.Create("ignore", [ignoreIndex]));
        g.Initializer.Add(Tensors.Create("one", [1f]));
        g.Node.Add(new NodeProto { OpType = "MatMul", Name = "mm", Input = { "X", "W" }, Output = { "logits" } });
        g.Node.Add(new NodeProto { OpType = "SoftmaxCrossEntropyLossInternal", Domain = Lowering.MicrosoftDomain, Name = "sce",
            Input = { "logits", "labels", "", "ignore" }, Output = { "loss", "log_prob" }, Attribute = { GraphBuilder.Attr("reduction", "mean") } });
        g.Node.Add(new NodeProto { OpType = "SoftmaxCrossEntropyLossInternalGrad", Domain = Lowering.MicrosoftDomain, Name = "sce_grad",
            Input = { "one", "log_prob", "labels", "", "ignore" }, Output = { "logits_grad" }, Attribute = { GraphBuilder.Attr("reduction", "mean") } });
        g.Node.Add(new NodeProto { OpType = "Transpose", Name = "xt", Input = { "X" }, Output = { "X_t" }, Attribute = { GraphBuilder.Attr("perm", new long[] { 1, 0 }) } });
        g.Node.Add(new NodeProto { OpType = "MatMul", Name = "W_grad_node", Input = { "X_t", "logits_grad" }, Output = { "W_grad" } });
        g.Node.Add(new NodeProto { OpType = OrtArtifactImport.AccumulatorOp, Domain = Lowering.MicrosoftDomain, Name = "acc_W",
            Input = { "W_grad.accumulation.buffer", "W_grad", "lazy_reset_grad" }, Output = { "W_grad.accumulation.out" } });
        g.Output.Add(TypeProtos.ValueInfo("loss", DataType.Float, []));
        g.Output.Add(TypeProtos.ValueInfo("W_grad.accumulation.out", DataType.Bool, [1]));
        var m = new ModelProto { IrVersion = 7, Graph = g };
        m.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 14 });
        m.OpsetImport.Add(new OperatorSetIdProto { Domain = Lowering.MicrosoftDomain, Version = 1 });
        return m;
    }

    private static Dictionary<string, (byte[] Data, long[] Shape)> Batch(params long[] labels)
    {
        var x = Enumerable.Range(0, labels.Length * 3).Select(i => (i % 7 - 3) / 3f).ToArray();
        return new()
        {
            ["X"] = (MemoryMarshal.AsBytes(x.AsSpan()).ToArray(), [labels.Length, 3]),
            ["labels"] = (MemoryMarshal.AsBytes(labels.AsSpan()).ToArray(), [labels.Length]),
        };
    }

    [Fact]
    public void AnImportedInternalCrossEntropyRecordsItsLabelsAndTheStepModelChecksThem()
    {
        var values = new OrtImportOptions { ParameterValues = OrtArtifacts.ParamsModel([Tensors.Create("W", OrtArtifacts.Uniform(12, 3), 3, 4)]) };
        var training = OrtArtifactImport.Import(OrtClassifier(-100), values);
        Assert.Equal([new LabelCheck("labels", 4, -100)], TrainingGraphInfo.Read(training).Labels!);

        using var trainer = new Trainer(AdadeltaRewrite.Apply(training, new AdadeltaOptions()));
        trainer.Step(Batch(0, 3, -100, 1));
        var e = Assert.Throws<OnnxAdadeltaException>(() => trainer.Step(Batch(0, 4, 2, 1)));
        Assert.Equal("Label input 'labels': target 4 at element 1 of the batch of training step 2 is out of bounds; expected a class in [0, 4) or the ignore_index -100.", e.Message);
        Assert.Equal(1, trainer.Iteration);
    }

    [Fact]
    public void WithoutAnIgnoreIndexInputTheInternalLossIgnoresMinusOneAsOrtDoes()
    {
        var model = OrtClassifier(0);
        var sce = model.Graph.Node.Single(n => n.Name == "sce");
        sce.Input.RemoveAt(3);
        sce.Input.RemoveAt(2);
        var values = new OrtImportOptions { ParameterValues = OrtArtifacts.ParamsModel([Tensors.Create("W", OrtArtifacts.Uniform(12, 3), 3, 4)]) };
        Assert.Equal([new LabelCheck("labels", 4, -1)], TrainingGraphInfo.Read(OrtArtifactImport.Import(model, values)).Labels!);
    }

    [SharedFact]
    public void TheSimpleNetArtifactChecksItsLabelsAgainstItsTenClasses()
    {
        var artifact = ModelIO.Load(Path.Combine(OrtArtifacts.Corpus(), "simplenet-training_model.onnx"));
        var parameters = OrtArtifacts.AccumulatedParameters(artifact).Select((p, k) =>
            Tensors.Create(p.Key, OrtArtifacts.Uniform((int)p.Value.Aggregate(1L, (a, b) => a * b), 50 + k, 0.05), p.Value));
        var training = OrtArtifactImport.Import(artifact, new OrtImportOptions { ParameterValues = OrtArtifacts.ParamsModel(parameters) });
        var check = Assert.Single(TrainingGraphInfo.Read(training).Labels!);
        Assert.Equal("labels", check.Input);
        Assert.Equal(10, check.Classes);

        using var trainer = new Trainer(AdadeltaRewrite.Apply(training, new AdadeltaOptions()));
        var x = OrtArtifacts.Uniform(2 * 784, 9);
        long[] labels = [3, 10];
        var batch = new Dictionary<string, (byte[] Data, long[] Shape)>
        {
            ["input"] = (MemoryMarshal.AsBytes(x.AsSpan()).ToArray(), [2, 784]),
            ["labels"] = (MemoryMarshal.AsBytes(labels.AsSpan()).ToArray(), [2]),
        };
        var e = Assert.Throws<OnnxAdadeltaException>(() => trainer.Step(batch));
        Assert.StartsWith("Label input 'labels': target 10 at element 1 of the batch of training step 1 is out of bounds; expected a class in [0, 10)", e.Message);
        labels[1] = 9;
        batch["labels"] = (MemoryMarshal.AsBytes(labels.AsSpan()).ToArray(), [2]);
        Assert.True(float.IsFinite(trainer.Step(batch)));
    }
}
