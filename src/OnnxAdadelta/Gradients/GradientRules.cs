namespace OnnxAdadelta.Gradients;

/// <summary>A gradient rule: reads the forward node and output gradients from the context, sets input gradients.</summary>
public delegate void GradientRule(GradientContext c);

/// <summary>
/// A decomposition: recomputes a node's outputs from its inputs with ops that have gradient rules (or decompositions
/// of their own), binding each with <see cref="DecompositionContext.SetOutput"/>. The forward node stays; the
/// recompute only serves the backward pass.
/// </summary>
public delegate void Decomposition(DecompositionContext c);

/// <summary>How the autodiff treats one op type.</summary>
/// <param name="Rule">The rule, or null for an op with no gradient (its inputs get none) or one differentiated by its decomposition.</param>
/// <param name="Differentiable">Which inputs can carry a gradient (null: every input).</param>
/// <param name="Decompose">A decomposition the op is differentiated through when <paramref name="Rule"/> is null.</param>
public sealed record GradientRuleInfo(GradientRule? Rule, IReadOnlySet<int>? Differentiable = null, Decomposition? Decompose = null)
{
    /// <summary>Whether gradients flow through the op at all (by a rule or by a decomposition).</summary>
    public bool HasGradient => Rule is not null || Decompose is not null;

    /// <summary>Whether input <paramref name="i"/> can carry a gradient.</summary>
    public bool IsDifferentiable(int i) => HasGradient && (Differentiable is null || Differentiable.Contains(i));
}

/// <summary>
/// The registry of gradient rules, keyed by ai.onnx op type. Each rule family lives in its own file and registers
/// itself here; an op missing from the registry on the path to a trainable parameter is an error that names it.
/// </summary>
public static partial class GradientRules
{
    private static readonly Dictionary<string, GradientRuleInfo> Registry = Build();

    /// <summary>The rule of an op type, or null if the op is unknown to the autodiff.</summary>
    public static GradientRuleInfo? Find(string opType) => Registry.GetValueOrDefault(opType);

    /// <summary>
    /// Replaces the rule of <paramref name="opType"/> until the returned scope is disposed. Tests plant a deliberately
    /// wrong rule with it to show that <c>gradcheck</c> catches one; the registry is not meant to change otherwise.
    /// </summary>
    internal static IDisposable Override(string opType, GradientRuleInfo info)
    {
        bool had = Registry.TryGetValue(opType, out var previous);
        Registry[opType] = info;
        return new Restore(() => { if (had) Registry[opType] = previous!; else Registry.Remove(opType); });
    }

    private sealed class Restore(Action undo) : IDisposable
    {
        public void Dispose() => undo();
    }

    /// <summary>Every op type with a gradient rule.</summary>
    public static IEnumerable<string> Supported => Registry.Where(r => r.Value.HasGradient).Select(r => r.Key).Order(StringComparer.Ordinal);

    /// <summary>Ops whose outputs carry no gradient (shape queries, comparisons, index results).</summary>
    public static IEnumerable<string> NoGradient => Registry.Where(r => !r.Value.HasGradient).Select(r => r.Key).Order(StringComparer.Ordinal);

    private static Dictionary<string, GradientRuleInfo> Build()
    {
        var r = new Dictionary<string, GradientRuleInfo>(StringComparer.Ordinal);
        foreach (var op in new[] { "Shape", "Size", "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Not", "And", "Or", "Xor",
                     "ArgMax", "ArgMin", "NonZero", "IsNaN", "IsInf", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "EyeLike", "Range" })
            r[op] = new GradientRuleInfo(null);
        RegisterElementwise(r);
        RegisterReductions(r);
        RegisterLinearAlgebra(r);
        RegisterSoftmax(r);
        RegisterShape(r);
        RegisterConvolution(r);
        RegisterNormalization(r);
        RegisterIndexing(r);
        RegisterActivations(r);
        RegisterResampling(r);
        RegisterControlFlow(r);
        RegisterRecurrent(r);
        return r;
    }

    /// <summary>Registers <paramref name="rule"/> for each op in <paramref name="ops"/>.</summary>
    private static void Add(Dictionary<string, GradientRuleInfo> r, GradientRule rule, IReadOnlySet<int>? differentiable, params string[] ops)
    {
        foreach (var op in ops) r[op] = new GradientRuleInfo(rule, differentiable);
    }

    /// <summary>Registers the decomposition <paramref name="d"/> for each op in <paramref name="ops"/> (every input differentiable).</summary>
    private static void AddDecomposition(Dictionary<string, GradientRuleInfo> r, Decomposition d, params string[] ops)
    {
        foreach (var op in ops) r[op] = new GradientRuleInfo(null, null, d);
    }

    /// <summary>Only these inputs carry gradients.</summary>
    private static HashSet<int> Inputs(params int[] i) => [.. i];
}
