using System.Text.RegularExpressions;

namespace OnnxAdadelta.Graphs;

/// <summary>
/// Name patterns that select parameters, as Keras's <c>exclude_from_weight_decay</c> does with <c>re.search</c>: a
/// pattern matches a parameter when it occurs anywhere in the name (substring, case-sensitive), and <c>*</c> in a
/// pattern matches any run of characters (including none). No other character is special: <c>bias</c> matches
/// <c>dense/bias</c>, <c>conv*/kernel</c> matches <c>conv2/kernel</c>, and <c>.</c> is a plain dot.
/// </summary>
public sealed class ParameterPatterns
{
    private readonly Regex[] _regexes;

    /// <summary>No patterns: nothing matches.</summary>
    public static readonly ParameterPatterns None = new([]);

    /// <summary>Compiles <paramref name="patterns"/>; an empty or blank pattern throws <see cref="ArgumentException"/>.</summary>
    public ParameterPatterns(IEnumerable<string> patterns)
    {
        ArgumentNullException.ThrowIfNull(patterns);
        Patterns = patterns.ToList();
        foreach (var p in Patterns)
            if (string.IsNullOrWhiteSpace(p))
                throw new ArgumentException($"Invalid exclude_from_weight_decay pattern: '{p}' (expected a non-empty name pattern).", nameof(patterns));
        _regexes = Patterns.Select(p => new Regex(Regex.Escape(p).Replace(@"\*", ".*", StringComparison.Ordinal), RegexOptions.CultureInvariant)).ToArray();
    }

    /// <summary>The patterns, as given.</summary>
    public IReadOnlyList<string> Patterns { get; }

    /// <summary>Whether any pattern occurs in <paramref name="name"/>.</summary>
    public bool Matches(string name) => _regexes.Any(r => r.IsMatch(name));
}
