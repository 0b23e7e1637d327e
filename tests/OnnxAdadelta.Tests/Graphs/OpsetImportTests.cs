using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Bench;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Optimizers;

namespace OnnxAdadelta.Tests.Graphs;

/// <summary>A domain imported twice: merged when the versions agree, one clear error when they do not.</summary>
public class OpsetImportTests
{
    private static ModelProto WithSecondImport(ModelProto model, string domain, long version)
    {
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = domain, Version = version });
        return model;
    }

    [Theory]
    [InlineData("")]
    [InlineData("ai.onnx")]
    public void BuildTrainingAndRewriteMergeAgreeingImports(string domain)
    {
        var training = GradientGraphBuilder.Build(WithSecondImport(ChainModels.Build(4), domain, 17),
            new BuildTrainingOptions { Loss = LossKind.Mse, Output = ChainModels.Output });
        Assert.Single(training.OpsetImport, o => o.Domain is "" or "ai.onnx");
        var step = AdadeltaRewrite.Apply(WithSecondImport(TestData.TrainingGraph(), domain, 17), new AdadeltaOptions());
        Assert.Single(step.OpsetImport, o => o.Domain is "" or "ai.onnx");
    }

    [Fact]
    public void DisagreeingImportsAreOneError()
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() => GradientGraphBuilder.Build(WithSecondImport(ChainModels.Build(4), "ai.onnx", 13),
            new BuildTrainingOptions { Loss = LossKind.Mse, Output = ChainModels.Output }));
        Assert.Equal("the model imports the ai.onnx operator set twice, at versions 17 and 13; expected one import per domain (keep the version the model was exported for).", e.Message);
        e = Assert.Throws<OnnxAdadeltaException>(() => AdadeltaRewrite.Apply(WithSecondImport(TestData.TrainingGraph(), "", 18), new AdadeltaOptions()));
        Assert.Contains("at versions 17 and 18", e.Message);
    }

    [Fact]
    public void OtherDomainsAreMergedAndKept()
    {
        var model = TestData.TrainingGraph();
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "com.example", Version = 1 });
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "com.example", Version = 1 });
        OpsetImports.Normalize(model);
        Assert.Equal(["", "com.example"], model.OpsetImport.Select(o => o.Domain));
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "com.example", Version = 2 });
        Assert.Contains("com.example operator set twice, at versions 1 and 2", Assert.Throws<OnnxAdadeltaException>(() => OpsetImports.Normalize(model, "m.onnx")).Message);
    }
}
