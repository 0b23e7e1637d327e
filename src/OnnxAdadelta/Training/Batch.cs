using System.Runtime.InteropServices;

namespace OnnxAdadelta.Training;

/// <summary>One data input's value in a <see cref="Batch"/>: raw little-endian elements and a shape.</summary>
/// <param name="Data">The elements, little-endian, row-major, in the input's element type.</param>
/// <param name="Shape">The shape; axis 0 is the rows.</param>
public sealed record BatchTensor(ReadOnlyMemory<byte> Data, long[] Shape)
{
    /// <summary>A float32 tensor of <paramref name="shape"/>.</summary>
    /// <exception cref="ArgumentException">The values don't fill the shape, or a dimension is negative.</exception>
    public static BatchTensor FromFloats(float[] values, params long[] shape)
    {
        ArgumentNullException.ThrowIfNull(values);
        return new(Checked(MemoryMarshal.AsBytes(values.AsSpan()).ToArray(), sizeof(float), shape), shape);
    }

    /// <summary>An int64 tensor of <paramref name="shape"/> (for example class labels).</summary>
    /// <exception cref="ArgumentException">The values don't fill the shape, or a dimension is negative.</exception>
    public static BatchTensor FromInt64s(long[] values, params long[] shape)
    {
        ArgumentNullException.ThrowIfNull(values);
        return new(Checked(MemoryMarshal.AsBytes(values.AsSpan()).ToArray(), sizeof(long), shape), shape);
    }

    private static byte[] Checked(byte[] data, int elementBytes, long[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        long count = 1;
        foreach (var d in shape)
        {
            if (d < 0) throw new ArgumentException($"Invalid shape [{string.Join(",", shape)}]: dimensions must be >= 0.", nameof(shape));
            count *= d;
        }
        if (count * elementBytes != data.Length)
            throw new ArgumentException($"{data.Length / elementBytes} values don't fill shape [{string.Join(",", shape)}] ({count} elements).", nameof(shape));
        return data;
    }
}

/// <summary>
/// The data of one training step, by data input name: either tensors given one by one (<see cref="Add(string, BatchTensor)"/>
/// and its typed forms) or rows of a <see cref="Dataset"/> (<see cref="FromRows"/>), which <see cref="Trainer.Step(Batch, bool)"/>
/// gathers straight into its bound input buffers (one copy).
/// </summary>
public sealed class Batch
{
    private readonly Dictionary<string, BatchTensor> _tensors = new(StringComparer.Ordinal);

    /// <summary>An empty batch; add one tensor per data input.</summary>
    public Batch() { }

    private Batch(Dataset dataset, long[] rows)
    {
        Dataset = dataset;
        RowIndices = rows;
    }

    /// <summary>The rows <paramref name="rows"/> of every input of <paramref name="dataset"/>, gathered when bound, not before.</summary>
    /// <exception cref="ArgumentException">No rows.</exception>
    public static Batch FromRows(Dataset dataset, long[] rows)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        ArgumentNullException.ThrowIfNull(rows);
        if (rows.Length == 0) throw new ArgumentException("A batch needs at least one row.", nameof(rows));
        return new Batch(dataset, rows);
    }

    /// <summary>A batch of raw tensors keyed by input name (bytes and shape, the form <see cref="Trainer.Step(IReadOnlyDictionary{string, ValueTuple{byte[], long[]}}, bool)"/> takes).</summary>
    public static Batch FromRaw(IReadOnlyDictionary<string, (byte[] Data, long[] Shape)> raw)
    {
        ArgumentNullException.ThrowIfNull(raw);
        var batch = new Batch();
        foreach (var (name, (data, shape)) in raw) batch.Add(name, new BatchTensor(data, shape));
        return batch;
    }

    /// <summary>The dataset whose rows this batch holds, or null for a batch of tensors.</summary>
    public Dataset? Dataset { get; }

    /// <summary>The dataset rows of this batch, or null for a batch of tensors.</summary>
    public long[]? RowIndices { get; }

    /// <summary>The tensors of a batch built with <see cref="Add(string, BatchTensor)"/>, by input name.</summary>
    public IReadOnlyDictionary<string, BatchTensor> Tensors => _tensors;

    /// <summary>Adds (or replaces) the value of data input <paramref name="name"/>; returns this batch.</summary>
    /// <exception cref="InvalidOperationException">The batch holds dataset rows.</exception>
    public Batch Add(string name, BatchTensor tensor)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(tensor);
        if (Dataset is not null) throw new InvalidOperationException("A batch of dataset rows takes no further tensors.");
        _tensors[name] = tensor;
        return this;
    }

    /// <summary>Adds a float32 tensor of <paramref name="shape"/>.</summary>
    public Batch Add(string name, float[] values, params long[] shape) => Add(name, BatchTensor.FromFloats(values, shape));

    /// <summary>Adds an int64 tensor of <paramref name="shape"/>.</summary>
    public Batch Add(string name, long[] values, params long[] shape) => Add(name, BatchTensor.FromInt64s(values, shape));

    /// <summary>Rows in the batch (axis 0 of the first tensor), or 0 when empty.</summary>
    public int Rows => RowIndices?.Length ?? (_tensors.Count == 0 ? 0 : (int)_tensors.Values.First().Shape.FirstOrDefault(1));
}
