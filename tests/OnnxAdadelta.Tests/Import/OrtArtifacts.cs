using System.Runtime.InteropServices;
using Google.FlatBuffers;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Import;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Training;
using Xunit.Abstractions;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Import;

/// <summary>
/// Small artifact-like training models (what generate_artifacts writes, with only standard ops besides the gradient
/// accumulators), ORT checkpoints written with the flatbuffers builder, the corpus, and running models through ORT.
/// </summary>
internal static class OrtArtifacts
{
    public const int Rows = 8, Features = 3;

    /// <summary>
    /// Linear regression y = X·W + b with an MSE loss and a hand-written backward pass, gradients accumulated by
    /// com.microsoft InPlaceAccumulatorV2 into <c>&lt;param&gt;_grad.accumulation.buffer</c> inputs, as ORT exports it.
    /// With <paramref name="useScale"/>, the backward pass uses com.microsoft Scale (which has no lowering here).
    /// With <paramref name="frozen"/>, a third parameter <c>s</c> (a scalar multiplier) is a graph input without a gradient.
    /// </summary>
    public static ModelProto LinearRegression(bool useScale = false, bool frozen = false)
    {
        var g = new GraphProto { Name = "linear_training" };
        g.Input.Add(Info("X", DataType.Float, [-1, Features]));
        g.Input.Add(Info("target", DataType.Float, [-1, 1]));
        g.Input.Add(TypeProtos.ValueInfo("W", DataType.Float, [Features, 1]));
        g.Input.Add(TypeProtos.ValueInfo("b", DataType.Float, [1]));
        if (frozen) g.Input.Add(TypeProtos.ValueInfo("s", DataType.Float, [1]));
        g.Input.Add(TypeProtos.ValueInfo("W_grad.accumulation.buffer", DataType.Float, [Features, 1]));
        g.Input.Add(TypeProtos.ValueInfo("b_grad.accumulation.buffer", DataType.Float, [1]));
        g.Input.Add(TypeProtos.ValueInfo("lazy_reset_grad", DataType.Bool, [1]));
        g.Initializer.Add(Tensors.Create("two", [2f]));
        g.Initializer.Add(Tensors.Create("axes0", [0L], 1));
        var b = new GraphBuilder(g);
        var xw = b.Add("MatMul", ["X", "W"], "xw");
        var lin = b.Add("Add", [xw, "b"], "lin");
        var y = frozen ? b.Add("Mul", [lin, "s"], "y") : b.Add("Identity", [lin], "y");
        var diff = b.Add("Sub", [y, "target"], "diff");
        var sq = b.Add("Mul", [diff, diff], "sq");
        g.Node.Add(new NodeProto { OpType = "ReduceMean", Name = "loss_node", Input = { sq }, Output = { "loss" }, Attribute = { GraphBuilder.Attr("keepdims", 0L) } });
        // Backward: dDiff = 2·diff / n (n = element count), through Scale when asked.
        var n = b.Add("Cast", [b.Add("Size", [diff], "n_int")], "n", GraphBuilder.Attr("to", (long)DataType.Float));
        var twice = b.Add("Mul", [diff, "two"], "twice");
        string dDiff;
        if (useScale)
        {
            dDiff = "dDiff";
            g.Node.Add(new NodeProto { OpType = "Scale", Domain = Lowering.MicrosoftDomain, Name = "scale", Input = { twice, n }, Output = { dDiff }, Attribute = { GraphBuilder.Attr("scale_down", 1L) } });
        }
        else dDiff = b.Add("Div", [twice, n], "dDiff");
        var dLin = frozen ? b.Add("Mul", [dDiff, "s"], "dLin") : dDiff;
        var xt = b.Add("Transpose", ["X"], "xt", GraphBuilder.Attr("perm", new long[] { 1, 0 }));
        g.Node.Add(new NodeProto { OpType = "MatMul", Name = "W_grad_node", Input = { xt, dLin }, Output = { "W_grad" } });
        g.Node.Add(new NodeProto { OpType = "ReduceSum", Name = "b_grad_sum", Input = { dLin, "axes0" }, Output = { "b_grad_2d" }, Attribute = { GraphBuilder.Attr("keepdims", 0L) } });
        g.Node.Add(new NodeProto { OpType = "Identity", Name = "b_grad_node", Input = { "b_grad_2d" }, Output = { "b_grad" } });
        foreach (var p in new[] { "W", "b" })
            g.Node.Add(new NodeProto
            {
                OpType = OrtArtifactImport.AccumulatorOp, Domain = Lowering.MicrosoftDomain, Name = $"GradientAccumulator_{p}",
                Input = { $"{p}_grad.accumulation.buffer", $"{p}_grad", "lazy_reset_grad" }, Output = { $"{p}_grad.accumulation.out" },
            });
        g.Output.Add(TypeProtos.ValueInfo("loss", DataType.Float, []));
        g.Output.Add(Info("y", DataType.Float, [-1, 1]));
        g.Output.Add(TypeProtos.ValueInfo("W_grad.accumulation.out", DataType.Bool, [1]));
        g.Output.Add(TypeProtos.ValueInfo("b_grad.accumulation.out", DataType.Bool, [1]));
        var m = new ModelProto { IrVersion = 7, Graph = g, ProducerName = "test" };
        m.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 14 });
        foreach (var d in new[] { "com.microsoft.nchwc", "ai.onnx.training", Lowering.MicrosoftDomain, "org.pytorch.aten" })
            m.OpsetImport.Add(new OperatorSetIdProto { Domain = d, Version = 1 });
        return m;
    }

    /// <summary>A tensor value info; -1 is the symbolic batch dimension.</summary>
    private static ValueInfoProto Info(string name, DataType type, long[] dims)
    {
        var info = TypeProtos.ValueInfo(name, type, []);
        foreach (var d in dims)
            info.Type.TensorType.Shape.Dim.Add(d < 0 ? new TensorShapeProto.Types.Dimension { DimParam = "batch" } : new TensorShapeProto.Types.Dimension { DimValue = d });
        return info;
    }

    /// <summary>Seeded parameter values of <see cref="LinearRegression"/>.</summary>
    public static Dictionary<string, TensorProto> LinearValues(int seed = 1) => new(StringComparer.Ordinal)
    {
        ["W"] = Tensors.Create("W", Uniform(Features, seed), Features, 1),
        ["b"] = Tensors.Create("b", Uniform(1, seed + 1), 1),
        ["s"] = Tensors.Create("s", [1.5f], 1),
    };

    /// <summary>A model whose initializers are <paramref name="values"/> (the <c>--params</c> form).</summary>
    public static ModelProto ParamsModel(IEnumerable<TensorProto> values)
    {
        var g = new GraphProto { Name = "params" };
        g.Initializer.AddRange(values.Select(v => v.Clone()));
        var m = new ModelProto { IrVersion = 8, Graph = g };
        m.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        return m;
    }

    /// <summary>A learnable batch for <see cref="LinearRegression"/>: target = X·[1,-2,0.5] + 0.3.</summary>
    public static Dictionary<string, (Array Values, long[] Shape)> LinearBatch(int seed = 5, int rows = Rows)
    {
        var x = Uniform(rows * Features, seed);
        var t = new float[rows];
        for (int i = 0; i < rows; i++) t[i] = x[i * 3] - 2 * x[i * 3 + 1] + 0.5f * x[i * 3 + 2] + 0.3f;
        return new() { ["X"] = (x, [rows, Features]), ["target"] = (t, [rows, 1]) };
    }

    /// <summary>Uniform floats in [-1, 1], seeded.</summary>
    public static float[] Uniform(int count, int seed, double scale = 1)
    {
        var rng = new SplitMix64((ulong)seed * 7919 + 11);
        var v = new float[count];
        for (int i = 0; i < v.Length; i++) v[i] = (float)((rng.NextDouble() * 2 - 1) * scale);
        return v;
    }

    /// <summary>A feed's raw little-endian bytes (the form <see cref="Trainer.Step"/> takes).</summary>
    public static Dictionary<string, (byte[] Data, long[] Shape)> Raw(Dictionary<string, (Array Values, long[] Shape)> feeds) =>
        feeds.ToDictionary(f => f.Key, f => (f.Value.Values switch
        {
            float[] v => MemoryMarshal.AsBytes(v.AsSpan()).ToArray(),
            long[] v => MemoryMarshal.AsBytes(v.AsSpan()).ToArray(),
            _ => throw new ArgumentException(f.Key),
        }, f.Value.Shape));

    /// <summary>Runs <paramref name="model"/> in ONNX Runtime; returns the named float outputs.</summary>
    public static Dictionary<string, float[]> Run(ModelProto model, Dictionary<string, (Array Values, long[] Shape)> feeds, params string[] outputs)
    {
        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        using var session = new InferenceSession(model.ToByteArray(), options);
        var names = feeds.Keys.Where(session.InputMetadata.ContainsKey).ToArray();
        var values = names.Select(n => feeds[n].Values switch
        {
            float[] v => OrtValue.CreateTensorValueFromMemory(v, feeds[n].Shape),
            long[] v => OrtValue.CreateTensorValueFromMemory(v, feeds[n].Shape),
            _ => throw new ArgumentException(n),
        }).ToList();
        try
        {
            using var results = session.Run(new RunOptions(), names, values, outputs);
            return outputs.Zip(results).ToDictionary(p => p.First, p => p.Second.GetTensorDataAsSpan<float>().ToArray(), StringComparer.Ordinal);
        }
        finally { foreach (var v in values) v.Dispose(); }
    }

    /// <summary>Asserts max|actual − expected| ≤ rtol · max|expected| (per tensor: sums in another order differ by rounding).</summary>
    public static void AssertClose(float[] expected, float[] actual, double rtol, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double scale = expected.Max(v => Math.Abs((double)v));
        double worst = expected.Zip(actual).Max(p => Math.Abs((double)p.First - p.Second));
        Assert.True(worst <= rtol * scale + 1e-12, $"{what}: max difference {worst:G4} exceeds {rtol:G2} × max |expected| {scale:G4}");
    }

    /// <summary>One tensor of an ORT checkpoint: name, dims, data type, raw bytes.</summary>
    public sealed record CheckpointTensor(string Name, long[] Dims, int DataType, byte[] Raw)
    {
        public static CheckpointTensor Of(TensorProto t) => new(t.Name, [.. t.Dims], t.DataType, t.ToRawBytes());
    }

    /// <summary>
    /// Writes an ORT training checkpoint (ort_training_checkpoint.fbs: Checkpoint → ModuleState → [Tensor]) with the
    /// flatbuffers builder.
    /// </summary>
    public static byte[] WriteCheckpoint(IEnumerable<CheckpointTensor> trainable, IEnumerable<CheckpointTensor>? frozen = null,
        string identifier = "ODTC", bool nominal = false)
    {
        var fb = new FlatBufferBuilder(256);
        int[] Tensors(IEnumerable<CheckpointTensor> ts) => ts.Select(t =>
        {
            var name = fb.CreateString(t.Name);
            fb.StartVector(8, t.Dims.Length, 8);
            for (int i = t.Dims.Length - 1; i >= 0; i--) fb.AddLong(t.Dims[i]);
            var dims = fb.EndVector();
            fb.StartVector(1, t.Raw.Length, 1);
            for (int i = t.Raw.Length - 1; i >= 0; i--) fb.AddByte(t.Raw[i]);
            var raw = fb.EndVector();
            fb.StartTable(7);
            fb.AddOffset(0, name.Value, 0);
            fb.AddOffset(2, dims.Value, 0);
            fb.AddInt(3, t.DataType, 0);
            fb.AddOffset(4, raw.Value, 0);
            return fb.EndTable();
        }).ToArray();
        int Vector(int[] tables)
        {
            fb.StartVector(4, tables.Length, 4);
            for (int i = tables.Length - 1; i >= 0; i--) fb.AddOffset(tables[i]);
            return fb.EndVector().Value;
        }
        var trainableVector = Vector(Tensors(trainable));
        var frozenVector = Vector(Tensors(frozen ?? []));
        fb.StartTable(4);
        fb.AddOffset(0, trainableVector, 0);
        fb.AddOffset(1, frozenVector, 0);
        fb.AddBool(2, nominal, false);
        var module = fb.EndTable();
        fb.StartTable(4);
        fb.AddInt(0, 1, 0);
        fb.AddOffset(1, module, 0);
        var root = fb.EndTable();
        fb.Finish(root, identifier);
        return fb.SizedByteArray();
    }

    /// <summary>
    /// The corpus folder of ORT artifacts, for tests marked <see cref="SharedFactAttribute"/> or
    /// <see cref="SharedTheoryAttribute"/> (skipped where ../shared is absent); a ../shared without it fails the test.
    /// </summary>
    public static string Corpus()
    {
        var dir = Path.Combine(RepoPaths.Shared ?? throw new InvalidOperationException(SharedCorpus.AbsentReason), "corpus", "ort-artifacts");
        Assert.True(Directory.Exists(dir), $"{dir} is missing from ../shared.");
        return dir;
    }

    /// <summary>
    /// <see cref="LinearRegression"/> whose backward pass uses com.microsoft QuickGeluGrad (an ORT training op with no
    /// lowering here) where it would use Scale.
    /// </summary>
    public static ModelProto WithUnloweredOp()
    {
        var model = LinearRegression(useScale: true);
        model.Graph.Node.Single(n => n.OpType == "Scale").OpType = UnloweredOp;
        return model;
    }

    /// <summary>The op <see cref="WithUnloweredOp"/> uses.</summary>
    public const string UnloweredOp = "QuickGeluGrad";

    /// <summary>The parameters of an ORT training model: the graph inputs whose gradients it accumulates, with their shapes.</summary>
    public static Dictionary<string, long[]> AccumulatedParameters(ModelProto training)
    {
        var grads = training.Graph.Node.Where(n => n.OpType == OrtArtifactImport.AccumulatorOp).Select(n => n.Input[1]).ToHashSet();
        return training.Graph.Input.Where(i => grads.Contains(i.Name + "_grad"))
            .ToDictionary(i => i.Name, i => i.Type.TensorType.Shape.Dim.Select(d => d.DimValue).ToArray(), StringComparer.Ordinal);
    }
}
