using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Training;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Gradients;

/// <summary>
/// Checks one op's gradient rule against central finite differences. The op runs alone in a model whose loss is
/// L = Σ_k Σ(y_k · W_k) with fixed random W_k; analytic gradients come from <see cref="GradientGraphBuilder"/> through
/// ONNX Runtime, numeric ones from (L(x+h) − L(x−h)) / 2h on the same forward model.
/// </summary>
internal static class GradientCheck
{
    /// <summary>An input of the op: values with a shape; differentiable ones are checked, others are constants.</summary>
    public sealed record In(string Name, double[] Values, long[] Shape, bool Differentiable = true)
    {
        /// <summary>A constant int64 input (indices, axes, shapes).</summary>
        public TensorProto? Ints { get; init; }

        /// <summary>A constant bool input.</summary>
        public bool[]? Bools { get; init; }

        /// <summary>Also a graph input (its initializer only a default), so the value is not known when the graph is built.</summary>
        public bool Overridable { get; init; }
    }

    /// <summary>A differentiable input with random values in [lo, hi], kept at least <paramref name="away"/> from each of <paramref name="kinks"/>.</summary>
    public static In Random(string name, long[] shape, int seed, double lo = -1, double hi = 1, double[]? kinks = null, double away = 0.05)
    {
        var rng = new SplitMix64((ulong)seed * 2654435761UL + 17);
        var n = (int)shape.Aggregate(1L, (a, b) => a * b);
        var values = new double[n];
        for (int i = 0; i < n; i++)
        {
            double v;
            do v = lo + (hi - lo) * rng.NextDouble();
            while (kinks is not null && kinks.Any(k => Math.Abs(v - k) < away));
            values[i] = v;
        }
        return new In(name, values, shape);
    }

    /// <summary>An int64 constant input.</summary>
    public static In Int64(string name, long[] values, params long[] shape) =>
        new(name, [], shape, Differentiable: false) { Ints = Tensors.Create(name, values, shape) };

    /// <summary>A bool constant input.</summary>
    public static In Bool(string name, bool[] values, params long[] shape) => new(name, [], shape, Differentiable: false) { Bools = values };

    /// <summary>A float constant input that is not checked (for example an exponent).</summary>
    public static In Fixed(string name, double[] values, params long[] shape) => new(name, values, shape, Differentiable: false);

    /// <summary>
    /// Runs the check; fails with the worst element when analytic and numeric gradients differ by more than
    /// atol + rtol·max(|analytic|, |numeric|). float64 unless <paramref name="float32"/> (for ops ORT has no float64 kernel of).
    /// <paramref name="symbols"/> declares dimensions of differentiable inputs as symbolic (dim_param), one entry per
    /// axis ("" keeps the size static), so that rules meet the shapes exported models have.
    /// </summary>
    public static void Check(string op, In[] inputs, AttributeProto[]? attributes = null, int outputs = 1, bool float32 = false,
        double rtol = 1e-5, double atol = 1e-7, int opset = 17, IReadOnlyList<int>? lossOutputs = null, string[]? nodeInputs = null,
        IReadOnlyDictionary<string, string[]>? symbols = null)
    {
        var type = float32 ? DataType.Float : DataType.Double;
        double h = float32 ? 1e-2 : 1e-6;
        if (float32) { rtol = Math.Max(rtol, 5e-3); atol = Math.Max(atol, 1e-3); }

        var forward = ForwardModel(op, inputs, attributes ?? [], outputs, type, opset, nodeInputs, symbols);
        var outputShapes = Run(forward, inputs, type, forward.Graph.Output.Select(o => o.Name).ToArray()).Select(r => r.Shape).ToList();
        var lossModel = WithLoss(forward, outputShapes, type, lossOutputs ?? Enumerable.Range(0, outputs).ToList());
        var trainable = inputs.Where(i => i.Differentiable).Select(i => i.Name).ToList();
        var training = GradientGraphBuilder.Build(lossModel, new BuildTrainingOptions { Loss = LossKind.Output, Output = "L", Trainable = trainable });

        var analytic = Run(training, inputs, type, trainable.Select(t => t + "_grad").ToArray());
        foreach (var (input, k) in inputs.Where(i => i.Differentiable).Select((x, k) => (x, k)))
        {
            var (values, shape) = analytic[k];
            Assert.Equal(input.Shape, shape);
            double worst = 0;
            string worstAt = "";
            for (int j = 0; j < input.Values.Length; j++)
            {
                double step = h * Math.Max(1, Math.Abs(input.Values[j]));
                var plus = inputs.Select(x => x == input ? x with { Values = Bump(x.Values, j, step) } : x).ToArray();
                var minus = inputs.Select(x => x == input ? x with { Values = Bump(x.Values, j, -step) } : x).ToArray();
                double numeric = (Run(lossModel, plus, type, ["L"])[0].Values[0] - Run(lossModel, minus, type, ["L"])[0].Values[0]) / (2 * step);
                double error = Math.Abs(values[j] - numeric) - (atol + rtol * Math.Max(Math.Abs(values[j]), Math.Abs(numeric)));
                if (error > worst) { worst = error; worstAt = $"{input.Name}[{j}]: analytic {values[j]:R}, numeric {numeric:R}"; }
            }
            Assert.True(worst <= 0, $"{op}: gradient differs at {worstAt}");
        }
    }

    private static double[] Bump(double[] v, int j, double by)
    {
        var c = (double[])v.Clone();
        c[j] += by;
        return c;
    }

    private static ModelProto ForwardModel(string op, In[] inputs, AttributeProto[] attributes, int outputs, DataType type, int opset, string[]? nodeInputs,
        IReadOnlyDictionary<string, string[]>? symbols)
    {
        var g = new GraphProto { Name = op + "_check" };
        foreach (var i in inputs)
        {
            if (i.Ints is not null) { g.Initializer.Add(i.Ints); continue; }
            if (i.Bools is not null)
            {
                g.Initializer.Add(BoolTensor(i.Name, i.Bools, i.Shape));
                if (i.Overridable) g.Input.Add(TypeProtos.ValueInfo(i.Name, DataType.Bool, i.Shape));
                continue;
            }
            g.Initializer.Add(FloatTensor(i.Name, i.Values, i.Shape, type));
            if (!i.Differentiable) continue;
            var input = TypeProtos.ValueInfo(i.Name, type, i.Shape);
            if (symbols?.GetValueOrDefault(i.Name) is { } names)
                for (int a = 0; a < names.Length; a++)
                    if (names[a].Length > 0) input.Type.TensorType.Shape.Dim[a] = new TensorShapeProto.Types.Dimension { DimParam = names[a] };
            g.Input.Add(input);
        }
        var node = new NodeProto { OpType = op, Name = op };
        node.Input.AddRange(nodeInputs ?? inputs.Select(i => i.Name).ToArray());
        for (int k = 0; k < outputs; k++) node.Output.Add($"y{k}");
        node.Attribute.AddRange(attributes);
        g.Node.Add(node);
        for (int k = 0; k < outputs; k++) g.Output.Add(new ValueInfoProto { Name = $"y{k}" });
        var m = new ModelProto { IrVersion = 9, Graph = g };
        m.OpsetImport.Add(new OperatorSetIdProto { Version = opset });
        return m;
    }

    private static ModelProto WithLoss(ModelProto forward, List<long[]> shapes, DataType type, IReadOnlyList<int> lossOutputs)
    {
        var m = forward.Clone();
        var b = new GraphBuilder(m.Graph);
        string? total = null;
        foreach (var k in lossOutputs)
        {
            var n = (int)shapes[k].Aggregate(1L, (a, c) => a * c);
            var rng = new SplitMix64((ulong)(k + 101));
            var w = b.Initializer($"W{k}", FloatTensor("", Enumerable.Range(0, n).Select(_ => rng.NextDouble() * 2 - 1).ToArray(), shapes[k], type));
            var term = b.Add("ReduceSum", [b.Add("Mul", [$"y{k}", w], $"yw{k}")], $"term{k}", GraphBuilder.Attr("keepdims", 0L));
            total = total is null ? term : b.Add("Add", [total, term], $"sum{k}");
        }
        m.Graph.Node.Add(new NodeProto { OpType = "Identity", Name = "L", Input = { total! }, Output = { "L" } });
        m.Graph.Output.Clear();
        m.Graph.Output.Add(TypeProtos.ValueInfo("L", type, []));
        return m;
    }

    private static List<(double[] Values, long[] Shape)> Run(ModelProto model, In[] inputs, DataType type, string[] outputs)
    {
        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        using var session = new InferenceSession(model.ToByteArray(), options);
        var feeds = inputs.Where(i => i.Differentiable && (session.InputMetadata.ContainsKey(i.Name) || session.OverridableInitializerMetadata.ContainsKey(i.Name))).ToList();
        var values = feeds.Select(i => type == DataType.Double
            ? OrtValue.CreateTensorValueFromMemory(i.Values, i.Shape)
            : OrtValue.CreateTensorValueFromMemory(i.Values.Select(v => (float)v).ToArray(), i.Shape)).ToList();
        try
        {
            using var results = session.Run(new RunOptions(), feeds.Select(f => f.Name).ToArray(), values, outputs);
            // Outputs of another element type (indices, masks, float statistics of a float64 op) keep only their shape.
            return results.Select(r => (r.GetTensorTypeAndShape().ElementDataType switch
            {
                TensorElementType.Double when type == DataType.Double => r.GetTensorDataAsSpan<double>().ToArray(),
                TensorElementType.Float when type == DataType.Float => r.GetTensorDataAsSpan<float>().ToArray().Select(v => (double)v).ToArray(),
                _ => [],
            }, r.GetTensorTypeAndShape().Shape)).ToList();
        }
        finally { foreach (var v in values) v.Dispose(); }
    }

    private static TensorProto FloatTensor(string name, double[] values, long[] shape, DataType type) =>
        type == DataType.Double ? Tensors.Create(name, values, shape) : Tensors.Create(name, values.Select(v => (float)v).ToArray(), shape);

    private static TensorProto BoolTensor(string name, bool[] values, long[] shape)
    {
        var t = new TensorProto { Name = name, DataType = (int)DataType.Bool, RawData = ByteString.CopyFrom(values.Select(v => v ? (byte)1 : (byte)0).ToArray()) };
        t.Dims.AddRange(shape);
        return t;
    }
}
