using System.Buffers.Binary;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Onnx;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Onnx;

public class TensorConversionTests
{
    // Every tensor goes through the wire format, so packed typed fields and raw_data are both parsed back.
    private static TensorProto Reparse(TensorProto t) => TensorProto.Parser.ParseFrom(t.ToByteArray());

    private static TensorProto Make(float[] v, bool typed) => Reparse(typed ? Tensors.CreateTyped("t", v, v.Length) : Tensors.Create("t", v, v.Length));
    private static TensorProto Make(double[] v, bool typed) => Reparse(typed ? Tensors.CreateTyped("t", v, v.Length) : Tensors.Create("t", v, v.Length));
    private static TensorProto Make(Half[] v, bool typed) => Reparse(typed ? Tensors.CreateTyped("t", v, v.Length) : Tensors.Create("t", v, v.Length));
    private static TensorProto Make(BFloat16[] v, bool typed) => Reparse(typed ? Tensors.CreateTyped("t", v, v.Length) : Tensors.Create("t", v, v.Length));
    private static TensorProto Make(int[] v, bool typed) => Reparse(typed ? Tensors.CreateTyped("t", v, v.Length) : Tensors.Create("t", v, v.Length));
    private static TensorProto Make(long[] v, bool typed) => Reparse(typed ? Tensors.CreateTyped("t", v, v.Length) : Tensors.Create("t", v, v.Length));
    private static TensorProto Make(bool[] v, bool typed) => Reparse(typed ? Tensors.CreateTyped("t", v, v.Length) : Tensors.Create("t", v, v.Length));

    /// <summary>Checks that the tensor uses the encoding asked for: only raw_data, or only the expected typed field.</summary>
    private static void AssertEncoding(TensorProto t, bool typed, Func<TensorProto, int> typedCount, int n)
    {
        if (typed)
        {
            Assert.True(t.RawData.IsEmpty);
            Assert.Equal(n, typedCount(t));
        }
        else
        {
            Assert.Equal(0, t.FloatData.Count + t.DoubleData.Count + t.Int32Data.Count + t.Int64Data.Count + t.Uint64Data.Count);
            Assert.False(t.RawData.IsEmpty);
        }
    }

    public static readonly float[] SpecialFloats =
    [
        0f, -0f, 1f, -1.5f, float.Epsilon, -float.Epsilon, 1e-40f, float.MaxValue, float.MinValue,
        float.PositiveInfinity, float.NegativeInfinity, float.NaN,
        BitConverter.Int32BitsToSingle(0x7FC00001), BitConverter.Int32BitsToSingle(unchecked((int)0xFFC12345)), 3.14159274f,
    ];

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Float_round_trips_bit_for_bit(bool typed)
    {
        var t = Make(SpecialFloats, typed);
        AssertEncoding(t, typed, x => x.FloatData.Count, SpecialFloats.Length);
        Assert.Equal(DataType.Float, (DataType)t.DataType);
        Assert.Equal(SpecialFloats.Select(BitConverter.SingleToInt32Bits), t.ToArray<float>().Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(SpecialFloats.Select(BitConverter.SingleToInt32Bits), t.ToFloatArray().Select(BitConverter.SingleToInt32Bits));
        var raw = t.ToRawBytes();
        Assert.Equal(SpecialFloats.Select(BitConverter.SingleToInt32Bits),
            Enumerable.Range(0, SpecialFloats.Length).Select(i => BinaryPrimitives.ReadInt32LittleEndian(raw.AsSpan(4 * i))));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Double_round_trips_bit_for_bit(bool typed)
    {
        double[] v =
        [
            0, -0.0, double.Epsilon, -double.Epsilon, 1e-310, double.MaxValue, double.MinValue, double.NaN,
            BitConverter.Int64BitsToDouble(0x7FF0000000000001), double.PositiveInfinity, double.NegativeInfinity, Math.PI,
        ];
        var t = Make(v, typed);
        AssertEncoding(t, typed, x => x.DoubleData.Count, v.Length);
        Assert.Equal(DataType.Double, (DataType)t.DataType);
        Assert.Equal(v.Select(BitConverter.DoubleToInt64Bits), t.ToArray<double>().Select(BitConverter.DoubleToInt64Bits));
        var raw = t.ToRawBytes();
        Assert.Equal(v.Select(BitConverter.DoubleToInt64Bits),
            Enumerable.Range(0, v.Length).Select(i => BinaryPrimitives.ReadInt64LittleEndian(raw.AsSpan(8 * i))));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Float16_round_trips_every_bit_pattern(bool typed)
    {
        var v = Enumerable.Range(0, 1 << 16).Select(i => BitConverter.UInt16BitsToHalf((ushort)i)).ToArray();
        var t = Make(v, typed);
        AssertEncoding(t, typed, x => x.Int32Data.Count, v.Length);
        Assert.Equal(DataType.Float16, (DataType)t.DataType);
        if (typed) Assert.Equal(Enumerable.Range(0, 1 << 16), t.Int32Data); // bit patterns in the low 16 bits, not sign-extended
        Assert.Equal(Enumerable.Range(0, 1 << 16), t.ToArray<Half>().Select(h => (int)BitConverter.HalfToUInt16Bits(h)));
        var raw = t.ToRawBytes();
        Assert.Equal(Enumerable.Range(0, 1 << 16), Enumerable.Range(0, 1 << 16).Select(i => (int)BinaryPrimitives.ReadUInt16LittleEndian(raw.AsSpan(2 * i))));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Bfloat16_round_trips_every_bit_pattern(bool typed)
    {
        var v = Enumerable.Range(0, 1 << 16).Select(i => new BFloat16((ushort)i)).ToArray();
        var t = Make(v, typed);
        AssertEncoding(t, typed, x => x.Int32Data.Count, v.Length);
        Assert.Equal(DataType.Bfloat16, (DataType)t.DataType);
        if (typed) Assert.Equal(Enumerable.Range(0, 1 << 16), t.Int32Data);
        Assert.Equal(Enumerable.Range(0, 1 << 16), t.ToArray<BFloat16>().Select(b => (int)b.value));
        var raw = t.ToRawBytes();
        Assert.Equal(Enumerable.Range(0, 1 << 16), Enumerable.Range(0, 1 << 16).Select(i => (int)BinaryPrimitives.ReadUInt16LittleEndian(raw.AsSpan(2 * i))));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Int32_round_trips_extremes(bool typed)
    {
        int[] v = [int.MinValue, -1, 0, 1, int.MaxValue, 0x12345678];
        var t = Make(v, typed);
        AssertEncoding(t, typed, x => x.Int32Data.Count, v.Length);
        Assert.Equal(v, t.ToArray<int>());
        Assert.Equal(v, Enumerable.Range(0, v.Length).Select(i => BinaryPrimitives.ReadInt32LittleEndian(t.ToRawBytes().AsSpan(4 * i))));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Int64_round_trips_extremes(bool typed)
    {
        long[] v = [long.MinValue, long.MinValue + 1, -1, 0, 1, (1L << 53) + 1, long.MaxValue, 0x0102030405060708];
        var t = Make(v, typed);
        AssertEncoding(t, typed, x => x.Int64Data.Count, v.Length);
        Assert.Equal(v, t.ToArray<long>());
        Assert.Equal(v, t.ToInt64Array());
        Assert.Equal(v, Enumerable.Range(0, v.Length).Select(i => BinaryPrimitives.ReadInt64LittleEndian(t.ToRawBytes().AsSpan(8 * i))));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Bool_round_trips(bool typed)
    {
        bool[] v = [true, false, false, true, true];
        var t = Make(v, typed);
        AssertEncoding(t, typed, x => x.Int32Data.Count, v.Length);
        Assert.Equal(v, t.ToArray<bool>());
        Assert.Equal(new byte[] { 1, 0, 0, 1, 1 }, t.ToRawBytes());
        if (typed) Assert.Equal([1, 0, 0, 1, 1], t.Int32Data);
        else Assert.Equal(new byte[] { 1, 0, 0, 1, 1 }, t.RawData.ToByteArray());
    }

    [Fact]
    public void Bool_reads_any_nonzero_as_true_and_normalizes_raw_bytes()
    {
        var raw = new TensorProto { Name = "b", DataType = (int)DataType.Bool, Dims = { 3 }, RawData = ByteString.CopyFrom(2, 0, 255) };
        Assert.Equal([true, false, true], raw.ToArray<bool>());
        Assert.Equal(new byte[] { 1, 0, 1 }, raw.ToRawBytes());
        var typed = new TensorProto { Name = "b", DataType = (int)DataType.Bool, Dims = { 3 }, Int32Data = { 7, 0, -1 } };
        Assert.Equal([true, false, true], typed.ToArray<bool>());
        Assert.Equal(new byte[] { 1, 0, 1 }, typed.ToRawBytes());
    }

    [Fact]
    public void Raw_data_is_little_endian_with_known_bytes()
    {
        Assert.Equal(new byte[] { 0, 0, 0x80, 0x3F }, Tensors.Create("f", [1f]).RawData.ToByteArray());
        Assert.Equal(new byte[] { 0, 0x3C }, Tensors.Create("h", [(Half)1]).RawData.ToByteArray());
        Assert.Equal(new byte[] { 0x80, 0x3F }, Tensors.Create("b", [(BFloat16)1f]).RawData.ToByteArray());
        Assert.Equal(new byte[] { 8, 7, 6, 5, 4, 3, 2, 1 }, Tensors.Create("l", [0x0102030405060708L]).RawData.ToByteArray());
        Assert.Equal(new byte[] { 0, 0, 0, 0, 0, 0, 0xF0, 0x3F }, Tensors.Create("d", [1.0]).RawData.ToByteArray());
    }

    [Fact]
    public void Float16_and_bfloat16_typed_values_use_the_low_16_bits()
    {
        // -2 is 0xC000 in float16; some writers store it sign-extended (-16384), others as 49152.
        var h = new TensorProto { Name = "h", DataType = (int)DataType.Float16, Dims = { 2 }, Int32Data = { 0xC000, unchecked((int)0xFFFFC000) } };
        Assert.Equal([(Half)(-2), (Half)(-2)], h.ToArray<Half>());
        Assert.Equal(new byte[] { 0, 0xC0, 0, 0xC0 }, h.ToRawBytes());
        Assert.Equal([0xC000], Tensors.CreateTyped("h", [(Half)(-2)]).Int32Data);
        Assert.Equal([0xBF80], Tensors.CreateTyped("b", [(BFloat16)(-1f)]).Int32Data);
    }

    [Fact]
    public void Other_fixed_width_types_convert_to_raw_bytes_from_typed_fields()
    {
        var u8 = new TensorProto { Name = "u8", DataType = (int)DataType.Uint8, Dims = { 3 }, Int32Data = { 0, 200, 255 } };
        Assert.Equal(new byte[] { 0, 200, 255 }, u8.ToRawBytes());
        var i16 = new TensorProto { Name = "i16", DataType = (int)DataType.Int16, Dims = { 2 }, Int32Data = { -2, 300 } };
        Assert.Equal(new byte[] { 0xFE, 0xFF, 0x2C, 0x01 }, i16.ToRawBytes());
        var u64 = new TensorProto { Name = "u64", DataType = (int)DataType.Uint64, Dims = { 1 }, Uint64Data = { ulong.MaxValue } };
        Assert.Equal(Enumerable.Repeat((byte)0xFF, 8), u64.ToRawBytes());
        var u32 = new TensorProto { Name = "u32", DataType = (int)DataType.Uint32, Dims = { 1 }, Uint64Data = { 0x01020304 } };
        Assert.Equal(new byte[] { 4, 3, 2, 1 }, u32.ToRawBytes());
        var c64 = new TensorProto { Name = "c", DataType = (int)DataType.Complex64, Dims = { 1 }, FloatData = { 1f, -1f } };
        Assert.Equal(new byte[] { 0, 0, 0x80, 0x3F, 0, 0, 0x80, 0xBF }, c64.ToRawBytes());
    }

    [Fact]
    public void FromRawBytes_round_trips_and_checks_the_length()
    {
        var f = Tensors.FromRawBytes("f", DataType.Float, [2], [0, 0, 0x80, 0x3F, 0, 0, 0, 0x40]);
        Assert.Equal([1f, 2f], f.ToArray<float>());
        var original = Tensors.CreateTyped("h", [(Half)0.5, (Half)(-3), Half.NaN], 3);
        var copy = Tensors.FromRawBytes("h", DataType.Float16, [3], original.ToRawBytes());
        Assert.Equal(original.ToRawBytes(), copy.RawData.ToByteArray());
        Assert.Equal(2, Tensors.FromRawBytes("i4", DataType.Int4, [3], [0x21, 0x03]).RawData.Length); // 4-bit: two a byte

        var e = Assert.Throws<OnnxAdadeltaException>(() => Tensors.FromRawBytes("short_one", DataType.Float, [2, 3], new byte[20]));
        Assert.Contains("short_one", e.Message);
        Assert.Contains("24", e.Message);
        e = Assert.Throws<OnnxAdadeltaException>(() => Tensors.FromRawBytes("s", DataType.String, [1], new byte[1]));
        Assert.Contains("STRING", e.Message);
    }

    [Fact]
    public void Requesting_another_type_names_the_tensor_and_both_types()
    {
        var t = Tensors.Create("weights", [1f, 2f], 2);
        var e = Assert.Throws<OnnxAdadeltaException>(() => t.ToArray<long>());
        Assert.Contains("'weights'", e.Message);
        Assert.Contains("FLOAT", e.Message);
        Assert.Contains("INT64", e.Message);
        e = Assert.Throws<OnnxAdadeltaException>(() => Tensors.Create("h", [(Half)1]).ToArray<BFloat16>());
        Assert.Contains("FLOAT16", e.Message);
        Assert.Contains("BFLOAT16", e.Message);
        Assert.Throws<ArgumentException>(() => t.ToArray<byte>());
    }

    [Theory]
    [InlineData(DataType.String)]
    [InlineData(DataType.Undefined)]
    [InlineData((DataType)99)]
    public void Types_without_a_raw_form_are_refused(DataType type)
    {
        var t = new TensorProto { Name = "odd", DataType = (int)type, Dims = { 1 }, StringData = { ByteString.CopyFromUtf8("x") } };
        var e = Assert.Throws<OnnxAdadeltaException>(() => t.ToRawBytes());
        Assert.Contains("'odd'", e.Message);
        Assert.Contains(type == (DataType)99 ? "UNKNOWN(99)" : type.ToString().ToUpperInvariant(), e.Message);
    }

    [Fact]
    public void Complex_tensors_do_not_convert_to_float_arrays()
    {
        var c = new TensorProto { Name = "c", DataType = (int)DataType.Complex64, Dims = { 1 }, FloatData = { 1f, 2f } };
        var e = Assert.Throws<OnnxAdadeltaException>(() => c.ToArray<float>());
        Assert.Contains("COMPLEX64", e.Message);
    }

    [Fact]
    public void Data_that_does_not_fit_the_shape_is_refused()
    {
        var raw = Tensors.Create("r", [1f, 2f, 3f], 3);
        raw.Dims[0] = 4;
        var e = Assert.Throws<OnnxAdadeltaException>(() => raw.ToArray<float>());
        Assert.Contains("'r'", e.Message);
        Assert.Contains("raw_data", e.Message);

        var typed = Tensors.CreateTyped("t", [1L, 2L], 2);
        typed.Dims[0] = 3;
        e = Assert.Throws<OnnxAdadeltaException>(() => typed.ToRawBytes());
        Assert.Contains("'t'", e.Message);
        Assert.Contains("int64_data", e.Message);

        var wrongField = new TensorProto { Name = "w", DataType = (int)DataType.Float, Dims = { 2 }, Int32Data = { 1, 2 } };
        Assert.Contains("float_data", Assert.Throws<OnnxAdadeltaException>(() => wrongField.ToArray<float>()).Message);

        var empty = new TensorProto { Name = "e", DataType = (int)DataType.Float, Dims = { 2 } };
        Assert.Contains("no values", Assert.Throws<OnnxAdadeltaException>(() => empty.ToArray<float>()).Message);

        var negative = new TensorProto { Name = "n", DataType = (int)DataType.Float, Dims = { -1 } };
        Assert.Contains("negative", Assert.Throws<OnnxAdadeltaException>(() => negative.ToArray<float>()).Message);

        Assert.Throws<ArgumentException>(() => Tensors.Create("c", [1f, 2f], 3));
        Assert.Throws<ArgumentException>(() => Tensors.CreateTyped("c", [1, 2], 2, 2));
    }

    [Fact]
    public void Scalars_and_empty_tensors_work()
    {
        var scalar = Tensors.Create("s", [2.5]);
        Assert.Empty(scalar.Dims);
        Assert.Equal([2.5], scalar.ToArray<double>());
        Assert.Equal(1, Tensors.ElementCount(scalar.Dims));
        var empty = Reparse(Tensors.Create("e", Array.Empty<float>(), 0, 3));
        Assert.Empty(empty.ToArray<float>());
        Assert.Empty(empty.ToRawBytes());
        Assert.Equal(0, Tensors.ElementCount([4, 0, 2]));
    }

    [Fact]
    public void An_unread_external_tensor_says_how_to_read_it()
    {
        var t = new TensorProto
        {
            Name = "ext", DataType = (int)DataType.Float, Dims = { 1 }, DataLocation = TensorProto.Types.DataLocation.External,
            ExternalData = { new StringStringEntryProto { Key = "location", Value = "w.bin" } },
        };
        var e = Assert.Throws<OnnxAdadeltaException>(() => t.ToArray<float>());
        Assert.Contains("'ext'", e.Message);
        Assert.Contains("ModelIO.Load", e.Message);
    }

    [Fact]
    public void DataTypeOf_maps_the_supported_types()
    {
        Assert.Equal(DataType.Float, Tensors.DataTypeOf<float>());
        Assert.Equal(DataType.Double, Tensors.DataTypeOf<double>());
        Assert.Equal(DataType.Float16, Tensors.DataTypeOf<Half>());
        Assert.Equal(DataType.Bfloat16, Tensors.DataTypeOf<BFloat16>());
        Assert.Equal(DataType.Int32, Tensors.DataTypeOf<int>());
        Assert.Equal(DataType.Int64, Tensors.DataTypeOf<long>());
        Assert.Equal(DataType.Bool, Tensors.DataTypeOf<bool>());
        Assert.Throws<ArgumentException>(() => Tensors.DataTypeOf<byte>());
    }
}
