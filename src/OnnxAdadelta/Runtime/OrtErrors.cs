using System.Text.RegularExpressions;
using Microsoft.ML.OnnxRuntime;
using OnnxAdadelta.Onnx.Proto;

namespace OnnxAdadelta.Runtime;

/// <summary>
/// Turns an error ONNX Runtime raises while running a model into one line that names the node, its op and the likely
/// cause, so that bad data (labels out of range, a shape computed from the data that asks for a huge tensor) is
/// reported like any other bad input.
/// </summary>
public static partial class OrtErrors
{
    /// <summary>Ops that read indices, whose out-of-range errors come from the data.</summary>
    private static readonly HashSet<string> IndexOps = new(StringComparer.Ordinal)
    {
        "Gather", "GatherElements", "GatherND", "ScatterElements", "ScatterND", "OneHot", "SoftmaxCrossEntropyLoss",
        "NegativeLogLikelihoodLoss", "TopK", "Compress",
    };

    /// <summary>Ops whose output size is computed from the values of an input.</summary>
    private static readonly HashSet<string> ShapeFromValueOps = new(StringComparer.Ordinal)
    {
        "ConstantOfShape", "Expand", "Tile", "Range", "Resize", "Reshape", "Pad", "OneHot", "Upsample",
    };

    [GeneratedRegex(@"^\[ErrorCode:\w+\]\s*")]
    private static partial Regex ErrorCode();

    [GeneratedRegex(@"Non-zero status code returned while running (?<op>\S+) node\. Name:'(?<name>[^']*)' Status Message: (?<status>.*)", RegexOptions.Singleline)]
    private static partial Regex NodeFailure();

    // ORT prefixes a status with the source location: "/onnxruntime_src/onnxruntime/core/....cc:123 void f(...) message".
    [GeneratedRegex(@"^\S+\.(cc|h|cpp):\d+\s+(?:(?:[\w:<>,~*&]+\s+)*[\w:~<>]+\([^)]*\)(?:\s*const)?\s+)?")]
    private static partial Regex SourceLocation();

    /// <summary>
    /// The one-line error for <paramref name="error"/>, raised while running <paramref name="model"/> (which names the
    /// node's data inputs, where the node is found in it) as <paramref name="what"/> ("the training step", "the
    /// evaluation"). Without a node in the message, the first line of ONNX Runtime's own message is kept.
    /// </summary>
    public static OnnxAdadeltaException Describe(OnnxRuntimeException error, ModelProto? model, string what)
    {
        ArgumentNullException.ThrowIfNull(error);
        ArgumentException.ThrowIfNullOrEmpty(what);
        return new OnnxAdadeltaException(Message(error.Message, model, what), error);
    }

    /// <summary>The one-line message for ONNX Runtime's error text <paramref name="ortMessage"/>; see <see cref="Describe"/>.</summary>
    public static string Message(string ortMessage, ModelProto? model, string what)
    {
        ArgumentNullException.ThrowIfNull(ortMessage);
        var text = ErrorCode().Replace(ortMessage, "");
        var match = NodeFailure().Match(text);
        if (!match.Success)
        {
            var cause0 = LikelyCause(null, text);
            return $"ONNX Runtime failed running {what}: {Status(text)}{(cause0 is null ? "" : $"; likely cause: {cause0}")}.";
        }
        var op = match.Groups["op"].Value;
        var name = match.Groups["name"].Value;
        var status = Status(match.Groups["status"].Value);
        var node = model is null ? null : FindNode(model.Graph, name);
        var where = node is null && model is not null ? $" (a node ONNX Runtime made while optimizing the graph)" : "";
        var reads = node is null || model is null ? "" : DataInputsRead(model.Graph, node);
        var cause = LikelyCause(op, status);
        return $"ONNX Runtime failed running {what} at node '{name}' ({op}){where}{reads}: {status}"
            + (cause is null ? "." : $"; likely cause: {cause}.");
    }

    private static string Status(string status)
    {
        var line = status.Split('\n', 2)[0].Trim();
        line = SourceLocation().Replace(line, "");
        return line.TrimEnd('.');
    }

    private static string? LikelyCause(string? op, string status)
    {
        var s = status.ToLowerInvariant();
        bool memory = s.Contains("allocat", StringComparison.Ordinal) || s.Contains("bad_alloc", StringComparison.Ordinal)
            || s.Contains("out of memory", StringComparison.Ordinal) || s.Contains("overflow", StringComparison.Ordinal);
        if (memory)
            return op is not null && ShapeFromValueOps.Contains(op)
                ? $"a tensor too large for memory, whose size {op} takes from the values of its input (a shape computed from the data, or a malicious model)"
                : "a tensor too large for memory: the batch is too large (lower --batch-size) or a size in the model is huge";
        bool index = s.Contains("out of", StringComparison.Ordinal) || s.Contains("bounds", StringComparison.Ordinal)
            || s.Contains("invalid index", StringComparison.Ordinal) || s.Contains("must be within", StringComparison.Ordinal);
        if (index && (op is null || IndexOps.Contains(op)))
            return "an index outside its axis: class labels outside [0, classes), or ids outside an embedding table, in the data";
        return null;
    }

    /// <summary>The node named <paramref name="name"/> in <paramref name="graph"/> or its subgraphs, or null.</summary>
    private static NodeProto? FindNode(GraphProto graph, string name)
    {
        if (name.Length == 0) return null;
        foreach (var n in graph.Node)
        {
            if (n.Name == name) return n;
            foreach (var a in n.Attribute)
                foreach (var g in a.G is null ? a.Graphs : a.Graphs.Prepend(a.G))
                    if (FindNode(g, name) is { } found) return found;
        }
        return null;
    }

    /// <summary>", reading data input 'labels'" when the node reads graph inputs that have no initializer; else "".</summary>
    private static string DataInputsRead(GraphProto graph, NodeProto node)
    {
        var initialized = graph.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        var data = node.Input.Where(i => i.Length > 0 && !initialized.Contains(i) && graph.Input.Any(g => g.Name == i)).Distinct().ToList();
        return data.Count == 0 ? "" : $", reading data input{(data.Count > 1 ? "s" : "")} {string.Join(", ", data.Select(d => $"'{d}'"))}";
    }
}
