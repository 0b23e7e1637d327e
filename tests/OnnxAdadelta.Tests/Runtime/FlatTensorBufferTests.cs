using Microsoft.ML.OnnxRuntime.Tensors;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Runtime;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Tests.Runtime;

public class FlatTensorBufferTests
{
    [Fact]
    public void SlicesAreAlignedContiguousAndShareMemoryWithTheirOrtValues()
    {
        using var buffer = new FlatTensorBuffer(TensorElementType.Float, [("a", [3]), ("b", [2, 5]), ("c", [])]);
        Assert.Equal([0L, 16L, 32L], buffer.Slices.Select(s => s.Offset));
        Assert.Equal([3L, 10L, 1L], buffer.Slices.Select(s => s.Length));
        Assert.Equal(48, buffer.Length);
        Assert.Equal(0, buffer.Pointer % FlatTensorBuffer.AlignmentBytes);
        Assert.All(buffer.AsSpan<float>().ToArray(), v => Assert.Equal(0f, v));

        // Writing the whole buffer shows through each slice's OrtValue, and the reverse.
        var all = buffer.AsSpan<float>();
        for (int i = 0; i < all.Length; i++) all[i] = i;
        Assert.Equal([16f, 17f, 18f, 19f, 20f, 21f, 22f, 23f, 24f, 25f], buffer["b"].Value.GetTensorDataAsSpan<float>().ToArray());
        Assert.Equal([2L, 5L], buffer["b"].Value.GetTensorTypeAndShape().Shape);
        buffer["c"].Value.GetTensorMutableDataAsSpan<float>()[0] = -1f;
        Assert.Equal(-1f, all[32]);
        Assert.Equal(-1f, buffer["c"].AsSpan<float>()[0]);
    }

    [Fact]
    public void BadLayoutsAreRefusedNamingTheTensor()
    {
        var e = Assert.Throws<ArgumentException>(() => new FlatTensorBuffer(TensorElementType.Float, [("w", [2]), ("w", [3])]));
        Assert.Contains("'w'", e.Message);
        Assert.Throws<ArgumentException>(() => new FlatTensorBuffer(TensorElementType.String, [("s", [1])]));
        using var halves = new FlatTensorBuffer(TensorElementType.Float16, [("h", [3])]);
        Assert.Throws<ArgumentException>(() => halves.AsSpan<float>());
        Assert.Throws<KeyNotFoundException>(() => halves["nope"]);
    }

    [Fact]
    public void TheTrainerKeepsStateAndGradientsInFlatBuffers()
    {
        var step = TestData.StepModel(rewrite: new RewriteOptions { KeepGradients = true });
        var info = StepModelInfo.Read(step, "test");
        var gradients = info.Gradients.Values.ToList();
        using var trainer = new Trainer(step, new TrainerOptions { ExtraOutputs = gradients });
        trainer.Step(TestData.Batch(1));

        // One float32 buffer holds every parameter and slot; the int64 one the counter.
        var floats = trainer.StateBuffers[TensorElementType.Float];
        Assert.Equal(info.State.Where(s => s.Kind is StateKind.Parameter or StateKind.Slot).Select(s => s.Input).Order(), floats.Slices.Select(s => s.Name).Order());
        Assert.True(trainer.StateBuffers[TensorElementType.Int64].Contains(info.Iterations.Input));

        // The gradient buffer holds this step's gradients, the same values ReadOutput returns, and they are not all zero.
        var g = trainer.GradientBuffers[TensorElementType.Float];
        Assert.Equal(gradients.Order(), g.Slices.Select(s => s.Name).Order());
        foreach (var name in gradients) Assert.Equal(trainer.ReadOutput(name), g[name].AsSpan<float>().ToArray());
        Assert.Contains(g.AsSpan<float>().ToArray(), v => v != 0);

        // After the next step, the buffer holds the next gradients (bound as the output, not copied once).
        var before = g.AsSpan<float>().ToArray();
        trainer.Step(TestData.Batch(2));
        Assert.NotEqual(before, g.AsSpan<float>().ToArray());
        foreach (var name in gradients) Assert.Equal(trainer.ReadOutput(name), g[name].AsSpan<float>().ToArray());
    }
}
