using Google.Protobuf;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Onnx;
using DataLocation = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataLocation;

namespace OnnxAdadelta.Tests.Onnx;

public class ExternalDataLoadTests
{
    /// <summary>Turns <paramref name="t"/> into a reference to external data, dropping its own bytes.</summary>
    private static void MakeExternal(TensorProto t, string location, long? offset = null, long? length = null)
    {
        t.RawData = ByteString.Empty;
        t.DataLocation = DataLocation.External;
        t.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = location });
        if (offset is { } o) t.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = o.ToString() });
        if (length is { } l) t.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = l.ToString() });
    }

    private static byte[] FloatBytes(float[] v) => Tensors.Create("", v, v.Length).ToRawBytes();

    [Fact]
    public void Load_reads_external_data_everywhere_in_the_model()
    {
        using var dir = new TempDir();
        const int n = 6;
        var expected = TestModels.Everywhere(n);
        var model = expected.Clone();
        var graph = model.Graph;

        // weights.bin: 16 bytes of junk, "w" (24 bytes), 8 bytes of junk, the sparse values, the Constant tensor, the then-branch tensor.
        var layout = new List<byte>();
        layout.AddRange(Enumerable.Repeat((byte)0xEE, 16));
        long wOffset = layout.Count;
        layout.AddRange(graph.Initializer[0].RawData);
        layout.AddRange(Enumerable.Repeat((byte)0xDD, 8));
        long sparseOffset = layout.Count;
        layout.AddRange(graph.SparseInitializer[0].Values.RawData);
        long constOffset = layout.Count;
        layout.AddRange(graph.Node[0].Attribute[0].T.RawData);
        long thenOffset = layout.Count;
        layout.AddRange(graph.Node[1].Attribute[0].G.Initializer[0].RawData);
        File.WriteAllBytes(dir.File("weights.bin"), layout.ToArray());
        // sub/indices.bin holds exactly the sparse indices: no offset, no length (the whole file).
        Directory.CreateDirectory(dir.File("sub"));
        File.WriteAllBytes(dir.File("sub/indices.bin"), graph.SparseInitializer[0].Indices.RawData.ToByteArray());
        // fk.bin: the function's Constant tensor after 4 bytes, length left to default (rest of file).
        File.WriteAllBytes(dir.File("fk.bin"), [9, 9, 9, 9, .. model.Functions[0].Node[0].Attribute[0].T.RawData]);

        MakeExternal(graph.Initializer[0], "weights.bin", wOffset, 4 * n);
        MakeExternal(graph.SparseInitializer[0].Values, "weights.bin", sparseOffset, 4 * n);
        MakeExternal(graph.SparseInitializer[0].Indices, "sub/indices.bin");
        MakeExternal(graph.Node[0].Attribute[0].T, "./sub/../weights.bin", constOffset, 4 * n);
        MakeExternal(graph.Node[1].Attribute[0].G.Initializer[0], "weights.bin", thenOffset);
        graph.Node[1].Attribute[0].G.Initializer[0].ExternalData.Add(new StringStringEntryProto { Key = "length", Value = (4 * n).ToString() });
        MakeExternal(model.Functions[0].Node[0].Attribute[0].T, "fk.bin", 4);
        Assert.NotEqual(expected, model);

        File.WriteAllBytes(dir.File("m.onnx"), model.ToByteArray());
        var loaded = ModelIO.Load(dir.File("m.onnx"));

        Assert.Equal(expected, loaded); // values back in raw_data, DEFAULT location, no external_data entries
        Assert.Equal(TestModels.Ramp(n, 4), loaded.Graph.Node[0].Attribute[0].T.ToArray<float>());
    }

    private static (TempDir Dir, string Path) ModelWithExternal(Action<TensorProto> configure, byte[]? sideFile = null)
    {
        var dir = new TempDir();
        var model = TestModels.Add(TestModels.Ramp(4));
        var b = model.Graph.Initializer[0];
        File.WriteAllBytes(dir.File("b.bin"), sideFile ?? FloatBytes(TestModels.Ramp(4)));
        configure(b);
        var path = dir.File("model.onnx");
        File.WriteAllBytes(path, model.ToByteArray());
        return (dir, path);
    }

    private static OnnxAdadeltaException LoadFails(Action<TensorProto> configure, byte[]? sideFile = null)
    {
        var (dir, path) = ModelWithExternal(configure, sideFile);
        using (dir)
        {
            var e = Assert.Throws<OnnxAdadeltaException>(() => ModelIO.Load(path));
            Assert.Contains(path, e.Message);
            Assert.Contains("'B'", e.Message);
            Assert.DoesNotContain('\n', e.Message);
            return e;
        }
    }

    [Fact]
    public void The_hand_built_fixture_loads_when_valid()
    {
        var (dir, path) = ModelWithExternal(b => MakeExternal(b, "b.bin", 0, 16));
        using (dir) Assert.Equal(TestModels.Ramp(4), ModelIO.Load(path).Graph.Initializer[0].ToArray<float>());
    }

    [Fact]
    public void A_missing_side_file_is_named()
    {
        var e = LoadFails(b => MakeExternal(b, "nothere.bin"));
        Assert.Contains("nothere.bin", e.Message);
        Assert.Contains("does not exist", e.Message);
    }

    [Fact]
    public void A_range_past_the_end_is_refused()
    {
        var e = LoadFails(b => MakeExternal(b, "b.bin", 8, 16));
        Assert.Contains("b.bin", e.Message);
        Assert.Contains("past the end", e.Message);
        e = LoadFails(b => MakeExternal(b, "b.bin", 17));
        Assert.Contains("past the end", e.Message);
    }

    [Fact]
    public void A_length_that_does_not_fit_the_shape_is_refused()
    {
        var e = LoadFails(b => MakeExternal(b, "b.bin", 4)); // 12 bytes left, 16 needed
        Assert.Contains("12 bytes", e.Message);
        Assert.Contains("16", e.Message);
    }

    [Theory]
    [InlineData("/etc/passwd")]
    [InlineData("../b.bin")]
    [InlineData("sub/../../b.bin")]
    public void Locations_outside_the_model_folder_are_refused(string location)
    {
        var e = LoadFails(b => MakeExternal(b, location));
        Assert.Contains(location, e.Message);
        Assert.True(e.Message.Contains("relative to the model's folder") || e.Message.Contains("out of the model's folder"), e.Message);
    }

    [Theory]
    [InlineData("offset", "-4")]
    [InlineData("offset", "12abc")]
    [InlineData("length", "")]
    public void Bad_numbers_are_refused(string key, string value)
    {
        var e = LoadFails(b =>
        {
            MakeExternal(b, "b.bin");
            b.ExternalData.Add(new StringStringEntryProto { Key = key, Value = value });
        });
        Assert.Contains(key, e.Message);
    }

    [Fact]
    public void A_missing_location_is_refused()
    {
        var e = LoadFails(b =>
        {
            b.RawData = ByteString.Empty;
            b.DataLocation = DataLocation.External;
        });
        Assert.Contains("location", e.Message);
    }

    [Fact]
    public void Parse_without_a_folder_refuses_external_data_and_with_one_reads_it()
    {
        var (dir, path) = ModelWithExternal(b => MakeExternal(b, "b.bin"));
        using (dir)
        {
            var bytes = File.ReadAllBytes(path);
            var e = Assert.Throws<OnnxAdadeltaException>(() => ModelIO.Parse(bytes));
            Assert.Contains("'B'", e.Message);
            Assert.Equal(TestModels.Ramp(4), ModelIO.Parse(bytes, dir.Path).Graph.Initializer[0].ToArray<float>());
        }
    }
}
