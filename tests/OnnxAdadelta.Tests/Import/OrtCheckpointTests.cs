using OnnxAdadelta.Import;
using OnnxAdadelta.Onnx;
using static OnnxAdadelta.Tests.Import.OrtArtifacts;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Import;

public class OrtCheckpointTests
{
    private static byte[] Small() => WriteCheckpoint(
        [CheckpointTensor.Of(Tensors.Create("W", [1f, -2f, 3.5f], 3, 1)), CheckpointTensor.Of(Tensors.Create("b", [0.25f], 1))],
        [CheckpointTensor.Of(Tensors.Create("steps", [7L, 8L], 2))]);

    [SharedFact]
    public void TheLoraCheckpointMatchesTheLoraTrainingModel()
    {
        var dir = Corpus();
        var checkpoint = OrtCheckpoint.Load(Path.Combine(dir, "lora-linear-checkpoint"));
        var parameters = AccumulatedParameters(ModelIO.Load(Path.Combine(dir, "lora-linear-training_model.onnx")));

        Assert.Equal(parameters.Keys.Order(), checkpoint.Trainable.Keys.Order());
        Assert.Empty(checkpoint.Frozen);
        foreach (var (name, dims) in parameters)
        {
            var t = checkpoint.Trainable[name];
            Assert.Equal(name, t.Name);
            Assert.Equal((int)DataType.Float, t.DataType);
            Assert.Equal(dims, t.Dims);
            Assert.All(t.ToFloatArray(), v => Assert.True(float.IsFinite(v)));
        }
        Assert.Contains(checkpoint.Trainable["lora.A"].ToFloatArray(), v => v != 0);
    }

    [Fact]
    public void ABuiltCheckpointRoundTrips()
    {
        var c = OrtCheckpoint.Parse(Small());
        Assert.Equal(1, c.Version);
        Assert.Equal(["W", "b"], c.Trainable.Keys);
        Assert.Equal([1f, -2f, 3.5f], c.Trainable["W"].ToFloatArray());
        Assert.Equal([3L, 1L], c.Trainable["W"].Dims);
        Assert.Equal([0.25f], c.Trainable["b"].ToFloatArray());
        Assert.Equal([7L, 8L], c.Frozen["steps"].ToInt64Array());
        Assert.Equal(["W", "b", "steps"], c.Parameters.Keys);
    }

    [Fact]
    public void AFileWithAnotherIdentifierIsNotACheckpoint()
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() => OrtCheckpoint.Parse(WriteCheckpoint([], identifier: "ORTM"), "x.ckpt"));
        Assert.Equal("x.ckpt: not an ONNX Runtime training checkpoint (file identifier 'ORTM', expected 'ODTC').", e.Message);

        var onnx = Google.Protobuf.MessageExtensions.ToByteArray(TestData.TrainingGraph());
        e = Assert.Throws<OnnxAdadeltaException>(() => OrtCheckpoint.Parse(onnx, "model.onnx"));
        Assert.StartsWith("model.onnx: not an ONNX Runtime training checkpoint (file identifier '", e.Message);
    }

    [Fact]
    public void TruncatedCheckpointsFailWithOneLine()
    {
        var bytes = Small();
        var e = Assert.Throws<OnnxAdadeltaException>(() => OrtCheckpoint.Parse(bytes[..5], "c"));
        Assert.Equal("c: truncated ORT training checkpoint (5 bytes; not even a flatbuffer header).", e.Message);
        e = Assert.Throws<OnnxAdadeltaException>(() => OrtCheckpoint.Parse(bytes[..(bytes.Length / 2)], "c"));
        Assert.StartsWith("c: truncated or corrupt ORT training checkpoint", e.Message);

        // Every cut either loses nothing that is read (trailing padding) or fails with our error, never another exception.
        var whole = OrtCheckpoint.Parse(bytes);
        for (int n = 8; n < bytes.Length; n++)
        {
            OrtCheckpoint? cut = null;
            try { cut = OrtCheckpoint.Parse(bytes[..n]); }
            catch (OnnxAdadeltaException ex) { Assert.DoesNotContain('\n', ex.Message); }
            if (cut is not null) Assert.Equal(whole.Parameters.Values.Select(t => t.ToRawBytes()), cut.Parameters.Values.Select(t => t.ToRawBytes()));
        }
    }

    [Fact]
    public void UnsupportedTensorTypesAreNamed()
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() => OrtCheckpoint.Parse(WriteCheckpoint([new CheckpointTensor("names", [1], (int)DataType.String, [])]), "c"));
        Assert.Equal("c: tensor 'names' has unsupported tensor type STRING; expected a numeric or BOOL type.", e.Message);
        e = Assert.Throws<OnnxAdadeltaException>(() => OrtCheckpoint.Parse(WriteCheckpoint([new CheckpointTensor("odd", [1], 99, [0])]), "c"));
        Assert.Equal("c: tensor 'odd' has unsupported tensor type UNKNOWN(99); expected a numeric or BOOL type.", e.Message);
    }

    [Fact]
    public void DataThatDoesNotFitTheShapeIsRefused()
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() => OrtCheckpoint.Parse(WriteCheckpoint([new CheckpointTensor("w", [2], (int)DataType.Float, [0, 0, 0, 0])]), "c"));
        Assert.StartsWith("c: ", e.Message);
        Assert.Contains("needs 8 bytes", e.Message);
    }

    [Fact]
    public void NominalCheckpointsAndDuplicatesAreRefused()
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() => OrtCheckpoint.Parse(WriteCheckpoint([], nominal: true), "c"));
        Assert.StartsWith("c: the ORT training checkpoint is a nominal state", e.Message);
        var w = CheckpointTensor.Of(Tensors.Create("w", [1f], 1));
        e = Assert.Throws<OnnxAdadeltaException>(() => OrtCheckpoint.Parse(WriteCheckpoint([w], [w]), "c"));
        Assert.Equal("c: the ORT training checkpoint holds parameter 'w' twice.", e.Message);
    }

    [Fact]
    public void AMissingFileIsNamed()
    {
        var path = Path.Combine(Path.GetTempPath(), "onnx-adadelta-no-such-checkpoint");
        var e = Assert.Throws<OnnxAdadeltaException>(() => OrtCheckpoint.Load(path));
        Assert.Equal($"{path}: no such file; expected an ONNX Runtime checkpoint.", e.Message);
    }
}
