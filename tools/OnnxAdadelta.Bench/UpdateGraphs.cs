using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Bench;

/// <summary>
/// Training graphs that isolate the optimizer update: their gradients are fixed tensors, so the step model the rewrite
/// makes from them does nothing per step but the Adadelta update of every parameter.
/// </summary>
public static class UpdateGraphs
{
    /// <summary>The 1-element float32 data input the loss is computed from.</summary>
    public const string LossInput = "x";

    /// <summary>The 1-element int64 data input holding the gradients' shape, <c>[Elements]</c>.</summary>
    public const string GradientShapeInput = "grad_shape";

    /// <summary>The name of parameter <paramref name="i"/>; its gradient output is this name plus <c>_grad</c>.</summary>
    public static string Parameter(int i) => $"p{i}";

    /// <summary>The name of the constant gradient of parameter <paramref name="i"/>.</summary>
    public static string Gradient(int i) => $"g{i}";

    /// <summary>Fixed pseudo-random values in [-1, 1), the same for the same seed.</summary>
    public static float[] RandomValues(int length, int seed)
    {
        var random = new Random(seed);
        var values = new float[length];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(random.NextDouble() * 2 - 1);
        return values;
    }

    /// <summary>The initial values of parameter <paramref name="i"/> of a shape.</summary>
    public static float[] InitialParameter(UpdateShape shape, int i) => RandomValues(shape.Elements, 2 * i + 1);

    /// <summary>The constant gradient of parameter <paramref name="i"/> of a shape.</summary>
    public static float[] GradientValues(UpdateShape shape, int i) => RandomValues(shape.Elements, 2 * i + 2);

    /// <summary>
    /// A training graph for <paramref name="shape"/>: parameters <c>p{i}</c> (float32 initializers that are also graph
    /// inputs, so the rewrite makes them state) and fixed gradients <c>g{i}</c> (initializers that are not graph inputs,
    /// so ONNX Runtime holds them and a step feeds only two 1-element inputs). Outputs: <c>loss = ReduceSum(x)</c> and
    /// <c>p{i}_grad = Reshape(g{i}, grad_shape)</c>.
    /// </summary>
    /// <remarks>
    /// Why Reshape and not Identity: with <c>Identity(g{i})</c> the gradient is a constant, and ONNX Runtime's constant
    /// folding precomputes the gradient-only part of the update, <c>(1-rho)*g*g</c>, leaving 14 of the 16 element-wise
    /// kernels per parameter. A Reshape whose target shape is a data input cannot be folded, and ONNX Runtime runs it as
    /// an alias of its input (no copy), so every kernel of a real training step runs and nothing else does.
    /// </remarks>
    /// <param name="shape">The parameter tensors.</param>
    /// <param name="foldableGradients">Use <c>Identity(g{i})</c> instead, which ONNX Runtime partly folds; only for
    /// showing that <see cref="BenchCheck.FoldingProblem"/> notices folding.</param>
    public static ModelProto Build(UpdateShape shape, bool foldableGradients = false)
    {
        var graph = new GraphProto { Name = $"adadelta_update_{shape.Tensors}x{shape.Elements}" };
        graph.Input.Add(TypeProtos.ValueInfo(LossInput, DataType.Float, [1]));
        if (!foldableGradients) graph.Input.Add(TypeProtos.ValueInfo(GradientShapeInput, DataType.Int64, [1]));
        var b = new GraphBuilder(graph);
        var loss = b.Add("ReduceSum", [LossInput], "loss", GraphBuilder.Attr("keepdims", 0L));
        graph.Output.Add(TypeProtos.ValueInfo(loss, DataType.Float, []));
        for (int i = 0; i < shape.Tensors; i++)
        {
            string p = Parameter(i), g = Gradient(i);
            graph.Initializer.Add(Tensors.Create(p, InitialParameter(shape, i), shape.Elements));
            graph.Input.Add(TypeProtos.ValueInfo(p, DataType.Float, [shape.Elements]));
            graph.Initializer.Add(Tensors.Create(g, GradientValues(shape, i), shape.Elements));
            var grad = foldableGradients ? b.Add("Identity", [g], p + "_grad") : b.Add("Reshape", [g, GradientShapeInput], p + "_grad");
            graph.Output.Add(TypeProtos.ValueInfo(grad, DataType.Float, [shape.Elements]));
        }
        var model = new ModelProto { IrVersion = 8, Graph = graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        return model;
    }

    /// <summary>The batch a step of a graph for <paramref name="shape"/> takes: 12 bytes, whatever the shape.</summary>
    public static Dictionary<string, (byte[] Data, long[] Shape)> Batch(UpdateShape shape) => new(StringComparer.Ordinal)
    {
        [LossInput] = (BitConverter.GetBytes(1f), [1L]),
        [GradientShapeInput] = (BitConverter.GetBytes((long)shape.Elements), [1L]),
    };
}
