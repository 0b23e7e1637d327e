using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Onnx.Proto;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Optimizers;

/// <summary>
/// Changes the optimizer of a training-step model or checkpoint while keeping what it has learned: the parameters, the
/// accumulators and the iteration counter carry over, as a PyTorch user edits <c>param_group['lr']</c> between steps
/// and ONNX Runtime's <c>SetLearningRate</c> does.
/// </summary>
public static class OptimizerChange
{
    /// <summary>
    /// The step model of <paramref name="stepModel"/> (left unchanged) with the update rebuilt from
    /// <paramref name="options"/>. The training graph is recovered from the step model (its loss, outputs and gradients
    /// are in the contract), rewritten again, and every state tensor whose name, dtype and shape are unchanged takes its
    /// current value; state that is new (a slot the old options did not keep) starts as a fresh rewrite starts it.
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">The model is not a step model, or the new options name it differently.</exception>
    public static ModelProto Apply(ModelProto stepModel, AdadeltaOptions options)
    {
        ArgumentNullException.ThrowIfNull(stepModel);
        ArgumentNullException.ThrowIfNull(options);
        var info = StepModelInfo.Read(stepModel, "the model");
        return Apply(stepModel, info, options);
    }

    /// <summary><see cref="Apply(ModelProto, AdadeltaOptions)"/> with the contract already read.</summary>
    public static ModelProto Apply(ModelProto stepModel, StepModelInfo info, AdadeltaOptions options) => Apply(stepModel, info, options, out _);

    /// <summary>
    /// <see cref="Apply(ModelProto, AdadeltaOptions)"/> with the contract already read, also giving the new model's
    /// contract (so that the caller passes it along instead of reading it back).
    /// </summary>
    public static ModelProto Apply(ModelProto stepModel, StepModelInfo info, AdadeltaOptions options, out StepModelInfo nextInfo)
    {
        ArgumentNullException.ThrowIfNull(stepModel);
        ArgumentNullException.ThrowIfNull(info);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Name != info.Optimizer.Name)
            throw new OnnxAdadeltaException($"The model's optimizer is named '{info.Optimizer.Name}'; its state can't carry over to the name '{options.Name}'.");
        var training = TrainingGraphOf(stepModel, info);
        var next = AdadeltaRewrite.Apply(training, options, new RewriteOptions
        {
            Gradients = info.Gradients,
            Loss = info.Loss,
            KeepGradients = info.Gradients.Values.Any(g => stepModel.Graph.Output.Any(o => o.Name == g)),
        }, out nextInfo);
        var old = StepModelState.Values(stepModel, info);
        var fresh = StepModelState.Values(next, nextInfo);
        // Slots and the counter whose name, dtype and shape are unchanged carry over (the parameters and buffers already did).
        var carried = new Dictionary<string, TensorProto>(StringComparer.Ordinal);
        foreach (var s in nextInfo.State.Where(s => s.Kind is StateKind.Slot or StateKind.Iterations))
            if (old.TryGetValue(s.Input, out var value) && value.DataType == fresh[s.Input].DataType && value.Dims.SequenceEqual(fresh[s.Input].Dims))
                carried[s.Input] = value;
        StepModelState.Write(next, nextInfo, carried);
        return next;
    }

    /// <summary>
    /// The training graph a step model was rewritten from: the optimizer's nodes and state go, the gradients become
    /// outputs again, and the buffers, the dropout step input and the inference values return to their metadata.
    /// </summary>
    public static ModelProto TrainingGraphOf(ModelProto stepModel, StepModelInfo info)
    {
        ArgumentNullException.ThrowIfNull(stepModel);
        ArgumentNullException.ThrowIfNull(info);
        // In the format-1 layout every state input has an initializer of its own name: the parameters' values are then
        // where a training graph keeps them.
        var model = StepModelState.WithInputDefaults(stepModel, info);
        var graph = model.Graph;
        var counter = info.Iterations;
        var inits = graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var outputs = graph.Output.ToDictionary(o => o.Name, StringComparer.Ordinal);
        var valueInfos = graph.ValueInfo.GroupBy(v => v.Name).ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);

        // The rewrite feeds a dropout step input from the counter through one Identity: it becomes a graph input again.
        string? stepInput = null;
        foreach (var node in graph.Node.Where(n => n.OpType == "Identity" && n.Input.Count == 1 && n.Input[0] == counter.Input).ToList())
        {
            stepInput = node.Output[0];
            graph.Node.Remove(node);
            graph.Input.Add(TypeProtos.ValueInfo(stepInput, DataType.Int64, []));
        }

        var newOutputs = new List<ValueInfoProto>();
        foreach (var name in info.Outputs)
            newOutputs.Add(outputs.TryGetValue(name, out var o) ? o.Clone() : new ValueInfoProto { Name = name });
        foreach (var (parameter, gradient) in info.Gradients)
        {
            if (!inits.TryGetValue(parameter, out var p))
                throw new OnnxAdadeltaException($"The model's parameter '{parameter}' has no initializer holding its value.");
            newOutputs.Add(valueInfos.TryGetValue(gradient, out var v) ? v.Clone() : TypeProtos.ValueInfo(gradient, (DataType)p.DataType, p.Dims));
        }
        var buffers = info.State.Where(s => s.Kind == StateKind.Buffer).ToList();
        foreach (var b in buffers)
            newOutputs.Add(outputs.TryGetValue(b.Output, out var o) ? o.Clone() : new ValueInfoProto { Name = b.Output });
        graph.Output.Clear();
        graph.Output.AddRange(newOutputs);

        var optimizerState = info.State.Where(s => s.Kind is StateKind.Slot or StateKind.Iterations).Select(s => s.Input).ToHashSet(StringComparer.Ordinal);
        foreach (var input in graph.Input.Where(i => optimizerState.Contains(i.Name)).ToList()) graph.Input.Remove(input);
        foreach (var t in graph.Initializer.Where(t => optimizerState.Contains(t.Name)).ToList()) graph.Initializer.Remove(t);
        GraphPasses.RemoveDeadCode(graph);
        GraphPasses.TopologicalSort(graph);

        foreach (var entry in model.MetadataProps.Where(p => p.Key == StepModelInfo.MetadataKey).ToList()) model.MetadataProps.Remove(entry);
        new TrainingGraphInfo
        {
            Buffers = buffers.Count > 0 ? buffers.Select(b => new BufferBinding(b.Input, b.Output)).ToList() : null,
            StepInput = stepInput,
            InferenceValues = info.InferenceValues,
            Labels = info.Labels,
        }.WriteTo(model);
        return model;
    }
}
