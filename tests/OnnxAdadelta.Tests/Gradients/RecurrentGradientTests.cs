using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Training;
using static OnnxAdadelta.Tests.Gradients.GradientCheck;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Gradients;

/// <summary>
/// LSTM, GRU and RNN are differentiated through their unrolled decomposition. Each configuration is checked twice:
/// the decomposition's outputs against ONNX Runtime's own kernel on random inputs (forward equivalence), and the
/// gradients it yields against central finite differences of the kernel (float32: ORT has no float64 kernel).
/// </summary>
public class RecurrentGradientTests
{
    private const int T = 3, Batch = 2, InputSize = 3, Hidden = 2;

    /// <summary>One recurrent node to test: its op, attributes and which optional inputs it gets.</summary>
    private sealed record Config(string Op, string Direction = "forward", int Layout = 0, bool Bias = true, int[]? Lens = null,
        bool InitialH = false, bool InitialC = false, bool Peepholes = false, float? Clip = null, bool InputForget = false,
        bool LinearBeforeReset = false, string[]? Activations = null, float[]? Alphas = null, float[]? Betas = null, int Seed = 1)
    {
        public int Directions => Direction == "bidirectional" ? 2 : 1;

        public int Gates => Op switch { "LSTM" => 4, "GRU" => 3, _ => 1 };

        public int Outputs => Op == "LSTM" ? 3 : 2;

        public AttributeProto[] Attributes()
        {
            var a = new List<AttributeProto> { NodeRuleContext.Attr("hidden_size", (long)Hidden) };
            if (Direction != "forward") a.Add(NodeRuleContext.Attr("direction", Direction));
            if (Layout != 0) a.Add(NodeRuleContext.Attr("layout", (long)Layout));
            if (Clip is { } clip) a.Add(NodeRuleContext.Attr("clip", clip));
            if (InputForget) a.Add(NodeRuleContext.Attr("input_forget", 1L));
            if (LinearBeforeReset) a.Add(NodeRuleContext.Attr("linear_before_reset", 1L));
            if (Activations is not null)
                a.Add(new AttributeProto { Name = "activations", Type = AttributeProto.Types.AttributeType.Strings, Strings = { Activations.Select(ByteString.CopyFromUtf8) } });
            if (Alphas is not null) a.Add(new AttributeProto { Name = "activation_alpha", Type = AttributeProto.Types.AttributeType.Floats, Floats = { Alphas } });
            if (Betas is not null) a.Add(new AttributeProto { Name = "activation_beta", Type = AttributeProto.Types.AttributeType.Floats, Floats = { Betas } });
            return [.. a];
        }

        /// <summary>The inputs (absent optional ones left out) and the node's input list ("" for an absent one).</summary>
        public (In[] Inputs, string[] NodeInputs) Inputs()
        {
            int d = Directions, g = Gates, seed = Seed * 100;
            long[] state = Layout == 0 ? [d, Batch, Hidden] : [Batch, d, Hidden];
            var inputs = new List<In>
            {
                Random("X", Layout == 0 ? [T, Batch, InputSize] : [Batch, T, InputSize], seed + 1),
                Random("W", [d, g * Hidden, InputSize], seed + 2),
                Random("R", [d, g * Hidden, Hidden], seed + 3),
            };
            var names = new List<string> { "X", "W", "R" };
            void Optional(bool present, Func<In> make, string name)
            {
                if (present) inputs.Add(make());
                names.Add(present ? name : "");
            }
            Optional(Bias, () => Random("B", [d, 2 * g * Hidden], seed + 4, -0.5, 0.5), "B");
            Optional(Lens is not null, () => new In("lens", [], [Batch], Differentiable: false) { Ints = Tensors.Create("lens", Lens!, Batch) }, "lens");
            Optional(InitialH, () => Random("initial_h", state, seed + 5), "initial_h");
            if (Op == "LSTM")
            {
                Optional(InitialC, () => Random("initial_c", state, seed + 6), "initial_c");
                Optional(Peepholes, () => Random("P", [d, 3 * Hidden], seed + 7), "P");
            }
            while (names.Count > 0 && names[^1] == "") names.RemoveAt(names.Count - 1);
            return ([.. inputs], [.. names]);
        }
    }

    // ---- forward equivalence: the decomposition against ORT's kernel

    /// <summary>
    /// Builds a model with the recurrent node and, beside it, the nodes its decomposition emits; runs it once and
    /// compares each output of the node with the decomposition's value (float32, 1e-5). ORT's CPU kernels refuse
    /// layout 1, so for layout 1 the kernel runs at layout 0 between transposes of X, the initial states and the outputs.
    /// </summary>
    private static void AssertDecompositionMatchesKernel(Config config, bool[]? outputs = null)
    {
        outputs ??= Enumerable.Repeat(true, config.Outputs).ToArray();
        var (inputs, nodeInputs) = config.Inputs();
        var g = new GraphProto { Name = "recurrent" };
        foreach (var i in inputs) g.Initializer.Add(i.Ints ?? Tensors.Create(i.Name, i.Values.Select(v => (float)v).ToArray(), i.Shape));
        var b = new GraphBuilder(g);
        var outputNames = outputs.Select((used, k) => used ? $"y{k}" : "").ToArray();
        while (outputNames[^1] == "") outputNames = outputNames[..^1];

        var kernelInputs = nodeInputs.Select((name, k) => config.Layout == 1 && name.Length > 0 && k is 0 or 5 or 6
            ? b.Add("Transpose", [name], $"{name}_layout0", NodeRuleContext.Attr("perm", new long[] { 1, 0, 2 })) : name).ToArray();
        var kernelOutputs = outputNames.Select(o => o.Length > 0 ? (config.Layout == 1 ? o + "_layout0" : o + "_kernel") : "").ToArray();
        var kernel = new NodeProto { OpType = config.Op, Name = config.Op + "_kernel", Input = { kernelInputs }, Output = { kernelOutputs } };
        kernel.Attribute.AddRange(config.Attributes().Where(a => a.Name != "layout"));
        g.Node.Add(kernel);
        var expected = kernelOutputs.Select((o, k) => o.Length == 0 || config.Layout == 0 ? o
            : b.Add("Transpose", [o], $"y{k}_kernel", NodeRuleContext.Attr("perm", k == 0 ? new long[] { 2, 0, 1, 3 } : [1, 0, 2]))).ToArray();
        var model = new ModelProto { IrVersion = 9, Graph = g };
        model.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        var types = ShapeInference.Infer(model);

        var node = new NodeProto { OpType = config.Op, Name = config.Op, Input = { nodeInputs }, Output = { outputNames } };
        node.Attribute.AddRange(config.Attributes());
        var context = new DecompositionContext(b, node, 17, types, _ => null);
        Decompose(config.Op)(context);
        Assert.Equal(outputNames.Select((o, k) => (o, k)).Where(p => p.o.Length > 0).Select(p => p.k), context.Outputs.Keys.Order());
        var compared = context.Outputs.OrderBy(p => p.Key).Select(p => (Kernel: expected[p.Key], Decomposed: p.Value)).ToList();
        foreach (var (kernelValue, decomposed) in compared)
        {
            g.Output.Add(new ValueInfoProto { Name = kernelValue });
            g.Output.Add(new ValueInfoProto { Name = decomposed });
        }

        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL, GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
        using var session = new InferenceSession(model.ToByteArray(), options);
        var names = compared.SelectMany(p => new[] { p.Kernel, p.Decomposed }).ToArray();
        using var results = session.Run(new RunOptions(), [], [], names);
        for (int k = 0; k < compared.Count; k++)
        {
            var e = results[2 * k].GetTensorDataAsSpan<float>().ToArray();
            var a = results[2 * k + 1].GetTensorDataAsSpan<float>().ToArray();
            Assert.Equal(results[2 * k].GetTensorTypeAndShape().Shape, results[2 * k + 1].GetTensorTypeAndShape().Shape);
            for (int j = 0; j < e.Length; j++)
                Assert.True(Math.Abs(e[j] - a[j]) <= 1e-5 + 1e-5 * Math.Abs(e[j]),
                    $"{config}: output {compared[k].Kernel}[{j}]: kernel {e[j]:R}, decomposition {a[j]:R}");
        }
    }

    private static Decomposition Decompose(string op) => GradientRules.Find(op)!.Decompose!;

    public static TheoryData<string> Ops => new() { "LSTM", "GRU", "RNN" };

    [Theory]
    [MemberData(nameof(Ops))]
    public void DirectionsAndLayoutsMatchTheKernel(string op)
    {
        foreach (var direction in new[] { "forward", "reverse", "bidirectional" })
            foreach (var layout in new[] { 0, 1 })
            {
                AssertDecompositionMatchesKernel(new Config(op, direction, layout));
                AssertDecompositionMatchesKernel(new Config(op, direction, layout, Bias: false, InitialH: true, InitialC: true, Seed: 2));
            }
    }

    [Theory]
    [MemberData(nameof(Ops))]
    public void SequenceLengthsMatchTheKernel(string op)
    {
        foreach (var direction in new[] { "forward", "reverse", "bidirectional" })
            foreach (var layout in new[] { 0, 1 })
                AssertDecompositionMatchesKernel(new Config(op, direction, layout, Lens: [2, 3], InitialH: true, InitialC: true, Seed: 3));
        AssertDecompositionMatchesKernel(new Config(op, "bidirectional", Lens: [1, 2], Seed: 4));
    }

    [Theory]
    [MemberData(nameof(Ops))]
    public void ClipMatchesTheKernel(string op) =>
        AssertDecompositionMatchesKernel(new Config(op, "bidirectional", Clip: 0.4f, InitialH: true, Seed: 5));

    [Theory]
    [MemberData(nameof(Ops))]
    public void EachOutputAloneMatchesTheKernel(string op)
    {
        int n = op == "LSTM" ? 3 : 2;
        for (int k = 0; k < n; k++)
            AssertDecompositionMatchesKernel(new Config(op, "bidirectional", Seed: 6), Enumerable.Range(0, n).Select(j => j == k).ToArray());
    }

    [Fact]
    public void LstmPeepholesAndInputForgetMatchTheKernel()
    {
        AssertDecompositionMatchesKernel(new Config("LSTM", "bidirectional", Peepholes: true, InitialH: true, InitialC: true, Seed: 7));
        AssertDecompositionMatchesKernel(new Config("LSTM", "forward", InputForget: true, InitialC: true, Seed: 8));
        AssertDecompositionMatchesKernel(new Config("LSTM", "reverse", Peepholes: true, InputForget: true, Clip: 0.5f, Lens: [3, 1], Seed: 9));
    }

    [Fact]
    public void GruLinearBeforeResetMatchesTheKernel()
    {
        AssertDecompositionMatchesKernel(new Config("GRU", "bidirectional", LinearBeforeReset: true, InitialH: true, Seed: 10));
        AssertDecompositionMatchesKernel(new Config("GRU", "forward", LinearBeforeReset: true, Bias: false, Lens: [2, 3], Seed: 11));
    }

    /// <summary>Every activation ONNX lists, with alpha and beta consumed in order by those that take them.</summary>
    [Fact]
    public void ActivationListsMatchTheKernel()
    {
        AssertDecompositionMatchesKernel(new Config("LSTM", "bidirectional", Activations: ["HardSigmoid", "Elu", "Softsign", "sigmoid", "ScaledTanh", "Affine"],
            Alphas: [0.3f, 0.8f, 0.9f, 0.7f], Betas: [0.4f, 1.2f, 0.1f], InitialH: true, InitialC: true, Seed: 12));
        AssertDecompositionMatchesKernel(new Config("LSTM", "forward", Activations: ["Sigmoid", "LeakyRelu", "Softplus"], Alphas: [0.2f], Seed: 13));
        AssertDecompositionMatchesKernel(new Config("GRU", "bidirectional", Activations: ["Sigmoid", "Relu", "HardSigmoid", "ThresholdedRelu"],
            Alphas: [0.25f, 0.1f], Betas: [0.45f], Seed: 14));
        AssertDecompositionMatchesKernel(new Config("RNN", "bidirectional", Activations: ["Softsign", "Elu"], Seed: 15));
        // Defaults where the lists run out: LeakyRelu 0.01, HardSigmoid 0.2/0.5, Elu 1.
        AssertDecompositionMatchesKernel(new Config("GRU", "forward", Activations: ["HardSigmoid", "LeakyRelu"], Seed: 16));
        AssertDecompositionMatchesKernel(new Config("RNN", "forward", Activations: ["ThresholdedRelu"], Alphas: [0.1f], Seed: 17));
    }

    // ---- gradients: the decomposition differentiated by the driver, against finite differences of the kernel

    /// <summary>Checks every float input's gradient; <paramref name="lossOutputs"/> picks the outputs in the loss (default all).</summary>
    private static void CheckGradients(Config config, IReadOnlyList<int>? lossOutputs = null)
    {
        var (inputs, nodeInputs) = config.Inputs();
        Check(config.Op, inputs, config.Attributes(), outputs: config.Outputs, float32: true, lossOutputs: lossOutputs, nodeInputs: nodeInputs);
    }

    [Theory]
    [MemberData(nameof(Ops))]
    public void GradientsOfEveryInputInEachDirection(string op)
    {
        CheckGradients(new Config(op, "forward", InitialH: true, InitialC: true, Peepholes: true, Seed: 21));
        CheckGradients(new Config(op, "reverse", InitialH: true, InitialC: true, Seed: 22));
        CheckGradients(new Config(op, "bidirectional", InitialH: true, InitialC: true, Peepholes: true, Seed: 23));
        CheckGradients(new Config(op, "forward", Bias: false, Seed: 24));
    }

    [Theory]
    [MemberData(nameof(Ops))]
    public void GradientsWithSequenceLengths(string op)
    {
        CheckGradients(new Config(op, "bidirectional", Lens: [2, 3], InitialH: true, InitialC: true, Seed: 25));
        CheckGradients(new Config(op, "reverse", Lens: [3, 1], Seed: 26));
    }

    /// <summary>
    /// clip = 1.5 with inputs that keep every pre-activation away from ±1.5, so that finite differences never straddle
    /// a clip: |x|, |h| ≤ 1 and |W|, |R| ≤ 0.15 bound x·Wᵀ + h·Rᵀ by 0.75; a third of the units get biases of ±3 (always
    /// clipped: |pre| ≥ 2.25, gradient 0), the others biases within ±0.2 (never clipped: |pre| ≤ 0.95).
    /// </summary>
    [Theory]
    [MemberData(nameof(Ops))]
    public void GradientsWithClip(string op)
    {
        var config = new Config(op, "bidirectional", Clip: 1.5f, InitialH: true, Seed: 27);
        var (inputs, nodeInputs) = config.Inputs();
        int units = config.Gates * Hidden;
        inputs = inputs.Select(i => i.Name switch
        {
            "W" or "R" => i with { Values = i.Values.Select(v => v * 0.15).ToArray() },
            "B" => i with { Values = i.Values.Select((v, j) => (j % units) % 3 == 0 ? ((j % units) / 3 % 2 == 0 ? 1.5 : -1.5) : v * 0.2).ToArray() },
            _ => i,
        }).ToArray();
        Check(op, inputs, config.Attributes(), outputs: config.Outputs, float32: true, nodeInputs: nodeInputs);
    }

    [Theory]
    [MemberData(nameof(Ops))]
    public void GradientsOfEachOutputAlone(string op)
    {
        var config = new Config(op, "bidirectional", InitialH: true, InitialC: true, Seed: 28);
        for (int k = 0; k < config.Outputs; k++) CheckGradients(config, [k]);
    }

    [Fact]
    public void GradientsWithInputForgetAndLinearBeforeReset()
    {
        CheckGradients(new Config("LSTM", "bidirectional", InputForget: true, Peepholes: true, InitialC: true, Seed: 29));
        CheckGradients(new Config("GRU", "bidirectional", LinearBeforeReset: true, InitialH: true, Seed: 30));
        CheckGradients(new Config("GRU", "reverse", LinearBeforeReset: true, Lens: [1, 3], Seed: 31));
    }

    [Fact]
    public void GradientsWithActivationLists()
    {
        CheckGradients(new Config("LSTM", "bidirectional", Activations: ["HardSigmoid", "Softsign", "ScaledTanh", "Sigmoid", "Affine", "Elu"],
            Alphas: [0.3f, 0.9f, 0.7f, 0.8f], Betas: [0.4f, 1.2f, 0.1f], InitialH: true, Seed: 32));
        CheckGradients(new Config("GRU", "forward", Activations: ["Sigmoid", "Softplus"], InitialH: true, Seed: 33));
        CheckGradients(new Config("RNN", "bidirectional", Activations: ["LeakyRelu", "Softsign"], Alphas: [0.2f], Seed: 34));
    }

    // ---- whole models

    /// <summary>
    /// Two stacked LSTMs over X [batch, 3, 3] (batch symbolic), the second reading the first's Y through a Reshape
    /// whose shape is computed from Shape(Y), as PyTorch's dynamo export writes it. ORT's inference leaves that
    /// Reshape's output shape unknown; the partial evaluation of the shape tensor recovers the sequence length, so the
    /// second LSTM can be unrolled too.
    /// </summary>
    private static ModelProto StackedLstm(bool staticSequence)
    {
        var g = new GraphProto { Name = "stacked" };
        var dims = new TensorShapeProto();
        dims.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = "batch" });
        dims.Dim.Add(staticSequence ? new TensorShapeProto.Types.Dimension { DimValue = T } : new TensorShapeProto.Types.Dimension { DimParam = "time" });
        dims.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = InputSize });
        g.Input.Add(new ValueInfoProto { Name = "x", Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)DataType.Float, Shape = dims } } });
        var rng = new SplitMix64(5);
        float[] Values(long n) => Enumerable.Range(0, (int)n).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
        foreach (var (name, shape) in new (string, long[])[] { ("W1", [1, 4 * Hidden, InputSize]), ("R1", [1, 4 * Hidden, Hidden]), ("W2", [1, 4 * Hidden, Hidden]), ("R2", [1, 4 * Hidden, Hidden]) })
            g.Initializer.Add(Tensors.Create(name, Values(shape.Aggregate(1L, (a, b) => a * b)), shape));
        g.Initializer.Add(Tensors.Create("one", new long[] { 1 }, 1));
        g.Initializer.Add(Tensors.Create("two", new long[] { 2 }, 1));
        g.Initializer.Add(Tensors.Create("zero", new long[] { 0 }, 1));
        g.Initializer.Add(Tensors.Create("four", new long[] { 4 }, 1));
        var b = new GraphBuilder(g);
        var hidden = NodeRuleContext.Attr("hidden_size", (long)Hidden);
        var xt = b.Add("Transpose", ["x"], "xt", NodeRuleContext.Attr("perm", new long[] { 1, 0, 2 }));
        var y1 = b.Add("LSTM", [xt, "W1", "R1"], ["y1"], hidden)[0];
        var shape1 = b.Add("Shape", [y1], "shape1");
        var time = b.Add("Slice", [shape1, "zero", "one"], "time");
        var batch = b.Add("Slice", [shape1, "two", "four"], "batchdims");
        var features = b.Add("Mul", [b.Add("Slice", [shape1, "one", "two"], "dirs"), b.Add("Slice", [batch, "one", "two"], "h")], "features");
        var target = b.Add("Concat", [time, b.Add("Slice", [batch, "zero", "one"], "b"), features], "target_shape", NodeRuleContext.Attr("axis", 0L));
        var x2 = b.Add("Reshape", [y1, target], "x2");
        var outs = b.Add("LSTM", [x2, "W2", "R2"], ["y2", "h2"], hidden);
        var hShape = new TensorShapeProto();
        hShape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = 1 });
        hShape.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = "batch" });
        hShape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = Hidden });
        g.Output.Add(new ValueInfoProto { Name = outs[1], Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)DataType.Float, Shape = hShape } } });
        var m = new ModelProto { IrVersion = 9, Graph = g };
        m.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        return m;
    }

    [Fact]
    public void StackedLayersThroughAComputedReshapeBuild()
    {
        var model = StackedLstm(staticSequence: true);
        var x2 = ShapeInference.Infer(model)["x2"];
        Assert.Equal([T, null, Hidden], x2.Dims!);
        Assert.Equal("batch", x2.Symbol(1));
        var training = GradientGraphBuilder.Build(model, new BuildTrainingOptions { Loss = LossKind.Mse, Output = "h2" });
        Assert.Equal(["loss", "h2", "W1_grad", "R1_grad", "W2_grad", "R2_grad"], training.Graph.Output.Select(o => o.Name));
        Assert.Equal(2, training.Graph.Node.Count(n => n.OpType == "LSTM"));
    }

    /// <summary>tf2onnx's zero initial state: Expand(0, Cast(Concat(Slice(Cast(Shape(x), int32)), [H]), int64)) keeps x's batch symbol.</summary>
    [Fact]
    public void AZeroStateExpandedFromAComputedShapeKeepsItsBatchSymbol()
    {
        var model = StackedLstm(staticSequence: true);
        var g = model.Graph;
        g.Initializer.Add(Tensors.Create("hidden32", new[] { Hidden }, 1));
        g.Initializer.Add(Tensors.Create("zero_f", new[] { 0f }));
        var b = new GraphBuilder(g);
        var shape32 = b.Add("Cast", [b.Add("Shape", ["x"], "xshape")], "xshape32", NodeRuleContext.Attr("to", (long)DataType.Int32));
        var packed = b.Add("Concat", [b.Add("Slice", [shape32, "zero", "one", "zero"], "batch32"), "hidden32"], "packed", NodeRuleContext.Attr("axis", 0L));
        b.Add("Expand", ["zero_f", b.Add("Cast", [packed], "packed64", NodeRuleContext.Attr("to", (long)DataType.Int64))], "zeros");
        var zeros = ShapeInference.Infer(model)["zeros"];
        Assert.Equal([null, Hidden], zeros.Dims!);
        Assert.Equal("batch", zeros.Symbol(0));
    }

    [Fact]
    public void ADynamicSequenceLengthIsRefusedWithTheWayOut()
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() =>
            GradientGraphBuilder.Build(StackedLstm(staticSequence: false), new BuildTrainingOptions { Loss = LossKind.Mse, Output = "h2" }));
        Assert.Contains("LSTM", e.Message);
        Assert.Contains("sequence length", e.Message);
        Assert.Contains("--input-shape", e.Message);
    }

    /// <summary>The decomposition of <paramref name="config"/>'s node run alone (ORT never sees the node), expected to fail.</summary>
    private static string DecompositionFails(Config config, params AttributeProto[] extra)
    {
        var (inputs, nodeInputs) = config.Inputs();
        var g = new GraphProto { Name = "alone" };
        foreach (var i in inputs) g.Initializer.Add(i.Ints ?? Tensors.Create(i.Name, i.Values.Select(v => (float)v).ToArray(), i.Shape));
        g.Output.Add(new ValueInfoProto { Name = "X" });
        var model = new ModelProto { IrVersion = 9, Graph = g };
        model.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        var node = new NodeProto { OpType = config.Op, Name = "rnn", Input = { nodeInputs }, Output = { "y" } };
        node.Attribute.AddRange(config.Attributes().Where(a => extra.All(e => e.Name != a.Name)).Concat(extra));
        var context = new DecompositionContext(new GraphBuilder(g), node, 17, ShapeInference.Infer(model), _ => null);
        return Assert.Throws<OnnxAdadeltaException>(() => Decompose(config.Op)(context)).Message;
    }

    [Fact]
    public void BadAttributesAreRefusedByName()
    {
        Assert.Contains("activations", DecompositionFails(new Config("LSTM", "bidirectional", Activations: ["Sigmoid", "Tanh", "Tanh"])));
        Assert.Contains("'Gelu'", DecompositionFails(new Config("GRU", Activations: ["Sigmoid", "Gelu"])));
        Assert.Contains("direction='sideways'", DecompositionFails(new Config("RNN"), NodeRuleContext.Attr("direction", "sideways")));
        Assert.Contains("clip", DecompositionFails(new Config("RNN", Clip: -1f)));
        Assert.Contains("'linear_before_reset'", DecompositionFails(new Config("LSTM"), NodeRuleContext.Attr("linear_before_reset", 1L)));
        Assert.Contains("hidden_size=3", DecompositionFails(new Config("GRU"), NodeRuleContext.Attr("hidden_size", 3L)));
    }
}
