using Google.Protobuf;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Onnx;
using DataLocation = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataLocation;

namespace OnnxAdadelta.Tests.Onnx;

public class ModelSaveTests
{
    private static Dictionary<string, string> Entries(TensorProto t) => t.ExternalData.ToDictionary(e => e.Key, e => e.Value);

    /// <summary>The saved file as written, external references unresolved.</summary>
    private static ModelProto Raw(string path) => ModelProto.Parser.ParseFrom(File.ReadAllBytes(path));

    [Fact]
    public void A_small_model_is_saved_inline_and_loads_back_equal()
    {
        using var dir = new TempDir();
        var model = TestModels.Everywhere(300);
        ModelIO.Save(model, dir.File("m.onnx"));
        Assert.Equal(["m.onnx"], dir.Files());
        Assert.Equal(model.ToByteArray(), File.ReadAllBytes(dir.File("m.onnx")));
        Assert.Equal(model, ModelIO.Load(dir.File("m.onnx")));
    }

    [Fact]
    public void External_data_save_moves_large_tensors_and_loads_back_equal()
    {
        using var dir = new TempDir();
        var model = TestModels.Everywhere(300); // 1200-byte tensors, one 8-byte tensor, 2400 bytes of int64 indices
        model.Graph.Initializer.Add(Tensors.Create("at_threshold", TestModels.Ramp(256), 256)); // exactly 1024 bytes
        model.Graph.Initializer.Add(Tensors.Create("under_threshold", TestModels.Ramp(255), 255));
        var before = model.Clone();

        ModelIO.Save(model, dir.File("m.onnx"), new SaveOptions { ExternalData = true });

        Assert.Equal(before, model); // the caller's model is untouched
        Assert.Equal(["m.onnx", "m.onnx.data"], dir.Files());
        var raw = Raw(dir.File("m.onnx"));
        var tensors = new Dictionary<string, TensorProto>
        {
            ["w"] = raw.Graph.Initializer[0],
            ["typed_w"] = raw.Graph.Initializer[1],
            ["sparse values"] = raw.Graph.SparseInitializer[0].Values,
            ["sparse indices"] = raw.Graph.SparseInitializer[0].Indices,
            ["constant"] = raw.Graph.Node[0].Attribute[0].T,
            ["then_w"] = raw.Graph.Node[1].Attribute[0].G.Initializer[0],
            ["function"] = raw.Functions[0].Node[0].Attribute[0].T,
            ["at_threshold"] = raw.Graph.Initializer[3],
        };
        var dataLength = new FileInfo(dir.File("m.onnx.data")).Length;
        var ranges = new List<(long Offset, long Length)>();
        foreach (var (what, t) in tensors)
        {
            Assert.True(t.DataLocation == DataLocation.External, what);
            Assert.True(t.RawData.IsEmpty && t.FloatData.Count == 0, what);
            var e = Entries(t);
            Assert.Equal("m.onnx.data", e["location"]);
            long offset = long.Parse(e["offset"]), length = long.Parse(e["length"]);
            Assert.Equal(0, offset % SaveOptions.Alignment);
            Assert.Equal(what == "sparse indices" ? 2400 : what == "at_threshold" ? 1024 : 1200, length);
            Assert.True(offset + length <= dataLength, what);
            ranges.Add((offset, length));
        }
        var sorted = ranges.OrderBy(r => r.Offset).ToList();
        for (int i = 1; i < sorted.Count; i++) Assert.True(sorted[i - 1].Offset + sorted[i - 1].Length <= sorted[i].Offset, "ranges overlap");
        Assert.Equal(DataLocation.Default, raw.Graph.Initializer[2].DataLocation); // "small", 8 bytes
        Assert.Equal(DataLocation.Default, raw.Graph.Initializer[4].DataLocation); // 1020 bytes

        var loaded = ModelIO.Load(dir.File("m.onnx"));
        // typed_w comes back in raw_data; its values are the same.
        Assert.Equal(before.Graph.Initializer[1].ToArray<float>(), loaded.Graph.Initializer[1].ToArray<float>());
        loaded.Graph.Initializer[1] = before.Graph.Initializer[1];
        Assert.Equal(before, loaded);
    }

    [Fact]
    public void Large_tensors_start_on_page_boundaries()
    {
        using var dir = new TempDir();
        var model = TestModels.Add(TestModels.Ramp(300));
        model.Graph.Initializer.Add(Tensors.Create("big", TestModels.Ramp(1 << 18), 1 << 18)); // 1 MiB
        ModelIO.Save(model, dir.File("m.onnx"), new SaveOptions { ExternalData = true });
        var raw = Raw(dir.File("m.onnx"));
        Assert.Equal("0", Entries(raw.Graph.Initializer[0])["offset"]);
        Assert.Equal((long)SaveOptions.PageAlignment, long.Parse(Entries(raw.Graph.Initializer[1])["offset"]));
        Assert.Equal(SaveOptions.PageAlignment + (1L << 20), new FileInfo(dir.File("m.onnx.data")).Length);
        Assert.Equal(model, ModelIO.Load(dir.File("m.onnx")));
    }

    [Fact]
    public void A_model_over_the_inline_limit_gets_external_data_without_asking()
    {
        using var dir = new TempDir();
        var model = TestModels.Add(TestModels.Ramp(1000)); // about 4 KB
        ModelIO.Save(model, dir.File("inline.onnx"), new SaveOptions { MaxInlineBytes = 5000 });
        Assert.Equal(["inline.onnx"], dir.Files());

        ModelIO.Save(model, dir.File("auto.onnx"), new SaveOptions { MaxInlineBytes = 3000 });
        Assert.Contains("auto.onnx.data", dir.Files());
        Assert.True(new FileInfo(dir.File("auto.onnx")).Length < 3000);
        Assert.Equal(DataLocation.External, Raw(dir.File("auto.onnx")).Graph.Initializer[0].DataLocation);
        Assert.Equal(model, ModelIO.Load(dir.File("auto.onnx")));
    }

    [Fact]
    public void A_model_that_stays_over_the_limit_is_refused_and_nothing_is_written()
    {
        using var dir = new TempDir();
        var model = TestModels.Add(TestModels.Ramp(1000));
        var e = Assert.Throws<OnnxAdadeltaException>(() =>
            ModelIO.Save(model, dir.File("m.onnx"), new SaveOptions { MaxInlineBytes = 3000, ExternalDataThreshold = 1 << 20 }));
        Assert.Contains("m.onnx", e.Message);
        Assert.Contains("ExternalDataThreshold", e.Message);
        Assert.Empty(dir.Files());
    }

    [Fact]
    public void Serialized_size_is_exact_for_ordinary_models()
    {
        var model = TestModels.Everywhere(100);
        Assert.Equal(model.CalculateSize(), ModelIO.SerializedSize(model));
    }

    [Fact]
    public void Saving_unread_external_references_is_refused()
    {
        using var dir = new TempDir();
        var model = TestModels.Add([1f]);
        var b = model.Graph.Initializer[0];
        b.RawData = ByteString.Empty;
        b.DataLocation = DataLocation.External;
        b.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = "elsewhere.bin" });
        var e = Assert.Throws<OnnxAdadeltaException>(() => ModelIO.Save(model, dir.File("m.onnx")));
        Assert.Contains("'B'", e.Message);
        Assert.Empty(dir.Files());
    }

    [Fact]
    public void Saving_over_a_folder_fails_and_leaves_nothing_behind()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir.File("m.onnx"));
        var model = TestModels.Add(TestModels.Ramp(1000));
        var e = Assert.Throws<OnnxAdadeltaException>(() => ModelIO.Save(model, dir.File("m.onnx"), new SaveOptions { ExternalData = true }));
        Assert.Contains("m.onnx", e.Message);
        Assert.Empty(dir.Files());
        Assert.Empty(Directory.GetFileSystemEntries(dir.File("m.onnx")));
    }

    [Fact]
    public void Saving_replaces_an_existing_model_and_side_file()
    {
        using var dir = new TempDir();
        ModelIO.Save(TestModels.Add(TestModels.Ramp(1000)), dir.File("m.onnx"), new SaveOptions { ExternalData = true });
        var second = TestModels.Add(TestModels.Ramp(2000, 0.5f));
        ModelIO.Save(second, dir.File("m.onnx"), new SaveOptions { ExternalData = true });
        Assert.Equal(["m.onnx", "m.onnx.data"], dir.Files());
        Assert.Equal(second, ModelIO.Load(dir.File("m.onnx")));
    }

    [Fact]
    public void Bad_options_are_refused()
    {
        using var dir = new TempDir();
        var model = TestModels.Add([1f]);
        Assert.Throws<ArgumentOutOfRangeException>(() => ModelIO.Save(model, dir.File("m.onnx"), new SaveOptions { ExternalDataThreshold = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => ModelIO.Save(model, dir.File("m.onnx"), new SaveOptions { MaxInlineBytes = 1L << 31 }));
    }
}
