using System.Text.Json.Nodes;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Tests.Optimizers;

/// <summary>
/// <see cref="AdadeltaOptions"/> is the one record of the optimizer's arguments: the step model's metadata stores it as
/// it is, and metadata written before the record existed (format_version 1, the shape of the former OptimizerRecord)
/// still loads into it.
/// </summary>
public class OptionsRecordTests
{
    private static AdadeltaOptions Options() => new()
    {
        LearningRate = new ConstantLearningRate(1.0),
        Rho = 0.9,
        Epsilon = 1e-6,
        ClipValue = 0.05,
        WeightDecay = 0.01,
        ExcludeFromWeightDecay = ["b"],
        Maximize = true,
        Groups = [new ParameterGroup("W", learningRate: 0.5)],
    };

    // The optimizer object exactly as the code before the options record (commit 03381d0) wrote it for Options():
    // floats printed from float32, clip_norm and clip_value always present, other unset options left out.
    private const string FormatVersion1Optimizer =
        """{"type":"Adadelta","learning_rate":"constant:value=1","rho":0.9,"epsilon":1E-06,"name":"Adadelta","clip_norm":null,"clip_value":0.05,"weight_decay":0.01,"exclude_from_weight_decay":["b"],"maximize":true,"groups":["W:lr=0.5"]}""";

    private static ModelProto WithOptimizerJson(ModelProto step, string optimizer)
    {
        var entry = step.MetadataProps.Single(p => p.Key == StepModelInfo.MetadataKey);
        var json = JsonNode.Parse(entry.Value)!.AsObject();
        Assert.True((int)json["format_version"]! >= 1);
        json["optimizer"] = JsonNode.Parse(optimizer);
        entry.Value = json.ToJsonString();
        return step;
    }

    [Fact]
    public void FormatVersion1MetadataLoadsAndTrainsAsWritten()
    {
        var old = WithOptimizerJson(TestData.StepModel(Options()), FormatVersion1Optimizer);
        var o = StepModelInfo.Read(old, "old checkpoint").Optimizer;
        Assert.Equal("constant:value=1", o.LearningRate.ToSpec());
        Assert.Equal(0.9f, (float)o.Rho);
        Assert.Equal(1e-6f, (float)o.Epsilon);
        Assert.Null(o.ClipNorm);
        Assert.Equal(0.05f, (float)o.ClipValue!);
        Assert.Equal(0.01f, (float)o.WeightDecay!);
        Assert.Equal(["b"], o.ExcludeFromWeightDecay);
        Assert.True(o.Maximize);
        Assert.Null(o.Decay);
        Assert.Equal(["W:lr=0.5"], o.Groups.Select(g => g.ToSpec()));
        Assert.Equal(Options().Chain().Select(p => p.GetType()), o.Chain().Select(p => p.GetType()));

        // ORT trains the old checkpoint; the C# reference, built from the options read back, agrees bit for bit.
        var errors = NumericsCheck.Run(old, 4, i => TestData.Batch(i % 5));
        Assert.All(errors, e => Assert.True(e.MaxUlp == 0, $"{e.Name}: {e.MaxUlp} ULP"));
    }

    [Fact]
    public void AnOldRecordThatDropsAnOptionIsSeenByTheCheck()
    {
        // The same check fails when the metadata says less than the graph does (weight decay left out).
        var dropped = FormatVersion1Optimizer.Replace("\"weight_decay\":0.01,\"exclude_from_weight_decay\":[\"b\"],", "", StringComparison.Ordinal);
        var old = WithOptimizerJson(TestData.StepModel(Options()), dropped);
        Assert.Null(StepModelInfo.Read(old, "old").Optimizer.WeightDecay);
        Assert.Contains(NumericsCheck.Run(old, 4, i => TestData.Batch(i % 5)), e => e.MaxUlp > 0);
    }

    [Fact]
    public void TheRecordIsStoredAsItIs()
    {
        var options = Options() with { UseEma = true, EmaMomentum = 0.95, GradientAccumulationSteps = 2, Frozen = ["nothing"], Fp32State = true };
        var step = TestData.StepModel(options);
        var back = StepModelInfo.Read(step, "t").Optimizer;
        Assert.Equal(options.LearningRate, back.LearningRate);
        Assert.Equal(options with { LearningRate = back.LearningRate, Groups = back.Groups, ExcludeFromWeightDecay = back.ExcludeFromWeightDecay, Frozen = back.Frozen }, back);
        Assert.Equal(options.Groups.Select(g => g.ToSpec()), back.Groups.Select(g => g.ToSpec()));
        Assert.Equal(options.ExcludeFromWeightDecay, back.ExcludeFromWeightDecay);
        Assert.Equal(options.Frozen, back.Frozen);

        var json = JsonNode.Parse(step.MetadataProps.Single(p => p.Key == StepModelInfo.MetadataKey).Value)!["optimizer"]!.AsObject();
        Assert.Equal("Adadelta", (string)json["type"]!);
        Assert.Equal(0.9, (double)json["rho"]!);
        Assert.Equal(0.95, (double)json["ema_momentum"]!);
        Assert.Equal("W:lr=0.5", (string)json["groups"]![0]!);
    }

    [Fact]
    public void EmptyListsAndUnsetOptionsAreLeftOut()
    {
        var json = JsonNode.Parse(TestData.StepModel().MetadataProps.Single(p => p.Key == StepModelInfo.MetadataKey).Value)!["optimizer"]!.AsObject();
        Assert.Equal(["type", "learning_rate", "rho", "epsilon", "name", "clip_norm", "clip_value"], json.Select(p => p.Key));
    }

    [Fact]
    public void InvalidOptionsInMetadataAreOneLineErrors()
    {
        var bad = WithOptimizerJson(TestData.StepModel(Options()), FormatVersion1Optimizer.Replace("\"rho\":0.9", "\"rho\":2", StringComparison.Ordinal));
        var e = Assert.Throws<OnnxAdadeltaException>(() => StepModelInfo.Read(bad, "bad.onnx"));
        Assert.StartsWith("bad.onnx: ", e.Message);
        Assert.Contains("metadata 'onnx_adadelta.step_model'", e.Message);
        Assert.Contains("Invalid rho value: 2 (expected a number in [0, 1])", e.Message);
        Assert.DoesNotContain('\n', e.Message);

        var schedule = WithOptimizerJson(TestData.StepModel(Options()), FormatVersion1Optimizer.Replace("constant:value=1", "sometimes", StringComparison.Ordinal));
        var scheduleError = Assert.Throws<OnnxAdadeltaException>(() => StepModelInfo.Read(schedule, "bad.onnx")).Message;
        Assert.StartsWith("bad.onnx: metadata 'onnx_adadelta.step_model' is not valid: ", scheduleError);
    }

    [Fact]
    public void ValidateNamesTheFirstBadValueAndChainValidates()
    {
        var bad = new AdadeltaOptions { Rho = 1.5 };
        Assert.StartsWith("Invalid rho value: 1.5", Assert.Throws<ArgumentException>(() => bad.Validate()).Message);
        Assert.StartsWith("Invalid rho value: 1.5", Assert.Throws<ArgumentException>(() => bad.Chain()).Message);
        Assert.StartsWith("Invalid rho value: 1.5", Assert.Throws<ArgumentException>(() => AdadeltaRewrite.Apply(TestData.TrainingGraph(), bad)).Message);
    }
}
