using System.Globalization;
using OnnxAdadelta.Graphs;

namespace OnnxAdadelta.Optimizers;

/// <summary>
/// The arguments of tf.keras.optimizers.Adadelta (TF 2.4), validated where they enter.
/// </summary>
/// <remarks>
/// Hyper-parameters are applied in float32, as Keras does: each value is rounded to float32 once, and 1 - rho is
/// computed in float32. Invalid values raise <see cref="ArgumentException"/> with the value in the message.
/// </remarks>
public sealed record AdadeltaOptions
{
    /// <summary>Keras's default learning rate.</summary>
    public const float DefaultLearningRate = 0.001f;

    /// <summary>Keras's default decay rate of the running averages.</summary>
    public const float DefaultRho = 0.95f;

    /// <summary>Keras's default epsilon.</summary>
    public const float DefaultEpsilon = 1e-7f;

    /// <summary>Keras's default optimizer name, the prefix of every inserted node and state tensor.</summary>
    public const string DefaultName = "Adadelta";

    /// <summary>Options with a constant learning rate.</summary>
    /// <param name="learningRate">Step size; finite and &gt;= 0. Default 0.001.</param>
    /// <param name="rho">Decay rate of both running averages, in [0, 1]. Default 0.95.</param>
    /// <param name="epsilon">Added inside both square roots; finite and &gt; 0. Default 1e-7.</param>
    /// <param name="name">Prefix of inserted nodes and state tensors. Default "Adadelta".</param>
    /// <param name="clipNorm">If set, each gradient tensor is rescaled to at most this L2 norm; &gt; 0.</param>
    /// <param name="clipValue">If set, each gradient element is clipped to [-clipValue, clipValue]; &gt; 0.</param>
    /// <param name="globalClipNorm">If set, all gradients together are rescaled to at most this global L2 norm; &gt; 0.</param>
    /// <param name="weightDecay">Decoupled weight decay (Keras 3): <c>var -= var*wd*lr</c> before each update; &gt;= 0.</param>
    /// <param name="l2">Coupled L2 weight decay (PyTorch, optax): <c>g += wd*var</c> before the update; &gt;= 0.</param>
    /// <param name="excludeFromWeightDecay">Parameter name patterns (see <see cref="ParameterPatterns"/>) that neither decay skips.</param>
    /// <param name="maximize">Negate the gradient first, so the loss is maximized (PyTorch).</param>
    /// <param name="decay">TF 2.4 legacy decay: <c>lr_t = lr / (1 + decay*iterations)</c>; &gt;= 0.</param>
    /// <param name="lossScaleFactor">Gradients are divided by this factor before clipping (Keras 3); &gt; 0.</param>
    /// <param name="useEma">Keep an exponential moving average of each parameter as state (Keras 3 <c>use_ema</c>).</param>
    /// <param name="emaMomentum">The EMA momentum, in [0, 1]; default 0.99; needs <paramref name="useEma"/>.</param>
    /// <param name="emaOverwriteFrequency">Overwrite the parameters with their EMA every this many steps; &gt;= 1; needs <paramref name="useEma"/>.</param>
    /// <param name="gradientAccumulationSteps">Apply the mean of this many gradients every this many steps (Keras 3); &gt;= 1.</param>
    /// <param name="groups">Parameter groups with their own hyper-parameters; the first group matching a parameter wins.</param>
    /// <param name="frozen">Patterns of parameters that are not trained (unchanged, no optimizer state).</param>
    /// <param name="fp32State">Keep the optimizer slots of float16/bfloat16 parameters in float32 (default: the parameter's dtype, as Keras).</param>
    /// <param name="masterWeights">Keep a float32 master copy of each float16/bfloat16 parameter as state; the update applies to it (PyTorch AMP master weights).</param>
    public AdadeltaOptions(double learningRate = DefaultLearningRate, double rho = DefaultRho, double epsilon = DefaultEpsilon,
        string name = DefaultName, double? clipNorm = null, double? clipValue = null, double? globalClipNorm = null,
        double? weightDecay = null, double? l2 = null, IEnumerable<string>? excludeFromWeightDecay = null, bool maximize = false,
        double? decay = null, double? lossScaleFactor = null, bool useEma = false, double? emaMomentum = null, int? emaOverwriteFrequency = null,
        int? gradientAccumulationSteps = null, IEnumerable<ParameterGroup>? groups = null, IEnumerable<string>? frozen = null,
        bool fp32State = false, bool masterWeights = false)
        : this(new ConstantLearningRate((float)CheckLearningRate(learningRate)), rho, epsilon, name, clipNorm, clipValue, globalClipNorm,
            weightDecay, l2, excludeFromWeightDecay, maximize, decay, lossScaleFactor, useEma, emaMomentum, emaOverwriteFrequency,
            gradientAccumulationSteps, groups, frozen, fp32State, masterWeights) { }

    /// <summary>Options with a learning-rate schedule evaluated in the graph from the iteration counter.</summary>
    /// <remarks>The other arguments are those of the constant-rate constructor.</remarks>
    public AdadeltaOptions(ILearningRateSchedule learningRate, double rho = DefaultRho, double epsilon = DefaultEpsilon,
        string name = DefaultName, double? clipNorm = null, double? clipValue = null, double? globalClipNorm = null,
        double? weightDecay = null, double? l2 = null, IEnumerable<string>? excludeFromWeightDecay = null, bool maximize = false,
        double? decay = null, double? lossScaleFactor = null, bool useEma = false, double? emaMomentum = null, int? emaOverwriteFrequency = null,
        int? gradientAccumulationSteps = null, IEnumerable<ParameterGroup>? groups = null, IEnumerable<string>? frozen = null,
        bool fp32State = false, bool masterWeights = false)
    {
        ArgumentNullException.ThrowIfNull(learningRate);
        if (!double.IsFinite(rho) || rho < 0 || rho > 1)
            throw new ArgumentException($"Invalid rho value: {F(rho)} (expected a number in [0, 1]).", nameof(rho));
        if (!double.IsFinite(epsilon) || epsilon <= 0 || (float)epsilon <= 0)
            throw new ArgumentException($"Invalid epsilon value: {F(epsilon)} (expected a finite number > 0 in float32).", nameof(epsilon));
        if (string.IsNullOrWhiteSpace(name) || name.Contains('/'))
            throw new ArgumentException($"Invalid name: '{name}' (expected a non-empty name without '/').", nameof(name));
        if (clipNorm is { } cn && (!double.IsFinite(cn) || cn <= 0))
            throw new ArgumentException($"Invalid clipnorm value: {F(cn)} (expected a finite number > 0).", nameof(clipNorm));
        if (clipValue is { } cv && (!double.IsFinite(cv) || cv <= 0))
            throw new ArgumentException($"Invalid clipvalue value: {F(cv)} (expected a finite number > 0).", nameof(clipValue));
        if (globalClipNorm is { } gn && (!double.IsFinite(gn) || gn <= 0 || !float.IsFinite((float)gn) || (float)gn <= 0))
            throw new ArgumentException($"Invalid global_clipnorm value: {F(gn)} (expected a finite number > 0 in float32).", nameof(globalClipNorm));
        var clips = new (string Name, double? Value)[] { ("clipnorm", clipNorm), ("clipvalue", clipValue), ("global_clipnorm", globalClipNorm) }
            .Where(c => c.Value is not null).ToList();
        if (clips.Count > 1)
            throw new ArgumentException($"{clips[0].Name} ({F(clips[0].Value!.Value)}) and {clips[1].Name} ({F(clips[1].Value!.Value)}) cannot both be set.");
        CheckNonNegative("weight_decay", weightDecay, nameof(weightDecay));
        CheckNonNegative("l2", l2, nameof(l2));
        CheckNonNegative("decay", decay, nameof(decay));
        if (lossScaleFactor is { } ls && (!double.IsFinite(ls) || ls <= 0 || !float.IsFinite((float)ls) || (float)ls <= 0))
            throw new ArgumentException($"Invalid loss_scale_factor value: {F(ls)} (expected a finite number > 0 in float32).", nameof(lossScaleFactor));
        var exclude = new ParameterPatterns(excludeFromWeightDecay ?? []);
        if (emaMomentum is { } em && (!double.IsFinite(em) || em < 0 || em > 1))
            throw new ArgumentException($"Invalid ema_momentum value: {F(em)} (expected a number in [0, 1]).", nameof(emaMomentum));
        if (emaOverwriteFrequency is < 1)
            throw new ArgumentException($"Invalid ema_overwrite_frequency value: {emaOverwriteFrequency} (expected an integer >= 1).", nameof(emaOverwriteFrequency));
        if (!useEma && emaMomentum is not null)
            throw new ArgumentException("ema_momentum needs use_ema: without use_ema no moving average is kept.", nameof(emaMomentum));
        if (!useEma && emaOverwriteFrequency is not null)
            throw new ArgumentException("ema_overwrite_frequency needs use_ema: without use_ema no moving average is kept.", nameof(emaOverwriteFrequency));
        if (gradientAccumulationSteps is < 1)
            throw new ArgumentException($"Invalid gradient_accumulation_steps value: {gradientAccumulationSteps} (expected an integer >= 1).", nameof(gradientAccumulationSteps));
        var groupList = (groups ?? []).ToList();
        if (groupList.Any(g => g is null)) throw new ArgumentException("A parameter group is null.", nameof(groups));
        var frozenList = (frozen ?? []).ToList();
        if (frozenList.FirstOrDefault(string.IsNullOrWhiteSpace) is { } blank)
            throw new ArgumentException($"Invalid frozen pattern: '{blank}' (expected a non-empty name pattern).", nameof(frozen));
        var frozenPatterns = new ParameterPatterns(frozenList);
        if (exclude.Patterns.Count > 0 && weightDecay is null && l2 is null && !groupList.Any(g => g.WeightDecay is not null || g.L2 is not null))
            throw new ArgumentException($"exclude_from_weight_decay ('{string.Join("', '", exclude.Patterns)}') needs weight_decay or l2.", nameof(excludeFromWeightDecay));
        LearningRate = learningRate;
        Rho = (float)rho;
        Epsilon = (float)epsilon;
        Name = name;
        ClipNorm = (float?)clipNorm;
        ClipValue = (float?)clipValue;
        GlobalClipNorm = (float?)globalClipNorm;
        WeightDecay = (float?)weightDecay;
        L2 = (float?)l2;
        ExcludeFromWeightDecay = exclude;
        Maximize = maximize;
        Decay = (float?)decay;
        LossScaleFactor = (float?)lossScaleFactor;
        UseEma = useEma;
        EmaMomentum = (float)(emaMomentum ?? DefaultEmaMomentum);
        EmaOverwriteFrequency = emaOverwriteFrequency;
        GradientAccumulationSteps = gradientAccumulationSteps;
        Groups = groupList;
        Frozen = frozenPatterns;
        Fp32State = fp32State;
        MasterWeights = masterWeights;
    }

    /// <summary>
    /// Whether the optimizer slots of float16/bfloat16 parameters are stored in float32 (else in the parameter's dtype,
    /// as Keras keeps them). See <see cref="MixedPrecision"/>.
    /// </summary>
    public bool Fp32State { get; }

    /// <summary>
    /// Whether each float16/bfloat16 parameter keeps a float32 master copy (slot <see cref="MixedPrecision.MasterSlot"/>,
    /// initialized from the parameter): the update applies to the master, and the parameter's next value is the master
    /// cast to the parameter's dtype. See <see cref="MixedPrecision"/>.
    /// </summary>
    public bool MasterWeights { get; }

    /// <summary>Keras 3's default EMA momentum.</summary>
    public const double DefaultEmaMomentum = 0.99;

    /// <summary>Whether an exponential moving average of each parameter is kept (slot <see cref="MovingAverage.Slot"/>).</summary>
    public bool UseEma { get; }

    /// <summary>The EMA momentum (float32); meaningful when <see cref="UseEma"/>.</summary>
    public float EmaMomentum { get; }

    /// <summary>Every how many steps the parameters are overwritten with their EMA, or null (never).</summary>
    public int? EmaOverwriteFrequency { get; }

    /// <summary>How many gradients are accumulated per applied update, or null (every step applies).</summary>
    public int? GradientAccumulationSteps { get; }

    /// <summary>The parameter groups, in order (the first match wins).</summary>
    public IReadOnlyList<ParameterGroup> Groups { get; }

    /// <summary>Patterns of frozen parameters (besides frozen groups).</summary>
    public ParameterPatterns Frozen { get; }

    /// <summary>The first group whose pattern matches <paramref name="parameter"/>, or null (the defaults apply).</summary>
    public ParameterGroup? GroupOf(string parameter) => Groups.FirstOrDefault(g => g.Patterns.Matches(parameter));

    /// <summary>Whether <paramref name="parameter"/> is frozen: matched by <see cref="Frozen"/>, or its group is frozen.</summary>
    public bool IsFrozen(string parameter) => Frozen.Matches(parameter) || GroupOf(parameter) is { Frozen: true };

    /// <summary>The learning rate, constant or scheduled (before the legacy <see cref="Decay"/>).</summary>
    public ILearningRateSchedule LearningRate { get; }

    /// <summary>Decay rate of the running averages (float32).</summary>
    public float Rho { get; }

    /// <summary>Epsilon (float32).</summary>
    public float Epsilon { get; }

    /// <summary>Prefix of the inserted nodes and state tensors.</summary>
    public string Name { get; }

    /// <summary>Per-tensor L2 norm clip, or null.</summary>
    public float? ClipNorm { get; }

    /// <summary>Per-element value clip, or null.</summary>
    public float? ClipValue { get; }

    /// <summary>Clip of all gradients by their global L2 norm, or null.</summary>
    public float? GlobalClipNorm { get; }

    /// <summary>Decoupled (Keras 3) weight decay, or null.</summary>
    public float? WeightDecay { get; }

    /// <summary>Coupled L2 (PyTorch) weight decay, or null.</summary>
    public float? L2 { get; }

    /// <summary>Parameters that neither weight decay touches.</summary>
    public ParameterPatterns ExcludeFromWeightDecay { get; }

    /// <summary>Whether the gradient is negated first (the loss is maximized).</summary>
    public bool Maximize { get; }

    /// <summary>TF 2.4 legacy learning-rate decay, or null.</summary>
    public float? Decay { get; }

    /// <summary>The factor gradients are divided by before clipping, or null.</summary>
    public float? LossScaleFactor { get; }

    /// <summary>
    /// The learning rate of the step at <paramref name="step"/> (the iteration counter in float32): the schedule's,
    /// divided by <c>1 + decay*step</c> when a legacy <see cref="Decay"/> &gt; 0 is set, as TF 2.4's
    /// <c>_decayed_lr</c> does.
    /// </summary>
    public T LearningRateAt<T>(ITensorMath<T> math, T step) => LearningRateAt(math, step, null);

    /// <summary>
    /// The learning rate of <paramref name="group"/>'s parameters at <paramref name="step"/>: the group's constant rate
    /// when it sets one, else the schedule's; then the legacy decay.
    /// </summary>
    public T LearningRateAt<T>(ITensorMath<T> math, T step, ParameterGroup? group)
    {
        var lr = group?.LearningRate is { } glr ? math.Constant("group_lr", glr) : LearningRate.Compute(math, step);
        if (Decay is not { } d || d <= 0) return lr;
        return math.Scope("decay", () => math.Div(lr, math.Add(math.Constant("one", 1f), math.Mul(math.Constant("decay", d), step))));
    }

    /// <summary>The float32 learning rate at <paramref name="iteration"/>, computed by the C# reference arithmetic.</summary>
    public float LearningRateAt(long iteration) => LearningRateAt(ArrayMath.Instance, [(float)iteration])[0];

    /// <summary>The update as a chain of pieces, applied in order to each parameter's gradient.</summary>
    /// <remarks>
    /// Order: maximize (negate), loss-scale division, gradient accumulation (the mean of N gradients), one clip
    /// (clipnorm, clipvalue or global_clipnorm), coupled L2, decoupled weight decay (of the parameter), the Adadelta
    /// scaling, <c>var -= lr*delta</c>, then (with accumulation) keeping the old parameter and state on steps that do
    /// not apply, and last the EMA update and overwrite. Group values replace the defaults per parameter.
    /// </remarks>
    public IReadOnlyList<IUpdatePiece> Chain()
    {
        var chain = new List<IUpdatePiece>();
        if (Maximize) chain.Add(new NegateGradient());
        if (LossScaleFactor is { } ls) chain.Add(new UnscaleGradient(ls));
        if (GradientAccumulationSteps is { } n) chain.Add(new AccumulateGradients(n));
        if (ClipNorm is { } cn) chain.Add(new ClipByNorm(cn));
        if (ClipValue is { } cv) chain.Add(new ClipByValue(cv));
        if (GlobalClipNorm is { } gn) chain.Add(new ClipByGlobalNorm(gn));
        if (L2 is not null || Groups.Any(g => g.L2 is not null)) chain.Add(new AddL2(L2, ExcludeFromWeightDecay));
        if (WeightDecay is not null || Groups.Any(g => g.WeightDecay is not null)) chain.Add(new DecoupledWeightDecay(WeightDecay, ExcludeFromWeightDecay));
        chain.Add(new ScaleByAdadelta(Rho, Epsilon));
        chain.Add(new ApplyLearningRate());
        if (GradientAccumulationSteps is { } steps) chain.Add(new ApplyOnlyEveryNthStep(steps));
        if (UseEma) chain.Add(new MovingAverage(EmaMomentum, EmaOverwriteFrequency));
        return chain;
    }

    private static void CheckNonNegative(string option, double? value, string parameter)
    {
        if (value is { } v && (!double.IsFinite(v) || v < 0 || !float.IsFinite((float)v)))
            throw new ArgumentException($"Invalid {option} value: {F(v)} (expected a finite number >= 0).", parameter);
    }

    private static double CheckLearningRate(double lr) =>
        double.IsFinite(lr) && lr >= 0 ? lr : throw new ArgumentException($"Invalid learning_rate value: {F(lr)} (expected a finite number >= 0).", "learningRate");

    internal static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);
}
