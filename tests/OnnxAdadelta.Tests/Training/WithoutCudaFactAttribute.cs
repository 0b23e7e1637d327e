using OnnxAdadelta.Runtime;

namespace OnnxAdadelta.Tests.Training;

/// <summary>
/// A fact about the error a CPU-only ONNX Runtime gives for <c>--device cuda</c>: where the loaded ONNX Runtime has
/// the CUDA execution provider (an app that swapped in the GPU package) the error cannot occur, and the test reports
/// Skipped with the reason.
/// </summary>
public sealed class WithoutCudaFactAttribute : FactAttribute
{
    /// <summary>Skips where the CUDA execution provider is present.</summary>
    public WithoutCudaFactAttribute()
    {
        if (OrtSessions.CudaBuilt) Skip = "the loaded ONNX Runtime has the CUDA execution provider, so the CPU-only error cannot occur.";
    }
}
