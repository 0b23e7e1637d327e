using System.Globalization;
using OnnxAdadelta.Graphs;

namespace OnnxAdadelta.Optimizers;

/// <summary>
/// A parameter group (PyTorch <c>param_groups</c>): the parameters whose name matches <see cref="Pattern"/> (see
/// <see cref="ParameterPatterns"/>) get the hyper-parameters set here in place of the defaults, or are
/// <see cref="Frozen"/>. The first group that matches a parameter wins.
/// </summary>
/// <remarks>The spec form is <c>PATTERN:key=value,...</c> with keys lr, rho, epsilon, weight_decay, l2, or the single key frozen.</remarks>
public sealed record ParameterGroup
{
    /// <summary>A group; unset values fall back to the optimizer's. Invalid values throw <see cref="ArgumentException"/>.</summary>
    /// <param name="pattern">The parameter name pattern.</param>
    /// <param name="learningRate">A constant learning rate for the group (replaces the schedule; legacy decay still applies); &gt;= 0.</param>
    /// <param name="rho">The group's rho, in [0, 1].</param>
    /// <param name="epsilon">The group's epsilon; &gt; 0 in float32.</param>
    /// <param name="weightDecay">The group's decoupled weight decay; &gt;= 0.</param>
    /// <param name="l2">The group's coupled L2 weight decay; &gt;= 0.</param>
    /// <param name="frozen">The group's parameters are not trained: unchanged, with no optimizer state.</param>
    public ParameterGroup(string pattern, double? learningRate = null, double? rho = null, double? epsilon = null,
        double? weightDecay = null, double? l2 = null, bool frozen = false)
    {
        if (string.IsNullOrWhiteSpace(pattern) || pattern.Contains(':'))
            throw new ArgumentException($"Invalid parameter group pattern: '{pattern}' (expected a non-empty name pattern without ':').", nameof(pattern));
        Check("lr", learningRate, v => v >= 0, ">= 0");
        Check("rho", rho, v => v is >= 0 and <= 1, "in [0, 1]");
        Check("epsilon", epsilon, v => v > 0 && (float)v > 0, "> 0 in float32");
        Check("weight_decay", weightDecay, v => v >= 0, ">= 0");
        Check("l2", l2, v => v >= 0, ">= 0");
        if (frozen && (learningRate ?? rho ?? epsilon ?? weightDecay ?? l2) is not null)
            throw new ArgumentException($"Parameter group '{pattern}': frozen and {string.Join(", ", Keys(learningRate, rho, epsilon, weightDecay, l2))} cannot both be set (a frozen parameter is not updated).");
        Pattern = pattern;
        Patterns = new ParameterPatterns([pattern]);
        LearningRate = (float?)learningRate;
        Rho = (float?)rho;
        Epsilon = (float?)epsilon;
        WeightDecay = (float?)weightDecay;
        L2 = (float?)l2;
        Frozen = frozen;
    }

    /// <summary>The name pattern, as given.</summary>
    public string Pattern { get; }

    /// <summary>The compiled pattern.</summary>
    public ParameterPatterns Patterns { get; }

    /// <summary>The group's constant learning rate, or null for the optimizer's.</summary>
    public float? LearningRate { get; }

    /// <summary>The group's rho, or null.</summary>
    public float? Rho { get; }

    /// <summary>The group's epsilon, or null.</summary>
    public float? Epsilon { get; }

    /// <summary>The group's decoupled weight decay, or null.</summary>
    public float? WeightDecay { get; }

    /// <summary>The group's coupled L2 weight decay, or null.</summary>
    public float? L2 { get; }

    /// <summary>Whether the group's parameters are frozen.</summary>
    public bool Frozen { get; }

    /// <summary>The spec form, <c>PATTERN:key=value,...</c>, that <see cref="Parse"/> reads back.</summary>
    public string ToSpec()
    {
        var keys = new List<string>();
        if (Frozen) keys.Add("frozen");
        void Add(string k, float? v) { if (v is { } f) keys.Add($"{k}={f.ToString("R", CultureInfo.InvariantCulture)}"); }
        Add("lr", LearningRate);
        Add("rho", Rho);
        Add("epsilon", Epsilon);
        Add("weight_decay", WeightDecay);
        Add("l2", L2);
        return $"{Pattern}:{string.Join(",", keys)}";
    }

    /// <summary>Parses <c>PATTERN:key=value,...</c> (keys lr, rho, epsilon, weight_decay, l2; or frozen).</summary>
    public static ParameterGroup Parse(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var colon = spec.LastIndexOf(':');
        if (colon <= 0) throw new ArgumentException($"Invalid parameter group '{spec}': expected PATTERN:key=value,... (keys lr, rho, epsilon, weight_decay, l2, frozen).", nameof(spec));
        var values = new Dictionary<string, double>(StringComparer.Ordinal);
        bool frozen = false;
        foreach (var part in spec[(colon + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var eq = part.IndexOf('=');
            var key = eq < 0 ? part : part[..eq].Trim();
            if (key == "frozen")
            {
                if (eq >= 0 && !bool.TryParse(part[(eq + 1)..].Trim(), out frozen))
                    throw new ArgumentException($"Invalid parameter group '{spec}': frozen takes true or false.", nameof(spec));
                if (eq < 0) frozen = true;
                continue;
            }
            if (key is not ("lr" or "rho" or "epsilon" or "weight_decay" or "l2"))
                throw new ArgumentException($"Invalid parameter group '{spec}': unknown key '{key}' (expected lr, rho, epsilon, weight_decay, l2, frozen).", nameof(spec));
            if (eq < 0 || !double.TryParse(part[(eq + 1)..].Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var v))
                throw new ArgumentException($"Invalid parameter group '{spec}': {key} needs a number ({key}=VALUE).", nameof(spec));
            if (!values.TryAdd(key, v)) throw new ArgumentException($"Invalid parameter group '{spec}': {key} is given twice.", nameof(spec));
        }
        double? Get(string k) => values.TryGetValue(k, out var v) ? v : null;
        return new ParameterGroup(spec[..colon].Trim(), Get("lr"), Get("rho"), Get("epsilon"), Get("weight_decay"), Get("l2"), frozen);
    }

    private static IEnumerable<string> Keys(double? lr, double? rho, double? eps, double? wd, double? l2) =>
        new (string, double?)[] { ("lr", lr), ("rho", rho), ("epsilon", eps), ("weight_decay", wd), ("l2", l2) }.Where(k => k.Item2 is not null).Select(k => k.Item1);

    private static void Check(string key, double? value, Func<double, bool> valid, string expected)
    {
        if (value is { } v && (!double.IsFinite(v) || !float.IsFinite((float)v) || !valid(v)))
            throw new ArgumentException($"Invalid {key} value in parameter group: {AdadeltaOptions.F(v)} (expected a finite number {expected}).", key);
    }
}
