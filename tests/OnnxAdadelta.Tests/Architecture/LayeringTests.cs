using System.Text.RegularExpressions;
using Xunit;

namespace OnnxAdadelta.Tests.Architecture;

/// <summary>
/// The library's namespaces follow the data: Onnx &lt; Runtime &lt; Graphs &lt; {Gradients, Optimizers} &lt; Import &lt;
/// Training &lt; Distributed, with Reference beside Optimizers. A file may use its own layer and the ones below it; the
/// sideways arrows allowed are Import → Gradients and Reference → Optimizers (see the README's "Repository layout").
/// </summary>
public class LayeringTests
{
    private static readonly Dictionary<string, int> Level = new()
    {
        ["Onnx"] = 0, ["Runtime"] = 1, ["Graphs"] = 2, ["Gradients"] = 3, ["Optimizers"] = 3, ["Reference"] = 3,
        ["Import"] = 4, ["Training"] = 5, ["Distributed"] = 6,
    };

    private static readonly HashSet<(string From, string To)> Sideways = [("Import", "Gradients"), ("Reference", "Optimizers")];

    private static readonly Regex NamespaceLine = new(@"^namespace OnnxAdadelta\.(\w+)", RegexOptions.Multiline);
    private static readonly Regex Qualified = new(@"OnnxAdadelta\.(\w+)");
    private static readonly Regex Relative = new(@"(?<![\w.])(Onnx|Runtime|Graphs|Gradients|Optimizers|Reference|Import|Training|Distributed)\.[A-Z]");

    /// <summary>Every reference from one layer's file to another layer's namespace, as "file: from -> to".</summary>
    internal static List<string> Violations(string sourceRoot)
    {
        var found = new List<string>();
        foreach (var file in Directory.EnumerateFiles(sourceRoot, "*.cs", SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(sourceRoot, file);
            if (relative.StartsWith("obj", StringComparison.Ordinal) || relative.StartsWith("bin", StringComparison.Ordinal)) continue;
            var text = File.ReadAllText(file);
            var own = NamespaceLine.Match(text);
            if (!own.Success || !Level.TryGetValue(own.Groups[1].Value, out int mine)) continue;
            var from = own.Groups[1].Value;
            var targets = Qualified.Matches(text).Select(m => m.Groups[1].Value)
                .Concat(Relative.Matches(text).Select(m => m.Groups[1].Value)).ToHashSet();
            foreach (var to in targets)
            {
                if (to == from || !Level.TryGetValue(to, out int theirs)) continue;
                if (theirs > mine || (theirs == mine && !Sideways.Contains((from, to))))
                    found.Add($"{relative}: {from} -> {to}");
            }
        }
        return found;
    }

    [Fact]
    public void NoNamespaceReferencesOneAboveIt()
    {
        var src = Path.Combine(RepoPaths.Root, "src", "OnnxAdadelta");
        var violations = Violations(src);
        Assert.True(violations.Count == 0, "layering violations:\n" + string.Join("\n", violations));
    }

    [Fact]
    public void TheCheckSeesAnUpwardImport()
    {
        var dir = Directory.CreateTempSubdirectory("layering-");
        try
        {
            Directory.CreateDirectory(Path.Combine(dir.FullName, "Graphs"));
            File.WriteAllText(Path.Combine(dir.FullName, "Graphs", "Bad.cs"),
                "using OnnxAdadelta.Training;\nnamespace OnnxAdadelta.Graphs;\npublic static class Bad { public static object X => Optimizers.AdadeltaRewrite.NextSuffix; }\n");
            File.WriteAllText(Path.Combine(dir.FullName, "Graphs", "Good.cs"),
                "using OnnxAdadelta.Onnx;\nnamespace OnnxAdadelta.Graphs;\npublic static class Good { }\n");
            var violations = Violations(dir.FullName);
            Assert.Equal(["Graphs/Bad.cs: Graphs -> Optimizers", "Graphs/Bad.cs: Graphs -> Training"], violations.Order(StringComparer.Ordinal));
        }
        finally { dir.Delete(recursive: true); }
    }
}
