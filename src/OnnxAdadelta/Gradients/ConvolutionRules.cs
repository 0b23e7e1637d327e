using G = OnnxAdadelta.Gradients.GradientContext;

namespace OnnxAdadelta.Gradients;

/// <summary>
/// Gradients of the sliding-window ops: Conv and ConvTranspose (1-D, 2-D, 3-D, grouped), MaxPool, AveragePool, GlobalAveragePool and
/// GlobalMaxPool. Rules that need the window arithmetic (Conv, AveragePool) read the static spatial sizes of the input
/// and output from shape inference and turn <c>auto_pad</c> into explicit pads the way ONNX Runtime does.
/// </summary>
public static partial class GradientRules
{
    private static void RegisterConvolution(Dictionary<string, GradientRuleInfo> r)
    {
        Add(r, ConvGradient, Inputs(0, 1, 2), "Conv");
        Add(r, ConvTransposeGradient, Inputs(0, 1, 2), "ConvTranspose");
        Add(r, MaxPoolGradient, Inputs(0), "MaxPool");
        Add(r, AveragePoolGradient, Inputs(0), "AveragePool");
        Add(r, c =>
        {
            // y = mean over the spatial axes: every input element gets g / (number of spatial elements).
            var x = c.I(0);
            var count = c.Op("CastLike", [c.Op("Div", [c.Op("Size", [x]), c.Op("Size", [c.O(0)])]), x]);
            c.SetGI(0, c.Op("Expand", [c.Op("Div", [c.GO(0)!, count]), c.Shape(x)]));
        }, Inputs(0), "GlobalAveragePool");
        Add(r, c =>
        {
            // The gradient goes to the spatial maxima of each (n, c), split evenly among ties (as ReduceMax).
            var x = c.I(0);
            var mask = c.Op("Equal", [x, c.O(0)]);
            var ties = c.ReduceSum(c.Op("CastLike", [mask, x]), [.. Enumerable.Range(2, c.Rank(x) - 2).Select(a => (long)a)], keepDims: true);
            c.SetGI(0, c.Op("Where", [mask, c.Op("Div", [c.GO(0)!, ties]), c.Scalar(0, x)]));
        }, Inputs(0), "GlobalMaxPool");
    }

    /// <summary>Fails on attributes the rule does not know, naming them.</summary>
    private static void KnownAttributes(GradientContext c, params string[] known)
    {
        foreach (var a in c.Node.Attribute)
            if (!known.Contains(a.Name))
                throw c.Fail($"attribute '{a.Name}' is not handled by the gradient rule (known: {string.Join(", ", known)})");
    }

    /// <summary>The static spatial sizes of <paramref name="value"/> (its dimensions after N and C).</summary>
    private static long[] StaticSpatial(GradientContext c, string value, int spatial)
    {
        var dims = c.Type(value).Dims ?? throw c.Fail($"the rank of '{value}' is unknown");
        if (dims.Length != spatial + 2)
            throw c.Fail($"'{value}' has rank {dims.Length}; {spatial + 2} (N, C and {spatial} spatial axes) was expected");
        var sizes = dims.Skip(2).ToArray();
        if (sizes.Any(d => d is null))
            throw c.Fail($"the spatial dimensions of '{value}' ([{string.Join(",", dims.Select(d => d?.ToString() ?? "?"))}]) must be static to build this gradient; give the model fixed spatial input sizes");
        return [.. sizes.Select(d => d!.Value)];
    }

    /// <summary>
    /// The window of this node over its input and output, with explicit pads (see <see cref="Window.FromAttributes"/>);
    /// the spatial sizes come from shape inference and must be static.
    /// </summary>
    private static Window SlidingWindow(GradientContext c, long[] kernel)
    {
        int k = kernel.Length;
        return Window.FromAttributes(c.Node, StaticSpatial(c, c.I(0), k), StaticSpatial(c, c.O(0), k), kernel, c.Fail);
    }

    /// <summary>
    /// Conv: y[n,m,o] = Σ_{c∈group(m), κ} x[n, c, o·s − pb + κ·d] · w[m, c, κ] (+ b[m]).
    /// <list type="bullet">
    /// <item>dX is the transposed convolution of GO with W (same strides, dilations, pads and group), with
    /// <c>output_padding</c> set to the trailing input elements no window reaches, so it has exactly X's shape.</item>
    /// <item>dW[m,c,κ] = Σ_{n,o} x[n, c, κ·d + o·s − pb] · g[n,m,o] is itself a convolution in which the batch and
    /// channel axes trade places: the input is X laid out as [C/group, group·N, …] (so that each group's channels of
    /// every sample form one Conv group), the kernel is GO laid out as [M, N, …], the forward dilations become the
    /// strides and the forward strides the dilations, with the forward pads. The result [C/group, M, K′…] is cropped
    /// to the kernel size (K′ exceeds K when the leftover input is at least one dilation long) and transposed to
    /// [M, C/group, K…].</item>
    /// <item>dB = Σ GO over every axis but the channel axis.</item>
    /// </list>
    /// </summary>
    private static void ConvGradient(GradientContext c)
    {
        KnownAttributes(c, "auto_pad", "dilations", "group", "kernel_shape", "pads", "strides");
        var x = c.I(0);
        var w = c.I(1);
        var go = c.GO(0)!;
        var wDims = c.Type(w).Dims;
        var kernel = WindowGradients.ConvKernel(c, w, wDims);
        int k = kernel.Length;
        var win = SlidingWindow(c, kernel);
        for (int i = 0; i < k; i++)
            if (win.FloorOut(i, win.End[i]) != win.Out[i])
                throw c.Fail($"the output size {win.Out[i]} on spatial axis {i} does not follow from the input size {win.In[i]}, pads {win.Begin[i]}+{win.End[i]}, kernel {kernel[i]}, stride {win.Strides[i]} and dilation {win.Dilations[i]}");
        long group = WindowGradients.ConvGroup(c);
        if (c.IsGradientRequired(0)) c.SetGI(0, WindowGradients.ConvInput(c, go, w, win, group));
        if (c.IsGradientRequired(1)) c.SetGI(1, WindowGradients.ConvWeight(c, x, go, win, group, wDims![0], wDims[1], w));
        if (c.IsGradientRequired(2)) c.SetGI(2, WindowGradients.ConvBias(c, go, k));
    }

    /// <summary>
    /// ConvTranspose: y[n,m,o] = Σ_{c∈group(m), κ} x[n,c,i]·w[c, m mod M/g, κ] (+ b[m]) over o = i·s − pb + κ·d, the
    /// adjoint of the Conv that maps a Y-shaped z to an X-shaped result with the same W, strides, dilations, group and
    /// leading pad pb. So:
    /// <list type="bullet">
    /// <item>dX = Conv(GO, W) with those attributes; its trailing pad is the least that yields X's length.</item>
    /// <item>dW is that Conv's weight gradient with GO as its input and X as its output gradient
    /// (<see cref="WindowGradients.ConvWeight"/>).</item>
    /// <item>dB = Σ GO over every axis but the channel axis.</item>
    /// </list>
    /// The leading pad follows the ONNX spec (as ONNX Runtime runs it): <c>pads</c> (NOTSET, VALID: none); with
    /// <c>output_shape</c>, total = max(0, s·(in − 1) + output_padding + (k − 1)·d + 1 − output_shape), of which
    /// SAME_UPPER puts ⌊total/2⌋ at the beginning and every other mode the rest (the odd element at the beginning);
    /// with SAME_UPPER/SAME_LOWER and no output_shape, the same with output_shape = in·s.
    /// </summary>
    private static void ConvTransposeGradient(GradientContext c)
    {
        KnownAttributes(c, "auto_pad", "dilations", "group", "kernel_shape", "output_padding", "output_shape", "pads", "strides");
        var x = c.I(0);
        var w = c.I(1);
        var go = c.GO(0)!;
        var wDims = c.Type(w).Dims;
        var kernel = WindowGradients.ConvKernel(c, w, wDims);
        int k = kernel.Length;
        long group = WindowGradients.ConvGroup(c);
        var win = TransposedWindow(c, kernel);
        if (c.IsGradientRequired(0))
        {
            var dx = c.Op("Conv", [go, w], G.Attr("kernel_shape", kernel), G.Attr("strides", win.Strides), G.Attr("dilations", win.Dilations),
                G.Attr("pads", win.Pads(win.End)), G.Attr("group", group));
            for (int i = 0; i < k; i++)
                if (win.FloorOut(i, win.End[i]) != win.Out[i])
                    throw c.Fail($"the input size {win.Out[i]} on spatial axis {i} does not follow from the output size {win.In[i]} (output_padding must be smaller than the stride {win.Strides[i]})");
            c.SetGI(0, dx);
        }
        if (c.IsGradientRequired(1)) c.SetGI(1, WindowGradients.ConvWeight(c, go, x, win, group, wDims![0], wDims[1], w));
        if (c.IsGradientRequired(2)) c.SetGI(2, WindowGradients.ConvBias(c, go, k));
    }

    /// <summary>
    /// The window of the Conv that ConvTranspose is the adjoint of: its input is ConvTranspose's output (In), its output
    /// ConvTranspose's input (Out), with ConvTranspose's strides, dilations and leading pads; the trailing pad is the
    /// least that lets the windows reach every output (so <see cref="Window.Leftover"/> is never negative).
    /// </summary>
    private static Window TransposedWindow(GradientContext c, long[] kernel)
    {
        int k = kernel.Length;
        var autoPad = c.String("auto_pad", "NOTSET");
        var outputShape = c.Ints("output_shape") is { Length: > 0 } os ? os : null;
        string Why() => outputShape is not null ? "output_shape is given" : autoPad is "SAME_UPPER" or "SAME_LOWER" ? $"auto_pad={autoPad}" : "the gradient needs them";
        long[] Spatial(string value)
        {
            var dims = c.Type(value).Dims ?? throw c.Fail($"the rank of '{value}' is unknown");
            if (dims.Length != k + 2) throw c.Fail($"'{value}' has rank {dims.Length}; {k + 2} (N, C and {k} spatial axes) was expected");
            if (dims.Skip(2).Any(d => d is null))
                throw c.Fail($"the spatial dimensions of '{value}' ([{string.Join(",", dims.Select(d => d?.ToString() ?? "?"))}]) must be static because {Why()}; give the model fixed spatial input sizes (--input-shape NAME=D0,...)");
            return [.. dims.Skip(2).Select(d => d!.Value)];
        }
        var input = Spatial(c.I(0));
        var output = Spatial(c.O(0));
        long[] PerAxis(string name, long fallback, long min)
        {
            var v = c.Ints(name) is { Length: > 0 } a ? a : [.. Enumerable.Repeat(fallback, k)];
            if (v.Length != k) throw c.Fail($"{name} has {v.Length} values for {k} spatial axes");
            if (v.Any(s => s < min)) throw c.Fail($"{name} [{string.Join(",", v)}] must be at least {min}");
            return v;
        }
        var strides = PerAxis("strides", 1, 1);
        var dilations = PerAxis("dilations", 1, 1);
        var outputPadding = PerAxis("output_padding", 0, 0);
        if (outputShape is not null && outputShape.Length != k && outputShape.Length != k + 2)
            throw c.Fail($"output_shape has {outputShape.Length} values for {k} spatial axes");
        var pads = new long[2 * k];
        switch (autoPad)
        {
            case "NOTSET" or "":
                if (c.Ints("pads") is { Length: > 0 } p)
                {
                    if (p.Length != 2 * k) throw c.Fail($"pads has {p.Length} values for {k} spatial axes ({2 * k} expected)");
                    if (p.Any(v => v < 0)) throw c.Fail($"pads [{string.Join(",", p)}] are negative");
                    pads = p;
                }
                break;
            case "VALID" or "SAME_UPPER" or "SAME_LOWER":
                break;
            default:
                throw c.Fail($"auto_pad='{autoPad}' is not an ONNX padding mode (NOTSET, SAME_UPPER, SAME_LOWER, VALID)");
        }
        var begin = new long[k];
        var end = new long[k];
        for (int i = 0; i < k; i++)
        {
            long full = strides[i] * (input[i] - 1) + outputPadding[i] + (kernel[i] - 1) * dilations[i] + 1;
            long? target = outputShape is not null ? outputShape[outputShape.Length == k ? i : i + 2]
                : autoPad is "SAME_UPPER" or "SAME_LOWER" ? input[i] * strides[i] : null;
            long expected;
            if (target is { } t)
            {
                long total = Math.Max(0, full - t);
                long head = autoPad == "SAME_UPPER" ? total / 2 : total - total / 2;
                begin[i] = head;
                expected = outputShape is not null ? t : full - total;
            }
            else
            {
                begin[i] = pads[i];
                expected = full - pads[i] - pads[k + i];
            }
            if (expected != output[i])
                throw c.Fail($"the output size {output[i]} on spatial axis {i} does not follow from the input size {input[i]} and the attributes ({expected} expected)");
            end[i] = Math.Max(0, strides[i] * (input[i] - 1) + (kernel[i] - 1) * dilations[i] + 1 - output[i] - begin[i]);
        }
        return new Window(output, input, kernel, strides, dilations, begin, end);
    }

    /// <summary>
    /// MaxPool: each output's gradient goes to the input element it took. A second MaxPool with the same attributes
    /// and row-major <c>storage_order</c> yields the argmax Indices, flat over the whole tensor (N·C·D₁·…, padding not
    /// counted, per the ONNX spec; the forward's own Indices output is reused when it is row-major); ScatterElements
    /// with reduction="add" sums GO into zeros of X's flattened shape at those indices (overlapping windows that pick
    /// the same element add up), and the result is reshaped to X.
    /// </summary>
    private static void MaxPoolGradient(GradientContext c)
    {
        KnownAttributes(c, "auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides");
        var x = c.I(0);
        var indices = c.Node.Output.Count > 1 && c.O(1).Length > 0 && c.Int("storage_order", 0) == 0
            ? c.O(1)
            : c.Ops("MaxPool", [x], 2, [.. c.Node.Attribute.Where(a => a.Name != "storage_order").Select(a => a.Clone())])[1];
        var size = c.Op("Reshape", [c.Op("Size", [x]), c.Ints64(-1)]);
        c.SetGI(0, c.ReshapeLike(WindowGradients.MaxPoolInputFlat(c, c.GO(0)!, indices, size), x));
    }

    /// <summary>
    /// AveragePool: y[o] = (Σ of the in-bounds x in window o) / divisor[o], a linear map S followed by a per-position
    /// scale, so dX = Sᵀ(GO / divisor). Sᵀ is a ConvTranspose of GO (channels folded into the batch) with a ones kernel
    /// and the pool's strides, dilations and pads; 1/divisor is read off the op itself, whatever its
    /// count_include_pad and ceil_mode conventions: AveragePool(ones) = count / divisor, where count, the number of
    /// in-bounds elements per window, is a Conv of a ones image with a ones kernel. ceil_mode's extra last windows
    /// are covered by extending the trailing pad (extra pads hold zeros, so they change no sum).
    /// </summary>
    private static void AveragePoolGradient(GradientContext c)
    {
        KnownAttributes(c, "auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads", "strides");
        var kernel = c.Ints("kernel_shape") ?? throw c.Fail("kernel_shape is required");
        var win = SlidingWindow(c, kernel);
        c.SetGI(0, c.ReshapeLike(WindowGradients.AveragePoolInput(c, c.GO(0)!, win, c.Node.Attribute), c.I(0)));
    }
}
