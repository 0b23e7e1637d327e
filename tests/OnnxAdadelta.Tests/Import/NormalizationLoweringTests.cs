using OnnxAdadelta.Onnx.Proto;
using static OnnxAdadelta.Tests.Import.LoweringCheck;
using A = OnnxAdadelta.Import.LoweringContext;

namespace OnnxAdadelta.Tests.Import;

// The layer-normalization gradients are checked against the autodiff's gradient of the standard LayerNormalization,
// with the saved statistics from its Mean and InvStdDev outputs; RMS normalization and training-mode batch
// normalization (no standard-op gradient to compare with) against central differences of a float64 C# forward.
public class NormalizationLoweringTests
{
    private const float Epsilon = 1e-5f;

    private static void CheckLayerNormGrad(long[] xShape, long axis, int seed, bool invertible)
    {
        int rank = xShape.Length;
        int a = (int)(axis < 0 ? axis + rank : axis);
        long[] scaleShape = [.. xShape.Skip(a)];
        long[] statShape = [.. xShape.Take(a), .. Enumerable.Repeat(1L, rank - a)];
        var x = Floats("x", xShape, seed);
        // Scales away from zero: the invertible form divides by them.
        var scale = Floats("scale", scaleShape, seed + 1, 0.5, 1.5);
        var bias = Floats("bias", scaleShape, seed + 2);
        var dy = Floats("dY", xShape, seed + 3);
        AttributeProto[] attributes = [A.Attr("axis", axis), A.Attr("epsilon", Epsilon)];
        var forward = RunStandard("LayerNormalization", [x, scale, bias], ["y", "mean", "inv"], attributes);
        var expected = GradientOf("LayerNormalization", [x, scale, bias], ["x", "scale", "bias"], [dy], attributes);
        var mean = new Feed("mean", forward[1], statShape);
        var inv = new Feed("inv", forward[2], statShape);
        var actual = invertible
            ? RunLowered("InvertibleLayerNormalizationGrad", [dy, new Feed("y", forward[0], xShape), scale, bias, inv], ["dX", "dScale", "dBias"], attributes)
            : RunLowered("LayerNormalizationGrad", [dy, x, scale, mean, inv], ["dX", "dScale", "dBias"], attributes);
        string[] names = ["dX", "dScale", "dBias"];
        for (int i = 0; i < 3; i++) AssertClose(expected[i], actual[i], rtol: 1e-4, atol: 2e-5, what: names[i]);
    }

    [Theory]
    [InlineData(-1L, false)]
    [InlineData(1L, false)]
    [InlineData(-1L, true)]
    [InlineData(1L, true)]
    public void LayerNormalizationGradFromSavedStatistics(long axis, bool invertible) =>
        CheckLayerNormGrad([2, 3, 5], axis, axis == 1 ? 10 : 20, invertible);

    [Fact]
    public void LayerNormalizationGradOverEveryAxis() =>
        // axis 0: one row, no leading axes to sum dScale and dBias over.
        CheckLayerNormGrad([3, 4], 0, 30, invertible: false);

    [Fact]
    public void LayerNormalizationGradWithOnlyTheInputGradient()
    {
        var x = Floats("x", [2, 4], 40);
        var scale = Floats("scale", [4], 41);
        var dy = Floats("dY", [2, 4], 42);
        var forward = RunStandard("LayerNormalization", [x, scale], ["y", "mean", "inv"]);
        var expected = GradientOf("LayerNormalization", [x, scale], ["x"], [dy]);
        var actual = RunLowered("LayerNormalizationGrad", [dy, x, scale, new Feed("mean", forward[1], [2, 1]), new Feed("inv", forward[2], [2, 1])], ["dX"]);
        AssertClose(expected[0], actual[0], rtol: 1e-4, atol: 2e-5, what: "dX");
    }

    /// <summary>∂f/∂v by central differences in float64.</summary>
    private static double[] NumericGradient(Func<double[], double> f, double[] v, double h = 1e-6)
    {
        var g = new double[v.Length];
        for (int i = 0; i < v.Length; i++)
        {
            var p = (double[])v.Clone();
            p[i] = v[i] + h;
            double up = f(p);
            p[i] = v[i] - h;
            g[i] = (up - f(p)) / (2 * h);
        }
        return g;
    }

    private static double[] D(Feed f) => [.. ((float[])f.Values).Select(v => (double)v)];

    private static float[] F(double[] v) => [.. v.Select(d => (float)d)];

    [Fact]
    public void SimplifiedLayerNormalizationGradMatchesRmsNormBackward()
    {
        const int rows = 3, cols = 5;
        var x = Floats("x", [rows, cols], 50);
        var scale = Floats("scale", [cols], 51);
        var dy = Floats("dY", [rows, cols], 52);
        var (xd, sd, gd) = (D(x), D(scale), D(dy));
        // y = x·scale / √(mean(x²) + ε) per row; L = Σ y·dY.
        double Loss(double[] xv, double[] sv)
        {
            double l = 0;
            for (int r = 0; r < rows; r++)
            {
                double ms = 0;
                for (int j = 0; j < cols; j++) ms += xv[r * cols + j] * xv[r * cols + j];
                double inv = 1 / Math.Sqrt(ms / cols + Epsilon);
                for (int j = 0; j < cols; j++) l += xv[r * cols + j] * inv * sv[j] * gd[r * cols + j];
            }
            return l;
        }
        var invStd = new float[rows];
        for (int r = 0; r < rows; r++)
            invStd[r] = (float)(1 / Math.Sqrt(Enumerable.Range(0, cols).Sum(j => xd[r * cols + j] * xd[r * cols + j]) / cols + Epsilon));
        var actual = RunLowered("SimplifiedLayerNormalizationGrad", [dy, x, scale, new Feed("inv", invStd, [rows, 1])], ["dX", "dScale"],
            [A.Attr("axis", -1L), A.Attr("epsilon", Epsilon)]);
        AssertClose(F(NumericGradient(v => Loss(v, sd), xd)), actual[0], rtol: 1e-4, atol: 1e-5, what: "dX");
        AssertClose(F(NumericGradient(v => Loss(xd, v), sd)), actual[1], rtol: 1e-4, atol: 1e-5, what: "dScale");
    }

    [Fact]
    public void BatchNormalizationGradIsTheTrainingModeGradient()
    {
        const int n = 2, c = 3, s = 4;  // X [N, C, 2, 2]
        long[] shape = [n, c, 2, 2];
        var x = Floats("x", shape, 60);
        var scale = Floats("scale", [c], 61, 0.5, 1.5);
        var dy = Floats("dY", shape, 62);
        var (xd, sd, gd) = (D(x), D(scale), D(dy));
        int At(int b, int ch, int k) => (b * c + ch) * s + k;
        (double Mean, double Inv) Stats(double[] xv, int ch)
        {
            double m = 0, v = 0;
            for (int b = 0; b < n; b++) for (int k = 0; k < s; k++) m += xv[At(b, ch, k)];
            m /= n * s;
            for (int b = 0; b < n; b++) for (int k = 0; k < s; k++) v += (xv[At(b, ch, k)] - m) * (xv[At(b, ch, k)] - m);
            return (m, 1 / Math.Sqrt(v / (n * s) + Epsilon));
        }
        // Training mode: y = scale·(x − μ_B)/√(σ²_B + ε) + B with the batch's own (biased) statistics; L = Σ y·dY.
        double Loss(double[] xv, double[] sv, double[] bv)
        {
            double l = 0;
            for (int ch = 0; ch < c; ch++)
            {
                var (m, inv) = Stats(xv, ch);
                for (int b = 0; b < n; b++) for (int k = 0; k < s; k++) l += (sv[ch] * (xv[At(b, ch, k)] - m) * inv + bv[ch]) * gd[At(b, ch, k)];
            }
            return l;
        }
        var stats = Enumerable.Range(0, c).Select(ch => Stats(xd, ch)).ToArray();
        var bias = new double[c];
        var actual = RunLowered("BatchNormalizationGrad",
            [dy, x, scale, new Feed("mean", stats.Select(t => (float)t.Mean).ToArray(), [c]), new Feed("invStd", stats.Select(t => (float)t.Inv).ToArray(), [c])],
            ["dX", "dScale", "dBias"], [A.Attr("epsilon", Epsilon)]);
        AssertClose(F(NumericGradient(v => Loss(v, sd, bias), xd)), actual[0], rtol: 1e-4, atol: 1e-5, what: "dX");
        AssertClose(F(NumericGradient(v => Loss(xd, v, bias), sd)), actual[1], rtol: 1e-4, atol: 1e-5, what: "dScale");
        AssertClose(F(NumericGradient(v => Loss(xd, sd, v), bias)), actual[2], rtol: 1e-4, atol: 1e-5, what: "dBias");
    }

    [Fact]
    public void BatchNormalizationGradRefusesMomentum()
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() => RunLowered("BatchNormalizationGrad",
            [Floats("dY", [2, 1], 1), Floats("x", [2, 1], 2), Floats("s", [1], 3), Floats("m", [1], 4), Floats("v", [1], 5)], ["dX"], [A.Attr("momentum", 0.9f)]));
        Assert.Contains("attribute 'momentum' is not supported", e.Message);
    }
}
