using OnnxAdadelta.Onnx;
using OnnxAdadelta.Onnx.Proto;

namespace OnnxAdadelta.Optimizers;

/// <summary>
/// Where a training-step model keeps the values its state inputs start from, in both forms of the contract.
/// </summary>
/// <remarks>
/// <para><b>Format 2</b> (written since format 2 of <see cref="StepModelInfo"/>): a state input (parameter, slot, counter,
/// buffer) is a plain graph input with no initializer of its own name; the value it starts from is an initializer
/// named in its binding's <see cref="StateBinding.Initial"/> (<c>&lt;input&gt;.initial</c>), which no node reads.
/// Every ONNX Runtime binding lists such an input and accepts a feed for it; onnxruntime-node, for one, lists only the
/// inputs without an initializer and drops feeds for the others, so with the older form it could not train.</para>
/// <para><b>Format 1</b> (older files): the start value is an initializer of the input's own name. Such models and
/// checkpoints still load: <see cref="Values"/> reads both forms, and <see cref="Upgrade(ModelProto)"/> turns a format-1 model
/// into format 2 (the Trainer does, so its checkpoints are written in format 2).</para>
/// </remarks>
public static class StepModelState
{
    /// <summary>Suffix of the initializer holding a state input's start value (format 2).</summary>
    public const string InitialSuffix = ".initial";

    /// <summary>The initializer that holds <paramref name="binding"/>'s start value (its input's own name in format 1).</summary>
    public static string InitialName(StateBinding binding) => binding.Initial ?? binding.Input;

    /// <summary>The start value of every state input, by input name, read from the model's initializers (either form).</summary>
    /// <exception cref="OnnxAdadeltaException">An initializer the metadata names is missing.</exception>
    public static IReadOnlyDictionary<string, TensorProto> Values(ModelProto model, StepModelInfo info)
    {
        var inits = model.Graph.Initializer.GroupBy(t => t.Name, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);
        var values = new Dictionary<string, TensorProto>(StringComparer.Ordinal);
        foreach (var s in info.State)
            values[s.Input] = inits.GetValueOrDefault(InitialName(s))
                ?? throw new OnnxAdadeltaException($"The step model has no initializer '{InitialName(s)}' holding the value of state input '{s.Input}' (metadata '{StepModelInfo.MetadataKey}').");
        return values;
    }

    /// <summary>
    /// The model in format 2: each state input whose value is an initializer of its own name gets that initializer
    /// renamed to <c>&lt;input&gt;.initial</c> (a unique name), recorded in the metadata. Returns
    /// <paramref name="model"/> itself when it is already in format 2, else an upgraded copy.
    /// </summary>
    public static ModelProto Upgrade(ModelProto model) => Upgrade(model, StepModelInfo.Read(model, "the model")).Model;

    /// <summary>
    /// <see cref="Upgrade(ModelProto)"/> with the contract already read: the model in format 2 and its contract
    /// (<paramref name="model"/> and <paramref name="info"/> themselves when already in format 2).
    /// </summary>
    public static (ModelProto Model, StepModelInfo Info) Upgrade(ModelProto model, StepModelInfo info)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(info);
        if (info.State.All(s => s.Initial is not null) && info.FormatVersion >= StepModelInfo.CurrentFormatVersion) return (model, info);
        var copy = model.DeepCopy();
        return (copy, UpgradeInPlace(copy, info));
    }

    /// <summary>Converts <paramref name="model"/> (described by <paramref name="info"/>) to format 2 in place; returns its new contract.</summary>
    internal static StepModelInfo UpgradeInPlace(ModelProto model, StepModelInfo info)
    {
        var graph = model.Graph;
        var taken = graph.Initializer.Select(t => t.Name).Concat(graph.Input.Select(i => i.Name)).Concat(graph.Output.Select(o => o.Name))
            .Concat(graph.Node.SelectMany(n => n.Output)).ToHashSet(StringComparer.Ordinal);
        var byName = graph.Initializer.GroupBy(t => t.Name, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);
        var state = new List<StateBinding>();
        foreach (var s in info.State)
        {
            if (s.Initial is not null) { state.Add(s); continue; }
            if (!byName.TryGetValue(s.Input, out var value))
                throw new OnnxAdadeltaException($"The step model has no initializer '{s.Input}' holding the value of state input '{s.Input}' (metadata '{StepModelInfo.MetadataKey}').");
            var name = UniqueName(s.Input + InitialSuffix, taken);
            value.Name = name;
            state.Add(s with { Initial = name });
        }
        var upgraded = info with { State = state, FormatVersion = StepModelInfo.CurrentFormatVersion };
        upgraded.WriteTo(model);
        return upgraded;
    }

    /// <summary>
    /// A copy of the model in which every state input has an initializer of its own name holding its value (the
    /// format-1 layout, which ONNX Runtime reads as an input with a default): what export and tools that run the step
    /// model once without feeding the state want. The start-value initializers of format 2 are renamed, not copied.
    /// </summary>
    public static ModelProto WithInputDefaults(ModelProto model) => WithInputDefaults(model, StepModelInfo.Read(model, "the model"));

    /// <summary><see cref="WithInputDefaults(ModelProto)"/> with the contract already read (one deep copy of the model).</summary>
    public static ModelProto WithInputDefaults(ModelProto model, StepModelInfo info)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(info);
        var copy = model.DeepCopy();
        var values = Values(copy, info);
        foreach (var s in info.State) values[s.Input].Name = s.Input;
        (info with { State = info.State.Select(s => s with { Initial = null }).ToList(), FormatVersion = 1 }).WriteTo(copy);
        return copy;
    }

    /// <summary>
    /// A model whose only initializers are <paramref name="stepModel"/>'s trainable parameters under their own names
    /// (either format): what <c>--params</c> takes from a step model or checkpoint.
    /// </summary>
    public static ModelProto ParameterValues(ModelProto stepModel)
    {
        var info = StepModelInfo.Read(stepModel, "the --params model");
        var values = Values(stepModel, info);
        var model = new ModelProto { Graph = new GraphProto { Name = "parameters" } };
        foreach (var p in info.Parameters)
        {
            var value = values[p].Clone();
            value.Name = p;
            model.Graph.Initializer.Add(value);
        }
        return model;
    }

    /// <summary>
    /// A copy of a format-2 model without the start-value initializers: the graph a session runs when the caller feeds
    /// every state input (ONNX Runtime would drop the unread initializers itself, after loading them). The copy shares
    /// its nodes and other initializers with <paramref name="model"/> (<see cref="ModelCopies.ShareElements"/>): change
    /// its lists, not their elements.
    /// </summary>
    public static ModelProto WithoutValues(ModelProto model, StepModelInfo info)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(info);
        var initial = info.State.Where(s => s.Initial is not null).Select(s => s.Initial!).ToHashSet(StringComparer.Ordinal);
        var copy = model.ShareElements();
        var kept = copy.Graph.Initializer.Where(t => !initial.Contains(t.Name)).ToList();
        copy.Graph.Initializer.Clear();
        copy.Graph.Initializer.AddRange(kept);
        return copy;
    }

    /// <summary>Writes <paramref name="values"/> (by input name) into the initializers that hold the state's start values.</summary>
    /// <exception cref="OnnxAdadeltaException">A value has another dtype or shape than the initializer it replaces.</exception>
    public static void Write(ModelProto model, StepModelInfo info, IReadOnlyDictionary<string, TensorProto> values)
    {
        var inits = model.Graph.Initializer;
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < inits.Count; i++) index.TryAdd(inits[i].Name, i);
        foreach (var s in info.State)
        {
            if (!values.TryGetValue(s.Input, out var value)) continue;
            var name = InitialName(s);
            if (!index.TryGetValue(name, out var at))
                throw new OnnxAdadeltaException($"The step model has no initializer '{name}' holding the value of state input '{s.Input}'.");
            var old = inits[at];
            if (old.DataType != value.DataType || !old.Dims.SequenceEqual(value.Dims))
                throw new OnnxAdadeltaException($"State '{s.Input}': the new value is {Onnx.DataTypes.Name(value.DataType)} [{string.Join(",", value.Dims)}], the model holds {Onnx.DataTypes.Name(old.DataType)} [{string.Join(",", old.Dims)}].");
            var copy = value.Clone();
            copy.Name = name;
            inits[at] = copy;
        }
    }

    private static string UniqueName(string hint, HashSet<string> taken)
    {
        if (taken.Add(hint)) return hint;
        for (int k = 1; ; k++)
            if (taken.Add($"{hint}_{k}")) return $"{hint}_{k}";
    }
}
