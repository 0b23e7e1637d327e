using System.CommandLine;
using System.CommandLine.Parsing;
using System.Text.RegularExpressions;

namespace OnnxAdadelta.Cli;

/// <summary>
/// Turns System.CommandLine's parse errors into one plain line (no .NET type names, no help dump) and a pointer to the
/// verb's help. Every verb gets this from <see cref="CliApp"/>; a usage error exits <see cref="ExitCodes.Usage"/>.
/// </summary>
public static partial class UsageErrors
{
    /// <summary>The message of the first parse error of <paramref name="result"/>, in plain words.</summary>
    public static string Describe(ParseResult result)
    {
        if (result.UnmatchedTokens.Count > 0)
            return Unmatched(result, result.UnmatchedTokens[0]);
        var error = result.Errors[0];
        return error.SymbolResult switch
        {
            OptionResult { IdentifierToken: null } option => $"missing required option {DisplayName(option.Option)} <{Placeholder(option.Option)}>",
            ArgumentResult { Parent: OptionResult { IdentifierToken: null } option } => $"missing required option {DisplayName(option.Option)} <{Placeholder(option.Option)}>",
            ArgumentResult { Parent: OptionResult option } argument => BadValue(option.Option, argument.Tokens, error.Message),
            OptionResult option => BadValue(option.Option, option.Tokens, error.Message),
            ArgumentResult argument => BadValue(argument.Argument, argument.Tokens, error.Message),
            _ => Missing(result, error.Message) ?? Plain(error.Message),
        };
    }

    /// <summary>The line that points to help: <c>See 'onnx-adadelta train --help'.</c></summary>
    public static string SeeHelp(ParseResult result) => $"See '{CommandPath(result.CommandResult)} --help'.";

    /// <summary>The command path, e.g. <c>onnx-adadelta train</c>.</summary>
    public static string CommandPath(CommandResult command)
    {
        var names = new List<string>();
        for (SymbolResult? s = command; s is not null; s = s.Parent)
            if (s is CommandResult c) names.Add(c.Command is RootCommand ? CliApp.Name : c.Command.Name);
        names.Reverse();
        return string.Join(' ', names);
    }

    private static string Unmatched(ParseResult result, string token)
    {
        var command = result.CommandResult.Command;
        if (token.StartsWith('-'))
        {
            var near = Nearest(token, command.Options.Where(o => !o.Hidden).SelectMany(o => o.Aliases.Prepend(o.Name)));
            return $"unknown option '{token}'" + (near is null ? "" : $" (did you mean '{near}'?)");
        }
        if (command is RootCommand)
        {
            var near = Nearest(token, command.Subcommands.Where(c => !c.Hidden).Select(c => c.Name));
            return $"unknown command '{token}'" + (near is null ? "" : $" (did you mean '{near}'?)");
        }
        return $"unexpected argument '{token}'";
    }

    /// <summary>How messages name an option: its long form (<c>--out</c> rather than <c>-o</c>).</summary>
    public static string DisplayName(Option option) =>
        option.Aliases.Prepend(option.Name).Where(a => a.StartsWith("--", StringComparison.Ordinal)).FirstOrDefault() ?? option.Name;

    /// <summary>What to type for an option's value: its help name, or its name in capitals.</summary>
    public static string Placeholder(Option option) => option.HelpName ?? DisplayName(option).TrimStart('-').ToUpperInvariant();

    private static string BadValue(Symbol symbol, IReadOnlyList<Token> tokens, string message)
    {
        var name = symbol switch
        {
            Option o => DisplayName(o),
            Argument a => a.HelpName ?? a.Name,
            _ => symbol.Name,
        };
        var placeholder = symbol switch
        {
            Option o => Placeholder(o),
            Argument a => a.HelpName ?? a.Name,
            _ => symbol.Name,
        };
        if (tokens.Count == 0)
            return symbol is Option ? $"{name}: missing value (expected <{placeholder}>)" : $"missing argument {placeholder}";
        var value = tokens[^1].Value;
        var type = symbol switch { Option o => o.ValueType, Argument a => a.ValueType, _ => typeof(string) };
        type = type.IsArray ? type.GetElementType()! : Nullable.GetUnderlyingType(type) ?? type;
        if (type == typeof(double) || type == typeof(float))
            return $"{name}: '{value}' is not a number";
        if (type == typeof(int) || type == typeof(long))
            return $"{name}: '{value}' is not a whole number";
        if (type.IsEnum)
            return $"{name}: '{value}' is not one of {string.Join(", ", Enum.GetNames(type).Select(n => n.ToLowerInvariant()))}";
        if (type == typeof(bool))
            return $"{name}: '{value}' is not true or false";
        return $"{name}: {Plain(message)}";
    }

    private static string? Missing(ParseResult result, string message)
    {
        var command = result.CommandResult;
        foreach (var option in command.Command.Options)
            if (option.Required && command.GetResult(option) is null && message.Contains($"'{option.Name}'", StringComparison.Ordinal) || message.Contains($"'{DisplayName(option)}'", StringComparison.Ordinal))
                return $"missing required option {DisplayName(option)} <{Placeholder(option)}>";
        foreach (var argument in command.Command.Arguments)
            if (command.GetResult(argument) is not { Tokens.Count: > 0 } && argument.Arity.MinimumNumberOfValues > 0)
                return $"missing argument {argument.HelpName ?? argument.Name}";
        return null;
    }

    /// <summary>A System.CommandLine message with .NET type names removed, on one line.</summary>
    private static string Plain(string message)
    {
        var line = message.ReplaceLineEndings(" ").Trim();
        line = TypeClause().Replace(line, "");
        return line.Length > 0 && char.IsUpper(line[0]) && !(line.Length > 1 && char.IsUpper(line[1])) ? char.ToLowerInvariant(line[0]) + line[1..] : line;
    }

    /// <summary>The closest candidate within an edit distance of 2 (or a third of the word), if any.</summary>
    private static string? Nearest(string word, IEnumerable<string> candidates)
    {
        string? best = null;
        int bestDistance = int.MaxValue;
        foreach (var c in candidates.Distinct())
        {
            int d = Distance(word, c);
            if (d < bestDistance) (best, bestDistance) = (c, d);
        }
        return bestDistance <= Math.Max(2, word.Length / 3) ? best : null;
    }

    private static int Distance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) previous[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (int j = 1; j <= b.Length; j++)
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (previous, current) = (current, previous);
        }
        return previous[b.Length];
    }

    [GeneratedRegex(@"\s*as expected type '[^']*'")]
    private static partial Regex TypeClause();
}

/// <summary>The exit codes of every verb (also listed in <c>--help</c> and the README).</summary>
public static class ExitCodes
{
    /// <summary>Success.</summary>
    public const int Ok = 0;
    /// <summary>Bad input (a model, data file or flag value), or a failed <c>verify</c>.</summary>
    public const int BadInput = 1;
    /// <summary>Usage error: an unknown option, a missing argument, a value that does not parse.</summary>
    public const int Usage = 2;
    /// <summary><c>train</c> stopped because a step's loss or new state was NaN or infinite (the last finite state was written).</summary>
    public const int NonFinite = 3;
    /// <summary>Interrupted (Ctrl+C, SIGINT): 128 + 2.</summary>
    public const int Interrupted = 130;
    /// <summary>Terminated (SIGTERM): 128 + 15.</summary>
    public const int Terminated = 143;

    /// <summary>The table as printed at the end of <c>--help</c>.</summary>
    public const string Help = "Exit codes: 0 ok, 1 bad input or failed verify, 2 usage error, 3 training stopped on NaN/Inf, 130 interrupted (SIGINT), 143 terminated (SIGTERM).";
}
