using System.Globalization;
using System.Text;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Optimizers;

/// <summary>
/// The CUDA kernel of the fused update as PTX text, generated from an <see cref="UpdateProgram"/>'s elementwise part:
/// per element, straight-line code that loads each input (widening float16/bfloat16), runs the program's instructions in
/// their order and stores each output (narrowing), in a grid-stride loop over a 64-bit element index.
/// </summary>
/// <remarks>
/// <para>
/// Every float32 add, subtract, multiply, divide and square root carries <c>.rn</c>: ptxas never contracts an
/// instruction with an explicit rounding mode into a fused multiply-add, and <c>.rn</c> division and square root are the
/// correctly rounded IEEE operations, as on the CPU. No <c>.ftz</c>: subnormals are kept, as on the CPU.
/// </para>
/// <para>
/// The operations whose PTX forms differ from the CPU's are spelled out with compares and selects so that they match
/// <see cref="UpdateProgram"/> bit for bit: max/min (PTX <c>max.f32</c> returns the other operand when one is NaN; the CPU
/// returns NaN, 0xFFC00000, and treats +0 as greater than -0) are <c>setp</c>/<c>selp</c> with the bits of equal operands
/// ANDed (max) or ORed (min); negation is an XOR of the sign bit (PTX <c>neg.f32</c> leaves a NaN's bits unspecified);
/// <c>where</c> tests <c>a != 0</c> with the unordered <c>setp.neu</c> (a NaN condition is true, as in C#); bfloat16 narrowing
/// is the integer round-to-nearest-even of <see cref="MixedPrecision.ToBFloat16Bits"/>, NaN becoming 0x7FC1.
/// What is not matched: the NaN bits produced by arithmetic (the GPU returns the canonical NaN 0x7FFFFFFF, x86 the first
/// NaN operand's bits, quieted) and by float16 narrowing (<c>cvt.rn.f16.f32</c> gives the canonical NaN); every non-NaN
/// result is the same.
/// </para>
/// <para>
/// Target: PTX ISA 7.0 for <c>sm_70</c> (Volta). The code needs nothing newer (no <c>.NaN</c> max, no <c>cvt.bf16</c>,
/// both sm_80), the driver JIT-compiles PTX for any later GPU, and PTX 7.0 is accepted by every driver since CUDA 11.0.
/// </para>
/// <para>
/// Kernel parameters, in order: the element count (u64), a global pointer per input, per output, then the stored
/// parameter's pointer when the parameter has a low-precision stored copy of its master weights, then one float32 per
/// scalar register of the program (all of them, from <see cref="UpdateProgram.EvaluateScalars"/>).
/// </para>
/// </remarks>
public static class UpdatePtx
{
    /// <summary>The kernel's entry name.</summary>
    public const string EntryName = "adadelta_update";

    /// <summary>The PTX ISA version the text declares.</summary>
    public const string IsaVersion = "7.0";

    /// <summary>The GPU target the text declares.</summary>
    public const string Target = "sm_70";

    /// <summary>The most bytes of kernel parameters an sm_70 launch takes.</summary>
    public const int MaxParameterBytes = 4096;

    /// <summary>The marker line before the per-element code.</summary>
    public const string ElementBegin = "// element begin";

    /// <summary>The marker line after the per-element code.</summary>
    public const string ElementEnd = "// element end";

    /// <summary>The number of kernel parameters for <paramref name="program"/>.</summary>
    public static int ParameterCount(UpdateProgram program, bool stored)
    {
        ArgumentNullException.ThrowIfNull(program);
        return 1 + program.Inputs + program.Outputs.Length + (stored ? 1 : 0) + program.ScalarRegisters;
    }

    /// <summary>Why <paramref name="program"/> has no PTX form, or null when it has one.</summary>
    public static string? Unsupported(UpdateProgram program)
    {
        ArgumentNullException.ThrowIfNull(program);
        var transcendental = program.VectorCode.Where(i => i.Op is UpdateOp.Pow or UpdateOp.Cos or UpdateOp.Log).Select(i => (UpdateOp?)i.Op).FirstOrDefault();
        if (transcendental is { } op)
            return $"the update applies {op} to every element, which has no correctly rounded PTX instruction to match the CPU's";
        int bytes = 8 * (1 + program.Inputs + program.Outputs.Length + 1) + 4 * program.ScalarRegisters;
        if (bytes > MaxParameterBytes)
            return $"the kernel would take {bytes} bytes of parameters ({program.ScalarRegisters} scalar registers), over the {MaxParameterBytes} a launch allows";
        return null;
    }

    /// <summary>
    /// The PTX module of <paramref name="program"/> for inputs of dtypes <paramref name="inputs"/> and outputs of dtypes
    /// <paramref name="outputs"/> (float32, float16 or bfloat16), with <paramref name="stored"/> the dtype of the stored
    /// parameter narrowed from output 0 (master weights) or null.
    /// </summary>
    /// <exception cref="NotSupportedException">The program has no PTX form (<see cref="Unsupported"/>).</exception>
    /// <exception cref="ArgumentException">The dtype lists do not match the program, or a dtype is not a float storage dtype.</exception>
    public static string Emit(UpdateProgram program, IReadOnlyList<DataType> inputs, IReadOnlyList<DataType> outputs, DataType? stored = null)
    {
        ArgumentNullException.ThrowIfNull(program);
        if (Unsupported(program) is { } why) throw new NotSupportedException(why);
        if (inputs.Count != program.Inputs) throw new ArgumentException($"{inputs.Count} input dtypes; the program has {program.Inputs} inputs.", nameof(inputs));
        if (outputs.Count != program.Outputs.Length) throw new ArgumentException($"{outputs.Count} output dtypes; the program has {program.Outputs.Length} outputs.", nameof(outputs));
        foreach (var t in inputs.Concat(outputs).Append(stored ?? DataType.Float))
            if (t is not (DataType.Float or DataType.Float16 or DataType.Bfloat16))
                throw new ArgumentException($"dtype {t}: float32, float16 or bfloat16 expected.");
        return new Writer(program, inputs, outputs, stored).Write();
    }

    private static string Hex(float value) => "0f" + BitConverter.SingleToUInt32Bits(value).ToString("X8", CultureInfo.InvariantCulture);

    private sealed class Writer(UpdateProgram program, IReadOnlyList<DataType> inputs, IReadOnlyList<DataType> outputs, DataType? stored)
    {
        private readonly StringBuilder _body = new();
        private int _p, _h, _r, _t;

        private string Pred() => $"%p{_p++}";
        private string Half() => $"%h{_h++}";
        private string Bits() => $"%r{_r++}";
        private string Temp() => $"%t{_t++}";

        private void Line(string instruction) => _body.Append('\t').Append(instruction).Append('\n');

        private static string Reg(UpdateValue v) => v.IsScalar ? $"%s{v.Register}" : $"%f{v.Register}";

        public string Write()
        {
            Line("shl.b64 %off2, %i, 1;");
            Line("shl.b64 %off4, %i, 2;");
            for (int k = 0; k < inputs.Count; k++) Load(inputs[k], $"%in{k}", $"%f{k}");
            foreach (var ins in program.VectorCode) Instruction(ins);
            for (int o = 0; o < outputs.Count; o++) Store(outputs[o], $"%out{o}", Reg(program.Outputs[o]));
            if (stored is { } st) Store(st, "%stored", Reg(program.Outputs[0]));

            var ptx = new StringBuilder();
            ptx.Append(CultureInfo.InvariantCulture, $"// The fused Adadelta update of one parameter ({program.VectorInstructionCount} elementwise instructions), generated by OnnxAdadelta.Optimizers.UpdatePtx.\n");
            ptx.Append(CultureInfo.InvariantCulture, $".version {IsaVersion}\n.target {Target}\n.address_size 64\n\n");
            var parameters = new List<string> { ".param .u64 n" };
            parameters.AddRange(Enumerable.Range(0, inputs.Count).Select(k => $".param .u64 in{k}"));
            parameters.AddRange(Enumerable.Range(0, outputs.Count).Select(o => $".param .u64 out{o}"));
            if (stored is not null) parameters.Add(".param .u64 stored");
            parameters.AddRange(Enumerable.Range(0, program.ScalarRegisters).Select(s => $".param .f32 s{s}"));
            ptx.Append(CultureInfo.InvariantCulture, $".visible .entry {EntryName}(\n\t").Append(string.Join(",\n\t", parameters)).Append("\n)\n{\n");
            void Declare(string type, string name, int count)
            {
                if (count > 0) ptx.Append(CultureInfo.InvariantCulture, $"\t.reg {type} {name}<{count}>;\n");
            }
            Declare(".pred", "%p", _p);
            Declare(".b16", "%h", _h);
            Declare(".b32", "%r", _r);
            Declare(".f32", "%t", _t);
            Declare(".f32", "%f", program.VectorRegisters);
            Declare(".f32", "%s", program.ScalarRegisters);
            Declare(".b64", "%in", inputs.Count);
            Declare(".b64", "%out", outputs.Count);
            if (stored is not null) ptx.Append("\t.reg .b64 %stored;\n");
            ptx.Append("\t.reg .b64 %i, %n, %stride, %ea, %off2, %off4;\n\t.reg .b32 %bid, %bdim, %tx, %gdim;\n\t.reg .pred %done;\n\n");
            ptx.Append("\tld.param.u64 %n, [n];\n");
            for (int k = 0; k < inputs.Count; k++) ptx.Append(CultureInfo.InvariantCulture, $"\tld.param.u64 %in{k}, [in{k}];\n\tcvta.to.global.u64 %in{k}, %in{k};\n");
            for (int o = 0; o < outputs.Count; o++) ptx.Append(CultureInfo.InvariantCulture, $"\tld.param.u64 %out{o}, [out{o}];\n\tcvta.to.global.u64 %out{o}, %out{o};\n");
            if (stored is not null) ptx.Append("\tld.param.u64 %stored, [stored];\n\tcvta.to.global.u64 %stored, %stored;\n");
            for (int s = 0; s < program.ScalarRegisters; s++) ptx.Append(CultureInfo.InvariantCulture, $"\tld.param.f32 %s{s}, [s{s}];\n");
            // i = blockIdx.x * blockDim.x + threadIdx.x and stride = gridDim.x * blockDim.x, both 64-bit.
            ptx.Append("\tmov.u32 %bid, %ctaid.x;\n\tmov.u32 %bdim, %ntid.x;\n\tmov.u32 %tx, %tid.x;\n\tmov.u32 %gdim, %nctaid.x;\n");
            ptx.Append("\tmul.wide.u32 %i, %bid, %bdim;\n\tcvt.u64.u32 %ea, %tx;\n\tadd.u64 %i, %i, %ea;\n\tmul.wide.u32 %stride, %gdim, %bdim;\n");
            ptx.Append("$Lloop:\n\tsetp.ge.u64 %done, %i, %n;\n\t@%done bra $Ldone;\n");
            ptx.Append('\t').Append(ElementBegin).Append('\n').Append(_body).Append('\t').Append(ElementEnd).Append('\n');
            ptx.Append("\tadd.u64 %i, %i, %stride;\n\tbra.uni $Lloop;\n$Ldone:\n\tret;\n}\n");
            return ptx.ToString();
        }

        private void Load(DataType type, string pointer, string dst)
        {
            switch (type)
            {
                case DataType.Float:
                    Line($"add.s64 %ea, {pointer}, %off4;");
                    Line($"ld.global.f32 {dst}, [%ea];");
                    break;
                case DataType.Float16:
                {
                    var h = Half();
                    Line($"add.s64 %ea, {pointer}, %off2;");
                    Line($"ld.global.u16 {h}, [%ea];");
                    Line($"cvt.f32.f16 {dst}, {h};");
                    break;
                }
                default:
                {
                    var h = Half();
                    var r = Bits();
                    Line($"add.s64 %ea, {pointer}, %off2;");
                    Line($"ld.global.u16 {h}, [%ea];");
                    Line($"cvt.u32.u16 {r}, {h};");
                    Line($"shl.b32 {r}, {r}, 16;");
                    Line($"mov.b32 {dst}, {r};");
                    break;
                }
            }
        }

        private void Store(DataType type, string pointer, string value)
        {
            switch (type)
            {
                case DataType.Float:
                    Line($"add.s64 %ea, {pointer}, %off4;");
                    Line($"st.global.f32 [%ea], {value};");
                    break;
                case DataType.Float16:
                {
                    var h = Half();
                    Line($"cvt.rn.f16.f32 {h}, {value};");
                    Line($"add.s64 %ea, {pointer}, %off2;");
                    Line($"st.global.u16 [%ea], {h};");
                    break;
                }
                default:
                {
                    // MixedPrecision.ToBFloat16Bits: NaN -> 0x7FC1, else (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16.
                    var (r, lsb, p, h) = (Bits(), Bits(), Pred(), Half());
                    Line($"mov.b32 {r}, {value};");
                    Line($"shr.u32 {lsb}, {r}, 16;");
                    Line($"and.b32 {lsb}, {lsb}, 1;");
                    Line($"add.u32 {lsb}, {lsb}, 32767;");
                    Line($"add.u32 {r}, {r}, {lsb};");
                    Line($"shr.u32 {r}, {r}, 16;");
                    Line($"setp.nan.f32 {p}, {value}, {value};");
                    Line($"selp.b32 {r}, 32705, {r}, {p};");
                    Line($"cvt.u16.u32 {h}, {r};");
                    Line($"add.s64 %ea, {pointer}, %off2;");
                    Line($"st.global.u16 [%ea], {h};");
                    break;
                }
            }
        }

        private void Instruction(UpdateInstruction ins)
        {
            string d = Reg(ins.Dst), a = Reg(ins.A), b = Reg(ins.B), c = Reg(ins.C);
            switch (ins.Op)
            {
                case UpdateOp.Add: Line($"add.rn.f32 {d}, {a}, {b};"); break;
                case UpdateOp.Sub: Line($"sub.rn.f32 {d}, {a}, {b};"); break;
                case UpdateOp.Mul: Line($"mul.rn.f32 {d}, {a}, {b};"); break;
                case UpdateOp.Div: Line($"div.rn.f32 {d}, {a}, {b};"); break;
                case UpdateOp.Sqrt: Line($"sqrt.rn.f32 {d}, {a};"); break;
                case UpdateOp.Floor: Line($"cvt.rmi.f32.f32 {d}, {a};"); break;
                case UpdateOp.Ceil: Line($"cvt.rpi.f32.f32 {d}, {a};"); break;
                case UpdateOp.Neg:
                {
                    var r = Bits();
                    Line($"mov.b32 {r}, {a};");
                    Line($"xor.b32 {r}, {r}, -2147483648;");
                    Line($"mov.b32 {d}, {r};");
                    break;
                }
                case UpdateOp.Max or UpdateOp.Min:
                {
                    // UpdateProgram's MaxOp/MinOp: the strictly greater (smaller) operand, else b; equal operands ANDed
                    // (ORed) bit by bit, so max(+0, -0) = +0 and min(+0, -0) = -0; NaN if either operand is NaN.
                    bool max = ins.Op == UpdateOp.Max;
                    var (order, equal, nan) = (Pred(), Pred(), Pred());
                    var (pick, ra, rb, t) = (Temp(), Bits(), Bits(), Temp());
                    Line($"setp.{(max ? "gt" : "lt")}.f32 {order}, {a}, {b};");
                    Line($"selp.f32 {pick}, {a}, {b}, {order};");
                    Line($"mov.b32 {ra}, {a};");
                    Line($"mov.b32 {rb}, {b};");
                    Line($"{(max ? "and" : "or")}.b32 {ra}, {ra}, {rb};");
                    Line($"mov.b32 {t}, {ra};");
                    Line($"setp.eq.f32 {equal}, {a}, {b};");
                    Line($"selp.f32 {pick}, {t}, {pick}, {equal};");
                    Line($"setp.nan.f32 {nan}, {a}, {b};");
                    Line($"selp.f32 {d}, {Hex(float.NaN)}, {pick}, {nan};");
                    break;
                }
                case UpdateOp.Where:
                {
                    var p = Pred();
                    Line($"setp.neu.f32 {p}, {a}, 0f00000000;");
                    Line($"selp.f32 {d}, {b}, {c}, {p};");
                    break;
                }
                case UpdateOp.Less or UpdateOp.LessOrEqual or UpdateOp.Equal:
                {
                    var p = Pred();
                    Line($"setp.{ins.Op switch { UpdateOp.Less => "lt", UpdateOp.LessOrEqual => "le", _ => "eq" }}.f32 {p}, {a}, {b};");
                    Line($"selp.f32 {d}, 0f3F800000, 0f00000000, {p};");
                    break;
                }
                default:
                    throw new NotSupportedException($"{ins.Op} has no PTX form in the fused update's kernel.");
            }
        }
    }
}
