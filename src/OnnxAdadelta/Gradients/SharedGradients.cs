using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;

namespace OnnxAdadelta.Gradients;

/// <summary>
/// The static geometry of a sliding window along the spatial axes, with explicit pads.
/// </summary>
/// <param name="In">Spatial sizes of the input.</param>
/// <param name="Out">Spatial sizes of the output.</param>
/// <param name="Kernel">Kernel sizes (undilated).</param>
/// <param name="Strides">Strides.</param>
/// <param name="Dilations">Dilations.</param>
/// <param name="Begin">Leading pads.</param>
/// <param name="End">Trailing pads.</param>
internal sealed record Window(long[] In, long[] Out, long[] Kernel, long[] Strides, long[] Dilations, long[] Begin, long[] End)
{
    /// <summary>The number of spatial axes.</summary>
    public int Count => In.Length;

    /// <summary>The extent of the dilated kernel along axis <paramref name="i"/>.</summary>
    public long Effective(int i) => (Kernel[i] - 1) * Dilations[i] + 1;

    /// <summary>The output size along axis <paramref name="i"/> in floor mode with <paramref name="end"/> as the trailing pad.</summary>
    public long FloorOut(int i, long end) => FloorDiv(In[i] + Begin[i] + end - Effective(i), Strides[i]) + 1;

    /// <summary>
    /// The output size along axis <paramref name="i"/> as the forward op computes it: floor mode, or ceil mode where
    /// a last window that would start in the trailing padding is dropped (as ONNX and ONNX Runtime do).
    /// </summary>
    public long ForwardOut(int i, bool ceil)
    {
        long span = In[i] + Begin[i] + End[i] - Effective(i);
        if (!ceil) return FloorDiv(span, Strides[i]) + 1;
        long o = -FloorDiv(-span, Strides[i]) + 1;
        if ((o - 1) * Strides[i] >= In[i] + Begin[i]) o--;
        return o;
    }

    /// <summary>
    /// The input elements that the windows never reach at the end of axis <paramref name="i"/> (at most
    /// stride − 1): the <c>output_padding</c> that makes a ConvTranspose over these windows as long as the input.
    /// </summary>
    public long Leftover(int i, long end) => In[i] + Begin[i] + end - Effective(i) - (Out[i] - 1) * Strides[i];

    /// <summary>The pads in ONNX order: all begins, then all ends.</summary>
    public long[] Pads(long[] end) => [.. Begin, .. end];

    /// <summary>This window with other output sizes.</summary>
    public Window WithOut(long[] output) => this with { Out = output };

    private static long FloorDiv(long a, long b) => a >= 0 ? a / b : -((-a + b - 1) / b);

    /// <summary>
    /// Reads strides, dilations, pads and auto_pad from <paramref name="node"/> and returns the window over
    /// <paramref name="input"/> with explicit pads (its <see cref="Out"/> is <paramref name="output"/>, or the floor-mode
    /// size when null). SAME_UPPER/SAME_LOWER pads follow ONNX Runtime: the total is (⌈in/stride⌉ − 1)·stride + kernel
    /// − in, split with the odd element at the end (UPPER) or the beginning (LOWER). With a stride larger than the
    /// kernel the total can be negative: a negative trailing pad only drops input the windows never reach (the same as
    /// none), a negative leading one is refused.
    /// </summary>
    public static Window FromAttributes(NodeProto node, long[] input, long[]? output, long[] kernel, Func<string, OnnxAdadeltaException> fail)
    {
        int k = kernel.Length;
        AttributeProto? Attribute(string name) => node.Attribute.FirstOrDefault(a => a.Name == name);
        long[] PerAxis(string name)
        {
            var v = Attribute(name) is { Ints.Count: > 0 } a ? a.Ints.ToArray() : [.. Enumerable.Repeat(1L, k)];
            if (v.Length != k) throw fail($"{name} has {v.Length} values for {k} spatial axes");
            if (v.Any(s => s < 1)) throw fail($"{name} [{string.Join(",", v)}] must be positive");
            return v;
        }
        var strides = PerAxis("strides");
        var dilations = PerAxis("dilations");
        var begin = new long[k];
        var end = new long[k];
        var autoPad = Attribute("auto_pad")?.S.ToStringUtf8() ?? "NOTSET";
        switch (autoPad)
        {
            case "NOTSET" or "":
                if (Attribute("pads") is { Ints.Count: > 0 } p)
                {
                    var pads = p.Ints.ToArray();
                    if (pads.Length != 2 * k) throw fail($"pads has {pads.Length} values for {k} spatial axes ({2 * k} expected)");
                    if (pads.Any(v => v < 0)) throw fail($"pads [{string.Join(",", pads)}] are negative");
                    Array.Copy(pads, 0, begin, 0, k);
                    Array.Copy(pads, k, end, 0, k);
                }
                break;
            case "VALID":
                break;
            case "SAME_UPPER" or "SAME_LOWER":
                if (dilations.Any(d => d != 1))
                    throw fail($"auto_pad={autoPad} with dilations [{string.Join(",", dilations)}] is not supported (ONNX Runtime refuses it for Conv and pads pools by the undilated kernel); use explicit pads");
                for (int i = 0; i < k; i++)
                {
                    long target = (input[i] + strides[i] - 1) / strides[i];
                    long needed = (target - 1) * strides[i] + kernel[i] - input[i];
                    begin[i] = autoPad == "SAME_UPPER" ? needed / 2 : (needed + 1) / 2;
                    end[i] = Math.Max(0, needed - begin[i]);
                    if (begin[i] < 0)
                        throw fail($"auto_pad={autoPad} on spatial axis {i} (size {input[i]}, stride {strides[i]}, kernel {kernel[i]}) gives a negative leading pad, where ONNX Runtime's windows are not well defined; use explicit pads");
                }
                break;
            default:
                throw fail($"auto_pad='{autoPad}' is not an ONNX padding mode (NOTSET, SAME_UPPER, SAME_LOWER, VALID)");
        }
        var window = new Window(input, output ?? new long[k], kernel, strides, dilations, begin, end);
        return output is null ? window.WithOut([.. Enumerable.Range(0, k).Select(i => window.FloorOut(i, end[i]))]) : window;
    }
}

/// <summary>
/// Gradients of the sliding-window ops built from standard ops, shared by the autodiff's rules and the lowering of
/// ONNX Runtime's ConvGrad / MaxPoolGrad / AveragePoolGrad.
/// </summary>
internal static class WindowGradients
{
    /// <summary>
    /// Conv's kernel sizes: <c>kernel_shape</c>, or else the weight's static spatial sizes; fails naming the weight when
    /// its shape is unknown, it has fewer than three axes, or the two disagree in rank.
    /// </summary>
    public static long[] ConvKernel(NodeRuleContext c, string w, long?[]? wDims)
    {
        if (wDims is null) throw c.Fail($"the shape of the weight '{w}' is unknown");
        int k = wDims.Length - 2;
        if (k < 1) throw c.Fail($"the weight '{w}' has rank {wDims.Length}; at least 3 was expected");
        var kernel = c.Ints("kernel_shape") is { Length: > 0 } ks ? ks
            : wDims.Skip(2).All(d => d is not null) ? [.. wDims.Skip(2).Select(d => d!.Value)]
            : throw c.Fail($"the kernel size of '{w}' is not static and kernel_shape is not given");
        if (kernel.Length != k) throw c.Fail($"kernel_shape has {kernel.Length} values for {k} spatial axes");
        return kernel;
    }

    /// <summary>Conv's <c>group</c> attribute (default 1); fails unless it is positive.</summary>
    public static long ConvGroup(NodeRuleContext c)
    {
        long group = c.Int("group", 1);
        return group >= 1 ? group : throw c.Fail($"group={group} must be positive");
    }

    /// <summary>
    /// dX of Conv: the transposed convolution of <paramref name="go"/> with <paramref name="w"/> (same strides,
    /// dilations, pads and group), with <c>output_padding</c> set to the trailing input elements no window reaches,
    /// so it has exactly the input's shape.
    /// </summary>
    public static string ConvInput(NodeRuleContext e, string go, string w, Window win, long group)
    {
        var outputPadding = Enumerable.Range(0, win.Count).Select(i => win.Leftover(i, win.End[i])).ToArray();
        return e.Op("ConvTranspose", [go, w],
            GraphBuilder.Attr("kernel_shape", win.Kernel), GraphBuilder.Attr("strides", win.Strides),
            GraphBuilder.Attr("dilations", win.Dilations), GraphBuilder.Attr("pads", win.Pads(win.End)), GraphBuilder.Attr("group", group),
            GraphBuilder.Attr("output_padding", outputPadding));
    }

    /// <summary>
    /// dW of Conv: dW[m,c,κ] = Σ_{n,o} x[n, c, κ·d + o·s − pb] · g[n,m,o] is itself a convolution in which the batch
    /// and channel axes trade places: the input is X laid out as [C/group, group·N, …] (so that each group's channels
    /// of every sample form one Conv group), the kernel is GO laid out as [M, N, …], the forward dilations become the
    /// strides and the forward strides the dilations, with the forward pads. The result [C/group, M, K′…] is cropped to
    /// the kernel size (K′ exceeds K when the leftover input is at least one dilation long) and transposed to
    /// [M, C/group, K…]. <paramref name="m"/> and <paramref name="cg"/> (W's first two dimensions) are needed only
    /// when <paramref name="group"/> &gt; 1.
    /// </summary>
    public static string ConvWeight(NodeRuleContext e, string x, string go, Window win, long group, long? m, long? cg, string w)
    {
        int k = win.Count;
        long[] swap = [1, 0, .. Enumerable.Range(2, k).Select(a => (long)a)];
        string xr, gr;
        if (group == 1)
        {
            xr = e.Op("Transpose", [x], GraphBuilder.Attr("perm", swap));   // [C, N, D…]
            gr = e.Op("Transpose", [go], GraphBuilder.Attr("perm", swap));  // [M, N, O…]
        }
        else
        {
            long mm = m ?? throw e.Fail($"the output channel count of '{w}' is not static (needed with group={group})");
            long cc = cg ?? throw e.Fail($"the input channel count of '{w}' is not static (needed with group={group})");
            if (mm % group != 0) throw e.Fail($"{mm} output channels do not split into group={group}");
            var rest = Enumerable.Range(3, k).Select(a => (long)a).ToArray();
            // x [N, C, D…] → [N, g, C/g, D…] → [C/g, g, N, D…] → [C/g, g·N, D…]
            var xs = e.Op("Reshape", [x, e.Ints64([0, group, cc, .. win.In])]);
            xs = e.Op("Transpose", [xs], GraphBuilder.Attr("perm", [2L, 1, 0, .. rest]));
            xr = e.Op("Reshape", [xs, e.Ints64([cc, -1, .. win.In])]);
            // go [N, M, O…] → [N, g, M/g, O…] → [g, M/g, N, O…] → [M, N, O…]
            var gs = e.Op("Reshape", [go, e.Ints64([0, group, mm / group, .. win.Out])]);
            gs = e.Op("Transpose", [gs], GraphBuilder.Attr("perm", [1L, 2, 0, .. rest]));
            gr = e.Op("Reshape", [gs, e.Ints64([mm, -1, .. win.Out])]);
        }
        var dw = e.Op("Conv", [xr, gr], GraphBuilder.Attr("strides", win.Dilations), GraphBuilder.Attr("dilations", win.Strides),
            GraphBuilder.Attr("pads", win.Pads(win.End)), GraphBuilder.Attr("group", group));
        var reached = Enumerable.Range(0, k).Select(i => win.Leftover(i, win.End[i]) / win.Dilations[i] + win.Kernel[i]).ToArray();
        if (reached.Zip(win.Kernel).Any(p => p.First != p.Second))
            dw = e.Op("Slice", [dw, e.Ints64(new long[k]), e.Ints64(win.Kernel), e.Ints64([.. Enumerable.Range(2, k).Select(a => (long)a)])]);
        return e.Op("Transpose", [dw], GraphBuilder.Attr("perm", swap));
    }

    /// <summary>dB of Conv: the sum of <paramref name="go"/> over every axis but the channel axis.</summary>
    public static string ConvBias(NodeRuleContext e, string go, int spatial) =>
        e.ReduceSum(go, [0, .. Enumerable.Range(2, spatial).Select(a => (long)a)], keepDims: false);

    /// <summary>
    /// dX of MaxPool, flat: ScatterElements with reduction="add" sums <paramref name="go"/> into zeros of
    /// <paramref name="size"/> elements (a 1-D int64 value) at the row-major flat <paramref name="indices"/> (overlapping
    /// windows that pick the same element add up). The caller reshapes it to X's shape.
    /// </summary>
    public static string MaxPoolInputFlat(NodeRuleContext e, string go, string indices, string size)
    {
        var flat = e.Ints64(-1);
        var zeros = e.Op("Expand", [e.Scalar(0, go), size]);
        return e.Op("ScatterElements", [zeros, e.Op("Reshape", [indices, flat]), e.Op("Reshape", [go, flat])],
            GraphBuilder.Attr("axis", 0L), GraphBuilder.Attr("reduction", "add"));
    }

    /// <summary>
    /// dX of AveragePool as [N·C, 1, In…]: y[o] = (Σ of the in-bounds x in window o) / divisor[o], a linear map S
    /// followed by a per-position scale, so dX = Sᵀ(GO / divisor). Sᵀ is a ConvTranspose of GO (channels folded into
    /// the batch) with a ones kernel and the pool's strides, dilations and pads; 1/divisor is read off the op itself,
    /// whatever its count_include_pad and ceil_mode conventions: AveragePool(ones) = count / divisor, where count, the
    /// number of in-bounds elements per window, is a Conv of a ones image with a ones kernel. ceil_mode's extra last
    /// windows are covered by extending the trailing pad (extra pads hold zeros, so they change no sum).
    /// <paramref name="poolAttributes"/> are the forward AveragePool's attributes.
    /// </summary>
    public static string AveragePoolInput(NodeRuleContext e, string go, Window win, IEnumerable<AttributeProto> poolAttributes)
    {
        int k = win.Count;
        var end = new long[k];
        for (int i = 0; i < k; i++)
        {
            if (win.FloorOut(i, win.End[i]) > win.Out[i])
                throw e.Fail($"the output size {win.Out[i]} on spatial axis {i} is smaller than the window arithmetic gives ({win.FloorOut(i, win.End[i])})");
            end[i] = win.End[i] + Math.Max(0, (win.Out[i] - 1) * win.Strides[i] + win.Effective(i) - (win.In[i] + win.Begin[i] + win.End[i]));
        }
        var strides = GraphBuilder.Attr("strides", win.Strides);
        var dilations = GraphBuilder.Attr("dilations", win.Dilations);
        var pads = GraphBuilder.Attr("pads", win.Pads(end));
        var one = e.Scalar(1, go);
        var ones = e.Op("Expand", [one, e.Ints64([1, 1, .. win.In])]);
        var onesKernel = e.Op("Expand", [one, e.Ints64([1, 1, .. win.Kernel])]);
        var count = e.Op("Conv", [ones, onesKernel], strides, dilations, pads);
        var mean = e.Op("AveragePool", [ones], [.. poolAttributes.Select(a => a.Clone())]);
        var scale = e.Op("Div", [mean, e.Op("Max", [count, one])]);
        var g = e.Op("Reshape", [e.Op("Mul", [go, scale]), e.Ints64([-1, 1, .. win.Out])]);
        var outputPadding = Enumerable.Range(0, k).Select(i => win.Leftover(i, end[i])).ToArray();
        return e.Op("ConvTranspose", [g, onesKernel], GraphBuilder.Attr("kernel_shape", win.Kernel), strides, dilations, pads,
            GraphBuilder.Attr("output_padding", outputPadding));
    }
}

/// <summary>
/// The input gradient of the normalizations, shared by the autodiff's LayerNormalization rule and the lowering of
/// ONNX Runtime's LayerNormalizationGrad, SimplifiedLayerNormalizationGrad, InvertibleLayerNormalizationGrad and
/// BatchNormalizationGrad.
/// </summary>
internal static class NormalizationGradients
{
    /// <summary>
    /// The statistics a normalization recomputes for its gradient: r = 1/√(var + ε) and x̂ = (x − μ)·r, mean and
    /// (biased) variance over <paramref name="axes"/> of <paramref name="x"/>, ε the node's <c>epsilon</c> attribute
    /// (default 1e-5) in the element type of <paramref name="like"/>.
    /// </summary>
    public static (string Inv, string Normalized) Statistics(GradientContext c, string x, long[] axes, string like)
    {
        var centered = c.Op("Sub", [x, c.ReduceMean(x, axes, keepDims: true)]);
        var variance = c.ReduceMean(c.Op("Mul", [centered, centered]), axes, keepDims: true);
        var inv = c.Op("Reciprocal", [c.Op("Sqrt", [c.Op("Add", [variance, c.Scalar(c.Float("epsilon", 1e-5f), like)])])]);
        return (inv, c.Op("Mul", [centered, inv]));
    }

    /// <summary>
    /// With x̂ = <paramref name="normalized"/> = (x − μ)·r, r = <paramref name="inv"/> (both broadcast over the
    /// normalized <paramref name="axes"/>) and ĝ = <paramref name="g"/> the upstream gradient times the scale:
    /// dX = r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)), means over <paramref name="axes"/>. Without centering (RMS normalization,
    /// x̂ = x·r) the mean(ĝ) term drops: dX = r·(ĝ − x̂·mean(ĝ·x̂)).
    /// </summary>
    public static string Input(NodeRuleContext e, string g, string normalized, string inv, long[] axes, bool centered)
    {
        var meanGx = e.ReduceMean(e.Op("Mul", [g, normalized]), axes, keepDims: true);
        var centeredG = centered ? e.Op("Sub", [g, e.ReduceMean(g, axes, keepDims: true)]) : g;
        return e.Op("Mul", [inv, e.Op("Sub", [centeredG, e.Op("Mul", [normalized, meanGx])])]);
    }
}
