using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Tests.Frameworks;

/// <summary>
/// onnxruntime-node 1.30 (npm, CPU) trains a step model through tests/node/ort-train.mjs, which knows only the
/// documented contract (the metadata, the state's start values, output-to-input feedback). After 100 steps its
/// parameters and every loss must equal the C# Trainer's bit for bit. One node process, about 2 s.
/// </summary>
public class OrtNodeRunnerTests : IDisposable
{
    private const int Steps = 100, Batches = 5;
    private readonly string _dir = Directory.CreateTempSubdirectory("onnx-adadelta-ortnode-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [NodeFact]
    public void OnnxRuntimeNodeTrainsTheStepModelLikeTheTrainer()
    {
        var step = TestData.StepModel();
        var stepPath = Path.Combine(_dir, "step.onnx");
        ModelIO.Save(step, stepPath);
        var batches = Enumerable.Range(0, Batches).Select(b => TestData.Batch(b)).ToList();
        var arrays = new Dictionary<string, DataArray>(StringComparer.Ordinal);
        var specs = TrainingRun.InputSpecs(step).ToDictionary(s => s.Name);
        foreach (var name in StepModelInfo.Read(step, "test").DataInputs)
        {
            var bytes = batches.SelectMany(b => b[name].Data).ToArray();
            long[] shape = [Batches * batches[0][name].Shape[0], .. batches[0][name].Shape[1..]];
            arrays[name] = specs[name].ElementType == global::OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType.Int64
                ? DataArray.FromInt64(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(bytes).ToArray(), shape)
                : DataArray.FromFloat(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray(), shape);
        }
        var dataPath = Path.Combine(_dir, "data.npz");
        Npz.Write(dataPath, arrays);
        var outPath = Path.Combine(_dir, "out.npz");
        var said = NodeRunner.Run("ort-train.mjs", stepPath, dataPath, Steps.ToString(), batches[0]["X"].Shape[0].ToString(), outPath);
        Assert.Contains($"onnxruntime-node: {Steps} steps", said);

        using var trainer = new Trainer(step, new TrainerOptions { Threads = 1 });
        var losses = Enumerable.Range(0, Steps).Select(k => trainer.Step(batches[k % Batches], stateToHost: true)).ToArray();
        var theirs = Npz.Read(outPath);
        Assert.Equal(losses, theirs["loss"].ToFloatArray());
        Assert.True(losses[^1] < losses[0] * 0.95f, $"training moved the loss only from {losses[0]} to {losses[^1]}");
        var state = trainer.ReadState();
        foreach (var p in new[] { "W", "b" }) Assert.Equal(state[p].ToFloatArray(), theirs[p].ToFloatArray());
    }

    [NodeFact]
    public void AFormat1ModelIsRefusedByTheRunnerBecauseOnnxRuntimeNodeWouldDropTheStateFeeds()
    {
        var oldPath = Path.Combine(AppContext.BaseDirectory, "Golden", "format1", "step-v1.onnx");
        var e = Assert.ThrowsAny<Exception>(() => NodeRunner.Run("ort-train.mjs", oldPath, "unused.npz", "1", "16", Path.Combine(_dir, "o.npz")));
        Assert.Contains("onnxruntime-node does not list state input 'W'", e.Message);
    }
}
