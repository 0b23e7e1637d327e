using Google.Protobuf;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Distributed;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Runtime;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Tests.Distributed;

/// <summary>The distributed step in one process: the split, the shards, the row weighting (no MPI needed).</summary>
public class DistributedTests
{
    private static readonly Lazy<ModelProto> CnnStep = new(() => DigitsStep("digits-cnn.onnx"));

    internal static ModelProto DigitsStep(string model, RewriteOptions? rewrite = null) =>
        AdadeltaRewrite.Apply(
            GradientGraphBuilder.Build(ModelIO.Load(Path.Combine(RepoPaths.Models, model)), new BuildTrainingOptions { Loss = LossKind.CrossEntropy, Output = "logits" }),
            new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) }, rewrite);

    internal static ModelProto DigitsStep(string model, AdadeltaOptions optimizer) =>
        AdadeltaRewrite.Apply(
            GradientGraphBuilder.Build(ModelIO.Load(Path.Combine(RepoPaths.Models, model)), new BuildTrainingOptions { Loss = LossKind.CrossEntropy, Output = "logits" }),
            optimizer);

    internal static Dataset Digits(ModelProto step) => Dataset.Open(Path.Combine(RepoPaths.Models, "data", "digits-train.npz"), TrainingRun.InputSpecs(step));

    [Theory]
    [InlineData(30, 4, new[] { 0, 7, 15, 22, 30 })]
    [InlineData(64, 2, new[] { 0, 32, 64 })]
    [InlineData(3, 4, new[] { 0, 0, 1, 2, 3 })]
    public void ShardsCoverTheBatchInRankOrder(int rows, int ranks, int[] bounds)
    {
        for (int r = 0; r < ranks; r++)
            Assert.Equal((bounds[r], bounds[r + 1]), DistributedTrainer.ShardOf(rows, r, ranks));
    }

    [Fact]
    public void TheSplitCutsAtTheGradients()
    {
        var split = StepSplit.Apply(CnnStep.Value);
        var info = split.Info;
        Assert.Equal([info.Loss, .. split.Gradients.Select(g => g.Name)], split.GradientModel.Graph.Output.Select(o => o.Name));
        Assert.Equal(info.Parameters, split.Gradients.Select(g => g.Parameter));
        var updateInputs = split.UpdateModel.Graph.Input.Select(i => i.Name).ToHashSet();
        Assert.DoesNotContain(updateInputs, info.DataInputs.Contains);
        Assert.All(split.Gradients, g => Assert.Contains(g.Name, updateInputs));
        Assert.Equal([.. info.State.Select(s => s.Output), info.LearningRateOutput!], split.UpdateModel.Graph.Output.Select(o => o.Name));
        Assert.DoesNotContain(split.GradientModel.Graph.Input, i => i.Name.Contains("accum_", StringComparison.Ordinal));
        Assert.Null(StepModelInfo.TryRead(split.GradientModel));
    }

    [Fact]
    public void OneRankIsBitIdenticalToTheTrainer()
    {
        var step = CnnStep.Value;
        var data = Digits(step);
        var run = new TrainingRunOptions { Steps = 6, BatchSize = 64, Shuffle = true, Seed = 3 };
        using var plain = new Trainer(step, new TrainerOptions { Threads = 1 });
        TrainingRun.Run(plain, data, run);
        using var collective = new LocalCollective();
        using var one = new DistributedTrainer(step, collective, new DistributedOptions { Threads = 1, CheckReplicas = true });
        var losses = new List<float>();
        DistributedRun.Run(one, data, run, s => losses.Add(s.Loss));
        Assert.Equal(6, losses.Count);
        var expected = plain.ReadState();
        var actual = one.ReadState();
        foreach (var (name, value) in expected) Assert.True(value.RawData.Equals(actual[name].RawData), $"state '{name}' differs");
        Assert.Equal(6L, one.Iteration);
    }

    [Fact]
    public void UnevenShardsWeighEachRowOnce()
    {
        // The digits set's last batch of an epoch: 1,438 rows in batches of 64 leave 30, split 7, 8, 7, 8 over 4 ranks.
        var step = DigitsStep("digits-cnn.onnx", new RewriteOptions { KeepGradients = true });
        var data = Digits(step);
        var plan = data.Plan(64);
        long last = plan.BatchesPerEpoch - 1;
        var rows = plan.RowsForStep(last);
        Assert.Equal(30, rows.Length);
        Dictionary<string, (byte[] Data, long[] Shape)> Rows(ReadOnlySpan<long> r)
        {
            var array = r.ToArray();
            return step.Graph.Input.Where(i => TrainingRun.InputSpecs(step).Any(s => s.Name == i.Name)).ToDictionary(i => i.Name, i => data.Gather(i.Name, array));
        }

        var split = StepSplit.Apply(step);
        using var plain = new Trainer(step, new TrainerOptions { Threads = 1, ExtraOutputs = split.Gradients.Select(g => g.Name).ToList() });
        float wholeLoss = plain.Step(Rows(rows));
        using var four = DistributedTrainer.Simulated(step, 4, new DistributedOptions { Threads = 1 });
        float loss = four.Step(Rows(rows));
        Assert.True(Math.Abs(loss - wholeLoss) <= 1e-6 * Math.Abs(wholeLoss), $"loss {loss} vs one process {wholeLoss}");

        // The mean of the four ranks' own means: what an unweighted average would give.
        var shardMeans = new List<float[]>();
        for (int r = 0; r < 4; r++)
        {
            var (start, end) = DistributedTrainer.ShardOf(30, r, 4);
            using var alone = new Trainer(step, new TrainerOptions { Threads = 1, ExtraOutputs = split.Gradients.Select(g => g.Name).ToList() });
            alone.Step(Rows(rows.AsSpan(start, end - start)));
            shardMeans.Add(split.Gradients.SelectMany(g => alone.ReadOutput(g.Name)).ToArray());
        }
        var whole = split.Gradients.SelectMany(g => plain.ReadOutput(g.Name)).ToArray();
        var reduced = four.ReadGradients().ToArray();
        var meanOfMeans = Enumerable.Range(0, whole.Length).Select(i => shardMeans.Average(m => m[i])).ToArray();
        double weighted = RelativeDifference(reduced, whole), unweighted = RelativeDifference(meanOfMeans, whole);
        Assert.True(weighted < 1e-5, $"row-weighted gradient {weighted:E2} from the one-process gradient");
        Assert.True(unweighted > 100 * weighted, $"the mean of means is as close ({unweighted:E2}) as the row-weighted mean ({weighted:E2}): the test cannot tell them apart");
    }

    [Fact]
    public void SimulatedRanksSplitTheBatchButKeepTheGlobalBatch()
    {
        var step = CnnStep.Value;
        var data = Digits(step);
        var run = new TrainingRunOptions { Steps = 5, BatchSize = 64, Shuffle = true };
        using var plain = new Trainer(step, new TrainerOptions { Threads = 1 });
        TrainingRun.Run(plain, data, run);
        using var two = DistributedTrainer.Simulated(step, 2, new DistributedOptions { Threads = 1 });
        DistributedRun.Run(two, data, run);
        double difference = ParameterDifference(two.ReadState(), plain.ReadState(), two.Info);
        Assert.True(difference < 1e-4, $"2 simulated ranks are {difference:E2} from one process after 5 steps");
    }

    [Fact]
    public void TheFusedSplitUpdatesParametersAndSlotsInOneNodeThatNothingElseReads()
    {
        var split = StepSplit.Apply(CnnStep.Value, UpdateMode.Fused);
        var info = split.Info;
        Assert.Equal(UpdateMode.Fused, split.Update);
        var nodes = split.UpdateModel.Graph.Node;
        var fused = Assert.Single(nodes, n => n.Domain == FusedUpdate.Domain && n.OpType == FusedUpdate.OpType);
        // Every parameter and slot is updated in place; the counter (and any buffer) stays ping-pong.
        Assert.Equal(info.State.Where(s => s.Kind is StateKind.Parameter or StateKind.Slot).Select(s => s.Input), split.InPlaceState.Select(s => s.Input));
        Assert.All(split.InPlaceState, s => Assert.Contains(s.Output, fused.Output));
        // The fused node reads the counter, state and the gradients (graph inputs bound to the flat buffer), no ordering inputs.
        var inputs = split.UpdateModel.Graph.Input.Select(i => i.Name).ToHashSet();
        Assert.All(fused.Input, i => Assert.Contains(i, inputs));
        Assert.All(split.Gradients, g => Assert.Contains(g.Name, fused.Input));
        Assert.DoesNotContain(info.Loss, fused.Input);
        var inPlace = split.InPlaceState.Select(s => s.Input).ToHashSet();
        Assert.All(nodes.Where(n => n != fused), n => Assert.DoesNotContain(n.Input, inPlace.Contains));
        // The graph update keeps the standard ops and binds nothing in place.
        var graph = StepSplit.Apply(CnnStep.Value);
        Assert.Empty(graph.InPlaceState);
        Assert.DoesNotContain(graph.UpdateModel.Graph.Node, n => n.Domain == FusedUpdate.Domain);
    }

    [Fact]
    public void TheFusedUpdateIsBitIdenticalToTheGraphUpdateWithStateInPlace()
    {
        // Weight decay and EMA add slots and terms to the update; the fused op runs them all.
        var step = DigitsStep("digits-mlp.onnx", new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), WeightDecay = 1e-3, UseEma = true });
        var data = Digits(step);
        var run = new TrainingRunOptions { Steps = 4, BatchSize = 30, Shuffle = true, Seed = 7 };
        using var graph = DistributedTrainer.Simulated(step, 2, new DistributedOptions { Threads = 1, Update = UpdateMode.Graph });
        using var fused = DistributedTrainer.Simulated(step, 2, new DistributedOptions { Threads = 1 });
        Assert.Equal(UpdateMode.Graph, graph.Update);
        Assert.Equal(UpdateMode.Fused, fused.Update);
        Assert.Equal("fused (ai.onnxadadelta.AdadeltaUpdate, parameters and state in place); on every rank after the all-reduce", fused.UpdateDescription);
        var graphLosses = new List<float>();
        var fusedLosses = new List<float>();
        DistributedRun.Run(graph, data, run, s => graphLosses.Add(s.Loss));
        DistributedRun.Run(fused, data, run, s => fusedLosses.Add(s.Loss));
        Assert.Equal(graphLosses, fusedLosses);
        var expected = graph.ReadState();
        var actual = fused.ReadState();
        Assert.Contains(actual.Keys, k => k.Contains("ema", StringComparison.OrdinalIgnoreCase));
        foreach (var (name, value) in expected) Assert.True(value.RawData.Equals(actual[name].RawData), $"state '{name}' differs");
        Assert.Equal(4L, fused.Iteration);
        // Parameters and slots have one copy instead of two: only the counter keeps a spare (one int64, padded to the
        // flat buffers' alignment).
        Assert.Equal(graph.StateMemoryBytes / 2 + FlatTensorBuffer.AlignmentBytes, fused.StateMemoryBytes);
    }

    [Theory]
    [InlineData(UpdateMode.Graph)]
    [InlineData(UpdateMode.Fused)]
    public void TheLearningRateIsReadFromTheUpdateModel(UpdateMode update)
    {
        // A decaying schedule: each step's rate differs, and the update model outputs the one it applied.
        var options = new AdadeltaOptions { LearningRate = LearningRateSchedules.Parse("exponential:initial=1.0,decay_steps=1,decay_rate=0.5") };
        var step = DigitsStep("digits-mlp.onnx", options);
        Assert.NotNull(StepModelInfo.Read(step, "the step model").LearningRateOutput);
        using var ranks = DistributedTrainer.Simulated(step, 2, new DistributedOptions { Threads = 1, Update = update });
        Assert.Null(ranks.LearningRate);
        Assert.True(ranks.LearningRateFromGraph);
        var reported = new List<float>();
        DistributedRun.Run(ranks, Digits(step), new TrainingRunOptions { Steps = 3, BatchSize = 16 }, s => reported.Add(s.LearningRate));
        Assert.Equal([1f, 0.5f, 0.25f], reported);
        Assert.Equal(0.25f, ranks.LearningRate);
    }

    [Fact]
    public void TheDistributedRateIsTheUpdateModelsOutputNotARecomputation()
    {
        // The output's Identity is pointed at another constant: the update is unchanged, the reported rate is the constant.
        var step = DigitsStep("digits-mlp.onnx");
        var info = StepModelInfo.Read(step, "the step model");
        var identity = step.Graph.Node.Single(n => n.Output.Contains(info.LearningRateOutput!));
        step.Graph.Initializer.Add(Tensors.Create("marker", [0.375f]));
        identity.Input[0] = "marker";
        using var ranks = DistributedTrainer.Simulated(step, 2, new DistributedOptions { Threads = 1 });
        DistributedRun.Run(ranks, Digits(step), new TrainingRunOptions { Steps = 1, BatchSize = 16 });
        Assert.Equal(0.375f, ranks.LearningRate);
    }

    [Fact]
    public void TheUpdateModeDefaultsAsInOneProcessAndTheNormsRunInTheFusedOpBitIdenticalToTheGraph()
    {
        using (var plain = new Trainer(CnnStep.Value, new TrainerOptions { Threads = 1 }))
        using (var distributed = DistributedTrainer.Simulated(CnnStep.Value, 2, new DistributedOptions { Threads = 1 }))
        {
            Assert.Equal(UpdateMode.Fused, plain.Update);
            Assert.Equal(plain.Update, distributed.Update);
        }
        // The norms run in the fused op from the update model's own sums (global_clipnorm over the reduced gradients).
        foreach (var optimizer in new[] { new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), ClipNorm = 0.05 }, new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), GlobalClipNorm = 0.05 } })
        {
            var step = DigitsStep("digits-mlp.onnx", optimizer);
            var data = Digits(step);
            var run = new TrainingRunOptions { Steps = 3, BatchSize = 30, Shuffle = true, Seed = 3 };
            using var fused = DistributedTrainer.Simulated(step, 2, new DistributedOptions { Threads = 1 });
            using var graph = DistributedTrainer.Simulated(step, 2, new DistributedOptions { Threads = 1, Update = UpdateMode.Graph });
            Assert.Equal(UpdateMode.Fused, fused.Update);
            DistributedRun.Run(fused, data, run);
            DistributedRun.Run(graph, data, run);
            var expected = graph.ReadState();
            foreach (var (name, value) in fused.ReadState()) Assert.True(value.RawData.Equals(expected[name].RawData), $"state '{name}' differs");
        }
    }

    // Rank 0 of 2 whose peer holds the same shard: each all-reduce call doubles its values, and the calls are recorded.
    private sealed class MirroredPeer : ICollective
    {
        public List<int> Calls { get; } = [];
        public int Rank => 0;
        public int Size => 2;
        public void AllReduceSum(Span<float> values)
        {
            Calls.Add(values.Length);
            System.Numerics.Tensors.TensorPrimitives.Multiply(values, 2f, values);
        }
        public void Broadcast(Span<byte> bytes, int root) { }
        public (long Min, long Max) MinMax(long value) => (value, value);
        public void Barrier() { }
        [System.Diagnostics.CodeAnalysis.DoesNotReturn]
        public void Abort(int exitCode) => throw new NotSupportedException();
        public void Dispose() { }
    }

    [Fact]
    public void TheAllReduceCoversTheFlatGradientBufferOnceInBucketsOfTheGivenSize()
    {
        var step = CnnStep.Value;
        var data = Digits(step);
        var rows = Enumerable.Range(0, 16).Select(i => (long)i).ToArray();
        var shard = TrainingRun.InputSpecs(step).ToDictionary(s => s.Name, s => data.Gather(s.Name, rows));
        // One rank alone: the shard's mean gradient.
        using var alone = new DistributedTrainer(step, new LocalCollective(), new DistributedOptions { Threads = 1 });
        alone.StepOnShard(shard, 16);
        // Rank 0 of 2 (16 of 32 rows): times 16, summed with the mirrored peer, divided by 32: the same values, bit for
        // bit (powers of two), only if every value went through exactly one all-reduce call.
        var peer = new MirroredPeer();
        using var two = new DistributedTrainer(step, peer, new DistributedOptions { Threads = 1, BucketMb = 0.004 });
        two.StepOnShard(shard, 32);
        Assert.Equal(1048, two.BucketElements); // 0.004 MiB of float32
        Assert.True(peer.Calls.Count >= 3, $"{peer.Calls.Count} calls");
        Assert.All(peer.Calls.SkipLast(1), n => Assert.Equal(two.BucketElements, n));
        Assert.InRange(peer.Calls[^1], 1, two.BucketElements);
        Assert.InRange(peer.Calls.Sum(), two.GradientCount + 1, two.GradientCount + 1 + 16 * 8); // gradients, loss, alignment padding
        Assert.Equal(alone.ReadGradients(), two.ReadGradients());
    }

    [Fact]
    public void ACheckpointResumesWhereTheRunWasWithAnyNumberOfRanks()
    {
        var step = DigitsStep("digits-mlp.onnx", new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) });
        var data = Digits(step);
        var run = new TrainingRunOptions { Steps = 3, BatchSize = 30, Shuffle = true, Seed = 2 };
        var fused = new DistributedOptions { Threads = 1, Update = UpdateMode.Fused };
        using var straight = DistributedTrainer.Simulated(step, 2, fused);
        DistributedRun.Run(straight, data, run with { Steps = 6 });
        ModelProto checkpoint;
        using (var first = DistributedTrainer.Simulated(step, 2, fused))
        {
            DistributedRun.Run(first, data, run);
            checkpoint = ModelProto.Parser.ParseFrom(first.Checkpoint().ToByteArray()); // as written to a file
        }
        using var resumed = DistributedTrainer.Simulated(checkpoint, 2, fused);
        Assert.Equal(3L, resumed.Iteration);
        DistributedRun.Run(resumed, data, run);
        var expected = straight.ReadState();
        foreach (var (name, value) in resumed.ReadState()) Assert.True(value.RawData.Equals(expected[name].RawData), $"state '{name}' differs after the resume");
        // The same checkpoint in one process, or on 4 ranks, goes on from iteration 3.
        using var one = new Trainer(checkpoint, new TrainerOptions { Threads = 1 });
        Assert.Equal(3L, one.Iteration);
        using var four = DistributedTrainer.Simulated(checkpoint, 4, new DistributedOptions { Threads = 1 });
        Assert.Equal(3L, four.Iteration);
        var parameter = one.Info.Parameters.First();
        Assert.Equal(checkpoint.Graph.Initializer.Single(t => t.Name == parameter).RawData, four.ReadState()[parameter].RawData);
    }

    [Fact]
    public void BadOptionsAndModelsAreRefusedNamingTheCulprit()
    {
        using var collective = new LocalCollective();
        var e = Assert.Throws<ArgumentException>(() => new DistributedTrainer(CnnStep.Value, collective, new DistributedOptions { BucketMb = 0 }));
        Assert.Contains("bucket size: 0 MiB", e.Message);
        var fixedBatch = CnnStep.Value.Clone();
        foreach (var input in fixedBatch.Graph.Input.Where(i => i.Name is "images" or "labels"))
            input.Type.TensorType.Shape.Dim[0] = new TensorShapeProto.Types.Dimension { DimValue = 64 };
        var f = Assert.Throws<OnnxAdadeltaException>(() => new DistributedTrainer(fixedBatch, collective));
        Assert.Contains("Data input 'images' has a fixed batch dimension of 64", f.Message);
    }

    // One rank whose peers, it is told, hold other state.
    private sealed class DivergedPeers : ICollective
    {
        public int Rank => 0;
        public int Size => 1;
        public void AllReduceSum(Span<float> values) { }
        public void Broadcast(Span<byte> bytes, int root) { }
        public (long Min, long Max) MinMax(long value) => (value, value + 1);
        public void Barrier() { }
        [System.Diagnostics.CodeAnalysis.DoesNotReturn]
        public void Abort(int exitCode) => throw new NotSupportedException();
        public void Dispose() { }
    }

    [Fact]
    public void TheReplicaCheckStopsWhenARankHoldsOtherState()
    {
        var step = CnnStep.Value;
        using var trainer = new DistributedTrainer(step, new DivergedPeers(), new DistributedOptions { Threads = 1, CheckReplicas = true });
        var data = Digits(step);
        var e = Assert.Throws<OnnxAdadeltaException>(() => DistributedRun.Run(trainer, data, new TrainingRunOptions { Steps = 1, BatchSize = 8 }));
        Assert.Contains("differ across ranks after iteration 1", e.Message);
    }

    [Theory]
    [InlineData("--check-replicas")]
    [InlineData("--bucket-mb", "4")]
    public void DistributedFlagsOutsideADistributedRunAreRefused(params string[] flag)
    {
        using var tmp = new TestData.TempDir();
        var r = Cli.CliRunner.Run(["train", Path.Combine(RepoPaths.Models, "digits-cnn.onnx"), "--loss", "cross-entropy", "--output", "logits",
            "--data", Path.Combine(RepoPaths.Models, "data", "digits-train.npz"), "--steps", "1", "-o", tmp.File("x.onnx"), .. flag]);
        Assert.Equal(1, r.ExitCode);
        Assert.Equal($"onnx-adadelta: error: {flag[0]} applies only to distributed training (--distributed, or launched by mpirun).", r.Err.Trim());
        Assert.False(File.Exists(tmp.File("x.onnx")));
    }

    [Fact]
    public void TheLaunchIsReadFromTheLaunchersEnvironment()
    {
        Assert.Null(MpiLaunch.Detect(_ => null));
        var env = new Dictionary<string, string> { ["OMPI_COMM_WORLD_SIZE"] = "4", ["OMPI_COMM_WORLD_RANK"] = "3" };
        Assert.Equal(new MpiLaunch(3, 4, "OMPI_COMM_WORLD_SIZE"), MpiLaunch.Detect(env.GetValueOrDefault));
        var hydra = new Dictionary<string, string> { ["PMI_SIZE"] = "2", ["PMI_RANK"] = "1" };
        Assert.Equal(new MpiLaunch(1, 2, "PMI_SIZE"), MpiLaunch.Detect(hydra.GetValueOrDefault));
        var bad = new Dictionary<string, string> { ["OMPI_COMM_WORLD_SIZE"] = "2", ["OMPI_COMM_WORLD_RANK"] = "5" };
        Assert.Contains("OMPI_COMM_WORLD_RANK='5'", Assert.Throws<OnnxAdadeltaException>(() => MpiLaunch.Detect(bad.GetValueOrDefault)).Message);
    }

    internal static double RelativeDifference(IReadOnlyList<float> a, IReadOnlyList<float> b)
    {
        double diff = 0, norm = 0;
        for (int i = 0; i < a.Count; i++) { diff += Math.Pow(a[i] - (double)b[i], 2); norm += (double)b[i] * b[i]; }
        return Math.Sqrt(diff / norm);
    }

    /// <summary>‖θa − θb‖ / ‖θb‖ over every trainable parameter.</summary>
    internal static double ParameterDifference(IReadOnlyDictionary<string, TensorProto> a, IReadOnlyDictionary<string, TensorProto> b, StepModelInfo info) =>
        RelativeDifference(info.Parameters.SelectMany(p => a[p].ToFloatArray()).ToArray(), info.Parameters.SelectMany(p => b[p].ToFloatArray()).ToArray());
}
