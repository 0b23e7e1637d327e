using System.Text.Json.Nodes;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Tests.Cli;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Tests.Optimizers;

/// <summary>
/// Step-model metadata is checked against the graph when it is read, and stored state when a trainer loads it: each
/// damaged record or value gets one message naming the binding, from the library and from inspect and train.
/// </summary>
public class StepModelValidationTests : IDisposable
{
    private readonly TestData.TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>The test step model with its metadata JSON changed by <paramref name="edit"/>.</summary>
    private static ModelProto WithMetadata(Action<JsonObject> edit)
    {
        var model = TestData.StepModel();
        var entry = model.MetadataProps.Single(p => p.Key == StepModelInfo.MetadataKey);
        var json = JsonNode.Parse(entry.Value)!.AsObject();
        edit(json);
        entry.Value = json.ToJsonString();
        return model;
    }

    private static JsonArray State(JsonObject o) => o["state"]!.AsArray();

    private static void RemoveState(JsonObject o, Func<JsonNode, bool> which)
    {
        var state = State(o);
        foreach (var n in state.Where(n => which(n!)).ToList()) state.Remove(n);
    }

    public static TheoryData<string, string> Damages() => new()
    {
        { "no-iterations", "no state binding of kind Iterations" },
        { "two-iterations", "2 state bindings of kind Iterations" },
        { "empty-state", "'state' is empty" },
        { "missing-input", "'Adadelta/W/accum_grad_gone' is not a graph input" },
        { "missing-output", "'W.next_gone' is not a graph output" },
        { "optimizer-null", "'optimizer' is null" },
        { "gradients-null", "'gradients' is null" },
        { "no-accumulators", "parameter 'W' has no 'accum_grad' state binding" },
        { "json-null", "is null; expected the step model's JSON record" },
        { "bad-rho", "'optimizer' is not valid: Invalid rho value: 7" },
        { "loss-missing", "the loss 'nothing' is not a graph output" },
        { "data-input-missing", "data input 'images' is not a graph input" },
        { "gradient-missing", "parameter 'b' has no entry in 'gradients'" },
        { "input-twice", "input 'W' is bound twice" },
    };

    private static ModelProto Damaged(string damage) => damage switch
    {
        "no-iterations" => WithMetadata(o => RemoveState(o, n => (string)n["kind"]! == "Iterations")),
        "two-iterations" => WithMetadata(o =>
        {
            var slot = State(o).First(n => (string)n!["kind"]! == "Slot")!;
            slot["kind"] = "Iterations";
        }),
        "empty-state" => WithMetadata(o => o["state"] = new JsonArray()),
        "missing-input" => WithMetadata(o => State(o).First(n => (string)n!["input"]! == "Adadelta/W/accum_grad")!["input"] = "Adadelta/W/accum_grad_gone"),
        "missing-output" => WithMetadata(o => State(o).First(n => (string)n!["input"]! == "W")!["output"] = "W.next_gone"),
        "optimizer-null" => WithMetadata(o => o["optimizer"] = null),
        "gradients-null" => WithMetadata(o => o["gradients"] = null),
        "no-accumulators" => WithMetadata(o => RemoveState(o, n => (string?)n["slot"] is "accum_grad" or "accum_var")),
        "json-null" => WithJson("null"),
        "bad-rho" => WithMetadata(o => o["optimizer"]!["rho"] = 7),
        "loss-missing" => WithMetadata(o => o["loss"] = "nothing"),
        "data-input-missing" => WithMetadata(o => o["data_inputs"]!.AsArray().Add("images")),
        "gradient-missing" => WithMetadata(o => o["gradients"]!.AsObject().Remove("b")),
        "input-twice" => WithMetadata(o => State(o).First(n => (string)n!["input"]! == "b")!["input"] = "W"),
        _ => throw new ArgumentException(damage),
    };

    private static ModelProto WithJson(string json)
    {
        var model = TestData.StepModel();
        model.MetadataProps.Single(p => p.Key == StepModelInfo.MetadataKey).Value = json;
        return model;
    }

    [Fact]
    public void TheUndamagedStepModelPasses()
    {
        var model = TestData.StepModel();
        var info = StepModelInfo.Read(model, "t");
        info.ValidateState(model, "t");
        Assert.Equal(["W", "b"], info.Parameters);
    }

    [Theory]
    [MemberData(nameof(Damages))]
    public void DamagedMetadataIsRefusedNamingTheBinding(string damage, string expected)
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() => StepModelInfo.Read(Damaged(damage), "step.onnx"));
        Assert.StartsWith("step.onnx: ", e.Message);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData("no-iterations")]
    [InlineData("optimizer-null")]
    [InlineData("gradients-null")]
    [InlineData("no-accumulators")]
    [InlineData("missing-output")]
    public void InspectAndTrainGiveOneLine(string damage)
    {
        var path = _dir.File($"{damage}.onnx");
        ModelIO.Save(Damaged(damage), path);
        var data = _dir.File("data.npz");
        var batch = TestData.Batch(1, 8);
        Npz.Write(data, new Dictionary<string, DataArray>
        {
            ["X"] = new(TensorProto.Types.DataType.Float, batch["X"].Shape, batch["X"].Data),
            ["labels"] = new(TensorProto.Types.DataType.Int64, batch["labels"].Shape, batch["labels"].Data),
        });
        var expected = Damages().Single(row => (string)row[0] == damage)[1];
        var output = _dir.File("out.onnx");
        foreach (var r in new[] { CliRunner.Run("inspect", path), CliRunner.Run("train", path, "--data", data, "--steps", "1", "-o", output) })
        {
            Assert.Equal(1, r.ExitCode);
            var line = Assert.Single(r.ErrLines);
            Assert.StartsWith($"onnx-adadelta: error: {path}: step-model metadata", line);
            Assert.Contains((string)expected, line);
        }
        Assert.False(File.Exists(output));
    }

    /// <summary>The test step model with element 1 of initializer <paramref name="tensor"/> set to <paramref name="value"/>.</summary>
    private static ModelProto WithStateValue(string tensor, float value)
    {
        // In the format-1 layout (values in initializers named as the inputs), which the trainer still loads.
        var model = StepModelState.WithInputDefaults(TestData.StepModel());
        var inits = model.Graph.Initializer;
        int k = inits.ToList().FindIndex(t => t.Name == tensor);
        var values = inits[k].ToFloatArray();
        values[1] = value;
        inits[k] = Tensors.Create(tensor, values, [.. inits[k].Dims]);
        return model;
    }

    [Theory]
    [InlineData("W", float.NaN, "state tensor 'W' (a parameter) holds NaN at element 1; stored state must be finite")]
    [InlineData("b", float.PositiveInfinity, "state tensor 'b' (a parameter) holds +Inf at element 1")]
    [InlineData("Adadelta/W/accum_var", float.NegativeInfinity, "state tensor 'Adadelta/W/accum_var' (slot accum_var of parameter 'W') holds -Inf at element 1")]
    [InlineData("Adadelta/W/accum_grad", -0.5f, "(slot accum_grad of parameter 'W') holds -0.5 at element 1; an accumulator of squares cannot be negative")]
    public void NonFiniteOrNegativeStateIsRefusedAtLoad(string tensor, float value, string expected)
    {
        var model = WithStateValue(tensor, value);
        var e = Assert.Throws<OnnxAdadeltaException>(() => new Trainer(model));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void NegativeParametersAndZeroAccumulatorsAreFine()
    {
        var model = WithStateValue("W", -3f);
        using var trainer = new Trainer(WithStateValue("Adadelta/W/accum_grad", 0f));
        using var other = new Trainer(model);
        Assert.Equal(0, other.Iteration);
    }

    [Fact]
    public void ANegativeIterationCountIsRefused()
    {
        var model = StepModelState.WithInputDefaults(TestData.StepModel());
        var inits = model.Graph.Initializer;
        int k = inits.ToList().FindIndex(t => t.Name == "Adadelta/iterations");
        inits[k] = Tensors.Create("Adadelta/iterations", new[] { -4L });
        var e = Assert.Throws<OnnxAdadeltaException>(() => new Trainer(model));
        Assert.Contains("the iteration counter 'Adadelta/iterations' is -4", e.Message);
    }
}
