using OnnxAdadelta.Onnx.Proto;

namespace OnnxAdadelta.Graphs;

/// <summary>The ai.onnx opset policy of every pass that emits nodes.</summary>
public static class Opsets
{
    /// <summary>The lowest ai.onnx opset the emitted nodes may join; lower models are raised to it.</summary>
    public const int Minimum = 17;

    /// <summary>
    /// Raises the ai.onnx opset to <see cref="Minimum"/> when it is 13 to 16: the operators in use did not change
    /// meaning between those versions. Below 13 (Squeeze, Unsqueeze, ReduceSum and Split took axes differently) the
    /// model must be converted first: <see cref="Graphs.OpsetUpgrade"/> does it for inference models (build-training
    /// calls it); a training graph or ORT training model below 13 is refused.
    /// </summary>
    public static void RaiseForRewrite(ModelProto model)
    {
        var ai = model.OpsetImport.FirstOrDefault(o => o.Domain is "" or "ai.onnx");
        if (ai is null) model.OpsetImport.Add(ai = new OperatorSetIdProto { Domain = "", Version = Minimum });
        if (ai.Version < 13)
            throw new OnnxAdadeltaException($"The model imports ai.onnx opset {ai.Version}; opset 13 or newer is needed here (build-training upgrades inference models from opset 7 on; convert a training graph with onnx.version_converter).");
        if (ai.Version < Minimum) ai.Version = Minimum;
        if (model.IrVersion < 8) model.IrVersion = 8;
    }
}
