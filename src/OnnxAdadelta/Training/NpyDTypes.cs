using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Training;

/// <summary>
/// The element types that travel between NumPy files and ONNX tensors: their size, their NumPy name (<c>float32</c>)
/// and their little-endian NPY descriptor (<c>&lt;f4</c>).
/// </summary>
internal static class NpyDTypes
{
    private static readonly (DataType Type, int Size, string Name, string Descr)[] Table =
    [
        (DataType.Float, 4, "float32", "<f4"),
        (DataType.Double, 8, "float64", "<f8"),
        (DataType.Float16, 2, "float16", "<f2"),
        (DataType.Int64, 8, "int64", "<i8"),
        (DataType.Int32, 4, "int32", "<i4"),
        (DataType.Int16, 2, "int16", "<i2"),
        (DataType.Int8, 1, "int8", "|i1"),
        (DataType.Uint64, 8, "uint64", "<u8"),
        (DataType.Uint32, 4, "uint32", "<u4"),
        (DataType.Uint16, 2, "uint16", "<u2"),
        (DataType.Uint8, 1, "uint8", "|u1"),
        (DataType.Bool, 1, "bool", "|b1"),
    ];

    /// <summary>The supported descriptors, for error messages.</summary>
    public static readonly string SupportedDescrs = string.Join(", ", Table.Select(t => t.Descr));

    /// <summary>The supported NumPy names, for error messages.</summary>
    public static readonly string SupportedNames = string.Join(", ", Table.Select(t => t.Name));

    private static int IndexOf(DataType type)
    {
        for (int i = 0; i < Table.Length; i++)
            if (Table[i].Type == type) return i;
        return -1;
    }

    /// <summary>Whether <paramref name="type"/> can be stored in an .npy file by this library.</summary>
    public static bool IsSupported(DataType type) => IndexOf(type) >= 0;

    /// <summary>Bytes per element; throws for an unsupported type.</summary>
    public static int Size(DataType type)
    {
        int i = IndexOf(type);
        if (i < 0) throw new ArgumentException($"Element type {type} has no NumPy equivalent here; supported: {SupportedNames}.");
        return Table[i].Size;
    }

    /// <summary>The NumPy name (<c>float32</c>), or the lower-case ONNX name for a type NumPy files can't hold.</summary>
    public static string Name(DataType type)
    {
        int i = IndexOf(type);
        return i >= 0 ? Table[i].Name : type.ToString().ToLowerInvariant();
    }

    /// <summary>The little-endian descriptor written into .npy headers.</summary>
    public static string Descr(DataType type)
    {
        int i = IndexOf(type);
        if (i < 0) throw new ArgumentException($"Element type {type} has no NumPy equivalent here; supported: {SupportedNames}.");
        return Table[i].Descr;
    }

    /// <summary>
    /// Parses a descriptor such as <c>&lt;f4</c>, <c>&gt;i8</c>, <c>=f8</c> or <c>|b1</c>. <paramref name="bigEndian"/>
    /// is true when the stored bytes must be swapped to become little-endian (never for one-byte types).
    /// </summary>
    public static bool TryParseDescr(string descr, out DataType type, out bool bigEndian)
    {
        type = DataType.Undefined;
        bigEndian = false;
        char order = '=';
        var rest = descr;
        if (rest.Length > 0 && rest[0] is '<' or '>' or '=' or '|')
        {
            order = rest[0];
            rest = rest[1..];
        }
        foreach (var (t, size, _, d) in Table)
        {
            if (!string.Equals(d[1..], rest, StringComparison.Ordinal)) continue;
            type = t;
            bool nativeBig = !BitConverter.IsLittleEndian;
            bigEndian = size > 1 && (order == '>' || (order is '=' or '|' && nativeBig));
            return true;
        }
        return false;
    }
}
