using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Optimizers;

namespace OnnxAdadelta.Training;

/// <summary>Turns a training-step model or checkpoint into an inference model.</summary>
public static class InferenceExport
{
    /// <summary>
    /// Keeps the forward part that computes <paramref name="outputs"/> (default: every original output that needs no
    /// label input, a label input being one that only the loss reads). Parameters become plain initializers holding the
    /// checkpoint's values, under their original names; optimizer state, gradients and unused inputs are dropped.
    /// With <paramref name="useEma"/> each parameter takes the value of its EMA slot (the model must keep one), rounded to
    /// the parameter's dtype when the slot is stored in float32 (<see cref="AdadeltaOptions.Fp32State"/>).
    /// </summary>
    public static ModelProto Export(ModelProto checkpoint, IReadOnlyList<string>? outputs = null, bool useEma = false) =>
        Export(checkpoint, outputs, useEma, keepStateInputs: false);

    /// <summary>
    /// <see cref="Export(ModelProto, IReadOnlyList{string}?, bool)"/>; with <paramref name="keepStateInputs"/> the
    /// parameters and buffers stay graph inputs (their initializers the defaults), so that a session can be fed a live
    /// trainer's current values.
    /// </summary>
    internal static ModelProto Export(ModelProto checkpoint, IReadOnlyList<string>? outputs, bool useEma, bool keepStateInputs) =>
        Export(checkpoint, StepModelInfo.Read(checkpoint, "the checkpoint"), outputs, useEma, keepStateInputs);

    /// <summary>
    /// <see cref="Export(ModelProto, IReadOnlyList{string}?, bool)"/> of a checkpoint whose contract
    /// <paramref name="info"/> is already read: one deep copy of the model, no parse.
    /// </summary>
    public static ModelProto Export(ModelProto checkpoint, StepModelInfo info, IReadOnlyList<string>? outputs = null, bool useEma = false) =>
        Export(checkpoint, info, outputs, useEma, keepStateInputs: false);

    internal static ModelProto Export(ModelProto checkpoint, StepModelInfo info, IReadOnlyList<string>? outputs, bool useEma, bool keepStateInputs)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(info);
        // Each state input gets its value as an initializer of its own name (either format), in a copy.
        var model = StepModelState.WithInputDefaults(checkpoint, info);
        info = info with { State = info.State.Select(s => s with { Initial = null }).ToList(), FormatVersion = 1 };
        var graph = model.Graph;
        if (useEma)
        {
            var averages = info.State.Where(s => s.Kind == StateKind.Slot && s.Slot == MovingAverage.Slot).ToDictionary(s => s.Parameter!, s => s.Input, StringComparer.Ordinal);
            var byName = graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
            foreach (var p in info.Parameters)
            {
                if (!averages.TryGetValue(p, out var ema))
                    throw new OnnxAdadeltaException($"--ema: the checkpoint keeps no moving average of '{p}' (rewrite with --use-ema).");
                var value = byName[ema].Clone();
                value.Name = p;
                // With --fp32-state a float16/bfloat16 parameter's EMA is float32: rounded to the parameter's dtype.
                if (value.DataType != byName[p].DataType)
                    value = MixedPrecision.FromFloats(p, MixedPrecision.ToFloats(value), (global::OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType)byName[p].DataType, [.. value.Dims]);
                graph.Initializer.Remove(byName[p]);
                graph.Initializer.Add(value);
            }
        }
        ToInferenceForm(graph, info);
        var index = new GraphIndex(graph);
        var chosen = outputs is { Count: > 0 } ? outputs.ToList() : DefaultOutputs(index, info);
        foreach (var name in chosen)
            if (index.Producer(name) is null && !index.Inputs.ContainsKey(name) && !index.Initializers.ContainsKey(name))
                throw new OnnxAdadeltaException($"--output {name}: the model has no value '{name}'.");

        var infos = graph.Output.Concat(graph.ValueInfo).GroupBy(v => v.Name).ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);
        graph.Output.Clear();
        graph.Output.AddRange(chosen.Select(n => infos.TryGetValue(n, out var v) ? v.Clone() : new ValueInfoProto { Name = n }));

        var parameters = info.Parameters.ToHashSet(StringComparer.Ordinal);
        var state = info.State.Where(s => s.Kind is not (StateKind.Parameter or StateKind.Buffer)).Select(s => s.Input).ToHashSet(StringComparer.Ordinal);
        var buffers = info.State.Where(s => s.Kind == StateKind.Buffer).Select(s => s.Input).ToHashSet(StringComparer.Ordinal);
        foreach (var input in graph.Input.Where(i => state.Contains(i.Name) || (!keepStateInputs && (parameters.Contains(i.Name) || buffers.Contains(i.Name)))).ToList()) graph.Input.Remove(input);
        GraphPasses.RemoveDeadCode(graph);
        var used = graph.Node.SelectMany(n => n.Input.Concat(GraphPasses.OuterScopeInputs(n))).Concat(chosen).ToHashSet(StringComparer.Ordinal);
        foreach (var input in graph.Input.Where(i => !used.Contains(i.Name)).ToList()) graph.Input.Remove(input);
        foreach (var t in graph.Initializer.Where(t => state.Contains(t.Name) || !used.Contains(t.Name)).ToList()) graph.Initializer.Remove(t);
        foreach (var stale in model.MetadataProps.Where(p => p.Key is StepModelInfo.MetadataKey or DataPlan.MetadataKey).ToList()) model.MetadataProps.Remove(stale);
        GraphPasses.TopologicalSort(graph);
        return model;
    }

    /// <summary>
    /// Puts the training forms back into inference form: each of <see cref="StepModelInfo.InferenceValues"/> is replaced
    /// by its inference value (a dropout passes its input; a BatchNormalization reads its buffers' trained running
    /// statistics instead of the batch's).
    /// </summary>
    private static void ToInferenceForm(GraphProto graph, StepModelInfo info)
    {
        foreach (var (value, inference) in info.InferenceValues ?? new Dictionary<string, string>())
        {
            var producer = graph.Node.FirstOrDefault(n => n.Output.Contains(value))
                ?? throw new OnnxAdadeltaException($"The checkpoint's metadata names '{value}' for its inference form, but no node computes it.");
            if (producer.Output.Count != 1)
                throw new OnnxAdadeltaException($"The checkpoint's metadata names '{value}' for its inference form, but its node '{producer.Name}' has several outputs.");
            graph.Node.Remove(producer);
            // Consumers read the inference value directly; a graph output keeps its name through an Identity.
            foreach (var node in graph.Node)
                for (int i = 0; i < node.Input.Count; i++) if (node.Input[i] == value) node.Input[i] = inference;
            if (graph.Output.Any(o => o.Name == value))
                graph.Node.Add(new NodeProto { OpType = "Identity", Name = producer.Name, Input = { inference }, Output = { value } });
        }
    }

    private static List<string> DefaultOutputs(GraphIndex index, StepModelInfo info)
    {
        var (chosen, labels) = OutputsAndLabels(index, info);
        if (chosen.Count == 0)
            throw new OnnxAdadeltaException($"Every output of the model needs a label input ({string.Join(", ", labels)}); name the outputs to keep with --output NAME.");
        return chosen;
    }

    /// <summary>
    /// The outputs export keeps by default (those that need no label input; possibly none) and the label inputs (data
    /// inputs that only the loss reads) of a step model.
    /// </summary>
    internal static (List<string> Outputs, HashSet<string> Labels) OutputsAndLabels(ModelProto stepModel, StepModelInfo info) =>
        OutputsAndLabels(new GraphIndex(stepModel.Graph), info);

    private static (List<string> Outputs, HashSet<string> Labels) OutputsAndLabels(GraphIndex index, StepModelInfo info)
    {
        var data = info.DataInputs.ToHashSet(StringComparer.Ordinal);
        var needs = info.Outputs.ToDictionary(o => o, o => DataInputsOf(index, o, data), StringComparer.Ordinal);
        var others = needs.Where(n => n.Key != info.Loss).SelectMany(n => n.Value).ToHashSet(StringComparer.Ordinal);
        var labels = needs.GetValueOrDefault(info.Loss, []).Where(d => !others.Contains(d)).ToHashSet(StringComparer.Ordinal);
        return (info.Outputs.Where(o => !needs[o].Overlaps(labels)).ToList(), labels);
    }

    private static HashSet<string> DataInputsOf(GraphIndex index, string value, HashSet<string> data)
    {
        var found = new HashSet<string>(StringComparer.Ordinal);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var stack = new Stack<string>([value]);
        while (stack.TryPop(out var v))
        {
            if (!seen.Add(v)) continue;
            if (data.Contains(v)) found.Add(v);
            if (index.Producer(v) is { } node)
                foreach (var i in node.Input.Concat(GraphPasses.OuterScopeInputs(node))) if (i.Length > 0) stack.Push(i);
        }
        return found;
    }
}
