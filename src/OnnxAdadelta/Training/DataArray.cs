using System.Buffers.Binary;
using System.Runtime.InteropServices;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Training;

/// <summary>
/// A dense, C-ordered (row-major) array in memory, whatever file it came from (.npz, .npy, .csv; see
/// <see cref="DataFiles"/>): element type, shape and the raw little-endian bytes, rows along axis 0. Construction
/// checks that the type is one the data files can hold (the element types NumPy has) and
/// that <paramref name="Data"/> holds exactly the elements <paramref name="Shape"/> describes. Two arrays are equal
/// when type, shape and bytes are.
/// </summary>
/// <param name="ElementType">The ONNX element type (Float, Double, Float16, Int64, Int32, Int16, Int8, Uint64, Uint32, Uint16, Uint8 or Bool).</param>
/// <param name="Shape">The dimensions, outermost first; empty for a scalar.</param>
/// <param name="Data">The elements in row-major order, little-endian; bools are one byte each, 0 or 1.</param>
public sealed record DataArray(DataType ElementType, long[] Shape, byte[] Data)
{
    /// <summary>The ONNX element type.</summary>
    public DataType ElementType { get; } = CheckType(ElementType);

    /// <summary>The dimensions, outermost first; empty for a scalar.</summary>
    public long[] Shape { get; } = CheckShape(Shape);

    /// <summary>The elements in row-major order as little-endian bytes.</summary>
    public byte[] Data { get; } = CheckData(ElementType, Shape, Data);

    /// <summary>Bytes per element.</summary>
    public int ElementSize => NpyDTypes.Size(ElementType);

    /// <summary>The number of elements (1 for a scalar).</summary>
    public long ElementCount => Count(Shape);

    /// <summary>The size of axis 0; a scalar has no rows and throws.</summary>
    public long RowCount => Shape.Length > 0 ? Shape[0] : throw new InvalidOperationException("A scalar array has no rows.");

    /// <summary>The NumPy name of the element type, such as <c>float32</c>.</summary>
    public string TypeName => NpyDTypes.Name(ElementType);

    /// <summary>The shape as Python writes a tuple: <c>()</c>, <c>(5,)</c>, <c>(2, 3)</c>.</summary>
    public string ShapeText => FormatShape(Shape);

    private static DataType CheckType(DataType type) =>
        NpyDTypes.IsSupported(type)
            ? type
            : throw new ArgumentException($"Element type {type} can't be stored in an .npy array; supported: {NpyDTypes.SupportedNames}.");

    private static long[] CheckShape(long[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        foreach (var d in shape)
            if (d < 0) throw new ArgumentException($"Shape {FormatShape(shape)} has a negative dimension.");
        return shape;
    }

    private static byte[] CheckData(DataType type, long[] shape, byte[] data)
    {
        ArgumentNullException.ThrowIfNull(data);
        long expected;
        try { expected = checked(Count(shape) * NpyDTypes.Size(type)); }
        catch (OverflowException) { throw new ArgumentException($"Shape {FormatShape(shape)} is too large."); }
        if (data.LongLength != expected)
            throw new ArgumentException(
                $"A {NpyDTypes.Name(type)} array of shape {FormatShape(shape)} needs {expected} bytes of data, got {data.LongLength}.");
        return data;
    }

    private static long Count(long[] shape)
    {
        long n = 1;
        foreach (var d in shape) n = checked(n * d);
        return n;
    }

    internal static string FormatShape(IReadOnlyList<long> shape) => shape.Count switch
    {
        0 => "()",
        1 => $"({shape[0]},)",
        _ => $"({string.Join(", ", shape)})",
    };

    // ---- factories ----

    /// <summary>A float32 array; with no <paramref name="shape"/> it is one-dimensional with <c>data.Length</c> elements.</summary>
    public static DataArray FromFloat(float[] data, params long[] shape) => Create(DataType.Float, data, shape);

    /// <summary>A float64 array; with no <paramref name="shape"/> it is one-dimensional.</summary>
    public static DataArray FromDouble(double[] data, params long[] shape) => Create(DataType.Double, data, shape);

    /// <summary>A float16 array; with no <paramref name="shape"/> it is one-dimensional.</summary>
    public static DataArray FromHalf(Half[] data, params long[] shape) => Create(DataType.Float16, data, shape);

    /// <summary>An int64 array; with no <paramref name="shape"/> it is one-dimensional.</summary>
    public static DataArray FromInt64(long[] data, params long[] shape) => Create(DataType.Int64, data, shape);

    /// <summary>An int32 array; with no <paramref name="shape"/> it is one-dimensional.</summary>
    public static DataArray FromInt32(int[] data, params long[] shape) => Create(DataType.Int32, data, shape);

    /// <summary>An int16 array; with no <paramref name="shape"/> it is one-dimensional.</summary>
    public static DataArray FromInt16(short[] data, params long[] shape) => Create(DataType.Int16, data, shape);

    /// <summary>An int8 array; with no <paramref name="shape"/> it is one-dimensional.</summary>
    public static DataArray FromInt8(sbyte[] data, params long[] shape) => Create(DataType.Int8, data, shape);

    /// <summary>A uint8 array; with no <paramref name="shape"/> it is one-dimensional.</summary>
    public static DataArray FromUInt8(byte[] data, params long[] shape) => Create(DataType.Uint8, data, shape);

    /// <summary>A bool array (one byte per element, 0 or 1); with no <paramref name="shape"/> it is one-dimensional.</summary>
    public static DataArray FromBool(bool[] data, params long[] shape)
    {
        ArgumentNullException.ThrowIfNull(data);
        var bytes = new byte[data.Length];
        for (int i = 0; i < data.Length; i++) bytes[i] = data[i] ? (byte)1 : (byte)0;
        return new DataArray(DataType.Bool, ShapeOrVector(shape, data.Length), bytes);
    }

    private static long[] ShapeOrVector(long[] shape, int length) => shape is { Length: > 0 } ? (long[])shape.Clone() : [length];

    private static DataArray Create<T>(DataType type, T[] data, long[] shape) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(data);
        var bytes = MemoryMarshal.AsBytes(data.AsSpan()).ToArray();
        if (!BitConverter.IsLittleEndian) SwapBytes(bytes, NpyDTypes.Size(type));
        return new DataArray(type, ShapeOrVector(shape, data.Length), bytes);
    }

    // ---- readers ----

    /// <summary>The elements of a float32 array.</summary>
    public float[] ToFloatArray() => ToArray<float>(DataType.Float);

    /// <summary>The elements of a float64 array.</summary>
    public double[] ToDoubleArray() => ToArray<double>(DataType.Double);

    /// <summary>The elements of a float16 array.</summary>
    public Half[] ToHalfArray() => ToArray<Half>(DataType.Float16);

    /// <summary>The elements of an int64 array.</summary>
    public long[] ToInt64Array() => ToArray<long>(DataType.Int64);

    /// <summary>The elements of an int32 array.</summary>
    public int[] ToInt32Array() => ToArray<int>(DataType.Int32);

    /// <summary>The elements of an int16 array.</summary>
    public short[] ToInt16Array() => ToArray<short>(DataType.Int16);

    /// <summary>The elements of an int8 array.</summary>
    public sbyte[] ToInt8Array() => ToArray<sbyte>(DataType.Int8);

    /// <summary>The elements of a uint8 array.</summary>
    public byte[] ToUInt8Array() => ToArray<byte>(DataType.Uint8);

    /// <summary>The elements of a bool array (any non-zero byte is true).</summary>
    public bool[] ToBoolArray()
    {
        Expect(DataType.Bool);
        var r = new bool[Data.Length];
        for (int i = 0; i < r.Length; i++) r[i] = Data[i] != 0;
        return r;
    }

    internal T[] ToArray<T>(DataType type) where T : unmanaged
    {
        Expect(type);
        if (BitConverter.IsLittleEndian) return MemoryMarshal.Cast<byte, T>(Data).ToArray();
        var copy = (byte[])Data.Clone();
        SwapBytes(copy, NpyDTypes.Size(type));
        return MemoryMarshal.Cast<byte, T>(copy).ToArray();
    }

    private void Expect(DataType type)
    {
        if (ElementType != type)
            throw new OnnxAdadeltaException($"Array {this} is {TypeName}, not {NpyDTypes.Name(type)}.");
    }

    /// <summary>Reverses the byte order of every <paramref name="elementSize"/>-byte element in place.</summary>
    internal static void SwapBytes(Span<byte> bytes, int elementSize)
    {
        switch (elementSize)
        {
            case 2:
                var s = MemoryMarshal.Cast<byte, ushort>(bytes);
                BinaryPrimitives.ReverseEndianness(s, s);
                break;
            case 4:
                var i = MemoryMarshal.Cast<byte, uint>(bytes);
                BinaryPrimitives.ReverseEndianness(i, i);
                break;
            case 8:
                var l = MemoryMarshal.Cast<byte, ulong>(bytes);
                BinaryPrimitives.ReverseEndianness(l, l);
                break;
        }
    }

    // ---- equality and display ----

    /// <summary>True when element type, shape and bytes are all equal.</summary>
    public bool Equals(DataArray? other) =>
        other is not null
        && ElementType == other.ElementType
        && Shape.AsSpan().SequenceEqual(other.Shape)
        && Data.AsSpan().SequenceEqual(other.Data);

    /// <summary>A hash of the element type, shape and length (not the bytes).</summary>
    public override int GetHashCode()
    {
        var h = new HashCode();
        h.Add(ElementType);
        foreach (var d in Shape) h.Add(d);
        h.Add(Data.Length);
        return h.ToHashCode();
    }

    /// <summary>Type and shape, such as <c>float32(2, 3)</c>.</summary>
    public override string ToString() => $"{TypeName}{ShapeText}";
}
