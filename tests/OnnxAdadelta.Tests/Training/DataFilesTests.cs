using System.Runtime.InteropServices;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Tests.Cli;
using OnnxAdadelta.Training;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Training;

public sealed class DataFilesTests : IDisposable
{
    private readonly TestData.TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static InputSpec Spec(string name, DataType type, params object?[] dims) => new(name, type, dims);

    private static readonly InputSpec X = Spec("x", DataType.Float, "batch", 3L);
    private static readonly InputSpec Y = Spec("y", DataType.Int64, "batch");

    private string Write(string name, string text)
    {
        var path = _dir.File(name);
        File.WriteAllText(path, text);
        return path;
    }

    private OnnxAdadeltaException CsvFails(string text, params InputSpec[] inputs)
    {
        var path = Write("data.csv", text);
        return Assert.Throws<OnnxAdadeltaException>(() => Dataset.Open(path, inputs.Length == 0 ? [X, Y] : inputs));
    }

    [Fact]
    public void CsvColumnGroupsFeedAnInputRowAndSingleColumnsAVector()
    {
        var path = Write("data.csv", "y,x[2],x[0],x[1],note\n1,0.5,-2,3e1,a\n\n0,\"7\",nan,-inf,\"b,c\"\n");
        var ds = Dataset.Open(path, [X, Y]);
        Assert.Equal(2, ds.RowCount);
        Assert.Equal(["x", "y"], ds.Arrays.Keys);
        Assert.Equal([2L, 3L], ds.Arrays["x"].Shape);
        var x = ds.Arrays["x"].ToFloatArray();
        Assert.Equal([-2f, 30f, 0.5f, float.NaN, float.NegativeInfinity, 7f], x);
        Assert.Equal([1L, 0L], ds.Arrays["y"].ToInt64Array());
    }

    [Fact]
    public void ACsvColumnGroupTakesTheInputsFixedRowShape()
    {
        var header = string.Join(",", Enumerable.Range(0, 4).Select(i => $"img[{i}]")) + ",label";
        var path = Write("img.csv", header + "\n1,2,3,4,9\n5,6,7,8,3\n");
        var ds = Dataset.Open(path, [Spec("img", DataType.Float16, "batch", 1L, 2L, 2L), Spec("label", DataType.Int32, "batch")]);
        Assert.Equal([2L, 1L, 2L, 2L], ds.Arrays["img"].Shape);
        Assert.Equal(DataType.Float16, ds.Arrays["img"].ElementType);
        Assert.Equal(new Half[] { (Half)1, (Half)2, (Half)3, (Half)4, (Half)5, (Half)6, (Half)7, (Half)8 }, ds.Arrays["img"].ToHalfArray());
        Assert.Equal([9, 3], ds.Arrays["label"].ToInt32Array());
    }

    [Fact]
    public void WithoutInputsCsvGroupsAreInt64WhenIntegralAndFloat32Otherwise()
    {
        var arrays = DataFiles.Read(Write("d.csv", "a,b[0],b[1]\n1,2,3\n-4,5.5,6\n"));
        Assert.Equal(DataType.Int64, arrays["a"].ElementType);
        Assert.Equal([1L, -4L], arrays["a"].ToInt64Array());
        Assert.Equal(DataType.Float, arrays["b"].ElementType);
        Assert.Equal([2L, 2L], arrays["b"].Shape);
        Assert.Equal([2f, 3f, 5.5f, 6f], arrays["b"].ToFloatArray());
    }

    [Fact]
    public void AFolderOfNpyFilesAndOneNpyFileReadAsAnNpzWould()
    {
        var folder = Directory.CreateDirectory(_dir.File("arrays")).FullName;
        var x = DataArray.FromFloat([1, 2, 3, 4, 5, 6], 2, 3);
        var y = DataArray.FromInt64([7, 8]);
        Npy.Write(Path.Combine(folder, "x.npy"), x);
        Npy.Write(Path.Combine(folder, "y.npy"), y);
        File.WriteAllText(Path.Combine(folder, "README.txt"), "not an array");
        var ds = Dataset.Open(folder, [X, Y]);
        Assert.Equal(x, ds.Arrays["x"]);
        Assert.Equal(y, ds.Arrays["y"]);

        var one = DataFiles.Read(Path.Combine(folder, "y.npy"));
        Assert.Equal(["y"], one.Keys);
        Assert.Equal(y, one["y"]);
    }

    [Fact]
    public void AnUnknownExtensionOrMissingPathOrEmptyFolderIsOneLine()
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() => DataFiles.Read(Write("d.parquet", "x")));
        Assert.Contains("d.parquet: unknown data file extension '.parquet'; expected .npz, .csv, .npy", e.Message);
        e = Assert.Throws<OnnxAdadeltaException>(() => DataFiles.Read(_dir.File("none.npz")));
        Assert.EndsWith("none.npz: no such file or folder.", e.Message);
        var empty = Directory.CreateDirectory(_dir.File("empty")).FullName;
        e = Assert.Throws<OnnxAdadeltaException>(() => DataFiles.Read(empty));
        Assert.Contains("holds one NAME.npy file per array; it has none", e.Message);
    }

    [Theory]
    [InlineData("x[0],x[1],x[2],y\n1,2,3,0\n4,5,1\n", "data.csv:3: 3 fields, but the header has 4 columns.")]
    [InlineData("x[0],x[1],x[2],y\n1,abc,3,0\n", "data.csv:2: column 2 ('x[1]'): 'abc' is not a float32 number.")]
    [InlineData("x[0],x[1],x[2],y\n1,2,3,0\n\n1,2,3,0.5\n", "data.csv:4: column 4 ('y'): '0.5' is not an integer in the int64 range.")]
    [InlineData("x[0],x[2],x[3],y\n1,2,3,0\n", "data.csv:1: the column group 'x' has 3 columns up to 'x[3]' but no 'x[1]'")]
    [InlineData("x[0],x[1],x[2],y,y\n1,2,3,0,0\n", "data.csv:1: column 5 repeats the name 'y' of column 4.")]
    [InlineData("x[0],x[1],x[2],y,\n1,2,3,0,0\n", "data.csv:1: column 5 has an empty name.")]
    [InlineData("x[0],x[1],x[2],y\n1,\"2,3,0\n", "data.csv:2: the quote opened at character 3 is not closed.")]
    [InlineData("x[0],x[1],y\n1,2,0\n", "data.csv: 'x' has 2 columns, but graph input 'x' (float32[batch,3]) needs 3 values per row (x[0] to x[2]).")]
    [InlineData("x[0],x[1],x[2],y[0]\n1,2,3,0\n", "data.csv: 'y' is a column group (1 column), but graph input 'y' (int64[batch]) takes one value per row: head one column 'y'.")]
    [InlineData("x,x[0]\n1,2\n", "data.csv:1: column 2 'x[0]' makes 'x' a column group, but column 1 is 'x' alone.")]
    [InlineData("\n\n", "data.csv: empty; a CSV data file starts with a header row naming the columns.")]
    public void MalformedCsvIsOneLineNamingFileLineAndColumn(string text, string expected)
    {
        var e = CsvFails(text);
        Assert.DoesNotContain('\n', e.Message);
        Assert.StartsWith(expected, e.Message);
    }

    [Fact]
    public void AMissingCsvColumnIsReportedByTheDatasetWithTheColumnsItHas()
    {
        var e = CsvFails("x[0],x[1],x[2],label\n1,2,3,0\n");
        Assert.Contains("has no array 'y' for graph input 'y' (int64[batch]); it has: x, label.", e.Message);
    }

    [Fact]
    public void AStepOnDatasetRowsEqualsAStepOnTheSameBytes()
    {
        var step = TestData.StepModel();
        var batch = TestData.Batch(3, rows: 12);
        var data = Dataset.FromArrays(new Dictionary<string, DataArray>
        {
            ["X"] = new(DataType.Float, batch["X"].Shape, batch["X"].Data),
            ["labels"] = new(DataType.Int64, batch["labels"].Shape, batch["labels"].Data),
        }, OnnxAdadelta.Training.TrainingRun.InputSpecs(step));
        long[] rows = [5, 6, 7, 0, 11, 2];
        var bytes = new Dictionary<string, (byte[] Data, long[] Shape)>
        {
            ["X"] = data.Gather("X", rows),
            ["labels"] = data.Gather("labels", rows),
        };
        using var fromRows = new Trainer(step);
        using var fromBytes = new Trainer(step);
        for (int i = 0; i < 3; i++)
        {
            // A shorter batch in between changes the bound buffers' shape and back.
            long[] r = i == 1 ? rows[..4] : rows;
            var b = i == 1 ? new Dictionary<string, (byte[], long[])> { ["X"] = data.Gather("X", r), ["labels"] = data.Gather("labels", r) } : bytes;
            Assert.Equal(fromBytes.Step(b), fromRows.Step(data, r));
        }
        var expected = fromBytes.ReadState();
        var actual = fromRows.ReadState();
        foreach (var (name, value) in expected) Assert.Equal(value.RawData, actual[name].RawData);
        Assert.Equal(3, fromRows.Iteration);
    }

    [Fact]
    public void TrainAndEvaluateTakeCsvData()
    {
        var batch = TestData.Batch(5, rows: 40);
        var x = MemoryMarshal.Cast<byte, float>(batch["X"].Data).ToArray();
        var labels = MemoryMarshal.Cast<byte, long>(batch["labels"].Data).ToArray();
        var header = string.Join(",", Enumerable.Range(0, TestData.Features).Select(i => $"X[{i}]")) + ",labels";
        var lines = Enumerable.Range(0, 40).Select(r =>
            string.Join(",", x.Skip(r * TestData.Features).Take(TestData.Features).Select(v => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture))) + $",{labels[r]}");
        var csv = Write("train.csv", header + "\n" + string.Join("\n", lines) + "\n");
        var training = _dir.File("training.onnx");
        ModelIO.Save(TestData.TrainingGraph(), training);
        var ckpt = _dir.File("ckpt.onnx");
        var r = CliRunner.Run("train", training, "--data", csv, "--steps", "20", "--batch-size", "8", "--eval", csv, "-o", ckpt);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("held-out accuracy", r.Out);
        Assert.Contains("(40 rows", r.Out);

        var bad = Write("bad.csv", header + "\n" + lines.First() + "\n" + lines.First().Replace(",", ";") + "\n");
        r = CliRunner.Run("train", training, "--data", bad, "--steps", "2", "-o", _dir.File("never.onnx"));
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("onnx-adadelta: error: bad.csv:3: 1 field, but the header has 7 columns.", Assert.Single(r.ErrLines));
        Assert.False(File.Exists(_dir.File("never.onnx")));
    }
}
