using OnnxAdadelta.Onnx.Proto;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;
using OnnxAdadelta.Onnx;

namespace OnnxAdadelta.Graphs;

/// <summary>A trainable parameter of a training graph: its value and the graph value that holds its gradient.</summary>
/// <param name="Name">The parameter (initializer or graph input) name.</param>
/// <param name="Value">Its current value (float32, float16 or bfloat16).</param>
/// <param name="Gradient">The graph value holding its gradient.</param>
public sealed record TrainableParameter(string Name, TensorProto Value, string Gradient);

/// <summary>What a training graph holds: the loss, the data inputs, and each parameter with its gradient.</summary>
/// <param name="Loss">The loss output.</param>
/// <param name="DataInputs">Graph inputs fed per step.</param>
/// <param name="Parameters">Trainable parameters, in graph order.</param>
public sealed record TrainingGraph(string Loss, IReadOnlyList<string> DataInputs, IReadOnlyList<TrainableParameter> Parameters)
{
    /// <summary>Buffers, the step input and inference values the graph records (<see cref="TrainingGraphInfo"/>).</summary>
    public TrainingGraphInfo Info { get; init; } = new();

    /// <summary>The suffix ORT gives gradient outputs.</summary>
    public const string GradientSuffix = "_grad";

    /// <summary>
    /// Finds the loss, parameters and gradients of a training graph and checks the contract: every parameter has exactly
    /// one gradient of its shape and dtype, parameters are float32, float16 or bfloat16 and have values, and the loss is a float32 scalar.
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">The first broken rule, naming the parameter, gradient or output.</exception>
    public static TrainingGraph Analyze(ModelProto model, RewriteOptions? options = null)
    {
        options ??= new RewriteOptions();
        var graph = model.Graph ?? throw new OnnxAdadeltaException("The model has no graph.");
        var index = new GraphIndex(graph);
        if (graph.Output.Count == 0) throw new OnnxAdadeltaException("The training graph has no outputs; its first output must be the loss.");

        var info = TrainingGraphInfo.Read(model);
        var buffers = (info.Buffers ?? []).Select(x => x.Input).ToHashSet(StringComparer.Ordinal);
        var bufferOutputs = (info.Buffers ?? []).Select(x => x.Output).ToHashSet(StringComparer.Ordinal);
        foreach (var buffer in info.Buffers ?? [])
        {
            if (!index.Initializers.ContainsKey(buffer.Input))
                throw new OnnxAdadeltaException($"Buffer '{buffer.Input}' (metadata '{TrainingGraphInfo.MetadataKey}') is not an initializer of the graph.");
            if (!index.Outputs.ContainsKey(buffer.Output))
                throw new OnnxAdadeltaException($"Buffer '{buffer.Input}' has its next value in '{buffer.Output}', which is not a graph output.");
        }
        if (info.StepInput is { } stepInput && (!index.Inputs.TryGetValue(stepInput, out var stepInfo) || stepInfo.Type?.TensorType is { } st && st.ElemType != (int)DataType.Int64))
            throw new OnnxAdadeltaException($"The step input '{stepInput}' (metadata '{TrainingGraphInfo.MetadataKey}') is not an int64 graph input.");

        var loss = options.Loss ?? graph.Output[0].Name;
        if (!index.Outputs.TryGetValue(loss, out var lossInfo))
            throw new OnnxAdadeltaException($"The loss '{loss}' is not a graph output; outputs: {string.Join(", ", graph.Output.Select(o => o.Name))}.");
        CheckLoss(lossInfo);

        var suppliedValues = options.ParameterValues?.Graph?.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal)
            ?? new Dictionary<string, TensorProto>(StringComparer.Ordinal);
        bool IsNamed(string name) => index.Initializers.ContainsKey(name) || index.Inputs.ContainsKey(name) || suppliedValues.ContainsKey(name);
        bool IsValue(string name) => index.Producer(name) is not null || index.Inputs.ContainsKey(name) || index.Initializers.ContainsKey(name);

        var gradients = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (param, grad) in options.Gradients)
        {
            if (!IsNamed(param)) throw new OnnxAdadeltaException($"--grad {param}={grad}: the graph has no parameter '{param}'.");
            if (!IsValue(grad)) throw new OnnxAdadeltaException($"--grad {param}={grad}: the graph has no value '{grad}'.");
            gradients[param] = grad;
        }
        var mapped = new HashSet<string>(gradients.Values, StringComparer.Ordinal);
        foreach (var output in graph.Output.Select(o => o.Name))
        {
            if (!output.EndsWith(GradientSuffix, StringComparison.Ordinal) || mapped.Contains(output) || output == loss || bufferOutputs.Contains(output)) continue;
            var param = output[..^GradientSuffix.Length];
            if (gradients.TryGetValue(param, out var other))
                throw new OnnxAdadeltaException($"Parameter '{param}' has two gradients: '{other}' and '{output}'.");
            if (!IsNamed(param))
                throw new OnnxAdadeltaException($"Output '{output}' is named like a gradient, but the graph has no parameter '{param}'; map it with --grad PARAM={output}.");
            gradients[param] = output;
        }

        // ORT marks trainable parameters by making them graph inputs with initializers; each must have a gradient.
        var expected = graph.Input.Where(i => index.Initializers.ContainsKey(i.Name) && !buffers.Contains(i.Name) && DataTypes.IsTrainable(i.Type.ElementType())).Select(i => i.Name)
            .Concat(suppliedValues.Keys);
        foreach (var name in expected)
            if (!gradients.ContainsKey(name))
                throw new OnnxAdadeltaException($"Parameter '{name}' has no gradient: expected an output '{name}{GradientSuffix}' or --grad {name}=OUTPUT.");
        if (gradients.Count == 0)
            throw new OnnxAdadeltaException($"The training graph has no gradient outputs: expected outputs named '<param>{GradientSuffix}' or --grad PARAM=OUTPUT.");

        var missing = gradients.Keys.Where(p => !suppliedValues.ContainsKey(p) && !index.Initializers.ContainsKey(p)).ToList();
        if (missing.Count > 0)
            throw new OnnxAdadeltaException($"No value for parameter{(missing.Count > 1 ? "s" : "")} {string.Join(", ", missing.Select(m => $"'{m}'"))}: give {(missing.Count > 1 ? "them" : "it")} as initializers or with --params MODEL.onnx.");

        var order = graph.Input.Select(i => i.Name).Concat(graph.Initializer.Select(i => i.Name)).Concat(suppliedValues.Keys).Distinct().ToList();
        var parameters = new List<TrainableParameter>();
        foreach (var name in order.Where(gradients.ContainsKey))
        {
            var value = (suppliedValues.GetValueOrDefault(name) ?? index.Initializers[name]).Clone();
            value.Name = name;
            if (!DataTypes.IsTrainable((DataType)value.DataType))
                throw new OnnxAdadeltaException($"Parameter '{name}' is {Describe((DataType)value.DataType)}; only float32, float16 and bfloat16 parameters can be trained.");
            if (index.Initializers.TryGetValue(name, out var declared) && !declared.Dims.SequenceEqual(value.Dims))
                throw new OnnxAdadeltaException($"--params gives '{name}' the shape [{string.Join(",", value.Dims)}], but the graph's is [{string.Join(",", declared.Dims)}].");
            CheckGradient(name, value, gradients[name], index.TypeOf(gradients[name]));
            parameters.Add(new TrainableParameter(name, value, gradients[name]));
        }

        foreach (var name in gradients.Keys.Where(buffers.Contains))
            throw new OnnxAdadeltaException($"'{name}' is a buffer the forward pass updates, and cannot also be a trainable parameter.");
        var data = graph.Input.Select(i => i.Name).Where(n => !index.Initializers.ContainsKey(n) && !gradients.ContainsKey(n) && n != info.StepInput).ToList();
        return new TrainingGraph(loss, data, parameters) { Info = info };
    }

    private static void CheckLoss(ValueInfoProto loss)
    {
        if (loss.Type?.TensorType is null) return;
        var type = loss.Type.ElementType();
        if (type != DataType.Float)
            throw new OnnxAdadeltaException($"The loss '{loss.Name}' is {Describe(type)}; a float32 scalar is expected.");
        if (loss.Type.Dims() is { } dims && dims.Any(d => d is long n && n != 1))
            throw new OnnxAdadeltaException($"The loss '{loss.Name}' has shape {loss.Type.Describe()}; a scalar is expected.");
    }

    private static void CheckGradient(string param, TensorProto value, string gradient, TypeProto? type)
    {
        if (type?.TensorType is null) return;
        var dtype = type.ElementType();
        if (dtype != (DataType)value.DataType)
            throw new OnnxAdadeltaException($"Gradient '{gradient}' of parameter '{param}' is {Describe(dtype)}, but the parameter is {Describe((DataType)value.DataType)}; a gradient must have its parameter's dtype.");
        if (type.Dims() is not { } dims) return;
        bool mismatch = dims.Count != value.Dims.Count || dims.Zip(value.Dims).Any(p => p.First is long n && n != p.Second);
        if (mismatch)
            throw new OnnxAdadeltaException($"Gradient '{gradient}' has shape [{string.Join(",", dims.Select(d => d ?? "?"))}], but parameter '{param}' has shape [{string.Join(",", value.Dims)}].");
    }

    private static string Describe(DataType t) => t switch
    {
        DataType.Float => "float32",
        DataType.Double => "float64",
        DataType.Float16 => "float16",
        DataType.Bfloat16 => "bfloat16",
        _ => t.ToString().ToLowerInvariant(),
    };
}
