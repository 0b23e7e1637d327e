using System.Globalization;

namespace OnnxAdadelta.Optimizers;

/// <summary>
/// Whose Adadelta the update reproduces, operation for operation. All four keep the same two running averages
/// (<c>accum_grad</c> of g², <c>accum_var</c> of delta²); they differ in rounding order, in how 1 - rho is rounded to
/// float32, and (TF.js) in which accumulator the denominator reads. See <see cref="ScaleByAdadelta"/>.
/// </summary>
public enum AdadeltaVariant
{
    /// <summary>tf.keras (TF 2.4) and Keras 3: 1 - rho in float32, <c>(1-rho)*g*g</c>. The default.</summary>
    Keras,

    /// <summary>torch.optim.Adadelta: as Keras, with 1 - rho computed in float64 then rounded (<c>addcmul(value=1-rho)</c>).</summary>
    PyTorch,

    /// <summary>tf.train.adadelta (TF.js): the denominator reads the previous <c>accum_grad</c>; <c>g*g*(1-rho)</c>.</summary>
    Tfjs,

    /// <summary>optax.adadelta: <c>(1-rho)*(g*g) + rho*accum</c>, the update scaled by -lr and added.</summary>
    Optax,
}

/// <summary>Names and defaults of the <see cref="AdadeltaVariant"/>s.</summary>
public static class AdadeltaVariants
{
    /// <summary>The variants' CLI names, in order.</summary>
    public static IReadOnlyList<string> Names { get; } = ["keras", "pytorch", "tfjs", "optax"];

    /// <summary>The CLI name of <paramref name="variant"/>.</summary>
    public static string Name(AdadeltaVariant variant) => Names[(int)variant];

    /// <summary>Parses a CLI name (case-insensitive).</summary>
    /// <exception cref="ArgumentException">Not one of keras, pytorch, tfjs, optax.</exception>
    public static AdadeltaVariant Parse(string name)
    {
        int i = Names.ToList().FindIndex(n => string.Equals(n, name?.Trim(), StringComparison.OrdinalIgnoreCase));
        return i >= 0 ? (AdadeltaVariant)i : throw new ArgumentException($"Invalid variant: '{name}' (expected one of {string.Join(", ", Names)}).");
    }

    /// <summary>
    /// The framework's own defaults for (learning rate, rho, epsilon); a null learning rate means the framework has
    /// none (optax.adadelta needs one).
    /// </summary>
    public static (double? LearningRate, double Rho, double Epsilon) Defaults(AdadeltaVariant variant) => variant switch
    {
        AdadeltaVariant.PyTorch => (1.0, 0.9, 1e-6),
        AdadeltaVariant.Tfjs => (0.001, 0.95, 1e-7),
        AdadeltaVariant.Optax => (null, 0.9, 1e-6),
        _ => (AdadeltaOptions.DefaultLearningRate, AdadeltaOptions.DefaultRho, AdadeltaOptions.DefaultEpsilon),
    };

    /// <summary>
    /// 1 - rho as the variant rounds it to float32: Keras subtracts in float32; PyTorch, TF.js and optax subtract the
    /// user's double (here the shortest decimal that rounds to <paramref name="rho"/>, which is what was typed) and round once.
    /// </summary>
    public static float OneMinusRho(AdadeltaVariant variant, float rho) => variant == AdadeltaVariant.Keras
        ? 1f - rho
        : (float)(1.0 - double.Parse(rho.ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture));
}
