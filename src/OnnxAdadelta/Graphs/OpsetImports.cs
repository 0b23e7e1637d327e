using OnnxAdadelta.Onnx.Proto;

namespace OnnxAdadelta.Graphs;

/// <summary>The operator sets a model imports: one entry per domain, "" and "ai.onnx" being the same domain.</summary>
public static class OpsetImports
{
    /// <summary>The domain name as the passes compare it: "ai.onnx" is written "".</summary>
    public static string Normal(string domain) => domain == "ai.onnx" ? "" : domain;

    /// <summary>
    /// Merges repeated imports of one domain into one entry when they name the same version, and refuses them when the
    /// versions differ, since the model then has no single meaning for its ops (ONNX allows one import per domain).
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">A domain is imported at two versions; the message names both.</exception>
    public static void Normalize(ModelProto model, string source = "the model")
    {
        ArgumentNullException.ThrowIfNull(model);
        var seen = new Dictionary<string, OperatorSetIdProto>(StringComparer.Ordinal);
        foreach (var import in model.OpsetImport.ToList())
        {
            var domain = Normal(import.Domain);
            if (!seen.TryGetValue(domain, out var first))
            {
                seen[domain] = import;
                continue;
            }
            if (first.Version != import.Version)
                throw new OnnxAdadeltaException(
                    $"{source} imports the {(domain.Length == 0 ? "ai.onnx" : domain)} operator set twice, at versions {first.Version} and {import.Version}; " +
                    "expected one import per domain (keep the version the model was exported for).");
            model.OpsetImport.Remove(import);
        }
    }
}
