using System.Text.RegularExpressions;
using Google.Protobuf;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Tests.Fuzz;
using OnnxAdadelta.Tests.Onnx;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Tests.Cli;

/// <summary>Careless command lines: one error line naming the file and what was expected, and nothing written.</summary>
public class HostileInputCliTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private string Data(string name = "data.npz", int rows = 32, long seed = 5)
    {
        var batch = TestData.Batch(seed, rows);
        var path = _dir.File(name);
        Npz.Write(path, new Dictionary<string, DataArray>
        {
            ["X"] = new(TensorProto.Types.DataType.Float, batch["X"].Shape, batch["X"].Data),
            ["labels"] = new(TensorProto.Types.DataType.Int64, batch["labels"].Shape, batch["labels"].Data),
        });
        return path;
    }

    private string StepModel()
    {
        var path = _dir.File("step.onnx");
        ModelIO.Save(TestData.StepModel(), path);
        return path;
    }

    private static string OneError(CliRunner.Result r)
    {
        Assert.Equal(1, r.ExitCode);
        var line = Assert.Single(r.ErrLines);
        Assert.StartsWith("onnx-adadelta: error: ", line);
        return line;
    }

    [Fact]
    public void A_second_writer_of_the_same_output_is_refused()
    {
        var step = StepModel();
        var ckpt = _dir.File("ckpt.onnx");
        using (DestinationLock.Acquire(ckpt))
        {
            var line = OneError(CliRunner.Run("train", step, "--data", Data(), "--steps", "1", "-o", ckpt));
            Assert.Contains("ckpt.onnx: another onnx-adadelta process is writing this checkpoint (-o)", line);
            Assert.False(File.Exists(ckpt));
            line = OneError(CliRunner.Run("export", step, "-o", ckpt));
            Assert.Contains("another onnx-adadelta process is writing", line);
        }
        Assert.Equal(0, CliRunner.Run("export", step, "-o", ckpt).ExitCode);
        Assert.False(File.Exists(_dir.File(".ckpt.onnx.lock")));
    }

    [Fact]
    public void Output_to_a_device_an_empty_path_or_a_link_is_refused_before_any_work()
    {
        var step = StepModel();
        Assert.Contains("/dev/null: is a character device; expected a regular file or a new path",
            OneError(CliRunner.Run("export", step, "-o", "/dev/null")));
        Assert.Contains("path is empty", OneError(CliRunner.Run("export", step, "-o", "")));
        File.CreateSymbolicLink(_dir.File("link.onnx"), step);
        Assert.Contains("is a symbolic link", OneError(CliRunner.Run("train", step, "--data", Data(), "--steps", "1", "-o", _dir.File("link.onnx"))));
        Assert.Contains("is a symbolic link", OneError(CliRunner.Run("train", step, "--data", Data(), "--steps", "1", "-o", _dir.File("c.onnx"), "--log", _dir.File("link.onnx"))));
        Assert.False(File.Exists(_dir.File("c.onnx")));
        Assert.Equal(FileKind.SymbolicLink, SafeFile.KindOf(_dir.File("link.onnx"), followLinks: false));
    }

    [Fact]
    public void Build_training_of_a_step_model_says_what_it_is()
    {
        var line = OneError(CliRunner.Run("build-training", StepModel(), "--loss", "output", "--output", "loss", "-o", _dir.File("t.onnx")));
        Assert.Contains("step.onnx: is a training-step model", line);
        Assert.Contains("expects an inference model", line);
        Assert.False(File.Exists(_dir.File("t.onnx")));
    }

    [Fact]
    public void A_negative_iteration_counter_is_refused()
    {
        var model = TestData.StepModel();
        var info = StepModelInfo.Read(model, "step");
        var counter = model.Graph.Initializer.Single(t => t.Name == StepModelState.InitialName(info.Iterations));
        counter.Int64Data.Clear();
        counter.RawData = Google.Protobuf.ByteString.CopyFrom(BitConverter.GetBytes(-5L));
        ModelIO.Save(model, _dir.File("neg.onnx"));
        var line = OneError(CliRunner.Run("train", _dir.File("neg.onnx"), "--data", Data(), "--steps", "1", "-o", _dir.File("c.onnx")));
        Assert.Contains($"iteration counter '{info.Iterations.Input}' is -5; a count of steps cannot be negative", line);
        Assert.False(File.Exists(_dir.File("c.onnx")));
    }

    [Fact]
    public void Resuming_with_another_data_plan_warns_and_strict_refuses()
    {
        var step = StepModel();
        var ckpt = _dir.File("ckpt.onnx");
        var r = CliRunner.Run("train", step, "--data", Data(), "--steps", "2", "--batch-size", "8", "--shuffle", "--seed", "3", "-o", ckpt);
        Assert.True(r.ExitCode == 0, r.Err);
        var plan = DataPlan.Read(ModelIO.Load(ckpt), ckpt)!;
        Assert.Equal((8, true, 3L), (plan.BatchSize, plan.Shuffle, plan.Seed));

        // The same plan resumes silently.
        r = CliRunner.Run("train", ckpt, "--data", Data(), "--steps", "1", "--batch-size", "8", "--shuffle", "--seed", "3", "-o", ckpt, "--strict");
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Empty(r.Err);

        // Another batch size and no shuffle: a warning naming both, and the run goes on.
        r = CliRunner.Run("train", ckpt, "--data", Data(), "--steps", "1", "--batch-size", "4", "-o", _dir.File("warned.onnx"));
        Assert.True(r.ExitCode == 0, r.Err);
        var warning = Assert.Single(r.ErrLines);
        Assert.StartsWith("onnx-adadelta: warning: ", warning);
        Assert.Contains("batch size 8 before, 4 now", warning);
        Assert.Contains("--shuffle before, not now", warning);

        // Another data file under --strict: refused, nothing written.
        var line = OneError(CliRunner.Run("train", ckpt, "--data", Data("other.npz", seed: 9), "--steps", "1", "--batch-size", "8", "--shuffle", "--seed", "3",
            "-o", _dir.File("strict.onnx"), "--strict"));
        Assert.Contains("ckpt.onnx was trained with another data plan: the data file differs", line);
        Assert.False(File.Exists(_dir.File("strict.onnx")));

        // The exported inference model carries no data plan.
        Assert.Equal(0, CliRunner.Run("export", ckpt, "-o", _dir.File("inference.onnx")).ExitCode);
        Assert.Null(DataPlan.Read(ModelIO.Load(_dir.File("inference.onnx")), "inference"));
    }

    private static string ReadmeLine(string start) =>
        File.ReadAllLines(Path.Combine(RepoPaths.Root, "README.md")).Select(l => l.Trim()).Single(l => l.StartsWith(start, StringComparison.Ordinal));

    [Fact]
    public void The_readme_hugging_face_example_loads_a_cache_layout_only_with_the_flag()
    {
        var args = Regex.Split(ReadmeLine("onnx-adadelta inspect --allow-external-links ").Trim(), @"\s+")[1..];
        Assert.EndsWith("/snapshots/REV/model.onnx", args[^1]);

        // The hub cache: snapshots/REV/model.onnx and its data are links into blobs/.
        var blobs = Directory.CreateDirectory(_dir.File("hub/models--org--name/blobs")).FullName;
        var snapshot = Directory.CreateDirectory(_dir.File("hub/models--org--name/snapshots/REV")).FullName;
        var model = TestModels.Add([1, 2, 3]);
        var bias = model.Graph.Initializer[0];
        var bytes = bias.ToRawBytes();
        bias.FloatData.Clear();
        bias.DataLocation = TensorProto.Types.DataLocation.External;
        bias.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = "model.onnx.data" });
        File.WriteAllBytes(Path.Combine(blobs, "1f2e"), model.ToByteArray());
        File.WriteAllBytes(Path.Combine(blobs, "9a8b"), bytes);
        File.CreateSymbolicLink(Path.Combine(snapshot, "model.onnx"), "../../blobs/1f2e");
        File.CreateSymbolicLink(Path.Combine(snapshot, "model.onnx.data"), "../../blobs/9a8b");
        args[^1] = Path.Combine(snapshot, "model.onnx");

        var r = CliRunner.Run(args);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("B", r.Out);
        var line = OneError(CliRunner.Run([.. args.Where(a => a != "--allow-external-links")]));
        Assert.Contains("out of the model's folder", line);
        Assert.Contains("--allow-external-links", line);
    }

    [Fact]
    public void The_readme_fuzz_command_sets_the_harness_variables_and_selects_it()
    {
        var line = ReadmeLine("ONNX_ADADELTA_FUZZ_SECONDS=");
        var variables = Regex.Matches(line, @"\b([A-Z_]+)=").Select(m => m.Groups[1].Value).ToList();
        Assert.Equal([FuzzTests.SecondsVariable, FuzzTests.ReportVariable], variables);
        var filter = Regex.Match(line, @"--filter FullyQualifiedName~(\S+)").Groups[1].Value;
        var test = $"{typeof(FuzzTests).FullName}.{nameof(FuzzTests.Mutated_models_and_data_get_a_valid_output_or_one_error_line)}";
        Assert.Contains(filter, test);
        Assert.Contains("dotnet test tests/OnnxAdadelta.Tests -c Release", line);
        var readme = File.ReadAllText(Path.Combine(RepoPaths.Root, "README.md"));
        Assert.Contains($"`{FuzzTests.IterVariable}=N`", readme);
        Assert.Contains($"`{FuzzTests.SeedVariable}=…`", readme);
    }
}
