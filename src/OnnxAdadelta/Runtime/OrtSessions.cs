using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Onnx;

namespace OnnxAdadelta.Runtime;

/// <summary>Where ONNX Runtime runs the training step.</summary>
public enum Device
{
    /// <summary>The CPU execution provider (always available).</summary>
    Cpu,

    /// <summary>The CUDA execution provider (needs the GPU native package in the app; README, "Using CUDA from your app").</summary>
    Cuda,
}

/// <summary>Creates ONNX Runtime sessions for a device.</summary>
public static class OrtSessions
{
    /// <summary>The name ONNX Runtime gives the CUDA provider.</summary>
    public const string CudaProvider = "CUDAExecutionProvider";

    /// <summary>Whether the loaded ONNX Runtime native library includes the CUDA execution provider.</summary>
    public static bool CudaBuilt => OrtEnv.Instance().GetAvailableProviders().Contains(CudaProvider);

    /// <summary>The session configuration key that lists ONNX Runtime graph optimizers to leave out.</summary>
    public const string DisabledOptimizersKey = "optimization.disable_specified_optimizers";

    /// <summary>
    /// The optimizers <see cref="Options"/> leaves out: <c>DivMulFusion</c>, which changes the rounding of the update
    /// (set the same key in sessions of your own that run step models, to keep them bit-identical to the reference).
    /// </summary>
    public const string DisabledOptimizers = "DivMulFusion";

    /// <summary>Session options for <paramref name="device"/>; throws a clear error when CUDA is not available.</summary>
    public static SessionOptions Options(Device device)
    {
        // Errors are reported by the library as one line each (OrtErrors); ONNX Runtime's own log lines would repeat
        // them on standard error.
        var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        // ONNX Runtime's DivMulFusion rewrites Mul(Div(1, x), y) into Div(y, x) where the Div has that one consumer:
        // y/x rounds differently from y*(1/x), so a learning rate of 1 under legacy decay, lr/(1 + decay*step), used by
        // one parameter's update (the others in groups) would no longer be what the reference computes, bit for bit.
        options.AddSessionConfigEntry(DisabledOptimizersKey, DisabledOptimizers);
        if (device != Device.Cuda) return options;
        if (!CudaBuilt)
        {
            options.Dispose();
            throw new OnnxAdadeltaException(
                $"--device cuda: the loaded ONNX Runtime has no CUDA execution provider (it has {string.Join(", ", OrtEnv.Instance().GetAvailableProviders())}); " +
                "the app must reference Microsoft.ML.OnnxRuntime.Gpu.Linux (CUDA 13) in place of Microsoft.ML.OnnxRuntime's CPU build (README, 'Using CUDA from your app').");
        }
        try { options.AppendExecutionProvider_CUDA(0); }
        catch (OnnxRuntimeException e)
        {
            options.Dispose();
            throw new OnnxAdadeltaException($"--device cuda: the CUDA execution provider failed to start ({e.Message.Split('\n')[0]}); check the NVIDIA driver and CUDA 13 libraries.", e);
        }
        return options;
    }

    /// <summary>
    /// An inference session for <paramref name="model"/>. Models within protobuf's 2 GB limit are passed as bytes; larger
    /// ones are saved with external data to a temporary folder, loaded from there, and the folder is removed.
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">ONNX Runtime rejected the model; the message gives its reason.</exception>
    public static InferenceSession Create(ModelProto model, SessionOptions options, string what = "the model") =>
        Create(model, options, what, SaveOptions.DefaultMaxInlineBytes);

    /// <summary>As <see cref="Create(ModelProto, SessionOptions, string)"/>, with the size above which external data is used.</summary>
    internal static InferenceSession Create(ModelProto model, SessionOptions options, string what, long maxInlineBytes)
    {
        PipelineCounts.SessionOpened();
        try
        {
            if (ModelIO.SerializedSize(model) <= maxInlineBytes)
                return new InferenceSession(model.ToByteArray(), options);
            var dir = Directory.CreateTempSubdirectory("onnx-adadelta-session-");
            try
            {
                var path = Path.Combine(dir.FullName, "model.onnx");
                ModelIO.Save(model, path, new SaveOptions { ExternalData = true, ExternalDataThreshold = 16 });
                return new InferenceSession(path, options);
            }
            finally { dir.Delete(recursive: true); }
        }
        catch (OnnxRuntimeException e) { throw new OnnxAdadeltaException($"ONNX Runtime rejected {what}: {e.Message.Split('\n')[0]}", e); }
    }

    /// <summary>
    /// Loads <paramref name="model"/> into a CPU session with graph optimizations off, and closes it: ONNX Runtime's own
    /// checks of the graph (every op known at its opset, attributes of the right type, every output produced, tensor data
    /// of the declared size), without running anything. Writers call it before saving a model, so that a file is never
    /// written that <c>train</c> would refuse.
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">ONNX Runtime rejected the model; the message names <paramref name="what"/> and gives its reason.</exception>
    public static void Validate(ModelProto model, string what)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        using var session = Create(model, options, what);
    }

    /// <summary>The memory the device's kernels read and write.</summary>
    public static OrtMemoryInfo DeviceMemory(Device device) => device == Device.Cuda
        ? new OrtMemoryInfo(OrtMemoryInfo.allocatorCUDA, OrtAllocatorType.DeviceAllocator, 0, OrtMemType.Default)
        : OrtMemoryInfo.DefaultInstance;
}
