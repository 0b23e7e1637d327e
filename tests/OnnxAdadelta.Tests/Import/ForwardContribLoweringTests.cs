using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Import;
using static OnnxAdadelta.Tests.Import.LoweringCheck;

namespace OnnxAdadelta.Tests.Import;

/// <summary>
/// The lowered forward contrib ops against standard ops over pre-arranged inputs or C# arithmetic, and, where the stock
/// ONNX Runtime has a kernel for the contrib op, against that kernel too.
/// </summary>
public class ForwardContribLoweringTests
{
    private static long Count(long[] shape) => shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>Permutes a row-major tensor's axes: result axis k is input axis perm[k].</summary>
    private static Feed Permute(Feed f, int[] perm)
    {
        var data = (float[])f.Values;
        var shape = f.Shape;
        int rank = shape.Length;
        var outShape = perm.Select(p => shape[p]).ToArray();
        var inStrides = new long[rank];
        for (int k = rank - 1, s = 1; k >= 0; s *= (int)shape[k], k--) inStrides[k] = s;
        var result = new float[data.Length];
        var index = new long[rank];
        for (int o = 0; o < result.Length; o++)
        {
            long src = 0;
            for (int k = 0; k < rank; k++) src += index[k] * inStrides[perm[k]];
            result[o] = data[src];
            for (int k = rank - 1; k >= 0 && ++index[k] == outShape[k]; k--) index[k] = 0;
        }
        return new Feed(f.Name, result, outShape);
    }

    private static AttributeProto[] Attrs(params (string Name, object Value)[] attributes) => attributes.Select(a => a.Value switch
    {
        long l => GraphBuilder.Attr(a.Name, l),
        int i => GraphBuilder.Attr(a.Name, (long)i),
        float f => GraphBuilder.Attr(a.Name, f),
        string s => GraphBuilder.Attr(a.Name, s),
        _ => throw new ArgumentException(a.Name),
    }).ToArray();

    // ---- FusedMatMul ----

    [Theory]
    [InlineData(new long[] { 3, 4 }, new long[] { 4, 5 }, 0, 0, 0, 0, 1f)]
    [InlineData(new long[] { 4, 3 }, new long[] { 4, 5 }, 1, 0, 0, 0, 0.5f)]
    [InlineData(new long[] { 3, 4 }, new long[] { 5, 4 }, 0, 1, 0, 0, -2f)]
    [InlineData(new long[] { 2, 4, 3 }, new long[] { 2, 5, 4 }, 1, 1, 0, 0, 1f)]
    [InlineData(new long[] { 3, 2, 4 }, new long[] { 2, 4, 5 }, 0, 0, 1, 0, 1f)]
    [InlineData(new long[] { 4, 2, 3 }, new long[] { 2, 4, 5 }, 1, 0, 1, 0, 0.25f)]
    [InlineData(new long[] { 2, 3, 4 }, new long[] { 4, 2, 5 }, 0, 0, 0, 1, 1f)]
    [InlineData(new long[] { 2, 3, 4 }, new long[] { 5, 2, 4 }, 0, 1, 0, 1, 3f)]
    [InlineData(new long[] { 3, 2, 2, 4 }, new long[] { 2, 2, 4, 5 }, 0, 0, 1, 0, 1f)]
    [InlineData(new long[] { 3, 2, 2, 4 }, new long[] { 5, 2, 2, 4 }, 0, 1, 1, 1, 0.5f)]
    [InlineData(new long[] { 1, 3, 4 }, new long[] { 2, 4, 5 }, 0, 0, 0, 0, 1f)]
    [InlineData(new long[] { 4 }, new long[] { 5, 4 }, 1, 1, 0, 0, 2f)]
    public void FusedMatMulIsMatMulOfTransposedOperandsTimesAlpha(long[] aShape, long[] bShape, int transA, int transB, int transBatchA, int transBatchB, float alpha)
    {
        var a = Floats("A", aShape, 20);
        var b = Floats("B", bShape, 21);
        var attrs = Attrs(("alpha", alpha), ("transA", transA), ("transB", transB), ("transBatchA", transBatchA), ("transBatchB", transBatchB));
        var actual = RunLowered("FusedMatMul", [a, b], ["Y"], attrs)[0];

        static int[] Perm(int rank, bool trans, bool transBatch)
        {
            if (rank < 2) return [.. Enumerable.Range(0, rank)];
            var perm = transBatch && rank > 2 ? [.. Enumerable.Range(1, rank - 2), 0, rank - 1] : Enumerable.Range(0, rank).ToArray();
            if (trans) (perm[rank - 2], perm[rank - 1]) = (perm[rank - 1], perm[rank - 2]);
            return perm;
        }
        var pa = Permute(a, Perm(aShape.Length, transA != 0, transBatchA != 0));
        var pb = Permute(b, Perm(bShape.Length, transB != 0, transBatchB != 0));
        var expected = RunStandard("MatMul", [pa, pb], ["Y"])[0].Select(v => v * alpha).ToArray();
        AssertClose(expected, actual, 1e-5, 1e-5, "vs MatMul");
        AssertClose(RunOrtContrib("FusedMatMul", [a, b], ["Y"], attrs)[0], actual, 1e-5, 1e-5, "vs ORT's FusedMatMul");
    }

    [Fact]
    public void FusedMatMulRefusesTransBatchOnMismatchedRanksAsOrtDoes()
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() =>
            RunLowered("FusedMatMul", [Floats("A", [3, 2, 4], 1), Floats("B", [4, 5], 2)], ["Y"], Attrs(("transBatchA", 1))));
        Assert.Contains("same rank, at least 3 (ranks 3 and 2)", e.Message);
    }

    [Fact]
    public void FusedMatMulRefusesUnknownAttributes()
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() =>
            RunLowered("FusedMatMul", [Floats("A", [2, 2], 1), Floats("B", [2, 2], 2)], ["Y"], Attrs(("beta", 1f))));
        Assert.Contains("attribute 'beta' is not supported", e.Message);
    }

    // ---- Scale ----

    [Theory]
    [InlineData(0, false)]
    [InlineData(1, false)]
    [InlineData(0, true)]
    [InlineData(1, true)]
    public void ScaleMultipliesOrDivides(int scaleDown, bool integerScale)
    {
        var x = Floats("x", [2, 3], 30, -5, 5);
        var s = integerScale ? new Feed("s", new long[] { 4 }, []) : new Feed("s", new float[] { 2.5f }, []);
        float sv = integerScale ? 4f : 2.5f;
        var expected = ((float[])x.Values).Select(v => scaleDown != 0 ? v / sv : v * sv).ToArray();
        var actual = RunLowered("Scale", [x, s], ["y"], Attrs(("scale_down", scaleDown)))[0];
        AssertClose(expected, actual, 1e-6, 1e-7);
    }

    // ---- ReduceSumTraining ----

    [Theory]
    [InlineData(new long[] { 1 }, 1, 0)]
    [InlineData(new long[] { 1 }, 0, 0)]
    [InlineData(new long[] { 0, -1 }, 0, 0)]
    [InlineData(new long[0], 1, 0)]
    [InlineData(new long[0], 0, 1)]
    public void ReduceSumTrainingIsReduceSumWithAxesInput(long[] axes, int keepdims, int noop)
    {
        var x = Floats("x", [2, 3, 4], 40);
        var ax = new Feed("axes", axes, [axes.Length]);
        var attrs = Attrs(("keepdims", keepdims), ("noop_with_empty_axes", noop));
        var actual = RunLowered("ReduceSumTraining", [x, ax], ["y"], attrs)[0];
        AssertClose(RunStandard("ReduceSum", [x, ax], ["y"], attrs)[0], actual, 1e-5, 1e-6);
    }

    [Fact]
    public void ReduceSumTrainingSumsTheMiddleAxis()
    {
        var x = Floats("x", [2, 3, 4], 41);
        var v = (float[])x.Values;
        var expected = new float[8];
        for (int i = 0; i < 2; i++) for (int j = 0; j < 3; j++) for (int k = 0; k < 4; k++) expected[i * 4 + k] += v[(i * 3 + j) * 4 + k];
        var actual = RunLowered("ReduceSumTraining", [x, new Feed("axes", new long[] { 1 }, [1])], ["y"], Attrs(("keepdims", 0)))[0];
        AssertClose(expected, actual, 1e-5, 1e-6);
    }

    // ---- BroadcastGradientArgs ----

    /// <summary>ONNX Runtime's rule, written out: axes of the result, from the last one backwards.</summary>
    private static (long[] A, long[] B) ReduceAxes(long[] a, long[] b)
    {
        int n = Math.Max(a.Length, b.Length);
        var ra = new List<long>();
        var rb = new List<long>();
        for (int k = n - 1; k >= 0; k--)
        {
            int i = k - (n - a.Length), j = k - (n - b.Length);
            if (i < 0) { ra.Add(k); continue; }
            if (j < 0) { rb.Add(k); continue; }
            if (a[i] == b[j]) continue;
            if (a[i] == 1) ra.Add(k);
            else if (b[j] == 1) rb.Add(k);
            else throw new ArgumentException("not broadcastable");
        }
        return (ra.ToArray(), rb.ToArray());
    }

    public static TheoryData<long[], long[]> ShapePairs => new()
    {
        { [2, 3, 4], [2, 3, 4] },
        { [2, 3, 4], [4] },
        { [4], [2, 3, 4] },
        { [2, 1, 4], [1, 3, 1] },
        { [1, 1], [1] },
        { [1], [1, 1, 1] },
        { [], [2, 3] },
        { [3, 1], [] },
        { [5, 1, 1, 7], [6, 1] },
        { [], [] },
    };

    [Theory]
    [MemberData(nameof(ShapePairs))]
    public void BroadcastGradientArgsListsTheReducedAxes(long[] a, long[] b)
    {
        var (ea, eb) = ReduceAxes(a, b);
        var feeds = new[] { new Feed("a", a, [a.Length]), new Feed("b", b, [b.Length]) };
        var both = RunLowered("BroadcastGradientArgs", feeds, ["a_axes", "b_axes"]);
        AssertClose(ea.Select(v => (float)v).ToArray(), both[0], 0, 0, "a_axes");
        AssertClose(eb.Select(v => (float)v).ToArray(), both[1], 0, 0, "b_axes");
        AssertClose(ea.Select(v => (float)v).ToArray(), RunLowered("BroadcastGradientArgs", feeds, ["a_axes", ""])[0], 0, 0, "a_axes alone");
        AssertClose(eb.Select(v => (float)v).ToArray(), RunLowered("BroadcastGradientArgs", feeds, ["", "b_axes"])[0], 0, 0, "b_axes alone");
    }

    // ---- Gelu family ----

    [Fact]
    public void GeluIsTheExactGelu()
    {
        var x = Floats("x", [3, 4], 50, -4, 4);
        var actual = RunLowered("Gelu", [x], ["y"])[0];
        AssertClose(RunStandard("Gelu", [x], ["y"], opset: 20)[0], actual, 1e-5, 1e-6, "vs Gelu-20");
        AssertClose(RunOrtContrib("Gelu", [x], ["y"])[0], actual, 1e-5, 1e-6, "vs ORT's Gelu");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void FastGeluIsTheTanhApproximationWithOptionalBias(bool bias)
    {
        var x = Floats("x", [3, 4], 51, -4, 4);
        var b = Floats("bias", [4], 52, -1, 1);
        var feeds = bias ? new[] { x, b } : [x];
        var actual = RunLowered("FastGelu", feeds, ["y"])[0];
        var shifted = ((float[])x.Values).Select((v, i) => bias ? v + ((float[])b.Values)[i % 4] : v).ToArray();
        var expected = shifted.Select(v => (float)(0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v))))).ToArray();
        AssertClose(expected, actual, 1e-5, 1e-6, "vs C#");
        AssertClose(RunOrtContrib("FastGelu", feeds, ["y"])[0], actual, 1e-5, 1e-6, "vs ORT's FastGelu");
    }

    [Fact]
    public void BiasGeluIsGeluOfTheSum()
    {
        var a = Floats("A", [3, 4], 53, -3, 3);
        var b = Floats("B", [4], 54, -1, 1);
        var sum = new Feed("x", ((float[])a.Values).Select((v, i) => v + ((float[])b.Values)[i % 4]).ToArray(), [3, 4]);
        var actual = RunLowered("BiasGelu", [a, b], ["y"])[0];
        AssertClose(RunStandard("Gelu", [sum], ["y"], opset: 20)[0], actual, 1e-5, 1e-6, "vs Gelu-20");
        AssertClose(RunOrtContrib("BiasGelu", [a, b], ["y"])[0], actual, 1e-5, 1e-6, "vs ORT's BiasGelu");
    }

    // ---- LayerNormalization and SimplifiedLayerNormalization ----

    /// <summary>Normalizes over the axes from <paramref name="axis"/> on, in double; mean and 1/σ per group.</summary>
    private static (float[] Y, float[] Mean, float[] InvStd) Normalize(float[] x, long[] shape, int axis, float[] scale, float[]? bias, double eps, bool rms)
    {
        if (axis < 0) axis += shape.Length;
        int inner = (int)Count(shape[axis..]), groups = x.Length / inner;
        var y = new float[x.Length];
        var means = new float[groups];
        var invs = new float[groups];
        for (int g = 0; g < groups; g++)
        {
            var row = x.Skip(g * inner).Take(inner).Select(v => (double)v).ToArray();
            double mean = rms ? 0 : row.Average();
            double variance = row.Select(v => (v - mean) * (v - mean)).Average();
            double inv = 1 / Math.Sqrt(variance + eps);
            means[g] = (float)mean;
            invs[g] = (float)inv;
            for (int k = 0; k < inner; k++) y[g * inner + k] = (float)((row[k] - mean) * inv * scale[k] + (bias?[k] ?? 0));
        }
        return (y, means, invs);
    }

    [Theory]
    [InlineData(-1, true, null)]
    [InlineData(1, false, 1e-3f)]
    [InlineData(2, true, 1e-2f)]
    public void LayerNormalizationMatchesItsDefinition(int axis, bool withBias, float? epsilon)
    {
        long[] shape = [2, 3, 4];
        var x = Floats("X", shape, 60, -3, 3);
        long[] normShape = shape[(axis < 0 ? axis + 3 : axis)..];
        var scale = Floats("scale", normShape, 61, 0.5, 1.5);
        var bias = Floats("B", normShape, 62);
        var attrs = epsilon is { } e ? Attrs(("axis", axis), ("epsilon", e)) : Attrs(("axis", axis));
        var (y, mean, inv) = Normalize((float[])x.Values, shape, axis, (float[])scale.Values, withBias ? (float[])bias.Values : null, epsilon ?? 1e-5f, rms: false);
        var feeds = withBias ? new[] { x, scale, bias } : [x, scale];
        var all = RunLowered("LayerNormalization", feeds, ["Y", "Mean", "InvStd"], attrs);
        AssertClose(y, all[0], 1e-4, 1e-5, "Y");
        AssertClose(mean, all[1], 1e-4, 1e-5, "Mean");
        AssertClose(inv, all[2], 1e-4, 1e-5, "InvStd");
        var some = RunLowered("LayerNormalization", feeds, ["Y", "", "InvStd"], attrs);
        AssertClose(y, some[0], 1e-4, 1e-5, "Y alone");
        AssertClose(inv, some[1], 1e-4, 1e-5, "InvStd without Mean");
    }

    [Theory]
    [InlineData(-1, 17)]
    [InlineData(1, 17)]
    [InlineData(-2, 18)]
    public void SimplifiedLayerNormalizationIsRmsNorm(int axis, int opset)
    {
        long[] shape = [2, 3, 4];
        var x = Floats("X", shape, 70, -3, 3);
        long[] normShape = shape[(axis < 0 ? axis + 3 : axis)..];
        var scale = Floats("scale", normShape, 71, 0.5, 1.5);
        var (y, _, inv) = Normalize((float[])x.Values, shape, axis, (float[])scale.Values, null, 1e-5, rms: true);
        var actual = RunLowered("SimplifiedLayerNormalization", [x, scale], ["Y", "inv_std_var"], Attrs(("axis", axis)), opset);
        AssertClose(y, actual[0], 1e-4, 1e-5, "Y");
        AssertClose(inv, actual[1], 1e-4, 1e-5, "inv_std_var");
        AssertClose(y, RunLowered("SimplifiedLayerNormalization", [x, scale], ["Y"], Attrs(("axis", axis)), opset)[0], 1e-4, 1e-5, "Y alone");
    }

    [Fact]
    public void SimplifiedLayerNormalizationRefusesOtherStashTypes()
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() =>
            RunLowered("SimplifiedLayerNormalization", [Floats("X", [2, 4], 1), Floats("scale", [4], 2)], ["Y"], Attrs(("stash_type", 0))));
        Assert.Contains("stash_type=0", e.Message);
    }

    // ---- ConcatTraining, SplitTraining, PassThrough, YieldOp ----

    [Theory]
    [InlineData(1)]
    [InlineData(-1)]
    [InlineData(0)]
    public void ConcatTrainingConcatenatesAndReportsLengths(int axis)
    {
        long[] s1 = [2, 3, 2], s2 = [2, 3, 2], s3 = [2, 3, 2];
        int a = axis < 0 ? axis + 3 : axis;
        s1[a] = 1; s2[a] = 2; s3[a] = 4;
        var feeds = new[] { Floats("p", s1, 80), Floats("q", s2, 81), Floats("r", s3, 82) };
        var attrs = Attrs(("axis", axis));
        var actual = RunLowered("ConcatTraining", feeds, ["y", "lengths"], attrs);
        AssertClose(RunStandard("Concat", feeds, ["y"], attrs)[0], actual[0], 0, 0, "concat");
        AssertClose([1f, 2f, 4f], actual[1], 0, 0, "lengths");
        AssertClose(RunStandard("Concat", feeds, ["y"], attrs)[0], RunLowered("ConcatTraining", feeds, ["y"], attrs)[0], 0, 0, "concat alone");
    }

    [Theory]
    [InlineData(1, new long[] { 1, 2, 3 })]
    [InlineData(-1, new long[] { 2, 1 })]
    [InlineData(0, new long[] { 1, 1 })]
    public void SplitTrainingSplitsBySizesGivenAsInput(int axis, long[] sizes)
    {
        long[] shape = [2, 6, 3];
        int a = axis < 0 ? axis + 3 : axis;
        var x = Floats("x", shape, 90);
        var v = (float[])x.Values;
        int outer = (int)Count(shape[..a]), dim = (int)shape[a], inner = (int)Count(shape[(a + 1)..]);
        var outputs = sizes.Select((_, i) => $"y{i}").ToArray();
        var actual = RunLowered("SplitTraining", [x, new Feed("split", sizes, [sizes.Length])], outputs, Attrs(("axis", axis)));
        long offset = 0;
        for (int p = 0; p < sizes.Length; p++)
        {
            var expected = new List<float>();
            for (int o = 0; o < outer; o++)
                for (long d = offset; d < offset + sizes[p]; d++)
                    for (int i = 0; i < inner; i++) expected.Add(v[(o * dim + d) * inner + i]);
            AssertClose([.. expected], actual[p], 0, 0, $"part {p}");
            offset += sizes[p];
        }
    }

    [Fact]
    public void SplitTrainingComputesOnlyThePresentOutputs()
    {
        var x = Floats("x", [4, 2], 91);
        var actual = RunLowered("SplitTraining", [x, new Feed("split", new long[] { 1, 3 }, [2])], ["", "tail"]);
        AssertClose([.. ((float[])x.Values).Skip(2)], actual[0], 0, 0);
    }

    [Fact]
    public void PassThroughForwardsEachInput()
    {
        var p = Floats("p", [2, 3], 100);
        var q = new Feed("q", new long[] { 7, 8 }, [2]);
        var actual = RunLowered("PassThrough", [p, q], ["p_out", "q_out"]);
        AssertClose((float[])p.Values, actual[0], 0, 0);
        AssertClose([7f, 8f], actual[1], 0, 0);
    }

    [Fact]
    public void YieldOpIsRefusedWithTheReason()
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() =>
            RunLowered("YieldOp", [Floats("loss", [1], 1)], ["loss_grad"], [GraphBuilder.Attr("full_shape_outputs", [0L])]));
        Assert.Contains("com.microsoft.YieldOp", e.Message);
        Assert.Contains("ORTModule", e.Message);
    }
}
