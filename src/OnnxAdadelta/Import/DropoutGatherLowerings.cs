using OnnxAdadelta.Onnx;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Import;

/// <summary>
/// Lowerings of ONNX Runtime's dropout gradients (DropoutGrad with a bool mask, BitmaskDropoutGrad with a bit-packed
/// uint32 mask) and gather gradients (GatherGrad, GatherElementsGrad, GatherNDGrad: scatter-adds into zeros).
/// </summary>
/// <remarks>
/// Like ONNX Runtime's kernels, the dropout gradients ignore their training_mode input: dX = mask ⊙ dY / (1 − ratio)
/// with ratio defaulting to 0.5 (DropoutGrad passes dY through unchanged when ratio is 0). Their schemas accept
/// unchecked attributes; "seed" (which only the forward dropout uses) is ignored, anything else refused.
/// Gather gradients accept indices in [−s, s) along an axis of size s, negative ones counting from the end, and add
/// the gradients of repeated indices.
/// </remarks>
public static partial class LoweringRules
{
    private static void RegisterDropoutGather(Dictionary<string, LoweringRule> r)
    {
        Add(r, DropoutGrad, "DropoutGrad");
        Add(r, BitmaskDropoutGrad, "BitmaskDropoutGrad");
        Add(r, GatherGrad, "GatherGrad");
        Add(r, GatherElementsGrad, "GatherElementsGrad");
        Add(r, GatherNDGrad, "GatherNDGrad");
    }

    /// <summary>The dropout ratio as a float32 scalar: input <paramref name="input"/> when present, else 0.5.</summary>
    private static string DropoutRatio(LoweringContext c, int input) =>
        c.HasInput(input)
            ? c.Op("Reshape", [c.Op("Cast", [c.I(input)], LoweringContext.Attr("to", (long)DataType.Float)), c.Ints64()])
            : c.ScalarFloat(0.5f);

    /// <summary>DropoutGrad(dy, mask, ratio?, training_mode?): mask ⊙ dy / (1 − ratio), or dy when ratio is 0.</summary>
    private static void DropoutGrad(LoweringContext c)
    {
        c.OnlyAttributes("seed");
        var dY = c.I(0);
        var ratio = DropoutRatio(c, 2);
        var keep = c.Op("Sub", [c.ScalarFloat(1f), ratio]);
        var scaled = c.Op("Div", [c.Op("Mul", [c.Op("CastLike", [c.I(1), dY]), dY]), c.Op("CastLike", [keep, dY])]);
        c.SetOutput(0, c.Op("Where", [c.Op("Equal", [ratio, c.ScalarFloat(0f)]), dY, scaled]));
    }

    /// <summary>
    /// BitmaskDropoutGrad(dy, mask, ratio?, training_mode?): element i of dy (row-major) is kept when bit i mod 32 (least
    /// significant first) of mask word ⌊i / 32⌋ is set; dX = dy ⊙ bit ⊙ 1/(1 − ratio). The bits are unpacked with int64
    /// arithmetic (⌊word / 2^k⌋ mod 2), which every opset from 17 has.
    /// </summary>
    private static void BitmaskDropoutGrad(LoweringContext c)
    {
        c.OnlyAttributes("seed");
        var dY = c.I(0);
        var index = c.Op("Range", [c.ScalarInt64(0), c.Op("Size", [dY]), c.ScalarInt64(1)]);
        var bits = c.ScalarInt64(32);
        var word = c.Op("Cast", [c.Op("Gather", [c.I(1), c.Op("Div", [index, bits])])], LoweringContext.Attr("to", (long)DataType.Int64));
        var powers = c.Constant(Tensors.Create("", Enumerable.Range(0, 32).Select(k => 1L << k).ToArray(), 32));
        var power = c.Op("Gather", [powers, c.Op("Mod", [index, bits])]);
        var bit = c.Op("Mod", [c.Op("Div", [word, power]), c.ScalarInt64(2)]);
        var mask = c.Op("Reshape", [c.Op("CastLike", [bit, dY]), c.Op("Shape", [dY])]);
        var scale = c.Op("Div", [c.ScalarFloat(1f), c.Op("Sub", [c.ScalarFloat(1f), DropoutRatio(c, 2)])]);
        c.SetOutput(0, c.Op("Mul", [c.Op("Mul", [dY, mask]), c.Op("CastLike", [scale, dY])]));
    }

    /// <summary>Indices as int64; negative ones are left as they are (ScatterElements and ScatterND take [−s, s)).</summary>
    private static string Int64Indices(LoweringContext c, string indices) =>
        c.Op("Cast", [indices], LoweringContext.Attr("to", (long)DataType.Int64));

    /// <summary>Zeros of <paramref name="like"/>'s element type in the shape <paramref name="shape"/>.</summary>
    private static string ZerosOf(LoweringContext c, string shape, string like) =>
        c.Op("Expand", [c.Scalar(0, like), shape]);

    /// <summary>The product of a 1-D int64 tensor's values as a [1] tensor (1 when it is empty).</summary>
    private static string Product(LoweringContext c, string values) =>
        c.Op("ReduceProd", [c.Op("Concat", [c.Ints64(1), values], LoweringContext.Attr("axis", 0L))], LoweringContext.Attr("keepdims", 1L));

    /// <summary>
    /// GatherGrad(shape, indices, dY) with axis: zeros of shape with dY added at the gathered positions. Shape is seen
    /// as [outer, s, inner] around the axis and dY as [outer, n, inner] for the n indices, so one ScatterElements
    /// (reduction add) along axis 1 does it for any rank, known or not.
    /// </summary>
    private static void GatherGrad(LoweringContext c)
    {
        c.OnlyAttributes("axis");
        var axis = c.Int("axis", 0);
        var dY = c.I(2);
        var shape = c.Op("Cast", [c.I(0)], LoweringContext.Attr("to", (long)DataType.Int64));
        var size = c.Op("Gather", [shape, c.Ints64(axis)]); // [1]
        var indices = Int64Indices(c, c.I(1));

        var outer = Product(c, c.Op("Slice", [shape, c.Ints64(0), c.Ints64(axis)]));
        var innerStart = axis == -1 ? long.MaxValue : axis + 1;
        var inner = Product(c, c.Op("Slice", [shape, c.Ints64(innerStart), c.Ints64(long.MaxValue)]));
        var count = c.Op("Reshape", [c.Op("Size", [indices]), c.Ints64(1)]);
        var concat = LoweringContext.Attr("axis", 0L);
        var grad = c.Op("Reshape", [dY, c.Op("Concat", [outer, count, inner], concat)]);
        var at = c.Op("Expand", [c.Op("Reshape", [indices, c.Ints64(1, -1, 1)]), c.Op("Shape", [grad])]);
        var zeros = ZerosOf(c, c.Op("Concat", [outer, size, inner], concat), dY);
        var scattered = c.Op("ScatterElements", [zeros, at, grad], LoweringContext.Attr("axis", 1L), LoweringContext.Attr("reduction", "add"));
        c.SetOutput(0, c.Op("Reshape", [scattered, shape]));
    }

    /// <summary>GatherElementsGrad(dY, shape, indices) with axis: ScatterElements (reduction add) of dY into zeros of shape.</summary>
    private static void GatherElementsGrad(LoweringContext c)
    {
        c.OnlyAttributes("axis");
        var axis = c.Int("axis", 0);
        var dY = c.I(0);
        var shape = c.Op("Cast", [c.I(1)], LoweringContext.Attr("to", (long)DataType.Int64));
        var indices = Int64Indices(c, c.I(2));
        c.SetOutput(0, c.Op("ScatterElements", [ZerosOf(c, shape, dY), indices, dY],
            LoweringContext.Attr("axis", axis), LoweringContext.Attr("reduction", "add")));
    }

    /// <summary>
    /// GatherNDGrad(shape, indices, update) with batch_dims b: ScatterND (reduction add) of update into zeros of shape.
    /// With b &gt; 0 the b batch axes are flattened into one, indices [B…, I…, k] become [Btot, M, 1 + k] with the flat
    /// batch position in front, and the result is reshaped back, so no rank needs to be known.
    /// </summary>
    private static void GatherNDGrad(LoweringContext c)
    {
        c.OnlyAttributes("batch_dims");
        var b = c.Int("batch_dims", 0);
        if (b < 0) throw c.Fail($"batch_dims={b} is negative");
        var update = c.I(2);
        var shape = c.Op("Cast", [c.I(0)], LoweringContext.Attr("to", (long)DataType.Int64));
        var k = c.Op("Slice", [c.Op("Shape", [c.I(1)]), c.Ints64(-1), c.Ints64(long.MaxValue)]); // [1]
        var end = c.Op("Add", [c.Ints64(b), k]);
        var indices = Int64Indices(c, c.I(1));
        if (b == 0)
        {
            c.SetOutput(0, c.Op("ScatterND", [ZerosOf(c, shape, update), indices, update], LoweringContext.Attr("reduction", "add")));
            return;
        }

        var concat = LoweringContext.Attr("axis", 0L);
        var batch = c.Op("ReduceProd", [c.Op("Slice", [shape, c.Ints64(0), c.Ints64(b)])], LoweringContext.Attr("keepdims", 1L)); // [1]
        var count = c.Op("Reshape", [c.Op("Size", [indices]), c.Ints64(1)]);
        var m = c.Op("Div", [count, c.Op("Mul", [batch, k])]);
        var flat = c.Op("Reshape", [indices, c.Op("Concat", [batch, m, k], concat)]);
        var positions = c.Op("Range", [c.ScalarInt64(0), c.Op("Reshape", [batch, c.Ints64()]), c.ScalarInt64(1)]);
        positions = c.Op("Expand", [c.Op("Reshape", [positions, c.Ints64(-1, 1, 1)]), c.Op("Concat", [batch, m, c.Ints64(1)], concat)]);
        var full = c.Op("Concat", [positions, flat], LoweringContext.Attr("axis", 2L));
        var rest = c.Op("Slice", [shape, end, c.Ints64(long.MaxValue)]);
        var updates = c.Op("Reshape", [update, c.Op("Concat", [batch, m, rest], concat)]);
        var dataShape = c.Op("Concat", [batch, c.Op("Slice", [shape, c.Ints64(b), c.Ints64(long.MaxValue)])], concat);
        var scattered = c.Op("ScatterND", [ZerosOf(c, dataShape, update), full, updates], LoweringContext.Attr("reduction", "add"));
        c.SetOutput(0, c.Op("Reshape", [scattered, shape]));
    }
}
