using System.Text.Json;
using System.Text.Json.Serialization;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Onnx.Proto;

namespace OnnxAdadelta.Optimizers;

/// <summary>What one state tensor is.</summary>
public enum StateKind
{
    /// <summary>A trainable parameter.</summary>
    Parameter,

    /// <summary>An optimizer slot of one parameter (accum_grad, accum_var).</summary>
    Slot,

    /// <summary>The int64 iteration counter.</summary>
    Iterations,

    /// <summary>
    /// A tensor the forward pass updates (a BatchNormalization running mean or variance): no gradient, untouched by
    /// the optimizer, and kept by export as an initializer holding its trained value.
    /// </summary>
    Buffer,
}

/// <summary>One state tensor of a training-step model: read from <see cref="Input"/>, its next value written to <see cref="Output"/>.</summary>
/// <param name="Input">The graph input (and initializer) holding the current value.</param>
/// <param name="Output">The graph output holding the value after the step.</param>
/// <param name="Kind">Parameter, slot, counter or buffer.</param>
/// <param name="Parameter">The parameter this tensor belongs to (null for the counter and buffers).</param>
/// <param name="Slot">The slot name for <see cref="StateKind.Slot"/>.</param>
/// <param name="Initial">
/// The initializer holding the value the input starts from (format 2: <c>&lt;input&gt;.initial</c>, read by no node);
/// null in format 1, where the input's own initializer holds it. See <see cref="StepModelState"/>.
/// </param>
public sealed record StateBinding(string Input, string Output, StateKind Kind, string? Parameter = null, string? Slot = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Initial = null);

/// <summary>
/// The contract of a training-step model, stored in its <c>metadata_props</c> so that any ONNX Runtime binding can loop
/// it: which output feeds which input on the next step, the loss, the gradients, and the optimizer arguments.
/// </summary>
public sealed record StepModelInfo
{
    /// <summary>The metadata key that holds this record as JSON.</summary>
    public const string MetadataKey = "onnx_adadelta.step_model";

    /// <summary>The format this library writes: 2, state inputs without initializers of their own names (see <see cref="StepModelState"/>).</summary>
    public const int CurrentFormatVersion = 2;

    /// <summary>Version of this record's format: 1 (state values in initializers named as the inputs) or 2.</summary>
    public int FormatVersion { get; init; } = 1;

    /// <summary>The loss output (a float32 scalar), the first graph output.</summary>
    public required string Loss { get; init; }

    /// <summary>The outputs of the training graph other than gradients, in order (loss first).</summary>
    public required IReadOnlyList<string> Outputs { get; init; }

    /// <summary>The data inputs (everything the caller feeds per step).</summary>
    public required IReadOnlyList<string> DataInputs { get; init; }

    /// <summary>Each state tensor and where its next value comes out.</summary>
    public required IReadOnlyList<StateBinding> State { get; init; }

    /// <summary>Parameter name to the graph value holding its raw (unclipped) gradient.</summary>
    public required IReadOnlyDictionary<string, string> Gradients { get; init; }

    /// <summary>The optimizer's arguments, stored as the <see cref="AdadeltaOptions"/> record itself.</summary>
    public required AdadeltaOptions Optimizer { get; init; }

    /// <summary>
    /// Values computed differently in training (random dropout, batch statistics): export replaces each key by the value
    /// it maps to (left out when none; see <see cref="Graphs.TrainingGraphInfo.InferenceValues"/>).
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyDictionary<string, string>? InferenceValues { get; init; }

    /// <summary>
    /// The label inputs checked as each batch is bound (left out when none; older files have none, and
    /// <see cref="LabelChecks"/> then finds them in the graph).
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<LabelCheck>? Labels { get; init; }

    /// <summary>
    /// The graph output holding the learning rate the step applied (a float32 scalar: the rate of the parameters in no
    /// parameter group of their own, the rate <see cref="AdadeltaOptions.LearningRateAt(long)"/> computes on the host).
    /// Optional within format 2: null in step models and checkpoints written before the rewrite added the output; a
    /// trainer of such a model computes the rate on the host instead, and changing its optimizer
    /// (<see cref="OptimizerChange"/>) rewrites the update with the output.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? LearningRateOutput { get; init; }

    /// <summary>The label checks of <paramref name="model"/>: those recorded in <see cref="Labels"/>, else those <see cref="LabelCheck.Find"/> finds in its graph.</summary>
    public IReadOnlyList<LabelCheck> LabelChecks(ModelProto model) => Labels ?? LabelCheck.Find(model.Graph);

    /// <summary>The iteration counter's binding.</summary>
    [JsonIgnore]
    public StateBinding Iterations => State.Single(s => s.Kind == StateKind.Iterations);

    /// <summary>The trainable parameters, in order.</summary>
    [JsonIgnore]
    public IEnumerable<string> Parameters => State.Where(s => s.Kind == StateKind.Parameter).Select(s => s.Input);

    /// <summary>Writes this record into the model's metadata, replacing an earlier one.</summary>
    public void WriteTo(ModelProto model)
    {
        var old = model.MetadataProps.Where(p => p.Key == MetadataKey).ToList();
        foreach (var p in old) model.MetadataProps.Remove(p);
        model.MetadataProps.Add(new StringStringEntryProto { Key = MetadataKey, Value = JsonSerializer.Serialize(this, MetadataJson.Of<StepModelInfo>()) });
    }

    /// <summary>
    /// The record stored in <paramref name="model"/>, checked against its graph (<see cref="Validate"/>), or null if it
    /// is not a training-step model.
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">The metadata is not valid JSON of this record, or disagrees with the graph; the message names the binding.</exception>
    public static StepModelInfo? TryRead(ModelProto model, string source = "the model")
    {
        ArgumentNullException.ThrowIfNull(model);
        var entry = model.MetadataProps.FirstOrDefault(p => p.Key == MetadataKey);
        if (entry is null) return null;
        PipelineCounts.ContractParsed();
        StepModelInfo? info;
        try { info = JsonSerializer.Deserialize(entry.Value, MetadataJson.Of<StepModelInfo>()); }
        catch (JsonException e) { throw new OnnxAdadeltaException($"{source}: metadata '{MetadataKey}' is not valid: {OneLine(e.Message)}", e); }
        catch (ArgumentException e) { throw new OnnxAdadeltaException($"{source}: metadata '{MetadataKey}' is not valid: {OneLine(e.Message)}", e); }
        if (info is null) throw new OnnxAdadeltaException($"{source}: metadata '{MetadataKey}' is null; expected the step model's JSON record (loss, data_inputs, state, gradients, optimizer).");
        info.Validate(model, source);
        return info;
    }

    /// <summary>The record stored in <paramref name="model"/>; throws naming <paramref name="source"/> if there is none.</summary>
    public static StepModelInfo Read(ModelProto model, string source) =>
        TryRead(model, source) ?? throw new OnnxAdadeltaException($"{source}: not a training-step model (no '{MetadataKey}' metadata); make one with 'onnx-adadelta rewrite'.");

    /// <summary>
    /// Checks the record against <paramref name="model"/>'s graph, so that a hand-edited or damaged record fails here,
    /// naming the binding, rather than deep inside a run: every field present; one iteration counter (an int64
    /// initializer of one element); each state binding reading a graph input that has an initializer and writing a
    /// graph output, with no input or output bound twice; each parameter with its gradient and the slots its optimizer
    /// keeps (accum_grad and accum_var, plus ema or gradient_accumulator where the options use them); the loss and the
    /// other outputs among the graph outputs and the data inputs among the graph inputs; valid optimizer arguments.
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">The first disagreement, naming <paramref name="source"/> and the binding.</exception>
    public void Validate(ModelProto model, string source)
    {
        ArgumentNullException.ThrowIfNull(model);
        string Bad(string what) => $"{source}: step-model metadata '{MetadataKey}': {what}";
        if (string.IsNullOrEmpty(Loss)) throw new OnnxAdadeltaException(Bad("'loss' is missing or empty; expected the name of the loss output."));
        if (Outputs is null) throw new OnnxAdadeltaException(Bad("'outputs' is null; expected the list of the training graph's outputs."));
        if (DataInputs is null) throw new OnnxAdadeltaException(Bad("'data_inputs' is null; expected the list of the inputs fed per step."));
        if (State is null || State.Count == 0) throw new OnnxAdadeltaException(Bad("'state' is empty; expected one {input, output} binding per parameter, slot and the iteration counter."));
        if (Gradients is null) throw new OnnxAdadeltaException(Bad("'gradients' is null; expected the gradient value of each parameter."));
        if (Optimizer is null) throw new OnnxAdadeltaException(Bad("'optimizer' is null; expected the optimizer's arguments."));

        var graph = model.Graph;
        var inputs = graph.Input.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        var outputs = graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        var initializers = new Dictionary<string, TensorProto>(StringComparer.Ordinal);
        foreach (var t in graph.Initializer) initializers.TryAdd(t.Name, t);
        if (!outputs.Contains(Loss)) throw new OnnxAdadeltaException(Bad($"the loss '{Loss}' is not a graph output."));
        foreach (var o in Outputs)
            if (o is null || !outputs.Contains(o)) throw new OnnxAdadeltaException(Bad($"output '{o}' is not a graph output."));
        foreach (var d in DataInputs)
        {
            if (d is null || !inputs.Contains(d)) throw new OnnxAdadeltaException(Bad($"data input '{d}' is not a graph input."));
            if (initializers.ContainsKey(d)) throw new OnnxAdadeltaException(Bad($"data input '{d}' has an initializer, so it is state or a constant, not data fed per step."));
        }

        if (LearningRateOutput is { } lr)
        {
            var declared = graph.Output.FirstOrDefault(o => o.Name == lr);
            if (declared is null) throw new OnnxAdadeltaException(Bad($"the learning-rate output '{lr}' is not a graph output."));
            if (lr == Loss || Outputs.Contains(lr) || State.Any(s => s?.Output == lr))
                throw new OnnxAdadeltaException(Bad($"the learning-rate output '{lr}' is also the loss, an original output or a state output; expected an output of its own."));
            if (declared.Type?.TensorType is { } t && (t.ElemType != (int)TensorProto.Types.DataType.Float || (t.Shape is { } shape && shape.Dim.Count != 0)))
                throw new OnnxAdadeltaException(Bad($"the learning-rate output '{lr}' is declared {DataTypes.Name(t.ElemType)}[{(t.Shape is null ? "?" : string.Join(",", t.Shape.Dim.Select(d => d.DimParam is { Length: > 0 } p ? p : d.DimValue.ToString(System.Globalization.CultureInfo.InvariantCulture))))}]; expected a float32 scalar."));
        }

        var boundInputs = new HashSet<string>(StringComparer.Ordinal);
        var boundOutputs = new HashSet<string>(StringComparer.Ordinal);
        var iterations = new List<StateBinding>();
        var parameters = new List<string>();
        var slots = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        foreach (var s in State)
        {
            if (s is null) throw new OnnxAdadeltaException(Bad("a state binding is null; expected {input, output, kind}."));
            var label = $"state binding {{input '{s.Input}', output '{s.Output}', kind {s.Kind}}}";
            if (string.IsNullOrEmpty(s.Input) || string.IsNullOrEmpty(s.Output))
                throw new OnnxAdadeltaException(Bad($"{label} lacks an input or output name."));
            if (!Enum.IsDefined(s.Kind)) throw new OnnxAdadeltaException(Bad($"{label} has an unknown kind; expected Parameter, Slot, Iterations or Buffer."));
            if (!inputs.Contains(s.Input)) throw new OnnxAdadeltaException(Bad($"{label}: '{s.Input}' is not a graph input."));
            // Format 2 keeps the value under the binding's own name; a session's copy may leave it out (StepModelState.Values checks it).
            if (s.Initial is null && !initializers.ContainsKey(s.Input)) throw new OnnxAdadeltaException(Bad($"{label}: no initializer '{StepModelState.InitialName(s)}' holds its current value."));
            if (!outputs.Contains(s.Output)) throw new OnnxAdadeltaException(Bad($"{label}: '{s.Output}' is not a graph output."));
            if (!boundInputs.Add(s.Input)) throw new OnnxAdadeltaException(Bad($"{label}: input '{s.Input}' is bound twice."));
            if (!boundOutputs.Add(s.Output)) throw new OnnxAdadeltaException(Bad($"{label}: output '{s.Output}' is bound twice."));
            switch (s.Kind)
            {
                case StateKind.Iterations: iterations.Add(s); break;
                case StateKind.Parameter: parameters.Add(s.Input); break;
                case StateKind.Slot:
                    if (string.IsNullOrEmpty(s.Parameter) || string.IsNullOrEmpty(s.Slot))
                        throw new OnnxAdadeltaException(Bad($"{label} names no parameter or slot."));
                    if (!slots.TryGetValue(s.Parameter, out var set)) slots[s.Parameter] = set = new HashSet<string>(StringComparer.Ordinal);
                    if (!set.Add(s.Slot)) throw new OnnxAdadeltaException(Bad($"{label}: parameter '{s.Parameter}' has slot '{s.Slot}' twice."));
                    break;
            }
        }
        if (iterations.Count != 1)
            throw new OnnxAdadeltaException(Bad(iterations.Count == 0 ? "no state binding of kind Iterations; expected exactly one iteration counter."
                : $"{iterations.Count} state bindings of kind Iterations ({string.Join(", ", iterations.Select(i => $"'{i.Input}'"))}); expected exactly one."));
        if (initializers.TryGetValue(StepModelState.InitialName(iterations[0]), out var counter) && (counter.DataType != (int)TensorProto.Types.DataType.Int64 || Tensors.ElementCount(counter.Dims) != 1))
            throw new OnnxAdadeltaException(Bad($"the iteration counter '{counter.Name}' is {DataTypes.Name((TensorProto.Types.DataType)counter.DataType)}[{string.Join(",", counter.Dims)}]; expected one int64."));

        AdadeltaOptions options;
        try { options = Optimizer.Validate(); }
        catch (Exception e) when (e is ArgumentException or OnnxAdadeltaException or NullReferenceException)
        {
            throw new OnnxAdadeltaException(Bad($"'optimizer' is not valid: {OneLine(e.Message)}"), e);
        }
        var required = new List<string> { ScaleByAdadelta.AccumGrad, ScaleByAdadelta.AccumVar };
        if (options.UseEma) required.Add(MovingAverage.Slot);
        if (options.GradientAccumulationSteps is not null) required.Add(AccumulateGradients.Accumulator);
        var parameterSet = parameters.ToHashSet(StringComparer.Ordinal);
        foreach (var p in parameters)
        {
            if (!this.Gradients.TryGetValue(p, out var g) || string.IsNullOrEmpty(g))
                throw new OnnxAdadeltaException(Bad($"parameter '{p}' has no entry in 'gradients'."));
            var have = slots.GetValueOrDefault(p);
            if (required.FirstOrDefault(r => have is null || !have.Contains(r)) is { } missing)
                throw new OnnxAdadeltaException(Bad($"parameter '{p}' has no '{missing}' state binding; the optimizer keeps {string.Join(", ", required)} per parameter."));
        }
        foreach (var l in Labels ?? [])
        {
            if (l is null || string.IsNullOrEmpty(l.Input) || !DataInputs.Contains(l.Input))
                throw new OnnxAdadeltaException(Bad($"label check '{l?.Input}' does not name a data input."));
            if (l.Classes < 1) throw new OnnxAdadeltaException(Bad($"label check '{l.Input}' has {l.Classes} classes; expected at least 1."));
        }
        if (slots.Keys.FirstOrDefault(k => !parameterSet.Contains(k)) is { } orphan)
            throw new OnnxAdadeltaException(Bad($"slot state names parameter '{orphan}', which has no state binding of kind Parameter."));
    }

    /// <summary>
    /// Refuses stored state no run could have produced: a non-finite element (NaN, ±Inf) in a parameter, slot or buffer,
    /// a negative element in an accumulator of squares (<c>accum_grad</c>, <c>accum_var</c>), or a negative iteration count.
    /// Reads every state initializer once.
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">The first such element, naming <paramref name="source"/>, the tensor and the index.</exception>
    public void ValidateState(ModelProto model, string source)
    {
        ArgumentNullException.ThrowIfNull(model);
        var initializers = new Dictionary<string, TensorProto>(StringComparer.Ordinal);
        foreach (var t in model.Graph.Initializer) initializers.TryAdd(t.Name, t);
        foreach (var s in State)
        {
            if (!initializers.TryGetValue(StepModelState.InitialName(s), out var t)) continue;
            if (s.Kind == StateKind.Iterations)
            {
                if (t.DataType == (int)TensorProto.Types.DataType.Int64 && t.ToInt64Array() is [var it] && it < 0)
                    throw new OnnxAdadeltaException($"{source}: the iteration counter '{s.Input}' is {it}; a count of steps cannot be negative.");
                continue;
            }
            if (!MixedPrecision.IsTrainable((TensorProto.Types.DataType)t.DataType)) continue;
            var values = MixedPrecision.ToFloats(t);
            bool squares = s.Kind == StateKind.Slot && s.Slot is ScaleByAdadelta.AccumGrad or ScaleByAdadelta.AccumVar;
            for (int i = 0; i < values.Length; i++)
            {
                if (!float.IsFinite(values[i]))
                    throw new OnnxAdadeltaException($"{source}: state tensor '{s.Input}' ({Describe(s)}) holds {Format(values[i])} at element {i}; stored state must be finite (the run that wrote it diverged).");
                if (squares && values[i] < 0)
                    throw new OnnxAdadeltaException($"{source}: state tensor '{s.Input}' ({Describe(s)}) holds {Format(values[i])} at element {i}; an accumulator of squares cannot be negative.");
            }
        }
    }

    private static string Describe(StateBinding s) => s.Kind switch
    {
        StateKind.Slot => $"slot {s.Slot} of parameter '{s.Parameter}'",
        StateKind.Parameter => "a parameter",
        StateKind.Buffer => "a buffer",
        _ => s.Kind.ToString(),
    };

    private static string Format(float v) => float.IsNaN(v) ? "NaN" : float.IsPositiveInfinity(v) ? "+Inf" : float.IsNegativeInfinity(v) ? "-Inf"
        : v.ToString("R", System.Globalization.CultureInfo.InvariantCulture);

    private static string OneLine(string message) => message.ReplaceLineEndings(" ");
}
