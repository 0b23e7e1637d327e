using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Import;
using OnnxAdadelta.Onnx;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Import;

/// <summary>
/// Helpers for checking com.microsoft lowerings: run one lowered contrib node through ONNX Runtime, and compute what
/// the node should give, either with standard ops or from the core gradient rules (a *Grad op's output is the
/// gradient of Σ(y · dY) for the forward op's output y and the upstream gradient dY).
/// </summary>
internal static class LoweringCheck
{
    /// <summary>A fed tensor: float, double, long, int, uint or bool values with a shape.</summary>
    public sealed record Feed(string Name, Array Values, long[] Shape)
    {
        public DataType Type => Values switch
        {
            float[] => DataType.Float,
            double[] => DataType.Double,
            long[] => DataType.Int64,
            // The runtime lets int[] and uint[] pass for each other, so the exact array type decides.
            uint[] when Values.GetType() == typeof(uint[]) => DataType.Uint32,
            int[] => DataType.Int32,
            bool[] => DataType.Bool,
            _ => throw new ArgumentException($"Unsupported feed type {Values.GetType()}"),
        };
    }

    /// <summary>Random floats in [lo, hi] (float32), away from each kink by <paramref name="away"/>.</summary>
    public static Feed Floats(string name, long[] shape, int seed, double lo = -1, double hi = 1, double[]? kinks = null, double away = 0.05)
    {
        var rng = new OnnxAdadelta.Training.SplitMix64((ulong)seed * 7919 + 3);
        var values = new float[shape.Aggregate(1L, (a, b) => a * b)];
        for (int i = 0; i < values.Length; i++)
        {
            double v;
            do v = lo + (hi - lo) * rng.NextDouble();
            while (kinks is not null && kinks.Any(k => Math.Abs(v - k) < away));
            values[i] = (float)v;
        }
        return new Feed(name, values, shape);
    }

    /// <summary>A one-node model: <paramref name="domain"/>.<paramref name="op"/> over the feeds (graph inputs), given outputs.</summary>
    public static ModelProto OneNode(string op, string domain, Feed[] inputs, string[] outputs, AttributeProto[]? attributes = null, int opset = 17, string[]? nodeInputs = null)
    {
        var g = new GraphProto { Name = $"{op}_check" };
        foreach (var f in inputs) g.Input.Add(TypeProtos.ValueInfo(f.Name, f.Type, f.Shape));
        var node = new NodeProto { OpType = op, Domain = domain, Name = op };
        node.Input.AddRange(nodeInputs ?? inputs.Select(i => i.Name).ToArray());
        node.Output.AddRange(outputs);
        node.Attribute.AddRange(attributes ?? []);
        g.Node.Add(node);
        foreach (var o in outputs.Where(o => o.Length > 0)) g.Output.Add(new ValueInfoProto { Name = o });
        var m = new ModelProto { IrVersion = 9, Graph = g };
        m.OpsetImport.Add(new OperatorSetIdProto { Version = opset });
        if (domain.Length > 0) m.OpsetImport.Add(new OperatorSetIdProto { Domain = domain, Version = 1 });
        return m;
    }

    /// <summary>
    /// Lowers a one-node com.microsoft model and runs it; returns each named output. <paramref name="declared"/> gives
    /// outputs a declared float shape (as value_info), for ops whose output shape is read from there.
    /// </summary>
    public static List<float[]> RunLowered(string op, Feed[] inputs, string[] outputs, AttributeProto[]? attributes = null, int opset = 17, string[]? nodeInputs = null,
        (string Name, long[] Shape)[]? declared = null)
    {
        var model = OneNode(op, Lowering.MicrosoftDomain, inputs, outputs, attributes, opset, nodeInputs);
        foreach (var (name, shape) in declared ?? []) model.Graph.ValueInfo.Add(TypeProtos.ValueInfo(name, DataType.Float, shape));
        Lowering.Apply(model);
        Assert.DoesNotContain(model.Graph.Node, n => n.Domain.Length > 0);
        return Run(model, inputs, outputs.Where(o => o.Length > 0).ToArray());
    }

    /// <summary>
    /// Runs a one-node com.microsoft model as it is, on ONNX Runtime's own contrib kernel (only for the ops the stock
    /// build has kernels for, such as FusedMatMul, Gelu, FastGelu, BiasGelu); returns each named output.
    /// </summary>
    public static List<float[]> RunOrtContrib(string op, Feed[] inputs, string[] outputs, AttributeProto[]? attributes = null, int opset = 17, string[]? nodeInputs = null) =>
        Run(OneNode(op, Lowering.MicrosoftDomain, inputs, outputs, attributes, opset, nodeInputs), inputs, outputs.Where(o => o.Length > 0).ToArray());

    /// <summary>Runs a standard-op one-node model; returns each named output.</summary>
    public static List<float[]> RunStandard(string op, Feed[] inputs, string[] outputs, AttributeProto[]? attributes = null, int opset = 17) =>
        Run(OneNode(op, "", inputs, outputs, attributes, opset), inputs, outputs.Where(o => o.Length > 0).ToArray());

    /// <summary>
    /// The gradients of Σ(y_k · dY_k) with respect to the inputs named in <paramref name="wrt"/>, where y_k are the
    /// outputs of the standard op <paramref name="op"/>, computed by the core gradient rules through ONNX Runtime.
    /// </summary>
    public static List<float[]> GradientOf(string op, Feed[] inputs, string[] wrt, Feed[] upstream, AttributeProto[]? attributes = null, int opset = 17, int outputs = 1)
    {
        var outNames = Enumerable.Range(0, outputs).Select(k => $"y{k}").ToArray();
        var forward = OneNode(op, "", inputs, outNames, attributes, opset);
        var g = forward.Graph;
        // Inputs we differentiate become overridable initializers; upstream gradients are constants.
        foreach (var f in inputs.Where(f => wrt.Contains(f.Name))) g.Initializer.Add(Tensor(f));
        var b = new GraphBuilder(g);
        string? total = null;
        for (int k = 0; k < upstream.Length; k++)
        {
            g.Initializer.Add(Tensor(upstream[k] with { Name = $"dY{k}" }));
            var term = b.Add("ReduceSum", [b.Add("Mul", [outNames[k], $"dY{k}"], $"ydy{k}")], $"t{k}", GraphBuilder.Attr("keepdims", 0L));
            total = total is null ? term : b.Add("Add", [total, term], $"s{k}");
        }
        g.Node.Add(new NodeProto { OpType = "Identity", Name = "L", Input = { total! }, Output = { "L" } });
        g.Output.Clear();
        g.Output.Add(TypeProtos.ValueInfo("L", DataType.Float, []));
        var training = GradientGraphBuilder.Build(forward, new BuildTrainingOptions { Loss = LossKind.Output, Output = "L", Trainable = wrt });
        return Run(training, inputs, wrt.Select(w => w + "_grad").ToArray());
    }

    /// <summary>Asserts two float arrays agree elementwise within atol + rtol·|expected|.</summary>
    public static void AssertClose(float[] expected, float[] actual, double rtol = 1e-5, double atol = 1e-6, string what = "")
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= atol + rtol * Math.Abs(expected[i]),
                $"{what}[{i}]: expected {expected[i]:R}, got {actual[i]:R}");
    }

    private static TensorProto Tensor(Feed f) => f.Values switch
    {
        float[] v => Tensors.Create(f.Name, v, f.Shape),
        double[] v => Tensors.Create(f.Name, v, f.Shape),
        long[] v => Tensors.Create(f.Name, v, f.Shape),
        int[] v => Tensors.Create(f.Name, v, f.Shape),
        bool[] v => Tensors.Create(f.Name, v, f.Shape),
        _ => throw new ArgumentException(f.Name),
    };

    public static List<float[]> Run(ModelProto model, Feed[] inputs, string[] outputs)
    {
        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        using var session = new InferenceSession(model.ToByteArray(), options);
        var known = session.InputMetadata.Keys.Concat(session.OverridableInitializerMetadata.Keys).ToHashSet();
        var feeds = inputs.Where(f => known.Contains(f.Name)).ToList();
        var values = feeds.Select(f => f.Values switch
        {
            float[] v => OrtValue.CreateTensorValueFromMemory(v, f.Shape),
            double[] v => OrtValue.CreateTensorValueFromMemory(v, f.Shape),
            long[] v => OrtValue.CreateTensorValueFromMemory(v, f.Shape),
            uint[] v when v.GetType() == typeof(uint[]) => OrtValue.CreateTensorValueFromMemory(v, f.Shape),
            int[] v => OrtValue.CreateTensorValueFromMemory(v, f.Shape),
            bool[] v => OrtValue.CreateTensorValueFromMemory(v, f.Shape),
            _ => throw new ArgumentException(f.Name),
        }).ToList();
        try
        {
            using var results = session.Run(new RunOptions(), feeds.Select(f => f.Name).ToArray(), values, outputs);
            return results.Select(r => r.GetTensorTypeAndShape().ElementDataType switch
            {
                Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float => r.GetTensorDataAsSpan<float>().ToArray(),
                Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Double => r.GetTensorDataAsSpan<double>().ToArray().Select(v => (float)v).ToArray(),
                Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Int64 => r.GetTensorDataAsSpan<long>().ToArray().Select(v => (float)v).ToArray(),
                Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Bool => r.GetTensorDataAsSpan<bool>().ToArray().Select(v => v ? 1f : 0f).ToArray(),
                var t => throw new InvalidOperationException($"output type {t}"),
            }).ToList();
        }
        finally { foreach (var v in values) v.Dispose(); }
    }
}
