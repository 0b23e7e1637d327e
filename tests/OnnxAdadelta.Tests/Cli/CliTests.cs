using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Training;
using OnnxAdadelta.Runtime;

namespace OnnxAdadelta.Tests.Cli;

public class CliTests : IDisposable
{
    private readonly TestData.TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private string TrainingGraph()
    {
        var path = _dir.File("training.onnx");
        ModelIO.Save(TestData.TrainingGraph(), path);
        return path;
    }

    /// <summary>An npz with learnable rows for the test graph (64 rows unless told).</summary>
    private string Data(int rows = 64, string name = "data.npz", Action<Dictionary<string, DataArray>>? edit = null)
    {
        var batch = TestData.Batch(5, rows);
        var arrays = new Dictionary<string, DataArray>
        {
            ["X"] = new(TensorProto.Types.DataType.Float, batch["X"].Shape, batch["X"].Data),
            ["labels"] = new(TensorProto.Types.DataType.Int64, batch["labels"].Shape, batch["labels"].Data),
        };
        edit?.Invoke(arrays);
        var path = _dir.File(name);
        Npz.Write(path, arrays);
        return path;
    }

    private void AssertOneLineError(CliRunner.Result r, string expected, string? outputFile = null)
    {
        Assert.Equal(1, r.ExitCode);
        var line = Assert.Single(r.ErrLines);
        Assert.Contains(expected, line);
        if (outputFile is not null) Assert.False(File.Exists(outputFile), $"{outputFile} was left behind");
        Assert.Empty(Directory.GetFiles(_dir.Path, "*.tmp", SearchOption.AllDirectories));
    }

    [Fact]
    public void RewriteTrainVerifyExportInspect()
    {
        var step = _dir.File("step.onnx");
        var r = CliRunner.Run("rewrite", TrainingGraph(), "-o", step, "--lr", "1.0", "--rho", "0.9", "--name", "Opt");
        Assert.True(r.ExitCode == 0, r.Err);
        var info = StepModelInfo.Read(ModelIO.Load(step), step);
        Assert.Equal(0.9, info.Optimizer.Rho);
        Assert.Equal("Opt", info.Optimizer.Name);

        var ckpt = _dir.File("ckpt.onnx");
        var log = _dir.File("log.csv");
        r = CliRunner.Run("train", step, "--data", Data(), "--steps", "30", "--batch-size", "16", "--shuffle", "--seed", "3", "--log", log, "-o", ckpt);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("loss", r.Out);
        var rows = File.ReadAllLines(log);
        Assert.Equal(OnnxAdadelta.Training.CsvLog.Header, rows[0]);
        Assert.Equal(31, rows.Length);
        Assert.Equal("1", rows[1].Split(',')[0]);
        Assert.Equal("1", rows[1].Split(',')[3]);
        Assert.Equal(30L, TestData.ValuesByName(ModelIO.Load(ckpt))["Opt/iterations"].ToInt64Array()[0]);

        r = CliRunner.Run("verify", ckpt, "--data", Data(), "--steps", "20", "--batch-size", "16");
        Assert.True(r.ExitCode == 0, r.Out + r.Err);
        Assert.Contains("max ULP 0", r.Out);

        var exported = _dir.File("model.onnx");
        r = CliRunner.Run("export", ckpt, "-o", exported);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Equal(["logits"], ModelIO.Load(exported).Graph.Output.Select(o => o.Name));

        r = CliRunner.Run("inspect", ckpt);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("training-step model", r.Out);
        Assert.Contains("Opt/W/accum_grad", r.Out);
        Assert.Contains("iterations: 30", r.Out);
    }

    [Fact]
    public void TrainingAGraphRewritesItAndLossGoesDown()
    {
        var ckpt = _dir.File("ckpt.onnx");
        var r = CliRunner.Run("train", TrainingGraph(), "--data", Data(), "--steps", "150", "--lr", "1.0", "-o", ckpt);
        Assert.True(r.ExitCode == 0, r.Err);
        var losses = r.Out.Split('\n').Where(l => l.StartsWith("step")).Select(l => float.Parse(l.Split("loss")[1].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.True(losses.Count >= 10);
        Assert.True(losses[^1] < losses[0] * 0.8, string.Join(" ", losses));
    }

    [Fact]
    public void ResumingThroughTheCliMatchesOneRun()
    {
        var step = _dir.File("step.onnx");
        Assert.Equal(0, CliRunner.Run("rewrite", TrainingGraph(), "-o", step, "--lr", "1.0").ExitCode);
        var data = Data(rows: 40);
        string[] common = ["--data", data, "--batch-size", "16", "--shuffle", "--seed", "11"];
        Assert.Equal(0, CliRunner.Run(["train", step, "--steps", "14", .. common, "-o", _dir.File("straight.onnx")]).ExitCode);
        Assert.Equal(0, CliRunner.Run(["train", step, "--steps", "7", .. common, "-o", _dir.File("half.onnx")]).ExitCode);
        Assert.Equal(0, CliRunner.Run(["train", _dir.File("half.onnx"), "--steps", "7", .. common, "-o", _dir.File("resumed.onnx")]).ExitCode);
        var a = ModelIO.Load(_dir.File("straight.onnx")).Graph.Initializer.ToDictionary(t => t.Name, t => t.RawData);
        var b = ModelIO.Load(_dir.File("resumed.onnx")).Graph.Initializer.ToDictionary(t => t.Name, t => t.RawData);
        Assert.Equal(a.Keys, b.Keys);
        foreach (var (k, v) in a) Assert.True(v.Equals(b[k]), $"{k} differs after resume");
    }

    [Fact]
    public void NotAnOnnxModel()
    {
        var bogus = _dir.File("bogus.onnx");
        File.WriteAllText(bogus, "this is not a model");
        var output = _dir.File("out.onnx");
        AssertOneLineError(CliRunner.Run("rewrite", bogus, "-o", output), "bogus.onnx", output);
    }

    [Fact]
    public void ATruncatedModel()
    {
        var bytes = File.ReadAllBytes(TrainingGraph());
        var cut = _dir.File("cut.onnx");
        File.WriteAllBytes(cut, bytes[..(bytes.Length / 2)]);
        var output = _dir.File("out.onnx");
        AssertOneLineError(CliRunner.Run("rewrite", cut, "-o", output), "cut.onnx", output);
    }

    [Fact]
    public void AParameterWithoutAGradient()
    {
        var m = TestData.TrainingGraph();
        m.Graph.Output.Remove(m.Graph.Output.Single(o => o.Name == "W_grad"));
        var path = _dir.File("nograd.onnx");
        ModelIO.Save(m, path);
        var output = _dir.File("out.onnx");
        AssertOneLineError(CliRunner.Run("rewrite", path, "-o", output), "Parameter 'W' has no gradient", output);
    }

    [Fact]
    public void AGradientWithTheWrongShapeOrDtype()
    {
        var m = TestData.TrainingGraph();
        m.Graph.Output.Single(o => o.Name == "b_grad").Type = OnnxAdadelta.Graphs.TypeProtos.Tensor(TensorProto.Types.DataType.Float, [7]);
        var path = _dir.File("badshape.onnx");
        ModelIO.Save(m, path);
        AssertOneLineError(CliRunner.Run("rewrite", path, "-o", _dir.File("o.onnx")), "Gradient 'b_grad' has shape [7], but parameter 'b' has shape [3]", _dir.File("o.onnx"));
        m.Graph.Output.Single(o => o.Name == "b_grad").Type = OnnxAdadelta.Graphs.TypeProtos.Tensor(TensorProto.Types.DataType.Float16, [3]);
        ModelIO.Save(m, path);
        AssertOneLineError(CliRunner.Run("rewrite", path, "-o", _dir.File("o.onnx")), "Gradient 'b_grad' of parameter 'b' is float16", _dir.File("o.onnx"));
    }

    [Fact]
    public void ANonFloatParameter()
    {
        var m = TestData.TrainingGraph();
        m.Graph.Initializer.Add(Tensors.Create("count", [3L], 1));
        new OnnxAdadelta.Graphs.GraphBuilder(m.Graph).Add("Identity", ["count"], "count_grad");
        m.Graph.Output.Add(OnnxAdadelta.Graphs.TypeProtos.ValueInfo("count_grad", TensorProto.Types.DataType.Int64, [1]));
        var path = _dir.File("intparam.onnx");
        ModelIO.Save(m, path);
        AssertOneLineError(CliRunner.Run("rewrite", path, "-o", _dir.File("o.onnx")), "Parameter 'count' is int64; only float32", _dir.File("o.onnx"));
    }

    [Fact]
    public void ANaNLearningRate()
    {
        var output = _dir.File("out.onnx");
        var nan = CliRunner.Run("rewrite", TrainingGraph(), "-o", output, "--lr", "NaN");
        AssertOneLineError(nan, "Invalid learning_rate value: NaN (expected a finite number >= 0).", output);
        Assert.DoesNotContain("(Parameter", nan.Err);
    }

    [Fact]
    public void AnNpzWithoutAGraphInput()
    {
        var data = Data(edit: a => a.Remove("labels"));
        var output = _dir.File("ckpt.onnx");
        AssertOneLineError(CliRunner.Run("train", TrainingGraph(), "--data", data, "--steps", "2", "-o", output), "labels", output);
    }

    [Fact]
    public void AnNpzWithTheWrongDtype()
    {
        var data = Data(edit: a => a["labels"] = DataArray.FromInt32(new int[64], 64));
        var output = _dir.File("ckpt.onnx");
        AssertOneLineError(CliRunner.Run("train", TrainingGraph(), "--data", data, "--steps", "2", "-o", output), "labels", output);
    }

    [Fact]
    public void AnNpzWithTheWrongRank()
    {
        var data = Data(edit: a => a["X"] = DataArray.FromFloat(new float[64 * TestData.Features], 64, TestData.Features, 1));
        var output = _dir.File("ckpt.onnx");
        AssertOneLineError(CliRunner.Run("train", TrainingGraph(), "--data", data, "--steps", "2", "-o", output), "'X'", output);
    }

    [Fact]
    public void ABatchSizeLargerThanTheDataset()
    {
        var output = _dir.File("ckpt.onnx");
        AssertOneLineError(CliRunner.Run("train", TrainingGraph(), "--data", Data(rows: 10), "--steps", "2", "--batch-size", "11", "-o", output), "11", output);
    }

    [Fact]
    public void AdadeltaFlagsOnAStepModelAreRefused()
    {
        var step = _dir.File("step.onnx");
        Assert.Equal(0, CliRunner.Run("rewrite", TrainingGraph(), "-o", step).ExitCode);
        var output = _dir.File("ckpt.onnx");
        AssertOneLineError(CliRunner.Run("train", step, "--data", Data(), "--steps", "2", "--clipnorm", "0.5", "-o", output), "--clipnorm is fixed in it", output);
    }

    [OnnxAdadelta.Tests.Training.WithoutCudaFact]
    public void CudaWithoutTheProvider()
    {
        var output = _dir.File("ckpt.onnx");
        AssertOneLineError(CliRunner.Run("train", TrainingGraph(), "--data", Data(), "--steps", "2", "--device", "cuda", "-o", output), "no CUDA execution provider", output);
    }

    [Fact]
    public void VerifyFailsPastTheUlpLimit()
    {
        // A step model whose recorded optimizer differs from its graph: the reference disagrees, verify exits 1.
        var model = TestData.StepModel();
        var info = StepModelInfo.Read(model, "t");
        (info with { Optimizer = info.Optimizer with { Epsilon = 1e-3f } }).WriteTo(model);
        var path = _dir.File("tampered.onnx");
        ModelIO.Save(model, path);
        var r = CliRunner.Run("verify", path, "--data", Data(), "--steps", "3");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("FAIL", r.Out);
    }

    [Fact]
    public void OptionFlagsAreRecordedAndVerified()
    {
        var step = _dir.File("step.onnx");
        var r = CliRunner.Run("rewrite", TrainingGraph(), "-o", step, "--preset", "pytorch", "--rho", "0.8", "--global-clipnorm", "0.5",
            "--weight-decay", "0.01", "--l2", "0.001", "--exclude-from-weight-decay", "b", "--exclude-from-weight-decay", "norm*",
            "--maximize", "--decay", "0.02", "--loss-scale-factor", "16");
        Assert.True(r.ExitCode == 0, r.Err);
        var o = StepModelInfo.Read(ModelIO.Load(step), step).Optimizer;
        Assert.Equal("constant:value=1", o.LearningRate.ToSpec()); // from the preset
        Assert.Equal(0.8, o.Rho);                        // the explicit flag overrides the preset's 0.9
        Assert.Equal(1e-6, o.Epsilon);                   // from the preset
        Assert.Equal(0.5, o.GlobalClipNorm);
        Assert.Equal(0.01, o.WeightDecay);
        Assert.Equal(0.001, o.L2);
        Assert.Equal(["b", "norm*"], o.ExcludeFromWeightDecay);
        Assert.True(o.Maximize);
        Assert.Equal(0.02, o.Decay);
        Assert.Equal(16, o.LossScaleFactor);

        r = CliRunner.Run("inspect", step);
        Assert.Equal(0, r.ExitCode);
        foreach (var shown in new[] { "global_clipnorm=0.5", "loss_scale_factor=16", "weight_decay=0.01", "l2=0.001", "exclude_from_weight_decay=b;norm*", "maximize=true", "decay=0.02" })
            Assert.Contains(shown, r.Out);

        var ckpt = _dir.File("ckpt.onnx");
        r = CliRunner.Run("train", step, "--data", Data(), "--steps", "5", "--batch-size", "16", "-o", ckpt);
        Assert.True(r.ExitCode == 0, r.Err);
        r = CliRunner.Run("verify", ckpt, "--data", Data(), "--steps", "10", "--batch-size", "16");
        Assert.True(r.ExitCode == 0, r.Out + r.Err); // verify rebuilds every option from the record
    }

    [Fact]
    public void TrainTakesTheOptionFlagsToo()
    {
        var ckpt = _dir.File("ckpt.onnx");
        var r = CliRunner.Run("train", TrainingGraph(), "--data", Data(), "--steps", "3", "--batch-size", "16", "--preset", "keras", "--lr", "0.5",
            "--weight-decay", "0.004", "-o", ckpt);
        Assert.True(r.ExitCode == 0, r.Err);
        var o = StepModelInfo.Read(ModelIO.Load(ckpt), ckpt).Optimizer;
        Assert.Equal("constant:value=0.5", o.LearningRate.ToSpec());
        Assert.Equal(0.95, o.Rho);
        Assert.Equal(1e-7, o.Epsilon);
        Assert.Equal(0.004, o.WeightDecay);
    }

    [Fact]
    public void ConflictingClipFlags()
    {
        var output = _dir.File("step.onnx");
        AssertOneLineError(CliRunner.Run("rewrite", TrainingGraph(), "-o", output, "--clipnorm", "1", "--global-clipnorm", "2"),
            "clipnorm (1) and global_clipnorm (2) cannot both be set", output);
        AssertOneLineError(CliRunner.Run("rewrite", TrainingGraph(), "-o", output, "--weight-decay", "-1"), "Invalid weight_decay value: -1", output);
        AssertOneLineError(CliRunner.Run("rewrite", TrainingGraph(), "-o", output, "--preset", "adam"), "Unknown preset 'adam'", output);
    }
}
