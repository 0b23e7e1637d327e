using System.Runtime.CompilerServices;
using Microsoft.ML.OnnxRuntime;

namespace OnnxAdadelta.Tests;

/// <summary>
/// ONNX Runtime's process-wide logger at ERROR for the test host. Sessions the tests build with default options would
/// otherwise print thousands of warnings (an initializer that is also a graph input, an unused initializer) to the
/// host's standard error, where they bury what the runtime prints if the host ever crashes.
/// </summary>
internal static class OrtLogging
{
#pragma warning disable CA2255 // The test assembly is the application here: the logger must be set before any session.
    [ModuleInitializer]
    internal static void Quiet()
    {
        var options = new EnvironmentCreationOptions { logId = "onnx-adadelta-tests", logLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
        OrtEnv.CreateInstanceWithOptions(ref options);
    }
#pragma warning restore CA2255
}
