using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using CsCheck;
using Google.Protobuf;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Cli;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Tests.Onnx;
using OnnxAdadelta.Training;
using DataLocation = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataLocation;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Fuzz;

/// <summary>The command a fuzz case runs.</summary>
public enum FuzzVerb
{
    /// <summary><c>inspect</c> of any of the three seed models.</summary>
    Inspect,

    /// <summary><c>build-training</c> of the inference model.</summary>
    BuildTraining,

    /// <summary><c>rewrite</c> of the training graph.</summary>
    Rewrite,

    /// <summary><c>train</c> of the step model for two steps.</summary>
    Train,

    /// <summary><c>evaluate</c> of the step model.</summary>
    Evaluate,

    /// <summary><c>export</c> of the step model.</summary>
    Export,
}

/// <summary>
/// One fuzz input: a verb, a mutation of its model (or, for <c>train</c> and <c>evaluate</c>, of its data file) and the
/// seed that places the mutation. The same case always builds the same files.
/// </summary>
public sealed record FuzzCase(FuzzVerb Verb, int ModelMutation, int DataMutation, int Seed);

/// <summary>
/// Structured mutation of the shipped models and data (CsCheck drives the choice; each mutation is a model or data file
/// a careless or hostile user could hand us). Every input must meet the contract: exit 0 with a valid output, or exit 1
/// with one <c>onnx-adadelta: error:</c> line and no output (or, for <c>train</c> stopped on a NaN or infinity, exit 3
/// with one error line and the last finite state written); never an escaping exception (a stack trace), a hang or a
/// stray file. The CLI runs in-process; a few inputs that could only fail at the process level run in a child process.
/// </summary>
/// <remarks>
/// CI runs <see cref="DefaultIterations"/> cases from a fixed seed. Run longer by hand with <c>ONNX_ADADELTA_FUZZ_SECONDS=600</c> (a time
/// budget) or <c>ONNX_ADADELTA_FUZZ_ITER=5000</c>, and replay a failure with the <c>ONNX_ADADELTA_FUZZ_SEED</c> CsCheck printed.
/// </remarks>
public class FuzzTests
{
    /// <summary>Cases per CI run (about 12 s on the 2-core CI machine; 500 took 41 s).</summary>
    public const int DefaultIterations = 150;

    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    /// <summary>Environment variables of a longer run by hand: cases, seconds, seed to replay, report file.</summary>
    internal const string IterVariable = "ONNX_ADADELTA_FUZZ_ITER", SecondsVariable = "ONNX_ADADELTA_FUZZ_SECONDS",
        SeedVariable = "ONNX_ADADELTA_FUZZ_SEED", ReportVariable = "ONNX_ADADELTA_FUZZ_REPORT";

    private static readonly Lazy<Seeds> Shipped = new(() =>
    {
        var training = ModelIO.Load(Path.Combine(RepoPaths.Models, "digits-softmax.training.onnx"));
        return new Seeds(
            ModelIO.Load(Path.Combine(RepoPaths.Models, "digits-mlp.onnx")),
            training,
            AdadeltaRewrite.Apply(training, new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) }),
            File.ReadAllBytes(Path.Combine(RepoPaths.Models, "data", "digits-test.npz")));
    });

    private sealed record Seeds(ModelProto Inference, ModelProto Training, ModelProto Step, byte[] Data);

    private const int ModelMutations = 20;
    private const int DataMutations = 10;

    private static readonly Gen<FuzzCase> Cases =
        Gen.Select(Gen.Enum<FuzzVerb>(), Gen.Int[0, ModelMutations - 1], Gen.Int[0, DataMutations - 1], Gen.Int,
            (verb, m, d, seed) => new FuzzCase(verb, m, verb is FuzzVerb.Train or FuzzVerb.Evaluate ? d : 0, seed));

    /// <summary>The seed of the CI run, so that CI is deterministic; runs by hand draw a fresh one unless given.</summary>
    private const string CiSeed = "0000ciseed01";

    [Fact]
    public void Mutated_models_and_data_get_a_valid_output_or_one_error_line()
    {
        long iter = long.TryParse(Environment.GetEnvironmentVariable(IterVariable), out var i) ? i : DefaultIterations;
        int time = int.TryParse(Environment.GetEnvironmentVariable(SecondsVariable), out var t) ? t : -1;
        var seed = Environment.GetEnvironmentVariable(SeedVariable);
        bool longer = time > 0 || iter != DefaultIterations;
        // With a report file, a long run lists every failing case there (one line each) instead of stopping at the first.
        var report = Environment.GetEnvironmentVariable(ReportVariable);
        int failures = 0;
        Cases.Sample(c =>
        {
            if (string.IsNullOrEmpty(report))
            {
                Check(c);
                return;
            }
            try { Check(c); }
            catch (Exception e)
            {
                Interlocked.Increment(ref failures);
                lock (Shipped) File.AppendAllText(report, $"{c} | {e.Message.Split('\n')[0]}\n");
            }
        }, seed: !string.IsNullOrEmpty(seed) ? seed : longer ? null : CiSeed, iter: time > 0 ? -1 : iter, time: time, threads: 1,
            print: c => $"{c} ({Describe(c)})");
        Assert.True(failures == 0, $"{failures} failing cases; see {report}");
    }

    [Fact]
    public void Each_mutation_is_reachable_and_the_unmutated_seeds_succeed()
    {
        // The control cases must succeed, so that the contract is not met by refusing everything.
        foreach (var verb in Enum.GetValues<FuzzVerb>())
            Assert.Equal(0, Check(new FuzzCase(verb, 0, 0, 1)));
        // Every model and data mutation is exercised at least once, each on a verb that reads it.
        for (int m = 1; m < ModelMutations; m++) Check(new FuzzCase(FuzzVerb.Export, m, 0, m));
        for (int d = 1; d < DataMutations; d++) Assert.Equal(1, Check(new FuzzCase(FuzzVerb.Train, 0, d, d)));
    }

    /// <summary>Inputs whose failure would take the whole process down (a stack overflow) or block it: a child process each.</summary>
    [Fact]
    public async Task Hostile_files_in_a_child_process_exit_1_with_one_line()
    {
        using var dir = new TempDir();
        var seeds = Shipped.Value;
        ModelIO.Save(seeds.Step, dir.File("step.onnx"));
        File.WriteAllBytes(dir.File("deep.npz"), MutateData(seeds.Data, 6, new Random(1), out _));
        HostileFileTests.MakeFifo(dir.File("fifo.onnx"));
        var cases = new (string[] Args, string Expected)[]
        {
            (["train", dir.File("step.onnx"), "--data", dir.File("deep.npz"), "--steps", "1", "-o", dir.File("out.onnx")], "nested more than 32 levels"),
            (["inspect", dir.File("fifo.onnx")], "is a named pipe"),
            (["inspect", "/dev/zero"], "is a character device"),
            (["export", dir.File("step.onnx"), "-o", "/dev/null"], "is a character device"),
        };
        var cli = Path.Combine(AppContext.BaseDirectory, "onnx-adadelta.dll");
        foreach (var (args, expected) in cases)
        {
            var info = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
            info.ArgumentList.Add(cli);
            foreach (var a in args) info.ArgumentList.Add(a);
            using var p = Process.Start(info)!;
            var stderr = p.StandardError.ReadToEndAsync();
            var stdout = p.StandardOutput.ReadToEndAsync();
            if (!p.WaitForExit(Limit))
            {
                p.Kill(entireProcessTree: true);
                Assert.Fail($"onnx-adadelta {string.Join(' ', args)} did not finish within {Limit.TotalSeconds} s");
            }
            var line = Assert.Single((await stderr).Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.Equal(1, p.ExitCode);
            Assert.StartsWith("onnx-adadelta: error: ", line);
            Assert.Contains(expected, line);
            Assert.DoesNotContain("   at ", await stdout);
        }
        Assert.False(File.Exists(dir.File("out.onnx")));
        Assert.Equal(new[] { "deep.npz", "fifo.onnx", "step.onnx" }, Directory.GetFileSystemEntries(dir.Path).Select(p => Path.GetFileName(p)).Order(StringComparer.Ordinal));
    }

    /// <summary>Runs one case and checks the contract; returns the exit code.</summary>
    private static int Check(FuzzCase c)
    {
        using var dir = new TempDir();
        var (args, output) = Prepare(c, dir);
        var before = Entries(dir.Path);
        var outText = new StringWriter();
        var errText = new StringWriter();
        int code = -1;
        Exception? escaped = null;
        var thread = new Thread(() =>
        {
            try { code = CliApp.Run(args, outText, errText); }
            catch (Exception e) { escaped = e; }
        }, 16 << 20);
        thread.Start();
        if (!thread.Join(Limit)) Assert.Fail($"{c}: no answer within {Limit.TotalSeconds} s (a hang): {Describe(c)}");
        if (escaped is not null) Assert.Fail($"{c}: an exception escaped the CLI ({Describe(c)}): {escaped}");

        var lines = errText.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var after = Entries(dir.Path);
        switch (code)
        {
            case 0:
                Assert.All(lines, l => Assert.StartsWith("onnx-adadelta: warning: ", l));
                if (output is not null)
                {
                    Assert.True(File.Exists(output), $"{c}: exit 0 without {output}");
                    ModelIO.Load(output);
                    after.Remove(Path.GetFileName(output));
                }
                break;
            case 1:
                var line = Assert.Single(lines);
                Assert.StartsWith("onnx-adadelta: error: ", line);
                Assert.DoesNotContain("   at ", outText.ToString());
                if (output is not null) Assert.False(File.Exists(output), $"{c}: exit 1 but {output} was written");
                break;
            case 3:
                // train stopped on a NaN or infinity: one error line naming the step, and the last finite state written.
                Assert.Equal(FuzzVerb.Train, c.Verb);
                Assert.StartsWith("onnx-adadelta: error: ", Assert.Single(lines, l => !l.StartsWith("onnx-adadelta: warning: ", StringComparison.Ordinal)));
                Assert.True(output is not null && File.Exists(output), $"{c}: exit 3 without {output}");
                using (var trainer = new OnnxAdadelta.Training.Trainer(ModelIO.Load(output)))
                    Assert.Null(trainer.FindNonFinite());
                after.Remove(Path.GetFileName(output));
                break;
            default:
                Assert.Fail($"{c}: exit code {code}; expected 0, 1 or 3 ({Describe(c)}): {errText}");
                break;
        }
        Assert.True(before.SetEquals(after), $"{c}: stray files: {string.Join(", ", after.Except(before))}");
        return code;
    }

    private static HashSet<string> Entries(string dir) =>
        Directory.GetFileSystemEntries(dir).Select(p => Path.GetFileName(p)).ToHashSet(StringComparer.Ordinal);

    private static string Describe(FuzzCase c)
    {
        using var dir = new TempDir();
        var rng = new Random(c.Seed);
        var model = SeedModel(c.Verb, c.Seed).Clone();
        var what = MutateModel(model, c.ModelMutation, rng, dir.Path, out _);
        MutateData(Shipped.Value.Data, c.DataMutation, new Random(c.Seed), out var data);
        return $"{c.Verb}: model {what}; data {data}";
    }

    private static ModelProto SeedModel(FuzzVerb verb, int seed) => verb switch
    {
        FuzzVerb.BuildTraining => Shipped.Value.Inference,
        FuzzVerb.Rewrite => Shipped.Value.Training,
        FuzzVerb.Inspect => (seed & 3) switch { 0 => Shipped.Value.Inference, 1 => Shipped.Value.Training, _ => Shipped.Value.Step },
        _ => Shipped.Value.Step,
    };

    /// <summary>Writes the case's files into <paramref name="dir"/>; returns the command line and the output it may write.</summary>
    private static (string[] Args, string? Output) Prepare(FuzzCase c, TempDir dir)
    {
        var model = SeedModel(c.Verb, c.Seed).Clone();
        MutateModel(model, c.ModelMutation, new Random(c.Seed), dir.Path, out var bytes);
        var m = dir.File("m.onnx");
        File.WriteAllBytes(m, bytes ?? model.ToByteArray());
        var d = dir.File("d.npz");
        var o = dir.File("out.onnx");
        if (c.Verb is FuzzVerb.Train or FuzzVerb.Evaluate)
            File.WriteAllBytes(d, MutateData(Shipped.Value.Data, c.DataMutation, new Random(c.Seed), out _));
        return c.Verb switch
        {
            FuzzVerb.Inspect => (["inspect", m], null),
            FuzzVerb.BuildTraining => (["build-training", m, "--loss", "cross-entropy", "--output", "logits", "-o", o], o),
            FuzzVerb.Rewrite => (["rewrite", m, "-o", o], o),
            FuzzVerb.Train => (["train", m, "--data", d, "--steps", "2", "--batch-size", "32", "-o", o], o),
            FuzzVerb.Evaluate => (["evaluate", m, "--data", d, "--target", "labels"], null),
            _ => (["export", m, "-o", o], o),
        };
    }

    private static T Pick<T>(Random rng, IReadOnlyList<T> items) => items[rng.Next(items.Count)];

    /// <summary>
    /// Applies model mutation <paramref name="kind"/> (0: none). Most edit the parsed model; the byte-level ones return
    /// the bytes to write in <paramref name="bytes"/>. Side files a mutation needs (a data file, a pipe, a link out of the
    /// folder) go into <paramref name="dir"/>. Returns a description.
    /// </summary>
    private static string MutateModel(ModelProto model, int kind, Random rng, string dir, out byte[]? bytes)
    {
        bytes = null;
        var g = model.Graph;
        var inits = g.Initializer;
        TensorProto Init() => inits[rng.Next(inits.Count)];
        NodeProto Node() => g.Node[rng.Next(g.Node.Count)];
        switch (kind)
        {
            case 0:
                return "unchanged";
            case 1:
            {
                var n = Node();
                g.Node.Remove(n);
                return $"node '{n.Name}' removed";
            }
            case 2:
            {
                var n = Node();
                n.OpType = Pick(rng, new[] { "NoSuchOp", "", "Relu", "MatMul", "Conv", "Loop", "Gemm" });
                return $"node '{n.Name}' becomes op '{n.OpType}'";
            }
            case 3:
            {
                var n = Node();
                if (n.Input.Count == 0) n.Input.Add("dangling");
                else n.Input[rng.Next(n.Input.Count)] = Pick(rng, new[] { "dangling", "" });
                return $"node '{n.Name}' reads a value nothing produces";
            }
            case 4:
            {
                var t = Init();
                long d = Pick(rng, new long[] { 0, -3, 1L << 40, 7 });
                if (t.Dims.Count == 0 || rng.Next(3) == 0) t.Dims.Add(d);
                else t.Dims[rng.Next(t.Dims.Count)] = d;
                return $"initializer '{t.Name}' gets dims [{string.Join(",", t.Dims)}]";
            }
            case 5:
            {
                var t = Init();
                var raw = t.ToRawBytes();
                t.FloatData.Clear();
                t.RawData = ByteString.CopyFrom(raw.AsSpan(0, rng.Next(raw.Length)));
                return $"initializer '{t.Name}' loses raw bytes";
            }
            case 6:
            {
                var t = Init();
                t.DataType = rng.Next(0, 26);
                return $"initializer '{t.Name}' becomes data type {t.DataType}";
            }
            case 7:
            {
                var t = Init();
                var raw = t.ToRawBytes();
                File.WriteAllBytes(Path.Combine(dir, "w.bin"), raw);
                Directory.CreateSymbolicLink(Path.Combine(dir, "link_out"), Path.GetTempPath());
                var location = Pick(rng, new[] { "../escape.bin", "/etc/passwd", "", "missing.bin", "link_out/x.bin", "sub/../../x.bin", "w.bin", "fifo.bin", "." });
                if (location == "fifo.bin") HostileFileTests.MakeFifo(Path.Combine(dir, "fifo.bin"));
                t.FloatData.Clear();
                t.RawData = ByteString.Empty;
                t.DataLocation = DataLocation.External;
                t.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = location });
                var offset = Pick(rng, new[] { "0", "-1", "99999999", "x" });
                if (location != "w.bin" || rng.Next(2) == 0) t.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset });
                return $"initializer '{t.Name}' moves to external data at '{location}'";
            }
            case 8:
            {
                var op = model.OpsetImport.First(o => o.Domain is "" or "ai.onnx");
                op.Version = Pick(rng, new long[] { 0, 1, 6, 99, -1, 10000 });
                return $"ai.onnx opset {op.Version}";
            }
            case 9:
            {
                var t = Init();
                inits.Add(t.Clone());
                return $"initializer '{t.Name}' appears twice";
            }
            case 10:
                model.IrVersion = Pick(rng, new long[] { 0, 1, 2, 3, 99, -5 });
                return $"ir_version {model.IrVersion}";
            case 11:
            {
                if (rng.Next(2) == 0) g.Output.Clear();
                else g.Output.RemoveAt(rng.Next(g.Output.Count));
                return "graph outputs removed";
            }
            case 12:
            {
                var withAttributes = g.Node.Where(n => n.Attribute.Count > 0).ToList();
                if (withAttributes.Count == 0) return "no attributes to change";
                var n = Pick(rng, withAttributes);
                var a = n.Attribute[rng.Next(n.Attribute.Count)];
                a.Type = (AttributeProto.Types.AttributeType)rng.Next(0, 15);
                if (rng.Next(2) == 0) { a.Ints.Clear(); a.I = -rng.Next(1, 100); }
                return $"attribute '{a.Name}' of node '{n.Name}' gets type {a.Type}";
            }
            case 13:
            {
                var v = g.Input[rng.Next(g.Input.Count)];
                if (v.Type?.TensorType is not { } tt) return "input without a tensor type";
                if (rng.Next(2) == 0) tt.ElemType = rng.Next(0, 26);
                else tt.Shape = new TensorShapeProto { Dim = { new TensorShapeProto.Types.Dimension { DimValue = rng.Next(-2, 5) } } };
                return $"graph input '{v.Name}' gets another type";
            }
            case 14:
            {
                var b = model.ToByteArray();
                for (int k = rng.Next(1, 9); k > 0; k--) b[rng.Next(b.Length)] ^= (byte)(1 << rng.Next(8));
                bytes = b;
                return "bytes flipped";
            }
            case 15:
            {
                var b = model.ToByteArray();
                bytes = b[..rng.Next(b.Length)];
                return $"cut at byte {bytes.Length} of {b.Length}";
            }
            case 16:
            {
                var b = model.ToByteArray();
                bytes = rng.Next(2) == 0 ? [.. b, .. b] : [.. b, .. Enumerable.Range(0, 64).Select(_ => (byte)rng.Next(256))];
                return "file concatenated with itself or with garbage";
            }
            case 17:
            {
                var t = Init();
                t.Name += "_renamed";
                return $"initializer renamed to '{t.Name}'";
            }
            case 18:
            {
                var n = Node();
                n.Output.Clear();
                return $"node '{n.Name}' loses its outputs";
            }
            default:
            {
                var t = Init();
                var raw = t.ToRawBytes();
                var f = new float[raw.Length / 4];
                for (int k = 0; k < f.Length; k++) f[k] = Pick(rng, new[] { float.NaN, float.PositiveInfinity, 1e38f, 0f });
                t.FloatData.Clear();
                t.RawData = ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(f.AsSpan()));
                return $"initializer '{t.Name}' filled with NaN, infinities and huge values";
            }
        }
    }

    /// <summary>Applies data mutation <paramref name="kind"/> (0: none) to the .npz bytes.</summary>
    private static byte[] MutateData(byte[] npz, int kind, Random rng, out string what)
    {
        var arrays = new Dictionary<string, DataArray>(Npz.Read(new MemoryStream(npz), "seed"));
        var x = arrays["X"];
        byte[] Write(bool compress = false)
        {
            using var ms = new MemoryStream();
            Npz.Write(ms, arrays, compress);
            return ms.ToArray();
        }
        switch (kind)
        {
            case 0:
                what = "unchanged";
                return npz;
            case 1:
            {
                var b = Write();
                // A flip inside the stored X member (past the zip headers), where only the CRC can tell.
                int at = 200 + rng.Next(x.Data.Length - 100);
                b[at] ^= (byte)(1 << rng.Next(8));
                what = $"a bit flipped at byte {at}";
                return b;
            }
            case 2:
                what = "cut short";
                return npz[..rng.Next(npz.Length)];
            case 3:
                arrays["X"] = new DataArray(DataType.Double, x.Shape, [.. x.ToFloatArray().SelectMany(v => BitConverter.GetBytes((double)v))]);
                what = "X stored as float64";
                return Write();
            case 4:
                arrays["X"] = new DataArray(x.ElementType, [x.Shape[0] * x.Shape[1]], x.Data);
                what = "X flattened to rank 1";
                return Write();
            case 5:
                arrays.Remove(rng.Next(2) == 0 ? "X" : "labels");
                what = "an array dropped";
                return Write();
            case 6:
            {
                var header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + new string('[', 40_000) + new string(']', 40_000) + "}\n";
                arrays.Remove("X");
                var b = Write();
                using var ms = new MemoryStream();
                ms.Write(b);
                using (var zip = new ZipArchive(ms, ZipArchiveMode.Update, leaveOpen: true))
                {
                    using var e = zip.CreateEntry("X.npy").Open();
                    var h = Encoding.ASCII.GetBytes(header);
                    e.Write([0x93, .. "NUMPY"u8, 2, 0, .. BitConverter.GetBytes(h.Length), .. h]);
                }
                what = "X has an 80 KB header nested 40,000 deep";
                return ms.ToArray();
            }
            case 7:
                arrays["X"] = new DataArray(x.ElementType, [0, x.Shape[1]], []);
                arrays["labels"] = new DataArray(DataType.Int64, [0], []);
                what = "no rows";
                return Write();
            case 8:
            {
                var b = Write();
                var shape = Encoding.ASCII.GetBytes($"({x.Shape[0]}, {x.Shape[1]})");
                int at = b.AsSpan().IndexOf(shape);
                Encoding.ASCII.GetBytes($"({new string('9', x.Shape[0].ToString().Length)}, {x.Shape[1]})").CopyTo(b, at);
                what = "X's header claims more rows than it holds";
                return b;
            }
            default:
                arrays["labels"] = new DataArray(DataType.Float, arrays["labels"].Shape,
                    [.. arrays["labels"].ToInt64Array().SelectMany(v => BitConverter.GetBytes((float)v))]);
                what = "labels stored as float32";
                return Write();
        }
    }
}
