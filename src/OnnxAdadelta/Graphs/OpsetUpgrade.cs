using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Onnx;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Graphs;

/// <summary>
/// Upgrades a model that imports ai.onnx opset 7 to 12 to opset 13, rewriting every node whose op changed meaning or
/// signature on the way: attributes that became inputs (Squeeze, Unsqueeze, ReduceSum and Split axes; Clip min/max;
/// Pad pads/value; Slice starts/ends/axes; Dropout ratio; TopK k), Upsample and the opset-10 Resize (to Resize with
/// asymmetric coordinates), Scatter (to ScatterElements), the 2-D coercion of Softmax, LogSoftmax and Hardmax, and the
/// <c>spatial</c> attribute of BatchNormalization. If, Loop and Scan bodies are upgraded too.
/// </summary>
/// <remarks>
/// Ops whose later versions only added types, allowed negative axes or added attributes whose defaults keep the old
/// meaning are left as they are. Attribute values that become inputs are emitted as Constant nodes next to the node,
/// so that nothing new looks like a trainable initializer.
/// </remarks>
public static class OpsetUpgrade
{
    /// <summary>The ai.onnx opset the upgraded model imports.</summary>
    public const int Target = 13;

    /// <summary>The oldest ai.onnx opset that can be upgraded.</summary>
    public const int Oldest = 7;

    /// <summary>
    /// Returns a copy of <paramref name="model"/> that imports ai.onnx <see cref="Target"/>; a model that already imports
    /// opset 13 or newer (or no ai.onnx opset) is returned as an unchanged copy.
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">
    /// The opset is older than <see cref="Oldest"/>, the model has local functions, or some ops cannot be converted
    /// (every one listed with its count and the reason).
    /// </exception>
    public static ModelProto Apply(ModelProto model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var result = model.DeepCopy();
        UpgradeInPlace(result);
        return result;
    }

    /// <summary>
    /// <see cref="Apply"/> on <paramref name="result"/> itself, for a pipeline that owns its copy already (the autodiff
    /// driver upgrades the copy function inlining made, instead of copying it again).
    /// </summary>
    internal static void UpgradeInPlace(ModelProto result)
    {
        var ai = result.OpsetImport.FirstOrDefault(o => o.Domain is "" or "ai.onnx");
        if (ai is null || ai.Version >= Target) return;
        int from = (int)ai.Version;
        if (from < Oldest)
            throw new OnnxAdadeltaException($"The model imports ai.onnx opset {from}; only opsets {Oldest} to {Target - 1} can be upgraded to {Target} (convert it with onnx.version_converter first).");
        if (result.Functions.Count > 0)
            throw new OnnxAdadeltaException($"The model imports ai.onnx opset {from} and has model-local functions ({string.Join(", ", result.Functions.Select(f => f.Name))}); upgrading function bodies is not supported.");
        var graph = result.Graph ?? throw new OnnxAdadeltaException("The model has no graph.");
        var upgrader = new Upgrader(from, new GraphBuilder(graph));
        upgrader.Graph(graph, null);
        if (upgrader.Refused.Count > 0)
            throw new OnnxAdadeltaException(
                $"Cannot upgrade the model from ai.onnx opset {from} to {Target}: {string.Join("; ", upgrader.Refused.Select(r => $"{r.Key} ×{r.Value}"))}.");
        ai.Version = Target;
        if (result.IrVersion < 7) result.IrVersion = 7;
    }

    /// <summary>Ops whose opset-7-to-12 versions mean the same as their opset-13 version for every valid model.</summary>
    private static readonly HashSet<string> Unchanged = new(StringComparer.Ordinal)
    {
        "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh", "AveragePool",
        "BitShift", "Cast", "Ceil", "Celu", "Compress", "Concat", "ConcatFromSequence", "Constant", "ConstantOfShape",
        "Conv", "ConvInteger", "ConvTranspose", "Cos", "Cosh", "CumSum", "DepthToSpace", "DequantizeLinear", "Det", "Div",
        "DynamicQuantizeLinear", "Einsum", "Elu", "Equal", "Erf", "Exp", "Expand", "EyeLike", "Flatten", "Floor", "GRU",
        "Gather", "GatherElements", "GatherND", "Gemm", "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "Greater",
        "GreaterOrEqual", "HardSigmoid", "Identity", "If", "InstanceNormalization", "IsInf", "IsNaN", "LRN", "LSTM",
        "LeakyRelu", "Less", "LessOrEqual", "Log", "Loop", "LpNormalization", "LpPool", "MatMul", "MatMulInteger", "Max",
        "MaxPool", "MaxRoiPool", "MaxUnpool", "Mean", "MeanVarianceNormalization", "Min", "Mod", "Mul", "Multinomial",
        "Neg", "NegativeLogLikelihoodLoss", "NonMaxSuppression", "NonZero", "Not", "OneHot", "Or", "PRelu", "Pow",
        "QLinearConv", "QLinearMatMul", "QuantizeLinear", "RNN", "RandomNormal", "RandomNormalLike", "RandomUniform",
        "RandomUniformLike", "Range", "Reciprocal", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
        "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSumSquare", "Relu", "Reshape", "ReverseSequence", "RoiAlign",
        "Round", "ScatterElements", "ScatterND", "Selu", "SequenceAt", "SequenceConstruct", "SequenceEmpty",
        "SequenceErase", "SequenceInsert", "SequenceLength", "Shape", "Shrink", "Sigmoid", "Sign", "Sin", "Sinh", "Size",
        "SoftmaxCrossEntropyLoss", "Softplus", "Softsign", "SpaceToDepth", "SplitToSequence", "Sqrt", "StringNormalizer",
        "Sub", "Sum", "Tan", "Tanh", "TfIdfVectorizer", "ThresholdedRelu", "Tile", "Transpose", "Unique", "Where", "Xor",
    };

    /// <summary>One value's element type where the graph declares it or a simple forward walk finds it.</summary>
    private sealed class Scope
    {
        private readonly GraphIndex _index;
        private readonly Scope? _parent;
        private readonly Dictionary<string, DataType?> _memo = new(StringComparer.Ordinal);

        public Scope(GraphProto graph, Scope? parent)
        {
            _index = new GraphIndex(graph);
            _parent = parent;
        }

        /// <summary>The declared rank of a value (graph input, output or value_info with a shape), or null.</summary>
        public int? Rank(string value)
        {
            var type = _index.TypeOf(value);
            if (type?.TensorType?.Shape is { } shape) return shape.Dim.Count;
            return _index.Producer(value) is null && !_index.Initializers.ContainsKey(value) ? _parent?.Rank(value) : null;
        }

        /// <summary>The values of a float constant (an initializer that is not a graph input, or a Constant node), or null.</summary>
        public float[]? ConstantFloats(string value)
        {
            TensorProto? t = null;
            if (_index.Initializers.TryGetValue(value, out var init)) t = _index.Inputs.ContainsKey(value) ? null : init;
            else if (_index.Producer(value) is { OpType: "Constant" } c && c.Attribute.FirstOrDefault(a => a.Name == "value")?.T is { } v) t = v;
            else if (_index.Producer(value) is null) return _parent?.ConstantFloats(value);
            return t is { DataType: (int)DataType.Float } ? t.ToFloatArray() : null;
        }

        /// <summary>Whether a node of this graph (or of its subgraphs) reads the value, or the graph outputs it.</summary>
        public bool IsUsed(string value) => _index.Consumers(value).Count > 0 || _index.Outputs.ContainsKey(value);

        public DataType? ElementType(string value)
        {
            if (value.Length == 0) return null;
            if (_memo.TryGetValue(value, out var known)) return known;
            _memo[value] = null; // a cycle guard; a valid graph has none
            var result = Compute(value);
            _memo[value] = result;
            return result;
        }

        private DataType? Compute(string value)
        {
            var declared = _index.TypeOf(value)?.TensorType;
            if (declared is not null && declared.ElemType != 0) return (DataType)declared.ElemType;
            var node = _index.Producer(value);
            if (node is null) return _parent?.ElementType(value);
            int slot = node.Output.IndexOf(value);
            DataType? Attr(string name, DataType fallback)
            {
                var a = node.Attribute.FirstOrDefault(x => x.Name == name);
                return a is null ? fallback : a.T is not null && a.Type == AttributeProto.Types.AttributeType.Tensor ? (DataType)a.T.DataType : (DataType)a.I;
            }
            switch (node.OpType)
            {
                case "Cast": return Attr("to", DataType.Float);
                case "Constant":
                    var v = node.Attribute.FirstOrDefault();
                    return v?.Name switch
                    {
                        "value" => (DataType)v.T.DataType,
                        "value_float" or "value_floats" => DataType.Float,
                        "value_int" or "value_ints" => DataType.Int64,
                        _ => null,
                    };
                case "ConstantOfShape": return Attr("value", DataType.Float);
                case "RandomNormal" or "RandomUniform" or "EyeLike" or "RandomNormalLike" or "RandomUniformLike":
                    return node.Attribute.Any(a => a.Name == "dtype") ? Attr("dtype", DataType.Float) : node.OpType.EndsWith("Like", StringComparison.Ordinal) ? ElementType(node.Input[0]) : DataType.Float;
                case "Shape" or "Size" or "ArgMax" or "ArgMin" or "NonZero" or "NonMaxSuppression": return DataType.Int64;
                case "Equal" or "Less" or "Greater" or "LessOrEqual" or "GreaterOrEqual" or "Not" or "And" or "Or" or "Xor" or "IsNaN" or "IsInf":
                    return DataType.Bool;
                case "TopK" or "MaxPool" when slot == 1: return DataType.Int64;
                case "DequantizeLinear": return DataType.Float;
                case "Where": return ElementType(node.Input[1]);
                default:
                    var first = node.Input.FirstOrDefault(i => i.Length > 0);
                    return first is null ? null : ElementType(first);
            }
        }
    }

    /// <summary>A node that cannot be converted; the key names the op and the reason.</summary>
    private sealed class Refusal(string key) : Exception(key)
    {
        public string Key { get; } = key;
    }

    private sealed class Upgrader(int from, GraphBuilder names)
    {
        public SortedDictionary<string, int> Refused { get; } = new(StringComparer.Ordinal);

        public void Graph(GraphProto graph, Scope? parent)
        {
            var scope = new Scope(graph, parent);
            var nodes = graph.Node.ToList();
            graph.Node.Clear();
            foreach (var node in nodes)
            {
                var emitted = new List<NodeProto>();
                try
                {
                    if (node.Domain is "" or "ai.onnx") Convert(node, scope, emitted);
                    else emitted.Add(node);
                }
                catch (Refusal r)
                {
                    Refused[r.Key] = Refused.GetValueOrDefault(r.Key) + 1;
                    emitted.Clear();
                    emitted.Add(node);
                }
                foreach (var n in emitted)
                {
                    foreach (var a in n.Attribute)
                    {
                        if (a.G is not null) Graph(a.G, scope);
                        foreach (var g in a.Graphs) Graph(g, scope);
                    }
                    graph.Node.Add(n);
                }
            }
        }

        private void Convert(NodeProto node, Scope scope, List<NodeProto> emitted)
        {
            Take(node, "consumed_inputs");
            var op = node.OpType;
            switch (op)
            {
                case "Squeeze" or "Unsqueeze" or "ReduceSum":
                    AxesToInput(node, "axes", emitted, required: op == "Unsqueeze");
                    break;
                case "Split":
                    AxesToInput(node, "split", emitted, required: false);
                    break;
                case "Clip" when from < 11:
                    ClipToInputs(node, scope, emitted);
                    break;
                case "Pad" when from < 11:
                    PadToInputs(node, scope, emitted);
                    break;
                case "Slice" when from < 10:
                    SliceToInputs(node, emitted);
                    break;
                case "Dropout" when from < 12:
                    DropoutToInputs(node, scope, emitted);
                    return;
                case "TopK" when from < 10:
                    var k = Take(node, "k") ?? throw new Refusal("TopK (no 'k' attribute)");
                    node.Input.Add(Constant(Tensors.Create("", [k.I], 1), node, "k", emitted));
                    break;
                case "Upsample":
                    UpsampleToResize(node, emitted);
                    break;
                case "Resize" when from < 11:
                    ResizeAsymmetric(node, mode: Take(node, "mode")?.S.ToStringUtf8() ?? "nearest", Resize10Rounding(node, scope));
                    node.Input.Insert(1, "");
                    break;
                case "Scatter":
                    node.OpType = "ScatterElements";
                    break;
                case "Softmax" or "LogSoftmax" or "Hardmax":
                    CoercedSoftmax(node, scope, emitted);
                    return;
                case "BatchNormalization" when from < 9:
                    var spatial = Take(node, "spatial");
                    Take(node, "is_test");
                    if (spatial is not null && spatial.I == 0)
                    {
                        PerActivationBatchNorm(node, scope, emitted);
                        return;
                    }
                    DropTrainingOutputs(node, scope);
                    break;
                case "BatchNormalization":
                    DropTrainingOutputs(node, scope);
                    break;
                case "Scan" when from < 9:
                    throw new Refusal("Scan (the opset-8 signature with a batch axis and sequence_lens)");
                case "Clip" or "Pad" or "Slice" or "Dropout" or "TopK" or "Resize" or "Scan":
                    break;
                default:
                    if (!Unchanged.Contains(op)) throw new Refusal(op);
                    break;
            }
            emitted.Add(node);
        }

        private static AttributeProto? Take(NodeProto node, string name)
        {
            var a = node.Attribute.FirstOrDefault(x => x.Name == name);
            if (a is not null) node.Attribute.Remove(a);
            return a;
        }

        private string Constant(TensorProto value, NodeProto node, string what, List<NodeProto> emitted)
        {
            var output = names.UniqueName($"{(node.Name.Length > 0 ? node.Name : node.Output[0])}/{what}");
            var constant = new NodeProto { OpType = "Constant", Name = names.UniqueName($"{output}/Constant"), Output = { output } };
            value.Name = "";
            constant.Attribute.Add(new AttributeProto { Name = "value", Type = AttributeProto.Types.AttributeType.Tensor, T = value });
            emitted.Add(constant);
            return output;
        }

        private NodeProto Node(string opType, IEnumerable<string> inputs, string output, List<NodeProto> emitted, params AttributeProto[] attributes)
        {
            var node = new NodeProto { OpType = opType, Name = names.UniqueName($"{output}/{opType}"), Output = { output } };
            node.Input.AddRange(inputs);
            node.Attribute.AddRange(attributes);
            emitted.Add(node);
            return node;
        }

        /// <summary>A float scalar (or 1-D, with <paramref name="dims"/>) in the element type of <paramref name="like"/>.</summary>
        private static TensorProto Typed(Scope scope, string like, NodeProto node, double[] values, params long[] dims)
        {
            var type = scope.ElementType(like) ?? DataType.Float;
            return type switch
            {
                DataType.Float => Tensors.Create("", values.Select(v => (float)v).ToArray(), dims),
                DataType.Double => Tensors.Create("", values, dims),
                DataType.Float16 => Tensors.Create("", values.Select(v => (Half)v).ToArray(), dims),
                _ => throw new Refusal($"{node.OpType} (on {DataTypes.Name((int)type)} values)"),
            };
        }

        private void AxesToInput(NodeProto node, string attribute, List<NodeProto> emitted, bool required)
        {
            var axes = Take(node, attribute);
            if (axes is null)
            {
                if (required) throw new Refusal($"{node.OpType} (no '{attribute}' attribute)");
                return;
            }
            node.Input.Add(Constant(Tensors.Create("", axes.Ints.ToArray(), axes.Ints.Count), node, attribute, emitted));
        }

        private void ClipToInputs(NodeProto node, Scope scope, List<NodeProto> emitted)
        {
            var min = Take(node, "min");
            var max = Take(node, "max");
            if (min is not null) node.Input.Add(Constant(Typed(scope, node.Input[0], node, [min.F]), node, "min", emitted));
            if (max is not null)
            {
                if (min is null) node.Input.Add("");
                node.Input.Add(Constant(Typed(scope, node.Input[0], node, [max.F]), node, "max", emitted));
            }
        }

        private void PadToInputs(NodeProto node, Scope scope, List<NodeProto> emitted)
        {
            var pads = Take(node, "pads") ?? throw new Refusal("Pad (no 'pads' attribute)");
            var value = Take(node, "value");
            node.Input.Add(Constant(Tensors.Create("", pads.Ints.ToArray(), pads.Ints.Count), node, "pads", emitted));
            if (value is not null && value.F != 0)
                node.Input.Add(Constant(Typed(scope, node.Input[0], node, [value.F]), node, "value", emitted));
        }

        private void SliceToInputs(NodeProto node, List<NodeProto> emitted)
        {
            var starts = Take(node, "starts") ?? throw new Refusal("Slice (no 'starts' attribute)");
            var ends = Take(node, "ends") ?? throw new Refusal("Slice (no 'ends' attribute)");
            var axes = Take(node, "axes");
            node.Input.Add(Constant(Tensors.Create("", starts.Ints.ToArray(), starts.Ints.Count), node, "starts", emitted));
            node.Input.Add(Constant(Tensors.Create("", ends.Ints.ToArray(), ends.Ints.Count), node, "ends", emitted));
            if (axes is not null) node.Input.Add(Constant(Tensors.Create("", axes.Ints.ToArray(), axes.Ints.Count), node, "axes", emitted));
        }

        /// <summary>
        /// Dropout before 12: ratio is an attribute (default 0.5); the converted node takes it as an input. The
        /// inference-mode mask of those versions is unspecified (ONNX Runtime returns zeros, opset 12 ones), so a mask
        /// that anything reads is refused and an unread one is dropped.
        /// </summary>
        private void DropoutToInputs(NodeProto node, Scope scope, List<NodeProto> emitted)
        {
            var ratio = Take(node, "ratio");
            var isTest = Take(node, "is_test");
            if (isTest is not null && isTest.I == 0) throw new Refusal("Dropout (is_test=0: training-mode dropout of an inference model)");
            if (node.Output.Count > 1 && node.Output[1].Length > 0)
            {
                if (scope.IsUsed(node.Output[1])) throw new Refusal("Dropout (its mask output is used; its inference-mode value differs from opset 12 on)");
                node.Output.RemoveAt(1);
            }
            node.Input.Add(Constant(Tensors.Create("", [ratio?.F ?? 0.5f]), node, "ratio", emitted));
            emitted.Add(node);
        }

        /// <summary>Upsample (scales an attribute before 9, an input from 9) becomes Resize with asymmetric coordinates.</summary>
        private void UpsampleToResize(NodeProto node, List<NodeProto> emitted)
        {
            var mode = Take(node, "mode")?.S.ToStringUtf8() ?? "nearest";
            if (mode is not ("nearest" or "linear")) throw new Refusal($"Upsample (mode '{mode}')");
            var scales = Take(node, "scales");
            string scalesInput;
            if (scales is not null) scalesInput = Constant(Tensors.Create("", scales.Floats.ToArray(), scales.Floats.Count), node, "scales", emitted);
            else if (node.Input.Count > 1 && node.Input[1].Length > 0) scalesInput = node.Input[1];
            else throw new Refusal("Upsample (no scales)");
            var x = node.Input[0];
            node.Input.Clear();
            node.Input.Add(x);
            node.Input.Add("");
            node.Input.Add(scalesInput);
            node.OpType = "Resize";
            ResizeAsymmetric(node, mode);
        }

        private static void ResizeAsymmetric(NodeProto node, string mode, string rounding = "floor")
        {
            if (mode is not ("nearest" or "linear")) throw new Refusal($"{node.OpType} (mode '{mode}')");
            node.Attribute.Add(GraphBuilder.Attr("mode", mode));
            node.Attribute.Add(GraphBuilder.Attr("coordinate_transformation_mode", "asymmetric"));
            if (mode == "nearest") node.Attribute.Add(GraphBuilder.Attr("nearest_mode", rounding));
        }

        /// <summary>
        /// The nearest-neighbour rounding of an opset-10 Resize: ONNX Runtime rounds the source coordinate down on axes
        /// it enlarges and up on axes it shrinks. With constant scales that all shrink (or keep) an axis this is
        /// <c>ceil</c>; scales that shrink some axes and enlarge others have no opset-13 equivalent; otherwise (enlarging,
        /// or scales computed at run time) <c>floor</c>, as ONNX's own version converter does.
        /// </summary>
        private static string Resize10Rounding(NodeProto node, Scope scope)
        {
            if (node.Input.Count < 2 || scope.ConstantFloats(node.Input[1]) is not { } scales) return "floor";
            bool shrinks = scales.Any(s => s < 1), grows = scales.Any(s => s > 1);
            if (shrinks && grows) throw new Refusal("Resize (opset 10, nearest, shrinking some axes and enlarging others)");
            return shrinks ? "ceil" : "floor";
        }

        /// <summary>
        /// Before 13, Softmax, LogSoftmax and Hardmax flatten the input to 2-D at <c>axis</c> (default 1) and normalize
        /// each row. When that is the last axis the opset-13 op with axis −1 is the same; otherwise the node becomes
        /// Flatten, the op over the last axis, and a Reshape back to the input's shape.
        /// </summary>
        private void CoercedSoftmax(NodeProto node, Scope scope, List<NodeProto> emitted)
        {
            long axis = Take(node, "axis")?.I ?? 1;
            int? rank = scope.Rank(node.Input[0]) ?? scope.Rank(node.Output[0]);
            if (axis == -1 || (rank is { } r && axis == r - 1))
            {
                node.Attribute.Add(GraphBuilder.Attr("axis", -1L));
                emitted.Add(node);
                return;
            }
            var x = node.Input[0];
            var y = node.Output[0];
            var flat = names.UniqueName($"{y}/flat");
            Node("Flatten", [x], flat, emitted, GraphBuilder.Attr("axis", axis));
            var normalized = names.UniqueName($"{y}/2d");
            node.Input[0] = flat;
            node.Output[0] = normalized;
            node.Attribute.Add(GraphBuilder.Attr("axis", -1L));
            emitted.Add(node);
            var shape = names.UniqueName($"{y}/shape");
            Node("Shape", [x], shape, emitted);
            Node("Reshape", [normalized, shape], y, emitted);
        }

        /// <summary>
        /// The training outputs of an old BatchNormalization (mean, var, saved_mean, saved_var; opset 14 keeps only
        /// running_mean and running_var, and only in training mode): dropped where nothing reads them, refused otherwise.
        /// </summary>
        private static void DropTrainingOutputs(NodeProto node, Scope scope)
        {
            if (node.Output.Skip(1).Any(o => o.Length > 0 && scope.IsUsed(o)))
                throw new Refusal("BatchNormalization (its training outputs mean, var, saved_mean or saved_var are used)");
            while (node.Output.Count > 1) node.Output.RemoveAt(node.Output.Count - 1);
        }

        /// <summary>
        /// BatchNormalization with spatial=0 (opset 7-8): statistics per activation, scale, B, mean and var of shape
        /// (C, D1, …, Dn). Rewritten as (X − mean) / √(var + ε) · scale + B, inference only.
        /// </summary>
        private void PerActivationBatchNorm(NodeProto node, Scope scope, List<NodeProto> emitted)
        {
            if (node.Output.Skip(1).Any(o => o.Length > 0))
                throw new Refusal("BatchNormalization (spatial=0 with the training outputs mean, var, saved_mean, saved_var)");
            if (node.Input.Count != 5) throw new Refusal("BatchNormalization (spatial=0 without five inputs)");
            var eps = Take(node, "epsilon")?.F ?? 1e-5f;
            var y = node.Output[0];
            string Step(string op, string a, string b, string what) => Node(op, [a, b], names.UniqueName($"{y}/{what}"), emitted).Output[0];
            var epsilon = Constant(Typed(scope, node.Input[0], node, [eps]), node, "epsilon", emitted);
            var centered = Step("Sub", node.Input[0], node.Input[3], "centered");
            var std = Node("Sqrt", [Step("Add", node.Input[4], epsilon, "var_eps")], names.UniqueName($"{y}/std"), emitted).Output[0];
            var scaled = Step("Mul", Step("Div", centered, std, "normalized"), node.Input[1], "scaled");
            Node("Add", [scaled, node.Input[2]], y, emitted);
        }
    }
}
