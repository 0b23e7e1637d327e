using OnnxAdadelta.Onnx;
using G = OnnxAdadelta.Gradients.GradientContext;

namespace OnnxAdadelta.Gradients;

/// <summary>
/// Gradients of the resampling ops: Resize (nearest, linear and cubic, antialias, every coordinate transformation,
/// scales or sizes, axes, keep_aspect_ratio_policy) and the block rearrangements DepthToSpace (DCR, CRD) and SpaceToDepth.
/// </summary>
public static partial class GradientRules
{
    private static void RegisterResampling(Dictionary<string, GradientRuleInfo> r)
    {
        Add(r, ResizeGradient, Inputs(0), "Resize");
        Add(r, c =>
        {
            // SpaceToDepth is undone exactly by DepthToSpace in DCR mode.
            KnownAttributes(c, "blocksize");
            c.SetGI(0, c.Op("DepthToSpace", [c.GO(0)!], G.Attr("blocksize", BlockSize(c)), G.Attr("mode", "DCR")));
        }, Inputs(0), "SpaceToDepth");
        Add(r, DepthToSpaceGradient, Inputs(0), "DepthToSpace");
    }

    private static long BlockSize(GradientContext c)
    {
        long b = c.Attribute("blocksize") is { } a ? a.I : throw c.Fail("blocksize is required");
        return b >= 1 ? b : throw c.Fail($"blocksize={b} must be positive");
    }

    /// <summary>
    /// DepthToSpace moves each element once, so dX is the inverse rearrangement of GO. DCR mode is undone exactly by
    /// SpaceToDepth. CRD mode reads x [N, C, H, W] as [N, C/b², b, b, H, W] and lays it out as [N, C/b², H, b, W, b];
    /// dX reshapes GO to the latter (H read from X's shape at run time), transposes back and takes X's shape.
    /// </summary>
    private static void DepthToSpaceGradient(GradientContext c)
    {
        KnownAttributes(c, "blocksize", "mode");
        long b = BlockSize(c);
        var go = c.GO(0)!;
        switch (c.String("mode", "DCR"))
        {
            case "DCR":
                c.SetGI(0, c.Op("SpaceToDepth", [go], G.Attr("blocksize", b)));
                break;
            case "CRD":
                var x = c.I(0);
                if (c.Type(x).Rank is { } rank && rank != 4) throw c.Fail($"'{x}' has rank {rank}; DepthToSpace takes [N, C, H, W]");
                var height = c.Op("Slice", [c.Shape(x), c.Ints64(2), c.Ints64(3)]);
                var blocks = c.Op("Reshape", [go, c.Op("Concat", [c.Ints64(0, 0), height, c.Ints64(b, -1, b)], G.Attr("axis", 0L))]);
                c.SetGI(0, c.ReshapeLike(c.Op("Transpose", [blocks], G.Attr("perm", [0L, 1, 3, 5, 2, 4])), x));
                break;
            case var m:
                throw c.Fail($"mode='{m}' is not a DepthToSpace mode (DCR, CRD)");
        }
    }

    /// <summary>
    /// Resize is linear in X and separable: along each resized axis a, y = M_a·x with a static interpolation matrix
    /// M_a [out, in] (one 1 per row for nearest, two weights for linear, four for cubic, a stretched filter with
    /// antialias, a zero row where tf_crop_and_resize extrapolates). So dX applies each M_aᵀ to GO along its axis (Transpose, MatMul, Transpose).
    /// The matrices are built here from the static sizes and the constant scales/sizes/roi, following ONNX Runtime's
    /// arithmetic: coordinates in float32; an axis whose scale is 1 copied unchanged (except by 1-D nearest; with
    /// antialias, an axis whose size stays); X copied when no size changes; nearest indices and linear and cubic
    /// neighbours clamped to the input. The input sizes of the resized axes must be static.
    /// </summary>
    private static void ResizeGradient(GradientContext c)
    {
        KnownAttributes(c, "antialias", "axes", "coordinate_transformation_mode", "cubic_coeff_a", "exclude_outside", "extrapolation_value",
            "keep_aspect_ratio_policy", "mode", "nearest_mode");
        var mode = c.String("mode", "nearest");
        if (mode is not ("nearest" or "linear" or "cubic")) throw c.Fail($"mode='{mode}' is not a Resize mode (nearest, linear, cubic)");
        bool antialias = c.Int("antialias", 0) != 0;
        if (antialias && mode == "nearest") throw c.Fail("antialias=1 applies to linear and cubic modes only, not mode='nearest'");
        bool excludeOutside = c.Int("exclude_outside", 0) != 0;
        if (excludeOutside && mode != "cubic" && !antialias) throw c.Fail($"exclude_outside=1 applies to cubic mode or antialias=1 only, not mode='{mode}'");
        float cubicA = c.Float("cubic_coeff_a", -0.75f);
        var transform = c.String("coordinate_transformation_mode", "half_pixel");
        if (transform is not ("half_pixel" or "half_pixel_symmetric" or "pytorch_half_pixel" or "align_corners" or "asymmetric" or "tf_crop_and_resize" or "tf_half_pixel_for_nn"))
            throw c.Fail($"coordinate_transformation_mode='{transform}' is not an ONNX coordinate transformation");
        var nearest = c.String("nearest_mode", "round_prefer_floor");
        if (mode == "nearest" && nearest is not ("round_prefer_floor" or "round_prefer_ceil" or "floor" or "ceil"))
            throw c.Fail($"nearest_mode='{nearest}' is not an ONNX nearest mode (round_prefer_floor, round_prefer_ceil, floor, ceil)");

        var x = c.I(0);
        var inDims = c.Type(x).Dims ?? throw c.Fail($"the rank of '{x}' is unknown");
        int rank = inDims.Length;
        long Static(int a) => inDims[a] ?? throw c.Fail(
            $"axis {a} of '{x}' ([{string.Join(",", inDims.Select(d => d?.ToString() ?? "?"))}]) is resized, so its size must be static to build the Resize gradient; fix the model input's symbolic dimensions with --input-shape NAME=D0,...");

        var axes = c.Ints("axes") is { Length: > 0 } ax ? ax.Select(a => a < 0 ? a + rank : a).ToArray() : [.. Enumerable.Range(0, rank).Select(a => (long)a)];
        if (axes.Any(a => a < 0 || a >= rank) || axes.Distinct().Count() != axes.Length)
            throw c.Fail($"axes [{string.Join(",", c.Ints("axes")!)}] must be distinct axes of a rank-{rank} input");
        var (scales, output) = ResizeScales(c, Static, rank, axes);
        // ONNX Runtime copies the other axes: those of scale 1 (but for its 1-D nearest path), with antialias those whose size stays.
        bool Resized(int a) => antialias ? scales[a] != 1f && Static(a) != output[a] : scales[a] != 1f || (mode == "nearest" && rank == 1);
        var outDims = c.Type(c.O(0)).Dims;
        for (int a = 0; a < rank; a++)
            if (Resized(a) && outDims is not null && outDims.Length == rank && outDims[a] is { } d && d != output[a])
                throw c.Fail($"the output size {d} on axis {a} differs from the {output[a]} that the scales/sizes give");

        var roi = new float[2 * rank];
        for (int a = 0; a < rank; a++) roi[rank + a] = 1;
        if (transform == "tf_crop_and_resize")
        {
            var given = c.ConstantFloats(1) ?? throw c.Fail("coordinate_transformation_mode='tf_crop_and_resize' needs a constant float roi input");
            if (given.Length != 2 * axes.Length) throw c.Fail($"roi has {given.Length} values for {axes.Length} axes ({2 * axes.Length} expected)");
            for (int j = 0; j < axes.Length; j++)
            {
                roi[axes[j]] = (float)given[j];
                roi[rank + axes[j]] = (float)given[axes.Length + j];
            }
        }

        var g = c.GO(0)!;
        // ONNX Runtime copies X when no size changes, whatever the scales.
        bool copy = Enumerable.Range(0, rank).All(a => !Resized(a) || Static(a) == output[a]);
        for (int a = rank - 1; a >= 0 && !copy; a--)
        {
            if (!Resized(a)) continue;
            long inLen = Static(a);
            var m = ResizeMatrix(new(mode, transform, nearest, cubicA, excludeOutside, antialias), inLen, output[a], scales[a], roi[a], roi[rank + a]);
            var matrix = c.Op("CastLike", [c.Constant(Tensors.Create("", m, output[a], inLen)), g]);
            long[] perm = [.. Enumerable.Range(0, rank).Where(i => i != a).Select(i => (long)i), a];
            bool last = a == rank - 1;
            var moved = last ? g : c.Op("Transpose", [g], G.Attr("perm", perm));
            var product = c.Op("MatMul", [moved, matrix]);
            long[] back = [.. Enumerable.Range(0, rank).Select(i => (long)(i < a ? i : i == a ? rank - 1 : i - 1))];
            g = last ? product : c.Op("Transpose", [product], G.Attr("perm", back));
        }
        c.SetGI(0, g);
    }

    /// <summary>
    /// The per-axis scales (float32, as ONNX Runtime keeps them) and output sizes: from the constant scales input
    /// (size = ⌊scale·in⌋), or from the constant sizes input (scale = out/in), then keep_aspect_ratio_policy: not_larger
    /// (not_smaller) gives every resized axis the smallest (largest) of their scales and the size round(scale·in).
    /// Axes left out of <paramref name="axes"/> keep scale 1 (their output size is not read). <paramref name="input"/>
    /// gives an axis's static size (or fails).
    /// </summary>
    private static (float[] Scales, long[] Output) ResizeScales(GradientContext c, Func<int, long> input, int rank, long[] axes)
    {
        var scales = Enumerable.Repeat(1f, rank).ToArray();
        var output = new long[rank];
        var given = c.ConstantFloats(2) is { Length: > 0 } s ? s : null;
        var sizes = c.ConstantInts(3) is { Length: > 0 } z ? z : null;
        if (given is null && c.HasInput(2) && c.ConstantFloats(2) is null)
            throw c.Fail($"the scales input '{c.I(2)}' is not a constant; the gradient needs its values");
        if (sizes is null && c.HasInput(3) && c.ConstantInts(3) is null)
            throw c.Fail($"the sizes input '{c.I(3)}' is not a constant; the gradient needs its values");
        if ((given is null) == (sizes is null)) throw c.Fail("exactly one of scales and sizes must be given");
        var values = (IReadOnlyList<double>?)given ?? sizes!.Select(v => (double)v).ToArray();
        if (values.Count != axes.Length) throw c.Fail($"{(given is null ? "sizes" : "scales")} has {values.Count} values for {axes.Length} axes");
        if (given is not null)
        {
            for (int j = 0; j < axes.Length; j++)
            {
                float scale = (float)given[j];
                if (!(scale > 0)) throw c.Fail($"scales value {scale} must be positive");
                scales[axes[j]] = scale;
                if (scale != 1f || rank == 1) output[axes[j]] = (long)(scale * input((int)axes[j]));
            }
            return (scales, output);
        }
        foreach (var (a, j) in axes.Select((a, j) => (a, j)))
        {
            long inLen = input((int)a);
            output[a] = sizes![j];
            scales[a] = inLen == 0 ? 1f : (float)sizes[j] / inLen;
        }
        var policy = c.String("keep_aspect_ratio_policy", "stretch");
        if (policy == "stretch") return (scales, output);
        if (policy is not ("not_larger" or "not_smaller"))
            throw c.Fail($"keep_aspect_ratio_policy='{policy}' is not an ONNX policy (stretch, not_larger, not_smaller)");
        float common = policy == "not_larger" ? axes.Min(a => scales[a]) : axes.Max(a => scales[a]);
        foreach (var a in axes)
        {
            scales[a] = common;
            output[a] = (long)MathF.Round(common * input((int)a), MidpointRounding.AwayFromZero);
        }
        return (scales, output);
    }

    /// <summary>
    /// The [out, in] interpolation matrix of one axis, row-major. The source coordinate of output o is computed in
    /// float32 as ONNX Runtime does (half_pixel_symmetric and the one-element tf_crop_and_resize partly in float64,
    /// as there).
    /// </summary>
    private static double[] ResizeMatrix(ResizeMode r, long inLen, long outLen, float scale, float roiStart, float roiEnd)
    {
        var (mode, transform, nearest) = (r.Mode, r.Transform, r.Nearest);
        var m = new double[outLen * inLen];
        float lengthOriginal = inLen, lengthResized = outLen;
        for (long o = 0; o < outLen; o++)
        {
            float xr = o;
            float original = transform switch
            {
                "asymmetric" => xr / scale,
                "pytorch_half_pixel" => lengthResized > 1 ? (xr + 0.5f) / scale - 0.5f : 0f,
                "tf_half_pixel_for_nn" => (xr + 0.5f) / scale,
                "align_corners" => lengthResized == 1 ? 0f : xr * (lengthOriginal - 1) / (lengthResized - 1),
                "tf_crop_and_resize" => lengthResized > 1
                    ? roiStart * (lengthOriginal - 1) + xr * (roiEnd - roiStart) * (lengthOriginal - 1) / (lengthResized - 1)
                    : (float)(0.5 * (roiStart + roiEnd) * (lengthOriginal - 1)),
                "half_pixel_symmetric" => HalfPixelSymmetric(xr, scale, lengthResized, lengthOriginal),
                _ => (xr + 0.5f) / scale - 0.5f,
            };
            if (transform == "tf_crop_and_resize" && (original < 0 || original > lengthOriginal - 1)) continue; // extrapolated: no X
            if (mode == "nearest")
            {
                long i = nearest switch
                {
                    "round_prefer_ceil" => (long)MathF.Round(original, MidpointRounding.AwayFromZero),
                    "floor" => (long)MathF.Floor(original),
                    "ceil" => (long)MathF.Ceiling(original),
                    _ => original == (long)original + 0.5f ? (long)MathF.Floor(original) : (long)MathF.Round(original, MidpointRounding.AwayFromZero),
                };
                m[o * inLen + Math.Clamp(i, 0, inLen - 1)] = 1;
                continue;
            }
            if (r.Antialias)
            {
                AntialiasRow(m.AsSpan((int)(o * inLen), (int)inLen), original, scale, mode == "cubic", r.CubicA, r.ExcludeOutside);
                continue;
            }
            if (mode == "cubic")
            {
                CubicRow(m.AsSpan((int)(o * inLen), (int)inLen), original, r.CubicA, r.ExcludeOutside);
                continue;
            }
            float at = Math.Max(0f, Math.Min(original, lengthOriginal - 1));
            long x1 = Math.Min((long)at, inLen - 1), x2 = Math.Min(x1 + 1, inLen - 1);
            float w2 = Math.Abs(at - x1), w1 = Math.Abs(at - x2);
            if (x1 == x2) w1 = w2 = 0.5f;
            m[o * inLen + x1] += w1;
            m[o * inLen + x2] += w2;
        }
        return m;
    }

    /// <summary>
    /// One row of cubic interpolation (Keys' kernel with coefficient <paramref name="a"/>) at <paramref name="original"/>:
    /// the four neighbours ⌊x⌋−1 … ⌊x⌋+2, clamped to the edge; with <paramref name="excludeOutside"/> the ones outside
    /// get weight 0 and the rest are renormalized to sum 1. The weights are computed in float32 as ONNX Runtime does.
    /// </summary>
    private static void CubicRow(Span<double> row, float original, float a, bool excludeOutside)
    {
        long xInt = (long)MathF.Floor(original);
        float s = Math.Abs(original - xInt);
        Span<float> w =
        [
            ((a * (s + 1) - 5 * a) * (s + 1) + 8 * a) * (s + 1) - 4 * a,
            ((a + 2) * s - (a + 3)) * s * s + 1,
            ((a + 2) * (1 - s) - (a + 3)) * (1 - s) * (1 - s) + 1,
            ((a * (2 - s) - 5 * a) * (2 - s) + 8 * a) * (2 - s) - 4 * a,
        ];
        float sum = 1;
        int n = row.Length;
        if (excludeOutside)
        {
            sum = 0;
            for (int i = 0; i < 4; i++)
            {
                long at = xInt - 1 + i;
                if (at < 0 || at >= n) w[i] = 0;
                sum += w[i];
            }
        }
        for (int i = 0; i < 4; i++) row[(int)Math.Clamp(xInt - 1 + i, 0, n - 1)] += w[i] / sum;
    }

    /// <summary>How Resize interpolates: mode, coordinate transformation, nearest rounding and the cubic settings.</summary>
    private sealed record ResizeMode(string Mode, string Transform, string Nearest, float CubicA, bool ExcludeOutside, bool Antialias);

    /// <summary>
    /// One row of antialiased linear or cubic resampling, as ONNX Runtime (after Pillow) computes it in float32: the
    /// filter (triangle of support 2, or Keys' cubic of support 4) is stretched by 1/scale when downsampling and centred
    /// at the source coordinate + 0.5; its taps ⌊centre ± support/2·max(1, 1/scale) + 0.5⌋ beyond the input fold onto
    /// the edge elements, or with <paramref name="excludeOutside"/> are dropped, and the weights are normalized to sum 1.
    /// </summary>
    private static void AntialiasRow(Span<double> row, float original, float scale, bool cubic, float a, bool excludeOutside)
    {
        float inverse = 1.0f / scale;
        float support = inverse >= 1.0f ? (cubic ? 4f : 2f) * 0.5f * inverse : (cubic ? 4f : 2f) * 0.5f;
        float stretch = inverse >= 1.0f ? 1.0f / inverse : 1.0f;
        float center = 0.5f + original;
        long first = (long)MathF.Floor(center - support + 0.5f), end = (long)MathF.Floor(center + support + 0.5f);
        int n = row.Length;
        if (excludeOutside) (first, end) = (Math.Max(first, 0), Math.Min(end, n));
        var weights = new float[end - first];
        float total = 0;
        for (long x = 0; x < end - first; x++)
        {
            float t = Math.Abs((x + first - center + 0.5f) * stretch);
            float w = cubic
                ? t < 1f ? ((a + 2.0f) * t - (a + 3.0f)) * t * t + 1 : t < 2f ? (((t - 5.0f) * t + 8f) * t - 4f) * a : 0f
                : t < 1f ? 1f - t : 0f;
            weights[x] = w;
            total += w;
        }
        float norm = total == 0f ? 1f : 1f / total;
        for (long x = 0; x < end - first; x++) row[(int)Math.Clamp(x + first, 0, n - 1)] += weights[x] * norm;
    }

    private static float HalfPixelSymmetric(float xr, float scale, float lengthResized, float lengthOriginal)
    {
        float outputWidth = scale * lengthOriginal;
        float adjustment = lengthResized / outputWidth;
        float center = lengthOriginal / 2;
        float offset = center * (1 - adjustment);
        return (float)(offset + ((double)xr + 0.5) / scale - 0.5);
    }
}
