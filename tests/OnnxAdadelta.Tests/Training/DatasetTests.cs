using System.Runtime.InteropServices;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Training;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Training;

public sealed class DatasetTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("dataset-test-");

    public void Dispose() => _dir.Delete(recursive: true);

    private static InputSpec Spec(string name, DataType type, params object?[] dims) => new(name, type, dims);

    private static readonly InputSpec X = Spec("x", DataType.Float, "batch", 3L);
    private static readonly InputSpec Y = Spec("y", DataType.Int64, "batch");

    /// <summary>Row r of x is [10r, 10r+1, 10r+2]; y[r] = r.</summary>
    private static Dictionary<string, DataArray> Digits(int rows = 10) => new()
    {
        ["x"] = DataArray.FromFloat(Enumerable.Range(0, rows).SelectMany(r => new float[] { 10 * r, 10 * r + 1, 10 * r + 2 }).ToArray(), rows, 3),
        ["y"] = DataArray.FromInt64(Enumerable.Range(0, rows).Select(r => (long)r).ToArray()),
    };

    private static OnnxAdadeltaException Fails(Func<object> f) => Assert.Throws<OnnxAdadeltaException>(f);

    [Fact]
    public void OpenReadsTheInputsAndIgnoresOtherArrays()
    {
        var path = Path.Combine(_dir.FullName, "digits.npz");
        var arrays = Digits();
        arrays["unused"] = DataArray.FromDouble([1, 2, 3]);
        Npz.Write(path, arrays);

        var ds = Dataset.Open(path, [X, Y]);

        Assert.Equal(10, ds.RowCount);
        Assert.Equal(["x", "y"], ds.Arrays.Keys);
        Assert.Equal(arrays["x"], ds.Arrays["x"]);
        Assert.Null(ds.FixedBatchSize);
        Assert.Equal(path, ds.Source);
    }

    [Fact]
    public void MissingArrayNamesFileArrayInputAndWhatIsThere()
    {
        var path = Path.Combine(_dir.FullName, "digits.npz");
        Npz.Write(path, Digits());
        var e = Fails(() => Dataset.Open(path, [X, Spec("labels", DataType.Int64, "batch")]));
        Assert.Equal($"{path} has no array 'labels' for graph input 'labels' (int64[batch]); it has: x, y.", e.Message);
    }

    [Fact]
    public void WrongElementTypeIsNamed()
    {
        var arrays = Digits();
        arrays["x"] = DataArray.FromDouble(new double[30], 10, 3);
        var e = Fails(() => Dataset.FromArrays(arrays, [X, Y], "d.npz"));
        Assert.StartsWith("array 'x' in d.npz is float64, graph input 'x' wants float32", e.Message);
    }

    [Fact]
    public void WrongRankIsNamed()
    {
        var e = Fails(() => Dataset.FromArrays(Digits(), [X, Spec("y", DataType.Int64, "batch", 1L)], "d.npz"));
        Assert.Contains("array 'y' in d.npz has shape (10,) (rank 1)", e.Message);
        Assert.Contains("graph input 'y' (int64[batch,1]) has rank 2", e.Message);
    }

    [Fact]
    public void ScalarArrayIsRejected()
    {
        var arrays = Digits();
        arrays["y"] = new DataArray(DataType.Int64, [], new byte[8]);
        var e = Fails(() => Dataset.FromArrays(arrays, [X, new InputSpec("y", DataType.Int64, null)], "d.npz"));
        Assert.Contains("array 'y' in d.npz is a scalar", e.Message);
    }

    [Fact]
    public void FixedNonBatchDimensionMismatchIsNamed()
    {
        var e = Fails(() => Dataset.FromArrays(Digits(), [Spec("x", DataType.Float, "batch", 4L), Y], "d.npz"));
        Assert.Equal("array 'x' in d.npz has shape (10, 3), graph input 'x' (float32[batch,4]): dimension 1 is 3, expected 4.", e.Message);
    }

    [Fact]
    public void SymbolicDimensionsMustAgreeAcrossInputs()
    {
        var arrays = new Dictionary<string, DataArray>
        {
            ["a"] = DataArray.FromFloat(new float[10], 2, 5),
            ["b"] = DataArray.FromFloat(new float[12], 2, 6),
        };
        var e = Fails(() => Dataset.FromArrays(arrays,
            [Spec("a", DataType.Float, "n", "seq"), Spec("b", DataType.Float, "n", "seq")], "s.npz"));
        Assert.Contains("array 'b' in s.npz", e.Message);
        Assert.Contains("'seq'", e.Message);
        Assert.Contains("array 'a' makes it 5", e.Message);

        // Unknown (null) dimensions and unknown ranks accept anything.
        var ok = Dataset.FromArrays(arrays, [Spec("a", DataType.Float, null, null), new InputSpec("b", DataType.Float, null)]);
        Assert.Equal(2, ok.RowCount);
    }

    [Fact]
    public void DifferentRowCountsAreListed()
    {
        var arrays = Digits();
        arrays["y"] = DataArray.FromInt64(new long[9]);
        var e = Fails(() => Dataset.FromArrays(arrays, [X, Y], "d.npz"));
        Assert.Equal("The arrays in d.npz have different row counts (axis 0): 'x' has 10, 'y' has 9.", e.Message);
    }

    [Fact]
    public void EmptyDatasetIsRejected()
    {
        var e = Fails(() => Dataset.FromArrays(Digits(0), [X, Y], "d.npz"));
        Assert.StartsWith("d.npz has no rows", e.Message);
    }

    [Fact]
    public void InputsThatCantBeFedAreRejected()
    {
        Assert.Contains("graph input 'x' (float32[]) is a scalar",
            Fails(() => Dataset.FromArrays(Digits(), [Spec("x", DataType.Float)])).Message);
        Assert.Contains("graph input 's' (string[batch])",
            Fails(() => Dataset.FromArrays(Digits(), [Spec("s", DataType.String, "batch")])).Message);
        Assert.Contains("no graph inputs", Fails(() => Dataset.FromArrays(Digits(), [])).Message);
    }

    [Fact]
    public void InputsDisagreeingOnAFixedBatchAreRejected()
    {
        var e = Fails(() => Dataset.FromArrays(Digits(), [Spec("x", DataType.Float, 5L, 3L), Spec("y", DataType.Int64, 2L)]));
        Assert.Contains("'x' is float32[5,3]", e.Message);
        Assert.Contains("'y' is int64[2]", e.Message);
    }

    [Fact]
    public void UndefinedElementTypeAcceptsAnyType()
    {
        var ds = Dataset.FromArrays(Digits(), [X, Spec("y", DataType.Undefined, "batch")]);
        Assert.Equal(DataType.Int64, ds.Arrays["y"].ElementType);
    }

    [Fact]
    public void SpecsComeFromGraphInputs()
    {
        var input = new ValueInfoProto
        {
            Name = "x",
            Type = new TypeProto
            {
                TensorType = new TypeProto.Types.Tensor
                {
                    ElemType = (int)DataType.Float,
                    Shape = new TensorShapeProto { Dim = { new TensorShapeProto.Types.Dimension { DimParam = "batch" }, new TensorShapeProto.Types.Dimension { DimValue = 3 } } },
                },
            },
        };
        var spec = InputSpec.From(input);
        Assert.Equal("x", spec.Name);
        Assert.Equal(DataType.Float, spec.ElementType);
        Assert.Equal(["batch", 3L], spec.Dims!);
        Assert.Equal("float32[batch,3]", spec.Describe());
        Assert.Null(spec.FixedBatchSize);
        Assert.Equal(7L, InputSpec.From(TypeProtos.ValueInfo("w", DataType.Float, [7, 3])).FixedBatchSize);
    }

    // ---- batch sizes ----

    [Fact]
    public void DynamicBatchKeepsAShortFinalBatch()
    {
        var plan = Dataset.FromArrays(Digits(), [X, Y]).Plan(4);
        Assert.Equal(3, plan.BatchesPerEpoch);
        Assert.Equal([4, 4, 2, 4], Enumerable.Range(0, 4).Select(s => plan.RowsForStep(s).Length));
        Assert.Equal([8L, 9L], plan.RowsForStep(2));
        Assert.Equal([0L, 1L, 2L, 3L], plan.RowsForStep(3));
        Assert.Equal(0, plan.RowsDroppedPerEpoch);
        Assert.False(plan.DropLast);
    }

    [Fact]
    public void FixedBatchDropsTheShortFinalBatch()
    {
        var ds = Dataset.FromArrays(Digits(), [Spec("x", DataType.Float, 4L, 3L), Spec("y", DataType.Int64, 4L)]);
        Assert.Equal(4, ds.FixedBatchSize);
        var plan = ds.Plan();
        Assert.Equal(4, plan.BatchSize);
        Assert.Equal(2, plan.BatchesPerEpoch);
        Assert.Equal(2, plan.RowsDroppedPerEpoch);
        Assert.Equal([4L, 5L, 6L, 7L], plan.RowsForStep(1));
        Assert.Equal([0L, 1L, 2L, 3L], plan.RowsForStep(2));
        Assert.Equal(2, ds.Plan(4).BatchesPerEpoch);
    }

    [Fact]
    public void FixedBatchOnOneInputFixesTheBatch()
    {
        var ds = Dataset.FromArrays(Digits(), [Spec("x", DataType.Float, 5L, 3L), Y]);
        Assert.Equal(5, ds.FixedBatchSize);
        Assert.Equal(2, ds.Plan().BatchesPerEpoch);
    }

    [Fact]
    public void DefaultBatchIsTheWholeDataset()
    {
        var plan = Dataset.FromArrays(Digits(), [X, Y]).Plan();
        Assert.Equal(10, plan.BatchSize);
        Assert.Equal(1, plan.BatchesPerEpoch);
        Assert.Equal(Enumerable.Range(0, 10).Select(i => (long)i), plan.RowsForStep(5));
    }

    [Fact]
    public void BatchSizeErrorsNameTheNumbers()
    {
        var dynamic = Dataset.FromArrays(Digits(), [X, Y], "d.npz");
        Assert.Equal("Batch size 11 is larger than the dataset: d.npz has 10 rows.", Fails(() => dynamic.Plan(11)).Message);
        Assert.Contains("Batch size 0", Fails(() => dynamic.Plan(0)).Message);
        Assert.Contains("Batch size -3", Fails(() => dynamic.Plan(-3)).Message);

        var fixedBatch = Dataset.FromArrays(Digits(), [Spec("x", DataType.Float, 4L, 3L), Y], "d.npz");
        var e = Fails(() => fixedBatch.Plan(8));
        Assert.StartsWith("Batch size 8 doesn't match the model's fixed batch dimension 4 (graph input 'x' is float32[4,3])", e.Message);

        var tooBig = Dataset.FromArrays(Digits(), [Spec("x", DataType.Float, 16L, 3L), Y], "d.npz");
        var f = Fails(() => tooBig.Plan());
        Assert.Contains("fixed batch dimension 16", f.Message);
        Assert.Contains("d.npz has 10 rows", f.Message);
    }

    // ---- gathering ----

    [Fact]
    public void GatherCopiesTheRowsInOrder()
    {
        var ds = Dataset.FromArrays(Digits(), [X, Y]);
        long[] rows = [7, 2, 3, 4, 0, 9, 9];

        var (x, xShape) = ds.Gather("x", rows);
        Assert.Equal([7L, 3L], xShape);
        Assert.Equal(rows.SelectMany(r => new float[] { 10 * r, 10 * r + 1, 10 * r + 2 }), MemoryMarshal.Cast<byte, float>(x).ToArray());

        var (y, yShape) = ds.Gather("y", rows);
        Assert.Equal([7L], yShape);
        Assert.Equal(rows, MemoryMarshal.Cast<byte, long>(y).ToArray());

        Assert.Equal(12, ds.RowBytes("x"));
        Assert.Equal([3L, 3L], ds.BatchShape("x", 3));
    }

    [Fact]
    public void GatherIntoACallerBuffer()
    {
        var ds = Dataset.FromArrays(Digits(), [X, Y]);
        var buffer = new byte[5 * 8 + 3];
        buffer.AsSpan().Fill(0xEE);
        ds.Gather("y", [4, 5, 6, 1, 2], buffer);
        Assert.Equal([4L, 5, 6, 1, 2], MemoryMarshal.Cast<byte, long>(buffer.AsSpan(0, 40)).ToArray());
        Assert.Equal([0xEE, 0xEE, 0xEE], buffer[40..]);

        Assert.Throws<ArgumentException>(() => ds.Gather("y", [1, 2], new byte[15]));
        Assert.Throws<ArgumentOutOfRangeException>(() => ds.Gather("y", [9, 10], new byte[16]));
        Assert.Throws<ArgumentOutOfRangeException>(() => ds.Gather("y", [-1], new byte[8]));
        Assert.Throws<ArgumentException>(() => ds.Gather("z", [1]));
    }

    [Fact]
    public void GatherOfAPlannedStepMatchesTheRows()
    {
        var ds = Dataset.FromArrays(Digits(), [X, Y]);
        var plan = ds.Plan(3, shuffle: true, seed: 11);
        for (long step = 0; step < 3 * plan.BatchesPerEpoch; step++)
        {
            var rows = plan.RowsForStep(step);
            var (y, _) = ds.Gather("y", rows);
            Assert.Equal(rows, MemoryMarshal.Cast<byte, long>(y).ToArray());
        }
    }
}
