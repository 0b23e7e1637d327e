using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Training;

/// <summary>
/// Training data matched to a model's inputs: one array per graph input, all with the same number of rows along
/// axis 0, each checked against the input's element type, rank and fixed dimensions. Batches are rows gathered
/// along axis 0; <see cref="Plan"/> decides which rows go into the batch of each step.
/// </summary>
public sealed class Dataset
{
    private readonly OrderedDictionary<string, DataArray> _arrays;
    private readonly Dictionary<string, int> _rowBytes;
    private readonly InputSpec? _fixedBatchInput;

    private Dataset(string source, IReadOnlyList<InputSpec> inputs, OrderedDictionary<string, DataArray> arrays,
        long rowCount, InputSpec? fixedBatchInput)
    {
        Source = source;
        Inputs = inputs;
        _arrays = arrays;
        RowCount = rowCount;
        _fixedBatchInput = fixedBatchInput;
        _rowBytes = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (name, array) in arrays) _rowBytes[name] = (int)(array.Data.LongLength / rowCount);
    }

    /// <summary>
    /// Reads the arrays named after <paramref name="inputs"/> from <paramref name="path"/> (an .npz, a .csv with a header
    /// row, an .npy, or a folder of .npy files; see <see cref="DataFiles"/>) and checks them (see <see cref="FromArrays"/>).
    /// Arrays that no input uses are not loaded.
    /// </summary>
    public static Dataset Open(string path, IReadOnlyList<InputSpec> inputs)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(inputs);
        var arrays = DataFiles.Read(path, inputs, out var names);
        return Build(path, inputs, arrays, names);
    }

    /// <summary>
    /// A dataset over arrays already in memory, keyed by graph input name; <paramref name="source"/> names them in
    /// errors. Every input needs an array of its element type and rank whose fixed non-batch dimensions match and
    /// whose symbolic dimensions agree across inputs; all arrays need the same, non-zero, number of rows. Arrays that no
    /// input uses are ignored. Each failure is an <see cref="OnnxAdadeltaException"/> naming the array and input.
    /// </summary>
    public static Dataset FromArrays(IReadOnlyDictionary<string, DataArray> arrays, IReadOnlyList<InputSpec> inputs, string source = "the dataset")
    {
        ArgumentNullException.ThrowIfNull(arrays);
        ArgumentNullException.ThrowIfNull(inputs);
        return Build(source, inputs, arrays, arrays.Keys.ToList());
    }

    internal static Dataset Build(string source, IReadOnlyList<InputSpec> inputs, IReadOnlyDictionary<string, DataArray> available,
        IReadOnlyList<string> allNames)
    {
        if (inputs.Count == 0) throw new OnnxAdadeltaException($"The model has no graph inputs to feed from {source}.");
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var input in inputs)
        {
            ArgumentNullException.ThrowIfNull(input);
            if (!names.Add(input.Name)) throw new ArgumentException($"Graph input '{input.Name}' is listed twice.", nameof(inputs));
        }

        var arrays = new OrderedDictionary<string, DataArray>(StringComparer.Ordinal);
        // Symbolic non-batch dimensions must take one value across all inputs: symbol -> (value, input, axis).
        var symbols = new Dictionary<string, (long Value, string Input, int Axis)>(StringComparer.Ordinal);
        foreach (var input in inputs)
        {
            var want = $"graph input '{input.Name}' ({input.Describe()})";
            if (input.ElementType != DataType.Undefined && !NpyDTypes.IsSupported(input.ElementType))
                throw new OnnxAdadeltaException(
                    $"{want} has an element type that can't be fed from {source}; supported: {NpyDTypes.SupportedNames}.");
            if (input.Dims is { Count: 0 })
                throw new OnnxAdadeltaException($"{want} is a scalar; it can't take rows from {source}.");

            if (!available.TryGetValue(input.Name, out var array) || array is null)
            {
                var has = allNames.Count == 0 ? "it has no arrays" : $"it has: {string.Join(", ", allNames)}";
                throw new OnnxAdadeltaException($"{source} has no array '{input.Name}' for {want}; {has}.");
            }
            var what = $"array '{input.Name}' in {source}";
            if (input.ElementType != DataType.Undefined && array.ElementType != input.ElementType)
                throw new OnnxAdadeltaException(
                    $"{what} is {array.TypeName}, graph input '{input.Name}' wants {NpyDTypes.Name(input.ElementType)} " +
                    $"(convert it with .astype(np.{NpyDTypes.Name(input.ElementType)})).");
            if (array.Shape.Length == 0)
                throw new OnnxAdadeltaException($"{what} is a scalar; {want} needs one row per example along axis 0.");
            if (input.Dims is { } dims)
            {
                if (array.Shape.Length != dims.Count)
                    throw new OnnxAdadeltaException(
                        $"{what} has shape {array.ShapeText} (rank {array.Shape.Length}), {want} has rank {dims.Count}.");
                for (int axis = 1; axis < dims.Count; axis++)
                {
                    long actual = array.Shape[axis];
                    switch (dims[axis])
                    {
                        case long expected when expected != actual:
                            throw new OnnxAdadeltaException(
                                $"{what} has shape {array.ShapeText}, {want}: dimension {axis} is {actual}, expected {expected}.");
                        case string symbol when symbols.TryGetValue(symbol, out var prior) && prior.Value != actual:
                            throw new OnnxAdadeltaException(
                                $"{what} has shape {array.ShapeText}, so '{symbol}' (dimension {axis} of {want}) is {actual}, " +
                                $"but array '{prior.Input}' makes it {prior.Value} (its dimension {prior.Axis}).");
                        case string symbol:
                            symbols.TryAdd(symbol, (actual, input.Name, axis));
                            break;
                    }
                }
            }
            arrays.Add(input.Name, array);
        }

        long rows = arrays.GetAt(0).Value.Shape[0];
        if (arrays.Values.Any(a => a.Shape[0] != rows))
            throw new OnnxAdadeltaException(
                $"The arrays in {source} have different row counts (axis 0): " +
                $"{string.Join(", ", arrays.Select(kv => $"'{kv.Key}' has {kv.Value.Shape[0]}"))}.");
        if (rows == 0)
            throw new OnnxAdadeltaException(
                $"{source} has no rows (array '{arrays.GetAt(0).Key}' has shape {arrays.GetAt(0).Value.ShapeText}); there is nothing to train on.");

        InputSpec? fixedInput = null;
        foreach (var input in inputs)
        {
            if (input.FixedBatchSize is not { } size) continue;
            if (fixedInput is null) fixedInput = input;
            else if (fixedInput.FixedBatchSize != size)
                throw new OnnxAdadeltaException(
                    $"The model's inputs disagree on the fixed batch dimension: graph input '{fixedInput.Name}' is {fixedInput.Describe()}, " +
                    $"graph input '{input.Name}' is {input.Describe()}.");
        }
        if (fixedInput is { FixedBatchSize: < 1 })
            throw new OnnxAdadeltaException($"Graph input '{fixedInput.Name}' ({fixedInput.Describe()}) has a fixed batch dimension below 1.");
        return new Dataset(source, inputs, arrays, rows, fixedInput);
    }

    /// <summary>Where the data came from (the data file's path), as errors name it.</summary>
    public string Source { get; }

    /// <summary>The graph inputs the dataset feeds, in the order given.</summary>
    public IReadOnlyList<InputSpec> Inputs { get; }

    /// <summary>The array for each graph input, in input order.</summary>
    public IReadOnlyDictionary<string, DataArray> Arrays => _arrays;

    /// <summary>Rows (examples) in the dataset: the common size of axis 0.</summary>
    public long RowCount { get; }

    /// <summary>The model's fixed batch size (dimension 0 of an input), or null when the batch dimension is free.</summary>
    public int? FixedBatchSize => _fixedBatchInput?.FixedBatchSize is { } n ? (int)Math.Min(n, int.MaxValue) : null;

    /// <summary>
    /// Plans the batches: <paramref name="batchSize"/> rows each (by default the whole dataset, or the model's fixed batch
    /// size), with a short final batch per epoch when the batch dimension is free and none when it is fixed. A size below 1,
    /// larger than the dataset, or other than a fixed batch dimension is an <see cref="OnnxAdadeltaException"/>.
    /// </summary>
    public BatchPlan Plan(int? batchSize = null, bool shuffle = false, long seed = 0)
    {
        if (batchSize is < 1)
            throw new OnnxAdadeltaException($"Batch size {batchSize} is invalid; it must be at least 1.");
        long size;
        if (_fixedBatchInput is { FixedBatchSize: { } fixedSize })
        {
            if (batchSize is { } requested && requested != fixedSize)
                throw new OnnxAdadeltaException(
                    $"Batch size {requested} doesn't match the model's fixed batch dimension {fixedSize} " +
                    $"(graph input '{_fixedBatchInput.Name}' is {_fixedBatchInput.Describe()}); leave the batch size out or use {fixedSize}.");
            if (fixedSize > RowCount)
                throw new OnnxAdadeltaException(
                    $"The model's fixed batch dimension {fixedSize} (graph input '{_fixedBatchInput.Name}' is {_fixedBatchInput.Describe()}) " +
                    $"is larger than the dataset: {Source} has {RowCount} rows.");
            size = fixedSize;
        }
        else
        {
            size = batchSize ?? RowCount;
            if (size > RowCount)
                throw new OnnxAdadeltaException($"Batch size {size} is larger than the dataset: {Source} has {RowCount} rows.");
        }
        return new BatchPlan(RowCount, (int)size, dropLast: _fixedBatchInput is not null, shuffle, seed);
    }

    /// <summary>Bytes in one row of the array for <paramref name="input"/>.</summary>
    public int RowBytes(string input) => _rowBytes.TryGetValue(input, out var n)
        ? n
        : throw new ArgumentException($"'{input}' is not one of the dataset's inputs ({string.Join(", ", _arrays.Keys)}).", nameof(input));

    /// <summary>The shape of a batch of <paramref name="rows"/> rows of <paramref name="input"/>.</summary>
    public long[] BatchShape(string input, int rows)
    {
        RowBytes(input);
        var shape = (long[])_arrays[input].Shape.Clone();
        shape[0] = rows;
        return shape;
    }

    /// <summary>Copies the given rows of <paramref name="input"/>'s array, in order, into a new contiguous batch buffer.</summary>
    public (byte[] Data, long[] Shape) Gather(string input, ReadOnlySpan<long> rows)
    {
        long bytes = (long)RowBytes(input) * rows.Length;
        if (bytes > Array.MaxLength)
            throw new OnnxAdadeltaException(
                $"A batch of {rows.Length} rows of array '{input}' in {Source} needs {bytes} bytes, over the {Array.MaxLength}-byte limit of one buffer.");
        var data = new byte[bytes];
        Gather(input, rows, data);
        return (data, BatchShape(input, rows.Length));
    }

    /// <summary>
    /// Copies the given rows of <paramref name="input"/>'s array, in order, to the start of <paramref name="destination"/>,
    /// which must hold at least <c>rows.Length * RowBytes(input)</c> bytes. Runs of consecutive rows are copied as one block.
    /// </summary>
    public void Gather(string input, ReadOnlySpan<long> rows, Span<byte> destination)
    {
        int rowBytes = RowBytes(input);
        long needed = (long)rowBytes * rows.Length;
        if (destination.Length < needed)
            throw new ArgumentException($"The destination holds {destination.Length} bytes; {rows.Length} rows of '{input}' need {needed}.", nameof(destination));
        ReadOnlySpan<byte> source = _arrays[input].Data;
        int i = 0;
        while (i < rows.Length)
        {
            long first = CheckRow(rows[i]);
            int run = 1;
            while (i + run < rows.Length && rows[i + run] == first + run) run++;
            CheckRow(first + run - 1);
            source.Slice((int)(first * rowBytes), run * rowBytes).CopyTo(destination.Slice(i * rowBytes));
            i += run;
        }
    }

    private long CheckRow(long row) =>
        (ulong)row < (ulong)RowCount ? row : throw new ArgumentOutOfRangeException(nameof(row), row, $"Rows are 0 to {RowCount - 1}.");
}
