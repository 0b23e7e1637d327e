using Google.Protobuf;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Onnx;

namespace OnnxAdadelta.Tests.Onnx;

public class UnknownFieldsTests
{
    /// <summary>A length-delimited field <paramref name="number"/> holding <paramref name="payload"/>, as wire bytes.</summary>
    private static byte[] Field(int number, byte[] payload)
    {
        using var ms = new MemoryStream();
        var output = new CodedOutputStream(ms);
        output.WriteTag(number, WireFormat.WireType.LengthDelimited);
        output.WriteBytes(ByteString.CopyFrom(payload));
        output.Flush();
        return ms.ToArray();
    }

    /// <summary>A varint field <paramref name="number"/>, as wire bytes.</summary>
    private static byte[] Varint(int number, long value)
    {
        using var ms = new MemoryStream();
        var output = new CodedOutputStream(ms);
        output.WriteTag(number, WireFormat.WireType.Varint);
        output.WriteInt64(value);
        output.Flush();
        return ms.ToArray();
    }

    /// <summary>
    /// A model whose node carries field 10 and whose ModelProto carries field 26, neither declared in our onnx.proto,
    /// laid out as protobuf writes unknown fields (after the known ones), so a faithful round trip is byte-identical.
    /// </summary>
    private static byte[] ModelWithUnknownFields()
    {
        var model = TestModels.Add(TestModels.Ramp(8));
        var nodeBytes = model.Graph.Node[0].ToByteArray().Concat(Field(10, [1, 2, 3, 4])).ToArray();
        model.Graph.Node[0] = NodeProto.Parser.ParseFrom(nodeBytes);
        return model.ToByteArray().Concat(Field(26, "future model field"u8.ToArray())).Concat(Varint(27, 42)).ToArray();
    }

    [Fact]
    public void Unknown_fields_survive_load_and_save()
    {
        using var dir = new TempDir();
        var original = ModelWithUnknownFields();
        File.WriteAllBytes(dir.File("in.onnx"), original);

        var model = ModelIO.Load(dir.File("in.onnx"));
        ModelIO.Save(model, dir.File("out.onnx"));

        Assert.Equal(original, File.ReadAllBytes(dir.File("out.onnx")));
        // The unknown fields really are in there: a model without them serializes shorter.
        Assert.True(TestModels.Add(TestModels.Ramp(8)).CalculateSize() < original.Length - 20);
    }

    [Fact]
    public void Unknown_fields_survive_an_external_data_save()
    {
        using var dir = new TempDir();
        var original = ModelWithUnknownFields();
        var model = ModelIO.Parse(original);
        ModelIO.Save(model, dir.File("ext.onnx"), new SaveOptions { ExternalData = true, ExternalDataThreshold = 16 });
        Assert.True(File.Exists(dir.File("ext.onnx.data")));

        var reloaded = ModelIO.Load(dir.File("ext.onnx"));
        Assert.Equal(original, reloaded.ToByteArray());
        var written = File.ReadAllBytes(dir.File("ext.onnx"));
        Assert.Contains("future model field", System.Text.Encoding.ASCII.GetString(written));
    }
}
