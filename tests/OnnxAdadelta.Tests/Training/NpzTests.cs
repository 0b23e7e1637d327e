using System.Buffers.Binary;
using System.IO.Compression;
using OnnxAdadelta.Training;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Training;

public sealed class NpzTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("npz-test-");

    public void Dispose() => _dir.Delete(recursive: true);

    private string PathOf(string name) => Path.Combine(_dir.FullName, name);

    private static OrderedDictionary<string, DataArray> EveryDtype() => new()
    {
        ["z_float"] = DataArray.FromFloat([1.5f, -2, float.NaN, 4, 5, 6], 2, 3),
        ["y_double"] = DataArray.FromDouble([Math.E, -1e-300]),
        ["x_half"] = DataArray.FromHalf([(Half)0.5, (Half)(-7)]),
        ["w_int64"] = DataArray.FromInt64([long.MinValue, long.MaxValue, 3], 3, 1),
        ["v_int32"] = DataArray.FromInt32([-5, 6]),
        ["u_int16"] = DataArray.FromInt16([-300, 300]),
        ["t_int8"] = DataArray.FromInt8([-128, 127]),
        ["s_uint8"] = DataArray.FromUInt8([0, 255]),
        ["r_bool"] = DataArray.FromBool([true, false, false]),
        ["q_uint16"] = new DataArray(DataType.Uint16, [1], [0xAB, 0xCD]),
        ["p_uint32"] = new DataArray(DataType.Uint32, [1], [1, 2, 3, 4]),
        ["o_uint64"] = new DataArray(DataType.Uint64, [1], [1, 2, 3, 4, 5, 6, 7, 8]),
        ["n_scalar"] = new DataArray(DataType.Double, [], BitConverter.GetBytes(2.25)),
        ["m_empty"] = new DataArray(DataType.Float, [0, 4], []),
    };

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void WrittenFilesReadBackEqualInOrder(bool compress)
    {
        var arrays = EveryDtype();
        var path = PathOf("all.npz");
        Npz.Write(path, arrays, compress);

        var back = Npz.Read(path);

        Assert.Equal(arrays.Keys, back.Keys);
        foreach (var (name, array) in arrays) Assert.Equal(array, back[name]);
        Assert.Equal(arrays.Keys, Npz.ArrayNames(path));
    }

    [Theory]
    [InlineData(true, 8)]
    [InlineData(false, 0)]
    public void WriterUsesDeflateOrStoredEntries(bool compress, int method)
    {
        var path = PathOf("m.npz");
        Npz.Write(path, new Dictionary<string, DataArray> { ["a"] = DataArray.FromFloat(new float[1000]) }, compress);
        var bytes = File.ReadAllBytes(path);
        Assert.Equal(0x04034b50u, BinaryPrimitives.ReadUInt32LittleEndian(bytes));
        Assert.Equal(method, BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(8)));
        using var zip = ZipFile.OpenRead(path);
        var entry = Assert.Single(zip.Entries);
        Assert.Equal("a.npy", entry.FullName);
        if (compress) Assert.True(entry.CompressedLength < entry.Length);
        else Assert.Equal(entry.Length, entry.CompressedLength);
    }

    [Fact]
    public void WritingIsDeterministic()
    {
        Npz.Write(PathOf("1.npz"), EveryDtype());
        Npz.Write(PathOf("2.npz"), EveryDtype());
        Assert.Equal(File.ReadAllBytes(PathOf("1.npz")), File.ReadAllBytes(PathOf("2.npz")));
    }

    /// <summary>An archive assembled with ZipArchive directly: one stored and one deflated .npy, a text file and a folder.</summary>
    [Fact]
    public void HandBuiltArchiveWithStoredAndDeflatedEntriesReads()
    {
        var header = "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }" + new string(' ', 60) + "\n";
        var stored = NpyTests.Assemble(1, header, [1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]);
        var deflated = NpyTests.Assemble(1, header.Replace("<i4", ">i4"), [0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6]);
        var path = PathOf("hand.npz");
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Create))
        {
            Add(zip, "stored.npy", stored, CompressionLevel.NoCompression);
            Add(zip, "notes.txt", "not an array"u8.ToArray(), CompressionLevel.Optimal);
            zip.CreateEntry("sub/");
            Add(zip, "sub/deflated.npy", deflated, CompressionLevel.SmallestSize);
        }

        var arrays = Npz.Read(path);

        Assert.Equal(["stored", "sub/deflated"], arrays.Keys);
        Assert.Equal([1, 2, 3], arrays["stored"].ToInt32Array());
        Assert.Equal([4, 5, 6], arrays["sub/deflated"].ToInt32Array());
    }

    private static void Add(ZipArchive zip, string name, byte[] content, CompressionLevel level)
    {
        using var s = zip.CreateEntry(name, level).Open();
        s.Write(content);
    }

    // np.savez_compressed(f, x=np.array([[1.5, -2, 3], [4, 5, 6.25]], dtype='<f4'), y=np.array([7, -8], dtype='<i8'),
    //                     big=np.array([1, 256], dtype='>i4'), m=np.array([True, False, True])), NumPy 1.24 (ZIP64 extras).
    private const string NumPyFile =
        "UEsDBBQAAAAIAAAAIQBb/sUaWgAAAJgAAAAFABQAeC5ucHkBABAAmAAAAAAAAABaAAAAAAAAAJvsF+obEMnIUMZQrZ6SWpxcpG6loG6TZqKuo6Cell9UUpSY" +
        "F59flJIKEndLzClOBYoXZyQWpAL5GkY6CsaaOgq1CmQDLgaGA/YMQIKBwcGBgaEBiBcA8QkHAFBLAwQUAAAACAAAACEA+ZsLtksAAACQAAAABQAUAHkubnB5" +
        "AQAQAJAAAAAAAAAASwAAAAAAAACb7BfqGxDJyFDGUK2eklqcXKRupaBuk2mhrqOgnpZfVFKUmBefX5SSChJ3S8wpTgWKF2ckFqQC+RpGOpo6CrUKFAAudgYI" +
        "+PEfAgBQSwMEFAAAAAgAAAAhAG31XelKAAAAiAAAAAcAFABiaWcubnB5AQAQAIgAAAAAAAAASgAAAAAAAACb7BfqGxDJyFDGUK2eklqcXKRupaBul2mirqOg" +
        "npZfVFKUmBefX5SSChJ3S8wpTgWKF2ckFqQC+RpGOpo6CrUKFAAuBgYGRhACAFBLAwQUAAAACAAAACEAFpOMu0cAAACDAAAABQAUAG0ubnB5AQAQAIMAAAAA" +
        "AAAARwAAAAAAAACb7BfqGxDJyFDGUK2eklqcXKRupaBek2SorqOgnpZfVFKUmBefX5SSChJ3S8wpTgWKF2ckFqQC+RrGOpo6CrUKFAAuRgZGAFBLAQIUAxQA" +
        "AAAIAAAAIQBb/sUaWgAAAJgAAAAFAAAAAAAAAAAAAACAAQAAAAB4Lm5weVBLAQIUAxQAAAAIAAAAIQD5mwu2SwAAAJAAAAAFAAAAAAAAAAAAAACAAZEAAAB5" +
        "Lm5weVBLAQIUAxQAAAAIAAAAIQBt9V3pSgAAAIgAAAAHAAAAAAAAAAAAAACAARMBAABiaWcubnB5UEsBAhQDFAAAAAgAAAAhABaTjLtHAAAAgwAAAAUAAAAA" +
        "AAAAAAAAAIABlgEAAG0ubnB5UEsFBgAAAAAEAAQAzgAAABQCAAAAAA==";

    [Fact]
    public void ReadsAFileNumPyWrote()
    {
        var arrays = Npz.Read(new MemoryStream(Convert.FromBase64String(NumPyFile)), "numpy.npz");
        Assert.Equal(["x", "y", "big", "m"], arrays.Keys);
        Assert.Equal(DataArray.FromFloat([1.5f, -2, 3, 4, 5, 6.25f], 2, 3), arrays["x"]);
        Assert.Equal(DataArray.FromInt64([7, -8]), arrays["y"]);
        Assert.Equal(DataArray.FromInt32([1, 256]), arrays["big"]);
        Assert.Equal(DataArray.FromBool([true, false, true]), arrays["m"]);
    }

    [Fact]
    public void MissingFileIsNamed()
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() => Npz.Read(PathOf("nope.npz")));
        Assert.Contains("nope.npz", e.Message);
    }

    [Fact]
    public void NonZipIsRejectedNamingTheFile()
    {
        var path = PathOf("plain.npz");
        File.WriteAllText(path, "x,y\n1,2\n");
        var e = Assert.Throws<OnnxAdadeltaException>(() => Npz.Read(path));
        Assert.StartsWith(path + ": not an .npz file", e.Message);
    }

    [Fact]
    public void TruncatedZipIsRejected()
    {
        var path = PathOf("cut.npz");
        Npz.Write(path, EveryDtype());
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        var e = Assert.Throws<OnnxAdadeltaException>(() => Npz.Read(path));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void EntryWithoutMagicIsRejectedNamingFileAndArray()
    {
        var path = PathOf("bad.npz");
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Create))
            Add(zip, "x.npy", "hello"u8.ToArray(), CompressionLevel.Optimal);
        var e = Assert.Throws<OnnxAdadeltaException>(() => Npz.Read(path));
        Assert.StartsWith($"array 'x' in {path}: ", e.Message);
        Assert.Contains("magic", e.Message);
    }

    [Theory]
    [InlineData(CompressionLevel.NoCompression)]
    [InlineData(CompressionLevel.Optimal)]
    public void TruncatedEntryDataIsRejectedNamingFileAndArray(CompressionLevel level)
    {
        var ms = new MemoryStream();
        Npy.Write(ms, DataArray.FromFloat(new float[100], 10, 10));
        var path = PathOf("short.npz");
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Create))
            Add(zip, "features.npy", ms.ToArray()[..^40], level);
        var e = Assert.Throws<OnnxAdadeltaException>(() => Npz.Read(path));
        Assert.StartsWith($"array 'features' in {path}: truncated", e.Message);
    }

    [Fact]
    public void FortranArrayInsideAnArchiveNamesFileAndArray()
    {
        var path = PathOf("f.npz");
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Create))
            Add(zip, "w.npy", NpyTests.Assemble(1, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2), }\n", new byte[32]),
                CompressionLevel.Optimal);
        var e = Assert.Throws<OnnxAdadeltaException>(() => Npz.Read(path));
        Assert.StartsWith($"array 'w' in {path}: ", e.Message);
        Assert.Contains("Fortran", e.Message);
    }

    [Fact]
    public void StreamRoundTrip()
    {
        var ms = new MemoryStream();
        Npz.Write(ms, EveryDtype(), compress: false);
        ms.Position = 0;
        var back = Npz.Read(ms);
        Assert.Equal(EveryDtype().Keys, back.Keys);
        Assert.Throws<ArgumentException>(() => Npz.Write(new MemoryStream(), new Dictionary<string, DataArray> { [""] = DataArray.FromInt32([1]) }));
    }
}
