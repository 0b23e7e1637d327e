using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Training;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Samples;

/// <summary>Inference models for the digits data, initialized from a fixed seed (He-uniform weights, zero biases).</summary>
public static class DigitsModels
{
    /// <summary>A 64-128-10 perceptron: X float[batch,64] → Gemm → Relu → Gemm → logits float[batch,10].</summary>
    public static ModelProto Mlp(ulong seed = 1)
    {
        var (model, b, rng) = Start("digits_mlp", seed);
        var g = model.Graph;
        g.Input.Add(Input("X", "batch", Digits.Features));
        var h = b.Add("Relu", [b.Add("Gemm", ["X", Weight(b, rng, "W1", [Digits.Features, 128], Digits.Features), Zeros(b, "b1", 128)], "hidden_pre")], "hidden");
        var logits = b.Add("Gemm", [h, Weight(b, rng, "W2", [128, Digits.Classes], 128), Zeros(b, "b2", Digits.Classes)], "logits");
        g.Output.Add(Input(logits, "batch", Digits.Classes));
        return model;
    }

    /// <summary>
    /// A small convolutional network on images float[batch,1,8,8]: Conv 16@3x3 (pad 1) → Relu → MaxPool 2x2 →
    /// Flatten → Gemm → logits float[batch,10].
    /// </summary>
    public static ModelProto Cnn(ulong seed = 1)
    {
        var (model, b, rng) = Start("digits_cnn", seed);
        var g = model.Graph;
        g.Input.Add(Input("images", "batch", 1, 8, 8));
        var conv = b.Add("Conv", ["images", Weight(b, rng, "conv_W", [16, 1, 3, 3], 9), Zeros(b, "conv_B", 16)], "conv",
            GraphBuilder.Attr("kernel_shape", new long[] { 3, 3 }), GraphBuilder.Attr("pads", new long[] { 1, 1, 1, 1 }));
        var pooled = b.Add("MaxPool", [b.Add("Relu", [conv], "conv_relu")], "pooled",
            GraphBuilder.Attr("kernel_shape", new long[] { 2, 2 }), GraphBuilder.Attr("strides", new long[] { 2, 2 }));
        var flat = b.Add("Flatten", [pooled], "flat", GraphBuilder.Attr("axis", 1L));
        var logits = b.Add("Gemm", [flat, Weight(b, rng, "fc_W", [16 * 4 * 4, Digits.Classes], 16 * 4 * 4), Zeros(b, "fc_b", Digits.Classes)], "logits");
        g.Output.Add(Input(logits, "batch", Digits.Classes));
        return model;
    }

    private static (ModelProto, GraphBuilder, SplitMix64) Start(string name, ulong seed)
    {
        var model = new ModelProto { IrVersion = 8, ProducerName = "onnx-adadelta-samples", Graph = new GraphProto { Name = name } };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        return (model, new GraphBuilder(model.Graph), new SplitMix64(seed));
    }

    private static string Weight(GraphBuilder b, SplitMix64 rng, string name, long[] shape, int fanIn)
    {
        var bound = Math.Sqrt(6.0 / fanIn);
        var values = new float[shape.Aggregate(1L, (a, c) => a * c)];
        for (int i = 0; i < values.Length; i++) values[i] = (float)((rng.NextDouble() * 2 - 1) * bound);
        return b.Initializer(name, Tensors.Create("", values, shape));
    }

    private static string Zeros(GraphBuilder b, string name, long size) => b.Initializer(name, Tensors.Create("", new float[size], size));

    private static ValueInfoProto Input(string name, string batch, params long[] dims)
    {
        var shape = new TensorShapeProto();
        shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = batch });
        foreach (var d in dims) shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)DataType.Float, Shape = shape } } };
    }
}
