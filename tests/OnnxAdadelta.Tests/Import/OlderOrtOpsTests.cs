using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Import;
using static OnnxAdadelta.Tests.Import.LoweringCheck;
using static OnnxAdadelta.Tests.Import.OrtArtifacts;
using A = OnnxAdadelta.Graphs.GraphBuilder;

namespace OnnxAdadelta.Tests.Import;

/// <summary>
/// Training models from older onnxruntime-training, which registered some training ops in the ai.onnx domain: they are
/// lowered like their com.microsoft twins; ops that are neither standard ops of the model's opset nor lowerable are
/// refused at import, all listed; <see cref="OnnxOperators"/> knows when each standard op came (and went).
/// </summary>
public class OlderOrtOpsTests
{
    private static OrtImportOptions WithParams(params string[] names) =>
        new() { ParameterValues = ParamsModel(LinearValues().Where(v => names.Contains(v.Key)).Select(v => v.Value)) };

    /// <summary>Lowers and runs the op once in com.microsoft and once in the ai.onnx domain; the results must be identical.</summary>
    private static void SameInBothDomains(string op, Feed[] inputs, string[] outputs, AttributeProto[] attributes, (string Name, long[] Shape)[]? declared = null)
    {
        List<float[]> Lowered(string domain)
        {
            var model = OneNode(op, domain, inputs, outputs, attributes);
            foreach (var (name, shape) in declared ?? []) model.Graph.ValueInfo.Add(TypeProtos.ValueInfo(name, TensorProto.Types.DataType.Float, shape));
            Lowering.Apply(model);
            Assert.DoesNotContain(model.Graph.Node, n => n.OpType == op);
            return Run(model, inputs, outputs);
        }
        var microsoft = Lowered(Lowering.MicrosoftDomain);
        var onnx = Lowered("");
        Assert.Equal(microsoft.Count, onnx.Count);
        for (int k = 0; k < microsoft.Count; k++) Assert.Equal(microsoft[k], onnx[k]);
    }

    [Fact]
    public void ConvGradInTheOnnxDomainIsLowered()
    {
        var x = Floats("x", [1, 2, 5, 5], 1);
        var w = Floats("w", [3, 2, 3, 3], 2);
        var dy = Floats("dY", [1, 3, 3, 3], 3);
        SameInBothDomains("ConvGrad", [dy, x, w], ["dX", "dW", "dB"], [A.Attr("kernel_shape", new long[] { 3, 3 })]);
    }

    [Fact]
    public void AveragePoolGradInTheOnnxDomainIsLowered()
    {
        var dy = Floats("dY", [1, 2, 2, 2], 4);
        SameInBothDomains("AveragePoolGrad", [dy], ["dX"], [A.Attr("kernel_shape", new long[] { 2, 2 }), A.Attr("strides", new long[] { 2, 2 })],
            declared: [("dX", [1, 2, 4, 4])]);
    }

    [Fact]
    public void ReluGradInTheOnnxDomainIsLowered() =>
        SameInBothDomains("ReluGrad", [Floats("dY", [3, 4], 5), Floats("x", [3, 4], 6, kinks: [0])], ["dX"], []);

    [Fact]
    public void AnArtifactWithAnOnnxDomainTrainingOpImports()
    {
        var artifact = LinearRegression(useScale: true);
        var scale = artifact.Graph.Node.Single(n => n.OpType == "Scale");
        scale.Domain = "";
        var training = OrtArtifactImport.Import(artifact, WithParams("W", "b"));
        Assert.DoesNotContain(training.Graph.Node, n => n.OpType == "Scale");
        var plain = OrtArtifactImport.Import(LinearRegression(), WithParams("W", "b"));
        var batch = LinearBatch();
        AssertClose(OrtArtifacts.Run(plain, batch, "W_grad")["W_grad"], OrtArtifacts.Run(training, batch, "W_grad")["W_grad"], 1e-6, "W_grad");
    }

    [Fact]
    public void ImportRefusesEveryOpThatIsNeitherStandardNorLowered()
    {
        var artifact = LinearRegression();
        var g = artifact.Graph;
        // Opset 14: Mish (18) is not a standard op yet and has no lowering.
        g.Node.Add(new NodeProto { OpType = "Mish", Name = "mish", Input = { "X" }, Output = { "mish_out" } });
        g.Node.Add(new NodeProto { OpType = "FancyGrad", Name = "fancy1", Input = { "X" }, Output = { "fancy1_out" } });
        g.Node.Add(new NodeProto { OpType = "FancyGrad", Name = "fancy2", Input = { "X" }, Output = { "fancy2_out" } });
        g.Node.Add(new NodeProto { OpType = "MysteryOp", Domain = Lowering.MicrosoftDomain, Name = "mystery", Input = { "X" }, Output = { "m_out" } });
        var e = Assert.Throws<OnnxAdadeltaException>(() => OrtArtifactImport.Import(artifact, WithParams("W", "b")));
        Assert.StartsWith("Unsupported ops in the training model: MysteryOp ×1, ai.onnx.FancyGrad ×2, ai.onnx.Mish ×1.", e.Message);
    }

    [Fact]
    public void OpsInsideSubgraphsAreCheckedToo()
    {
        var model = LinearRegression();
        var body = new GraphProto { Name = "then" };
        body.Output.Add(new ValueInfoProto { Name = "t_out" });
        body.Node.Add(new NodeProto { OpType = "ReluGrad", Domain = Lowering.MicrosoftDomain, Name = "inner", Input = { "X", "X" }, Output = { "t_out" } });
        model.Graph.Node.Add(new NodeProto
        {
            OpType = "If", Name = "if", Input = { "lazy_reset_grad" }, Output = { "if_out" },
            Attribute = { new AttributeProto { Name = "then_branch", Type = AttributeProto.Types.AttributeType.Graph, G = body },
                          new AttributeProto { Name = "else_branch", Type = AttributeProto.Types.AttributeType.Graph, G = body.Clone() } },
        });
        // The accumulators are removed before lowering; here, still in place, they are listed too.
        Assert.Equal([$"{OrtArtifactImport.AccumulatorOp} ×2", "ReluGrad (in a subgraph) ×2"], Lowering.Unsupported(model));
    }

    [Theory]
    [InlineData("Relu", 1, true)]
    [InlineData("Gelu", 19, false)]
    [InlineData("Gelu", 20, true)]
    [InlineData("LayerNormalization", 16, false)]
    [InlineData("LayerNormalization", 17, true)]
    [InlineData("Upsample", 9, true)]
    [InlineData("Upsample", 10, false)]
    [InlineData("Scatter", 10, true)]
    [InlineData("Scatter", 11, false)]
    [InlineData("ImageScaler", 9, true)]
    [InlineData("ImageScaler", 10, false)]
    [InlineData("ConvGrad", 21, false)]
    [InlineData("Swish", 24, true)]
    public void TheOperatorTableKnowsWhenEachOpCameAndWent(string op, int opset, bool standard) =>
        Assert.Equal(standard, OnnxOperators.IsStandard(op, opset));

    [Fact]
    public void NoLoweredOpIsAStandardOpOfOpset17ExceptTheOnesOrtRegisteredBeforeOnnxHadThem()
    {
        // LayerNormalization became standard at 17 (ORT's com.microsoft one is lowered); all others are training-only names.
        var standardAt17 = LoweringRules.Supported.Where(op => OnnxOperators.IsStandard(op, 17)).ToList();
        Assert.Equal(["LayerNormalization"], standardAt17);
    }
}
