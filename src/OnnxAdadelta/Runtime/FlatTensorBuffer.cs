using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace OnnxAdadelta.Runtime;

/// <summary>One named tensor of a <see cref="FlatTensorBuffer"/>: a slice of its memory bound to ONNX Runtime as an <see cref="OrtValue"/>.</summary>
public sealed class FlatSlice
{
    private readonly FlatTensorBuffer _owner;

    internal FlatSlice(FlatTensorBuffer owner, string name, long[] shape, long offset, long length, OrtValue value)
    {
        _owner = owner;
        Name = name;
        Shape = shape;
        Offset = offset;
        Length = length;
        Value = value;
    }

    /// <summary>The tensor's name (a graph input, output or gradient).</summary>
    public string Name { get; }

    /// <summary>The tensor's shape.</summary>
    public IReadOnlyList<long> Shape { get; }

    /// <summary>Where the slice starts in the buffer, in elements (a multiple of <see cref="FlatTensorBuffer.AlignmentBytes"/> in bytes).</summary>
    public long Offset { get; }

    /// <summary>The number of elements.</summary>
    public long Length { get; }

    /// <summary>
    /// The tensor as ONNX Runtime sees it: an <see cref="OrtValue"/> over the slice's memory (no copy). Bind it as a
    /// session input or output; what ORT writes to it lands in the buffer. Owned by the buffer.
    /// </summary>
    public OrtValue Value { get; }

    /// <summary>The slice's memory as <typeparamref name="T"/> (its size must be the element size).</summary>
    public Span<T> AsSpan<T>() where T : unmanaged => _owner.AsSpan<T>().Slice(checked((int)Offset), checked((int)Length));

    /// <summary>The slice's raw bytes.</summary>
    public Span<byte> Bytes => _owner.Bytes.Slice(checked((int)(Offset * _owner.ElementSize)), checked((int)(Length * _owner.ElementSize)));
}

/// <summary>
/// Tensors of one element type laid out in slices of one contiguous, zero-initialized block of native memory, each slice
/// bound to ONNX Runtime as an <see cref="OrtValue"/> over that memory. The trainer keeps parameters and optimizer state
/// in such buffers (one allocation and one pass per dtype), and gradients where the graph outputs them, so that a
/// collective (an all-reduce) can work on one <see cref="Span{T}"/> of the whole buffer.
/// </summary>
/// <remarks>
/// Each slice starts at a multiple of <see cref="AlignmentBytes"/>; the gaps between slices hold zeros that nothing
/// writes, so an elementwise collective over the whole buffer leaves them zero. The memory is CPU memory and is freed
/// by <see cref="Dispose"/>, after which neither the spans nor the OrtValues may be used.
/// </remarks>
public sealed unsafe class FlatTensorBuffer : IDisposable
{
    /// <summary>The alignment of the buffer and of each slice, in bytes.</summary>
    public const int AlignmentBytes = 64;

    private readonly List<FlatSlice> _slices = [];
    private readonly Dictionary<string, FlatSlice> _byName = new(StringComparer.Ordinal);
    private void* _memory;

    /// <summary>Lays out <paramref name="tensors"/> in order in one new zeroed buffer of <paramref name="elementType"/>.</summary>
    /// <param name="elementType">The element type of every tensor.</param>
    /// <param name="tensors">Each tensor's name (unique) and shape.</param>
    /// <exception cref="ArgumentException">An unsupported element type, a repeated name or a negative dimension.</exception>
    public FlatTensorBuffer(TensorElementType elementType, IEnumerable<(string Name, long[] Shape)> tensors)
    {
        ElementType = elementType;
        ElementSize = SizeOf(elementType);
        int align = AlignmentBytes / ElementSize;
        var layout = new List<(string Name, long[] Shape, long Offset, long Length)>();
        long end = 0;
        foreach (var (name, shape) in tensors)
        {
            if (shape.Any(d => d < 0)) throw new ArgumentException($"Tensor '{name}' has shape [{string.Join(",", shape)}]; fixed dimensions >= 0 expected.", nameof(tensors));
            if (layout.Any(l => l.Name == name)) throw new ArgumentException($"Tensor '{name}' appears twice.", nameof(tensors));
            long length = shape.Aggregate(1L, (a, d) => checked(a * d));
            long offset = (end + align - 1) / align * align;
            layout.Add((name, shape, offset, length));
            end = offset + length;
        }
        Length = (end + align - 1) / align * align;
        nuint bytes = (nuint)Math.Max(Length * ElementSize, AlignmentBytes);
        _memory = NativeMemory.AlignedAlloc(bytes, AlignmentBytes);
        NativeMemory.Clear(_memory, bytes);
        try
        {
            foreach (var (name, shape, offset, length) in layout)
            {
                var value = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, elementType, shape,
                    (IntPtr)((byte*)_memory + offset * ElementSize), length * ElementSize);
                var slice = new FlatSlice(this, name, shape, offset, length, value);
                _slices.Add(slice);
                _byName[name] = slice;
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The element type of every slice.</summary>
    public TensorElementType ElementType { get; }

    /// <summary>Bytes per element.</summary>
    public int ElementSize { get; }

    /// <summary>The buffer's length in elements, padding included.</summary>
    public long Length { get; }

    /// <summary>The slices, in the order they were given (and lie in memory).</summary>
    public IReadOnlyList<FlatSlice> Slices => _slices;

    /// <summary>The slice of tensor <paramref name="name"/>.</summary>
    /// <exception cref="KeyNotFoundException">No slice has that name.</exception>
    public FlatSlice this[string name] => _byName.TryGetValue(name, out var s) ? s
        : throw new KeyNotFoundException($"The flat {ElementType} buffer has no tensor '{name}' (it has {string.Join(", ", _byName.Keys)}).");

    /// <summary>Whether the buffer holds tensor <paramref name="name"/>.</summary>
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>The start of the memory (valid until <see cref="Dispose"/>).</summary>
    public IntPtr Pointer => _memory is null ? throw new ObjectDisposedException(nameof(FlatTensorBuffer)) : (IntPtr)_memory;

    /// <summary>The whole buffer as <typeparamref name="T"/>, padding included (for example float for a float32 buffer).</summary>
    /// <exception cref="ArgumentException"><typeparamref name="T"/>'s size is not the element size.</exception>
    public Span<T> AsSpan<T>() where T : unmanaged
    {
        if (sizeof(T) != ElementSize) throw new ArgumentException($"{typeof(T).Name} has {sizeof(T)} bytes; the buffer's {ElementType} elements have {ElementSize}.");
        return new Span<T>((void*)Pointer, checked((int)Length));
    }

    /// <summary>The whole buffer's bytes.</summary>
    public Span<byte> Bytes => new((void*)Pointer, checked((int)(Length * ElementSize)));

    /// <summary>Bytes per element of the element types a flat buffer holds.</summary>
    /// <exception cref="ArgumentException">Another element type.</exception>
    public static int SizeOf(TensorElementType type) => type switch
    {
        TensorElementType.Float or TensorElementType.Int32 => 4,
        TensorElementType.Float16 or TensorElementType.BFloat16 => 2,
        TensorElementType.Int64 or TensorElementType.Double => 8,
        TensorElementType.Bool or TensorElementType.UInt8 or TensorElementType.Int8 => 1,
        _ => throw new ArgumentException($"A flat buffer cannot hold {type} tensors.", nameof(type)),
    };

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var s in _slices) s.Value.Dispose();
        _slices.Clear();
        _byName.Clear();
        if (_memory is not null) NativeMemory.AlignedFree(_memory);
        _memory = null;
    }
}
