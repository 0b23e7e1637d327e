using System.Runtime.InteropServices;
using Google.Protobuf;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Bench;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Reference;
using OnnxAdadelta.Runtime;
using OnnxAdadelta.Samples;
using OnnxAdadelta.Tests.Optimizers;
using OnnxAdadelta.Training;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Training;

public class FusedUpdateTests
{
    public static TheoryData<string> Cases => new(OptionCases.All.Select(c => c.Name));

    private static AdadeltaOptions Case(string name) => OptionCases.All.Single(c => c.Name == name).Options;

    private static float[] Values(int n, int seed, float scale) =>
        Enumerable.Range(0, n).Select(i => scale * MathF.Sin(0.7f * i + 1.3f * seed) + 0.01f * (i % 5 - 2)).ToArray();

    [Theory]
    [MemberData(nameof(Cases))]
    public void TheProgramIsBitIdenticalToTheReference(string name)
    {
        var options = Case(name);
        // 1037 elements: two whole blocks and a tail that is not a multiple of the vector width.
        var sizes = new Dictionary<string, int> { ["W"] = 1037, ["b"] = 3 };
        var reference = new ReferenceAdadelta(options, sizes.ToDictionary(s => s.Key, s => Values(s.Value, 0, 1f)));
        var programs = sizes.Keys.ToDictionary(p => p, p => UpdateProgram.Record(options, p));
        var parameters = sizes.ToDictionary(s => s.Key, s => Values(s.Value, 0, 1f));
        var state = sizes.ToDictionary(s => s.Key, s => programs[s.Key].Slots.Select(_ => new float[s.Value]).ToArray());
        for (int step = 0; step < 7; step++)
        {
            var gradients = sizes.ToDictionary(s => s.Key, s => Values(s.Value, step + 1, 0.3f));
            reference.Step(gradients);
            foreach (var p in sizes.Keys)
            {
                var outputs = programs[p].Run(step, [parameters[p], gradients[p], .. state[p]]);
                parameters[p] = outputs[0];
                state[p] = outputs[1..];
                AssertBits(reference.Parameters[p], parameters[p], $"{name}, step {step}, {p}");
                for (int s = 0; s < state[p].Length; s++)
                    AssertBits(reference.State(p, programs[p].Slots[s]), state[p][s], $"{name}, step {step}, {p}/{programs[p].Slots[s]}");
            }
        }
        Assert.NotEqual(Values(1037, 0, 1f), parameters["W"]);
    }

    [Fact]
    public void TheBenchCheckOfTheOptionCasesPasses()
    {
        var log = new StringWriter();
        Assert.Empty(BenchCheck.CheckOptionCases(new UpdateShape(2, 37, "2 x 37"), 4, log));
        Assert.Equal(OptionCases.All.Count, log.ToString().Split('\n').Count(l => l.Contains("bit-identical to the reference")));
    }

    public static TheoryData<string> NormCases => ["clipnorm", "global_clipnorm", "clipnorm+accumulation+loss_scale"];

    private static AdadeltaOptions NormCase(string name) => name switch
    {
        "clipnorm" => new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), ClipNorm = 0.05 },
        "global_clipnorm" => new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), GlobalClipNorm = 0.05, WeightDecay = 1e-3 },
        _ => new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), ClipNorm = 0.05, GradientAccumulationSteps = 2, LossScaleFactor = 8 },
    };

    [Theory]
    [MemberData(nameof(NormCases))]
    public void NormsRunInTheFusedOpFromTheGraphsSumsBitIdenticalToTheGraphUpdate(string name)
    {
        // The norms' sums of squares stay ReduceSumSquare nodes that the fused node reads; a small clip norm makes every
        // step clip, so the sums decide every update. The MLP reads W2 in the backward pass: in place must stay safe.
        var options = NormCase(name);
        var step = AdadeltaRewrite.Apply(GradientGraphBuilder.Build(DigitsModels.Mlp(), new BuildTrainingOptions { Loss = LossKind.CrossEntropy, Output = "logits" }), options);
        var info = StepModelInfo.Read(step, name);
        var program = UpdateProgram.Record(options, "W1");
        Assert.Equal(options.GlobalClipNorm is null ? ["clipnorm"] : ["global_clipnorm"], program.Reductions);
        var swapped = FusedUpdate.Swap(step);
        var node = swapped.Graph.Node.Single(n => n.OpType == FusedUpdate.OpType);
        // The node reads the sums the rewrite's own nodes compute, which stay in the session's graph.
        Assert.Contains(node.Input, i => i.StartsWith($"{options.Name}/", StringComparison.Ordinal) && i.Contains($"{program.Reductions[0]}/", StringComparison.Ordinal));
        Assert.Equal(info.Parameters.Count(), swapped.Graph.Node.Count(n => n.OpType == "ReduceSumSquare"));
        var labels = info.DataInputs.Single(n => n != "X");
        Dictionary<string, (byte[] Data, long[] Shape)> Batch(int seed)
        {
            var x = Values(8 * 64, seed, 1f);
            var y = Enumerable.Range(0, 8).Select(i => (long)((i + seed) % 10)).ToArray();
            return new() { ["X"] = (MemoryMarshal.AsBytes(x.AsSpan()).ToArray(), [8, 64]), [labels] = (MemoryMarshal.AsBytes(y.AsSpan()).ToArray(), [8]) };
        }
        using var fused = new Trainer(step);
        using var graph = new Trainer(step, new TrainerOptions { Update = UpdateMode.Graph });
        Assert.Equal(UpdateMode.Fused, fused.Update);
        for (int i = 0; i < 6; i++) Assert.Equal(graph.Step(Batch(i)), fused.Step(Batch(i)));
        AssertSameState(graph, fused);
        Assert.NotEqual(TestData.ValuesByName(step)["W1"].RawData, fused.ReadState()["W1"].RawData);
    }

    [Fact]
    public void AStepModelWithoutTheSumWhereTheRewritePutsItIsOneErrorLine()
    {
        var step = TestData.StepModel(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), ClipNorm = 0.5 });
        var sum = step.Graph.Node.First(n => n.OpType == "ReduceSumSquare");
        var renamed = sum.Output[0] + "_elsewhere";
        foreach (var n in step.Graph.Node) for (int k = 0; k < n.Input.Count; k++) if (n.Input[k] == sum.Output[0]) n.Input[k] = renamed;
        sum.Output[0] = renamed;
        var e = Assert.Throws<OnnxAdadeltaException>(() => new Trainer(step));
        Assert.Contains("clipnorm sum of squares", e.Message);
        Assert.Contains("--update graph", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        using var graph = new Trainer(step, new TrainerOptions { Update = UpdateMode.Graph });
        Assert.True(float.IsFinite(graph.Step(TestData.Batch(0))));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void FusedAndGraphTrainersAgreeBitForBit(string name)
    {
        // The gradients are outputs: otherwise ORT's optimizer may fold the graph update's first scaling (g / 1000 of
        // loss_scale_factor) into the MatMul that produces the gradient, which rounds differently from the reference
        // (the fused op, which reads the gradient as it is, stays bit-identical to the reference either way).
        var step = TestData.StepModel(Case(name), new RewriteOptions { KeepGradients = true });
        var gradients = StepModelInfo.Read(step, name).Gradients.Values.ToList();
        using var fused = new Trainer(step, new TrainerOptions { Update = UpdateMode.Fused, ExtraOutputs = gradients });
        using var graph = new Trainer(step, new TrainerOptions { Update = UpdateMode.Graph, ExtraOutputs = gradients });
        Assert.Equal(UpdateMode.Fused, fused.Update);
        Assert.Equal(UpdateMode.Graph, graph.Update);
        for (int i = 0; i < 7; i++) Assert.Equal(graph.Step(TestData.Batch(i)), fused.Step(TestData.Batch(i)));
        AssertSameState(graph, fused);
        // Checkpoints are the same file either way.
        Assert.Equal(graph.Checkpoint().ToByteArray(), fused.Checkpoint().ToByteArray());
    }

    [Fact]
    public void InPlaceStateOnATwoLayerModelMatchesPingPongAndHalvesStateMemory()
    {
        // In the MLP, W2 is read by the backward pass (for the hidden layer's gradient) after W2's own gradient exists:
        // were the fused node to run before that read, the in-place W2 would already hold its next value.
        var training = GradientGraphBuilder.Build(DigitsModels.Mlp(), new BuildTrainingOptions { Loss = LossKind.CrossEntropy, Output = "logits" });
        var step = AdadeltaRewrite.Apply(training, new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), UseEma = true });
        var info = StepModelInfo.Read(step, "mlp");
        var labels = info.DataInputs.Single(n => n != "X");
        Dictionary<string, (byte[] Data, long[] Shape)> Batch(int seed)
        {
            var x = Values(8 * 64, seed, 1f);
            var y = Enumerable.Range(0, 8).Select(i => (long)((i + seed) % 10)).ToArray();
            return new() { ["X"] = (MemoryMarshal.AsBytes(x.AsSpan()).ToArray(), [8, 64]), [labels] = (MemoryMarshal.AsBytes(y.AsSpan()).ToArray(), [8]) };
        }
        using var fused = new Trainer(step, new TrainerOptions { Update = UpdateMode.Fused });
        using var graph = new Trainer(step, new TrainerOptions { Update = UpdateMode.Graph });
        for (int i = 0; i < 5; i++) Assert.Equal(graph.Step(Batch(i)), fused.Step(Batch(i)));
        AssertSameState(graph, fused);
        Assert.NotEqual(TestData.ValuesByName(step)["W2"].RawData, fused.ReadState()["W2"].RawData);

        // Parameters and three slots each, float32: the graph keeps two copies, the fused op one (plus the 8-byte counter twice).
        long parameterAndSlotBytes = info.State.Where(s => s.Kind is StateKind.Parameter or StateKind.Slot)
            .Sum(s => TestData.ValuesByName(step)[s.Input].Dims.Aggregate(1L, (a, d) => a * d) * 4);
        Assert.True(graph.StateMemoryBytes >= 2 * parameterAndSlotBytes, $"{graph.StateMemoryBytes} < 2 x {parameterAndSlotBytes}");
        Assert.True(fused.StateMemoryBytes < parameterAndSlotBytes + 1024, $"{fused.StateMemoryBytes} vs {parameterAndSlotBytes}");
    }

    [Theory]
    [InlineData(DataType.Float16, false, false)]
    [InlineData(DataType.Float16, true, false)]
    [InlineData(DataType.Float16, false, true)]
    [InlineData(DataType.Bfloat16, false, false)]
    [InlineData(DataType.Bfloat16, true, true)]
    public void LowPrecisionStorageIsBitIdenticalToTheReference(DataType type, bool fp32State, bool masterWeights)
    {
        const int size = 531;
        var initial = MixedPrecision.Round(Values(size, 9, 1f), type);
        var step = AdadeltaRewrite.Apply(MixedPrecisionTests.LowPrecisionGraph(initial, type, type),
            new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), UseEma = true, Fp32State = fp32State, MasterWeights = masterWeights });
        IReadOnlyDictionary<string, (byte[] Data, long[] Shape)> Batch(long i) => new Dictionary<string, (byte[], long[])>
        {
            ["g"] = (MixedPrecision.FromFloats("g", MixedPrecision.Round(Values(size, (int)i + 1, 0.2f), type), type, [size]).ToRawBytes(), [size]),
        };
        var errors = NumericsCheck.Run(step, 6, Batch, update: UpdateMode.Fused);
        Assert.All(errors, e => Assert.True(e.Compared > 0 && e.MaxUlp == 0, $"{type}: {e.Name} {e.MaxUlp} ULP"));
        using var fused = new Trainer(step, new TrainerOptions { Update = UpdateMode.Fused });
        using var graph = new Trainer(step, new TrainerOptions { Update = UpdateMode.Graph });
        for (int i = 0; i < 6; i++) Assert.Equal(graph.Step(Batch(i)), fused.Step(Batch(i)));
        AssertSameState(graph, fused);
    }

    [Fact]
    public void TheSwapKeepsTheFileStandardAndPutsOneNodeInTheSession()
    {
        var step = TestData.StepModel(Case("everything"));
        var before = step.ToByteArray();
        var swapped = FusedUpdate.Swap(step);
        Assert.Equal(before, step.ToByteArray());
        Assert.DoesNotContain(step.Graph.Node, n => n.Domain == FusedUpdate.Domain);
        var fused = Assert.Single(swapped.Graph.Node, n => n.OpType == FusedUpdate.OpType);
        Assert.Equal(FusedUpdate.Domain, fused.Domain);
        // Every parameter and slot output comes from the one node; the loss is one of its ordering inputs.
        var info = StepModelInfo.Read(step, "t");
        Assert.Equal(info.State.Where(s => s.Kind is StateKind.Parameter or StateKind.Slot).Select(s => s.Output).Order(), fused.Output.Order());
        Assert.Contains(info.Loss, fused.Input);
        // The update's elementwise nodes are gone from the session model.
        Assert.True(swapped.Graph.Node.Count < step.Graph.Node.Count - 20, $"{swapped.Graph.Node.Count} nodes vs {step.Graph.Node.Count}");
    }

    [Fact]
    public void TheDefaultIsFusedOnTheCpuAndTheGraphOnCudaWithTheReason()
    {
        using (var fused = new Trainer(TestData.StepModel()))
        {
            Assert.Equal(UpdateMode.Fused, fused.Update);
            Assert.Equal("fused (ai.onnxadadelta.AdadeltaUpdate, parameters and state in place)", fused.UpdateDescription);
        }
        using (var clipped = new Trainer(TestData.StepModel(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), ClipNorm = 0.5 })))
            Assert.Equal(UpdateMode.Fused, clipped.Update);
        using (var asked = new Trainer(TestData.StepModel(), new TrainerOptions { Update = UpdateMode.Graph }))
            Assert.Equal("graph (standard ONNX ops, state ping-pong)", asked.UpdateDescription);
        // On CUDA the kernel has not run on a GPU yet: the default there stays the graph (decided without a device), and
        // the CUDA kernel does not read the norms' sums.
        Assert.Equal(UpdateMode.Graph, FusedUpdate.DefaultMode(StepModelInfo.Read(TestData.StepModel(), "step"), Device.Cuda, out var why));
        Assert.Contains("opt-in on CUDA", why);
        Assert.Equal(UpdateMode.Fused, FusedUpdate.DefaultMode(StepModelInfo.Read(TestData.StepModel(), "step"), Device.Cpu, out why));
        Assert.Null(why);
    }

    private static void AssertSameState(Trainer expected, Trainer actual)
    {
        var a = expected.ReadState();
        var b = actual.ReadState();
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var (name, value) in a) Assert.True(value.RawData.Equals(b[name].RawData), $"state '{name}' differs");
    }

    private static void AssertBits(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        if (BenchCheck.FirstDifference(expected, actual) is { } i)
            Assert.Fail($"{what}[{i}]: {actual[i]:R}, reference {expected[i]:R}");
    }
}
