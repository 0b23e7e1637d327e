using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Import;

/// <summary>Where <see cref="OrtArtifactImport.Import"/> finds parameter values, and how it names its input in messages.</summary>
public sealed class OrtImportOptions
{
    /// <summary>An ORT training checkpoint (flatbuffer, identifier <c>ODTC</c>) holding the parameter values.</summary>
    public string? CheckpointPath { get; init; }

    /// <summary>
    /// A model whose initializers supply parameter values (by name); they take precedence over the checkpoint's.
    /// </summary>
    public ModelProto? ParameterValues { get; init; }

    /// <summary>The name of the training model in error messages (e.g. its path).</summary>
    public string Source { get; init; } = "training model";
}

/// <summary>
/// Turns the training model of ONNX Runtime's on-device training artifacts (onnxruntime-training's
/// <c>generate_artifacts</c>) into an ordinary training graph that <see cref="AdadeltaRewrite"/> takes: the loss
/// first among the outputs, one <c>&lt;param&gt;_grad</c> output per trainable parameter, and the parameters as
/// float32 initializers that stay graph inputs.
/// </summary>
public static class OrtArtifactImport
{
    /// <summary>The com.microsoft op that accumulates each gradient into a buffer in ORT training models.</summary>
    public const string AccumulatorOp = "InPlaceAccumulatorV2";

    /// <summary>Whether <paramref name="model"/> looks like an ORT training model: it accumulates gradients with <see cref="AccumulatorOp"/>.</summary>
    public static bool IsArtifact(ModelProto model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model.Graph?.Node.Any(IsAccumulator) == true;
    }

    /// <summary>
    /// Imports an ORT training model (left unchanged). The gradient accumulators are removed and each accumulated
    /// gradient becomes the output <c>&lt;param&gt;_grad</c>; the accumulation buffers, <c>lazy_reset_grad</c> and the
    /// accumulators' flag outputs go; com.microsoft ops are lowered to standard ones (<see cref="Lowering.Apply"/>);
    /// parameters get their values from the checkpoint and/or <see cref="OrtImportOptions.ParameterValues"/>.
    /// Graph inputs that are not trainable but have a value there (frozen parameters) become plain initializers.
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">
    /// The model is not an ORT training model, uses ops that cannot be lowered (all listed), lacks values for some
    /// parameters (all listed), or a value does not fit its parameter.
    /// </exception>
    public static ModelProto Import(ModelProto trainingModel, OrtImportOptions options)
    {
        ArgumentNullException.ThrowIfNull(trainingModel);
        ArgumentNullException.ThrowIfNull(options);
        var source = options.Source;
        var model = trainingModel.DeepCopy();
        var graph = model.Graph ?? throw new OnnxAdadeltaException($"{source}: the model has no graph.");
        if (graph.Output.Count == 0) throw new OnnxAdadeltaException($"{source}: the training model has no outputs; its first output must be the loss.");
        OpsetImports.Normalize(model, source);

        var parameters = RemoveAccumulators(graph, source);
        var losses = LabelLosses(graph);
        Lowering.Apply(model);
        var values = CollectValues(options);
        BindParameters(graph, parameters, values, source);
        PruneOpsetImports(model);
        Opsets.RaiseForRewrite(model);
        GraphPasses.RemoveDeadCode(graph);
        GraphPasses.TopologicalSort(graph);
        RecordLabelChecks(model, losses);
        return model;
    }

    /// <summary>A loss that reads class labels: its scores (classes on axis 1), its labels and its ignore_index (null: none).</summary>
    private sealed record LabelLoss(string Scores, string Labels, long? IgnoreIndex);

    /// <summary>
    /// The losses whose input 1 is a class label per sample, before the com.microsoft ones are lowered:
    /// SoftmaxCrossEntropyLoss and NegativeLogLikelihoodLoss (ignore_index attribute, none by default) and
    /// com.microsoft SoftmaxCrossEntropyLossInternal (ignore_index input 3, −1 when absent as in ORT's kernel; a loss
    /// whose ignore_index is not a constant is left out, since what it skips is not known before the run).
    /// </summary>
    private static List<LabelLoss> LabelLosses(GraphProto graph)
    {
        var constants = graph.Initializer.Where(t => !graph.Input.Any(i => i.Name == t.Name)).GroupBy(t => t.Name)
            .ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);
        var result = new List<LabelLoss>();
        foreach (var node in graph.Node)
        {
            if (node.Input.Count < 2 || node.Input[1].Length == 0) continue;
            if (node.Domain is "" or "ai.onnx" && node.OpType is "SoftmaxCrossEntropyLoss" or "NegativeLogLikelihoodLoss")
                result.Add(new LabelLoss(node.Input[0], node.Input[1], node.Attribute.FirstOrDefault(a => a.Name == "ignore_index")?.I));
            else if (node.Domain == Lowering.MicrosoftDomain && node.OpType == "SoftmaxCrossEntropyLossInternal")
            {
                if (node.Input.Count <= 3 || node.Input[3].Length == 0) result.Add(new LabelLoss(node.Input[0], node.Input[1], -1));
                else if (constants.TryGetValue(node.Input[3], out var t) && t.DataType == (int)DataType.Int64 && t.ToInt64Array() is [var ignore])
                    result.Add(new LabelLoss(node.Input[0], node.Input[1], ignore));
            }
        }
        return result;
    }

    /// <summary>
    /// Records a <see cref="LabelCheck"/> for each label loss whose labels are a data input and whose scores have a
    /// static class axis (shape inference of the imported graph tells it where the model does not declare it), so that
    /// training checks every batch's labels before ONNX Runtime sees them.
    /// </summary>
    private static void RecordLabelChecks(ModelProto model, List<LabelLoss> losses)
    {
        if (losses.Count == 0) return;
        var index = new GraphIndex(model.Graph);
        IReadOnlyDictionary<string, Runtime.TypeAndShape>? inferred = null;
        var checks = new List<LabelCheck>();
        foreach (var loss in losses)
        {
            if (!index.Inputs.ContainsKey(loss.Labels) || index.Initializers.ContainsKey(loss.Labels) || checks.Any(c => c.Input == loss.Labels)) continue;
            long? classes = index.TypeOf(loss.Scores).Dims() is { Count: >= 2 } dims && dims[1] is long declared ? declared : null;
            if (classes is null)
            {
                inferred ??= Gradients.ShapeInference.Infer(model);
                if (inferred.GetValueOrDefault(loss.Scores)?.Dims is { Length: >= 2 } d && d[1] is { } n) classes = n;
            }
            if (classes is > 0) checks.Add(new LabelCheck(loss.Labels, classes.Value, loss.IgnoreIndex));
        }
        if (checks.Count > 0) (TrainingGraphInfo.Read(model) with { Labels = checks }).WriteTo(model);
    }

    private static bool IsAccumulator(NodeProto n) => n.Domain == Lowering.MicrosoftDomain && n.OpType == AccumulatorOp;

    /// <summary>A trainable parameter: the graph input and the value holding its gradient.</summary>
    private sealed record Accumulated(string Parameter, string Gradient);

    /// <summary>
    /// Removes every accumulator (inputs: buffer, gradient, optional overwrite flag; outputs: updated flag, optional
    /// buffer out); returns the parameters in graph-input order. The gradients become outputs after the forward ones.
    /// </summary>
    private static List<Accumulated> RemoveAccumulators(GraphProto graph, string source)
    {
        var accumulators = graph.Node.Where(IsAccumulator).ToList();
        if (accumulators.Count == 0)
            throw new OnnxAdadeltaException($"{source}: not an ONNX Runtime training model: it has no com.microsoft {AccumulatorOp} nodes (gradient accumulators).");

        var inputs = graph.Input.ToDictionary(i => i.Name, StringComparer.Ordinal);
        var byParameter = new Dictionary<string, string>(StringComparer.Ordinal);
        var dropped = new HashSet<string>(StringComparer.Ordinal);      // accumulator outputs
        var bufferOut = new Dictionary<string, string>(StringComparer.Ordinal); // accumulation_buffer_out → gradient
        var maybeUnused = new HashSet<string>(StringComparer.Ordinal);  // buffers and flags
        foreach (var acc in accumulators)
        {
            string what = $"{source}: {AccumulatorOp} node '{acc.Name}'";
            if (acc.Input.Count < 2 || acc.Input[1].Length == 0)
                throw new OnnxAdadeltaException($"{what} has no gradient input (expected accumulation_buffer, value, overwrite_flag).");
            var gradient = acc.Input[1];
            if (!gradient.EndsWith(TrainingGraph.GradientSuffix, StringComparison.Ordinal))
                throw new OnnxAdadeltaException($"{what} accumulates '{gradient}', which is not named <param>{TrainingGraph.GradientSuffix}.");
            var parameter = gradient[..^TrainingGraph.GradientSuffix.Length];
            if (!inputs.ContainsKey(parameter))
                throw new OnnxAdadeltaException($"{what} accumulates '{gradient}', but '{parameter}' is not a graph input.");
            if (!byParameter.TryAdd(parameter, gradient))
                throw new OnnxAdadeltaException($"{what}: parameter '{parameter}' has two gradient accumulators.");
            maybeUnused.Add(acc.Input[0]);
            if (acc.Input.Count > 2) maybeUnused.Add(acc.Input[2]);
            foreach (var o in acc.Output.Where(o => o.Length > 0)) dropped.Add(o);
            if (acc.Output.Count > 1 && acc.Output[1].Length > 0) bufferOut[acc.Output[1]] = gradient;
        }
        foreach (var a in accumulators) graph.Node.Remove(a);

        // With the overwrite flag set (one fresh gradient per step), the buffer out is the gradient itself.
        foreach (var node in graph.Node)
            for (int i = 0; i < node.Input.Count; i++)
            {
                if (bufferOut.TryGetValue(node.Input[i], out var g)) node.Input[i] = g;
                else if (dropped.Contains(node.Input[i]))
                    throw new OnnxAdadeltaException($"{source}: node '{node.Name}' ({node.OpType}) reads '{node.Input[i]}', the updated flag of a gradient accumulator.");
            }

        if (dropped.Contains(graph.Output[0].Name))
            throw new OnnxAdadeltaException($"{source}: the first output '{graph.Output[0].Name}' is a gradient accumulator's output, not the loss.");
        var forward = graph.Output.Where(o => !dropped.Contains(o.Name) && !byParameter.ContainsValue(o.Name)).ToList();
        var read = new HashSet<string>(graph.Node.SelectMany(n => n.Input.Concat(GraphPasses.OuterScopeInputs(n))), StringComparer.Ordinal);
        var outputNames = new HashSet<string>(forward.Select(o => o.Name), StringComparer.Ordinal);
        foreach (var name in maybeUnused.Where(n => !read.Contains(n) && !outputNames.Contains(n) && inputs.ContainsKey(n)))
            graph.Input.Remove(inputs[name]);

        var parameters = graph.Input.Where(i => byParameter.ContainsKey(i.Name)).Select(i => new Accumulated(i.Name, byParameter[i.Name])).ToList();
        graph.Output.Clear();
        graph.Output.AddRange(forward);
        foreach (var p in parameters)
            graph.Output.Add(new ValueInfoProto { Name = p.Gradient, Type = inputs[p.Parameter].Type?.Clone() });
        return parameters;
    }

    /// <summary>Values by name: the checkpoint's parameters, then the parameter model's initializers over them.</summary>
    private static Dictionary<string, TensorProto> CollectValues(OrtImportOptions options)
    {
        var values = new Dictionary<string, TensorProto>(StringComparer.Ordinal);
        if (options.CheckpointPath is { } path)
            foreach (var (name, value) in OrtCheckpoint.Load(path).Parameters) values[name] = value;
        // A step model or checkpoint gives its trained parameters under their own names (either format).
        var supplied = options.ParameterValues;
        if (supplied is not null && StepModelInfo.TryRead(supplied) is not null) supplied = StepModelState.ParameterValues(supplied);
        if (supplied?.Graph is { } g)
            foreach (var t in g.Initializer) values[t.Name] = t;
        return values;
    }

    private static void BindParameters(GraphProto graph, List<Accumulated> parameters, Dictionary<string, TensorProto> values, string source)
    {
        var initializers = graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var missing = parameters.Where(p => !values.ContainsKey(p.Parameter) && !initializers.ContainsKey(p.Parameter)).Select(p => p.Parameter).ToList();
        if (missing.Count > 0)
            throw new OnnxAdadeltaException(
                $"{source}: no value for parameter{(missing.Count > 1 ? "s" : "")} {string.Join(", ", missing.Select(m => $"'{m}'"))}: " +
                $"give an ORT checkpoint (--checkpoint) or a model with {(missing.Count > 1 ? "them" : "it")} as initializers (--params).");

        var trainable = parameters.Select(p => p.Parameter).ToHashSet(StringComparer.Ordinal);
        foreach (var input in graph.Input.ToList())
        {
            if (!values.TryGetValue(input.Name, out var supplied)) continue;
            var value = supplied.Clone();
            value.Name = input.Name;
            CheckFits(input, value, trainable.Contains(input.Name), source);
            if (initializers.TryGetValue(input.Name, out var old)) graph.Initializer.Remove(old);
            graph.Initializer.Add(value);
            // Frozen parameters are constants of the training graph, not inputs: the rewrite trains every float input with a value.
            if (!trainable.Contains(input.Name)) graph.Input.Remove(input);
        }
    }

    private static void CheckFits(ValueInfoProto input, TensorProto value, bool trainable, string source)
    {
        if (trainable && value.DataType != (int)DataType.Float)
            throw new OnnxAdadeltaException($"{source}: the value of parameter '{input.Name}' is {DataTypes.Name(value.DataType)}; only float32 parameters can be trained.");
        var declared = input.Type?.TensorType;
        if (declared is null) return;
        if (declared.ElemType != 0 && declared.ElemType != value.DataType)
            throw new OnnxAdadeltaException($"{source}: input '{input.Name}' is {DataTypes.Name(declared.ElemType)}, but its value is {DataTypes.Name(value.DataType)}.");
        if (declared.Shape is not { } shape) return;
        bool fits = shape.Dim.Count == value.Dims.Count
            && shape.Dim.Zip(value.Dims).All(p => p.First.ValueCase != TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue || p.First.DimValue == p.Second);
        if (!fits)
        {
            var dims = string.Join(",", shape.Dim.Select(d => d.ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue ? d.DimValue.ToString() : d.DimParam is { Length: > 0 } p ? p : "?"));
            throw new OnnxAdadeltaException($"{source}: input '{input.Name}' has shape [{dims}], but its value has shape [{string.Join(",", value.Dims)}].");
        }
    }

    /// <summary>Drops the opset imports of domains nothing uses (ORT training models import every training domain).</summary>
    private static void PruneOpsetImports(ModelProto model)
    {
        var used = new HashSet<string>(StringComparer.Ordinal) { "", "ai.onnx" };
        void Visit(IEnumerable<NodeProto> nodes)
        {
            foreach (var n in nodes)
            {
                used.Add(n.Domain);
                foreach (var a in n.Attribute)
                {
                    if (a.G is not null) Visit(a.G.Node);
                    foreach (var g in a.Graphs) Visit(g.Node);
                }
            }
        }
        Visit(model.Graph.Node);
        foreach (var f in model.Functions)
        {
            used.Add(f.Domain);
            Visit(f.Node);
        }
        foreach (var o in model.OpsetImport.Where(o => !used.Contains(o.Domain)).ToList()) model.OpsetImport.Remove(o);
    }
}
