using System.Globalization;
using System.Text.RegularExpressions;
using OnnxAdadelta.Bench;
using OnnxAdadelta.Optimizers;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Optimizers;

/// <summary>
/// The fused update's PTX, checked without a GPU: its structure, and its per-element code executed by a small evaluator of
/// the PTX instructions the emitter uses (each with its meaning in the PTX ISA manual), bit for bit against
/// <see cref="UpdateProgram.Run"/>. This proves the emitter's operation order, register wiring, dtype conversions and
/// compare/select spellings; it does not prove that a GPU or ptxas follows the manual.
/// </summary>
public partial class UpdatePtxTests
{
    public static TheoryData<string> Cases => new(OptionCases.All.Select(c => c.Name));

    private static UpdateProgram Program(string name, string parameter = "W") =>
        UpdateProgram.Record(OptionCases.All.Single(c => c.Name == name).Options, parameter);

    private static DataType[] Floats(int n) => Enumerable.Repeat(DataType.Float, n).ToArray();

    private static string Emit(UpdateProgram p) => UpdatePtx.Emit(p, Floats(p.Inputs), Floats(p.Outputs.Length));

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryOptionCaseHasAPtxForm(string name)
    {
        foreach (var parameter in new[] { "W", "b" })
            Assert.Null(UpdatePtx.Unsupported(Program(name, parameter)));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void FloatArithmeticCarriesRoundToNearestAndNothingFuses(string name)
    {
        var ptx = Emit(Program(name));
        var arithmetic = ptx.Split('\n').Select(l => l.Trim()).Where(l => ArithmeticLine().IsMatch(l)).ToList();
        Assert.NotEmpty(arithmetic);
        Assert.All(arithmetic, l => Assert.Matches(@"^(add|sub|mul|div|sqrt)\.rn\.f32 ", l));
        Assert.DoesNotContain("fma", ptx);
        Assert.DoesNotContain("mad", ptx);
        Assert.DoesNotContain(".ftz", ptx);
        Assert.DoesNotContain(".approx", ptx);
        Assert.DoesNotContain(".full", ptx);
    }

    [GeneratedRegex(@"^(add|sub|mul|div|sqrt|rcp|neg|abs|max|min)(\.\w+)*\.f32\b")]
    private static partial Regex ArithmeticLine();

    [Theory]
    [MemberData(nameof(Cases))]
    public void TheKernelIsWellFormed(string name)
    {
        var program = Program(name);
        foreach (bool master in new[] { false, true })
        {
            var ptx = UpdatePtx.Emit(program, Floats(program.Inputs), Floats(program.Outputs.Length), master ? DataType.Bfloat16 : null);
            var lines = ptx.Split('\n');
            Assert.Contains(".version 7.0", lines);
            Assert.Contains(".target sm_70", lines);
            Assert.Contains(".address_size 64", lines);
            Assert.Contains($".visible .entry {UpdatePtx.EntryName}(", lines);
            Assert.Equal(ptx.Count(c => c == '{'), ptx.Count(c => c == '}'));
            Assert.Equal(ptx.Count(c => c == '('), ptx.Count(c => c == ')'));
            var parameters = lines.Where(l => l.TrimStart().StartsWith(".param ", StringComparison.Ordinal)).ToList();
            Assert.Equal(UpdatePtx.ParameterCount(program, master), parameters.Count);
            Assert.Equal(program.ScalarRegisters, parameters.Count(l => l.Contains(".param .f32 ", StringComparison.Ordinal)));
            Assert.Equal(1 + program.Inputs + program.Outputs.Length + (master ? 1 : 0), parameters.Count(l => l.Contains(".param .u64 ", StringComparison.Ordinal)));
            // Every parameter declared is loaded, and every register used is declared (within its <N> range).
            foreach (var p in parameters.Select(l => l.Trim().TrimEnd(',').Split(' ')[^1]))
                Assert.Contains($"[{p}];", ptx);
            var declared = Declarations(lines);
            var code = string.Join("\n", lines.Where(l => !l.TrimStart().StartsWith(".reg ", StringComparison.Ordinal)));
            foreach (Match use in Regex.Matches(code, @"%([a-z]+)(\d*)(\.[xyz])?"))
            {
                if (use.Groups[3].Success) continue; // %ctaid.x, %ntid.x, %tid.x, %nctaid.x: special registers
                string stem = use.Groups[1].Value, index = use.Groups[2].Value;
                if (declared.Named.Contains(stem + index)) continue;
                Assert.True(declared.Ranges.TryGetValue(stem, out int count) && index.Length > 0 && int.Parse(index, CultureInfo.InvariantCulture) < count,
                    $"{name}: register {use.Value} is not declared");
            }
            // Branch targets exist; each instruction line ends with ';'.
            foreach (Match target in Regex.Matches(ptx, @"bra(\.uni)? (\$\w+);"))
                Assert.Contains(target.Groups[2].Value + ":", lines);
            int begin = Array.IndexOf(lines, "\t" + UpdatePtx.ElementBegin), end = Array.IndexOf(lines, "\t" + UpdatePtx.ElementEnd);
            Assert.True(begin > 0 && end > begin, "element markers");
            Assert.All(lines[(begin + 1)..end], l => Assert.EndsWith(";", l));
        }
    }

    private static (HashSet<string> Named, Dictionary<string, int> Ranges) Declarations(string[] lines)
    {
        var named = new HashSet<string>(StringComparer.Ordinal);
        var ranges = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var line in lines.Select(l => l.Trim()).Where(l => l.StartsWith(".reg ", StringComparison.Ordinal)))
        {
            foreach (var name in line.TrimEnd(';').Split(' ', 3)[2].Split(',').Select(n => n.Trim().TrimStart('%')))
            {
                var range = Regex.Match(name, @"^([a-z]+)<(\d+)>$");
                if (range.Success) ranges[range.Groups[1].Value] = int.Parse(range.Groups[2].Value, CultureInfo.InvariantCulture);
                else named.Add(name);
            }
        }
        return (named, ranges);
    }

    [Fact]
    public void TheArgumentsAreChecked()
    {
        var p = Program("defaults");
        Assert.Contains("input dtypes", Assert.Throws<ArgumentException>(() => UpdatePtx.Emit(p, Floats(p.Inputs - 1), Floats(p.Outputs.Length))).Message);
        Assert.Contains("output dtypes", Assert.Throws<ArgumentException>(() => UpdatePtx.Emit(p, Floats(p.Inputs), Floats(p.Outputs.Length + 1))).Message);
        Assert.Contains("Double", Assert.Throws<ArgumentException>(() => UpdatePtx.Emit(p, Floats(p.Inputs), Floats(p.Outputs.Length), DataType.Double)).Message);
    }

    // Values that exercise the compare/select spellings: signed zeros, NaN, infinities, a subnormal, ties of bfloat16.
    private static readonly float[] Specials =
        [0f, -0f, float.NaN, float.PositiveInfinity, float.NegativeInfinity, 1e-40f, -1e-40f, 1f, -1f, 0.05f, -0.05f, 0.5f, BitConverter.UInt32BitsToSingle(0x3F808000)];

    private static float[] Random(Random rng, int n, float scale) =>
        Enumerable.Range(0, n).Select(i => i < Specials.Length ? Specials[(i + rng.Next(Specials.Length)) % Specials.Length] : scale * (float)(rng.NextDouble() * 2 - 1)).ToArray();

    public static TheoryData<string, string> SemanticCases
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (var (name, _) in OptionCases.All) data.Add(name, "float32");
            foreach (var name in new[] { "defaults", "clipvalue", "maximize", "everything", "ema" })
            {
                data.Add(name, "float16");
                data.Add(name, "bfloat16");
                data.Add(name, "master bfloat16");
                data.Add(name, "master float16");
            }
            return data;
        }
    }

    [Theory]
    [MemberData(nameof(SemanticCases))]
    public void ThePerElementCodeComputesTheProgramBitForBit(string name, string storage)
    {
        const int n = 97;
        foreach (var parameter in new[] { "W", "b" })
        {
            var program = Program(name, parameter);
            var low = storage.EndsWith("bfloat16", StringComparison.Ordinal) ? DataType.Bfloat16 : storage.EndsWith("float16", StringComparison.Ordinal) ? DataType.Float16 : DataType.Float;
            bool master = storage.StartsWith("master", StringComparison.Ordinal);
            // Plain low precision: every tensor stored low. Master weights: float32 master copy and state, low gradient
            // and a low stored parameter narrowed from the new master copy.
            var inputTypes = Enumerable.Range(0, program.Inputs).Select(k => master ? (k == 1 ? low : DataType.Float) : low).ToArray();
            var outputTypes = Enumerable.Range(0, program.Outputs.Length).Select(_ => master ? DataType.Float : low).ToArray();
            DataType? stored = master ? low : null;
            var ptx = UpdatePtx.Emit(program, inputTypes, outputTypes, stored);
            var rng = new Random(name.GetHashCode(StringComparison.Ordinal) & 0xFFFF);
            foreach (long step in new long[] { 0, 1, 2, 5 })
            {
                var inputs = Enumerable.Range(0, program.Inputs)
                    .Select(k => MixedPrecision.Round(Random(rng, n, k == 1 ? 0.3f : 1f).Select(v => k >= 2 ? MathF.Abs(v) : v).ToArray(), inputTypes[k]))
                    .ToArray();
                var expected = program.Run(step, inputs);
                var scalars = new float[program.ScalarRegisters];
                program.EvaluateScalars(step, scalars);
                var got = PtxElementEvaluator.Run(ptx, inputs, inputTypes, outputTypes, stored, scalars, n);
                for (int o = 0; o < expected.Length; o++)
                    AssertSame(expected[o], outputTypes[o], got[o], $"{name} {storage} {parameter} step {step} output {o}");
                if (stored is { } s)
                    AssertSame(expected[0], s, got[^1], $"{name} {storage} {parameter} step {step} stored parameter");
            }
        }
    }

    // The CPU's value narrowed to the output's dtype, against the evaluator's stored bits. NaN against NaN is equal:
    // arithmetic NaN bits differ by design (the class remarks of UpdatePtx); everything else is compared bit for bit.
    private static void AssertSame(float[] cpu, DataType type, uint[] gpuBits, string what)
    {
        for (int k = 0; k < cpu.Length; k++)
        {
            uint want = type switch
            {
                DataType.Float => BitConverter.SingleToUInt32Bits(cpu[k]),
                DataType.Float16 => BitConverter.HalfToUInt16Bits((Half)cpu[k]),
                _ => MixedPrecision.ToBFloat16Bits(cpu[k]),
            };
            bool bothNaN = type switch
            {
                DataType.Float => float.IsNaN(cpu[k]) && float.IsNaN(BitConverter.UInt32BitsToSingle(gpuBits[k])),
                DataType.Float16 => Half.IsNaN((Half)cpu[k]) && Half.IsNaN(BitConverter.UInt16BitsToHalf((ushort)gpuBits[k])),
                _ => false,
            };
            if (!bothNaN) Assert.True(want == gpuBits[k], $"{what}, element {k}: CPU 0x{want:X8} ({cpu[k]}), PTX 0x{gpuBits[k]:X8}");
        }
    }

    [Fact]
    public void TheEvaluatorFollowsThePtxManualNotTheCpu()
    {
        // max.f32 would return the non-NaN operand; the emitter must not use it, and the evaluator refuses what it does
        // not know, so a changed emitter cannot pass by accident.
        const string ptx = "\t// element begin\n\tmax.f32 %f0, %f1, %f2;\n\t// element end\n";
        var e = Assert.Throws<InvalidOperationException>(() => PtxElementEvaluator.Run(ptx, [], [], [], null, [], 1));
        Assert.Contains("max.f32", e.Message);
        // The evaluator's own semantics: ordered and unordered compares differ on NaN; sqrt.rn is correctly rounded.
        const string compare = "\t// element begin\n\tsetp.ne.f32 %p0, %s0, 0f00000000;\n\tsetp.neu.f32 %p1, %s0, 0f00000000;\n" +
            "\tselp.f32 %f0, 0f3F800000, 0f00000000, %p0;\n\tselp.f32 %f1, 0f3F800000, 0f00000000, %p1;\n\tsqrt.rn.f32 %f2, %s1;\n" +
            "\tadd.s64 %ea, %out0, %off4;\n\tst.global.f32 [%ea], %f0;\n\tadd.s64 %ea, %out1, %off4;\n\tst.global.f32 [%ea], %f1;\n" +
            "\tadd.s64 %ea, %out2, %off4;\n\tst.global.f32 [%ea], %f2;\n\t// element end\n";
        var got = PtxElementEvaluator.Run(compare.Replace("begin\n", "begin\n\tshl.b64 %off4, %i, 2;\n", StringComparison.Ordinal), [], [], [DataType.Float, DataType.Float, DataType.Float], null, [float.NaN, 2f], 1);
        Assert.Equal(0u, got[0][0]);
        Assert.Equal(BitConverter.SingleToUInt32Bits(1f), got[1][0]);
        Assert.Equal(BitConverter.SingleToUInt32Bits(MathF.Sqrt(2f)), got[2][0]);
    }
}
