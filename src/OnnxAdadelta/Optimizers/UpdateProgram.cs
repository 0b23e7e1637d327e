using System.Numerics;
using System.Runtime.CompilerServices;

namespace OnnxAdadelta.Optimizers;

/// <summary>A value of an <see cref="UpdateProgram"/> being recorded: a scalar register or an elementwise (vector) register.</summary>
/// <param name="Register">The register's index in its file.</param>
/// <param name="IsScalar">Whether the value is one float for the whole tensor (constants, the learning rate, counter conditions).</param>
public readonly record struct UpdateValue(int Register, bool IsScalar);

/// <summary>An operation of an <see cref="UpdateProgram"/>.</summary>
public enum UpdateOp : byte
{
    /// <summary>A constant scalar.</summary>
    Constant,
    /// <summary>The iteration counter as float32 (read before the step increments it).</summary>
    Step,
    /// <summary>1 when the counter is 0, else 0.</summary>
    IsFirstStep,
    /// <summary>1 when (counter + 1) % N == 0, else 0.</summary>
    EveryNth,
    /// <summary>a + b.</summary>
    Add,
    /// <summary>a - b.</summary>
    Sub,
    /// <summary>a * b.</summary>
    Mul,
    /// <summary>a / b.</summary>
    Div,
    /// <summary>-a (sign flip).</summary>
    Neg,
    /// <summary>sqrt(a).</summary>
    Sqrt,
    /// <summary>max(a, b), NaN if either is.</summary>
    Max,
    /// <summary>min(a, b), NaN if either is.</summary>
    Min,
    /// <summary>floor(a).</summary>
    Floor,
    /// <summary>ceil(a).</summary>
    Ceil,
    /// <summary>pow(a, b).</summary>
    Pow,
    /// <summary>cos(a).</summary>
    Cos,
    /// <summary>log(a).</summary>
    Log,
    /// <summary>a &lt; b as 1/0.</summary>
    Less,
    /// <summary>a &lt;= b as 1/0.</summary>
    LessOrEqual,
    /// <summary>a == b as 1/0.</summary>
    Equal,
    /// <summary>a != 0 ? b : c.</summary>
    Where,
    /// <summary>
    /// A scalar computed outside the program: the sum of squares a norm needs (clipnorm, global_clipnorm), which the
    /// step computes in standard ops before the update; <c>N</c> is its index among <see cref="UpdateProgram.Reductions"/>.
    /// </summary>
    Reduction,
}

/// <summary>One instruction: <c>Dst = Op(A, B, C)</c>; operand flags say which operands are scalar registers.</summary>
internal readonly record struct UpdateInstruction(UpdateOp Op, UpdateValue Dst, UpdateValue A, UpdateValue B, UpdateValue C, float Value, long N);

/// <summary>
/// The update of one parameter as a straight-line program recorded from the optimizer's own pieces
/// (<see cref="AdadeltaOptions.Chain"/>, <see cref="AdadeltaOptions.LearningRateAt{T}(ITensorMath{T}, T, ParameterGroup?)"/>)
/// through <see cref="ITensorMath{T}"/>, the interface <see cref="GraphMath"/> and the reference's ArrayMath implement.
/// The fused kernels run it: scalar instructions (the learning rate, counter conditions) once per step, elementwise
/// instructions block by block with <see cref="Vector{T}"/> and no fused multiply-add, so the result is that of the
/// reference, bit for bit.
/// </summary>
/// <remarks>
/// Vector inputs, in order: the parameter's float32 value (or its master copy), its gradient, then its state slots in
/// <see cref="Slots"/> order. Outputs: the new parameter, then the new value of each slot. Reductions (the sums of
/// squares of clipnorm and global_clipnorm) have no elementwise form: each is a scalar the program reads
/// (<see cref="UpdateOp.Reduction"/>, listed in <see cref="Reductions"/>), computed before it runs.
/// </remarks>
public sealed class UpdateProgram
{
    /// <summary>Elements per block: the elementwise registers of one block stay in the L1 cache.</summary>
    public const int BlockSize = 512;

    private readonly UpdateInstruction[] _scalar;
    private readonly UpdateInstruction[] _vector;

    private UpdateProgram(List<UpdateInstruction> code, int scalars, int vectors, int inputs, IReadOnlyList<string> slots, UpdateValue[] outputs, IReadOnlyList<string> reductions)
    {
        Reductions = reductions;
        _scalar = code.Where(i => i.Dst.IsScalar).ToArray();
        _vector = code.Where(i => !i.Dst.IsScalar).ToArray();
        ScalarRegisters = scalars;
        VectorRegisters = vectors;
        Inputs = inputs;
        Slots = slots;
        Outputs = outputs;
    }

    /// <summary>The state slots the program reads and writes, in input and output order.</summary>
    public IReadOnlyList<string> Slots { get; }

    /// <summary>
    /// The reductions the program reads, in <see cref="UpdateOp.Reduction"/> index order: <c>clipnorm</c> (the sum of
    /// squares of this parameter's gradient) or <c>global_clipnorm</c> (the sum over every parameter's gradient).
    /// </summary>
    public IReadOnlyList<string> Reductions { get; }

    /// <summary>The number of vector inputs: parameter, gradient, slots.</summary>
    public int Inputs { get; }

    /// <summary>The registers of the outputs: new parameter, then the slots.</summary>
    internal UpdateValue[] Outputs { get; }

    /// <summary>Scalar registers.</summary>
    public int ScalarRegisters { get; }

    /// <summary>Vector registers (the inputs first).</summary>
    public int VectorRegisters { get; }

    /// <summary>The elementwise instructions, in order (for the CUDA kernel's PTX, <see cref="UpdatePtx"/>).</summary>
    internal IReadOnlyList<UpdateInstruction> VectorCode => _vector;

    /// <summary>The elementwise instructions per element (a measure of the work, for tests and the benchmark).</summary>
    public int VectorInstructionCount => _vector.Length;

    /// <summary>Records the update of parameter <paramref name="parameter"/> under <paramref name="options"/>.</summary>
    public static UpdateProgram Record(AdadeltaOptions options, string parameter)
    {
        var chain = options.Chain();
        var slots = UpdateChain.Slots(chain);
        var r = new Recorder(chain);
        var param = r.Input();
        var gradient = r.Input();
        var state = slots.ToDictionary(s => s, _ => r.Input(), StringComparer.Ordinal);
        var step = r.Emit(UpdateOp.Step, default, default, default, scalar: true);
        var group = options.GroupOf(parameter);
        var lr = options.LearningRateAt(r, step, group);
        var result = UpdateChain.Run(r, chain, new ParameterStep<UpdateValue>(param, state, lr, parameter, r, group), gradient);
        UpdateValue[] outputs = [result.NewParameter, .. slots.Select(s => result.NewState[s])];
        return new UpdateProgram(r.Code, r.Scalars, r.Vectors, 2 + slots.Count, slots, outputs, r.Reductions);
    }

    /// <summary>
    /// Evaluates the scalar part for the step with counter <paramref name="iterations"/> into <paramref name="scalars"/>,
    /// with the values of the program's <see cref="Reductions"/> in <paramref name="reductions"/>.
    /// </summary>
    public void EvaluateScalars(long iterations, Span<float> scalars, ReadOnlySpan<float> reductions = default)
    {
        if (scalars.Length < ScalarRegisters) throw new ArgumentException($"{scalars.Length} scalar registers, {ScalarRegisters} needed.", nameof(scalars));
        if (reductions.Length != Reductions.Count) throw new ArgumentException($"{reductions.Length} reduction values, {Reductions.Count} needed ({string.Join(", ", Reductions)}).", nameof(reductions));
        foreach (var i in _scalar)
        {
            float a = i.A.IsScalar ? scalars[i.A.Register] : 0, b = i.B.IsScalar ? scalars[i.B.Register] : 0, c = i.C.IsScalar ? scalars[i.C.Register] : 0;
            scalars[i.Dst.Register] = i.Op switch
            {
                UpdateOp.Constant => i.Value,
                UpdateOp.Step => iterations,
                UpdateOp.IsFirstStep => iterations == 0 ? 1f : 0f,
                UpdateOp.EveryNth => (iterations + 1) % i.N == 0 ? 1f : 0f,
                UpdateOp.Reduction => reductions[(int)i.N],
                UpdateOp.Where => a != 0 ? b : c,
                _ => Scalar(i.Op, a, b),
            };
        }
    }

    /// <summary>
    /// Runs the elementwise part on <paramref name="count"/> (at most <see cref="BlockSize"/>) elements:
    /// <paramref name="inputs"/> points at each input's float32 values, <paramref name="outputs"/> at where each output goes.
    /// An output may be the memory of an input (in place): every input is read before any output is written.
    /// </summary>
    /// <param name="scalars">The scalar registers from <see cref="EvaluateScalars"/>.</param>
    /// <param name="inputs">One pointer per input (<see cref="Inputs"/>).</param>
    /// <param name="outputs">One pointer per output (1 + slots).</param>
    /// <param name="count">Elements in this block.</param>
    /// <param name="scratch">At least <see cref="ScratchFloats"/> floats, 64-byte aligned for speed.</param>
    public unsafe void RunBlock(ReadOnlySpan<float> scalars, float** inputs, float** outputs, int count, float* scratch)
    {
        if ((uint)count > BlockSize) throw new ArgumentOutOfRangeException(nameof(count), count, $"At most {BlockSize} elements per block.");
        var regs = stackalloc float*[VectorRegisters + Outputs.Length];
        for (int i = 0; i < Inputs; i++) regs[i] = inputs[i];
        for (int i = Inputs; i < VectorRegisters; i++) regs[i] = scratch + (i - Inputs) * BlockSize;
        foreach (var ins in _vector)
        {
            float* d = regs[ins.Dst.Register];
            switch (ins.Op)
            {
                case UpdateOp.Where:
                    // The conditions the chain makes are scalars (counter tests): select a whole register without copying.
                    if (ins.A.IsScalar)
                    {
                        var pick = scalars[ins.A.Register] != 0 ? ins.B : ins.C;
                        if (pick.IsScalar) Fill(d, scalars[pick.Register], count);
                        else regs[ins.Dst.Register] = regs[pick.Register];
                    }
                    else
                    {
                        for (int k = 0; k < count; k++)
                            d[k] = regs[ins.A.Register][k] != 0 ? Load(ins.B, regs, scalars, k) : Load(ins.C, regs, scalars, k);
                    }
                    break;
                case UpdateOp.Add: Binary<AddOp>(ins, regs, scalars, d, count); break;
                case UpdateOp.Sub: Binary<SubOp>(ins, regs, scalars, d, count); break;
                case UpdateOp.Mul: Binary<MulOp>(ins, regs, scalars, d, count); break;
                case UpdateOp.Div: Binary<DivOp>(ins, regs, scalars, d, count); break;
                case UpdateOp.Max: Binary<MaxOp>(ins, regs, scalars, d, count); break;
                case UpdateOp.Min: Binary<MinOp>(ins, regs, scalars, d, count); break;
                case UpdateOp.Neg: Unary<NegOp>(regs[ins.A.Register], d, count); break;
                case UpdateOp.Sqrt: Unary<SqrtOp>(regs[ins.A.Register], d, count); break;
                default:
                    for (int k = 0; k < count; k++) d[k] = Scalar(ins.Op, Load(ins.A, regs, scalars, k), Load(ins.B, regs, scalars, k));
                    break;
            }
        }
        // An output whose register is another input's memory is staged first: storing an earlier output in place could
        // overwrite that memory.
        float* staging = scratch + (VectorRegisters - Inputs) * BlockSize;
        var sources = regs + VectorRegisters;
        for (int o = 0; o < Outputs.Length; o++)
        {
            var reg = Outputs[o];
            if (reg.IsScalar) { sources[o] = null; continue; }
            float* src = regs[reg.Register];
            bool isInput = false;
            for (int i = 0; i < Inputs; i++) isInput |= src == inputs[i];
            if (isInput && src != outputs[o])
            {
                float* copy = staging + o * BlockSize;
                new ReadOnlySpan<float>(src, count).CopyTo(new Span<float>(copy, count));
                src = copy;
            }
            sources[o] = src;
        }
        for (int o = 0; o < Outputs.Length; o++)
        {
            if (sources[o] is null) Fill(outputs[o], scalars[Outputs[o].Register], count);
            else if (sources[o] != outputs[o]) new ReadOnlySpan<float>(sources[o], count).CopyTo(new Span<float>(outputs[o], count));
        }
    }

    /// <summary>
    /// Whether <see cref="RunElements"/> runs a compiled kernel (<see cref="UpdateKernel"/>: one pass over memory, every
    /// instruction in registers) rather than the interpreter. False where the runtime has no dynamic code (native AOT)
    /// or an elementwise instruction has no compiled form; the results are the same bit for bit either way.
    /// </summary>
    public bool IsCompiled => Kernel is not null;

    private UpdateKernel.Body? Kernel => _kernelResolved ? _kernel : ResolveKernel();

    private UpdateKernel.Body? _kernel;
    private volatile bool _kernelResolved;

    private UpdateKernel.Body? ResolveKernel()
    {
        _kernel = UpdateKernel.For(this);
        _kernelResolved = true;
        return _kernel;
    }

    /// <summary>
    /// Runs the elementwise part on <paramref name="count"/> elements: with the compiled kernel in one pass (see
    /// <see cref="IsCompiled"/>), else with <see cref="RunBlock"/> block by block. <paramref name="inputs"/> points at
    /// each input's float32 values, <paramref name="outputs"/> at where each output goes; an output may be exactly the
    /// memory of an input (in place), but must not partly overlap one.
    /// </summary>
    /// <param name="scalars">The scalar registers from <see cref="EvaluateScalars"/>.</param>
    /// <param name="inputs">One pointer per input (<see cref="Inputs"/>).</param>
    /// <param name="outputs">One pointer per output (1 + slots).</param>
    /// <param name="count">Elements.</param>
    /// <param name="scratch">At least <see cref="ScratchFloats"/> floats (used by the interpreter only).</param>
    /// <param name="interpreted">Run the interpreter even where a compiled kernel exists (for tests and checks).</param>
    public unsafe void RunElements(ReadOnlySpan<float> scalars, float** inputs, float** outputs, int count, float* scratch, bool interpreted = false)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (scalars.Length < ScalarRegisters) throw new ArgumentException($"{scalars.Length} scalar registers, {ScalarRegisters} needed.", nameof(scalars));
        if (!interpreted && Kernel is { } kernel)
        {
            fixed (float* s = scalars) kernel(s, inputs, outputs, count);
            return;
        }
        var inPtr = stackalloc float*[Inputs];
        var outPtr = stackalloc float*[Outputs.Length];
        for (int at = 0; at < count; at += BlockSize)
        {
            for (int k = 0; k < Inputs; k++) inPtr[k] = inputs[k] + at;
            for (int o = 0; o < Outputs.Length; o++) outPtr[o] = outputs[o] + at;
            RunBlock(scalars, inPtr, outPtr, Math.Min(BlockSize, count - at), scratch);
        }
    }

    /// <summary>
    /// Runs the whole program on arrays (one per input, equal lengths) for the step with counter
    /// <paramref name="iterations"/>; returns the outputs (new parameter, then the slots). For checks and tests.
    /// </summary>
    /// <param name="iterations">The counter before the step.</param>
    /// <param name="inputs">Parameter, gradient, slots.</param>
    /// <param name="interpreted">Run the interpreter even where a compiled kernel exists (see <see cref="RunElements"/>).</param>
    public unsafe float[][] Run(long iterations, IReadOnlyList<float[]> inputs, bool interpreted = false)
    {
        if (inputs.Count != Inputs) throw new ArgumentException($"{inputs.Count} inputs; the program takes {Inputs} (parameter, gradient, {string.Join(", ", Slots)}).", nameof(inputs));
        int n = inputs[0].Length;
        if (inputs.Any(i => i.Length != n)) throw new ArgumentException($"Inputs differ in length: {string.Join(", ", inputs.Select(i => i.Length))}.", nameof(inputs));
        var scalars = new float[ScalarRegisters];
        EvaluateScalars(iterations, scalars);
        var outputs = Outputs.Select(_ => new float[n]).ToArray();
        var scratch = GC.AllocateUninitializedArray<float>(ScratchFloats, pinned: true);
        var pins = inputs.Concat(outputs).Select(a => System.Runtime.InteropServices.GCHandle.Alloc(a, System.Runtime.InteropServices.GCHandleType.Pinned)).ToList();
        try
        {
            var inPtr = stackalloc float*[Inputs];
            var outPtr = stackalloc float*[Outputs.Length];
            fixed (float* s = scratch)
            {
                for (int k = 0; k < Inputs; k++) inPtr[k] = (float*)pins[k].AddrOfPinnedObject();
                for (int o = 0; o < Outputs.Length; o++) outPtr[o] = (float*)pins[Inputs + o].AddrOfPinnedObject();
                RunElements(scalars, inPtr, outPtr, n, s, interpreted);
            }
        }
        finally { foreach (var p in pins) p.Free(); }
        return outputs;
    }

    /// <summary>The scratch <see cref="RunBlock"/> needs, in floats.</summary>
    public int ScratchFloats => (VectorRegisters - Inputs + Outputs.Length) * BlockSize;

    private static unsafe float Load(UpdateValue v, float** regs, ReadOnlySpan<float> scalars, int k) =>
        v.IsScalar ? scalars[v.Register] : regs[v.Register][k];

    private static unsafe void Fill(float* d, float value, int count) => new Span<float>(d, count).Fill(value);

    // Scalar semantics, those of the reference's ArrayMath operation for operation.
    internal static float Scalar(UpdateOp op, float a, float b) => op switch
    {
        UpdateOp.Add => a + b,
        UpdateOp.Sub => a - b,
        UpdateOp.Mul => a * b,
        UpdateOp.Div => a / b,
        UpdateOp.Neg => -a,
        UpdateOp.Sqrt => MathF.Sqrt(a),
        UpdateOp.Max => float.IsNaN(a) || float.IsNaN(b) ? float.NaN : MathF.Max(a, b),
        UpdateOp.Min => float.IsNaN(a) || float.IsNaN(b) ? float.NaN : MathF.Min(a, b),
        UpdateOp.Floor => MathF.Floor(a),
        UpdateOp.Ceil => MathF.Ceiling(a),
        UpdateOp.Pow => MathF.Pow(a, b),
        UpdateOp.Cos => MathF.Cos(a),
        UpdateOp.Log => MathF.Log(a),
        UpdateOp.Less => a < b ? 1f : 0f,
        UpdateOp.LessOrEqual => a <= b ? 1f : 0f,
        UpdateOp.Equal => a == b ? 1f : 0f,
        _ => throw new InvalidOperationException($"{op} is not a binary or unary operation."),
    };

    // The vector forms, for the compiled kernel (UpdateKernel): the very operations the interpreter runs.
    [MethodImpl(MethodImplOptions.AggressiveInlining)] internal static Vector<float> VectorAdd(Vector<float> a, Vector<float> b) => AddOp.Apply(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] internal static Vector<float> VectorSub(Vector<float> a, Vector<float> b) => SubOp.Apply(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] internal static Vector<float> VectorMul(Vector<float> a, Vector<float> b) => MulOp.Apply(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] internal static Vector<float> VectorDiv(Vector<float> a, Vector<float> b) => DivOp.Apply(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] internal static Vector<float> VectorMax(Vector<float> a, Vector<float> b) => MaxOp.Apply(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] internal static Vector<float> VectorMin(Vector<float> a, Vector<float> b) => MinOp.Apply(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] internal static Vector<float> VectorNeg(Vector<float> a) => NegOp.Apply(a);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] internal static Vector<float> VectorSqrt(Vector<float> a) => SqrtOp.Apply(a);

    private interface IBinaryOp
    {
        static abstract Vector<float> Apply(Vector<float> a, Vector<float> b);
        static abstract float Apply(float a, float b);
    }

    private interface IUnaryOp
    {
        static abstract Vector<float> Apply(Vector<float> a);
        static abstract float Apply(float a);
    }

    private struct AddOp : IBinaryOp
    {
        public static Vector<float> Apply(Vector<float> a, Vector<float> b) => a + b;
        public static float Apply(float a, float b) => a + b;
    }

    private struct SubOp : IBinaryOp
    {
        public static Vector<float> Apply(Vector<float> a, Vector<float> b) => a - b;
        public static float Apply(float a, float b) => a - b;
    }

    private struct MulOp : IBinaryOp
    {
        public static Vector<float> Apply(Vector<float> a, Vector<float> b) => a * b;
        public static float Apply(float a, float b) => a * b;
    }

    private struct DivOp : IBinaryOp
    {
        public static Vector<float> Apply(Vector<float> a, Vector<float> b) => a / b;
        public static float Apply(float a, float b) => a / b;
    }

    // max with NaN propagation and +0 > -0 (as MathF.Max): equal lanes AND their bits, NaN lanes become NaN.
    private struct MaxOp : IBinaryOp
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector<float> Apply(Vector<float> a, Vector<float> b)
        {
            var m = Vector.ConditionalSelect(Vector.GreaterThan(a, b), a, b);
            m = Vector.ConditionalSelect(Vector.Equals(a, b), Vector.AsVectorSingle(Vector.AsVectorUInt32(a) & Vector.AsVectorUInt32(b)), m);
            var nan = ~(Vector.Equals(a, a) & Vector.Equals(b, b));
            return Vector.ConditionalSelect(nan, new Vector<float>(float.NaN), m);
        }

        public static float Apply(float a, float b) => Scalar(UpdateOp.Max, a, b);
    }

    private struct MinOp : IBinaryOp
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector<float> Apply(Vector<float> a, Vector<float> b)
        {
            var m = Vector.ConditionalSelect(Vector.LessThan(a, b), a, b);
            m = Vector.ConditionalSelect(Vector.Equals(a, b), Vector.AsVectorSingle(Vector.AsVectorUInt32(a) | Vector.AsVectorUInt32(b)), m);
            var nan = ~(Vector.Equals(a, a) & Vector.Equals(b, b));
            return Vector.ConditionalSelect(nan, new Vector<float>(float.NaN), m);
        }

        public static float Apply(float a, float b) => Scalar(UpdateOp.Min, a, b);
    }

    private struct NegOp : IUnaryOp
    {
        public static Vector<float> Apply(Vector<float> a) => Vector.AsVectorSingle(Vector.AsVectorUInt32(a) ^ new Vector<uint>(0x8000_0000u));
        public static float Apply(float a) => -a;
    }

    private struct SqrtOp : IUnaryOp
    {
        public static Vector<float> Apply(Vector<float> a) => Vector.SquareRoot(a);
        public static float Apply(float a) => MathF.Sqrt(a);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Binary<TOp>(in UpdateInstruction ins, float** regs, ReadOnlySpan<float> scalars, float* d, int count) where TOp : IBinaryOp
    {
        int w = Vector<float>.Count, k = 0;
        if (!ins.A.IsScalar && !ins.B.IsScalar)
        {
            float* a = regs[ins.A.Register], b = regs[ins.B.Register];
            for (; k <= count - w; k += w) TOp.Apply(Vector.Load(a + k), Vector.Load(b + k)).Store(d + k);
            for (; k < count; k++) d[k] = TOp.Apply(a[k], b[k]);
        }
        else if (ins.A.IsScalar)
        {
            float s = scalars[ins.A.Register];
            float* b = regs[ins.B.Register];
            var sv = new Vector<float>(s);
            for (; k <= count - w; k += w) TOp.Apply(sv, Vector.Load(b + k)).Store(d + k);
            for (; k < count; k++) d[k] = TOp.Apply(s, b[k]);
        }
        else
        {
            float* a = regs[ins.A.Register];
            float s = scalars[ins.B.Register];
            var sv = new Vector<float>(s);
            for (; k <= count - w; k += w) TOp.Apply(Vector.Load(a + k), sv).Store(d + k);
            for (; k < count; k++) d[k] = TOp.Apply(a[k], s);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Unary<TOp>(float* a, float* d, int count) where TOp : IUnaryOp
    {
        int w = Vector<float>.Count, k = 0;
        for (; k <= count - w; k += w) TOp.Apply(Vector.Load(a + k)).Store(d + k);
        for (; k < count; k++) d[k] = TOp.Apply(a[k]);
    }

    // ITensorMath over registers: each call appends an instruction; a result is scalar when all operands are.
    private sealed class Recorder(IReadOnlyList<IUpdatePiece> chain) : ITensorMath<UpdateValue>, IStepCounter<UpdateValue>
    {
        // The chain's pieces that reduce, in order: each SumOfSquares is the next one's (a chain holds each piece once).
        private readonly Queue<string> _reductions = new(chain.Select(p => p switch
        {
            ClipByNorm => "clipnorm",
            ClipByGlobalNorm => "global_clipnorm",
            _ => null,
        }).OfType<string>());

        public List<string> Reductions { get; } = [];

        private readonly Dictionary<int, UpdateValue> _constants = [];
        private UpdateValue? _first;
        private readonly Dictionary<long, UpdateValue> _everyNth = [];

        public List<UpdateInstruction> Code { get; } = [];
        public int Scalars { get; private set; }
        public int Vectors { get; private set; }

        public UpdateValue Input() => new(Vectors++, false);

        public UpdateValue Emit(UpdateOp op, UpdateValue a, UpdateValue b, UpdateValue c, bool scalar, float value = 0, long n = 0)
        {
            var dst = scalar ? new UpdateValue(Scalars++, true) : new UpdateValue(Vectors++, false);
            Code.Add(new UpdateInstruction(op, dst, a, b, c, value, n));
            return dst;
        }

        private UpdateValue Op(UpdateOp op, UpdateValue a) => Emit(op, a, default, default, a.IsScalar);

        private UpdateValue Op(UpdateOp op, UpdateValue a, UpdateValue b) => Emit(op, a, b, default, a.IsScalar && b.IsScalar);

        public UpdateValue Constant(string hint, float value)
        {
            int bits = BitConverter.SingleToInt32Bits(value);
            if (!_constants.TryGetValue(bits, out var v)) _constants[bits] = v = Emit(UpdateOp.Constant, default, default, default, true, value);
            return v;
        }

        public UpdateValue Add(UpdateValue a, UpdateValue b) => Op(UpdateOp.Add, a, b);
        public UpdateValue Sub(UpdateValue a, UpdateValue b) => Op(UpdateOp.Sub, a, b);
        public UpdateValue Mul(UpdateValue a, UpdateValue b) => Op(UpdateOp.Mul, a, b);
        public UpdateValue Div(UpdateValue a, UpdateValue b) => Op(UpdateOp.Div, a, b);
        public UpdateValue Neg(UpdateValue x) => Op(UpdateOp.Neg, x);
        public UpdateValue Sqrt(UpdateValue x) => Op(UpdateOp.Sqrt, x);
        public UpdateValue Max(UpdateValue a, UpdateValue b) => Op(UpdateOp.Max, a, b);
        public UpdateValue Min(UpdateValue a, UpdateValue b) => Op(UpdateOp.Min, a, b);
        public UpdateValue Floor(UpdateValue x) => Op(UpdateOp.Floor, x);
        public UpdateValue Ceil(UpdateValue x) => Op(UpdateOp.Ceil, x);
        public UpdateValue Pow(UpdateValue a, UpdateValue b) => Op(UpdateOp.Pow, a, b);
        public UpdateValue Cos(UpdateValue x) => Op(UpdateOp.Cos, x);
        public UpdateValue Log(UpdateValue x) => Op(UpdateOp.Log, x);
        public UpdateValue Clip(UpdateValue x, UpdateValue lo, UpdateValue hi) => Min(Max(x, lo), hi);

        // A sum over the tensor has no elementwise form: the program reads it as a scalar computed before it runs.
        public UpdateValue SumOfSquares(UpdateValue x)
        {
            if (!_reductions.TryDequeue(out var piece)) throw new NotSupportedException("A sum of squares outside clipnorm and global_clipnorm has no form in the fused update.");
            Reductions.Add(piece);
            return Emit(UpdateOp.Reduction, default, default, default, true, n: Reductions.Count - 1);
        }

        public UpdateValue Less(UpdateValue a, UpdateValue b) => Op(UpdateOp.Less, a, b);
        public UpdateValue LessOrEqual(UpdateValue a, UpdateValue b) => Op(UpdateOp.LessOrEqual, a, b);
        public UpdateValue Equal(UpdateValue a, UpdateValue b) => Op(UpdateOp.Equal, a, b);

        public UpdateValue Where(UpdateValue condition, UpdateValue a, UpdateValue b) =>
            Emit(UpdateOp.Where, condition, a, b, condition.IsScalar && a.IsScalar && b.IsScalar);

        public TResult Scope<TResult>(string scope, Func<TResult> body) => body();

        public UpdateValue IsFirstStep() => _first ??= Emit(UpdateOp.IsFirstStep, default, default, default, true);

        public UpdateValue EveryNth(long n) =>
            _everyNth.TryGetValue(n, out var v) ? v : _everyNth[n] = Emit(UpdateOp.EveryNth, default, default, default, true, n: n);
    }
}
