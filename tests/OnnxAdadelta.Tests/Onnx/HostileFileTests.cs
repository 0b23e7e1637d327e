using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using Google.Protobuf;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Training;
using DataLocation = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataLocation;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Onnx;

/// <summary>Files that are not what they seem: links out of the model's folder, pipes, devices, damaged archives.</summary>
public class HostileFileTests
{
    /// <summary>Makes a named pipe (FIFO) at <paramref name="path"/> with the system's mkfifo.</summary>
    internal static void MakeFifo(string path)
    {
        using var p = Process.Start(new ProcessStartInfo("mkfifo", [path]) { UseShellExecute = false })!;
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
        Assert.Equal(FileKind.Fifo, SafeFile.KindOf(path));
    }

    /// <summary>Runs <paramref name="action"/> and requires it to throw an <see cref="OnnxAdadeltaException"/> within 20 s (no hang).</summary>
    internal static OnnxAdadeltaException ThrowsPromptly(Action action)
    {
        var task = Task.Run(action);
        bool done;
        try { done = task.Wait(TimeSpan.FromSeconds(20)); }
        catch (AggregateException) { done = true; }
        Assert.True(done, "the call blocked");
        var e = Assert.IsType<OnnxAdadeltaException>(Assert.Single(task.Exception!.InnerExceptions));
        Assert.DoesNotContain('\n', e.Message);
        return e;
    }

    /// <summary>A model of one Add whose bias "b" (4 floats) lives in the external file <paramref name="location"/>.</summary>
    private static ModelProto ExternalBias(string location)
    {
        var model = TestModels.Add([1, 2, 3, 4]);
        var bias = model.Graph.Initializer[0];
        bias.RawData = ByteString.Empty;
        bias.FloatData.Clear();
        bias.DataLocation = DataLocation.External;
        bias.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = location });
        return model;
    }

    private static readonly byte[] BiasBytes = [.. new float[] { 1, 2, 3, 4 }.SelectMany(BitConverter.GetBytes)];

    [Fact]
    public void External_data_through_a_link_out_of_the_folder_is_refused_unless_allowed()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir.File("secret"));
        File.WriteAllBytes(dir.File("secret/passwd"), BiasBytes);
        Directory.CreateDirectory(dir.File("model"));
        Directory.CreateSymbolicLink(dir.File("model/etc_link"), dir.File("secret"));
        File.WriteAllBytes(dir.File("model/m.onnx"), ExternalBias("etc_link/passwd").ToByteArray());

        var e = Assert.Throws<OnnxAdadeltaException>(() => ModelIO.Load(dir.File("model/m.onnx")));
        Assert.Contains("m.onnx", e.Message);
        Assert.Contains("etc_link/passwd", e.Message);
        Assert.Contains("out of the model's folder", e.Message);
        Assert.Contains("--allow-external-links", e.Message);

        var loaded = ModelIO.Load(dir.File("model/m.onnx"), new LoadOptions { AllowExternalDataLinks = true });
        Assert.Equal(BiasBytes, loaded.Graph.Initializer[0].RawData.ToByteArray());
    }

    [Fact]
    public void A_link_to_the_data_file_itself_is_refused_and_a_link_inside_the_folder_is_fine()
    {
        using var dir = new TempDir();
        File.WriteAllBytes(dir.File("outside.bin"), BiasBytes);
        Directory.CreateDirectory(dir.File("model"));
        File.CreateSymbolicLink(dir.File("model/w.bin"), dir.File("outside.bin"));
        File.WriteAllBytes(dir.File("model/m.onnx"), ExternalBias("w.bin").ToByteArray());
        Assert.Contains("out of the model's folder", Assert.Throws<OnnxAdadeltaException>(() => ModelIO.Load(dir.File("model/m.onnx"))).Message);

        // A link that stays inside the folder (relative, into a subfolder) is not an escape.
        Directory.CreateDirectory(dir.File("model/real"));
        File.WriteAllBytes(dir.File("model/real/w.bin"), BiasBytes);
        File.Delete(dir.File("model/w.bin"));
        File.CreateSymbolicLink(dir.File("model/w.bin"), "real/w.bin");
        Assert.Equal(BiasBytes, ModelIO.Load(dir.File("model/m.onnx")).Graph.Initializer[0].RawData.ToByteArray());
    }

    [Fact]
    public void A_hugging_face_cache_layout_loads_with_the_opt_in()
    {
        // hub/models--x/snapshots/REV/{m.onnx, m.onnx.data} are links into hub/models--x/blobs/.
        using var dir = new TempDir();
        var blobs = Directory.CreateDirectory(dir.File("models--x/blobs")).FullName;
        var snapshot = Directory.CreateDirectory(dir.File("models--x/snapshots/rev1")).FullName;
        File.WriteAllBytes(Path.Combine(blobs, "aaa"), ExternalBias("m.onnx.data").ToByteArray());
        File.WriteAllBytes(Path.Combine(blobs, "bbb"), BiasBytes);
        File.CreateSymbolicLink(Path.Combine(snapshot, "m.onnx"), "../../blobs/aaa");
        File.CreateSymbolicLink(Path.Combine(snapshot, "m.onnx.data"), "../../blobs/bbb");

        Assert.Throws<OnnxAdadeltaException>(() => ModelIO.Load(Path.Combine(snapshot, "m.onnx")));
        var loaded = ModelIO.Load(Path.Combine(snapshot, "m.onnx"), new LoadOptions { AllowExternalDataLinks = true });
        Assert.Equal(BiasBytes, loaded.Graph.Initializer[0].RawData.ToByteArray());
    }

    [Fact]
    public void A_fifo_as_external_data_or_as_the_model_gives_one_error_without_blocking()
    {
        using var dir = new TempDir();
        MakeFifo(dir.File("w.bin"));
        File.WriteAllBytes(dir.File("m.onnx"), ExternalBias("w.bin").ToByteArray());
        var e = ThrowsPromptly(() => ModelIO.Load(dir.File("m.onnx")));
        Assert.Contains("named pipe", e.Message);
        // Even with links allowed, only regular files are read.
        ThrowsPromptly(() => ModelIO.Load(dir.File("m.onnx"), new LoadOptions { AllowExternalDataLinks = true }));

        MakeFifo(dir.File("pipe.onnx"));
        Assert.Contains("pipe.onnx: is a named pipe", ThrowsPromptly(() => ModelIO.Load(dir.File("pipe.onnx"))).Message);
        MakeFifo(dir.File("pipe.npz"));
        Assert.Contains("pipe.npz: is a named pipe", ThrowsPromptly(() => Npz.Read(dir.File("pipe.npz"))).Message);
    }

    [Fact]
    public void Devices_and_folders_are_refused_as_models_before_reading()
    {
        Assert.Contains("/dev/zero: is a character device; expected an ONNX model", ThrowsPromptly(() => ModelIO.Load("/dev/zero")).Message);
        using var dir = new TempDir();
        Assert.Contains("is a folder; expected an ONNX model", ThrowsPromptly(() => ModelIO.Load(dir.Path)).Message);
        Assert.Contains("no such file", ThrowsPromptly(() => ModelIO.Load(dir.File("missing.onnx"))).Message);
        Assert.Contains("is a character device", ThrowsPromptly(() => Npz.Read("/dev/zero")).Message);
    }

    [Fact]
    public void Non_regular_destinations_and_links_are_refused_and_left_as_they_were()
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() => AtomicFile.Write("/dev/null", s => s.Write("x"u8)));
        Assert.Contains("/dev/null: is a character device", e.Message);
        Assert.Equal(FileKind.CharacterDevice, SafeFile.KindOf("/dev/null"));

        using var dir = new TempDir();
        File.WriteAllText(dir.File("target.txt"), "kept");
        File.CreateSymbolicLink(dir.File("link.txt"), dir.File("target.txt"));
        e = Assert.Throws<OnnxAdadeltaException>(() => AtomicFile.Write(dir.File("link.txt"), s => s.Write("new"u8)));
        Assert.Contains("is a symbolic link", e.Message);
        Assert.Equal(FileKind.SymbolicLink, SafeFile.KindOf(dir.File("link.txt"), followLinks: false));
        Assert.Equal("kept", File.ReadAllText(dir.File("target.txt")));

        MakeFifo(dir.File("pipe"));
        Assert.Contains("named pipe", ThrowsPromptly(() => AtomicFile.Write(dir.File("pipe"), s => s.Write("x"u8))).Message);
        Assert.Equal(FileKind.Fifo, SafeFile.KindOf(dir.File("pipe")));
        Assert.Empty(Directory.GetFiles(dir.Path, "*.tmp"));
    }

    [Fact]
    public void Stale_temporaries_of_dead_processes_are_swept_at_the_next_write_and_reported()
    {
        using var dir = new TempDir();
        int dead;
        using (var p = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!)
        {
            p.WaitForExit();
            dead = p.Id;
        }
        var stale = dir.File($".a.onnx.{dead}.{Guid.NewGuid():N}.tmp");
        var live = dir.File($".a.onnx.1.{Guid.NewGuid():N}.tmp");            // pid 1 always runs
        var other = dir.File($".b.onnx.{dead}.{Guid.NewGuid():N}.tmp");      // another destination's
        var notOurs = dir.File($".a.onnx.{dead}.tmp");                       // not our naming
        foreach (var f in new[] { stale, live, other, notOurs }) File.WriteAllBytes(f, new byte[1000]);

        var notices = new List<string>();
        Action<string> record = notices.Add;
        AtomicFile.StaleTemporaryRemoved += record;
        try { AtomicFile.Write(dir.File("a.onnx"), s => s.Write("model"u8)); }
        finally { AtomicFile.StaleTemporaryRemoved -= record; }

        Assert.False(File.Exists(stale));
        Assert.True(File.Exists(live) && File.Exists(other) && File.Exists(notOurs));
        var notice = Assert.Single(notices);
        Assert.Contains(stale, notice);
        Assert.Contains($"process {dead}", notice);
        Assert.Contains("1000 bytes", notice);
    }

    [Fact]
    public void A_second_writer_of_a_destination_is_refused_while_the_first_holds_it()
    {
        using var dir = new TempDir();
        var target = dir.File("ckpt.onnx");
        using (var first = DestinationLock.Acquire(target, "-o"))
        {
            var e = Assert.Throws<OnnxAdadeltaException>(() => DestinationLock.Acquire(target, "-o"));
            Assert.Contains("ckpt.onnx", e.Message);
            Assert.Contains("another onnx-adadelta process is writing", e.Message);
            // Other destinations in the same folder are free.
            using var other = DestinationLock.Acquire(dir.File("other.onnx"));
        }
        Assert.Empty(dir.Files());
        using var again = DestinationLock.Acquire(target, "-o");
        Assert.Equal([".ckpt.onnx.lock"], dir.Files());
    }

    [Fact]
    public void A_lock_file_left_by_a_dead_process_does_not_block()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File(".ckpt.onnx.lock"), "");
        using (DestinationLock.Acquire(dir.File("ckpt.onnx"))) { }
        Assert.Empty(dir.Files());
    }

    [Fact]
    public void A_deeply_nested_npy_header_is_refused_without_overflowing_the_stack()
    {
        var dict = "{'descr': '<f4', 'fortran_order': False, 'shape': " + new string('[', 40_000) + new string(']', 40_000) + "}";
        var e = Assert.Throws<OnnxAdadeltaException>(() => Npy.ParseHeader(dict, "deep.npy"));
        Assert.Contains("deep.npy", e.Message);
        Assert.Contains("nested more than 32 levels", e.Message);
        // A real header still parses.
        Assert.Equal([2L, 3L], Npy.ParseHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", "ok.npy").Shape);
    }

    private static byte[] StoredNpz(Dictionary<string, DataArray> arrays)
    {
        using var ms = new MemoryStream();
        Npz.Write(ms, arrays, compress: false);
        return ms.ToArray();
    }

    [Fact]
    public void A_flipped_byte_in_an_npz_member_fails_its_crc()
    {
        var values = new float[] { 1, 2, 3, 4, 5, 6, 7, 8 };
        var x = new DataArray(DataType.Float, [8], [.. values.SelectMany(BitConverter.GetBytes)]);
        var bytes = StoredNpz(new() { ["x"] = x });
        Assert.Equal(values, Npz.Read(new MemoryStream(bytes), "ok.npz")["x"].ToFloatArray());

        // The last float's high byte: 8f = 0x41000000 -> flip a bit, still a valid float and a valid .npy.
        int at = bytes.AsSpan().IndexOf(BitConverter.GetBytes(8f)) + 3;
        bytes[at] ^= 0x01;
        var e = Assert.Throws<OnnxAdadeltaException>(() => Npz.Read(new MemoryStream(bytes), "flipped.npz"));
        Assert.Contains("array 'x' in flipped.npz", e.Message);
        Assert.Contains("CRC-32", e.Message);
    }

    [Fact]
    public void Evaluate_reads_only_the_arrays_it_needs()
    {
        using var dir = new TempDir();
        var model = TestData.StepModel();
        var batch = TestData.Batch(3, rows: 8);
        var path = dir.File("eval.npz");
        using (var fs = File.Create(path))
        {
            Npz.Write(fs, new Dictionary<string, DataArray>
            {
                ["X"] = new(DataType.Float, batch["X"].Shape, batch["X"].Data),
                ["labels"] = new(DataType.Int64, batch["labels"].Shape, batch["labels"].Data),
            });
            // An unrelated member of a type this library can't read (a unicode string array).
            fs.Position = 0;
            using var zip = new ZipArchive(fs, ZipArchiveMode.Update);
            using var w = zip.CreateEntry("names.npy").Open();
            var header = "{'descr': '<U5', 'fortran_order': False, 'shape': (2,), }";
            w.Write([0x93, .. "NUMPY"u8, 1, 0, (byte)(header.Length + 1), 0, .. Encoding.ASCII.GetBytes(header + "\n"), .. new byte[40]]);
        }
        Assert.Contains("names", Npz.ArrayNames(path));
        Assert.Throws<OnnxAdadeltaException>(() => Npz.Read(path));

        var result = Evaluation.Run(model, path, "labels");
        Assert.Equal(8, result.Rows);
        Assert.NotNull(result.Accuracy);

        var e = Assert.Throws<OnnxAdadeltaException>(() => Evaluation.Run(model, path, "targets"));
        Assert.Contains($"{path} has no target array 'targets'; it has: X, labels, names", e.Message);
    }

    [Fact]
    public void A_concatenated_model_is_named_as_such()
    {
        using var dir = new TempDir();
        var bytes = TestModels.Add([1, 2]).ToByteArray();
        File.WriteAllBytes(dir.File("twice.onnx"), [.. bytes, .. bytes]);
        var e = Assert.Throws<OnnxAdadeltaException>(() => ModelIO.Load(dir.File("twice.onnx")));
        Assert.Contains("twice.onnx: the graph has two initializers named 'B'", e.Message);
        Assert.Contains("concatenated", e.Message);
    }

    [Fact]
    public void Real_paths_resolve_links_in_every_component()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir.File("a/b"));
        Directory.CreateSymbolicLink(dir.File("l1"), "a/b");
        Directory.CreateSymbolicLink(dir.File("a/b/up"), "..");
        var real = SafeFile.RealPath(dir.Path);
        Assert.Equal(Path.Combine(real, "a", "b", "f"), SafeFile.RealPath(dir.File("l1/f")));
        Assert.Equal(Path.Combine(real, "a", "f"), SafeFile.RealPath(dir.File("l1/up/f")));
        Directory.CreateSymbolicLink(dir.File("loop"), "loop");
        Assert.Contains("symbolic links", Assert.Throws<OnnxAdadeltaException>(() => SafeFile.RealPath(dir.File("loop/x"))).Message);
    }

    [Fact]
    public void An_npz_member_whose_header_promises_more_than_the_entry_holds_is_refused_before_allocating()
    {
        // 500,000,000 float32 (2 GB) promised, 16 bytes stored.
        using var ms = new MemoryStream();
        using (var zip = new ZipArchive(ms, ZipArchiveMode.Create, leaveOpen: true))
        {
            using var entry = zip.CreateEntry("x.npy", CompressionLevel.NoCompression).Open();
            var header = Encoding.ASCII.GetBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (500000000,), }\n");
            entry.Write([0x93, .. "NUMPY"u8, 1, 0, (byte)header.Length, 0, .. header, .. new byte[16]]);
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<OnnxAdadeltaException>(() => Npz.Read(new MemoryStream(ms.ToArray()), "bomb.npz"));
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Contains("array 'x' in bomb.npz: truncated", e.Message);
        Assert.Contains("(2000000000 bytes of data), found 16", e.Message);
        Assert.True(allocated < 100_000_000, $"{allocated} bytes allocated for a 16-byte entry");
    }
}
