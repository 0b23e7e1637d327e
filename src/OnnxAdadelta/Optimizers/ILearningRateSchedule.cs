namespace OnnxAdadelta.Optimizers;

/// <summary>
/// A learning rate as a function of the optimizer's iteration counter, written once against <see cref="ITensorMath{T}"/>
/// so that the same code emits the in-graph computation and evaluates the C# reference.
/// </summary>
public interface ILearningRateSchedule
{
    /// <summary>
    /// The learning rate at <paramref name="step"/>, the iteration counter cast to float32 before it is incremented
    /// (Keras reads <c>optimizer.iterations</c> before <c>apply_gradients</c> adds one).
    /// </summary>
    T Compute<T>(ITensorMath<T> math, T step);

    /// <summary>The readable spec this schedule parses from (see <c>LearningRateSchedules.Parse</c>).</summary>
    string ToSpec();
}

/// <summary>A constant learning rate.</summary>
/// <param name="Value">The learning rate; finite and non-negative.</param>
public sealed record ConstantLearningRate(float Value) : ILearningRateSchedule
{
    /// <summary>The learning rate; the constructor throws <see cref="ArgumentException"/> unless it is finite and non-negative.</summary>
    public float Value { get; } = ScheduleArguments.Rate(nameof(ConstantLearningRate), "value", Value);

    /// <summary>A constant rate given as a double (as Keras and PyTorch take it), rounded to float32 once.</summary>
    /// <param name="value">The learning rate; finite and non-negative in float32.</param>
    /// <exception cref="ArgumentException">The value is negative, or not finite in float32; the message names learning_rate and the value.</exception>
    public ConstantLearningRate(double value) : this(Check(value)) { }

    private static float Check(double value) =>
        double.IsFinite(value) && value >= 0 && float.IsFinite((float)value) ? (float)value
            : throw new ArgumentException($"Invalid learning_rate value: {AdadeltaOptions.F(value)} (expected a finite number >= 0).", nameof(value));

    /// <inheritdoc/>
    public T Compute<T>(ITensorMath<T> math, T step) => math.Constant("learning_rate", Value);

    /// <inheritdoc/>
    public string ToSpec() => $"constant:value={Value.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}";
}

/// <summary>Evaluation of schedules in plain C#.</summary>
public static class LearningRateScheduleExtensions
{
    /// <summary>The float32 learning rate at iteration <paramref name="step"/>, computed by the C# reference arithmetic.</summary>
    public static float Evaluate(this ILearningRateSchedule schedule, long step) =>
        schedule.Compute(ArrayMath.Instance, [(float)step])[0];
}
