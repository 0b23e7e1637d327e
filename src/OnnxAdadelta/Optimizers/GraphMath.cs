using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;

namespace OnnxAdadelta.Optimizers;

/// <summary>
/// <see cref="ITensorMath{T}"/> that appends standard ai.onnx nodes (valid from opset 13 on) to a graph. Values are
/// tensor names; every node and constant is named under the current scope.
/// </summary>
public sealed class GraphMath : ITensorMath<string>
{
    private readonly GraphBuilder _b;
    private readonly Stack<string> _scopes = new();
    private readonly Dictionary<(string, int), string> _constants = new();
    private readonly Dictionary<string, NodeProto> _producers = new(StringComparer.Ordinal);
    private readonly List<NodeProto> _emitted = [];
    private readonly Dictionary<string, string> _renamed = new(StringComparer.Ordinal);
    private readonly string _root;

    /// <summary>Emits into <paramref name="builder"/>'s graph, naming everything under <paramref name="rootScope"/>.</summary>
    public GraphMath(GraphBuilder builder, string rootScope)
    {
        _b = builder;
        _root = rootScope;
        _scopes.Push(rootScope);
    }

    private string Name(string hint) => $"{_scopes.Peek()}/{hint}";

    private string Op(string op, string hint, params string[] inputs) => Track(_b.Add(op, inputs, Name(hint)));

    // Remembers the node just appended, so that Rename can give its output a final name without a copy.
    private string Track(string output)
    {
        var node = _b.Graph.Node[^1];
        _producers[output] = node;
        _emitted.Add(node);
        return output;
    }

    /// <inheritdoc/>
    public TResult Scope<TResult>(string scope, Func<TResult> body)
    {
        _scopes.Push($"{_scopes.Peek()}/{scope}");
        try { return body(); }
        finally { _scopes.Pop(); }
    }

    /// <summary>A float32 scalar initializer named under the current scope (one per scope, hint and value).</summary>
    public string Constant(string hint, float value)
    {
        var key = (Name(hint), BitConverter.SingleToInt32Bits(value));
        if (!_constants.TryGetValue(key, out var name)) _constants[key] = name = _b.Scalar(key.Item1, value);
        return name;
    }

    /// <inheritdoc/>
    public string Add(string a, string b) => Op("Add", "add", a, b);

    /// <inheritdoc/>
    public string Sub(string a, string b) => Op("Sub", "sub", a, b);

    /// <inheritdoc/>
    public string Mul(string a, string b) => Op("Mul", "mul", a, b);

    /// <inheritdoc/>
    public string Div(string a, string b) => Op("Div", "div", a, b);

    /// <inheritdoc/>
    public string Neg(string x) => Op("Neg", "neg", x);

    /// <inheritdoc/>
    public string Sqrt(string x) => Op("Sqrt", "sqrt", x);

    /// <inheritdoc/>
    public string Max(string a, string b) => Op("Max", "max", a, b);

    /// <inheritdoc/>
    public string Min(string a, string b) => Op("Min", "min", a, b);

    /// <inheritdoc/>
    public string Floor(string x) => Op("Floor", "floor", x);

    /// <inheritdoc/>
    public string Ceil(string x) => Op("Ceil", "ceil", x);

    /// <inheritdoc/>
    public string Pow(string a, string b) => Op("Pow", "pow", a, b);

    /// <inheritdoc/>
    public string Cos(string x) => Op("Cos", "cos", x);

    /// <inheritdoc/>
    public string Log(string x) => Op("Log", "log", x);

    /// <inheritdoc/>
    public string Clip(string x, string lo, string hi) => Op("Clip", "clip", x, lo, hi);

    /// <inheritdoc/>
    public string SumOfSquares(string x) =>
        Track(_b.Add("ReduceSumSquare", [x], Name("sum_of_squares"), GraphBuilder.Attr("keepdims", 0L)));

    /// <inheritdoc/>
    public string Less(string a, string b) => Op("Less", "less", a, b);

    /// <inheritdoc/>
    public string LessOrEqual(string a, string b) => Op("LessOrEqual", "less_or_equal", a, b);

    /// <inheritdoc/>
    public string Equal(string a, string b) => Op("Equal", "equal", a, b);

    /// <inheritdoc/>
    public string Where(string condition, string a, string b) => Op("Where", "where", condition, a, b);

    /// <summary>Casts a tensor to float32 (for example the int64 iteration counter).</summary>
    public string CastToFloat(string x) =>
        Track(_b.Add("Cast", [x], Name("as_float"), GraphBuilder.Attr("to", (long)TensorProto.Types.DataType.Float)));

    /// <summary>Casts a tensor to <paramref name="to"/> (a float dtype: float32, float16 or bfloat16), rounding to nearest even.</summary>
    public string CastTo(string x, TensorProto.Types.DataType to, string hint) =>
        Track(_b.Add("Cast", [x], Name(hint), GraphBuilder.Attr("to", (long)to)));

    /// <summary>
    /// Gives value <paramref name="x"/> the exact name <paramref name="output"/>. A value computed by a node this
    /// instance emitted is renamed in place (its producer and readers), so a graph output costs no copy; anything else
    /// (a graph input, an initializer, a value already renamed) gets an <c>Identity</c> node.
    /// </summary>
    public void Rename(string x, string output)
    {
        _b.Reserve(output);
        if (_producers.Remove(x, out var producer))
        {
            for (int i = 0; i < producer.Output.Count; i++) if (producer.Output[i] == x) producer.Output[i] = output;
            foreach (var node in _emitted)
                for (int i = 0; i < node.Input.Count; i++) if (node.Input[i] == x) node.Input[i] = output;
            _renamed[x] = output;
            return;
        }
        var node2 = new NodeProto { OpType = "Identity", Name = _b.UniqueName($"{_root}/{output}/Identity") };
        node2.Input.Add(_renamed.GetValueOrDefault(x, x));
        node2.Output.Add(output);
        _b.Graph.Node.Add(node2);
    }
}
