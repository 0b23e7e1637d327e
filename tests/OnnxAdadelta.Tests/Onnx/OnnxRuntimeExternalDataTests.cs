using Microsoft.ML.OnnxRuntime;
using OnnxAdadelta.Onnx;
using DataLocation = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataLocation;

namespace OnnxAdadelta.Tests.Onnx;

public class OnnxRuntimeExternalDataTests
{
    [Fact]
    public void OnnxRuntime_runs_a_model_saved_with_external_data()
    {
        using var dir = new TempDir();
        const int n = 1000;
        var bias = TestModels.Ramp(n, 0.25f);
        var path = dir.File("add.onnx");
        ModelIO.Save(TestModels.Add(bias), path, new SaveOptions { ExternalData = true });

        // The bias really went to the side file: the model alone is far smaller than 4000 bytes.
        Assert.True(new FileInfo(path).Length < 1000);
        Assert.Equal(4000, new FileInfo(path + ".data").Length);
        Assert.Equal(DataLocation.External, global::OnnxAdadelta.Onnx.Proto.ModelProto.Parser.ParseFrom(File.ReadAllBytes(path)).Graph.Initializer[0].DataLocation);

        using var session = new InferenceSession(path);
        var x = Enumerable.Range(0, n).Select(i => (float)(n - i)).ToArray();
        using var input = OrtValue.CreateTensorValueFromMemory(x, [n]);
        using var runOptions = new RunOptions();
        using var outputs = session.Run(runOptions, ["X"], [input], ["Y"]);
        var y = outputs[0].GetTensorDataAsSpan<float>().ToArray();

        Assert.Equal(Enumerable.Range(0, n).Select(i => x[i] + bias[i]), y);
    }
}
