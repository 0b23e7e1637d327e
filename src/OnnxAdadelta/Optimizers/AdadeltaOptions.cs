using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using OnnxAdadelta.Graphs;

namespace OnnxAdadelta.Optimizers;

/// <summary>
/// The arguments of tf.keras.optimizers.Adadelta (TF 2.4, with the Keras 3 and PyTorch extras), as one init-only
/// record: set the properties you need (<c>new AdadeltaOptions { LearningRate = new ConstantLearningRate(1f), ClipNorm = 5 }</c>),
/// derive variants with <c>with</c>. The record is stored as it is, in JSON, in every step model's metadata.
/// </summary>
/// <remarks>
/// <para>Hyper-parameters are applied in float32, as Keras does: each value is rounded to float32 once, and 1 - rho is
/// computed in float32. <see cref="Validate"/> checks every value and raises <see cref="ArgumentException"/> with the
/// value in the message; the rewrite and the C# reference call it where the options enter.</para>
/// <para>An option is one property here, one <see cref="IUpdatePiece"/> that <see cref="Chain"/> adds, and one CLI flag.</para>
/// </remarks>
public sealed record AdadeltaOptions
{
    /// <summary>Keras's default learning rate.</summary>
    public const double DefaultLearningRate = 0.001;

    /// <summary>Keras's default decay rate of the running averages.</summary>
    public const double DefaultRho = 0.95;

    /// <summary>Keras's default epsilon.</summary>
    public const double DefaultEpsilon = 1e-7;

    /// <summary>Keras's default optimizer name, the prefix of every inserted node and state tensor.</summary>
    public const string DefaultName = "Adadelta";

    /// <summary>Keras 3's default EMA momentum.</summary>
    public const double DefaultEmaMomentum = 0.99;

    /// <summary>The optimizer kind recorded in step-model metadata: always "Adadelta".</summary>
    public string Type => "Adadelta";

    /// <summary>
    /// The learning rate, constant (<see cref="ConstantLearningRate"/>) or a schedule evaluated in the graph from the
    /// iteration counter (before the legacy <see cref="Decay"/>). Default: constant 0.001 (Keras).
    /// </summary>
    [JsonConverter(typeof(ScheduleSpecJsonConverter)), JsonRequired]
    public ILearningRateSchedule LearningRate { get; init; } = new ConstantLearningRate(DefaultLearningRate);

    /// <summary>Decay rate of both running averages, in [0, 1]. Default 0.95.</summary>
    [JsonRequired]
    public double Rho { get; init; } = DefaultRho;

    /// <summary>Added inside both square roots; finite and &gt; 0 in float32. Default 1e-7.</summary>
    [JsonRequired]
    public double Epsilon { get; init; } = DefaultEpsilon;

    /// <summary>Prefix of the inserted nodes and state tensors; non-empty, without '/'. Default "Adadelta".</summary>
    [JsonRequired]
    public string Name { get; init; } = DefaultName;

    /// <summary>If set, each gradient tensor is rescaled to at most this L2 norm; &gt; 0.</summary>
    public double? ClipNorm { get; init; }

    /// <summary>If set, each gradient element is clipped to [-ClipValue, ClipValue]; &gt; 0.</summary>
    public double? ClipValue { get; init; }

    /// <summary>If set, all gradients together are rescaled to at most this global L2 norm; &gt; 0 in float32.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? GlobalClipNorm { get; init; }

    /// <summary>Decoupled weight decay (Keras 3): <c>var -= var*wd*lr</c> before each update; &gt;= 0.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? WeightDecay { get; init; }

    /// <summary>Coupled L2 weight decay (PyTorch, optax): <c>g += wd*var</c> before the update; &gt;= 0.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? L2 { get; init; }

    /// <summary>
    /// Parameter name patterns (see <see cref="ParameterPatterns"/>) that neither weight decay touches; needs
    /// <see cref="WeightDecay"/> or <see cref="L2"/> (here or in a group). Default: none.
    /// </summary>
    public IReadOnlyList<string> ExcludeFromWeightDecay { get; init => field = value ?? []; } = [];

    /// <summary>Negate the gradient first, so the loss is maximized (PyTorch).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool Maximize { get; init; }

    /// <summary>TF 2.4 legacy decay: <c>lr_t = lr / (1 + decay*iterations)</c>; &gt;= 0.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? Decay { get; init; }

    /// <summary>Gradients are divided by this factor before clipping (Keras 3); &gt; 0 in float32.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? LossScaleFactor { get; init; }

    /// <summary>Keep an exponential moving average of each parameter as state (Keras 3 <c>use_ema</c>, slot <see cref="MovingAverage.Slot"/>).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool UseEma { get; init; }

    /// <summary>The EMA momentum, in [0, 1]; null means <see cref="DefaultEmaMomentum"/>; needs <see cref="UseEma"/>.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? EmaMomentum { get; init; }

    /// <summary>Overwrite the parameters with their EMA every this many steps; &gt;= 1; null: never; needs <see cref="UseEma"/>.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? EmaOverwriteFrequency { get; init; }

    /// <summary>Apply the mean of this many gradients every this many steps (Keras 3); &gt;= 1; null: every step applies.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? GradientAccumulationSteps { get; init; }

    /// <summary>Parameter groups with their own hyper-parameters, in order: the first group matching a parameter wins.</summary>
    [JsonConverter(typeof(GroupSpecsJsonConverter))]
    public IReadOnlyList<ParameterGroup> Groups { get; init => field = value ?? []; } = [];

    /// <summary>Patterns of parameters that are not trained (unchanged, no optimizer state), besides frozen groups.</summary>
    public IReadOnlyList<string> Frozen { get; init => field = value ?? []; } = [];

    /// <summary>
    /// Keep the optimizer slots of float16/bfloat16 parameters in float32 (default: the parameter's dtype, as Keras
    /// keeps them). See <see cref="MixedPrecision"/>.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool Fp32State { get; init; }

    /// <summary>
    /// Keep a float32 master copy of each float16/bfloat16 parameter (slot <see cref="MixedPrecision.MasterSlot"/>,
    /// initialized from the parameter): the update applies to the master, and the parameter's next value is the master
    /// cast to the parameter's dtype (PyTorch AMP master weights). See <see cref="MixedPrecision"/>.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool MasterWeights { get; init; }

    /// <summary>
    /// Whose Adadelta the update reproduces exactly (operation order and rounding; see <see cref="ScaleByAdadelta"/>).
    /// Default <see cref="AdadeltaVariant.Keras"/>, left out of the metadata. Recorded in the step model.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public AdadeltaVariant Variant { get; init; }

    /// <summary>Checks every value; the first invalid one throws <see cref="ArgumentException"/> naming it and its value.</summary>
    /// <returns>This record, for chaining.</returns>
    public AdadeltaOptions Validate()
    {
        if (LearningRate is null) throw new ArgumentException("Invalid learning_rate: null (expected a ConstantLearningRate or a schedule).", nameof(LearningRate));
        if (!double.IsFinite(Rho) || Rho < 0 || Rho > 1)
            throw new ArgumentException($"Invalid rho value: {F(Rho)} (expected a number in [0, 1]).", nameof(Rho));
        if (!double.IsFinite(Epsilon) || Epsilon <= 0 || (float)Epsilon <= 0)
            throw new ArgumentException($"Invalid epsilon value: {F(Epsilon)} (expected a finite number > 0 in float32).", nameof(Epsilon));
        if (string.IsNullOrWhiteSpace(Name) || Name.Contains('/'))
            throw new ArgumentException($"Invalid name: '{Name}' (expected a non-empty name without '/').", nameof(Name));
        if (ClipNorm is { } cn && (!double.IsFinite(cn) || cn <= 0))
            throw new ArgumentException($"Invalid clipnorm value: {F(cn)} (expected a finite number > 0).", nameof(ClipNorm));
        if (ClipValue is { } cv && (!double.IsFinite(cv) || cv <= 0))
            throw new ArgumentException($"Invalid clipvalue value: {F(cv)} (expected a finite number > 0).", nameof(ClipValue));
        CheckPositiveFloat32("global_clipnorm", GlobalClipNorm, nameof(GlobalClipNorm));
        var clips = new (string Name, double? Value)[] { ("clipnorm", ClipNorm), ("clipvalue", ClipValue), ("global_clipnorm", GlobalClipNorm) }
            .Where(c => c.Value is not null).ToList();
        if (clips.Count > 1)
            throw new ArgumentException($"{clips[0].Name} ({F(clips[0].Value!.Value)}) and {clips[1].Name} ({F(clips[1].Value!.Value)}) cannot both be set.");
        CheckNonNegative("weight_decay", WeightDecay, nameof(WeightDecay));
        CheckNonNegative("l2", L2, nameof(L2));
        CheckNonNegative("decay", Decay, nameof(Decay));
        CheckPositiveFloat32("loss_scale_factor", LossScaleFactor, nameof(LossScaleFactor));
        var exclude = new ParameterPatterns(ExcludeFromWeightDecay);
        if (EmaMomentum is { } em && (!double.IsFinite(em) || em < 0 || em > 1))
            throw new ArgumentException($"Invalid ema_momentum value: {F(em)} (expected a number in [0, 1]).", nameof(EmaMomentum));
        if (EmaOverwriteFrequency is < 1)
            throw new ArgumentException($"Invalid ema_overwrite_frequency value: {EmaOverwriteFrequency} (expected an integer >= 1).", nameof(EmaOverwriteFrequency));
        if (!UseEma && EmaMomentum is not null)
            throw new ArgumentException("ema_momentum needs use_ema: without use_ema no moving average is kept.", nameof(EmaMomentum));
        if (!UseEma && EmaOverwriteFrequency is not null)
            throw new ArgumentException("ema_overwrite_frequency needs use_ema: without use_ema no moving average is kept.", nameof(EmaOverwriteFrequency));
        if (GradientAccumulationSteps is < 1)
            throw new ArgumentException($"Invalid gradient_accumulation_steps value: {GradientAccumulationSteps} (expected an integer >= 1).", nameof(GradientAccumulationSteps));
        if (Groups.Any(g => g is null)) throw new ArgumentException("A parameter group is null.", nameof(Groups));
        if (Frozen.FirstOrDefault(string.IsNullOrWhiteSpace) is { } blank)
            throw new ArgumentException($"Invalid frozen pattern: '{blank}' (expected a non-empty name pattern).", nameof(Frozen));
        if (exclude.Patterns.Count > 0 && WeightDecay is null && L2 is null && !Groups.Any(g => g.WeightDecay is not null || g.L2 is not null))
            throw new ArgumentException($"exclude_from_weight_decay ('{string.Join("', '", exclude.Patterns)}') needs weight_decay or l2.", nameof(ExcludeFromWeightDecay));
        return this;
    }

    /// <summary>The first group whose pattern matches <paramref name="parameter"/>, or null (the defaults apply).</summary>
    public ParameterGroup? GroupOf(string parameter) => Groups.FirstOrDefault(g => g.Patterns.Matches(parameter));

    /// <summary>Whether <paramref name="parameter"/> is frozen: matched by <see cref="Frozen"/>, or its group is frozen.</summary>
    public bool IsFrozen(string parameter) => new ParameterPatterns(Frozen).Matches(parameter) || GroupOf(parameter) is { Frozen: true };

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
        if (Decay is not { } d || (float)d <= 0) return lr;
        return math.Scope("decay", () => math.Div(lr, math.Add(math.Constant("one", 1f), math.Mul(math.Constant("decay", (float)d), step))));
    }

    /// <summary>The float32 learning rate at <paramref name="iteration"/>, computed by the C# reference arithmetic.</summary>
    public float LearningRateAt(long iteration) => LearningRateAt(ArrayMath.Instance, [(float)iteration])[0];

    /// <summary>The update as a chain of pieces, applied in order to each parameter's gradient.</summary>
    /// <remarks>
    /// Order: maximize (negate), loss-scale division, gradient accumulation (the mean of N gradients), one clip
    /// (clipnorm, clipvalue or global_clipnorm), coupled L2, decoupled weight decay (of the parameter), the Adadelta
    /// scaling, <c>var -= lr*delta</c>, then (with accumulation) keeping the old parameter and state on steps that do
    /// not apply, and last the EMA update and overwrite. Group values replace the defaults per parameter. Each value
    /// is rounded to float32 here.
    /// </remarks>
    public IReadOnlyList<IUpdatePiece> Chain()
    {
        Validate();
        var exclude = new ParameterPatterns(ExcludeFromWeightDecay);
        var chain = new List<IUpdatePiece>();
        if (Maximize) chain.Add(new NegateGradient());
        if (LossScaleFactor is { } ls) chain.Add(new UnscaleGradient((float)ls));
        if (GradientAccumulationSteps is { } n) chain.Add(new AccumulateGradients(n));
        if (ClipNorm is { } cn) chain.Add(new ClipByNorm((float)cn));
        if (ClipValue is { } cv) chain.Add(new ClipByValue((float)cv));
        if (GlobalClipNorm is { } gn) chain.Add(new ClipByGlobalNorm((float)gn));
        if (L2 is not null || Groups.Any(g => g.L2 is not null)) chain.Add(new AddL2((float?)L2, exclude));
        if (WeightDecay is not null || Groups.Any(g => g.WeightDecay is not null)) chain.Add(new DecoupledWeightDecay((float?)WeightDecay, exclude));
        chain.Add(new ScaleByAdadelta((float)Rho, (float)Epsilon, Variant));
        chain.Add(new ApplyLearningRate());
        if (GradientAccumulationSteps is { } steps) chain.Add(new ApplyOnlyEveryNthStep(steps));
        if (UseEma) chain.Add(new MovingAverage((float)(EmaMomentum ?? DefaultEmaMomentum), EmaOverwriteFrequency));
        return chain;
    }

    private static void CheckNonNegative(string option, double? value, string parameter)
    {
        if (value is { } v && (!double.IsFinite(v) || v < 0 || !float.IsFinite((float)v)))
            throw new ArgumentException($"Invalid {option} value: {F(v)} (expected a finite number >= 0).", parameter);
    }

    private static void CheckPositiveFloat32(string option, double? value, string parameter)
    {
        if (value is { } v && (!double.IsFinite(v) || v <= 0 || !float.IsFinite((float)v) || (float)v <= 0))
            throw new ArgumentException($"Invalid {option} value: {F(v)} (expected a finite number > 0 in float32).", parameter);
    }

    internal static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);
}

/// <summary>Stores a learning-rate schedule as its readable spec (<see cref="ILearningRateSchedule.ToSpec"/>).</summary>
internal sealed class ScheduleSpecJsonConverter : JsonConverter<ILearningRateSchedule>
{
    public override ILearningRateSchedule Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        reader.TokenType == JsonTokenType.String ? LearningRateSchedules.Parse(reader.GetString()!)
            : throw new JsonException($"learning_rate: expected a schedule spec string, got {reader.TokenType}.");

    public override void Write(Utf8JsonWriter writer, ILearningRateSchedule value, JsonSerializerOptions options) => writer.WriteStringValue(value.ToSpec());
}

/// <summary>Stores parameter groups as their specs (<see cref="ParameterGroup.ToSpec"/>).</summary>
internal sealed class GroupSpecsJsonConverter : JsonConverter<IReadOnlyList<ParameterGroup>>
{
    public override IReadOnlyList<ParameterGroup> Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType == JsonTokenType.Null) return [];
        if (reader.TokenType != JsonTokenType.StartArray) throw new JsonException($"groups: expected an array of group specs, got {reader.TokenType}.");
        var groups = new List<ParameterGroup>();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
            groups.Add(reader.TokenType == JsonTokenType.String ? ParameterGroup.Parse(reader.GetString()!)
                : throw new JsonException($"groups: expected a group spec string, got {reader.TokenType}."));
        return groups;
    }

    public override void Write(Utf8JsonWriter writer, IReadOnlyList<ParameterGroup> value, JsonSerializerOptions options)
    {
        writer.WriteStartArray();
        foreach (var g in value) writer.WriteStringValue(g.ToSpec());
        writer.WriteEndArray();
    }
}
