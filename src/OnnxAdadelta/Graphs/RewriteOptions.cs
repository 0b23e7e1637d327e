using OnnxAdadelta.Onnx.Proto;

namespace OnnxAdadelta.Graphs;

/// <summary>How the Adadelta rewrite finds parameters and gradients in a training graph.</summary>
public sealed record RewriteOptions
{
    /// <summary>Explicit parameter → gradient value map; parameters not named here use ORT's <c>&lt;param&gt;_grad</c> output.</summary>
    public IReadOnlyDictionary<string, string> Gradients { get; init; } = new Dictionary<string, string>();

    /// <summary>A model whose initializers supply (or replace) parameter values, or null.</summary>
    public ModelProto? ParameterValues { get; init; }

    /// <summary>Keep the gradient outputs in the step model (after the state outputs).</summary>
    public bool KeepGradients { get; init; }

    /// <summary>The loss output; default the first graph output.</summary>
    public string? Loss { get; init; }
}
