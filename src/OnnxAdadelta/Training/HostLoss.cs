using OnnxAdadelta.Gradients;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Training;

/// <summary>
/// The losses of <c>build-training</c>, computed in float64 on the host from the value the loss reads: a second
/// implementation of each formula, independent of the graph's, for <see cref="GradCheck"/>.
/// </summary>
internal static class HostLoss
{
    /// <summary>The mean loss of <paramref name="values"/> (of <paramref name="shape"/>) against <paramref name="target"/>.</summary>
    /// <exception cref="OnnxAdadeltaException">A label out of range, or a target that does not fit.</exception>
    public static double Compute(LossKind kind, LossInputForm form, double[] values, long[] shape, int? axis, DataArray? target)
    {
        switch (kind)
        {
            case LossKind.Output:
                if (values.Length != 1) throw new OnnxAdadeltaException($"--loss output: the output has {values.Length} values; a scalar loss is expected.");
                return values[0];
            case LossKind.CrossEntropy or LossKind.Nll:
                return Classification(form, values, shape, axis ?? 1, Labels(target, kind));
            case LossKind.Bce:
            {
                var t = Floats(target, values.Length, "bce");
                double sum = 0;
                for (int i = 0; i < values.Length; i++)
                {
                    double z = values[i];
                    sum += form == LossInputForm.Logits
                        ? Math.Max(z, 0) - z * t[i] + Math.Log(1 + Math.Exp(-Math.Abs(z)))
                        : -(t[i] * Math.Log(z) + (1 - t[i]) * Math.Log(1 - z));
                }
                return sum / values.Length;
            }
            default:
            {
                var t = Floats(target, values.Length, "mse");
                double sum = 0;
                for (int i = 0; i < values.Length; i++) sum += (values[i] - t[i]) * (values[i] - t[i]);
                return sum / values.Length;
            }
        }
    }

    private static double Classification(LossInputForm form, double[] x, long[] shape, int axis, long[] labels)
    {
        if (axis < 0) axis += shape.Length;
        long outer = 1, inner = 1;
        for (int k = 0; k < axis; k++) outer *= shape[k];
        for (int k = axis + 1; k < shape.Length; k++) inner *= shape[k];
        long classes = shape[axis];
        if (labels.Length != outer * inner)
            throw new OnnxAdadeltaException($"The labels have {labels.Length} values; the output [{string.Join(",", shape)}] with classes on axis {axis} needs {outer * inner}.");
        double sum = 0;
        for (long o = 0; o < outer; o++)
            for (long i = 0; i < inner; i++)
            {
                long label = labels[o * inner + i];
                if (label < 0 || label >= classes)
                    throw new OnnxAdadeltaException($"Label {label} at row {o} is out of range for {classes} classes.");
                double At(long c) => x[(o * classes + c) * inner + i];
                switch (form)
                {
                    case LossInputForm.Logits:
                        double max = double.NegativeInfinity;
                        for (long c = 0; c < classes; c++) max = Math.Max(max, At(c));
                        double total = 0;
                        for (long c = 0; c < classes; c++) total += Math.Exp(At(c) - max);
                        sum += max + Math.Log(total) - At(label);
                        break;
                    case LossInputForm.LogProbabilities:
                        sum -= At(label);
                        break;
                    default:
                        sum -= Math.Log(At(label));
                        break;
                }
            }
        return sum / (outer * inner);
    }

    private static long[] Labels(DataArray? target, LossKind kind) => target switch
    {
        null => throw new OnnxAdadeltaException($"--loss {kind}: the data has no label array."),
        { ElementType: DataType.Int64 } a => a.ToInt64Array(),
        { ElementType: DataType.Int32 } a => System.Array.ConvertAll(a.ToArray<int>(DataType.Int32), v => (long)v),
        var a => throw new OnnxAdadeltaException($"The labels are {a.TypeName}; int64 or int32 class indices are expected."),
    };

    private static double[] Floats(DataArray? target, int count, string loss)
    {
        var values = target switch
        {
            null => throw new OnnxAdadeltaException($"--loss {loss}: the data has no target array."),
            { ElementType: DataType.Float } a => System.Array.ConvertAll(a.ToFloatArray(), v => (double)v),
            { ElementType: DataType.Double } a => a.ToDoubleArray(),
            var a => throw new OnnxAdadeltaException($"The target is {a.TypeName}; float32 or float64 values are expected."),
        };
        if (values.Length != count)
            throw new OnnxAdadeltaException($"--loss {loss}: the target has {values.Length} values; the output has {count}.");
        return values;
    }
}
