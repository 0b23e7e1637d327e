using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using System.Numerics;
using System.Reflection;
using System.Reflection.Emit;
using System.Runtime.CompilerServices;
using System.Text;

namespace OnnxAdadelta.Optimizers;

/// <summary>
/// The elementwise part of an <see cref="UpdateProgram"/> compiled to one straight-line loop (a <see cref="DynamicMethod"/>):
/// per <see cref="Vector{T}"/> of elements it loads every input, runs every instruction in locals (registers), and stores
/// every output, so it makes one pass over memory where the interpreter (<see cref="UpdateProgram.RunBlock"/>) makes one
/// pass per instruction. A scalar loop runs the elements after the last whole vector.
/// </summary>
/// <remarks>
/// The operations are the interpreter's own (<see cref="UpdateProgram"/>'s vector and scalar forms, without fused
/// multiply-add), lane for lane, so the result is the interpreter's and the reference's, bit for bit. A condition on a
/// scalar register becomes an all-ones or all-zeros mask before the loop and selects with it, which picks the same bits
/// as the interpreter's choice of a whole register. Every input of an element is read before any output of it is written,
/// so an output may be exactly an input's memory (in place); partly overlapping memory is not supported.
/// Programs are compiled once per distinct elementwise code (the 200 parameters of one model share one kernel).
/// Where the runtime has no dynamic code (native AOT) or an instruction has no vector form here, there is no kernel and
/// the interpreter runs.
/// </remarks>
internal static unsafe class UpdateKernel
{
    /// <summary>A compiled program: elements 0..<paramref name="count"/>-1 of every input and output.</summary>
    public delegate void Body(float* scalars, float** inputs, float** outputs, nint count);

    private static readonly ConcurrentDictionary<string, Body?> Cache = new(StringComparer.Ordinal);

    /// <summary>The compiled form of <paramref name="program"/>, or null where dynamic code is not supported or an instruction has no compiled form.</summary>
    public static Body? For(UpdateProgram program)
    {
        if (!RuntimeFeature.IsDynamicCodeSupported) return null;
        if (program.VectorCode.Any(i => !Compilable(i.Op))) return null;
        return Cache.GetOrAdd(Key(program), _ => Compile(program));
    }

    /// <summary>The operations with a compiled vector form (the others make the program run interpreted).</summary>
    public static bool Compilable(UpdateOp op) => op is UpdateOp.Add or UpdateOp.Sub or UpdateOp.Mul or UpdateOp.Div or UpdateOp.Neg
        or UpdateOp.Sqrt or UpdateOp.Max or UpdateOp.Min or UpdateOp.Where or UpdateOp.Less or UpdateOp.LessOrEqual or UpdateOp.Equal;

    // What the kernel depends on: the elementwise code, the outputs and the input count (constants are scalar registers).
    private static string Key(UpdateProgram program)
    {
        var key = new StringBuilder().Append(program.Inputs).Append('|').Append(program.VectorRegisters).Append('|').Append(program.ScalarRegisters).Append('|');
        static void Operand(StringBuilder b, UpdateValue v) => b.Append(v.IsScalar ? 's' : 'v').Append(v.Register).Append(',');
        foreach (var i in program.VectorCode)
        {
            key.Append((int)i.Op).Append(':');
            Operand(key, i.Dst); Operand(key, i.A); Operand(key, i.B); Operand(key, i.C);
            key.Append(';');
        }
        key.Append('>');
        foreach (var o in program.Outputs) Operand(key, o);
        return key.ToString();
    }

    [UnconditionalSuppressMessage("AOT", "IL3050", Justification = "Only reached when RuntimeFeature.IsDynamicCodeSupported (For checks it).")]
    private static Body Compile(UpdateProgram program) => Emit(program);

    [RequiresDynamicCode("Emits a DynamicMethod.")]
    private static Body Emit(UpdateProgram program)
    {
        var method = new DynamicMethod($"AdadeltaUpdateKernel", typeof(void), [typeof(float*), typeof(float**), typeof(float**), typeof(nint)], typeof(UpdateKernel).Module, skipVisibility: true);
        var il = method.GetILGenerator();
        var code = program.VectorCode;
        int width = Vector<float>.Count;

        // The registers the elementwise code and the outputs use.
        var usedVectors = new HashSet<int>();
        var usedScalars = new HashSet<int>();
        var maskScalars = new HashSet<int>();
        void Use(UpdateValue v) { if (v.IsScalar) usedScalars.Add(v.Register); else usedVectors.Add(v.Register); }
        foreach (var i in code)
        {
            usedVectors.Add(i.Dst.Register);
            Use(i.A);
            if (i.Op is not (UpdateOp.Neg or UpdateOp.Sqrt)) Use(i.B);
            if (i.Op == UpdateOp.Where)
            {
                Use(i.C);
                if (i.A.IsScalar) maskScalars.Add(i.A.Register);
            }
        }
        foreach (var o in program.Outputs) Use(o);

        var index = il.DeclareLocal(typeof(nint));
        var last = il.DeclareLocal(typeof(nint));
        var inputs = new Dictionary<int, LocalBuilder>();
        for (int k = 0; k < program.Inputs; k++)
        {
            if (!usedVectors.Contains(k)) continue;
            inputs[k] = il.DeclareLocal(typeof(float*));
            LoadPointer(il, OpCodes.Ldarg_1, k);
            il.Emit(OpCodes.Stloc, inputs[k]);
        }
        var outputs = new LocalBuilder[program.Outputs.Length];
        for (int o = 0; o < outputs.Length; o++)
        {
            outputs[o] = il.DeclareLocal(typeof(float*));
            LoadPointer(il, OpCodes.Ldarg_2, o);
            il.Emit(OpCodes.Stloc, outputs[o]);
        }
        var scalars = new Dictionary<int, LocalBuilder>();
        var broadcasts = new Dictionary<int, LocalBuilder>();
        var masks = new Dictionary<int, LocalBuilder>();
        foreach (var r in usedScalars.Order())
        {
            scalars[r] = il.DeclareLocal(typeof(float));
            il.Emit(OpCodes.Ldarg_0);
            il.Emit(OpCodes.Ldc_I4, r * sizeof(float));
            il.Emit(OpCodes.Conv_I);
            il.Emit(OpCodes.Add);
            il.Emit(OpCodes.Ldind_R4);
            il.Emit(OpCodes.Stloc, scalars[r]);
            broadcasts[r] = il.DeclareLocal(typeof(Vector<float>));
            il.Emit(OpCodes.Ldloc, scalars[r]);
            il.Emit(OpCodes.Call, Op(nameof(KernelOps.Broadcast)));
            il.Emit(OpCodes.Stloc, broadcasts[r]);
        }
        foreach (var r in maskScalars.Order())
        {
            masks[r] = il.DeclareLocal(typeof(Vector<float>));
            il.Emit(OpCodes.Ldloc, scalars[r]);
            il.Emit(OpCodes.Call, Op(nameof(KernelOps.Mask)));
            il.Emit(OpCodes.Stloc, masks[r]);
        }

        // The vector loop, then the scalar loop over the rest, each with its own register locals.
        il.Emit(OpCodes.Ldarg_3);
        il.Emit(OpCodes.Ldc_I4, width);
        il.Emit(OpCodes.Conv_I);
        il.Emit(OpCodes.Sub);
        il.Emit(OpCodes.Stloc, last);
        il.Emit(OpCodes.Ldc_I4_0);
        il.Emit(OpCodes.Conv_I);
        il.Emit(OpCodes.Stloc, index);
        EmitLoop(il, program, index, inputs, outputs, scalars, broadcasts, masks, vector: true, width, last);
        EmitLoop(il, program, index, inputs, outputs, scalars, broadcasts, masks, vector: false, 1, null);
        il.Emit(OpCodes.Ret);
        return method.CreateDelegate<Body>();
    }

    // while (index <= last (vector) or index < count (scalar)) { load inputs; run the code; store outputs; index += step; }
    private static void EmitLoop(ILGenerator il, UpdateProgram program, LocalBuilder index, Dictionary<int, LocalBuilder> inputs, LocalBuilder[] outputs,
        Dictionary<int, LocalBuilder> scalars, Dictionary<int, LocalBuilder> broadcasts, Dictionary<int, LocalBuilder> masks, bool vector, int step, LocalBuilder? last)
    {
        var type = vector ? typeof(Vector<float>) : typeof(float);
        var registers = new Dictionary<int, LocalBuilder>();
        LocalBuilder Register(int r) => registers.TryGetValue(r, out var l) ? l : registers[r] = il.DeclareLocal(type);
        void Push(UpdateValue v) => il.Emit(OpCodes.Ldloc, v.IsScalar ? (vector ? broadcasts[v.Register] : scalars[v.Register]) : registers[v.Register]);

        var body = il.DefineLabel();
        var check = il.DefineLabel();
        il.Emit(OpCodes.Br, check);
        il.MarkLabel(body);
        foreach (var (k, pointer) in inputs)
        {
            il.Emit(OpCodes.Ldloc, pointer);
            il.Emit(OpCodes.Ldloc, index);
            il.Emit(OpCodes.Call, Op(vector ? nameof(KernelOps.Load) : nameof(KernelOps.LoadOne)));
            il.Emit(OpCodes.Stloc, Register(k));
        }
        foreach (var i in program.VectorCode)
        {
            switch (i.Op)
            {
                case UpdateOp.Where when i.A.IsScalar && vector:
                    il.Emit(OpCodes.Ldloc, masks[i.A.Register]);
                    Push(i.B);
                    Push(i.C);
                    il.Emit(OpCodes.Call, Op(nameof(KernelOps.Select)));
                    break;
                case UpdateOp.Where:
                    Push(i.A);
                    Push(i.B);
                    Push(i.C);
                    il.Emit(OpCodes.Call, Op(vector ? nameof(KernelOps.Where) : nameof(KernelOps.WhereOne)));
                    break;
                case UpdateOp.Neg or UpdateOp.Sqrt when vector:
                    Push(i.A);
                    il.Emit(OpCodes.Call, VectorForm(i.Op));
                    break;
                case UpdateOp.Less or UpdateOp.LessOrEqual or UpdateOp.Equal when vector:
                    Push(i.A);
                    Push(i.B);
                    il.Emit(OpCodes.Call, Op(i.Op.ToString()));
                    break;
                case var op when vector:
                    Push(i.A);
                    Push(i.B);
                    il.Emit(OpCodes.Call, VectorForm(op));
                    break;
                default:
                    // The scalar tail: the interpreter's scalar semantics (UpdateProgram.Scalar).
                    il.Emit(OpCodes.Ldc_I4, (int)i.Op);
                    Push(i.A);
                    if (i.Op is UpdateOp.Neg or UpdateOp.Sqrt) il.Emit(OpCodes.Ldc_R4, 0f);
                    else Push(i.B);
                    il.Emit(OpCodes.Call, Op(nameof(KernelOps.One)));
                    break;
            }
            il.Emit(OpCodes.Stloc, Register(i.Dst.Register));
        }
        for (int o = 0; o < outputs.Length; o++)
        {
            Push(program.Outputs[o]);
            il.Emit(OpCodes.Ldloc, outputs[o]);
            il.Emit(OpCodes.Ldloc, index);
            il.Emit(OpCodes.Call, Op(vector ? nameof(KernelOps.Store) : nameof(KernelOps.StoreOne)));
        }
        il.Emit(OpCodes.Ldloc, index);
        il.Emit(OpCodes.Ldc_I4, step);
        il.Emit(OpCodes.Conv_I);
        il.Emit(OpCodes.Add);
        il.Emit(OpCodes.Stloc, index);
        il.MarkLabel(check);
        il.Emit(OpCodes.Ldloc, index);
        if (last is not null)
        {
            il.Emit(OpCodes.Ldloc, last);
            il.Emit(OpCodes.Ble, body);
        }
        else
        {
            il.Emit(OpCodes.Ldarg_3);
            il.Emit(OpCodes.Blt, body);
        }
    }

    // pointers[k] onto the stack, for argument pointers (float**).
    private static void LoadPointer(ILGenerator il, OpCode pointers, int k)
    {
        il.Emit(pointers);
        il.Emit(OpCodes.Ldc_I4, k * sizeof(float*));
        il.Emit(OpCodes.Conv_I);
        il.Emit(OpCodes.Add);
        il.Emit(OpCodes.Ldind_I);
    }

    // The interpreter's own vector form of an arithmetic operation (UpdateProgram.VectorAdd, …).
    private static MethodInfo VectorForm(UpdateOp op) =>
        typeof(UpdateProgram).GetMethod("Vector" + op, BindingFlags.NonPublic | BindingFlags.Static) ?? throw new InvalidOperationException($"No vector form of {op}.");

    private static MethodInfo Op(string name) =>
        typeof(KernelOps).GetMethod(name, BindingFlags.Public | BindingFlags.Static) ?? throw new InvalidOperationException($"No kernel operation {name}.");
}

/// <summary>
/// The operations a compiled kernel calls besides the interpreter's vector forms (<c>UpdateProgram.Vector*</c>): loads,
/// stores, broadcasts, selects, comparisons and the scalar tail (all inlined by the JIT).
/// </summary>
internal static unsafe class KernelOps
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector<float> Load(float* p, nint i) => Vector.Load(p + i);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector<float> v, float* p, nint i) => v.Store(p + i);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float LoadOne(float* p, nint i) => p[i];
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void StoreOne(float v, float* p, nint i) => p[i] = v;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector<float> Broadcast(float s) => new(s);

    /// <summary>All lanes set where <paramref name="condition"/> != 0 (NaN included), else none: the interpreter's pick of a register.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Mask(float condition) => condition != 0 ? Vector<float>.AllBitsSet : Vector<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector<float> Select(Vector<float> mask, Vector<float> a, Vector<float> b) => Vector.ConditionalSelect(mask, a, b);

    /// <summary>condition != 0 ? a : b per lane (a NaN condition picks a).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Where(Vector<float> condition, Vector<float> a, Vector<float> b) =>
        Vector.ConditionalSelect(Vector.Equals(condition, Vector<float>.Zero), b, a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float WhereOne(float condition, float a, float b) => condition != 0 ? a : b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float One(int op, float a, float b) => UpdateProgram.Scalar((UpdateOp)op, a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Less(Vector<float> a, Vector<float> b) => Vector.ConditionalSelect(Vector.LessThan(a, b), Vector<float>.One, Vector<float>.Zero);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> LessOrEqual(Vector<float> a, Vector<float> b) => Vector.ConditionalSelect(Vector.LessThanOrEqual(a, b), Vector<float>.One, Vector<float>.Zero);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Equal(Vector<float> a, Vector<float> b) => Vector.ConditionalSelect(Vector.Equals(a, b), Vector<float>.One, Vector<float>.Zero);
}
