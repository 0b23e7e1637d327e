using System.Globalization;

namespace OnnxAdadelta.Optimizers;

/// <summary>
/// Parses the readable schedule specs of the <c>--schedule SPEC</c> flag, the form every schedule's
/// <see cref="ILearningRateSchedule.ToSpec"/> prints.
/// </summary>
/// <remarks>
/// <para>Grammar: <c>KIND[:KEY=VALUE[,KEY=VALUE]...]</c>. Lists separate their items with <c>;</c>. Numbers are
/// invariant-culture decimals (<c>0.1</c>, <c>1e-3</c>); booleans are <c>true</c> or <c>false</c>. Kinds and keys
/// match case-insensitively, whitespace around pieces is ignored, each key may appear once, and keys with a default
/// may be left out. Keras's argument names are accepted as aliases (<c>initial_learning_rate</c> for
/// <c>initial</c>, <c>end_learning_rate</c> for <c>end</c>) and Keras's snake-case class names as aliases of the kinds.</para>
/// <para>Kinds: see <see cref="Help"/>.</para>
/// </remarks>
public static class LearningRateSchedules
{
    private enum TypeAndShape { Number, Bool, Numbers, Integers }

    private sealed record Key(string Name, TypeAndShape Type, object? Default, params string[] Aliases)
    {
        public bool Matches(string name) =>
            string.Equals(Name, name, StringComparison.OrdinalIgnoreCase) ||
            Aliases.Any(a => string.Equals(a, name, StringComparison.OrdinalIgnoreCase));

        public string Describe()
        {
            var names = string.Join("|", new[] { Name }.Concat(Aliases));
            var type = Type switch
            {
                TypeAndShape.Number => "number",
                TypeAndShape.Bool => "true|false",
                TypeAndShape.Numbers => "numbers separated by ;",
                _ => "integers separated by ;",
            };
            var need = Default switch
            {
                null => "required",
                bool b => $"default {ScheduleArguments.Format(b)}",
                double d => $"default {ScheduleArguments.Format(d)}",
                _ => $"default {Default}",
            };
            return $"{names} ({type}, {need})";
        }
    }

    private sealed record Kind(string Name, string[] Aliases, Key[] Keys, Func<Arguments, ILearningRateSchedule> Create)
    {
        public bool Matches(string name) =>
            string.Equals(Name, name, StringComparison.OrdinalIgnoreCase) ||
            Aliases.Any(a => string.Equals(a, name, StringComparison.OrdinalIgnoreCase));

        public string DescribeKeys() => $"keys for {Name}: {string.Join(", ", Keys.Select(k => k.Describe()))}";
    }

    private sealed class Arguments(Dictionary<string, object> values)
    {
        public double Number(string key) => (double)values[key];
        public bool Bool(string key) => (bool)values[key];
        public double[] Numbers(string key) => (double[])values[key];
        public long[] Integers(string key) => (long[])values[key];
    }

    private static readonly Key Initial = new("initial", TypeAndShape.Number, null, "initial_learning_rate");
    private static readonly Key DecaySteps = new("decay_steps", TypeAndShape.Number, null);
    private static readonly Key DecayRate = new("decay_rate", TypeAndShape.Number, null);
    private static readonly Key Staircase = new("staircase", TypeAndShape.Bool, false);
    private static readonly Key Alpha = new("alpha", TypeAndShape.Number, 0.0);

    private static readonly Kind[] KindTable =
    [
        new("exponential", ["exponential_decay"], [Initial, DecaySteps, DecayRate, Staircase],
            a => new ExponentialDecay(a.Number("initial"), a.Number("decay_steps"), a.Number("decay_rate"), a.Bool("staircase"))),
        new("piecewise", ["piecewise_constant", "piecewise_constant_decay"],
            [new("boundaries", TypeAndShape.Integers, null), new("values", TypeAndShape.Numbers, null)],
            a => new PiecewiseConstantDecay(a.Integers("boundaries"), a.Numbers("values"))),
        new("polynomial", ["polynomial_decay"],
            [Initial, DecaySteps, new("end", TypeAndShape.Number, PolynomialDecay.DefaultEndLearningRate, "end_learning_rate"),
             new("power", TypeAndShape.Number, 1.0), new("cycle", TypeAndShape.Bool, false)],
            a => new PolynomialDecay(a.Number("initial"), a.Number("decay_steps"), a.Number("end"), a.Number("power"), a.Bool("cycle"))),
        new("inverse_time", ["inverse_time_decay"], [Initial, DecaySteps, DecayRate, Staircase],
            a => new InverseTimeDecay(a.Number("initial"), a.Number("decay_steps"), a.Number("decay_rate"), a.Bool("staircase"))),
        new("cosine", ["cosine_decay"], [Initial, DecaySteps, Alpha],
            a => new CosineDecay(a.Number("initial"), a.Number("decay_steps"), a.Number("alpha"))),
        new("cosine_restarts", ["cosine_decay_restarts"],
            [Initial, new("first_decay_steps", TypeAndShape.Number, null), new("t_mul", TypeAndShape.Number, 2.0),
             new("m_mul", TypeAndShape.Number, 1.0), Alpha],
            a => new CosineDecayRestarts(a.Number("initial"), a.Number("first_decay_steps"), a.Number("t_mul"), a.Number("m_mul"), a.Number("alpha"))),
        new("constant", [], [new("value", TypeAndShape.Number, null, "learning_rate")],
            a => new ConstantLearningRate((float)a.Number("value"))),
    ];

    /// <summary>The canonical kind names, in the order <see cref="Help"/> lists them.</summary>
    public static IReadOnlyList<string> Kinds { get; } = KindTable.Select(k => k.Name).ToArray();

    private static string ValidKinds =>
        "valid kinds: " + string.Join(", ", KindTable.Select(k => k.Aliases.Length == 0 ? k.Name : $"{k.Name} ({string.Join("|", k.Aliases)})"));

    /// <summary>One line per kind: its name and keys, with types and defaults (for <c>--help</c>).</summary>
    public static string Help { get; } = string.Join(Environment.NewLine, KindTable.Select(k =>
        $"{k.Name}: {string.Join(", ", k.Keys.Select(key => key.Describe()))}"));

    /// <summary>
    /// Parses a spec such as <c>exponential:initial=1.0,decay_steps=100,decay_rate=0.96,staircase=true</c>.
    /// Throws <see cref="ArgumentException"/> with a one-line message that quotes the spec and the offending piece and
    /// lists the valid kinds or keys: for an unknown kind or key, a repeated or missing key, a piece without
    /// <c>=</c>, a value that is not a number, integer or boolean, and for values the schedule's constructor rejects.
    /// </summary>
    public static ILearningRateSchedule Parse(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        string Fail(string problem) => $"Schedule spec '{spec}': {problem}";

        var colon = spec.IndexOf(':');
        var kindName = (colon < 0 ? spec : spec[..colon]).Trim();
        var rest = colon < 0 ? "" : spec[(colon + 1)..];
        if (kindName.Length == 0) throw new ArgumentException(Fail($"no kind before ':'; {ValidKinds}."));
        var kind = KindTable.FirstOrDefault(k => k.Matches(kindName))
            ?? throw new ArgumentException(Fail($"unknown kind '{kindName}'; {ValidKinds}."));

        var values = new Dictionary<string, object>(StringComparer.Ordinal);
        if (rest.Trim().Length > 0)
        {
            foreach (var rawPiece in rest.Split(','))
            {
                var piece = rawPiece.Trim();
                var eq = piece.IndexOf('=');
                if (eq < 0)
                    throw new ArgumentException(Fail($"piece '{piece}' is not KEY=VALUE; {kind.DescribeKeys()}."));
                var keyName = piece[..eq].Trim();
                var text = piece[(eq + 1)..].Trim();
                var key = kind.Keys.FirstOrDefault(k => k.Matches(keyName))
                    ?? throw new ArgumentException(Fail($"unknown key '{keyName}' in '{piece}'; {kind.DescribeKeys()}."));
                if (values.ContainsKey(key.Name))
                    throw new ArgumentException(Fail($"key '{key.Name}' given twice (again in '{piece}'); {kind.DescribeKeys()}."));
                values[key.Name] = ParseValue(key, text) ?? throw new ArgumentException(Fail(
                    $"'{piece}': '{text}' is not {Expected(key.Type)}; {kind.DescribeKeys()}."));
            }
        }

        foreach (var key in kind.Keys)
        {
            if (values.ContainsKey(key.Name)) continue;
            values[key.Name] = key.Default ?? throw new ArgumentException(Fail($"missing required key '{key.Name}'; {kind.DescribeKeys()}."));
        }

        try
        {
            return kind.Create(new Arguments(values));
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException(Fail(e.Message), e);
        }
    }

    private static string Expected(TypeAndShape type) => type switch
    {
        TypeAndShape.Number => "a number",
        TypeAndShape.Bool => "true or false",
        TypeAndShape.Numbers => "a ;-separated list of numbers",
        _ => "a ;-separated list of integers",
    };

    // The parsed value, or null when the text does not have the key's type.
    private static object? ParseValue(Key key, string text)
    {
        switch (key.Type)
        {
            case TypeAndShape.Number:
                return ParseNumber(text) is { } number ? number : null;
            case TypeAndShape.Bool:
                if (string.Equals(text, "true", StringComparison.OrdinalIgnoreCase)) return true;
                if (string.Equals(text, "false", StringComparison.OrdinalIgnoreCase)) return false;
                return null;
            case TypeAndShape.Numbers:
            {
                var items = text.Split(';');
                var result = new double[items.Length];
                for (int i = 0; i < items.Length; i++)
                {
                    if (ParseNumber(items[i].Trim()) is not { } d) return null;
                    result[i] = d;
                }
                return result;
            }
            default:
            {
                var items = text.Split(';');
                var result = new long[items.Length];
                for (int i = 0; i < items.Length; i++)
                {
                    if (!long.TryParse(items[i].Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out result[i]))
                        return null;
                }
                return result;
            }
        }
    }

    // Keras receives Python floats: the decimal is rounded to a double, which the schedules cast to float32 later.
    private static double? ParseNumber(string text) =>
        text.Length > 0 && double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? d : null;
}
