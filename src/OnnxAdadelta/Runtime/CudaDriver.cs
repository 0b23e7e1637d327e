using System.Runtime.InteropServices;
using System.Text;

namespace OnnxAdadelta.Runtime;

/// <summary>
/// The CUDA driver API, as far as the fused update's kernel needs it: the NVIDIA driver's <c>libcuda.so.1</c>
/// (<c>nvcuda.dll</c> on Windows) loaded at run time, PTX modules loaded into each device's primary context (the one ONNX
/// Runtime's CUDA provider uses through the runtime API) and cached per (PTX text, device), kernels launched on a given
/// stream. Nothing here runs where the library is absent: <see cref="Unavailable"/> says why.
/// </summary>
internal static unsafe class CudaDriver
{
    /// <summary>The driver library's file name on this OS.</summary>
    public static string Library => OperatingSystem.IsWindows() ? "nvcuda.dll" : "libcuda.so.1";

    private const int CudaSuccess = 0;
    private const int PointerAttributeDeviceOrdinal = 9; // CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL

    private sealed class Api
    {
        public delegate* unmanaged<uint, int> Init;
        public delegate* unmanaged<IntPtr*, int, int> DevicePrimaryCtxRetain;
        public delegate* unmanaged<IntPtr, int> CtxPushCurrent;
        public delegate* unmanaged<IntPtr*, int> CtxPopCurrent;
        public delegate* unmanaged<IntPtr*, byte*, int> ModuleLoadData;
        public delegate* unmanaged<IntPtr*, IntPtr, byte*, int> ModuleGetFunction;
        public delegate* unmanaged<IntPtr, uint, uint, uint, uint, uint, uint, uint, IntPtr, void**, void**, int> LaunchKernel;
        public delegate* unmanaged<void*, int, ulong, int> PointerGetAttribute;
        public delegate* unmanaged<int, byte**, int> GetErrorName;
    }

    private static readonly Lazy<(Api? Api, string? Why)> Loaded = new(Load);
    private static readonly Dictionary<int, IntPtr> Contexts = [];
    private static readonly Dictionary<(string Ptx, int Device), IntPtr> Functions = [];

    /// <summary>Why the driver cannot be used here (one clause), or null when it loaded and initialized.</summary>
    public static string? Unavailable => Loaded.Value.Why;

    private static Api Driver => Loaded.Value.Api ?? throw new OnnxAdadeltaException($"The CUDA driver is not available: {Loaded.Value.Why}.");

    private static (Api?, string?) Load()
    {
        if (!NativeLibrary.TryLoad(Library, out var handle))
            return (null, $"the NVIDIA driver library {Library} is not installed or not on the library path");
        var api = new Api();
        string? missing = null;
        IntPtr Export(string name)
        {
            if (NativeLibrary.TryGetExport(handle, name, out var f)) return f;
            missing ??= name;
            return IntPtr.Zero;
        }
        api.Init = (delegate* unmanaged<uint, int>)Export("cuInit");
        api.DevicePrimaryCtxRetain = (delegate* unmanaged<IntPtr*, int, int>)Export("cuDevicePrimaryCtxRetain");
        api.CtxPushCurrent = (delegate* unmanaged<IntPtr, int>)Export("cuCtxPushCurrent_v2");
        api.CtxPopCurrent = (delegate* unmanaged<IntPtr*, int>)Export("cuCtxPopCurrent_v2");
        api.ModuleLoadData = (delegate* unmanaged<IntPtr*, byte*, int>)Export("cuModuleLoadData");
        api.ModuleGetFunction = (delegate* unmanaged<IntPtr*, IntPtr, byte*, int>)Export("cuModuleGetFunction");
        api.LaunchKernel = (delegate* unmanaged<IntPtr, uint, uint, uint, uint, uint, uint, uint, IntPtr, void**, void**, int>)Export("cuLaunchKernel");
        api.PointerGetAttribute = (delegate* unmanaged<void*, int, ulong, int>)Export("cuPointerGetAttribute");
        api.GetErrorName = (delegate* unmanaged<int, byte**, int>)Export("cuGetErrorName");
        if (missing is not null) return (null, $"{Library} has no function {missing} (driver too old)");
        int status = api.Init(0);
        if (status != CudaSuccess) return (null, $"cuInit failed with CUDA error {status}");
        return (api, null);
    }

    private static void Check(int status, string what)
    {
        if (status == CudaSuccess) return;
        byte* name = null;
        string text = Driver.GetErrorName(status, &name) == CudaSuccess && name is not null ? Marshal.PtrToStringUTF8((IntPtr)name)! : $"error {status}";
        throw new OnnxAdadeltaException($"CUDA driver: {what} failed with {text}.");
    }

    /// <summary>The ordinal of the device that holds <paramref name="pointer"/> (device memory).</summary>
    public static int DeviceOf(IntPtr pointer)
    {
        int ordinal;
        Check(Driver.PointerGetAttribute(&ordinal, PointerAttributeDeviceOrdinal, (ulong)pointer), "cuPointerGetAttribute(DEVICE_ORDINAL)");
        return ordinal;
    }

    private static IntPtr Context(int device)
    {
        lock (Contexts)
        {
            if (Contexts.TryGetValue(device, out var context)) return context;
            Check(Driver.DevicePrimaryCtxRetain(&context, device), $"cuDevicePrimaryCtxRetain({device})");
            return Contexts[device] = context;
        }
    }

    /// <summary>
    /// The kernel <paramref name="entry"/> of the PTX module <paramref name="ptx"/> on <paramref name="device"/>, loaded
    /// (JIT-compiled by the driver) on first use and kept for the process.
    /// </summary>
    public static IntPtr Function(string ptx, string entry, int device)
    {
        lock (Functions)
        {
            if (Functions.TryGetValue((ptx, device), out var function)) return function;
            var context = Context(device);
            Check(Driver.CtxPushCurrent(context), "cuCtxPushCurrent");
            try
            {
                IntPtr module;
                var text = Encoding.UTF8.GetBytes(ptx + "\0");
                fixed (byte* t = text) Check(Driver.ModuleLoadData(&module, t), "cuModuleLoadData (the fused update's PTX)");
                var name = Encoding.UTF8.GetBytes(entry + "\0");
                fixed (byte* n = name) Check(Driver.ModuleGetFunction(&function, module, n), $"cuModuleGetFunction({entry})");
            }
            finally
            {
                IntPtr popped;
                Driver.CtxPopCurrent(&popped);
            }
            return Functions[(ptx, device)] = function;
        }
    }

    /// <summary>
    /// Launches <paramref name="function"/> with <paramref name="plan"/> on <paramref name="stream"/> (asynchronous; the
    /// argument values are copied at the call).
    /// </summary>
    /// <param name="function">From <see cref="Function"/>.</param>
    /// <param name="device">The device the function was loaded on.</param>
    /// <param name="plan">Grid and block.</param>
    /// <param name="stream">A <c>CUstream</c> (ONNX Runtime's compute stream), or zero for the default stream.</param>
    /// <param name="arguments">One pointer per kernel parameter, to its value.</param>
    public static void Launch(IntPtr function, int device, CudaLaunchPlan plan, IntPtr stream, void** arguments)
    {
        if (plan.Grid == 0) return;
        Check(Driver.CtxPushCurrent(Context(device)), "cuCtxPushCurrent");
        try { Check(Driver.LaunchKernel(function, plan.Grid, 1, 1, plan.Block, 1, 1, 0, stream, arguments, null), "cuLaunchKernel (the fused update)"); }
        finally
        {
            IntPtr popped;
            Driver.CtxPopCurrent(&popped);
        }
    }
}
