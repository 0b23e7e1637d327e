using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Optimizers;

/// <summary>
/// The rewrite pass: a training graph (loss output plus one gradient per parameter) becomes a training-step model that
/// takes the parameters and optimizer state as inputs and returns the loss and their next values. See
/// ARCHITECTURE.md, "The training-step model contract".
/// </summary>
public static class AdadeltaRewrite
{
    /// <summary>Suffix of the output that carries a state tensor's next value.</summary>
    public const string NextSuffix = TrainingGraphInfo.NextSuffix;

    /// <summary>Rewrites <paramref name="training"/> (left unchanged) into a training-step model.</summary>
    /// <remarks>
    /// float16/bfloat16 parameters are updated in float32: Cast nodes widen the parameter (or its float32 master copy
    /// with <see cref="AdadeltaOptions.MasterWeights"/>), gradient and low-precision state, and narrow each result to
    /// its storage dtype (<see cref="MixedPrecision"/>).
    /// </remarks>
    /// <exception cref="OnnxAdadeltaException">The graph breaks the input contract; the message names the culprit.</exception>
    public static ModelProto Apply(ModelProto training, AdadeltaOptions options, RewriteOptions? rewrite = null) => Apply(training, options, rewrite, out _);

    /// <summary>
    /// <see cref="Apply(ModelProto, AdadeltaOptions, RewriteOptions?)"/>, also giving the step model's contract as
    /// written into its metadata (checked against the graph), so that the caller passes it along instead of reading it back.
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">The graph breaks the input contract; the message names the culprit.</exception>
    public static ModelProto Apply(ModelProto training, AdadeltaOptions options, RewriteOptions? rewrite, out StepModelInfo info)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        rewrite ??= new RewriteOptions();
        // A step model or checkpoint as the source of parameter values: its trained parameters, under their own names.
        if (rewrite.ParameterValues is { } supplied && StepModelInfo.TryRead(supplied) is not null)
            rewrite = rewrite with { ParameterValues = StepModelState.ParameterValues(supplied) };
        if (StepModelInfo.TryRead(training) is not null)
            throw new OnnxAdadeltaException("The model is already a training-step model; rewrite takes a training graph.");
        var model = training.DeepCopy();
        var graph = model.Graph;
        OpsetImports.Normalize(model);
        Opsets.RaiseForRewrite(model);

        var analyzed = TrainingGraph.Analyze(model, rewrite);
        // Frozen parameters stay plain initializers holding their values: no graph input, no state, no update.
        var frozen = analyzed.Parameters.Where(p => options.IsFrozen(p.Name)).ToList();
        var found = analyzed with { Parameters = analyzed.Parameters.Where(p => !options.IsFrozen(p.Name)).ToList() };
        var b = new GraphBuilder(graph);
        var math = new GraphMath(b, options.Name);
        var chain = options.Chain();
        var slots = UpdateChain.Slots(chain);

        // Parameters become graph inputs with their values as initializers (appended after the other initializers,
        // trained ones first); frozen ones stay plain initializers. One pass over the lists, whatever the parameter count.
        var replaced = found.Parameters.Concat(frozen).Select(p => p.Name).ToHashSet(StringComparer.Ordinal);
        var keptInitializers = graph.Initializer.Where(t => !replaced.Contains(t.Name)).ToList();
        graph.Initializer.Clear();
        graph.Initializer.AddRange(keptInitializers);
        graph.Initializer.AddRange(found.Parameters.Select(p => p.Value));
        graph.Initializer.AddRange(frozen.Select(p => p.Value));
        var frozenNames = frozen.Select(p => p.Name).ToHashSet(StringComparer.Ordinal);
        var keptInputs = graph.Input.Where(i => !frozenNames.Contains(i.Name)).ToList();
        var inputNames = keptInputs.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var p in found.Parameters)
            if (inputNames.Add(p.Name)) keptInputs.Add(TypeProtos.ValueInfo(p.Name, (DataType)p.Value.DataType, p.Value.Dims));
        graph.Input.Clear();
        graph.Input.AddRange(keptInputs);

        var state = new List<StateBinding>();
        var newOutputs = new List<ValueInfoProto>();

        // The counter is read before it is incremented, as Keras reads optimizer.iterations.
        var iterations = StateInput(b, $"{options.Name}/iterations", Tensors.Create("", [0L]), []);
        var one = b.Scalar($"{options.Name}/one_int64", 1L);
        var iterationsNext = b.Reserve(iterations + NextSuffix);
        graph.Node.Add(Node("Add", b.UniqueName($"{iterationsNext}/Add"), [iterations, one], iterationsNext));
        var step = math.Scope("learning_rate", () => math.CastToFloat(iterations));
        var learningRate = math.Scope("learning_rate", () => options.LearningRateAt(math, step));
        var groupRates = new Dictionary<ParameterGroup, string>();
        string RateOf(ParameterGroup? g) => g?.LearningRate is null ? learningRate
            : groupRates.TryGetValue(g, out var r) ? r : groupRates[g] = math.Scope($"learning_rate/group{options.Groups.ToList().IndexOf(g)}", () => options.LearningRateAt(math, step, g));
        var counter = new GraphCounter(b, options.Name, iterations, iterationsNext);

        // All parameters run the chain together, so that a cross-parameter piece (global_clipnorm) computes its
        // shared value once from every gradient and hands it to each parameter's chain.
        // Mixed precision (see MixedPrecision): each state tensor is stored in its own dtype; float16/bfloat16 values are
        // cast to float32 where the chain starts, the float32 pieces run, and results are cast back to their storage dtype.
        DataType TypeOf(TrainableParameter p) => (DataType)p.Value.DataType;
        var slotInputs = found.Parameters.Select(p => slots.ToDictionary(s => s, s => StateInput(b, $"{options.Name}/{p.Name}/{s}",
            Zeros(MixedPrecision.SlotType(options, TypeOf(p), s), p.Value.Dims), p.Value.Dims), StringComparer.Ordinal)).ToList();
        var masterInputs = found.Parameters.Select(p => MixedPrecision.HasMaster(options, TypeOf(p))
            ? StateInput(b, $"{options.Name}/{p.Name}/{MixedPrecision.MasterSlot}",
                Tensors.Create("", MixedPrecision.ToFloats(p.Value), [.. p.Value.Dims]), p.Value.Dims)
            : null).ToList();
        string AsFloat(TrainableParameter p, string value, DataType stored, string hint) => stored == DataType.Float ? value
            : math.Scope(p.Name, () => math.Scope("mixed_precision", () => math.CastTo(value, DataType.Float, hint)));
        var stepInputs = found.Parameters.Select((p, i) => new ParameterStep<string>(
            masterInputs[i] ?? AsFloat(p, p.Name, TypeOf(p), "parameter_as_float"),
            slots.ToDictionary(s => s, s => AsFloat(p, slotInputs[i][s], MixedPrecision.SlotType(options, TypeOf(p), s), $"{s}_as_float"), StringComparer.Ordinal),
            RateOf(options.GroupOf(p.Name)), p.Name, counter, options.GroupOf(p.Name))).ToList();
        var steps = UpdateChain.RunAll(math, chain, stepInputs,
            found.Parameters.Select(p => AsFloat(p, p.Gradient, TypeOf(p), "gradient_as_float")).ToList());
        for (int i = 0; i < found.Parameters.Count; i++)
        {
            var p = found.Parameters[i];
            string Stored(string value, DataType type, string hint) => type == DataType.Float ? value
                : math.Scope(p.Name, () => math.Scope("mixed_precision", () => math.CastTo(value, type, hint)));
            var newParameter = steps[i].NewParameter!;
            var parameterNext = Stored(newParameter, TypeOf(p), "parameter_to_storage");
            var slotNext = slots.ToDictionary(s => s, s => Stored(steps[i].NewState[s], MixedPrecision.SlotType(options, TypeOf(p), s), $"{s}_to_storage"), StringComparer.Ordinal);
            Bind(math, state, newOutputs, p.Name, parameterNext, StateKind.Parameter, p.Name, null, p.Value.Dims, TypeOf(p));
            foreach (var s in slots)
                Bind(math, state, newOutputs, slotInputs[i][s], slotNext[s], StateKind.Slot, p.Name, s, p.Value.Dims, MixedPrecision.SlotType(options, TypeOf(p), s));
            if (masterInputs[i] is { } master)
                Bind(math, state, newOutputs, master, newParameter, StateKind.Slot, p.Name, MixedPrecision.MasterSlot, p.Value.Dims, DataType.Float);
        }
        // Buffers (running statistics) are state the forward pass updates: fed back as they are, untouched by the optimizer.
        var bufferOutputs = new HashSet<string>(StringComparer.Ordinal);
        foreach (var buffer in analyzed.Info.Buffers ?? [])
        {
            var value = graph.Initializer.First(t => t.Name == buffer.Input);
            if (!graph.Input.Any(i => i.Name == buffer.Input)) graph.Input.Add(TypeProtos.ValueInfo(buffer.Input, (DataType)value.DataType, value.Dims));
            state.Add(new StateBinding(buffer.Input, buffer.Output, StateKind.Buffer));
            newOutputs.Add(graph.Output.First(o => o.Name == buffer.Output).Clone());
            bufferOutputs.Add(buffer.Output);
        }
        // The step input of random dropout masks reads the counter (before its increment), so a resumed run repeats them.
        if (analyzed.Info.StepInput is { } stepInput)
        {
            foreach (var input in graph.Input.Where(i => i.Name == stepInput).ToList()) graph.Input.Remove(input);
            graph.Node.Add(Node("Identity", b.UniqueName($"{stepInput}/Identity"), [iterations], stepInput));
        }
        state.Add(new StateBinding(iterations, iterationsNext, StateKind.Iterations));
        newOutputs.Add(TypeProtos.ValueInfo(iterationsNext, DataType.Int64, []));
        // The learning rate this step applies (of the parameters in no group with a rate of its own), so that a trainer
        // reads it back with the loss instead of computing the schedule again.
        var learningRateOutput = b.UniqueName($"{options.Name}/learning_rate");
        graph.Node.Add(Node("Identity", b.UniqueName($"{learningRateOutput}/Identity"), [learningRate], learningRateOutput));
        newOutputs.Add(TypeProtos.ValueInfo(learningRateOutput, DataType.Float, []));

        // Outputs: the original ones (loss first, gradients dropped unless kept), then the state.
        var original = graph.Output.ToList();
        var gradientOutputs = analyzed.Parameters.Select(p => p.Gradient).ToHashSet(StringComparer.Ordinal);
        var kept = original.Where(o => !gradientOutputs.Contains(o.Name) && !bufferOutputs.Contains(o.Name)).OrderBy(o => o.Name == found.Loss ? 0 : 1).ToList();
        graph.Output.Clear();
        graph.Output.AddRange(kept);
        graph.Output.AddRange(newOutputs);
        if (rewrite.KeepGradients) graph.Output.AddRange(original.Where(o => gradientOutputs.Contains(o.Name)));

        GraphPasses.RemoveDeadCode(graph);
        GraphPasses.TopologicalSort(graph);

        var written = new StepModelInfo
        {
            Loss = found.Loss,
            Outputs = kept.Select(o => o.Name).ToList(),
            DataInputs = found.DataInputs,
            State = state,
            Gradients = found.Parameters.ToDictionary(p => p.Name, p => p.Gradient),
            Optimizer = options,
            InferenceValues = analyzed.Info.InferenceValues,
            Labels = LabelsOf(analyzed, graph) is { Count: > 0 } labels ? labels : null,
            LearningRateOutput = learningRateOutput,
        };
        written.Validate(model, "the step model");
        foreach (var entry in model.MetadataProps.Where(p => p.Key == TrainingGraphInfo.MetadataKey).ToList()) model.MetadataProps.Remove(entry);
        // Format 2: each state input's value moves to an initializer of another name, so that every binding can feed it.
        info = StepModelState.UpgradeInPlace(model, written);
        return model;
    }

    /// <summary>
    /// The label checks of the step model: those build-training recorded, else those found in the graph, kept where
    /// the labels are still a data input.
    /// </summary>
    private static List<LabelCheck> LabelsOf(TrainingGraph analyzed, GraphProto graph)
    {
        var data = analyzed.DataInputs.ToHashSet(StringComparer.Ordinal);
        return (analyzed.Info.Labels ?? LabelCheck.Find(graph)).Where(l => data.Contains(l.Input)).ToList();
    }

    // The counter conditions as int64 nodes on the counter (read before the increment) and its next value.
    private sealed class GraphCounter(GraphBuilder b, string scope, string iterations, string iterationsNext) : IStepCounter<string>
    {
        private readonly Dictionary<long, string> _everyNth = new();
        private string? _first;

        public string IsFirstStep() => _first ??= b.Add("Equal", [iterations, b.Scalar($"{scope}/counter/zero_int64", 0L)], $"{scope}/counter/is_first_step");

        public string EveryNth(long n)
        {
            if (_everyNth.TryGetValue(n, out var done)) return done;
            var mod = b.Add("Mod", [iterationsNext, b.Scalar($"{scope}/counter/every_{n}/n", n)], $"{scope}/counter/every_{n}/mod");
            return _everyNth[n] = b.Add("Equal", [mod, b.Scalar($"{scope}/counter/every_{n}/zero", 0L)], $"{scope}/counter/every_{n}/is_step");
        }
    }

    private static string StateInput(GraphBuilder b, string name, TensorProto zeros, IEnumerable<long> dims)
    {
        b.Reserve(name);
        zeros.Name = name;
        b.Graph.Initializer.Add(zeros);
        b.Graph.Input.Add(TypeProtos.ValueInfo(name, (DataType)zeros.DataType, dims));
        return name;
    }

    private static void Bind(GraphMath math, List<StateBinding> state, List<ValueInfoProto> outputs, string input, string value,
        StateKind kind, string? parameter, string? slot, IEnumerable<long> dims, DataType type)
    {
        var output = input + NextSuffix;
        math.Rename(value, output);
        state.Add(new StateBinding(input, output, kind, parameter, slot));
        outputs.Add(TypeProtos.ValueInfo(output, type, dims));
    }

    private static TensorProto Zeros(DataType type, IEnumerable<long> dims)
    {
        var shape = dims.ToArray();
        return Tensors.FromRawBytes("", type, shape, new byte[Tensors.ElementCount(shape) * (type == DataType.Float ? 4 : 2)]);
    }

    private static NodeProto Node(string op, string name, string[] inputs, string output)
    {
        var n = new NodeProto { OpType = op, Name = name };
        n.Input.AddRange(inputs);
        n.Output.Add(output);
        return n;
    }
}
