using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Training;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Graphs;

/// <summary>
/// <see cref="OpsetUpgrade"/>: each converted op at its old opset and after the upgrade gives the same ONNX Runtime
/// outputs on random inputs; ops that cannot be converted are listed with their counts; the old corpus models upgrade
/// and build a training graph.
/// </summary>
public class OpsetUpgradeTests
{
    private static AttributeProto Ints(string name, params long[] v) => GraphBuilder.Attr(name, v);
    private static AttributeProto Int(string name, long v) => GraphBuilder.Attr(name, v);
    private static AttributeProto Float(string name, float v) => GraphBuilder.Attr(name, v);
    private static AttributeProto Floats(string name, params float[] v)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Floats };
        a.Floats.AddRange(v);
        return a;
    }
    private static AttributeProto Str(string name, string v) => GraphBuilder.Attr(name, v);

    /// <summary>A one-node model at <paramref name="opset"/>: float inputs with static shapes, outputs of unknown shape.</summary>
    private static ModelProto OneNode(int opset, string op, (string Name, long[] Shape)[] inputs, string[] outputs,
        AttributeProto[]? attributes = null, TensorProto[]? initializers = null, string[]? nodeInputs = null)
    {
        var g = new GraphProto { Name = op.ToLowerInvariant() };
        foreach (var (name, shape) in inputs) g.Input.Add(TypeProtos.ValueInfo(name, DataType.Float, shape));
        foreach (var o in outputs) g.Output.Add(new ValueInfoProto { Name = o });
        if (initializers is not null) g.Initializer.AddRange(initializers);
        var node = new NodeProto { OpType = op, Name = "node", Output = { outputs } };
        node.Input.AddRange(nodeInputs ?? inputs.Select(i => i.Name).Concat(initializers?.Select(t => t.Name) ?? []));
        if (attributes is not null) node.Attribute.AddRange(attributes);
        g.Node.Add(node);
        return Wrap(g, opset);
    }

    private static ModelProto Wrap(GraphProto g, int opset) => new()
    {
        IrVersion = 7,
        ProducerName = "OnnxAdadelta.Tests",
        OpsetImport = { new OperatorSetIdProto { Domain = "", Version = opset } },
        Graph = g,
    };

    private static float[] Random(long[] shape, int seed)
    {
        var rng = new SplitMix64((ulong)seed * 7919UL + 3);
        var n = (int)shape.Aggregate(1L, (a, b) => a * b);
        return Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
    }

    /// <summary>Runs the model on the given float inputs; every output as doubles (floats, int64 and bools converted).</summary>
    private static List<double[]> Run(ModelProto model, Dictionary<string, (float[] Values, long[] Shape)> feeds)
    {
        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        using var session = new InferenceSession(model.ToByteArray(), options);
        var names = session.InputMetadata.Keys.ToArray();
        var values = names.Select(n => OrtValue.CreateTensorValueFromMemory(feeds[n].Values, feeds[n].Shape)).ToList();
        try
        {
            var outputs = model.Graph.Output.Select(o => o.Name).ToArray();
            using var results = session.Run(new RunOptions(), names, values, outputs);
            return results.Select(r => r.GetTensorTypeAndShape().ElementDataType switch
            {
                TensorElementType.Float => r.GetTensorDataAsSpan<float>().ToArray().Select(v => (double)v).ToArray(),
                TensorElementType.Double => r.GetTensorDataAsSpan<double>().ToArray(),
                TensorElementType.Int64 => r.GetTensorDataAsSpan<long>().ToArray().Select(v => (double)v).ToArray(),
                TensorElementType.Bool => r.GetTensorDataAsSpan<bool>().ToArray().Select(v => v ? 1.0 : 0.0).ToArray(),
                var t => throw new InvalidOperationException($"output type {t}"),
            }).ToList();
        }
        finally { foreach (var v in values) v.Dispose(); }
    }

    /// <summary>Upgrades <paramref name="old"/>; asserts opset 13, the same outputs on random inputs, and returns the upgraded model.</summary>
    private static ModelProto AssertSameOutputs(ModelProto old, int seed = 1)
    {
        var upgraded = OpsetUpgrade.Apply(old);
        Assert.Equal(OpsetUpgrade.Target, upgraded.OpsetImport.Single(o => o.Domain == "").Version);
        var inits = old.Graph.Initializer.Select(t => t.Name).ToHashSet();
        var feeds = old.Graph.Input.Where(i => !inits.Contains(i.Name)).Select((i, k) =>
        {
            var shape = i.Type.Dims()!.Select(d => (long)d!).ToArray();
            return (i.Name, Values: Random(shape, seed * 31 + k), Shape: shape);
        }).ToDictionary(f => f.Name, f => (f.Values, f.Shape));
        var expected = Run(old, feeds);
        var actual = Run(upgraded, feeds);
        Assert.Equal(expected.Count, actual.Count);
        for (int k = 0; k < expected.Count; k++)
        {
            Assert.Equal(expected[k].Length, actual[k].Length);
            for (int i = 0; i < expected[k].Length; i++)
                Assert.True(Math.Abs(expected[k][i] - actual[k][i]) <= 1e-5 + 1e-5 * Math.Abs(expected[k][i]),
                    $"output {k}[{i}]: {expected[k][i]} before, {actual[k][i]} after the upgrade");
        }
        return upgraded;
    }

    private static void AssertNoAttribute(ModelProto m, string op, string attribute) =>
        Assert.DoesNotContain(m.Graph.Node.Where(n => n.OpType == op).SelectMany(n => n.Attribute), a => a.Name == attribute);

    [Theory]
    [InlineData("Squeeze", 11)]
    [InlineData("Squeeze", 7)]
    [InlineData("Unsqueeze", 11)]
    [InlineData("ReduceSum", 12)]
    public void AxesAttributesBecomeInputs(string op, int opset)
    {
        var attrs = op switch
        {
            "Squeeze" => new[] { Ints("axes", 1) },
            "Unsqueeze" => [Ints("axes", 0, 3)],
            _ => [Ints("axes", 1), Int("keepdims", 0)],
        };
        var m = AssertSameOutputs(OneNode(opset, op, [("x", [2, 1, 3])], ["y"], attrs));
        AssertNoAttribute(m, op, "axes");
        Assert.Equal(2, m.Graph.Node.Single(n => n.OpType == op).Input.Count);
    }

    [Fact]
    public void ReduceSumWithoutAxesStillReducesEverything() =>
        AssertSameOutputs(OneNode(11, "ReduceSum", [("x", [2, 3])], ["y"]));

    [Fact]
    public void SplitSizesBecomeAnInput()
    {
        var m = AssertSameOutputs(OneNode(11, "Split", [("x", [2, 3, 2])], ["a", "b"], [Int("axis", 1), Ints("split", 1, 2)]));
        AssertNoAttribute(m, "Split", "split");
        AssertSameOutputs(OneNode(8, "Split", [("x", [2, 4])], ["a", "b"], [Int("axis", 1)]));
    }

    [Theory]
    [InlineData(7, true, true)]
    [InlineData(10, false, true)]
    [InlineData(10, true, false)]
    public void ClipBoundsBecomeInputs(int opset, bool min, bool max)
    {
        var attrs = new List<AttributeProto>();
        if (min) attrs.Add(Float("min", -0.4f));
        if (max) attrs.Add(Float("max", 0.3f));
        var m = AssertSameOutputs(OneNode(opset, "Clip", [("x", [3, 4])], ["y"], [.. attrs]));
        AssertNoAttribute(m, "Clip", "min");
        AssertNoAttribute(m, "Clip", "max");
    }

    [Theory]
    [InlineData("constant", 1.5f)]
    [InlineData("constant", 0f)]
    [InlineData("reflect", 0f)]
    [InlineData("edge", 0f)]
    public void PadPadsAndValueBecomeInputs(string mode, float value)
    {
        var attrs = new List<AttributeProto> { Str("mode", mode), Ints("pads", 0, 1, 1, 0, 2, 1) };
        if (value != 0) attrs.Add(Float("value", value));
        var m = AssertSameOutputs(OneNode(10, "Pad", [("x", [2, 3, 4])], ["y"], [.. attrs]));
        AssertNoAttribute(m, "Pad", "pads");
    }

    [Fact]
    public void SliceAttributesBecomeInputs()
    {
        var m = AssertSameOutputs(OneNode(9, "Slice", [("x", [4, 5, 3])], ["y"], [Ints("starts", 1, -4), Ints("ends", 3, 1000), Ints("axes", 0, 1)]));
        AssertNoAttribute(m, "Slice", "starts");
        AssertSameOutputs(OneNode(7, "Slice", [("x", [4, 5])], ["y"], [Ints("starts", 1, 0), Ints("ends", -1, 2)]));
    }

    [Theory]
    [InlineData(7)]
    [InlineData(10)]
    [InlineData(11)]
    public void DropoutRatioBecomesAnInputAndAnUsedMaskIsRefused(int opset)
    {
        var m = AssertSameOutputs(OneNode(opset, "Dropout", [("x", [3, 4])], ["y"], [Float("ratio", 0.3f)]));
        AssertNoAttribute(m, "Dropout", "ratio");
        Assert.Equal(2, m.Graph.Node.Single(n => n.OpType == "Dropout").Input.Count);
        var withMask = OneNode(opset, "Dropout", [("x", [3, 4])], ["y", "mask"], [Float("ratio", 0.3f)]);
        var e = Assert.Throws<OnnxAdadeltaException>(() => OpsetUpgrade.Apply(withMask));
        Assert.Contains("Dropout (its mask output is used", e.Message);
        withMask.Graph.Output.RemoveAt(1);
        Assert.Single(OpsetUpgrade.Apply(withMask).Graph.Node.Single(n => n.OpType == "Dropout").Output);
    }

    [Fact]
    public void TopKAttributeBecomesAnInput()
    {
        var m = AssertSameOutputs(OneNode(9, "TopK", [("x", [3, 5])], ["values", "indices"], [Int("k", 2), Int("axis", 1)]));
        AssertNoAttribute(m, "TopK", "k");
    }

    [Theory]
    [InlineData(7, "nearest")]
    [InlineData(7, "linear")]
    [InlineData(8, "nearest")]
    public void UpsampleWithScalesAttributeBecomesResize(int opset, string mode)
    {
        var m = AssertSameOutputs(OneNode(opset, "Upsample", [("x", [1, 2, 3, 4])], ["y"], [Str("mode", mode), Floats("scales", 1, 1, 2, 3)]));
        Assert.Equal("Resize", m.Graph.Node.Single(n => n.OpType != "Constant").OpType);
    }

    [Theory]
    [InlineData(9, "Upsample", "nearest")]
    [InlineData(9, "Upsample", "linear")]
    [InlineData(10, "Resize", "nearest")]
    [InlineData(10, "Resize", "linear")]
    public void UpsampleAndResize10WithScalesInputBecomeAsymmetricResize(int opset, string op, string mode)
    {
        var scales = Tensors.Create("scales", new float[] { 1, 1, 2, 2 }, 4);
        var m = AssertSameOutputs(OneNode(opset, op, [("x", [1, 2, 3, 4])], ["y"], [Str("mode", mode)], [scales]));
        var resize = m.Graph.Node.Single(n => n.OpType == "Resize");
        Assert.Equal(["x", "", "scales"], resize.Input);
        Assert.Contains(resize.Attribute, a => a.Name == "coordinate_transformation_mode" && a.S.ToStringUtf8() == "asymmetric");
    }

    [Fact]
    public void Resize10DownsamplingKeepsItsOutputs()
    {
        var scales = Tensors.Create("scales", new float[] { 1, 1, 0.6f, 0.75f }, 4);
        AssertSameOutputs(OneNode(10, "Resize", [("x", [1, 2, 5, 8])], ["y"], [Str("mode", "nearest")], [scales]));
        AssertSameOutputs(OneNode(10, "Resize", [("x", [1, 2, 5, 8])], ["y"], [Str("mode", "linear")], [scales]));
        // Scales from a Constant node are read too.
        var fromConstant = OneNode(10, "Resize", [("x", [1, 2, 5, 8])], ["y"], [Str("mode", "nearest")], nodeInputs: ["x", "s"]);
        fromConstant.Graph.Node.Insert(0, new NodeProto
        {
            OpType = "Constant", Name = "s_const", Output = { "s" },
            Attribute = { new AttributeProto { Name = "value", Type = AttributeProto.Types.AttributeType.Tensor, T = Tensors.Create("", new float[] { 1, 1, 0.6f, 0.75f }, 4) } },
        });
        var upgraded = AssertSameOutputs(fromConstant);
        Assert.Equal("ceil", upgraded.Graph.Node.Single(n => n.OpType == "Resize").Attribute.Single(a => a.Name == "nearest_mode").S.ToStringUtf8());
        var mixed = Tensors.Create("scales", new float[] { 1, 1, 0.6f, 1.5f }, 4);
        var e = Assert.Throws<OnnxAdadeltaException>(() => OpsetUpgrade.Apply(OneNode(10, "Resize", [("x", [1, 2, 5, 8])], ["y"], [Str("mode", "nearest")], [mixed])));
        Assert.Contains("Resize (opset 10, nearest, shrinking some axes and enlarging others) ×1", e.Message);
    }

    /// <summary>Ops whose old versions mean what their opset-13 versions mean: left as they are, with the same outputs.</summary>
    public static TheoryData<string, int> UnchangedOps => new()
    {
        { "Gemm", 7 }, { "MaxPool", 8 }, { "AveragePool", 7 }, { "Conv", 7 }, { "Flatten", 9 }, { "Gather", 7 }, { "Concat", 7 },
        { "Cast", 7 }, { "LeakyRelu", 7 }, { "ArgMax", 11 }, { "ConvTranspose", 9 }, { "Transpose", 7 },
    };

    [Theory]
    [MemberData(nameof(UnchangedOps))]
    public void OpsThatDidNotChangeAreKept(string op, int opset)
    {
        var (inputs, attrs, inits, outputs) = op switch
        {
            "Gemm" => (new (string, long[])[] { ("a", [3, 4]), ("b", [5, 4]) }, new[] { Int("transB", 1), Float("alpha", 0.5f) },
                new[] { Tensors.Create("c", Random([5], 3), 5) }, new[] { "y" }),
            "MaxPool" => ([("x", [1, 2, 5, 5])], [Ints("kernel_shape", 2, 2), Ints("strides", 2, 2), Ints("pads", 1, 1, 0, 0)], [], ["y", "indices"]),
            "AveragePool" => ([("x", [1, 2, 5, 5])], [Ints("kernel_shape", 3, 3), Ints("pads", 1, 1, 1, 1), Int("count_include_pad", 1)], [], ["y"]),
            "Conv" => ([("x", [1, 2, 5, 5])], [Ints("kernel_shape", 3, 3), Str("auto_pad", "SAME_UPPER")],
                [Tensors.Create("w", Random([3, 2, 3, 3], 4), 3, 2, 3, 3)], ["y"]),
            "ConvTranspose" => ([("x", [1, 2, 3, 3])], [Ints("strides", 2, 2), Ints("output_padding", 1, 1)],
                [Tensors.Create("w", Random([2, 3, 3, 3], 5), 2, 3, 3, 3)], ["y"]),
            "Flatten" => ([("x", [2, 3, 4])], [Int("axis", 2)], [], ["y"]),
            "Gather" => ([("x", [4, 3])], [Int("axis", 0)], [Tensors.Create("i", new long[] { 3, 0, 2 }, 3)], ["y"]),
            "Concat" => ([("x", [2, 3]), ("z", [2, 1])], [Int("axis", 1)], [], ["y"]),
            "Cast" => ([("x", [2, 3])], [Int("to", (long)DataType.Int64)], [], ["y"]),
            "LeakyRelu" => ([("x", [2, 3])], [Float("alpha", 0.2f)], [], ["y"]),
            "ArgMax" => ([("x", [2, 3])], [Int("axis", -1)], [], ["y"]),
            _ => ([("x", [2, 3, 4])], [Ints("perm", 2, 0, 1)], Array.Empty<TensorProto>(), new[] { "y" }),
        };
        var old = OneNode(opset, op, inputs, outputs, attrs, inits);
        var m = AssertSameOutputs(old);
        Assert.Equal(old.Graph.Node, m.Graph.Node);
    }

    [Theory]
    [InlineData("Softmax", null)]
    [InlineData("Softmax", 0L)]
    [InlineData("LogSoftmax", 1L)]
    [InlineData("Hardmax", 1L)]
    [InlineData("Softmax", 2L)]
    [InlineData("LogSoftmax", -1L)]
    public void SoftmaxFamilyKeepsTheCoercionTo2D(string op, long? axis)
    {
        var attrs = axis is { } a ? new[] { Int("axis", a) } : [];
        var m = AssertSameOutputs(OneNode(11, op, [("x", [2, 3, 4])], ["y"], attrs));
        bool lastAxis = axis is 2 or -1;
        Assert.Equal(lastAxis ? 1 : 4, m.Graph.Node.Count);
    }

    [Fact]
    public void SoftmaxOverTheLastDeclaredAxisStaysOneNode()
    {
        var m = AssertSameOutputs(OneNode(8, "Softmax", [("x", [2, 5])], ["y"]));
        Assert.Equal(-1, m.Graph.Node.Single().Attribute.Single(a => a.Name == "axis").I);
    }

    [Theory]
    [InlineData(7, 1L)]
    [InlineData(7, null)]
    [InlineData(8, 0L)]
    public void BatchNormalizationSpatialIsRemovedOrRewritten(int opset, long? spatial)
    {
        long[] param = spatial == 0 ? [3, 2, 2] : [3];
        var attrs = new List<AttributeProto> { Float("epsilon", 1e-3f) };
        if (spatial is { } s) attrs.Add(Int("spatial", s));
        var inits = new[]
        {
            Tensors.Create("scale", Random(param, 5), param), Tensors.Create("B", Random(param, 6), param),
            Tensors.Create("mean", Random(param, 7), param), Tensors.Create("var", Random(param, 8).Select(v => v + 1.5f).ToArray(), param),
        };
        var m = AssertSameOutputs(OneNode(opset, "BatchNormalization", [("x", [2, 3, 2, 2])], ["y"], [.. attrs], inits));
        AssertNoAttribute(m, "BatchNormalization", "spatial");
        Assert.Equal(spatial == 0, !m.Graph.Node.Any(n => n.OpType == "BatchNormalization"));
    }

    [Fact]
    public void BatchNormalizationTrainingOutputsAreDroppedWhenUnreadAndRefusedWhenRead()
    {
        long[] param = [3];
        var inits = new[]
        {
            Tensors.Create("scale", Random(param, 5), param), Tensors.Create("B", Random(param, 6), param),
            Tensors.Create("mean", Random(param, 7), param), Tensors.Create("var", Random(param, 8).Select(v => v + 1.5f).ToArray(), param),
        };
        // Opset 9 inference models often keep BatchNormalization's five outputs; opset 14 allows at most three.
        var five = OneNode(9, "BatchNormalization", [("x", [2, 3, 2, 2])], ["y"], [Float("epsilon", 1e-3f)], inits);
        five.Graph.Node[0].Output.AddRange(["m", "v", "sm", "sv"]);
        var upgraded = OpsetUpgrade.Apply(five);
        Assert.Equal(["y"], upgraded.Graph.Node.Single(n => n.OpType == "BatchNormalization").Output);
        five.Graph.Output.Add(new ValueInfoProto { Name = "m" });
        Assert.Contains("BatchNormalization (its training outputs mean, var, saved_mean or saved_var are used) ×1",
            Assert.Throws<OnnxAdadeltaException>(() => OpsetUpgrade.Apply(five)).Message);
    }

    [Fact]
    public void ScatterBecomesScatterElements()
    {
        var indices = Tensors.Create("indices", new long[] { 1, 0, 2, 0, 2, 1 }, 2, 3);
        var m = AssertSameOutputs(OneNode(9, "Scatter", [("data", [3, 3]), ("updates", [2, 3])], ["y"], [Int("axis", 0)],
            [indices], ["data", "indices", "updates"]));
        Assert.Equal("ScatterElements", m.Graph.Node.Single().OpType);
    }

    [Theory]
    [InlineData(-5f)]
    [InlineData(5f)]
    public void SubgraphsAreUpgradedToo(float threshold)
    {
        GraphProto Branch(string name, string op, AttributeProto axes)
        {
            var b = new GraphProto { Name = name };
            b.Output.Add(new ValueInfoProto { Name = $"{name}_y" });
            b.Node.Add(new NodeProto { OpType = op, Name = $"{name}_node", Input = { "x" }, Output = { $"{name}_y" }, Attribute = { axes } });
            return b;
        }
        var g = new GraphProto { Name = "if" };
        g.Input.Add(TypeProtos.ValueInfo("x", DataType.Float, [2, 1, 3]));
        g.Input.Add(TypeProtos.ValueInfo("c", DataType.Float, [1]));
        g.Output.Add(new ValueInfoProto { Name = "y" });
        g.Node.Add(new NodeProto { OpType = "Greater", Name = "cmp", Input = { "c", "zero" }, Output = { "cond1" } });
        g.Node.Add(new NodeProto { OpType = "Squeeze", Name = "cond", Input = { "cond1" }, Output = { "cond" }, Attribute = { Ints("axes", 0) } });
        g.Initializer.Add(Tensors.Create("zero", [threshold], 1));
        var then = Branch("then", "ReduceSum", Ints("axes", 1));
        var otherwise = Branch("else", "ReduceSum", Ints("axes", 2));
        g.Node.Add(new NodeProto
        {
            OpType = "If", Name = "if", Input = { "cond" }, Output = { "y" },
            Attribute = { new AttributeProto { Name = "then_branch", Type = AttributeProto.Types.AttributeType.Graph, G = then },
                          new AttributeProto { Name = "else_branch", Type = AttributeProto.Types.AttributeType.Graph, G = otherwise } },
        });
        var m = AssertSameOutputs(Wrap(g, 11), seed: 2);
        foreach (var branch in m.Graph.Node.Single(n => n.OpType == "If").Attribute.Select(a => a.G))
            Assert.Equal(2, branch.Node.Single(n => n.OpType == "ReduceSum").Input.Count);
    }

    [Fact]
    public void OpsThatCannotBeConvertedAreAllListedWithTheirCounts()
    {
        var g = new GraphProto { Name = "bad" };
        g.Input.Add(TypeProtos.ValueInfo("x", DataType.Float, [1, 3, 2, 2]));
        g.Output.Add(new ValueInfoProto { Name = "z" });
        g.Node.Add(new NodeProto { OpType = "ImageScaler", Name = "s1", Input = { "x" }, Output = { "a" } });
        g.Node.Add(new NodeProto { OpType = "ImageScaler", Name = "s2", Input = { "a" }, Output = { "b" } });
        g.Node.Add(new NodeProto { OpType = "Upsample", Name = "u", Input = { "b" }, Output = { "c" }, Attribute = { Str("mode", "bilinear"), Floats("scales", 1, 1, 2, 2) } });
        g.Node.Add(new NodeProto { OpType = "Relu", Name = "r", Input = { "c" }, Output = { "z" } });
        var e = Assert.Throws<OnnxAdadeltaException>(() => OpsetUpgrade.Apply(Wrap(g, 8)));
        Assert.Equal("Cannot upgrade the model from ai.onnx opset 8 to 13: ImageScaler ×2; Upsample (mode 'bilinear') ×1.", e.Message);
    }

    [Fact]
    public void LeftoverAttributesOfOlderVersionsAreDroppedOrRefused()
    {
        // consumed_inputs (opsets 1-5) only hinted at memory reuse; Dropout's is_test=1 is the inference mode.
        var relu = OneNode(7, "Relu", [("x", [2])], ["y"], [Ints("consumed_inputs", 0)]);
        Assert.Empty(OpsetUpgrade.Apply(relu).Graph.Node.Single().Attribute);
        var dropout = OneNode(7, "Dropout", [("x", [2])], ["y"], [Int("is_test", 1)]);
        Assert.DoesNotContain(OpsetUpgrade.Apply(dropout).Graph.Node.Single(n => n.OpType == "Dropout").Attribute, a => a.Name == "is_test");
        var training = OneNode(7, "Dropout", [("x", [2])], ["y"], [Int("is_test", 0)]);
        var e = Assert.Throws<OnnxAdadeltaException>(() => OpsetUpgrade.Apply(training));
        Assert.Contains("Dropout (is_test=0: training-mode dropout of an inference model) ×1", e.Message);
        var unsqueeze = OneNode(11, "Unsqueeze", [("x", [2])], ["y"]);
        Assert.Contains("Unsqueeze (no 'axes' attribute) ×1", Assert.Throws<OnnxAdadeltaException>(() => OpsetUpgrade.Apply(unsqueeze)).Message);
        var scan = OneNode(8, "Scan", [("x", [2])], ["y"]);
        Assert.Contains("Scan (the opset-8 signature", Assert.Throws<OnnxAdadeltaException>(() => OpsetUpgrade.Apply(scan)).Message);
    }

    [Fact]
    public void OpsetsBefore7AreRefusedAndNewerOnesAreLeftAlone()
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() => OpsetUpgrade.Apply(OneNode(6, "Relu", [("x", [2])], ["y"])));
        Assert.Contains("opset 6", e.Message);
        var modern = OneNode(13, "Squeeze", [("x", [2, 1])], ["y"]);
        Assert.Equal(modern, OpsetUpgrade.Apply(modern));
    }

    [Fact]
    public void BuildTrainingUpgradesAnOldModel()
    {
        var w = Tensors.Create("W", Random([3, 4], 9), 3, 4);
        var g = new GraphProto { Name = "old" };
        g.Input.Add(TypeProtos.ValueInfo("x", DataType.Float, [2, 3]));
        g.Output.Add(TypeProtos.ValueInfo("y", DataType.Float, [2, 4]));
        g.Initializer.Add(w);
        g.Node.Add(new NodeProto { OpType = "MatMul", Name = "mm", Input = { "x", "W" }, Output = { "h" } });
        g.Node.Add(new NodeProto { OpType = "Unsqueeze", Name = "u", Input = { "h" }, Output = { "h3" }, Attribute = { Ints("axes", 1) } });
        g.Node.Add(new NodeProto { OpType = "Clip", Name = "c", Input = { "h3" }, Output = { "hc" }, Attribute = { Float("min", -0.5f), Float("max", 0.5f) } });
        g.Node.Add(new NodeProto { OpType = "Squeeze", Name = "s", Input = { "hc" }, Output = { "y" }, Attribute = { Ints("axes", 1) } });
        var training = GradientGraphBuilder.Build(Wrap(g, 9), new BuildTrainingOptions { Loss = LossKind.Mse, Output = "y" });
        Assert.Contains(training.Graph.Output, o => o.Name == "W_grad");
        Assert.True(training.OpsetImport.Single(o => o.Domain == "").Version >= 13);
    }

    [SharedTheory]
    [InlineData("old_cntk_mnist_op8.onnx", LossKind.CrossEntropy, "Plus214_Output_0")]
    [InlineData("old_superres_op10.onnx", LossKind.Mse, "output")]
    public void OldCorpusModelsUpgradeWithTheSameOutputsAndBuildATrainingGraph(string file, LossKind loss, string outputName)
    {
        var path = SharedCorpus.RealModel(file);
        var old = ModelIO.Load(path);
        // Dynamic dimensions get a small size so that random inputs can be made.
        foreach (var dim in old.Graph.Input.SelectMany(i => i.Type.TensorType.Shape.Dim).Where(d => d.ValueCase != TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue))
            dim.DimValue = 1;
        AssertSameOutputs(old, seed: 4);
        var training = GradientGraphBuilder.Build(old, new BuildTrainingOptions { Loss = loss, Output = outputName });
        Assert.Equal(GradientGraphBuilder.LossName, training.Graph.Output[0].Name);
        Assert.Contains(training.Graph.Output, o => o.Name.EndsWith("_grad", StringComparison.Ordinal));
    }
}
