using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Training;
using static OnnxAdadelta.Tests.Gradients.GradientCheck;
using A = OnnxAdadelta.Gradients.GradientContext;

namespace OnnxAdadelta.Tests.Gradients;

// ONNX Runtime's CPU provider runs DepthToSpace and SpaceToDepth in float64, Resize in float32 only.
public class ResamplingGradientTests
{
    /// <summary>A constant float32 input (scales, roi), whatever the checked element type.</summary>
    private static In Floats(string name, params float[] values) =>
        new(name, [], [values.Length], Differentiable: false) { Ints = Tensors.Create(name, values, values.Length) };

    private static In Sizes(params long[] values) => Int64("sizes", values, values.Length);

    private static void Scales(string mode, long[] shape, float[] scales, int seed, int opset = 17, params AttributeProto[] attributes) =>
        Check("Resize", [Random("x", shape, seed), Floats("scales", scales)], [A.Attr("mode", mode), .. attributes],
            nodeInputs: ["x", "", "scales"], opset: opset, float32: true);

    public static TheoryData<string, string> Transforms()
    {
        var data = new TheoryData<string, string>();
        foreach (var mode in new[] { "nearest", "linear" })
            foreach (var t in new[] { "half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn" })
                data.Add(mode, t);
        return data;
    }

    [Theory]
    [MemberData(nameof(Transforms))]
    public void ResizeCoordinateTransformations(string mode, string transform)
    {
        var t = A.Attr("coordinate_transformation_mode", transform);
        // Up and down on the two image axes; a one-element output axis takes the special cases of
        // pytorch_half_pixel and align_corners.
        Scales(mode, [1, 2, 4, 3], [1, 1, 1.75f, 0.6f], 1, opset: 19, t);
        Scales(mode, [2, 1, 5, 2], [1, 1, 0.5f, 2.5f], 2, opset: 19, t);
    }

    [Theory]
    [InlineData("round_prefer_floor")]
    [InlineData("round_prefer_ceil")]
    [InlineData("floor")]
    [InlineData("ceil")]
    public void ResizeNearestModes(string nearest)
    {
        // asymmetric ×2 lands exactly half-way between input elements; half_pixel ×1.5 and ×0.75 elsewhere.
        Scales("nearest", [1, 2, 3, 4], [1, 1, 2, 2], 3, 17, A.Attr("nearest_mode", nearest), A.Attr("coordinate_transformation_mode", "asymmetric"));
        Scales("nearest", [1, 2, 3, 4], [1, 1.5f, 1.5f, 0.75f], 4, 17, A.Attr("nearest_mode", nearest));
        // 1-D input, where ONNX Runtime takes another path.
        Scales("nearest", [5], [2.5f], 5, 17, A.Attr("nearest_mode", nearest));
    }

    [Theory]
    [InlineData("nearest")]
    [InlineData("linear")]
    public void ResizeWithSizes(string mode) =>
        Check("Resize", [Random("x", [2, 1, 4, 5], 6), Sizes(2, 1, 7, 3)], [A.Attr("mode", mode)], nodeInputs: ["x", "", "", "sizes"], float32: true);

    [Theory]
    [InlineData("nearest")]
    [InlineData("linear")]
    public void ResizeTfCropAndResize(string mode)
    {
        // Parts of the crop fall outside the input: those outputs are extrapolation_value and pass no gradient.
        var roi = Floats("roi", 0, 0, -0.2f, 0.1f, 1, 1, 1.3f, 0.8f);
        Check("Resize", [Random("x", [1, 2, 4, 5], 7), roi, Sizes(1, 2, 6, 4)],
            [A.Attr("mode", mode), A.Attr("coordinate_transformation_mode", "tf_crop_and_resize"), A.Attr("extrapolation_value", 2.5f)],
            nodeInputs: ["x", "roi", "", "sizes"], float32: true);
        // A one-element output axis samples the middle of its crop.
        Check("Resize", [Random("x", [1, 1, 4, 5], 8), Floats("roi", 0.2f, 0.1f, 0.9f, 0.7f), Sizes(1, 3)],
            [A.Attr("mode", mode), A.Attr("coordinate_transformation_mode", "tf_crop_and_resize"), A.Attr("axes", [2L, 3])],
            nodeInputs: ["x", "roi", "", "sizes"], opset: 18, float32: true);
    }

    [Fact]
    public void ResizeAxes()
    {
        // Opset 18: scales and sizes for some axes only (negative axes count from the end).
        Check("Resize", [Random("x", [2, 3, 4], 9), Floats("scales", 1.5f, 0.5f)], [A.Attr("mode", "nearest"), A.Attr("axes", [-1L, 0])],
            nodeInputs: ["x", "", "scales"], opset: 18, float32: true);
        Check("Resize", [Random("x", [1, 2, 3, 4], 10), Sizes(5, 2)], [A.Attr("mode", "linear"), A.Attr("axes", [2L, 3])],
            nodeInputs: ["x", "", "", "sizes"], opset: 18, float32: true);
    }

    [Theory]
    [InlineData("nearest", "not_larger")]
    [InlineData("nearest", "not_smaller")]
    [InlineData("linear", "not_larger")]
    [InlineData("linear", "not_smaller")]
    public void ResizeKeepAspectRatioPolicy(string mode, string policy) =>
        // Sizes 6×5 for 4×6 ask for scales 1.5 and 0.83: not_larger keeps 0.83 on both (3×5), not_smaller 1.5 (6×9).
        Check("Resize", [Random("x", [1, 2, 4, 6], 11), Sizes(6, 5)],
            [A.Attr("mode", mode), A.Attr("axes", [2L, 3]), A.Attr("keep_aspect_ratio_policy", policy)],
            nodeInputs: ["x", "", "", "sizes"], opset: 18, float32: true);

    [Fact]
    public void ResizeLinearLayouts()
    {
        // NHWC (outer and inner scales 1), 2-D, 3-D and 5-D (trilinear) inputs.
        Scales("linear", [1, 4, 3, 2], [1, 1.5f, 2, 1], 12);
        Scales("linear", [3, 4], [2, 0.5f], 13);
        Scales("linear", [2, 3, 2], [1.5f, 1, 2], 14);
        Scales("linear", [1, 1, 2, 3, 2], [1, 1, 2, 1.5f, 1.5f], 15, 17, A.Attr("coordinate_transformation_mode", "align_corners"));
    }

    [Fact]
    public void ResizeNearestInFiveDimensions() =>
        Scales("nearest", [2, 2, 3, 2, 3], [1, 2, 0.7f, 1.5f, 2], 16, 17, A.Attr("nearest_mode", "ceil"));

    [Theory]
    [InlineData("half_pixel", 0L, -0.75f)]
    [InlineData("align_corners", 0L, -0.5f)]
    [InlineData("asymmetric", 1L, -0.75f)]
    [InlineData("pytorch_half_pixel", 1L, -0.5f)]
    public void ResizeCubic(string transform, long excludeOutside, float a)
    {
        // Up and down on the image axes: the four-element windows reach past both edges (clamped, or left out and
        // renormalized with exclude_outside).
        AttributeProto[] attributes = [A.Attr("coordinate_transformation_mode", transform), A.Attr("exclude_outside", excludeOutside), A.Attr("cubic_coeff_a", a)];
        Scales("cubic", [1, 2, 4, 5], [1, 1, 1.5f, 0.8f], 17, 17, attributes);
        Scales("cubic", [3, 4], [2.5f, 1.25f], 18, 17, attributes);
    }

    [Fact]
    public void ResizeCubicTfCropAndResize() =>
        Check("Resize", [Random("x", [1, 1, 5, 4], 19), Floats("roi", 0, 0, -0.1f, 0.2f, 1, 1, 0.8f, 1.2f), Sizes(1, 1, 6, 7)],
            [A.Attr("mode", "cubic"), A.Attr("coordinate_transformation_mode", "tf_crop_and_resize"), A.Attr("extrapolation_value", -1f)],
            nodeInputs: ["x", "roi", "", "sizes"], float32: true);

    [Fact]
    public void ResizeWithoutASizeChangeCopies() =>
        // Sizes equal to the input's: ONNX Runtime copies X whatever the roi asks.
        Check("Resize", [Random("x", [1, 1, 4, 5], 24), Floats("roi", 0, 0, 0.2f, 0.1f, 1, 1, 0.7f, 0.9f), Sizes(1, 1, 4, 5)],
            [A.Attr("mode", "linear"), A.Attr("coordinate_transformation_mode", "tf_crop_and_resize")],
            nodeInputs: ["x", "roi", "", "sizes"], float32: true);

    [Theory]
    [InlineData("linear", 0L)]
    [InlineData("linear", 1L)]
    [InlineData("cubic", 0L)]
    [InlineData("cubic", 1L)]
    public void ResizeAntialias(string mode, long excludeOutside)
    {
        // Downsampling widens the filter (several taps past the edges); upsampling keeps it; an unchanged size is a copy.
        AttributeProto[] attributes = [A.Attr("antialias", 1L), A.Attr("exclude_outside", excludeOutside)];
        Scales(mode, [1, 2, 7, 5], [1, 1, 0.45f, 1.6f], 25, 18, attributes);
        Scales(mode, [2, 1, 6, 4], [1, 1, 0.7f, 1.1f], 26, 18, [.. attributes, A.Attr("coordinate_transformation_mode", "align_corners"), A.Attr("cubic_coeff_a", -0.5f)]);
    }

    [Theory]
    [InlineData("DCR")]
    [InlineData("CRD")]
    public void DepthToSpace(string mode) =>
        Check("DepthToSpace", [Random("x", [2, 8, 2, 3], 20)], [A.Attr("blocksize", 2L), A.Attr("mode", mode)]);

    [Fact]
    public void DepthToSpaceBlockSize3() =>
        Check("DepthToSpace", [Random("x", [1, 18, 1, 2], 21)], [A.Attr("blocksize", 3L), A.Attr("mode", "CRD")]);

    [Fact]
    public void SpaceToDepth()
    {
        Check("SpaceToDepth", [Random("x", [2, 2, 4, 6], 22)], [A.Attr("blocksize", 2L)]);
        Check("SpaceToDepth", [Random("x", [1, 1, 3, 6], 23)], [A.Attr("blocksize", 3L)]);
    }

    /// <summary>
    /// Real exported models through ConvTranspose (sedgen U-Net) and ConvTranspose + nearest Resize (bVAE decoder, whose
    /// float image before the uint8 Cast is made an output): with an mse loss, the gradients of every parameter, taken
    /// along one random direction v, match the central difference (L(θ + εv) − L(θ − εv)) / 2ε.
    /// </summary>
    [SharedTheory]
    [InlineData("sedgen_unet.onnx", "output", "upconv1.weight")]
    [InlineData("bvae_decoder_resize.onnx", "28", "0.fc2.weight")]
    public void CorpusModelGradientsMatchADirectionalDifference(string file, string output, string before)
    {
        var model = ModelIO.Load(SharedCorpus.RealModel(file));
        if (model.Graph.Output.All(o => o.Name != output))
        {
            var type = ShapeInference.Infer(model)[output];
            var info = new ValueInfoProto { Name = output, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type.ElementType, Shape = new TensorShapeProto() } } };
            for (int a = 0; a < type.Dims!.Length; a++)
                info.Type.TensorType.Shape.Dim.Add(type.Dims[a] is { } d ? new TensorShapeProto.Types.Dimension { DimValue = d } : new TensorShapeProto.Types.Dimension { DimParam = type.Symbol(a) ?? $"d{a}" });
            model.Graph.Output.Add(info);
        }
        var training = GradientGraphBuilder.Build(model, new BuildTrainingOptions { Loss = LossKind.Mse, Output = output });
        var parameters = training.Graph.Output.Select(o => o.Name).Where(n => n.EndsWith("_grad", StringComparison.Ordinal)).Select(n => n[..^5]).ToList();
        Assert.Contains(before, parameters); // a parameter whose gradient passes through the ConvTranspose (and Resize) nodes

        var rng = new SplitMix64(7);
        var initializers = training.Graph.Initializer.ToDictionary(t => t.Name);
        var feeds = training.Graph.Input.Where(i => !initializers.ContainsKey(i.Name)).Select(i =>
        {
            var shape = i.Type.TensorType.Shape.Dim.Select(d => d.ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue ? d.DimValue : 2).ToArray();
            var values = Enumerable.Range(0, (int)shape.Aggregate(1L, (a, b) => a * b)).Select(_ => (float)rng.NextDouble()).ToArray();
            return (i.Name, values, shape);
        }).ToList();
        var direction = parameters.ToDictionary(p => p, p => initializers[p].ToFloatArray().Select(_ => rng.NextDouble() < 0.5 ? -1f : 1f).ToArray());

        float[][] Run(ModelProto m, string[] names)
        {
            using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
            using var session = new InferenceSession(m.ToByteArray(), options);
            var values = feeds.Select(f => OrtValue.CreateTensorValueFromMemory(f.values, f.shape)).ToList();
            try
            {
                using var results = session.Run(new RunOptions(), feeds.Select(f => f.Name).ToArray(), values, names);
                return [.. results.Select(r => r.GetTensorDataAsSpan<float>().ToArray())];
            }
            finally { foreach (var v in values) v.Dispose(); }
        }
        ModelProto Moved(double by)
        {
            var m = training.Clone();
            foreach (var t in m.Graph.Initializer.Where(t => direction.ContainsKey(t.Name)).ToList())
            {
                var moved = t.ToFloatArray().Zip(direction[t.Name], (v, d) => (float)(v + by * d)).ToArray();
                m.Graph.Initializer[m.Graph.Initializer.IndexOf(t)] = Tensors.Create(t.Name, moved, [.. t.Dims]);
            }
            return m;
        }

        var analytic = Run(training, [.. parameters.Select(p => p + "_grad")]);
        Assert.All(analytic, g => Assert.All(g, v => Assert.True(float.IsFinite(v))));
        double along = parameters.Select((p, k) => analytic[k].Zip(direction[p], (g, d) => (double)g * d).Sum()).Sum();
        const double eps = 1e-3;
        double numeric = (Run(Moved(eps), ["loss"])[0][0] - Run(Moved(-eps), ["loss"])[0][0]) / (2 * eps);
        Assert.True(Math.Abs(along) > 1e-4, $"{file}: the directional derivative {along} is too small to compare");
        Assert.True(Math.Abs(along - numeric) <= 0.02 * Math.Abs(along), $"{file}: gradient·v = {along}, central difference {numeric}");
    }

    /// <summary>
    /// Builds the training graph of a one-node model on x (float32, dims given as sizes or symbols) with
    /// <paramref name="constants"/> as initializers, x trained through the loss Σ y; returns the refusal.
    /// </summary>
    internal static OnnxAdadeltaException BuildFails(string op, object[] xDims, string[] inputs, TensorProto[] constants, params AttributeProto[] attributes)
    {
        var g = new GraphProto { Name = op + "_refusal" };
        var shape = new TensorShapeProto();
        foreach (var d in xDims)
            shape.Dim.Add(d is string symbol ? new TensorShapeProto.Types.Dimension { DimParam = symbol } : new TensorShapeProto.Types.Dimension { DimValue = Convert.ToInt64(d) });
        g.Input.Add(new ValueInfoProto { Name = "x", Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = shape } } });
        g.Initializer.AddRange(constants);
        var node = new NodeProto { OpType = op, Name = op, Output = { "y" } };
        node.Input.AddRange(inputs);
        node.Attribute.AddRange(attributes);
        g.Node.Add(node);
        return BuildFails(g);
    }

    /// <summary>The refusal of building the training graph of <paramref name="g"/> with loss L = Σ y, x trained.</summary>
    private static OnnxAdadeltaException BuildFails(GraphProto g)
    {
        g.Node.Add(new NodeProto { OpType = "ReduceSum", Name = "L", Input = { "y" }, Output = { "L" }, Attribute = { A.Attr("keepdims", 0L) } });
        g.Output.Add(TypeProtos.ValueInfo("L", TensorProto.Types.DataType.Float, []));
        var m = new ModelProto { IrVersion = 9, Graph = g };
        m.OpsetImport.Add(new OperatorSetIdProto { Version = 18 });
        return Assert.Throws<OnnxAdadeltaException>(() => GradientGraphBuilder.Build(m, new BuildTrainingOptions { Loss = LossKind.Output, Output = "L", Trainable = ["x"] }));
    }

    [Fact]
    public void ResizeOfASymbolicAxisIsRefusedWithAHint()
    {
        // The batch axis may stay symbolic (scale 1); a resized one may not.
        var e = BuildFails("Resize", ["N", 2, "H", 4], ["x", "", "scales"], [Tensors.Create("scales", [1f, 1, 2, 2], 4)], A.Attr("mode", "nearest"));
        Assert.Contains("axis 2 of 'x'", e.Message);
        Assert.Contains("--input-shape NAME=D0,...", e.Message);
    }

    [Fact]
    public void ResizeWithComputedScalesIsRefused() =>
        Assert.Contains("the scales input 's' is not a constant", BuildFailsWithComputedScales().Message);

    private static OnnxAdadeltaException BuildFailsWithComputedScales()
    {
        var g = new GraphProto { Name = "computed_scales" };
        g.Input.Add(TypeProtos.ValueInfo("x", TensorProto.Types.DataType.Float, [1, 1, 2, 2]));
        g.Initializer.Add(Tensors.Create("base", [1f, 1, 1, 1], 4));
        g.Initializer.Add(Tensors.Create("bump", [0f, 0, 1, 1], 4));
        g.Node.Add(new NodeProto { OpType = "Add", Name = "scales", Input = { "base", "bump" }, Output = { "s" } });
        g.Node.Add(new NodeProto { OpType = "Resize", Name = "Resize", Input = { "x", "", "s" }, Output = { "y" }, Attribute = { A.Attr("mode", "nearest") } });
        return BuildFails(g);
    }
}
