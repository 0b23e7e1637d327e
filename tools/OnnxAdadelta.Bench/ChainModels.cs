using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Bench;

/// <summary>
/// Long chains of small nodes, generated in memory (never written to the repository), on which build-training's time is
/// measured against the number of nodes.
/// </summary>
public static class ChainModels
{
    /// <summary>The width of every value of the chain.</summary>
    public const int Width = 8;

    /// <summary>The float input <c>x</c> [batch, 8].</summary>
    public const string Input = "x";

    /// <summary>The chain's last value, the graph output <c>y</c> [batch, 8].</summary>
    public const string Output = "y";

    /// <summary>
    /// An inference model of <paramref name="nodes"/> nodes in one chain: <c>Mul</c> by its own weight <c>w{k}</c> (8
    /// floats) on even positions and <c>Tanh</c> on odd ones, from <c>x</c> to <c>y</c>; nodes/2 parameters in all.
    /// </summary>
    public static ModelProto Build(int nodes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(nodes, 2);
        var graph = new GraphProto { Name = $"chain_{nodes}" };
        var batch = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)DataType.Float, Shape = new TensorShapeProto() } };
        batch.TensorType.Shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = "batch" });
        batch.TensorType.Shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = Width });
        graph.Input.Add(new ValueInfoProto { Name = Input, Type = batch });
        var random = new Random(nodes);
        string h = Input;
        for (int k = 0; k < nodes; k++)
        {
            string output = k == nodes - 1 ? Output : $"h{k}";
            if (k % 2 == 0)
            {
                var w = $"w{k}";
                var values = new float[Width];
                for (int i = 0; i < Width; i++) values[i] = (float)(0.9 + random.NextDouble() * 0.2);
                graph.Initializer.Add(Tensors.Create(w, values, Width));
                graph.Node.Add(new NodeProto { OpType = "Mul", Name = $"n{k}", Input = { h, w }, Output = { output } });
            }
            else graph.Node.Add(new NodeProto { OpType = "Tanh", Name = $"n{k}", Input = { h }, Output = { output } });
            h = output;
        }
        graph.Output.Add(new ValueInfoProto { Name = Output, Type = batch.Clone() });
        var model = new ModelProto { IrVersion = 8, Graph = graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        return model;
    }
}
