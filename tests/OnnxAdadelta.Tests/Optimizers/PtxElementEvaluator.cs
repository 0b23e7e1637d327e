using System.Globalization;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Optimizers;

/// <summary>
/// Executes the per-element code of a fused-update PTX kernel (the lines between <c>UpdatePtx.ElementBegin</c> and
/// <c>ElementEnd</c>) once per element, giving each instruction the meaning the PTX ISA manual gives it. Only the
/// instructions the emitter uses are known; any other is an error. Memory is one buffer per kernel pointer parameter,
/// addressed through the same 64-bit arithmetic the kernel does.
/// </summary>
internal static class PtxElementEvaluator
{
    private const int BaseShift = 40;
    private const uint CanonicalNaN = 0x7FFF_FFFF;

    private sealed class Buffer(DataType type, uint[] values)
    {
        public DataType Type { get; } = type;
        public uint[] Values { get; } = values;
        public int Width => Type == DataType.Float ? 4 : 2;
    }

    /// <summary>
    /// Runs <paramref name="ptx"/>'s element code on <paramref name="n"/> elements; returns the bits stored in each
    /// output, then in the stored parameter when <paramref name="stored"/> is set.
    /// </summary>
    /// <param name="ptx">The module text.</param>
    /// <param name="inputs">Input values, already representable in their dtypes.</param>
    /// <param name="inputTypes">Input dtypes.</param>
    /// <param name="outputTypes">Output dtypes.</param>
    /// <param name="stored">The stored parameter's dtype, or null.</param>
    /// <param name="scalars">The scalar registers (kernel parameters).</param>
    /// <param name="n">Elements.</param>
    public static uint[][] Run(string ptx, float[][] inputs, DataType[] inputTypes, DataType[] outputTypes, DataType? stored, float[] scalars, int n)
    {
        var lines = ptx.Split('\n').Select(l => l.Trim()).ToArray();
        int begin = Array.IndexOf(lines, "// element begin"), end = Array.IndexOf(lines, "// element end");
        if (begin < 0 || end < begin) throw new InvalidOperationException("no element markers");
        var code = lines[(begin + 1)..end].Select(l => l.TrimEnd(';')).ToArray();

        var buffers = new Dictionary<long, Buffer>();
        var registers = new Dictionary<string, ulong>(StringComparer.Ordinal);
        for (int k = 0; k < inputs.Length; k++)
        {
            buffers[k + 1] = new Buffer(inputTypes[k], inputs[k].Select(v => Encode(v, inputTypes[k])).ToArray());
            registers[$"%in{k}"] = (ulong)(k + 1) << BaseShift;
        }
        var outs = new List<Buffer>();
        for (int o = 0; o < outputTypes.Length; o++)
        {
            outs.Add(buffers[32 + o] = new Buffer(outputTypes[o], new uint[n]));
            registers[$"%out{o}"] = (ulong)(32 + o) << BaseShift;
        }
        if (stored is { } s)
        {
            outs.Add(buffers[63] = new Buffer(s, new uint[n]));
            registers["%stored"] = 63UL << BaseShift;
        }
        for (int r = 0; r < scalars.Length; r++) registers[$"%s{r}"] = BitConverter.SingleToUInt32Bits(scalars[r]);

        for (int i = 0; i < n; i++)
        {
            var regs = new Dictionary<string, ulong>(registers, StringComparer.Ordinal) { ["%i"] = (ulong)i };
            var preds = new Dictionary<string, bool>(StringComparer.Ordinal);
            foreach (var line in code) Execute(line, regs, preds, buffers);
        }
        return outs.Select(b => b.Values).ToArray();
    }

    private static uint Encode(float v, DataType type) => type switch
    {
        DataType.Float => BitConverter.SingleToUInt32Bits(v),
        DataType.Float16 => BitConverter.HalfToUInt16Bits((Half)v),
        _ => BitConverter.SingleToUInt32Bits(v) >> 16, // already a bfloat16 value: exact
    };

    private static float F(ulong bits) => BitConverter.UInt32BitsToSingle((uint)bits);

    // Arithmetic results: IEEE round to nearest even (C# float arithmetic), NaN as the canonical NaN the manual gives.
    private static ulong Arith(float v) => float.IsNaN(v) ? CanonicalNaN : BitConverter.SingleToUInt32Bits(v);

    private static void Execute(string line, Dictionary<string, ulong> regs, Dictionary<string, bool> preds, Dictionary<long, Buffer> buffers)
    {
        int space = line.IndexOf(' ', StringComparison.Ordinal);
        string op = line[..space];
        var args = line[(space + 1)..].Split(',').Select(a => a.Trim()).ToArray();
        ulong Get(string operand)
        {
            if (operand.StartsWith('%')) return regs.TryGetValue(operand, out var v) ? v : throw new InvalidOperationException($"'{line}' reads {operand} before it is written");
            if (operand.StartsWith("0f", StringComparison.Ordinal)) return uint.Parse(operand[2..], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            return (ulong)long.Parse(operand, CultureInfo.InvariantCulture);
        }
        (Buffer Buffer, long Index) Address(string operand, int width)
        {
            ulong address = Get(operand.Trim('[', ']'));
            var buffer = buffers[(long)(address >> BaseShift)];
            long offset = (long)(address & ((1UL << BaseShift) - 1));
            if (buffer.Width != width || offset % width != 0) throw new InvalidOperationException($"'{line}': a {width}-byte access to a {buffer.Type} buffer at byte {offset}");
            return (buffer, offset / width);
        }
        float A() => F(Get(args[1]));
        float B() => F(Get(args[2]));
        void Set(ulong v) => regs[args[0]] = v;
        switch (op)
        {
            case "shl.b64": Set(Get(args[1]) << (int)Get(args[2])); break;
            case "add.s64": Set(Get(args[1]) + Get(args[2])); break;
            case "ld.global.f32":
            case "ld.global.u16":
            {
                var (buffer, index) = Address(args[1], op.EndsWith("f32", StringComparison.Ordinal) ? 4 : 2);
                Set(buffer.Values[index]);
                break;
            }
            case "st.global.f32":
            case "st.global.u16":
            {
                int width = op.EndsWith("f32", StringComparison.Ordinal) ? 4 : 2;
                var (buffer, index) = Address(args[0], width);
                buffer.Values[index] = (uint)(Get(args[1]) & (width == 4 ? 0xFFFF_FFFFUL : 0xFFFFUL));
                break;
            }
            case "cvt.f32.f16": Set(BitConverter.SingleToUInt32Bits((float)BitConverter.UInt16BitsToHalf((ushort)Get(args[1])))); break;
            case "cvt.rn.f16.f32": Set(float.IsNaN(A()) ? 0x7FFFUL : BitConverter.HalfToUInt16Bits((Half)A())); break;
            case "cvt.u32.u16": Set(Get(args[1]) & 0xFFFF); break;
            case "cvt.u16.u32": Set(Get(args[1]) & 0xFFFF); break;
            case "cvt.rmi.f32.f32": Set(BitConverter.SingleToUInt32Bits(MathF.Floor(A()))); break;
            case "cvt.rpi.f32.f32": Set(BitConverter.SingleToUInt32Bits(MathF.Ceiling(A()))); break;
            case "mov.b32": Set(Get(args[1]) & 0xFFFF_FFFF); break;
            case "shl.b32": Set((uint)Get(args[1]) << (int)Get(args[2])); break;
            case "shr.u32": Set((uint)Get(args[1]) >> (int)Get(args[2])); break;
            case "and.b32": Set((uint)(Get(args[1]) & Get(args[2]))); break;
            case "or.b32": Set((uint)(Get(args[1]) | Get(args[2]))); break;
            case "xor.b32": Set((uint)(Get(args[1]) ^ Get(args[2]))); break;
            case "add.u32": Set(unchecked((uint)(Get(args[1]) + Get(args[2])))); break;
            case "add.rn.f32": Set(Arith(A() + B())); break;
            case "sub.rn.f32": Set(Arith(A() - B())); break;
            case "mul.rn.f32": Set(Arith(A() * B())); break;
            case "div.rn.f32": Set(Arith(A() / B())); break;
            case "sqrt.rn.f32": Set(Arith(MathF.Sqrt(A()))); break;
            case "selp.f32":
            case "selp.b32":
                Set(preds.TryGetValue(args[3], out var p) ? (p ? Get(args[1]) : Get(args[2])) : throw new InvalidOperationException($"'{line}' reads {args[3]} before it is set"));
                break;
            default:
                if (op.StartsWith("setp.", StringComparison.Ordinal) && op.EndsWith(".f32", StringComparison.Ordinal))
                {
                    float a = A(), b = B();
                    bool unordered = float.IsNaN(a) || float.IsNaN(b);
                    preds[args[0]] = op[5..^4] switch
                    {
                        // Ordered compares are false when either operand is NaN; neu is true then; nan tests for NaN.
                        "eq" => a == b,
                        "lt" => a < b,
                        "le" => a <= b,
                        "gt" => a > b,
                        "ne" => !unordered && a != b,
                        "neu" => unordered || a != b,
                        "nan" => unordered,
                        var c => throw new InvalidOperationException($"'{line}': compare '{c}' is not known to the evaluator"),
                    };
                    break;
                }
                throw new InvalidOperationException($"'{line}': {op} is not known to the evaluator");
        }
    }
}
