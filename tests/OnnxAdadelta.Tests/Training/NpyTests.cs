using System.Buffers.Binary;
using System.Text;
using OnnxAdadelta.Training;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Training;

public class NpyTests
{
    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    /// <summary>Magic, version, header length and header text exactly as given (no padding added), then the data.</summary>
    internal static byte[] Assemble(int major, string header, byte[] data, Encoding? encoding = null)
    {
        var text = (encoding ?? Encoding.ASCII).GetBytes(header);
        var ms = new MemoryStream();
        ms.Write(Magic);
        ms.WriteByte((byte)major);
        ms.WriteByte(0);
        if (major == 1) ms.Write([(byte)(text.Length & 0xFF), (byte)(text.Length >> 8)]);
        else
        {
            var len = new byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(len, (uint)text.Length);
            ms.Write(len);
        }
        ms.Write(text);
        ms.Write(data);
        return ms.ToArray();
    }

    private static byte[] LittleEndianFloats(params float[] values)
    {
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), values[i]);
        return bytes;
    }

    private static DataArray Parse(byte[] bytes, string source = "test.npy") => Npy.Read(new MemoryStream(bytes), source);

    // np.save(f, np.arange(6, dtype='<f4').reshape(2, 3)) writes this header: 59 characters of dict, 58 spaces and a
    // newline, so that 6 + 2 + 2 + 118 = 128 bytes precede the data.
    private static readonly string NumPyHeader2x3 =
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" + new string(' ', 58) + "\n";

    [Fact]
    public void HandAssembledVersion1ArrayParses()
    {
        Assert.Equal(118, NumPyHeader2x3.Length);
        var bytes = Assemble(1, NumPyHeader2x3, LittleEndianFloats(0, 1, 2, 3, 4.5f, -5));
        Assert.Equal(0x76, bytes[8]);
        Assert.Equal(0x00, bytes[9]);

        var a = Parse(bytes);

        Assert.Equal(DataType.Float, a.ElementType);
        Assert.Equal([2L, 3L], a.Shape);
        Assert.Equal([0f, 1, 2, 3, 4.5f, -5], a.ToFloatArray());
        Assert.Equal(6, a.ElementCount);
        Assert.Equal(2, a.RowCount);
    }

    [Fact]
    public void WriterProducesTheSameBytesAsNumPy()
    {
        var expected = Assemble(1, NumPyHeader2x3, LittleEndianFloats(0, 1, 2, 3, 4, 5));
        var ms = new MemoryStream();
        Npy.Write(ms, DataArray.FromFloat([0, 1, 2, 3, 4, 5], 2, 3));
        Assert.Equal(expected, ms.ToArray());
    }

    [Fact]
    public void Version2HeaderParses()
    {
        // np.lib.format.write_array(f, a, version=(2, 0)): 4-byte length, data at 128.
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" + new string(' ', 56) + "\n";
        var bytes = Assemble(2, header, LittleEndianFloats(1, 2, 3, 4, 5, 6));
        Assert.Equal(128, bytes.Length - 24);
        var a = Parse(bytes);
        Assert.Equal([2L, 3L], a.Shape);
        Assert.Equal([1f, 2, 3, 4, 5, 6], a.ToFloatArray());
    }

    [Fact]
    public void Version3HeaderIsUtf8()
    {
        var header = "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), 'note': 'é', }\n";
        var bytes = Assemble(3, header, [1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF], Encoding.UTF8);
        Assert.Equal([1, -1], Parse(bytes).ToInt32Array());
    }

    [Fact]
    public void UnknownVersionIsRejected()
    {
        var bytes = Assemble(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0,), }\n", []);
        bytes[6] = 4;
        var e = Assert.Throws<OnnxAdadeltaException>(() => Parse(bytes));
        Assert.Contains("test.npy", e.Message);
        Assert.Contains("4.0", e.Message);
    }

    [Fact]
    public void BigEndianArraysAreConvertedToLittleEndian()
    {
        var f = Parse(Assemble(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }\n",
            [0x3F, 0xC0, 0x00, 0x00, 0xC1, 0x20, 0x00, 0x00]));
        Assert.Equal(DataType.Float, f.ElementType);
        Assert.Equal([1.5f, -10f], f.ToFloatArray());

        var l = Parse(Assemble(1, "{'descr': '>i8', 'fortran_order': False, 'shape': (1,), }\n",
            [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08]));
        Assert.Equal([0x0102030405060708L], l.ToInt64Array());

        var h = Parse(Assemble(1, "{'descr': '>f2', 'fortran_order': False, 'shape': (1,), }\n", [0x3C, 0x00]));
        Assert.Equal([(Half)1], h.ToHalfArray());

        // One-byte types carry no byte order to swap.
        var b = Parse(Assemble(1, "{'descr': '>u1', 'fortran_order': False, 'shape': (2,), }\n", [7, 200]));
        Assert.Equal([(byte)7, (byte)200], b.ToUInt8Array());
    }

    [Fact]
    public void NativeAndUnmarkedByteOrdersAreLittleEndianHere()
    {
        var a = Parse(Assemble(1, "{'descr': '=i2', 'fortran_order': False, 'shape': (1,), }\n", [0x01, 0x02]));
        Assert.Equal([(short)0x0201], a.ToInt16Array());
        var b = Parse(Assemble(1, "{'descr': 'i2', 'fortran_order': False, 'shape': (1,), }\n", [0x01, 0x02]));
        Assert.Equal([(short)0x0201], b.ToInt16Array());
    }

    [Fact]
    public void FortranOrderIsRejectedNamingTheSource()
    {
        var bytes = Assemble(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }\n", new byte[24]);
        var e = Assert.Throws<OnnxAdadeltaException>(() => Parse(bytes, "array 'x' in data.npz"));
        Assert.StartsWith("array 'x' in data.npz: ", e.Message);
        Assert.Contains("Fortran", e.Message);
    }

    [Fact]
    public void FortranOrderWithOneLongAxisIsTheSameLayoutAndAccepted()
    {
        var bytes = Assemble(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 3), }\n", LittleEndianFloats(1, 2, 3));
        Assert.Equal([1f, 2, 3], Parse(bytes).ToFloatArray());
    }

    [Theory]
    [InlineData("{'descr': '<U3', 'fortran_order': False, 'shape': (1,), }", "'<U3'")]
    [InlineData("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", "'|O'")]
    [InlineData("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", "'<c8'")]
    [InlineData("{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (1,), }", "structured")]
    public void UnsupportedDtypesAreRejected(string header, string named)
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() => Parse(Assemble(1, header + "\n", new byte[16])));
        Assert.StartsWith("test.npy: ", e.Message);
        Assert.Contains(named, e.Message);
    }

    [Theory]
    [InlineData("{'descr': '<f4', 'shape': (1,), }", "fortran_order")]
    [InlineData("{'fortran_order': False, 'shape': (1,), }", "descr")]
    [InlineData("{'descr': '<f4', 'fortran_order': False, }", "shape")]
    [InlineData("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", "shape")]
    [InlineData("{'descr': '<f4', 'fortran_order': False, 'shape': (1,) ", "bad .npy header")]
    [InlineData("['descr']", "not a dict")]
    public void MalformedHeadersAreRejected(string header, string named)
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() => Parse(Assemble(1, header + "\n", new byte[4])));
        Assert.StartsWith("test.npy: ", e.Message);
        Assert.Contains(named, e.Message);
    }

    [Fact]
    public void HeaderVariantsParse()
    {
        // Python 2 longs, double quotes, keys in another order, no trailing comma.
        var a = Parse(Assemble(1, "{\"shape\": (2L, 1L), \"fortran_order\": False, \"descr\": \"<i8\"}\n", new byte[16]));
        Assert.Equal([2L, 1L], a.Shape);
        Assert.Equal(DataType.Int64, a.ElementType);
    }

    [Fact]
    public void MissingMagicIsRejected()
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() => Parse(Encoding.ASCII.GetBytes("PK\x03\x04 not numpy at all")));
        Assert.Contains("test.npy", e.Message);
        Assert.Contains("magic", e.Message);
        Assert.Throws<OnnxAdadeltaException>(() => Parse([]));
    }

    [Fact]
    public void TruncatedDataIsRejected()
    {
        var bytes = Assemble(1, NumPyHeader2x3, LittleEndianFloats(0, 1, 2, 3, 4));
        var e = Assert.Throws<OnnxAdadeltaException>(() => Parse(bytes));
        Assert.Contains("test.npy", e.Message);
        Assert.Contains("truncated", e.Message);
        Assert.Contains("24 bytes", e.Message);
        Assert.Contains("found 20", e.Message);
    }

    [Fact]
    public void TruncatedHeaderIsRejected()
    {
        var bytes = Assemble(1, NumPyHeader2x3, []);
        var e = Assert.Throws<OnnxAdadeltaException>(() => Parse(bytes[..50]));
        Assert.Contains("truncated", e.Message);
    }

    public static TheoryData<DataArray> EveryDtype() =>
    [
        DataArray.FromFloat([1.5f, -0f, float.NaN, float.MaxValue, float.Epsilon, -3], 2, 3),
        DataArray.FromDouble([Math.PI, -1e300, double.NegativeInfinity], 3),
        DataArray.FromHalf([(Half)1, (Half)(-2.5), Half.MaxValue, Half.Epsilon], 2, 2),
        DataArray.FromInt64([long.MinValue, -1, 0, long.MaxValue]),
        DataArray.FromInt32([int.MinValue, 7, int.MaxValue, 0, 1, 2], 3, 1, 2),
        DataArray.FromInt16([short.MinValue, short.MaxValue]),
        DataArray.FromInt8([sbyte.MinValue, -1, sbyte.MaxValue]),
        DataArray.FromUInt8([0, 128, 255]),
        DataArray.FromBool([true, false, true, true], 4, 1),
        new DataArray(DataType.Uint16, [2], [0x01, 0x02, 0xFF, 0xFF]),
        new DataArray(DataType.Uint32, [1], [0x01, 0x02, 0x03, 0x04]),
        new DataArray(DataType.Uint64, [1], [1, 2, 3, 4, 5, 6, 7, 0xFF]),
        new DataArray(DataType.Float, [], LittleEndianFloats(42)),
        new DataArray(DataType.Float, [0, 5], []),
    ];

    [Theory]
    [MemberData(nameof(EveryDtype))]
    public void WriteThenReadGivesTheSameArray(DataArray array)
    {
        var ms = new MemoryStream();
        Npy.Write(ms, array);
        var bytes = ms.ToArray();

        int headerLength = BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(8));
        Assert.Equal(1, bytes[6]);
        Assert.Equal(0, (10 + headerLength) % 64);
        Assert.Equal((byte)'\n', bytes[10 + headerLength - 1]);
        Assert.Equal(array.Data, bytes[(10 + headerLength)..]);

        Assert.Equal(array, Npy.Read(new MemoryStream(bytes)));
    }

    [Fact]
    public void HugeHeadersUseVersion2()
    {
        var shape = Enumerable.Repeat(1L, 25_000).ToArray();
        var array = DataArray.FromFloat([3f], shape);
        var ms = new MemoryStream();
        Npy.Write(ms, array);
        var bytes = ms.ToArray();
        Assert.Equal(2, bytes[6]);
        var headerLength = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(8));
        Assert.True(headerLength > ushort.MaxValue);
        Assert.Equal(0u, (12 + headerLength) % 64);
        Assert.Equal(array, Npy.Read(new MemoryStream(bytes)));
    }

    [Fact]
    public void ReadLeavesTheStreamAfterTheArray()
    {
        var ms = new MemoryStream();
        Npy.Write(ms, DataArray.FromInt32([1, 2]));
        Npy.Write(ms, DataArray.FromInt64([3]));
        ms.Position = 0;
        Assert.Equal([1, 2], Npy.Read(ms).ToInt32Array());
        Assert.Equal([3L], Npy.Read(ms).ToInt64Array());
    }

    [Fact]
    public void FileReadAndWrite()
    {
        var dir = Directory.CreateTempSubdirectory("npy-test-");
        try
        {
            var path = Path.Combine(dir.FullName, "a.npy");
            var array = DataArray.FromDouble([1, 2, 3, 4], 2, 2);
            Npy.Write(path, array);
            Assert.Equal(array, Npy.Read(path));
            var e = Assert.Throws<OnnxAdadeltaException>(() => Npy.Read(Path.Combine(dir.FullName, "missing.npy")));
            Assert.Contains("missing.npy", e.Message);
        }
        finally { dir.Delete(recursive: true); }
    }

    [Fact]
    public void ArrayChecksItsArguments()
    {
        Assert.Throws<ArgumentException>(() => DataArray.FromFloat([1, 2, 3], 2, 2));
        Assert.Throws<ArgumentException>(() => new DataArray(DataType.Float, [2], new byte[7]));
        Assert.Throws<ArgumentException>(() => new DataArray(DataType.String, [1], new byte[1]));
        Assert.Throws<ArgumentException>(() => new DataArray(DataType.Float, [-1], []));
        Assert.Throws<InvalidOperationException>(() => new DataArray(DataType.Float, [], new byte[4]).RowCount);
        var e = Assert.Throws<OnnxAdadeltaException>(() => DataArray.FromInt32([1]).ToFloatArray());
        Assert.Contains("int32", e.Message);
    }

    [Fact]
    public void FactoriesStoreLittleEndianBytes()
    {
        Assert.Equal(new byte[] { 0x00, 0x00, 0xC0, 0x3F }, DataArray.FromFloat([1.5f]).Data);
        Assert.Equal(new byte[] { 0x02, 0x01, 0, 0, 0, 0, 0, 0 }, DataArray.FromInt64([0x0102]).Data);
        Assert.Equal(new byte[] { 1, 0 }, DataArray.FromBool([true, false]).Data);
        Assert.Equal([1L], DataArray.FromBool([true]).Shape);
        Assert.Equal([true, false], DataArray.FromBool([true, false]).ToBoolArray());
        Assert.NotEqual(DataArray.FromFloat([1, 2]), DataArray.FromFloat([1, 2], 2, 1));
        Assert.NotEqual(DataArray.FromFloat([1, 2]), DataArray.FromFloat([1, 3]));
        Assert.Equal("float32(2, 1)", DataArray.FromFloat([1, 2], 2, 1).ToString());
    }
}
