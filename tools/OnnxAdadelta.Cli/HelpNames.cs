using System.CommandLine;

namespace OnnxAdadelta.Cli;

/// <summary>
/// Placeholders that say what to type (<c>--data &lt;FILE.npz&gt;</c>, <c>--lr &lt;RATE&gt;</c>, <c>--device &lt;cpu|cuda&gt;</c>)
/// for every option of every verb that does not set its own <see cref="Option.HelpName"/>.
/// </summary>
public static class HelpNames
{
    private static readonly Dictionary<string, string> Known = new(StringComparer.Ordinal)
    {
        ["--data"] = "DATA", ["--eval"] = "DATA", ["--out"] = "FILE.onnx", ["--params"] = "MODEL.onnx",
        ["--checkpoint"] = "PATH", ["--log"] = "FILE.csv", ["--lr"] = "RATE", ["--steps"] = "N", ["--batch-size"] = "N",
        ["--seed"] = "N", ["--threads"] = "N", ["--max-ulp"] = "K", ["--target"] = "NAME", ["--output"] = "NAME",
        ["--name"] = "PREFIX", ["--preset"] = "keras|pytorch|paper", ["--schedule"] = "SPEC", ["--grad"] = "PARAM=OUTPUT",
        ["--group"] = "PATTERN:key=value,...", ["--freeze"] = "PATTERN", ["--trainable"] = "PATTERN",
        ["--exclude-from-weight-decay"] = "PATTERN", ["--profile"] = "FILE.json", ["--variant"] = "keras|pytorch|tfjs|optax",
        ["--loss"] = "cross-entropy|nll|bce|mse|output", ["--input-shape"] = "NAME=D0,D1,...", ["--batchnorm"] = "inference|train",
        ["--dropout"] = "identity|train", ["--against"] = "TRAJECTORY.npz",
    };

    /// <summary>Sets the placeholder of each option under <paramref name="command"/> that has none.</summary>
    public static void Apply(Command command)
    {
        foreach (var option in command.Options)
            if (option.HelpName is null && Placeholder(option) is { } name) option.HelpName = name;
        foreach (var sub in command.Subcommands) Apply(sub);
    }

    /// <summary>The placeholder for an option: a known one, the lowercase choices of an enum, N or NUMBER; null for a switch.</summary>
    public static string? Placeholder(Option option)
    {
        var type = option.ValueType.IsArray ? option.ValueType.GetElementType()! : option.ValueType;
        type = Nullable.GetUnderlyingType(type) ?? type;
        if (type == typeof(bool)) return null;
        if (Known.TryGetValue(UsageErrors.DisplayName(option), out var known)) return known;
        if (type.IsEnum) return string.Join('|', Enum.GetNames(type).Select(n => n.ToLowerInvariant()));
        if (type == typeof(int) || type == typeof(long)) return "N";
        if (type == typeof(double) || type == typeof(float)) return "NUMBER";
        return null;
    }
}
