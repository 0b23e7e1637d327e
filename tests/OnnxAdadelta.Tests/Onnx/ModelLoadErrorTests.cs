using Google.Protobuf;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Onnx;

namespace OnnxAdadelta.Tests.Onnx;

public class ModelLoadErrorTests
{
    private static void AssertNamed(OnnxAdadeltaException e, string path)
    {
        Assert.Contains(path, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.DoesNotContain('\r', e.Message);
    }

    [Fact]
    public void A_missing_file_is_named()
    {
        using var dir = new TempDir();
        var path = dir.File("absent.onnx");
        AssertNamed(Assert.Throws<OnnxAdadeltaException>(() => ModelIO.Load(path)), path);
    }

    [Theory]
    [InlineData(1, 0)]
    [InlineData(2, 1)]
    [InlineData(3, 7)]
    [InlineData(4, 100)]
    [InlineData(5, 4096)]
    [InlineData(6, 65536)]
    public void Random_bytes_are_not_a_model(int seed, int length)
    {
        using var dir = new TempDir();
        var path = dir.File("random.onnx");
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<OnnxAdadeltaException>(() => ModelIO.Load(path));
        AssertNamed(e, path);
        Assert.Contains("not an ONNX model", e.Message);
    }

    [Fact]
    public void Text_is_not_a_model()
    {
        using var dir = new TempDir();
        var path = dir.File("readme.onnx");
        File.WriteAllText(path, "This is not a model.\nJust text.\n");
        AssertNamed(Assert.Throws<OnnxAdadeltaException>(() => ModelIO.Load(path)), path);
    }

    [Fact]
    public void Every_truncation_of_a_real_model_is_refused()
    {
        var bytes = TestModels.Add(TestModels.Ramp(16)).ToByteArray();
        Assert.NotNull(ModelIO.Parse(bytes).Graph);
        for (int cut = 0; cut < bytes.Length; cut++)
        {
            var prefix = bytes[..cut];
            var e = Assert.Throws<OnnxAdadeltaException>(() => ModelIO.Parse(prefix));
            Assert.Contains("not an ONNX model", e.Message);
        }
    }

    [Fact]
    public void A_truncated_model_file_is_named()
    {
        using var dir = new TempDir();
        var path = dir.File("cut.onnx");
        var bytes = TestModels.Add(TestModels.Ramp(1000)).ToByteArray();
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        var e = Assert.Throws<OnnxAdadeltaException>(() => ModelIO.Load(path));
        AssertNamed(e, path);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void A_model_without_opset_import_is_refused()
    {
        var model = TestModels.Add([1f]);
        model.OpsetImport.Clear();
        Assert.Contains("opset_import", Assert.Throws<OnnxAdadeltaException>(() => ModelIO.Parse(model.ToByteArray())).Message);
        model = TestModels.Add([1f]);
        model.Graph = null;
        Assert.Contains("graph", Assert.Throws<OnnxAdadeltaException>(() => ModelIO.Parse(model.ToByteArray())).Message);
    }

    [Fact]
    public void Another_protobuf_message_is_not_a_model()
    {
        var tensorBytes = Tensors.Create("x", TestModels.Ramp(10), 10).ToByteArray();
        Assert.Throws<OnnxAdadeltaException>(() => ModelIO.Parse(tensorBytes));
        var graphBytes = new GraphProto { Name = "g" }.ToByteArray();
        Assert.Throws<OnnxAdadeltaException>(() => ModelIO.Parse(graphBytes));
    }
}
