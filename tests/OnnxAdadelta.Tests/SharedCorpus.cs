namespace OnnxAdadelta.Tests;

/// <summary>
/// A fact that needs <c>../shared</c> beside the checkout (present in CI): where it is absent the test is reported as
/// skipped, with the reason, rather than passing without checking anything.
/// </summary>
public sealed class SharedFactAttribute : FactAttribute
{
    /// <summary>Skips when ../shared is absent.</summary>
    public SharedFactAttribute()
    {
        if (RepoPaths.Shared is null) Skip = SharedCorpus.AbsentReason;
    }
}

/// <summary>A theory that needs <c>../shared</c>; see <see cref="SharedFactAttribute"/>.</summary>
public sealed class SharedTheoryAttribute : TheoryAttribute
{
    /// <summary>Skips when ../shared is absent.</summary>
    public SharedTheoryAttribute()
    {
        if (RepoPaths.Shared is null) Skip = SharedCorpus.AbsentReason;
    }
}

/// <summary>Paths into the shared corpus.</summary>
internal static class SharedCorpus
{
    public static string AbsentReason => $"../shared (the corpus of real models, ORT artifacts and golden vectors beside {RepoPaths.Root}) is absent.";

    /// <summary>A file of ../shared/corpus/real-models.</summary>
    public static string RealModel(string file) => Path.Combine(RepoPaths.Shared!, "corpus", "real-models", file);
}
