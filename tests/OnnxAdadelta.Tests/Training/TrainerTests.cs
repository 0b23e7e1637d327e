using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Training;
using OnnxAdadelta.Runtime;

namespace OnnxAdadelta.Tests.Training;

public class TrainerTests
{
    [Fact]
    public void LossGoesDown()
    {
        using var trainer = new Trainer(TestData.StepModel(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) }));
        var batch = TestData.Batch(1, rows: 64);
        var first = trainer.Step(batch);
        float last = first;
        for (int i = 0; i < 200; i++) last = trainer.Step(batch);
        Assert.True(last < first * 0.8f, $"loss {first} -> {last}");
    }

    [Fact]
    public void ResumingFromACheckpointIsExact()
    {
        const int k = 40;
        var step = TestData.StepModel(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), ClipNorm = 0.5 });
        using var tmp = new TestData.TempDir();

        using var straight = new Trainer(step);
        for (int i = 0; i < 2 * k; i++) straight.Step(TestData.Batch(straight.Iteration % 9), stateToHost: i == 2 * k - 1);
        var expected = straight.ReadState();

        using (var first = new Trainer(step))
        {
            for (int i = 0; i < k; i++) first.Step(TestData.Batch(first.Iteration % 9), stateToHost: i == k - 1);
            ModelIO.Save(first.Checkpoint(), tmp.File("ckpt.onnx"));
        }
        using var resumed = new Trainer(ModelIO.Load(tmp.File("ckpt.onnx")));
        Assert.Equal(k, resumed.Iteration);
        for (int i = 0; i < k; i++) resumed.Step(TestData.Batch(resumed.Iteration % 9), stateToHost: i == k - 1);
        var actual = resumed.ReadState();

        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, value) in expected) Assert.Equal(value.RawData, actual[name].RawData);
        Assert.Equal(2L * k, actual["Adadelta/iterations"].ToInt64Array()[0]);
    }

    [Fact]
    public void APartialLastBatchRunsWithADynamicBatchDimension()
    {
        using var trainer = new Trainer(TestData.StepModel());
        var a = trainer.Step(TestData.Batch(1, rows: 16));
        var b = trainer.Step(TestData.Batch(2, rows: 5));
        var c = trainer.Step(TestData.Batch(3, rows: 16));
        Assert.All(new[] { a, b, c }, l => Assert.True(float.IsFinite(l) && l > 0));
    }

    [Fact]
    public void ExportKeepsTheForwardPartWithTrainedParameters()
    {
        using var trainer = new Trainer(TestData.StepModel(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) }));
        for (int i = 0; i < 10; i++) trainer.Step(TestData.Batch(i));
        var checkpoint = trainer.Checkpoint();
        var inference = InferenceExport.Export(checkpoint);

        Assert.Equal(["X"], inference.Graph.Input.Select(i => i.Name));
        Assert.Equal(["logits"], inference.Graph.Output.Select(o => o.Name));
        Assert.Equal(["W", "b"], inference.Graph.Initializer.Select(t => t.Name).Order(StringComparer.Ordinal));
        Assert.DoesNotContain(inference.MetadataProps, p => p.Key == StepModelInfo.MetadataKey);
        Assert.DoesNotContain(inference.Graph.Node, n => n.Name.StartsWith("Adadelta/"));

        // logits = X·W + b with the checkpoint's values.
        var state = trainer.ReadState();
        var w = state["W"].ToFloatArray();
        var bias = state["b"].ToFloatArray();
        var x = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(TestData.Batch(99)["X"].Data).ToArray();
        int rows = x.Length / TestData.Features;
        using var session = new InferenceSession(inference.ToByteArray());
        using var input = OrtValue.CreateTensorValueFromMemory(x, [rows, TestData.Features]);
        using var outputs = session.Run(new RunOptions(), ["X"], [input], ["logits"]);
        var logits = outputs[0].GetTensorDataAsSpan<float>().ToArray();
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < TestData.Classes; c++)
            {
                double expected = bias[c];
                for (int f = 0; f < TestData.Features; f++) expected += (double)x[r * TestData.Features + f] * w[f * TestData.Classes + c];
                Assert.Equal(expected, logits[r * TestData.Classes + c], 4);
            }
    }

    [Fact]
    public void ExportWithChosenOutputs()
    {
        var checkpoint = TestData.StepModel();
        var inference = InferenceExport.Export(checkpoint, ["probs", "loss"]);
        Assert.Equal(["probs", "loss"], inference.Graph.Output.Select(o => o.Name));
        Assert.Equal(["X", "labels"], inference.Graph.Input.Select(i => i.Name));
        var e = Assert.Throws<OnnxAdadeltaException>(() => InferenceExport.Export(checkpoint, ["nope"]));
        Assert.Equal("--output nope: the model has no value 'nope'.", e.Message);
    }

    [WithoutCudaFact]
    public void CudaWithoutTheProviderSaysHowToGetIt()
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() => new Trainer(TestData.StepModel(), new TrainerOptions { Device = Device.Cuda }));
        Assert.Contains("no CUDA execution provider", e.Message);
        Assert.Contains("Microsoft.ML.OnnxRuntime.Gpu.Linux", e.Message);
    }
}

public class LargeModelSessionTests
{
    [Fact]
    public void ModelsOverTheInlineLimitLoadThroughExternalData()
    {
        // The 2 GB path, exercised with a limit of 1 KB: the session must compute the same loss as the inline one.
        // The format-1 layout, so that the state inputs have defaults and a plain run needs only the data.
        var step = StepModelState.WithInputDefaults(TestData.StepModel());
        int SessionDirs() => Directory.GetDirectories(Path.GetTempPath(), "onnx-adadelta-session-*").Length;
        int before = SessionDirs();
        using var options = new Microsoft.ML.OnnxRuntime.SessionOptions();
        using var inline = OrtSessions.Create(step, options, "test", long.MaxValue);
        using var external = OrtSessions.Create(step, options, "test", 1024);
        var batch = TestData.Batch(4);
        float Loss(Microsoft.ML.OnnxRuntime.InferenceSession s)
        {
            using var x = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(batch["X"].Data).ToArray(), batch["X"].Shape);
            using var y = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(batch["labels"].Data).ToArray(), batch["labels"].Shape);
            using var r = s.Run(new Microsoft.ML.OnnxRuntime.RunOptions(), ["X", "labels"], [x, y], ["loss"]);
            return r[0].GetTensorDataAsSpan<float>()[0];
        }
        Assert.Equal(Loss(inline), Loss(external));
        Assert.Equal(before, SessionDirs()); // the temporary folder is gone once the session is loaded
    }
}
