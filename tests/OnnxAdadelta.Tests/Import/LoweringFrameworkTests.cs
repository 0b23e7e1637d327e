using OnnxAdadelta.Import;
using static OnnxAdadelta.Tests.Import.LoweringCheck;

namespace OnnxAdadelta.Tests.Import;

public class LoweringFrameworkTests
{
    [Fact]
    public void UnsupportedOpsAreAllListedWithCounts()
    {
        var model = OneNode("TotallyMadeUpGrad", Lowering.MicrosoftDomain, [Floats("x", [2], 1)], ["y"]);
        var second = model.Graph.Node[0].Clone();
        second.Name = "again";
        second.Output[0] = "z";
        model.Graph.Node.Add(second);
        var custom = new global::OnnxAdadelta.Onnx.Proto.NodeProto { OpType = "Thing", Domain = "ai.example", Name = "t", Input = { "x" }, Output = { "w" } };
        model.Graph.Node.Add(custom);
        var e = Assert.Throws<OnnxAdadeltaException>(() => Lowering.Apply(model));
        Assert.StartsWith("Unsupported ops in the training model: TotallyMadeUpGrad ×2, ai.example.Thing ×1.", e.Message);
    }

    [Fact]
    public void RulesSeeTheTypesOfGradientsThatEarlierLoweringsComputed()
    {
        // FusedMatMul's transA needs the rank of its input, here a ReluGrad result that ONNX Runtime cannot infer before
        // ReluGrad is lowered.
        var dy = Floats("dy", [3, 4], 1);
        var x = Floats("x", [3, 4], 2, kinks: [0]);
        var b = Floats("b", [3, 2], 3);
        var model = OneNode("ReluGrad", Lowering.MicrosoftDomain, [dy, x], ["g"]);
        model.Graph.Input.Add(OnnxAdadelta.Graphs.TypeProtos.ValueInfo("b", global::OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType.Float, [3, 2]));
        var fused = new global::OnnxAdadelta.Onnx.Proto.NodeProto { OpType = "FusedMatMul", Domain = Lowering.MicrosoftDomain, Name = "fused", Input = { "g", "b" }, Output = { "y" } };
        fused.Attribute.Add(LoweringContext.Attr("transA", 1L));
        model.Graph.Node.Add(fused);
        model.Graph.Output.Clear();
        model.Graph.Output.Add(new global::OnnxAdadelta.Onnx.Proto.ValueInfoProto { Name = "y" });
        Lowering.Apply(model);

        using var session = new Microsoft.ML.OnnxRuntime.InferenceSession(Google.Protobuf.MessageExtensions.ToByteArray(model));
        var feeds = new[] { dy, x, b };
        var values = feeds.Select(f => Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory((float[])f.Values, f.Shape)).ToList();
        using var results = session.Run(new Microsoft.ML.OnnxRuntime.RunOptions(), feeds.Select(f => f.Name).ToArray(), values, ["y"]);
        var y = results[0].GetTensorDataAsSpan<float>().ToArray();
        foreach (var v in values) v.Dispose();

        var g = ((float[])dy.Values).Zip((float[])x.Values, (d, xv) => xv > 0 ? d : 0f).ToArray();
        var bv = (float[])b.Values;
        var expected = new float[4 * 2];
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 2; j++)
                for (int k = 0; k < 3; k++) expected[i * 2 + j] += g[k * 4 + i] * bv[k * 2 + j];
        AssertClose(expected, y, what: "y");
    }
}
