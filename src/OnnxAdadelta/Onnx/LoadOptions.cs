namespace OnnxAdadelta.Onnx;

/// <summary>How <see cref="ModelIO.Load"/> reads a model's external data.</summary>
public sealed record LoadOptions
{
    /// <summary>The options <see cref="ModelIO.Load"/> uses when given none: external data stays inside the model's folder.</summary>
    public static LoadOptions Default { get; } = new();

    /// <summary>
    /// Let external data be read through symbolic links that lead out of the model's folder (default false). Hugging Face's
    /// hub cache keeps each file as a link into a sibling <c>blobs/</c> folder, which needs this. Locations are still
    /// relative paths without <c>..</c> out of the folder, and only regular files are read.
    /// </summary>
    public bool AllowExternalDataLinks { get; init; }
}
