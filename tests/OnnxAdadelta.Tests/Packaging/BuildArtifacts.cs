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
