using System.Runtime.InteropServices;
using System.Text;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace OnnxAdadelta.Runtime;

/// <summary>
/// ONNX Runtime's C API function table, reached through <c>OrtGetApiBase</c> (exported by the same libonnxruntime the
/// managed package loads) and read into the package's public <see cref="OrtApi"/> struct, whose fields follow the C
/// header's order.
/// </summary>
internal static unsafe class OrtNative
{
    /// <summary>The C API version asked for: that of the ONNX Runtime 1.31 headers.</summary>
    public const uint ApiVersion = 31;

    [DllImport("onnxruntime", CallingConvention = CallingConvention.Winapi)]
    private static extern OrtApiBase* OrtGetApiBase();

    private static class Table
    {
        public static readonly OrtApi Value = Load();

        private static OrtApi Load()
        {
            // Loading the environment first makes sure the managed package has resolved the native library.
            _ = OrtEnv.Instance();
            var getApi = (delegate* unmanaged<uint, IntPtr>)OrtGetApiBase()->GetApi;
            var api = getApi(ApiVersion);
            if (api == IntPtr.Zero) throw new OnnxAdadeltaException($"ONNX Runtime does not provide C API version {ApiVersion}; version 1.31 or later is needed for the fused update.");
            return Marshal.PtrToStructure<OrtApi>(api);
        }
    }

    /// <summary>The function table.</summary>
    public static ref readonly OrtApi Api => ref Table.Value;

    /// <summary>Throws an <see cref="OnnxAdadeltaException"/> with ORT's message when <paramref name="status"/> is an error.</summary>
    public static void Check(IntPtr status, string what)
    {
        if (status == IntPtr.Zero) return;
        var message = Marshal.PtrToStringUTF8(((delegate* unmanaged<IntPtr, IntPtr>)Api.GetErrorMessage)(status)) ?? "(no message)";
        ((delegate* unmanaged<IntPtr, void>)Api.ReleaseStatus)(status);
        throw new OnnxAdadeltaException($"ONNX Runtime failed in {what}: {message}");
    }

    /// <summary>A new error status carrying <paramref name="message"/> (ORT_FAIL), for returning from a callback.</summary>
    public static IntPtr Fail(string message)
    {
        var bytes = Encoding.UTF8.GetBytes(message + "\0");
        fixed (byte* p = bytes) return ((delegate* unmanaged<int, byte*, IntPtr>)Api.CreateStatus)(1, p);
    }
}

/// <summary>A tensor an op kernel reads or writes: its memory, element type and shape (valid during one compute call).</summary>
/// <param name="Data">The first element (CPU or device memory, as the provider places it).</param>
/// <param name="ElementType">The element type.</param>
/// <param name="Shape">The dimensions.</param>
public readonly record struct KernelTensor(IntPtr Data, TensorElementType ElementType, long[] Shape)
{
    /// <summary>The number of elements.</summary>
    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (var d in Shape) n *= d;
            return n;
        }
    }
}

/// <summary>What a custom kernel sees of one node at creation: its attributes.</summary>
public readonly unsafe struct KernelInfo
{
    private readonly IntPtr _info;

    internal KernelInfo(IntPtr info) => _info = info;

    /// <summary>The string attribute <paramref name="name"/>.</summary>
    /// <exception cref="OnnxAdadeltaException">The node has no such attribute.</exception>
    public string GetString(string name)
    {
        var get = (delegate* unmanaged<IntPtr, byte*, byte*, nuint*, IntPtr>)OrtNative.Api.KernelInfoGetAttribute_string;
        var key = Encoding.UTF8.GetBytes(name + "\0");
        fixed (byte* k = key)
        {
            nuint size = 0;
            OrtNative.Check(get(_info, k, null, &size), $"reading attribute '{name}'");
            var buffer = new byte[(int)size];
            fixed (byte* b = buffer) OrtNative.Check(get(_info, k, b, &size), $"reading attribute '{name}'");
            return Encoding.UTF8.GetString(buffer, 0, Math.Max(0, (int)size - 1));
        }
    }
}

/// <summary>The context of one compute call of a custom kernel: inputs, outputs, the intra-op thread pool, the stream.</summary>
public readonly unsafe struct KernelContext
{
    private readonly IntPtr _context;

    internal KernelContext(IntPtr context) => _context = context;

    /// <summary>The number of inputs of the node.</summary>
    public int InputCount
    {
        get
        {
            nuint n;
            OrtNative.Check(((delegate* unmanaged<IntPtr, nuint*, IntPtr>)OrtNative.Api.KernelContext_GetInputCount)(_context, &n), "KernelContext_GetInputCount");
            return (int)n;
        }
    }

    /// <summary>The number of outputs of the node.</summary>
    public int OutputCount
    {
        get
        {
            nuint n;
            OrtNative.Check(((delegate* unmanaged<IntPtr, nuint*, IntPtr>)OrtNative.Api.KernelContext_GetOutputCount)(_context, &n), "KernelContext_GetOutputCount");
            return (int)n;
        }
    }

    /// <summary>Input <paramref name="index"/>.</summary>
    public KernelTensor Input(int index)
    {
        IntPtr value;
        // A lookup in the context: short and never blocking, so without the GC transition (as the getters in Describe).
        var status = ((delegate* unmanaged[SuppressGCTransition]<IntPtr, nuint, IntPtr*, IntPtr>)OrtNative.Api.KernelContext_GetInput)(_context, (nuint)index, &value);
        if (status != IntPtr.Zero) OrtNative.Check(status, $"KernelContext_GetInput({index})");
        return Describe(value);
    }

    /// <summary>Output <paramref name="index"/>, allocated (or taken from the caller's binding) with <paramref name="shape"/>.</summary>
    public KernelTensor Output(int index, long[] shape)
    {
        IntPtr value;
        fixed (long* dims = shape)
            OrtNative.Check(((delegate* unmanaged<IntPtr, nuint, long*, nuint, IntPtr*, IntPtr>)OrtNative.Api.KernelContext_GetOutput)(_context, (nuint)index, dims, (nuint)shape.Length, &value), $"KernelContext_GetOutput({index})");
        return Describe(value);
    }

    /// <summary>The provider's compute stream (a <c>cudaStream_t</c> under CUDA), or zero.</summary>
    public IntPtr GpuComputeStream
    {
        get
        {
            IntPtr stream;
            OrtNative.Check(((delegate* unmanaged<IntPtr, IntPtr*, IntPtr>)OrtNative.Api.KernelContext_GetGPUComputeStream)(_context, &stream), "KernelContext_GetGPUComputeStream");
            return stream;
        }
    }

    /// <summary>
    /// Runs <paramref name="body"/> for 0..<paramref name="total"/>-1 on ONNX Runtime's intra-op thread pool
    /// (<c>KernelContext_ParallelFor</c>); the first exception a call throws is rethrown here.
    /// </summary>
    public void ParallelFor(int total, Action<int> body)
    {
        if (total <= 0) return;
        var work = new ParallelWork(body);
        var handle = GCHandle.Alloc(work);
        try
        {
            var parallelFor = (delegate* unmanaged<IntPtr, delegate* unmanaged<IntPtr, nuint, void>, nuint, nuint, IntPtr, IntPtr>)OrtNative.Api.KernelContext_ParallelFor;
            OrtNative.Check(parallelFor(_context, &RunOne, (nuint)total, 0, GCHandle.ToIntPtr(handle)), "KernelContext_ParallelFor");
        }
        finally { handle.Free(); }
        if (work.Error is { } e) throw new OnnxAdadeltaException($"A parallel part of the kernel failed: {e.Message}", e);
    }

    private sealed class ParallelWork(Action<int> body)
    {
        public Action<int> Body { get; } = body;
        public Exception? Error { get; set; }
    }

    [UnmanagedCallersOnly]
    private static void RunOne(IntPtr data, nuint index)
    {
        var work = (ParallelWork)GCHandle.FromIntPtr(data).Target!;
        try { work.Body((int)index); }
        catch (Exception e) { lock (work) work.Error ??= e; }
    }

    // The element type and shape by reference (no allocation in ONNX Runtime) and the data pointer: two short getters,
    // called without the GC transition (the fused op reads a few per parameter per step).
    private static KernelTensor Describe(IntPtr value)
    {
        ref readonly var api = ref OrtNative.Api;
        int type;
        long* dims;
        nuint rank;
        IntPtr data;
        var status = ((delegate* unmanaged[SuppressGCTransition]<IntPtr, int*, long**, nuint*, IntPtr>)api.GetTensorElementTypeAndShapeDataReference)(value, &type, &dims, &rank);
        if (status != IntPtr.Zero) OrtNative.Check(status, "GetTensorElementTypeAndShapeDataReference");
        status = ((delegate* unmanaged[SuppressGCTransition]<IntPtr, IntPtr*, IntPtr>)api.GetTensorMutableData)(value, &data);
        if (status != IntPtr.Zero) OrtNative.Check(status, "GetTensorMutableData");
        return new KernelTensor(data, (TensorElementType)type, rank == 0 ? [] : new ReadOnlySpan<long>(dims, (int)rank).ToArray());
    }
}

/// <summary>A kernel instance of a custom op: one per node, created by <see cref="CustomOpDefinition.CreateKernel"/>.</summary>
public abstract class CustomOpKernel
{
    /// <summary>Computes the node's outputs. Exceptions become an ONNX Runtime error status (they never cross into native code).</summary>
    public abstract void Compute(KernelContext context);
}

/// <summary>
/// A custom op with one variadic, heterogeneous input and one variadic, heterogeneous output. The node's int attribute
/// list <c>output_sources</c> names, for each output, the input whose type and shape it has (that is how shape
/// inference knows the outputs, so the memory planner sees their shapes).
/// </summary>
/// <param name="Name">The op type.</param>
/// <param name="ExecutionProvider">The provider the kernel runs on (null for CPU), for example <c>CUDAExecutionProvider</c>.</param>
/// <param name="CreateKernel">Creates the kernel of one node.</param>
public sealed record CustomOpDefinition(string Name, string? ExecutionProvider, Func<KernelInfo, CustomOpKernel> CreateKernel)
{
    /// <summary>The attribute mapping each output to the input whose type and shape it copies.</summary>
    public const string OutputSourcesAttribute = "output_sources";

    /// <summary>
    /// How many leading inputs the kernel reads in CPU memory even on a device provider (ONNX Runtime copies them there;
    /// the fused update's iteration counter). 0 (the default) leaves every input where the provider puts it.
    /// </summary>
    public int HostInputs { get; init; }
}

/// <summary>
/// Registers custom ops written in C# with ONNX Runtime sessions: a hand-built <c>OrtCustomOp</c> struct whose function
/// pointers are <see cref="UnmanagedCallersOnlyAttribute"/> methods, added to a custom-op domain on the session options.
/// </summary>
/// <remarks>
/// A domain and its op structs are created once per process and never freed (sessions may outlive any owner). Every
/// callback returns an <c>OrtStatus</c> (or a plain value) and catches every exception.
/// </remarks>
public static unsafe class CustomOps
{
    // The OrtCustomOp struct of onnxruntime_c_api.h: a uint32 version, then 25 function pointers (through ReleaseAliasMap).
    [StructLayout(LayoutKind.Sequential)]
    private struct NativeOp
    {
        public uint Version;
        public IntPtr CreateKernel, GetName, GetExecutionProviderType, GetInputType, GetInputTypeCount, GetOutputType,
            GetOutputTypeCount, KernelCompute, KernelDestroy, GetInputCharacteristic, GetOutputCharacteristic,
            GetInputMemoryType, GetVariadicInputMinArity, GetVariadicInputHomogeneity, GetVariadicOutputMinArity,
            GetVariadicOutputHomogeneity, CreateKernelV2, KernelComputeV2, InferOutputShapeFn, GetStartVersion, GetEndVersion,
            GetMayInplace, ReleaseMayInplace, GetAliasMap, ReleaseAliasMap;

        // Ours, after ORT's fields: the definition and its UTF-8 strings.
        public IntPtr Definition, NameUtf8, ProviderUtf8;
    }

    // Version 17: the first with CreateKernelV2/KernelComputeV2, shape inference and start/end versions; later fields
    // (in-place and alias maps) are left to ORT's defaults.
    private const uint OpVersion = 17;
    private const int Variadic = 2;

    private static readonly Dictionary<string, IntPtr> Domains = new(StringComparer.Ordinal);

    /// <summary>Adds the custom-op domain <paramref name="domain"/> with <paramref name="ops"/> to <paramref name="options"/>.</summary>
    /// <remarks>
    /// The first call for a domain and set of (op, provider) pairs fixes its ops for the process; later calls with the
    /// same pairs reuse them. Different pairs (a CPU and a CUDA kernel of the op) are separate native domains.
    /// </remarks>
    public static void Register(SessionOptions options, string domain, IReadOnlyList<CustomOpDefinition> ops)
    {
        ArgumentNullException.ThrowIfNull(options);
        IntPtr handle;
        lock (Domains)
        {
            var key = domain + "|" + string.Join(",", ops.Select(o => $"{o.Name}@{o.ExecutionProvider}"));
            if (!Domains.TryGetValue(key, out handle))
            {
                var name = Utf8(domain);
                OrtNative.Check(((delegate* unmanaged<IntPtr, IntPtr*, IntPtr>)OrtNative.Api.CreateCustomOpDomain)(name, &handle), $"CreateCustomOpDomain({domain})");
                foreach (var op in ops)
                    OrtNative.Check(((delegate* unmanaged<IntPtr, IntPtr, IntPtr>)OrtNative.Api.CustomOpDomain_Add)(handle, Build(op)), $"CustomOpDomain_Add({op.Name})");
                Domains[key] = handle;
            }
        }
        OrtNative.Check(((delegate* unmanaged<IntPtr, IntPtr, IntPtr>)OrtNative.Api.AddCustomOpDomain)(options.DangerousGetHandle(), handle), $"AddCustomOpDomain({domain})");
    }

    private static IntPtr Utf8(string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s + "\0");
        var p = (IntPtr)NativeMemory.Alloc((nuint)bytes.Length);
        Marshal.Copy(bytes, 0, p, bytes.Length);
        return p;
    }

    private static IntPtr Build(CustomOpDefinition definition)
    {
        var op = (NativeOp*)NativeMemory.AllocZeroed((nuint)sizeof(NativeOp));
        op->Version = OpVersion;
        op->Definition = GCHandle.ToIntPtr(GCHandle.Alloc(definition));
        op->NameUtf8 = Utf8(definition.Name);
        op->ProviderUtf8 = definition.ExecutionProvider is { } p ? Utf8(p) : IntPtr.Zero;
        op->GetName = (IntPtr)(delegate* unmanaged<NativeOp*, IntPtr>)&GetName;
        op->GetExecutionProviderType = (IntPtr)(delegate* unmanaged<NativeOp*, IntPtr>)&GetProvider;
        op->GetInputType = (IntPtr)(delegate* unmanaged<NativeOp*, nuint, int>)&UndefinedType;
        op->GetOutputType = (IntPtr)(delegate* unmanaged<NativeOp*, nuint, int>)&UndefinedType;
        op->GetInputTypeCount = (IntPtr)(delegate* unmanaged<NativeOp*, nuint>)&One;
        op->GetOutputTypeCount = (IntPtr)(delegate* unmanaged<NativeOp*, nuint>)&One;
        op->GetInputCharacteristic = (IntPtr)(delegate* unmanaged<NativeOp*, nuint, int>)&VariadicCharacteristic;
        op->GetOutputCharacteristic = (IntPtr)(delegate* unmanaged<NativeOp*, nuint, int>)&VariadicCharacteristic;
        op->GetInputMemoryType = (IntPtr)(delegate* unmanaged<NativeOp*, nuint, int>)&DefaultMemory;
        op->GetVariadicInputMinArity = (IntPtr)(delegate* unmanaged<NativeOp*, int>)&MinArity;
        op->GetVariadicOutputMinArity = (IntPtr)(delegate* unmanaged<NativeOp*, int>)&MinArity;
        op->GetVariadicInputHomogeneity = (IntPtr)(delegate* unmanaged<NativeOp*, int>)&Heterogeneous;
        op->GetVariadicOutputHomogeneity = (IntPtr)(delegate* unmanaged<NativeOp*, int>)&Heterogeneous;
        op->CreateKernelV2 = (IntPtr)(delegate* unmanaged<NativeOp*, IntPtr, IntPtr, IntPtr*, IntPtr>)&CreateKernel;
        op->KernelComputeV2 = (IntPtr)(delegate* unmanaged<IntPtr, IntPtr, IntPtr>)&Compute;
        op->KernelDestroy = (IntPtr)(delegate* unmanaged<IntPtr, void>)&Destroy;
        op->InferOutputShapeFn = (IntPtr)(delegate* unmanaged<NativeOp*, IntPtr, IntPtr>)&InferShapes;
        op->GetStartVersion = (IntPtr)(delegate* unmanaged<NativeOp*, int>)&StartVersion;
        op->GetEndVersion = (IntPtr)(delegate* unmanaged<NativeOp*, int>)&EndVersion;
        return (IntPtr)op;
    }

    private static CustomOpDefinition DefinitionOf(NativeOp* op) => (CustomOpDefinition)GCHandle.FromIntPtr(op->Definition).Target!;

    [UnmanagedCallersOnly] private static IntPtr GetName(NativeOp* op) => op->NameUtf8;
    [UnmanagedCallersOnly] private static IntPtr GetProvider(NativeOp* op) => op->ProviderUtf8;
    [UnmanagedCallersOnly] private static int UndefinedType(NativeOp* op, nuint index) => 0;
    [UnmanagedCallersOnly] private static nuint One(NativeOp* op) => 1;
    [UnmanagedCallersOnly] private static int VariadicCharacteristic(NativeOp* op, nuint index) => Variadic;
    // OrtMemTypeCPUInput (-2) for the definition's leading host inputs, else OrtMemTypeDefault (0).
    [UnmanagedCallersOnly] private static int DefaultMemory(NativeOp* op, nuint index) => index < (nuint)DefinitionOf(op).HostInputs ? -2 : 0;
    [UnmanagedCallersOnly] private static int MinArity(NativeOp* op) => 1;
    [UnmanagedCallersOnly] private static int Heterogeneous(NativeOp* op) => 0;
    [UnmanagedCallersOnly] private static int StartVersion(NativeOp* op) => 1;
    [UnmanagedCallersOnly] private static int EndVersion(NativeOp* op) => int.MaxValue;

    [UnmanagedCallersOnly]
    private static IntPtr CreateKernel(NativeOp* op, IntPtr api, IntPtr info, IntPtr* kernel)
    {
        try
        {
            *kernel = GCHandle.ToIntPtr(GCHandle.Alloc(DefinitionOf(op).CreateKernel(new KernelInfo(info))));
            return IntPtr.Zero;
        }
        catch (Exception e) { *kernel = IntPtr.Zero; return OrtNative.Fail(e.Message); }
    }

    [UnmanagedCallersOnly]
    private static IntPtr Compute(IntPtr kernel, IntPtr context)
    {
        try
        {
            ((CustomOpKernel)GCHandle.FromIntPtr(kernel).Target!).Compute(new KernelContext(context));
            return IntPtr.Zero;
        }
        catch (Exception e) { return OrtNative.Fail(e.Message); }
    }

    [UnmanagedCallersOnly]
    private static void Destroy(IntPtr kernel)
    {
        if (kernel != IntPtr.Zero) GCHandle.FromIntPtr(kernel).Free();
    }

    // Output k takes the type and shape of input output_sources[k]. The infos the context hands out are its own: never
    // released here.
    [UnmanagedCallersOnly]
    private static IntPtr InferShapes(NativeOp* op, IntPtr context)
    {
        try
        {
            ref readonly var api = ref OrtNative.Api;
            var key = Utf8(CustomOpDefinition.OutputSourcesAttribute);
            IntPtr attr;
            try { OrtNative.Check(((delegate* unmanaged<IntPtr, IntPtr, IntPtr*, IntPtr>)api.ShapeInferContext_GetAttribute)(context, key, &attr), "ShapeInferContext_GetAttribute"); }
            finally { NativeMemory.Free((void*)key); }
            var read = (delegate* unmanaged<IntPtr, int, void*, nuint, nuint*, IntPtr>)api.ReadOpAttr;
            nuint bytes;
            var probe = read(attr, 2, null, 0, &bytes);
            if (probe != IntPtr.Zero) ((delegate* unmanaged<IntPtr, void>)api.ReleaseStatus)(probe);
            var sources = new long[(int)bytes / sizeof(long)];
            fixed (long* s = sources) OrtNative.Check(read(attr, 2, s, bytes, &bytes), "ReadOpAttr(output_sources)");
            for (int k = 0; k < sources.Length; k++)
            {
                IntPtr info;
                OrtNative.Check(((delegate* unmanaged<IntPtr, nuint, IntPtr*, IntPtr>)api.ShapeInferContext_GetInputTypeShape)(context, (nuint)sources[k], &info), "ShapeInferContext_GetInputTypeShape");
                OrtNative.Check(((delegate* unmanaged<IntPtr, nuint, IntPtr, IntPtr>)api.ShapeInferContext_SetOutputTypeShape)(context, (nuint)k, info), "ShapeInferContext_SetOutputTypeShape");
            }
            return IntPtr.Zero;
        }
        catch (Exception e) { return OrtNative.Fail($"{DefinitionOf(op).Name}: {e.Message}"); }
    }
}
