using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;
using OnnxAdadelta.Runtime;

namespace OnnxAdadelta.Gradients;

/// <summary>What form of value a loss reads.</summary>
public enum LossInputForm
{
    /// <summary>Unnormalized scores: softmax (cross-entropy) or sigmoid (binary cross-entropy) is applied in the loss.</summary>
    Logits,

    /// <summary>Probabilities: the loss takes their logarithm.</summary>
    Probabilities,

    /// <summary>Log-probabilities, as a LogSoftmax makes them.</summary>
    LogProbabilities,

    /// <summary>Plain values: compared with a float target (mean squared error), or the loss itself.</summary>
    Values,
}

/// <summary>
/// What the appended loss reads, so that another implementation can compute the same loss from the model's own
/// forward pass (as <c>gradcheck</c> does).
/// </summary>
/// <param name="Kind">The loss.</param>
/// <param name="Value">The value of the model the loss reads (for a Softmax or Sigmoid head, its input).</param>
/// <param name="Form">How that value is read.</param>
/// <param name="ClassAxis">The class axis of the value, for cross-entropy and nll.</param>
/// <param name="Target">The label or target input, or null for <see cref="LossKind.Output"/>.</param>
public sealed record LossReading(LossKind Kind, string Value, LossInputForm Form, int? ClassAxis, string? Target);

/// <summary>
/// Appends the loss that <see cref="GradientGraphBuilder"/> differentiates: cross-entropy, negative log-likelihood,
/// binary cross-entropy or mean squared error on a float value of the model, or that value itself. Each loss node is
/// named under <see cref="GradientGraphBuilder.LossName"/>; the loss value is <c>loss</c>.
/// </summary>
internal static class TrainingLoss
{
    /// <summary>Appends the loss; returns its value. Decisions a user should know of go to <paramref name="notes"/>.</summary>
    /// <remarks>The label input of cross-entropy and nll, with its class count where static, goes to <paramref name="labels"/>.</remarks>
    public static string Append(ModelProto model, GraphBuilder b, BuildTrainingOptions o, List<string> notes, out LossReading reading, List<LabelCheck>? labels = null)
    {
        var graph = model.Graph;
        var index = new GraphIndex(graph);
        var output = o.Output;
        if (index.Producer(output) is null && !index.Inputs.ContainsKey(output) && !index.Initializers.ContainsKey(output))
            throw new OnnxAdadeltaException($"--output {output}: the model has no value '{output}'; its outputs are {string.Join(", ", graph.Output.Select(v => v.Name))}.");
        var type = TypeOf(model, index, output);
        if (!type.IsFloat)
        {
            var hint = index.Producer(output) is { OpType: "Cast" } cast && TypeOf(model, index, cast.Input[0]).IsFloat
                ? $" Name the float value before its Cast: --output {cast.Input[0]}."
                : " Name a float value of the graph with --output.";
            throw new OnnxAdadeltaException($"--output {output}: the value is {type.ElementType.ToString().ToLowerInvariant()}; a loss needs a float value.{hint}");
        }
        if (o.Loss == LossKind.Output)
        {
            reading = new LossReading(LossKind.Output, output, LossInputForm.Values, null, null);
            return ToFloat32(b, output, type, GradientGraphBuilder.LossName);
        }

        var target = o.TargetName!;
        var existing = graph.Input.FirstOrDefault(i => i.Name == target);
        if (existing is null && b.IsTaken(target))
            throw new OnnxAdadeltaException($"--target {target}: the name is already used by a value that is not a graph input.");
        switch (o.Loss)
        {
            case LossKind.CrossEntropy or LossKind.Nll:
                return Classification(graph, index, b, o, type, target, existing, notes, out reading, labels);
            case LossKind.Bce:
                return BinaryCrossEntropy(graph, index, b, o, type, target, existing, notes, out reading);
            default:
                reading = new LossReading(o.Loss, output, LossInputForm.Values, null, target);
                return MeanSquaredError(graph, b, o, type, target, existing);
        }
    }

    /// <summary>
    /// The type of a value: as declared where every dimension is a number; otherwise as ONNX Runtime infers it, which
    /// can know sizes the declaration leaves symbolic (after <c>--input-shape</c>, say), keeping declared symbols.
    /// </summary>
    private static TypeAndShape TypeOf(ModelProto model, GraphIndex index, string value)
    {
        TypeAndShape? declared = null;
        if (index.TypeOf(value) is { TensorType: { } t } type && t.ElemType != 0)
        {
            var dims = type.Dims();
            declared = new TypeAndShape((DataType)t.ElemType, dims?.Select(d => d as long?).ToArray(), dims?.Select(d => d as string).ToArray());
            if (declared.Dims is { } known && known.All(d => d is not null)) return declared;
        }
        var inferred = ShapeInference.Infer(model).GetValueOrDefault(value);
        if (inferred?.Dims is null || declared?.Dims is { } d0 && d0.Length != inferred.Dims.Length)
            return declared ?? inferred ?? throw new OnnxAdadeltaException($"--output {value}: shape inference found no type for '{value}'.");
        var symbols = inferred.Dims.Select((d, k) => d is null ? inferred.Symbol(k) ?? declared?.Symbol(k) : null).ToArray();
        return inferred with { Symbols = symbols };
    }

    /// <summary>
    /// Cross-entropy (<c>SoftmaxCrossEntropyLoss</c> on logits) and negative log-likelihood (on probabilities) against
    /// integer labels. The class axis comes from <see cref="BuildTrainingOptions.ClassAxis"/>, else from a Softmax that
    /// produced the value, else from the label input's shape, else it is axis 1 of a rank-2 value; otherwise the
    /// build is refused. Cross-entropy on the output of a Softmax reads the Softmax's input as the logits.
    /// </summary>
    private static string Classification(GraphProto graph, GraphIndex index, GraphBuilder b, BuildTrainingOptions o, TypeAndShape type,
        string target, ValueInfoProto? existing, List<string> notes, out LossReading reading, List<LabelCheck>? labelChecks)
    {
        var name = o.Loss == LossKind.CrossEntropy ? "cross-entropy" : "nll";
        var rank = type.Rank ?? throw new OnnxAdadeltaException($"--loss {name}: the rank of '{o.Output}' is unknown; fix the input shapes with --input-shape.");
        if (rank < 2)
            throw new OnnxAdadeltaException($"--loss {name}: '{o.Output}' has rank {rank}; class scores need a batch axis and a class axis (rank 2 or more).");
        if (existing is not null && existing.Type.ElementType() is not (DataType.Int64 or DataType.Int32))
            throw new OnnxAdadeltaException($"--target {target}: the input is {existing.Type.Describe()}; {name} needs integer class labels.");

        var producer = index.Producer(o.Output);
        int? softmaxAxis = producer is { OpType: "Softmax" or "LogSoftmax", Domain: "" or "ai.onnx" }
            ? Normalize((int)(producer.Attribute.FirstOrDefault(a => a.Name == "axis")?.I ?? -1), rank) : null;
        int axis;
        if (o.ClassAxis is { } given)
        {
            if (given < -rank || given >= rank)
                throw new OnnxAdadeltaException($"--class-axis {given}: out of range for '{o.Output}' of rank {rank} (expected -{rank}..{rank - 1}).");
            axis = Normalize(given, rank);
        }
        else if (softmaxAxis is { } s) axis = s;
        else if (LabelAxis(type, existing) is { } fromLabels) axis = fromLabels;
        else if (rank == 2) axis = 1;
        else
            throw new OnnxAdadeltaException($"--loss {name}: '{o.Output}' has rank {rank} ({Describe(type)}), so the class axis is ambiguous; give it with --class-axis (1 for PyTorch's [N, C, ...], -1 for Keras's [..., C]).");

        var scores = o.Output;
        bool logProbabilities = false;
        if (producer is not null && softmaxAxis == axis)
        {
            if (o.Loss == LossKind.CrossEntropy && producer.OpType == "Softmax")
            {
                scores = producer.Input[0];
                notes.Add($"cross-entropy: '{o.Output}' is the output of Softmax node '{producer.Name}'; its input '{scores}' is used as the logits, so softmax is applied once.");
            }
            else if (producer.OpType == "LogSoftmax")
            {
                logProbabilities = true;
                notes.Add($"{name}: '{o.Output}' is the output of LogSoftmax node '{producer.Name}'; it is used as log-probabilities.");
            }
        }
        reading = new LossReading(o.Loss, scores, logProbabilities ? LossInputForm.LogProbabilities
            : o.Loss == LossKind.CrossEntropy ? LossInputForm.Logits : LossInputForm.Probabilities, axis, target);
        if (existing is null)
        {
            var labelDims = type.Dims!.Select((d, k) => (d, k)).Where(p => p.k != axis)
                .Select(p => p.d is { } v ? v : -1L).ToList();
            var info = TypeProtos.ValueInfo(b.Reserve(target), DataType.Int64, labelDims);
            foreach (var (dim, k) in info.Type.TensorType.Shape.Dim.Select((d, k) => (d, k)))
            {
                var source = k < axis ? k : k + 1;
                if (type.Symbol(source) is { } symbol) dim.DimParam = symbol;
                else if (dim.DimValue < 0) dim.ClearValue();
            }
            graph.Input.Add(info);
        }

        if (type.Dims![axis] is { } classCount && classCount > 0) labelChecks?.Add(new LabelCheck(target, classCount));
        scores = ToFloat32(b, scores, type, $"{GradientGraphBuilder.LossName}/scores_float32");
        if (type.ElementType is DataType.Float16 or DataType.Bfloat16) type = type with { ElementType = DataType.Float };
        if (o.Loss == LossKind.CrossEntropy && !logProbabilities)
        {
            var logits = axis == 1 ? scores : b.Add("Transpose", [scores], $"{GradientGraphBuilder.LossName}/classes_to_axis1", GraphBuilder.Attr("perm", MoveToAxis1(axis, rank)));
            return b.Add("SoftmaxCrossEntropyLoss", [logits, target], GradientGraphBuilder.LossName, GraphBuilder.Attr("reduction", "mean"));
        }

        // -mean(log p[label]) as a one-hot product, so that only ops with gradient rules lie on the path.
        var logp = logProbabilities ? scores : b.Add("Log", [scores], $"{GradientGraphBuilder.LossName}/log");
        var loss = GradientGraphBuilder.LossName;
        var classes = b.Add("Gather", [b.Add("Shape", [scores], $"{loss}/shape"), b.Scalar($"{loss}/class_axis", (long)axis)], $"{loss}/classes", GraphBuilder.Attr("axis", 0L));
        var range = b.Add("Range", [b.Scalar($"{loss}/zero", 0L), classes, b.Scalar($"{loss}/one", 1L)], $"{loss}/class_ids");
        var column = b.Add("Reshape", [range, b.Initializer($"{loss}/column", Tensors.Create("", Enumerable.Range(0, rank - axis).Select(k => k == 0 ? -1L : 1L).ToArray(), rank - axis))], $"{loss}/class_ids_along_axis");
        var labels = b.Add("Unsqueeze", [b.Add("Cast", [target], $"{loss}/labels64", GraphBuilder.Attr("to", (long)DataType.Int64)), b.Initializer($"{loss}/axes", Tensors.Create("", new[] { (long)axis }, 1))], $"{loss}/labels_unsqueezed");
        var onehot = b.Add("Cast", [b.Add("Equal", [labels, column], $"{loss}/hit")], $"{loss}/onehot", GraphBuilder.Attr("to", (long)type.ElementType));
        var picked = b.Add("ReduceSum", [b.Add("Mul", [logp, onehot], $"{loss}/picked_all"), b.Initializer($"{loss}/class_axes", Tensors.Create("", new[] { (long)axis }, 1))], $"{loss}/picked", GraphBuilder.Attr("keepdims", 0L));
        return b.Add("Neg", [b.Add("ReduceMean", [picked], $"{loss}/mean", GraphBuilder.Attr("keepdims", 0L))], loss);
    }

    /// <summary>The axis of <paramref name="type"/> that the label input's shape lacks, where exactly one fits.</summary>
    private static int? LabelAxis(TypeAndShape type, ValueInfoProto? labels)
    {
        if (labels?.Type.Dims() is not { } labelDims || type.Dims is not { } dims || labelDims.Count != dims.Length - 1) return null;
        var fits = Enumerable.Range(0, dims.Length).Where(axis =>
            Enumerable.Range(0, labelDims.Count).All(k =>
            {
                var source = k < axis ? k : k + 1;
                return labelDims[k] switch
                {
                    long v => dims[source] is null || dims[source] == v,
                    string s => type.Symbol(source) is not { } symbol || symbol == s,
                    _ => true,
                };
            })).ToList();
        return fits.Count == 1 ? fits[0] : null;
    }

    private static string BinaryCrossEntropy(GraphProto graph, GraphIndex index, GraphBuilder b, BuildTrainingOptions o, TypeAndShape type,
        string target, ValueInfoProto? existing, List<string> notes, out LossReading reading)
    {
        AddFloatTarget(graph, b, o, type, target, existing);
        var producer = index.Producer(o.Output);
        string logits;
        if (producer is { OpType: "Sigmoid", Domain: "" or "ai.onnx" })
        {
            logits = producer.Input[0];
            notes.Add($"bce: '{o.Output}' is the output of Sigmoid node '{producer.Name}'; its input '{logits}' is used as the logits (binary cross-entropy with logits).");
        }
        else
        {
            logits = o.Output;
            notes.Add($"bce: '{o.Output}' is not a Sigmoid output, so it is read as logits (sigmoid applied in the loss).");
        }
        reading = new LossReading(LossKind.Bce, logits, LossInputForm.Logits, null, target);
        // mean(max(z, 0) - z*t + log(1 + exp(-|z|))): the stable form of -t*log(sigmoid z) - (1-t)*log(1 - sigmoid z).
        var loss = GradientGraphBuilder.LossName;
        logits = ToFloat32(b, logits, type, $"{loss}/logits_float32");
        var t = b.Add("Cast", [target], $"{loss}/target", GraphBuilder.Attr("to", (long)(type.ElementType is DataType.Double ? DataType.Double : DataType.Float)));
        var positive = b.Add("Relu", [logits], $"{loss}/relu");
        var zt = b.Add("Mul", [logits, t], $"{loss}/zt");
        var soft = b.Add("Softplus", [b.Add("Neg", [b.Add("Abs", [logits], $"{loss}/abs")], $"{loss}/neg_abs")], $"{loss}/softplus");
        var each = b.Add("Add", [b.Add("Sub", [positive, zt], $"{loss}/relu_minus_zt"), soft], $"{loss}/each");
        return b.Add("ReduceMean", [each], loss, GraphBuilder.Attr("keepdims", 0L));
    }

    private static string MeanSquaredError(GraphProto graph, GraphBuilder b, BuildTrainingOptions o, TypeAndShape type, string target, ValueInfoProto? existing)
    {
        AddFloatTarget(graph, b, o, type, target, existing);
        var loss = GradientGraphBuilder.LossName;
        var diff = b.Add("Sub", [ToFloat32(b, o.Output, type, $"{loss}/output_float32"), ToFloat32(b, target, type, $"{loss}/target_float32")], $"{loss}/diff");
        return b.Add("ReduceMean", [b.Add("Mul", [diff, diff], $"{loss}/squared")], loss, GraphBuilder.Attr("keepdims", 0L));
    }

    /// <summary>A float target of the output's type, added as a graph input unless the model has it.</summary>
    private static void AddFloatTarget(GraphProto graph, GraphBuilder b, BuildTrainingOptions o, TypeAndShape type, string target, ValueInfoProto? existing)
    {
        if (existing is null)
        {
            var info = TypeProtos.ValueInfo(b.Reserve(target), type.ElementType, []);
            if (type.Dims is null) info.Type.TensorType.Shape = null;
            else
                for (int k = 0; k < type.Dims.Length; k++)
                {
                    var dim = new TensorShapeProto.Types.Dimension();
                    if (type.Dims[k] is { } v) dim.DimValue = v;
                    else if (type.Symbol(k) is { } symbol) dim.DimParam = symbol;
                    info.Type.TensorType.Shape.Dim.Add(dim);
                }
            graph.Input.Add(info);
        }
        else if (existing.Type.ElementType() != type.ElementType)
            throw new OnnxAdadeltaException($"--target {target}: the input is {existing.Type.Describe()}; '{o.Output}' is {type.ElementType.ToString().ToLowerInvariant()}.");
    }

    /// <summary>
    /// <paramref name="value"/> in float32 where it is float16 or bfloat16: the step model needs a float32 loss, and a
    /// half-precision mean would lose it, so the loss is computed from the value cast up. float32 and float64 stay.
    /// </summary>
    private static string ToFloat32(GraphBuilder b, string value, TypeAndShape type, string name) =>
        type.ElementType is DataType.Float16 or DataType.Bfloat16 ? b.Add("Cast", [value], name, GraphBuilder.Attr("to", (long)DataType.Float)) : value;

    private static int Normalize(int axis, int rank) => axis < 0 ? axis + rank : axis;

    /// <summary>The permutation that puts <paramref name="axis"/> second, the other axes keeping their order.</summary>
    private static long[] MoveToAxis1(int axis, int rank)
    {
        var others = Enumerable.Range(0, rank).Where(k => k != axis).Select(k => (long)k).ToList();
        return [others[0], axis, .. others.Skip(1)];
    }

    private static string Describe(TypeAndShape t) =>
        t.Dims is null ? "rank unknown" : $"[{string.Join(",", t.Dims.Select((d, k) => d?.ToString() ?? t.Symbol(k) ?? "?"))}]";
}
