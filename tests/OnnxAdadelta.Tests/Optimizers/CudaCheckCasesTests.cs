using System.Text;
using System.Text.Json;
using OnnxAdadelta.Bench;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Runtime;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Optimizers;

/// <summary>
/// The cases of the GPU check in <c>tools/cuda-check</c> (run on a machine with a GPU, without .NET): for a few option
/// cases and storage dtypes, the PTX this build emits, the kernel parameters, inputs and the CPU kernel's outputs
/// (<see cref="UpdateProgram.Run"/> narrowed to each dtype). The files are committed; this test regenerates them and
/// fails when they differ, so the check always tests the current emitter. Set <c>ONNXADADELTA_WRITE_CUDA_CHECK=1</c> to
/// rewrite them.
/// </summary>
public class CudaCheckCasesTests
{
    private const int Elements = 1037;
    private const long Step = 3;

    private static readonly (string File, string Case, string Storage)[] Checks =
    [
        ("defaults-f32", "defaults", "float32"),
        ("everything-f32", "everything", "float32"),
        ("clipvalue-f16", "clipvalue", "float16"),
        ("maximize-bf16", "maximize", "bfloat16"),
        ("ema-master-bf16", "ema", "master bfloat16"),
        ("everything-master-f16", "everything", "master float16"),
    ];

    private static string Name(DataType t) => t switch { DataType.Float => "float32", DataType.Float16 => "float16", _ => "bfloat16" };

    private static byte[] Encode(float[] values, DataType type)
    {
        using var ms = new MemoryStream();
        using var w = new BinaryWriter(ms);
        foreach (var v in values)
        {
            if (type == DataType.Float) w.Write(BitConverter.SingleToUInt32Bits(v));
            else w.Write(type == DataType.Float16 ? BitConverter.HalfToUInt16Bits((Half)v) : MixedPrecision.ToBFloat16Bits(v));
        }
        w.Flush();
        return ms.ToArray();
    }

    internal static SortedDictionary<string, byte[]> Generate()
    {
        var files = new SortedDictionary<string, byte[]>(StringComparer.Ordinal);
        var manifest = new List<object>();
        foreach (var (file, name, storage) in Checks)
        {
            var program = UpdateProgram.Record(OptionCases.All.Single(c => c.Name == name).Options, "W");
            var low = storage.EndsWith("bfloat16", StringComparison.Ordinal) ? DataType.Bfloat16 : storage.EndsWith("float16", StringComparison.Ordinal) ? DataType.Float16 : DataType.Float;
            bool master = storage.StartsWith("master", StringComparison.Ordinal);
            var inputTypes = Enumerable.Range(0, program.Inputs).Select(k => master ? (k == 1 ? low : DataType.Float) : low).ToArray();
            var outputTypes = Enumerable.Range(0, program.Outputs.Length).Select(_ => master ? DataType.Float : low).ToArray();
            DataType? stored = master ? low : null;
            var rng = new Random(file.Length * 7919 + program.Inputs);
            // Finite inputs (signed zeros and subnormals included), so no NaN arises whose bits could differ by design.
            var inputs = Enumerable.Range(0, program.Inputs).Select(k => MixedPrecision.Round(Enumerable.Range(0, Elements).Select(i =>
                i % 97 == 0 ? -0f : i % 89 == 0 ? 1e-40f : (k >= 2 ? 1f : k == 1 ? 0.3f : 2f) * (float)(k >= 2 ? rng.NextDouble() : rng.NextDouble() * 2 - 1)).ToArray(), inputTypes[k])).ToArray();
            var outputs = program.Run(Step, inputs);
            var scalars = new float[program.ScalarRegisters];
            program.EvaluateScalars(Step, scalars);
            var data = new MemoryStream();
            for (int k = 0; k < inputs.Length; k++) data.Write(Encode(inputs[k], inputTypes[k]));
            for (int o = 0; o < outputs.Length; o++) data.Write(Encode(outputs[o], outputTypes[o]));
            if (stored is { } s) data.Write(Encode(outputs[0], s));
            files[file + ".bin"] = data.ToArray();
            files[file + ".ptx"] = Encoding.UTF8.GetBytes(UpdatePtx.Emit(program, inputTypes, outputTypes, stored));
            var plan = CudaLaunch.Plan(Elements);
            var looping = CudaLaunch.Plan(Elements, 32, 2);
            manifest.Add(new
            {
                name = file,
                options = name,
                elements = Elements,
                step = Step,
                inputs = inputTypes.Select(Name).ToArray(),
                outputs = outputTypes.Select(Name).ToArray(),
                stored = stored is { } t ? Name(t) : null,
                scalar_bits = scalars.Select(BitConverter.SingleToUInt32Bits).ToArray(),
                launches = new[] { new[] { plan.Grid, plan.Block }, new[] { looping.Grid, looping.Block } },
            });
        }
        files["cases.json"] = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(manifest, new JsonSerializerOptions { WriteIndented = true }) + "\n");
        return files;
    }

    [Fact]
    public void TheCommittedCasesAreThoseThisBuildGenerates()
    {
        var folder = Path.Combine(RepoPaths.Root, "tools", "cuda-check", "cases");
        var files = Generate();
        if (Environment.GetEnvironmentVariable("ONNXADADELTA_WRITE_CUDA_CHECK") == "1")
        {
            Directory.CreateDirectory(folder);
            foreach (var (name, bytes) in files) File.WriteAllBytes(Path.Combine(folder, name), bytes);
        }
        Assert.Equal(files.Keys, Directory.GetFiles(folder).Select(f => Path.GetFileName(f)!).Order(StringComparer.Ordinal));
        foreach (var (name, bytes) in files)
            Assert.True(bytes.AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(folder, name))), $"tools/cuda-check/cases/{name} differs from what this build generates (ONNXADADELTA_WRITE_CUDA_CHECK=1 rewrites it)");
        // The looping launch really loops: its threads cover the elements only in several trips.
        var looping = CudaLaunch.Plan(Elements, 32, 2);
        Assert.True(looping.ElementsPerThread > 1);
    }
}

/// <summary>A fact that needs <c>python3</c> on the PATH; reports Skipped, with the reason, where it is absent.</summary>
public sealed class PythonFactAttribute : FactAttribute
{
    /// <summary>Skips where no python3 is on the PATH.</summary>
    public PythonFactAttribute()
    {
        var path = Environment.GetEnvironmentVariable("PATH") ?? "";
        if (!path.Split(Path.PathSeparator).Any(d => d.Length > 0 && File.Exists(Path.Combine(d, "python3"))))
            Skip = "python3 is not on the PATH; tools/cuda-check/cuda_check.py --dry-run needs it.";
    }
}

public class CudaCheckScriptTests
{
    [PythonFact]
    public void TheDryRunReadsEveryCommittedCase()
    {
        // The README's command, run as written (with -B so that no bytecode lands in the checkout).
        Assert.Contains("\n    python3 tools/cuda-check/cuda_check.py --dry-run\n", File.ReadAllText(Path.Combine(RepoPaths.Root, "README.md")));
        var start = new System.Diagnostics.ProcessStartInfo("python3", ["-B", "tools/cuda-check/cuda_check.py", "--dry-run"])
        {
            WorkingDirectory = RepoPaths.Root,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = System.Diagnostics.Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(30_000), "python3 did not finish in 30 s");
        Assert.True(process.ExitCode == 0, error.Result);
        int cases = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(RepoPaths.Root, "tools", "cuda-check", "cases", "cases.json"))).RootElement.GetArrayLength();
        Assert.Equal($"{cases} cases read; nothing launched (--dry-run)\n", output.Result);
    }
}
