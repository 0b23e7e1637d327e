using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Training;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Distributed;

/// <summary>One gradient the gradient model outputs and the update model reads.</summary>
/// <param name="Parameter">The parameter it belongs to.</param>
/// <param name="Name">The value's name in both models (the step model's raw gradient).</param>
/// <param name="Type">Its element type (the parameter's).</param>
/// <param name="Shape">Its shape (the parameter's).</param>
public sealed record SplitGradient(string Parameter, string Name, DataType Type, long[] Shape)
{
    /// <summary>Elements in the gradient.</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, d) => a * d);
}

/// <summary>
/// A training-step model cut at its gradients into the two models a data-parallel step runs, with the gradients
/// reduced across ranks in between:
/// <list type="number">
/// <item><see cref="GradientModel"/>: the training graph. Reads the data inputs, the parameters (and the counter where
/// random masks read it, and the buffers), and outputs the loss, each raw gradient, and each buffer's next value.</item>
/// <item><see cref="UpdateModel"/>: the optimizer. Reads the gradients and the optimizer state, and outputs the next value
/// of every state tensor except the buffers. Clipping, schedules, weight decay, EMA and accumulation sit here, so
/// they see the reduced gradients. Either the step model's standard ops (<see cref="UpdateMode.Graph"/>) or one fused
/// <c>ai.onnxadadelta.AdadeltaUpdate</c> node (<see cref="UpdateMode.Fused"/>, see <see cref="FusedUpdate"/>), which
/// is then the only node that reads a parameter or slot, so those can be bound in place (<see cref="InPlaceState"/>).</item>
/// </list>
/// Both keep the step model's value names, so a state tensor or gradient is bound under one name in either.
/// </summary>
public sealed record StepSplit
{
    /// <summary>The step model's contract.</summary>
    public required StepModelInfo Info { get; init; }

    /// <summary>Data and state in; loss, gradients and buffer values out.</summary>
    public required ModelProto GradientModel { get; init; }

    /// <summary>Gradients and optimizer state in; the next state (buffers excepted) out.</summary>
    public required ModelProto UpdateModel { get; init; }

    /// <summary>The gradients, in parameter order, each once.</summary>
    public required IReadOnlyList<SplitGradient> Gradients { get; init; }

    /// <summary>State inputs the gradient model reads (parameters, buffers, and the counter when random masks read it).</summary>
    public required IReadOnlyList<StateBinding> GradientModelState { get; init; }

    /// <summary>State inputs the update model reads and writes (everything but the buffers).</summary>
    public required IReadOnlyList<StateBinding> UpdateModelState { get; init; }

    /// <summary>How <see cref="UpdateModel"/> runs the update: the standard ops, or the fused op.</summary>
    public required UpdateMode Update { get; init; }

    /// <summary>
    /// State the update model may read and write in one buffer (bound as both input and output): with the fused update
    /// the parameters and slots the fused node writes, since no other node of the update model reads them; empty with the
    /// graph update, whose standard ops may read a parameter after writing its next value.
    /// </summary>
    public required IReadOnlyList<StateBinding> InPlaceState { get; init; }

    /// <summary>Cuts <paramref name="stepModel"/> (left unchanged) at its gradients.</summary>
    /// <param name="stepModel">The training-step model.</param>
    /// <param name="update">The update model's form: the step model's standard ops (default) or the fused op.</param>
    /// <exception cref="OnnxAdadeltaException">The step model is not one, or its update reads more than gradients and state.</exception>
    /// <exception cref="NotSupportedException">The fused op cannot run these options (see <see cref="FusedUpdate.Unsupported"/>).</exception>
    public static StepSplit Apply(ModelProto stepModel, UpdateMode update = UpdateMode.Graph)
    {
        if (!Enum.IsDefined(update)) throw new ArgumentOutOfRangeException(nameof(update), update, "Expected Fused or Graph.");
        stepModel = StepModelState.WithInputDefaults(stepModel);
        var info = StepModelInfo.Read(stepModel, "the model");
        var inits = stepModel.Graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var producers = new HashSet<string>(stepModel.Graph.Node.SelectMany(n => n.Output), StringComparer.Ordinal);
        var gradients = new List<SplitGradient>();
        foreach (var parameter in info.Parameters)
        {
            if (!info.Gradients.TryGetValue(parameter, out var name))
                throw new OnnxAdadeltaException($"The step model records no gradient for parameter '{parameter}'.");
            if (gradients.Any(g => g.Name == name)) continue;
            if (!producers.Contains(name))
                throw new OnnxAdadeltaException($"Gradient '{name}' of parameter '{parameter}' is not computed by a node of the step model; it cannot be split there.");
            var value = inits[parameter];
            gradients.Add(new SplitGradient(parameter, name, (DataType)value.DataType, [.. value.Dims]));
        }
        var gradientNames = gradients.Select(g => g.Name).ToHashSet(StringComparer.Ordinal);
        var buffers = info.State.Where(s => s.Kind == StateKind.Buffer).ToList();

        // The gradient model: loss, gradients and buffers out.
        var gradientModel = stepModel.DeepCopy();
        {
            var graph = gradientModel.Graph;
            var outputs = graph.Output.ToDictionary(o => o.Name, StringComparer.Ordinal);
            graph.Output.Clear();
            graph.Output.Add(outputs[info.Loss]);
            foreach (var g in gradients) graph.Output.Add(TypeProtos.ValueInfo(g.Name, g.Type, g.Shape));
            foreach (var b in buffers) graph.Output.Add(outputs[b.Output]);
            foreach (var v in graph.ValueInfo.Where(v => gradientNames.Contains(v.Name)).ToList()) graph.ValueInfo.Remove(v);
            Finish(gradientModel, keep: info.DataInputs);
        }

        // The update model: the gradients' producers are cut off and the gradients become inputs. The fused node takes
        // no ordering inputs: nothing it would wait for (loss, buffers) is left in the update model.
        var updateModel = update == UpdateMode.Fused ? FusedUpdate.Swap(stepModel, orderingInputs: false) : stepModel.DeepCopy();
        {
            var graph = updateModel.Graph;
            var cut = graph.Node.Where(n => n.Output.Any(gradientNames.Contains)).ToList();
            foreach (var node in cut) graph.Node.Remove(node);
            foreach (var v in graph.ValueInfo.Where(v => gradientNames.Contains(v.Name)).ToList()) graph.ValueInfo.Remove(v);
            foreach (var g in gradients) graph.Input.Add(TypeProtos.ValueInfo(g.Name, g.Type, g.Shape));
            var outputs = graph.Output.ToDictionary(o => o.Name, StringComparer.Ordinal);
            graph.Output.Clear();
            foreach (var s in info.State.Where(s => s.Kind != StateKind.Buffer)) graph.Output.Add(outputs[s.Output]);
            // The rate this step applied: read back after each step, as a single-process trainer does.
            if (info.LearningRateOutput is { } rate && outputs.TryGetValue(rate, out var rateOutput)) graph.Output.Add(rateOutput);
            Finish(updateModel, keep: []);
            var read = ReadValues(graph);
            if (info.DataInputs.FirstOrDefault(read.Contains) is { } data)
                throw new OnnxAdadeltaException($"The optimizer update of the step model reads data input '{data}' other than through the gradients; it cannot be split for distributed training.");
            var produced = new HashSet<string>(graph.Node.SelectMany(n => n.Output), StringComparer.Ordinal);
            var available = graph.Input.Select(i => i.Name).Concat(graph.Initializer.Select(i => i.Name)).ToHashSet(StringComparer.Ordinal);
            if (read.FirstOrDefault(v => v.Length > 0 && !produced.Contains(v) && !available.Contains(v)) is { } dangling)
                throw new OnnxAdadeltaException($"The optimizer update of the step model reads '{dangling}', which the gradients' nodes compute; it cannot be split for distributed training.");
        }

        var gradientInputs = gradientModel.Graph.Input.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        var updateState = info.State.Where(s => s.Kind != StateKind.Buffer).ToList();
        return new StepSplit
        {
            Info = info,
            GradientModel = gradientModel,
            UpdateModel = updateModel,
            Gradients = gradients,
            GradientModelState = info.State.Where(s => gradientInputs.Contains(s.Input)).ToList(),
            UpdateModelState = updateState,
            Update = update,
            InPlaceState = update == UpdateMode.Fused ? InPlace(updateModel.Graph, updateState) : [],
        };
    }

    // The state the fused node writes, where no other node reads its input: a value that may share one buffer.
    private static List<StateBinding> InPlace(GraphProto graph, IReadOnlyList<StateBinding> state)
    {
        var fused = graph.Node.Single(n => n.Domain == FusedUpdate.Domain && n.OpType == FusedUpdate.OpType);
        var written = fused.Output.ToHashSet(StringComparer.Ordinal);
        var readElsewhere = graph.Node.Where(n => !ReferenceEquals(n, fused)).SelectMany(n => n.Input.Concat(GraphPasses.OuterScopeInputs(n))).ToHashSet(StringComparer.Ordinal);
        return state.Where(s => written.Contains(s.Output) && !readElsewhere.Contains(s.Input)).ToList();
    }

    // Dead nodes go, then graph inputs nothing reads (with their initializers), except those in keep; the record of
    // the step model goes too, so neither half is taken for a step model.
    private static void Finish(ModelProto model, IReadOnlyList<string> keep)
    {
        var graph = model.Graph;
        GraphPasses.RemoveDeadCode(graph);
        var read = ReadValues(graph);
        var kept = keep.ToHashSet(StringComparer.Ordinal);
        foreach (var input in graph.Input.Where(i => !read.Contains(i.Name) && !kept.Contains(i.Name)).ToList())
        {
            graph.Input.Remove(input);
            foreach (var t in graph.Initializer.Where(t => t.Name == input.Name).ToList()) graph.Initializer.Remove(t);
        }
        GraphPasses.TopologicalSort(graph);
        foreach (var entry in model.MetadataProps.Where(p => p.Key == StepModelInfo.MetadataKey).ToList()) model.MetadataProps.Remove(entry);
    }

    private static HashSet<string> ReadValues(GraphProto graph)
    {
        var read = new HashSet<string>(graph.Output.Select(o => o.Name), StringComparer.Ordinal);
        foreach (var node in graph.Node)
            foreach (var i in node.Input.Concat(GraphPasses.OuterScopeInputs(node))) read.Add(i);
        return read;
    }
}
