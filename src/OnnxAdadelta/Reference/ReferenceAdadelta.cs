using OnnxAdadelta.Optimizers;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Reference;

/// <summary>
/// Adadelta in plain C# float32, for checking the in-graph update. It runs the same update pieces as the rewrite
/// (<see cref="AdadeltaOptions.Chain"/>) on <see cref="ArrayMath"/>, so the operation order and float constants are
/// those of the graph; only the arithmetic engine differs.
/// </summary>
/// <remarks>
/// Mixed precision mirrors the graph (see <see cref="MixedPrecision"/>): every value is held as float32, and after each
/// step a float16/bfloat16 parameter and each slot are rounded to their storage dtype (nearest, ties to even, as ONNX
/// <c>Cast</c>), so the float32 values the next step starts from are those the graph's casts produce.
/// </remarks>
public sealed class ReferenceAdadelta
{
    private readonly IReadOnlyList<IUpdatePiece> _chain;
    private readonly Dictionary<string, float[]> _parameters;
    private readonly Dictionary<string, Dictionary<string, float[]>> _state;

    private readonly IReadOnlyDictionary<string, DataType> _types;

    /// <summary>Starts from <paramref name="parameters"/> (copied) with zero state and iteration <paramref name="iteration"/>.</summary>
    /// <param name="options">The optimizer's arguments.</param>
    /// <param name="parameters">Initial parameter values.</param>
    /// <param name="iteration">The initial iteration counter.</param>
    /// <param name="types">
    /// Each parameter's storage dtype (float32, float16 or bfloat16); missing ones are float32. Values of a
    /// float16/bfloat16 parameter are rounded to its dtype; a master copy (with <see cref="AdadeltaOptions.MasterWeights"/>)
    /// starts from the rounded values.
    /// </param>
    public ReferenceAdadelta(AdadeltaOptions options, IReadOnlyDictionary<string, float[]> parameters, long iteration = 0,
        IReadOnlyDictionary<string, DataType>? types = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        Options = options.Validate();
        _chain = options.Chain();
        _types = parameters.Keys.ToDictionary(k => k, k => types?.GetValueOrDefault(k, DataType.Float) ?? DataType.Float, StringComparer.Ordinal);
        foreach (var (name, type) in _types)
            if (!MixedPrecision.IsTrainable(type)) throw new ArgumentException($"Parameter '{name}' has dtype {type}; float32, float16 or bfloat16 expected.", nameof(types));
        _parameters = parameters.ToDictionary(p => p.Key, p => MixedPrecision.Round(p.Value, _types[p.Key]), StringComparer.Ordinal);
        _state = _parameters.Where(p => !options.IsFrozen(p.Key)).ToDictionary(p => p.Key, p =>
        {
            var slots = UpdateChain.Slots(_chain).ToDictionary(s => s, _ => new float[p.Value.Length], StringComparer.Ordinal);
            if (MixedPrecision.HasMaster(options, _types[p.Key])) slots[MixedPrecision.MasterSlot] = (float[])p.Value.Clone();
            return slots;
        }, StringComparer.Ordinal);
        Iterations = iteration;
    }

    /// <summary>The storage dtype of a parameter.</summary>
    public DataType TypeOf(string parameter) => _types[parameter];

    /// <summary>The optimizer's arguments.</summary>
    public AdadeltaOptions Options { get; }

    /// <summary>The iteration counter (steps applied).</summary>
    public long Iterations { get; private set; }

    /// <summary>Current parameter values.</summary>
    public IReadOnlyDictionary<string, float[]> Parameters => _parameters;

    /// <summary>A state slot of one parameter (for example <c>accum_grad</c>).</summary>
    public float[] State(string parameter, string slot) => _state[parameter][slot];

    /// <summary>Replaces a state slot (for example to start from a checkpoint; <see cref="MixedPrecision.MasterSlot"/> too).</summary>
    public void SetState(string parameter, string slot, float[] value) => _state[parameter][slot] = (float[])value.Clone();

    /// <summary>Replaces a parameter's value.</summary>
    public void SetParameter(string parameter, float[] value) => _parameters[parameter] = (float[])value.Clone();

    /// <summary>The learning rate the next step uses.</summary>
    public float LearningRate => Options.LearningRateAt(Iterations);

    /// <summary>Applies one step with one gradient per parameter.</summary>
    public void Step(IReadOnlyDictionary<string, float[]> gradients)
    {
        var math = ArrayMath.Instance;
        float[] step = [(float)Iterations];
        float[] RateOf(ParameterGroup? g) => g?.LearningRate is null ? math.Constant("learning_rate", LearningRate) : Options.LearningRateAt(math, step, g);
        var counter = new Counter(Iterations);
        // Frozen parameters are not updated and have no state.
        var names = _parameters.Keys.Where(n => !Options.IsFrozen(n)).ToList();
        foreach (var name in names)
        {
            if (!gradients.TryGetValue(name, out var g)) throw new ArgumentException($"No gradient for parameter '{name}'.");
            if (g.Length != _parameters[name].Length) throw new ArgumentException($"Gradient of '{name}' has {g.Length} elements, the parameter {_parameters[name].Length}.");
        }
        // All parameters together, in order, as the rewrite runs them (a global norm sums them in this order).
        var steps = UpdateChain.RunAll(ArrayMath.Instance, _chain,
            names.Select(n => new ParameterStep<float[]>(Master(n) ?? _parameters[n], ChainState(n), RateOf(Options.GroupOf(n)), n, counter, Options.GroupOf(n))).ToList(), names.Select(n => gradients[n]).ToList());
        for (int i = 0; i < names.Count; i++)
        {
            var name = names[i];
            var type = _types[name];
            if (Master(name) is not null) _state[name][MixedPrecision.MasterSlot] = steps[i].NewParameter!;
            _parameters[name] = MixedPrecision.Round(steps[i].NewParameter!, type);
            foreach (var (slot, v) in steps[i].NewState) _state[name][slot] = MixedPrecision.Round(v, MixedPrecision.SlotType(Options, type, slot));
        }
        Iterations++;
    }

    private float[]? Master(string name) => _state[name].GetValueOrDefault(MixedPrecision.MasterSlot);

    private Dictionary<string, float[]> ChainState(string name) =>
        _state[name].Where(s => s.Key != MixedPrecision.MasterSlot).ToDictionary(s => s.Key, s => s.Value, StringComparer.Ordinal);

    private sealed class Counter(long iterations) : IStepCounter<float[]>
    {
        public float[] IsFirstStep() => [iterations == 0 ? 1f : 0f];

        public float[] EveryNth(long n) => [(iterations + 1) % n == 0 ? 1f : 0f];
    }
}
