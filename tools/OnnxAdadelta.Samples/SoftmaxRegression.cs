using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Training;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Samples;

/// <summary>
/// A gradient-exporting training graph for softmax regression, with its gradients written out as ONNX nodes:
/// <code>
/// logits = X·W + b                      loss = SoftmaxCrossEntropyLoss(logits, labels), mean
/// dlogits = (softmax(logits) - onehot(labels)) / N
/// W_grad = Xᵀ·dlogits                   b_grad = Σ_rows dlogits
/// </code>
/// Outputs: loss, logits, W_grad, b_grad. W and b are graph inputs with initializers (ORT's convention for trainable
/// parameters); X is float[batch, features] and labels int64[batch].
/// </summary>
public static class SoftmaxRegression
{
    /// <summary>Builds the graph; W starts uniform in ±1/sqrt(features) from <paramref name="seed"/>, b at zero.</summary>
    public static ModelProto Build(int features, int classes, ulong seed = 1)
    {
        var graph = new GraphProto { Name = "softmax_regression" };
        var rng = new SplitMix64(seed);
        var bound = 1.0 / Math.Sqrt(features);
        var w = new float[features * classes];
        for (int i = 0; i < w.Length; i++) w[i] = (float)((rng.NextDouble() * 2 - 1) * bound);
        graph.Initializer.Add(Tensors.Create("W", w, features, classes));
        graph.Initializer.Add(Tensors.Create("b", new float[classes], classes));
        var batch = new TensorShapeProto.Types.Dimension { DimParam = "batch" };
        graph.Input.Add(Input("X", DataType.Float, batch, new() { DimValue = features }));
        graph.Input.Add(Input("labels", DataType.Int64, batch));
        graph.Input.Add(TypeProtos.ValueInfo("W", DataType.Float, [features, classes]));
        graph.Input.Add(TypeProtos.ValueInfo("b", DataType.Float, [classes]));

        var g = new GraphBuilder(graph);
        var logits = g.Add("Add", [g.Add("MatMul", ["X", "W"], "xw"), "b"], "logits");
        var loss = g.Add("SoftmaxCrossEntropyLoss", [logits, "labels"], "loss", GraphBuilder.Attr("reduction", "mean"));
        var probs = g.Add("Softmax", [logits], "probs", GraphBuilder.Attr("axis", 1L));
        var depth = g.Initializer("depth", Tensors.Create("", [(long)classes], 1));
        var offOn = g.Initializer("off_on", Tensors.Create("", [0f, 1f], 2));
        var onehot = g.Add("OneHot", ["labels", depth, offOn], "onehot", GraphBuilder.Attr("axis", -1L));
        var zero = g.Initializer("zero", Tensors.Create("", [0L], 1));
        var rows = g.Add("Cast", [g.Add("Gather", [g.Add("Shape", ["X"], "x_shape"), zero], "rows_i64")], "rows",
            GraphBuilder.Attr("to", (long)DataType.Float));
        var dlogits = g.Add("Div", [g.Add("Sub", [probs, onehot], "residual"), rows], "dlogits");
        g.Add("MatMul", [g.Add("Transpose", ["X"], "xt"), dlogits], "W_grad");
        g.Add("ReduceSum", [dlogits, zero], "b_grad", GraphBuilder.Attr("keepdims", 0L));

        graph.Output.Add(new ValueInfoProto { Name = loss, Type = TypeProtos.Tensor(DataType.Float, []) });
        graph.Output.Add(Input(logits, DataType.Float, batch, new() { DimValue = classes }));
        graph.Output.Add(TypeProtos.ValueInfo("W_grad", DataType.Float, [features, classes]));
        graph.Output.Add(TypeProtos.ValueInfo("b_grad", DataType.Float, [classes]));

        var model = new ModelProto { IrVersion = 8, ProducerName = "onnx-adadelta-samples", Graph = graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        return model;
    }

    private static ValueInfoProto Input(string name, DataType type, params TensorShapeProto.Types.Dimension[] dims)
    {
        var shape = new TensorShapeProto();
        shape.Dim.AddRange(dims);
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } } };
    }
}
