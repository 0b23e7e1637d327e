using System.Runtime.InteropServices;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Runtime;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Tests.Training;

/// <summary>
/// The fused op's CUDA path where it cannot run: without the NVIDIA driver library, or with an ONNX Runtime that has no
/// CUDA execution provider (the test package's CPU build), <c>--update fused --device cuda</c> is refused in one line
/// that names what is missing; nothing is launched.
/// </summary>
public class FusedUpdateCudaTests
{
    private static bool DriverPresent()
    {
        if (!NativeLibrary.TryLoad(OperatingSystem.IsWindows() ? "nvcuda.dll" : "libcuda.so.1", out var handle)) return false;
        NativeLibrary.Free(handle);
        return true;
    }

    [WithoutCudaFact]
    public void CudaIsRefusedInOneLineNamingWhatIsMissing()
    {
        var info = StepModelInfo.Read(TestData.StepModel(), "step");
        var why = FusedUpdate.Unsupported(info, Device.Cuda);
        Assert.NotNull(why);
        Assert.DoesNotContain('\n', why);
        // Which piece is missing depends on the machine: the driver library first, else the provider.
        Assert.Contains(DriverPresent() ? OrtSessions.CudaProvider : OperatingSystem.IsWindows() ? "nvcuda.dll" : "libcuda.so.1", why);
        Assert.Equal(why, FusedUpdate.CudaUnavailable());
        // The CPU kernel is unaffected.
        Assert.Null(FusedUpdate.Unsupported(info, Device.Cpu));
    }

    [WithoutCudaFact]
    public void TheTrainerRefusesFusedOnCudaBeforeCreatingASession()
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() => new Trainer(TestData.StepModel(), new TrainerOptions { Device = Device.Cuda, Update = UpdateMode.Fused }));
        Assert.StartsWith("--update fused: not available for this run: the fused op's CUDA kernel needs", e.Message);
        Assert.EndsWith("use --update graph.", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }
}
