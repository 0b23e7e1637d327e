using System.Text.Json;
using System.Text.RegularExpressions;

namespace OnnxAdadelta.Tests.Packaging;

/// <summary>
/// The README's C# example, exactly as written, run as a .NET 10 file-based app (<c>dotnet run example.cs</c>) with a
/// <c>#:project</c> line that references the library. File-based apps default to PublishAot=true, so even under
/// <c>dotnet run</c> they turn off reflection-based JSON and dynamic code: the library must work without them.
/// </summary>
[Collection(SdkBuildCollection.Name)]
public class FileBasedAppTests(BuildArtifacts artifacts)
{
    [PackagingFact]
    public void TheReadmeExampleRunsAsAFileBasedApp()
    {
        var readme = File.ReadAllText(Path.Combine(RepoPaths.Root, "README.md"));
        var example = Regex.Match(readme, "```csharp\n(.*?)```", RegexOptions.Singleline).Groups[1].Value;
        Assert.Contains("ModelIO.Load(\"models/digits-cnn.onnx\")", example);
        var command = Regex.Match(readme, "<!-- FILE-BASED-APP -->\n```sh\n(.*?)\n```", RegexOptions.Singleline);
        Assert.True(command.Success, "README lacks the FILE-BASED-APP block");
        var args = Regex.Split(command.Groups[1].Value.Trim(), @"\s+");
        Assert.Equal(new[] { "dotnet", "run", "example.cs" }, args);

        var work = artifacts.NewFolder("file-based-app");
        var library = Path.Combine(RepoPaths.Root, "src", "OnnxAdadelta", "OnnxAdadelta.csproj");
        File.WriteAllText(Path.Combine(work, "example.cs"), $"#:project {library}\n{example}");
        Directory.CreateSymbolicLink(Path.Combine(work, "models"), RepoPaths.Models);

        // Release and the shared artifacts folder: the library build is the tool pack's (whichever test runs first
        // builds it), and nothing is written into the repository's bin and obj under the running test host.
        var run = DotnetProcess.Run("dotnet", [.. args[1..], "-c", "Release", "--artifacts-path", artifacts.Path, "--disable-build-servers"],
            work, TimeSpan.FromMinutes(10));
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(3, Regex.Matches(run.Out, @"^step \d+: loss \d", RegexOptions.Multiline).Count);
        var accuracy = Regex.Match(run.Out, @"^held-out accuracy (\d+(\.\d+)?) %", RegexOptions.Multiline);
        Assert.True(accuracy.Success && double.Parse(accuracy.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) > 90, run.ToString());
        Assert.True(File.Exists(Path.Combine(work, "digits-cnn.ckpt.onnx")) && File.Exists(Path.Combine(work, "digits-cnn.trained.onnx")));

        // It ran with the AOT defaults of a file-based app: no reflection-based JSON, no dynamic code.
        var config = Directory.GetFiles(artifacts.Path, "example.runtimeconfig.json", SearchOption.AllDirectories).Single();
        var properties = JsonDocument.Parse(File.ReadAllText(config)).RootElement.GetProperty("runtimeOptions").GetProperty("configProperties");
        Assert.False(properties.GetProperty("System.Text.Json.JsonSerializer.IsReflectionEnabledByDefault").GetBoolean());
        Assert.False(properties.GetProperty("System.Runtime.CompilerServices.RuntimeFeature.IsDynamicCodeSupported").GetBoolean());
    }
}
