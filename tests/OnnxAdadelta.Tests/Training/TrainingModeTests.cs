using System.Runtime.InteropServices;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Tests.Onnx;
using OnnxAdadelta.Training;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Training;

/// <summary>BatchNormalization and Dropout trained in their training form: running statistics, random masks, export, resume.</summary>
public class TrainingModeTests
{
    private const int N = 4, C = 2, H = 5;
    private const float Momentum = 0.8f;

    /// <summary>x [4,2,5,5] → BatchNormalization → Conv (3 filters 3×3) → out [4,3,3,3]; BN in inference form unless <paramref name="trainingMode"/>.</summary>
    private static ModelProto ConvBn(bool trainingMode)
    {
        var rng = new SplitMix64(11);
        float[] Random(int n, double lo, double hi) => Enumerable.Range(0, n).Select(_ => (float)(lo + (hi - lo) * rng.NextDouble())).ToArray();
        var g = new GraphProto { Name = "conv_bn" };
        g.Input.Add(TestModels.FloatValue("x", N, C, H, H));
        g.Output.Add(TestModels.FloatValue("out", N, 3, 3, 3));
        g.Initializer.Add(Tensors.Create("scale", Random(C, 0.5, 1.5), C));
        g.Initializer.Add(Tensors.Create("bias", Random(C, -0.5, 0.5), C));
        g.Initializer.Add(Tensors.Create("running_mean", [0.1f, -0.2f], C));
        g.Initializer.Add(Tensors.Create("running_var", [1.5f, 0.7f], C));
        g.Initializer.Add(Tensors.Create("W", Random(3 * C * 9, -0.3, 0.3), 3, C, 3, 3));
        var bn = new NodeProto { Name = "bn", OpType = "BatchNormalization", Input = { "x", "scale", "bias", "running_mean", "running_var" }, Output = { "normalized" } };
        bn.Attribute.Add(GraphBuilder.Attr("momentum", Momentum));
        if (trainingMode)
        {
            bn.Attribute.Add(GraphBuilder.Attr("training_mode", 1L));
            bn.Output.Add("bn_mean_out");
            bn.Output.Add("bn_var_out");
        }
        g.Node.Add(bn);
        g.Node.Add(new NodeProto { Name = "conv", OpType = "Conv", Input = { "normalized", "W" }, Output = { "out" } });
        return TestModels.Wrap(g);
    }

    private static float[] Uniform(long seed, int n, double lo = -1, double hi = 1)
    {
        var rng = new SplitMix64((ulong)seed * 7919 + 5);
        return Enumerable.Range(0, n).Select(_ => (float)(lo + (hi - lo) * rng.NextDouble())).ToArray();
    }

    private static (byte[] Data, long[] Shape) Bytes(float[] values, params long[] shape) => (MemoryMarshal.AsBytes(values.AsSpan()).ToArray(), shape);

    private static float[] BnInput(long step) => Uniform(step, N * C * H * H, -1 + step % 3, 2 + step % 3);

    private static Dictionary<string, (byte[] Data, long[] Shape)> BnBatch(long step) => new()
    {
        ["x"] = Bytes(BnInput(step), N, C, H, H),
        ["target"] = Bytes(Uniform(step + 100, N * 27), N, 3, 3, 3),
    };

    private static ModelProto BnStepModel(bool trainingMode, BatchNormMode mode)
    {
        var training = GradientGraphBuilder.Build(ConvBn(trainingMode), new BuildTrainingOptions { Loss = LossKind.Mse, Output = "out", BatchNorm = mode });
        Assert.Equal([new BufferBinding("running_mean", "running_mean.next"), new BufferBinding("running_var", "running_var.next")],
            TrainingGraphInfo.Read(training).Buffers!);
        Assert.Equal(["running_mean", "running_var"], ModelSummary.Of(training).Rows.Where(r => r.Role == "buffer").Select(r => r.Name));
        var step = AdadeltaRewrite.Apply(training, new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) });
        Assert.Equal(["running_mean", "running_var"], ModelSummary.Of(step).Rows.Where(r => r.Role == "buffer").Select(r => r.Name));
        return step;
    }

    [Theory]
    [InlineData(false, BatchNormMode.Train)]
    [InlineData(true, BatchNormMode.Inference)]
    public void RunningStatisticsAreTheMomentumAverageOfTheBatchStatistics(bool trainingMode, BatchNormMode mode)
    {
        var step = BnStepModel(trainingMode, mode);
        var info = StepModelInfo.Read(step, "step");
        Assert.Equal(["running_mean", "running_var"], info.State.Where(s => s.Kind == StateKind.Buffer).Select(s => s.Input));
        Assert.DoesNotContain("running_mean", info.Gradients.Keys);
        Assert.Equal(["x", "target"], info.DataInputs);

        double[] mean = [0.1, -0.2], variance = [1.5, 0.7];
        using var trainer = new Trainer(step);
        for (int t = 0; t < 3; t++)
        {
            trainer.Step(BnBatch(t), stateToHost: t == 2);
            var x = BnInput(t);
            for (int c = 0; c < C; c++)
            {
                var values = Enumerable.Range(0, N).SelectMany(n => Enumerable.Range(0, H * H).Select(k => (double)x[(n * C + c) * H * H + k])).ToArray();
                double m = values.Average(), v = values.Select(a => (a - m) * (a - m)).Average();
                mean[c] = mean[c] * Momentum + m * (1 - Momentum);
                variance[c] = variance[c] * Momentum + v * (1 - Momentum);
            }
        }
        var checkpoint = trainer.Checkpoint();
        var inits = TestData.ValuesByName(checkpoint);
        var scale = inits["scale"].ToFloatArray();
        Assert.NotEqual(ConvBn(false).Graph.Initializer.First(i => i.Name == "scale").ToFloatArray(), scale);
        for (int c = 0; c < C; c++)
        {
            Assert.Equal(mean[c], inits["running_mean"].ToFloatArray()[c], 1e-5);
            Assert.Equal(variance[c], inits["running_var"].ToFloatArray()[c], 1e-5);
        }

        // Export: an inference-form BatchNormalization that reads the trained running statistics.
        var exported = InferenceExport.Export(checkpoint);
        var bn = exported.Graph.Node.Single(n => n.OpType == "BatchNormalization");
        Assert.DoesNotContain(bn.Attribute, a => a.Name == "training_mode");
        Assert.Single(bn.Output);
        Assert.Equal(["x", "scale", "bias", "running_mean", "running_var"], bn.Input);
        var exportedInits = exported.Graph.Initializer.ToDictionary(i => i.Name);
        foreach (var name in new[] { "running_mean", "running_var", "scale", "bias", "W" })
            Assert.Equal(inits[name].ToFloatArray(), exportedInits[name].ToFloatArray());
        Assert.Equal(["x"], exported.Graph.Input.Select(i => i.Name));

        // It computes what the original inference model computes with the trained values.
        var reference = ConvBn(false);
        var trained = reference.Graph.Initializer.Select(t => inits[t.Name].Clone()).ToList();
        reference.Graph.Initializer.Clear();
        reference.Graph.Initializer.AddRange(trained);
        Assert.Equal(Run(reference, "out", BnInput(7)), Run(exported, "out", BnInput(7)));
    }

    private static float[] Run(ModelProto model, string output, float[] x)
    {
        using var session = new InferenceSession(model.ToByteArray());
        using var value = OrtValue.CreateTensorValueFromMemory(x, [N, C, H, H]);
        using var results = session.Run(new RunOptions(), ["x"], [value], [output]);
        return results[0].GetTensorDataAsSpan<float>().ToArray();
    }

    [Fact]
    public void ResumingWithRunningStatisticsIsExact()
    {
        var step = BnStepModel(false, BatchNormMode.Train);
        AssertResumeIsExact(step, BnBatch);
    }

    private static void AssertResumeIsExact(ModelProto step, Func<long, Dictionary<string, (byte[] Data, long[] Shape)>> batch)
    {
        const int k = 3;
        using var tmp = new TestData.TempDir();
        using var straight = new Trainer(step);
        var straightLosses = new List<float>();
        for (int i = 0; i < 2 * k; i++) straightLosses.Add(straight.Step(batch(straight.Iteration), stateToHost: i == 2 * k - 1));
        var expected = straight.ReadState();
        var resumedLosses = new List<float>();
        using (var first = new Trainer(step))
        {
            for (int i = 0; i < k; i++) resumedLosses.Add(first.Step(batch(first.Iteration), stateToHost: i == k - 1));
            ModelIO.Save(first.Checkpoint(), tmp.File("ckpt.onnx"));
        }
        using var resumed = new Trainer(ModelIO.Load(tmp.File("ckpt.onnx")));
        for (int i = 0; i < k; i++) resumedLosses.Add(resumed.Step(batch(resumed.Iteration), stateToHost: i == k - 1));
        var actual = resumed.ReadState();
        Assert.Equal(straightLosses, resumedLosses);
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, value) in expected) Assert.Equal(value.RawData, actual[name].RawData);
    }

    [Fact]
    public void RunningStatisticsMustBeOwnInitializers()
    {
        var computed = ConvBn(false);
        computed.Graph.Initializer.Remove(computed.Graph.Initializer.First(i => i.Name == "running_var"));
        computed.Graph.Input.Add(TestModels.FloatValue("running_var", C));
        var e = Assert.Throws<OnnxAdadeltaException>(() => GradientGraphBuilder.Build(computed,
            new BuildTrainingOptions { Loss = LossKind.Mse, Output = "out", BatchNorm = BatchNormMode.Train }));
        Assert.Contains("input_var 'running_var' is not an initializer", e.Message);

        var shared = ConvBn(false);
        var second = shared.Graph.Node[0].Clone();
        second.Name = "bn2";
        second.Input[0] = "normalized";
        second.Output[0] = "normalized2";
        shared.Graph.Node.Insert(1, second);
        shared.Graph.Node[2].Input[0] = "normalized2";
        e = Assert.Throws<OnnxAdadeltaException>(() => GradientGraphBuilder.Build(shared,
            new BuildTrainingOptions { Loss = LossKind.Mse, Output = "out", BatchNorm = BatchNormMode.Train }));
        Assert.Contains("'bn2'", e.Message);
        Assert.Contains("running statistic of another BatchNormalization node", e.Message);
    }

    [Fact]
    public void InferenceModeKeepsBatchNormalizationAsExported()
    {
        var training = GradientGraphBuilder.Build(ConvBn(false), new BuildTrainingOptions { Loss = LossKind.Mse, Output = "out" });
        Assert.DoesNotContain(training.MetadataProps, p => p.Key == TrainingGraphInfo.MetadataKey);
        Assert.DoesNotContain(training.Graph.Node.Single(n => n.OpType == "BatchNormalization").Attribute, a => a.Name == "training_mode");
        var info = StepModelInfo.Read(AdadeltaRewrite.Apply(training, new AdadeltaOptions()), "step");
        Assert.DoesNotContain(info.State, s => s.Kind == StateKind.Buffer);
    }

    // ---- Dropout

    private const int Rows = 8, Features = 500;
    private const double Ratio = 0.3;

    /// <summary>x [8,500] → Mul(w1) → Dropout(ratio 0.3) → MatMul(w2 [500,2]) → out, in <paramref name="type"/>.</summary>
    private static ModelProto DropoutModel(DataType type)
    {
        var g = new GraphProto { Name = "dropout" };
        g.Input.Add(TypeProtos.ValueInfo("x", type, [Rows, Features]));
        g.Output.Add(TypeProtos.ValueInfo("out", type, [Rows, 2]));
        TensorProto T(string name, float[] v, params long[] dims) => type == DataType.Double ? Tensors.Create(name, v.Select(a => (double)a).ToArray(), dims) : Tensors.Create(name, v, dims);
        g.Initializer.Add(T("w1", Uniform(1, Features, 0.5, 1.5), Features));
        g.Initializer.Add(T("w2", Uniform(2, Features * 2, -0.1, 0.1), Features, 2));
        g.Initializer.Add(T("ratio", [(float)Ratio]));
        g.Node.Add(new NodeProto { Name = "scale", OpType = "Mul", Input = { "x", "w1" }, Output = { "scaled" } });
        g.Node.Add(new NodeProto { Name = "drop", OpType = "Dropout", Input = { "scaled", "ratio" }, Output = { "dropped" } });
        g.Node.Add(new NodeProto { Name = "project", OpType = "MatMul", Input = { "dropped", "w2" }, Output = { "out" } });
        return TestModels.Wrap(g);
    }

    private static ModelProto DropoutTraining(DataType type = DataType.Float) =>
        GradientGraphBuilder.Build(DropoutModel(type), new BuildTrainingOptions { Loss = LossKind.Mse, Output = "out", Dropout = DropoutMode.Train });

    private static Dictionary<string, (byte[] Data, long[] Shape)> DropoutBatch(long step) => new()
    {
        ["x"] = Bytes(Uniform(step, Rows * Features), Rows, Features),
        ["target"] = Bytes(Uniform(step + 50, Rows * 2), Rows, 2),
    };

    /// <summary>The dropout output for x = 1 and w1 as built: mask/(1 − ratio) times w1.</summary>
    private static float[] Dropped(InferenceSession session, long step)
    {
        using var x = OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(1f, Rows * Features).ToArray(), [Rows, Features]);
        using var target = OrtValue.CreateTensorValueFromMemory(new float[Rows * 2], [Rows, 2]);
        using var s = OrtValue.CreateTensorValueFromMemory(new[] { step }, []);
        using var results = session.Run(new RunOptions(), ["x", "target", TrainingModes.StepInputName], [x, target, s], ["dropped"]);
        return results[0].GetTensorDataAsSpan<float>().ToArray();
    }

    [Fact]
    public void MasksDropAboutRatioAndChangeEveryStep()
    {
        var training = DropoutTraining();
        Assert.Equal(TrainingModes.StepInputName, TrainingGraphInfo.Read(training).StepInput);
        Assert.DoesNotContain(training.Graph.Node, n => n.OpType == "Dropout");
        training.Graph.Output.Add(new ValueInfoProto { Name = "dropped" });
        using var session = new InferenceSession(training.ToByteArray());
        var w1 = Uniform(1, Features, 0.5, 1.5);
        var masks = new List<bool[]>();
        for (long t = 0; t < 4; t++)
        {
            var y = Dropped(session, t);
            var kept = y.Select(v => v != 0).ToArray();
            double dropped = kept.Count(k => !k) / (double)kept.Length;
            Assert.InRange(dropped, Ratio - 0.03, Ratio + 0.03);
            for (int i = 0; i < y.Length; i++)
                if (kept[i]) Assert.Equal(w1[i % Features] / (1 - Ratio), y[i], 1e-5);
            Assert.Equal(kept, Dropped(session, t).Select(v => v != 0));
            masks.Add(kept);
        }
        for (int a = 0; a < masks.Count; a++)
            for (int b = a + 1; b < masks.Count; b++)
            {
                double differ = masks[a].Zip(masks[b]).Count(p => p.First != p.Second) / (double)masks[a].Length;
                Assert.InRange(differ, 2 * Ratio * (1 - Ratio) - 0.04, 2 * Ratio * (1 - Ratio) + 0.04);
            }
    }

    [Fact]
    public void TheGradientThroughAFixedMaskMatchesFiniteDifferences()
    {
        var training = DropoutTraining(DataType.Double);
        using var session = new InferenceSession(training.ToByteArray());
        var x = Uniform(3, Rows * Features).Select(v => (double)v).ToArray();
        var target = Uniform(4, Rows * 2).Select(v => (double)v).ToArray();
        var w1 = Uniform(1, Features, 0.5, 1.5).Select(v => (double)v).ToArray();
        const long step = 5;
        (double Loss, double[] Grad) Evaluate(double[] w)
        {
            using var xv = OrtValue.CreateTensorValueFromMemory(x, [Rows, Features]);
            using var tv = OrtValue.CreateTensorValueFromMemory(target, [Rows, 2]);
            using var wv = OrtValue.CreateTensorValueFromMemory(w, [Features]);
            using var sv = OrtValue.CreateTensorValueFromMemory(new[] { step }, []);
            using var r = session.Run(new RunOptions(), ["x", "target", "w1", TrainingModes.StepInputName], [xv, tv, wv, sv], ["loss", "w1_grad"]);
            return (r[0].GetTensorDataAsSpan<double>()[0], r[1].GetTensorDataAsSpan<double>().ToArray());
        }
        var analytic = Evaluate(w1).Grad;
        for (int j = 0; j < Features; j += 7)
        {
            const double h = 1e-6;
            var plus = (double[])w1.Clone(); plus[j] += h;
            var minus = (double[])w1.Clone(); minus[j] -= h;
            double numeric = (Evaluate(plus).Loss - Evaluate(minus).Loss) / (2 * h);
            Assert.True(Math.Abs(numeric - analytic[j]) <= 1e-8 + 1e-5 * Math.Abs(numeric), $"w1[{j}]: analytic {analytic[j]}, numeric {numeric}");
        }
    }

    [Fact]
    public void DropoutStepModelsResumeWithTheSameMasksAndExportAnIdentity()
    {
        var step = AdadeltaRewrite.Apply(DropoutTraining(), new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) });
        var info = StepModelInfo.Read(step, "step");
        Assert.Equal(["x", "target"], info.DataInputs);
        Assert.DoesNotContain(step.Graph.Input, i => i.Name == TrainingModes.StepInputName);
        Assert.Equal(new Dictionary<string, string> { ["dropped"] = "scaled" }, info.InferenceValues);
        AssertResumeIsExact(step, DropoutBatch);

        using var trainer = new Trainer(step);
        for (int t = 0; t < 3; t++) trainer.Step(DropoutBatch(t));
        var checkpoint = trainer.Checkpoint();
        var exported = InferenceExport.Export(checkpoint);
        Assert.Equal(["Mul", "MatMul"], exported.Graph.Node.Select(n => n.OpType));
        Assert.Equal(["scaled", "w2"], exported.Graph.Node[1].Input);
        Assert.Equal(["x"], exported.Graph.Input.Select(i => i.Name));
        var w1 = TestData.ValuesByName(checkpoint)["w1"].ToFloatArray();
        var w2 = TestData.ValuesByName(checkpoint)["w2"].ToFloatArray();
        var x = Uniform(9, Rows * Features);
        using var session = new InferenceSession(exported.ToByteArray());
        using var xv = OrtValue.CreateTensorValueFromMemory(x, [Rows, Features]);
        using var r = session.Run(new RunOptions(), ["x"], [xv], ["out"]);
        var output = r[0].GetTensorDataAsSpan<float>().ToArray();
        for (int row = 0; row < Rows; row++)
            for (int o = 0; o < 2; o++)
            {
                double expected = 0;
                for (int f = 0; f < Features; f++) expected += x[row * Features + f] * w1[f] * w2[f * 2 + o];
                Assert.Equal(expected, output[row * 2 + o], 1e-4);
            }
    }

    [Fact]
    public void RandomMasksNeedAConstantRatioBelowOne()
    {
        var model = DropoutModel(DataType.Float);
        model.Graph.Initializer.Remove(model.Graph.Initializer.First(i => i.Name == "ratio"));
        model.Graph.Initializer.Add(Tensors.Create("ratio", [1f]));
        var e = Assert.Throws<OnnxAdadeltaException>(() => GradientGraphBuilder.Build(model, new BuildTrainingOptions { Loss = LossKind.Mse, Output = "out", Dropout = DropoutMode.Train }));
        Assert.Contains("Dropout node 'drop' in training mode: ratio=1 is outside [0, 1)", e.Message);

        var computed = DropoutModel(DataType.Float);
        computed.Graph.Initializer.Remove(computed.Graph.Initializer.First(i => i.Name == "ratio"));
        computed.Graph.Input.Add(TypeProtos.ValueInfo("ratio", DataType.Float, []));
        e = Assert.Throws<OnnxAdadeltaException>(() => GradientGraphBuilder.Build(computed, new BuildTrainingOptions { Loss = LossKind.Mse, Output = "out", Dropout = DropoutMode.Train }));
        Assert.Contains("ratio ('ratio') is not a constant", e.Message);
    }

    [Fact]
    public void ATrueTrainingModeTrainsAndAComputedOneIsRefused()
    {
        var model = DropoutModel(DataType.Float);
        model.Graph.Initializer.Add(Tensors.Create("mode", [true]));
        model.Graph.Node[1].Input.Add("mode");
        var training = GradientGraphBuilder.Build(model, new BuildTrainingOptions { Loss = LossKind.Mse, Output = "out" });
        Assert.DoesNotContain(training.Graph.Node, n => n.OpType == "Dropout");
        Assert.Equal(TrainingModes.StepInputName, TrainingGraphInfo.Read(training).StepInput);

        var computed = DropoutModel(DataType.Float);
        computed.Graph.Input.Add(TypeProtos.ValueInfo("mode", DataType.Bool, []));
        computed.Graph.Node[1].Input.Add("mode");
        foreach (var mode in new[] { DropoutMode.Identity, DropoutMode.Train })
        {
            var e = Assert.Throws<OnnxAdadeltaException>(() => GradientGraphBuilder.Build(computed, new BuildTrainingOptions { Loss = LossKind.Mse, Output = "out", Dropout = mode }));
            Assert.Contains("training_mode ('mode') is not a constant", e.Message);
        }
    }
}
