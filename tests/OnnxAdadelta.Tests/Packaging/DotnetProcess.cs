using System.Diagnostics;

namespace OnnxAdadelta.Tests.Packaging;

/// <summary>Runs a program (dotnet, or an installed tool) as a child process of the test host and captures its output.</summary>
internal static class DotnetProcess
{
    public sealed record Result(int ExitCode, string Out, string Err)
    {
        public override string ToString() => $"exit {ExitCode}\n--- stdout\n{Out}\n--- stderr\n{Err}";
    }

    /// <summary>
    /// Runs <paramref name="program"/> in <paramref name="workingDirectory"/>. The child gets no MSBuild variables of the
    /// <c>dotnet test</c> that started the test host, and no MSBuild node or compiler server outlives it (they would hold
    /// its output pipes open); it is killed, with its children, after <paramref name="timeout"/>.
    /// </summary>
    public static Result Run(string program, IEnumerable<string> args, string workingDirectory, TimeSpan timeout)
    {
        var start = new ProcessStartInfo(program)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args) start.ArgumentList.Add(a);
        foreach (var key in start.Environment.Keys.ToList())
            if (key.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase) || key.StartsWith("VSTEST", StringComparison.OrdinalIgnoreCase))
                start.Environment.Remove(key);
        start.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        start.Environment["DOTNET_CLI_USE_MSBUILD_SERVER"] = "0";
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        start.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {program}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            throw new TimeoutException($"{program} {string.Join(' ', args)} ran past {timeout.TotalMinutes} min; its output so far:\n{Drain(stdout)}\n{Drain(stderr)}");
        }
        if (!Task.WaitAll([stdout, stderr], TimeSpan.FromMinutes(1)))
            throw new TimeoutException($"{program} exited but a child process still holds its output open");
        return new Result(process.ExitCode, stdout.Result, stderr.Result);
    }

    private static string Drain(Task<string> output) => output.Wait(TimeSpan.FromSeconds(10)) ? output.Result : "(no output)";
}
