namespace OnnxAdadelta.Tests.Packaging;

/// <summary>The tests that build the repository's projects with the .NET SDK: they run one after another and share one build.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SdkBuildCollection : ICollectionFixture<BuildArtifacts>
{
    public const string Name = "SDK builds";
}

/// <summary>
/// A temporary folder for what those builds write (<c>--artifacts-path</c>): obj, bin and publish folders away from the
/// repository's own, which the running test host was built into and must not be rebuilt under it. The pack of the tool
/// builds the library there in Release, and the file-based app reuses that build. Deleted at the end.
/// </summary>
public sealed class BuildArtifacts : IDisposable
{
    private readonly TestData.TempDir root = new();

    public string Path => System.IO.Path.Combine(root.Path, "artifacts");

    /// <summary>A fresh folder inside the temporary one.</summary>
    public string NewFolder(string name) => Directory.CreateDirectory(System.IO.Path.Combine(root.Path, name)).FullName;

    public void Dispose() => root.Dispose();
}

/// <summary>
/// A fact that packs or builds the repository with the .NET SDK (minutes of CPU): it runs where the environment variable
/// <see cref="Variable"/> is 1, as <c>.ci/run</c> sets it for its second stage, and is reported as skipped, with how
/// to run it, elsewhere, so the README's test command stays within its time budget.
/// </summary>
public sealed class PackagingFactAttribute : FactAttribute
{
    /// <summary>The variable that turns these tests on.</summary>
    public const string Variable = "ONNX_ADADELTA_PACKAGING_TESTS";

    /// <summary>Skips unless <see cref="Variable"/> is 1.</summary>
    public PackagingFactAttribute()
    {
        if (Environment.GetEnvironmentVariable(Variable) != "1")
            Skip = $"packs and installs the tool with the .NET SDK (about 3 minutes): run with {Variable}=1, as .ci/run does in its packaging stage.";
    }
}
