using System.Diagnostics;

namespace OnnxAdadelta.Tests.Frameworks;

/// <summary>
/// A fact that runs a script of tests/node under Node.js with the npm packages that <c>.ci/run</c> installs
/// (<c>npm ci --ignore-scripts</c> in tests/node): where node or those packages are absent the test is reported as
/// skipped, with the reason, rather than passing without checking anything.
/// </summary>
public sealed class NodeFactAttribute : FactAttribute
{
    /// <summary>Skips when node or tests/node/node_modules is absent.</summary>
    public NodeFactAttribute()
    {
        if (NodeRunner.AbsentReason is { } reason) Skip = reason;
    }
}

/// <summary>A theory that needs Node.js; see <see cref="NodeFactAttribute"/>.</summary>
public sealed class NodeTheoryAttribute : TheoryAttribute
{
    /// <summary>Skips when node or tests/node/node_modules is absent.</summary>
    public NodeTheoryAttribute()
    {
        if (NodeRunner.AbsentReason is { } reason) Skip = reason;
    }
}

/// <summary>Runs the scripts of tests/node.</summary>
internal static class NodeRunner
{
    public static string Folder => Path.Combine(RepoPaths.Root, "tests", "node");

    private static readonly Lazy<string?> Node = new(() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
            .Select(d => Path.Combine(d, "node")).FirstOrDefault(File.Exists));

    /// <summary>Why the Node tests cannot run here, or null.</summary>
    public static string? AbsentReason =>
        Node.Value is null ? "node (Node.js 20) is not on PATH; .ci/run needs it for the TF.js and onnxruntime-node runners."
        : !Directory.Exists(Path.Combine(Folder, "node_modules", "@tensorflow", "tfjs")) || !Directory.Exists(Path.Combine(Folder, "node_modules", "onnxruntime-node"))
            ? $"the npm packages of {Folder} are not installed (run 'npm ci --ignore-scripts' there, as .ci/run does)."
            : null;

    /// <summary>Runs <c>node SCRIPT ARGS</c> in tests/node; returns stdout, or fails the test with stderr.</summary>
    public static string Run(string script, params string[] args)
    {
        var start = new ProcessStartInfo(Node.Value!) { WorkingDirectory = Folder, RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(script);
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(120_000)) { process.Kill(entireProcessTree: true); Assert.Fail($"node {script} did not finish in 120 s."); }
        Assert.True(process.ExitCode == 0, $"node {script} exited {process.ExitCode}: {stderr.Result}");
        return stdout.Result;
    }
}
