using OnnxAdadelta.Graphs;
namespace OnnxAdadelta.Optimizers;

/// <summary>
/// One piece of an optimizer update (in the manner of optax's <c>chain</c>): it transforms the running update of one
/// parameter and may read and write per-parameter state slots. The same piece drives the ONNX graph and the C#
/// reference through <see cref="ITensorMath{T}"/>.
/// </summary>
public interface IUpdatePiece
{
    /// <summary>The state slots this piece keeps per parameter (Keras slot names), zero at the start.</summary>
    IReadOnlyList<string> Slots { get; }

    /// <summary>Transforms <paramref name="update"/> (the gradient at the start of the chain).</summary>
    T Apply<T>(ITensorMath<T> math, ParameterStep<T> step, T update);
}

/// <summary>
/// A piece that needs one value computed over all parameters at its place in the chain (for example the global
/// gradient norm). <see cref="UpdateChain.RunAll{T}"/> computes <see cref="Share{T}"/> once from every parameter's
/// running update, hands it to each parameter as <see cref="ParameterStep{T}.Shared"/>, then calls
/// <see cref="IUpdatePiece.Apply{T}"/> per parameter.
/// </summary>
public interface ICrossParameterPiece : IUpdatePiece
{
    /// <summary>The shared value, from the running updates of all parameters in order.</summary>
    T Share<T>(ITensorMath<T> math, IReadOnlyList<T> updates);
}

/// <summary>
/// Conditions on the int64 iteration counter (read before the step increments it), for pieces that act on some
/// steps only. The graph computes them with int64 nodes; the reference from its counter. Values are conditions for
/// <see cref="ITensorMath{T}.Where"/>.
/// </summary>
/// <typeparam name="T">A tensor name (graph) or a float array (reference).</typeparam>
public interface IStepCounter<T>
{
    /// <summary>The condition <c>iterations == 0</c>.</summary>
    T IsFirstStep();

    /// <summary>The condition <c>(iterations + 1) % n == 0</c>, as Keras 3 tests its update and overwrite steps.</summary>
    T EveryNth(long n);
}

/// <summary>The values one parameter's update works on, and where pieces leave new state.</summary>
/// <typeparam name="T">A tensor name (graph) or a float array (reference).</typeparam>
public sealed class ParameterStep<T>
{
    /// <summary>Creates the context for one parameter.</summary>
    /// <param name="parameter">The parameter's current value.</param>
    /// <param name="state">The current state, by slot name.</param>
    /// <param name="learningRate">The learning rate of this step (scalar).</param>
    /// <param name="name">The parameter's name (weight-decay exclusions match it; the graph scopes nodes by it).</param>
    /// <param name="counter">Conditions on the iteration counter (needed by gradient accumulation and EMA), or null.</param>
    /// <param name="group">The parameter's group (its values replace the defaults), or null.</param>
    public ParameterStep(T parameter, IReadOnlyDictionary<string, T> state, T learningRate, string name = "",
        IStepCounter<T>? counter = null, ParameterGroup? group = null)
    {
        Parameter = parameter;
        Current = parameter;
        Counter = counter;
        Group = group;
        State = state;
        LearningRate = learningRate;
        Name = name;
    }

    /// <summary>The parameter's value before this step (no piece changes it).</summary>
    public T Current { get; }

    /// <summary>Conditions on the iteration counter, or null when the caller gives none.</summary>
    public IStepCounter<T>? Counter { get; }

    /// <summary>The parameter's group, or null for the defaults.</summary>
    public ParameterGroup? Group { get; }

    /// <summary>The counter, or an exception naming <paramref name="piece"/> that needs it.</summary>
    public IStepCounter<T> RequireCounter(string piece) =>
        Counter ?? throw new InvalidOperationException($"{piece} needs the iteration counter (give the ParameterStep a counter).");

    /// <summary>The parameter's name; empty when the caller has none.</summary>
    public string Name { get; }

    /// <summary>
    /// The parameter's value as the chain sees it: the current value, until a piece replaces it (decoupled weight
    /// decay shrinks it before the update is subtracted).
    /// </summary>
    public T Parameter { get; set; }

    /// <summary>The current state, by slot name.</summary>
    public IReadOnlyDictionary<string, T> State { get; }

    /// <summary>The learning rate of this step (scalar).</summary>
    public T LearningRate { get; }

    /// <summary>The value the current <see cref="ICrossParameterPiece"/> computed over all parameters, else default.</summary>
    public T? Shared { get; set; }

    /// <summary>The new state, by slot name; each slot a piece declares must be written here.</summary>
    public Dictionary<string, T> NewState { get; } = new(StringComparer.Ordinal);

    /// <summary>The parameter's new value, set by the last piece.</summary>
    public T? NewParameter { get; set; }
}

/// <summary>Runs a chain of pieces over the parameters.</summary>
public static class UpdateChain
{
    /// <summary>All state slots of a chain, in order.</summary>
    public static IReadOnlyList<string> Slots(IEnumerable<IUpdatePiece> chain) => chain.SelectMany(p => p.Slots).ToList();

    /// <summary>Applies the chain to one parameter's <paramref name="gradient"/> (alone: a shared value sees only it).</summary>
    public static ParameterStep<T> Run<T>(ITensorMath<T> math, IReadOnlyList<IUpdatePiece> chain, ParameterStep<T> step, T gradient) =>
        RunAll(math, chain, [step], [gradient])[0];

    /// <summary>
    /// Applies the chain to every parameter, piece by piece: a <see cref="ICrossParameterPiece"/> computes its shared
    /// value once from all running updates (in the order given) before it is applied to each parameter. Each
    /// parameter's nodes are scoped by its <see cref="ParameterStep{T}.Name"/> (when it has one).
    /// </summary>
    public static IReadOnlyList<ParameterStep<T>> RunAll<T>(ITensorMath<T> math, IReadOnlyList<IUpdatePiece> chain,
        IReadOnlyList<ParameterStep<T>> steps, IReadOnlyList<T> gradients)
    {
        if (steps.Count != gradients.Count) throw new ArgumentException($"{steps.Count} parameters but {gradients.Count} gradients.");
        var updates = gradients.ToArray();
        foreach (var piece in chain)
        {
            T? shared = default;
            if (piece is ICrossParameterPiece cross) shared = cross.Share(math, updates);
            for (int i = 0; i < steps.Count; i++)
            {
                var step = steps[i];
                step.Shared = shared;
                var update = updates[i];
                updates[i] = step.Name.Length == 0 ? piece.Apply(math, step, update) : math.Scope(step.Name, () => piece.Apply(math, step, update));
                step.Shared = default;
            }
        }
        foreach (var step in steps)
        {
            if (step.NewParameter is null) throw new InvalidOperationException("The update chain set no new parameter value.");
            foreach (var slot in Slots(chain))
                if (!step.NewState.ContainsKey(slot)) throw new InvalidOperationException($"The update chain left state slot '{slot}' unset.");
        }
        return steps;
    }
}

/// <summary>PyTorch <c>maximize</c>: the gradient is negated before everything else, so the chain ascends.</summary>
public sealed record NegateGradient : IUpdatePiece
{
    /// <inheritdoc/>
    public IReadOnlyList<string> Slots => [];

    /// <inheritdoc/>
    public T Apply<T>(ITensorMath<T> m, ParameterStep<T> step, T g) => m.Scope("maximize", () => m.Neg(g));
}

/// <summary>Keras 3 <c>loss_scale_factor</c>: the gradient of the scaled loss is divided by the factor, <c>g / s</c>.</summary>
/// <param name="Factor">The factor the loss was multiplied by.</param>
public sealed record UnscaleGradient(float Factor) : IUpdatePiece
{
    /// <inheritdoc/>
    public IReadOnlyList<string> Slots => [];

    /// <inheritdoc/>
    public T Apply<T>(ITensorMath<T> m, ParameterStep<T> step, T g) => m.Scope("loss_scale", () => m.Div(g, m.Constant("loss_scale_factor", Factor)));
}

/// <summary>
/// Keras <c>global_clipnorm</c>: all gradients rescaled together, <c>g_i * c / max(global_norm, c)</c> with
/// <c>global_norm = sqrt(sum_i sum(g_i^2))</c>, the per-tensor sums added in parameter order.
/// </summary>
/// <param name="ClipNorm">The largest global L2 norm the gradients keep.</param>
public sealed record ClipByGlobalNorm(float ClipNorm) : ICrossParameterPiece
{
    /// <inheritdoc/>
    public IReadOnlyList<string> Slots => [];

    /// <inheritdoc/>
    public T Share<T>(ITensorMath<T> m, IReadOnlyList<T> updates) => m.Scope("global_clipnorm", () =>
    {
        if (updates.Count == 0) return m.Constant("zero", 0f);
        var sum = m.SumOfSquares(updates[0]);
        for (int i = 1; i < updates.Count; i++) sum = m.Add(sum, m.SumOfSquares(updates[i]));
        return m.Sqrt(sum);
    });

    /// <inheritdoc/>
    public T Apply<T>(ITensorMath<T> m, ParameterStep<T> step, T g) => m.Scope("global_clipnorm", () =>
    {
        var norm = step.Shared ?? throw new InvalidOperationException("global_clipnorm needs the shared global norm (run the chain with UpdateChain.RunAll).");
        var c = m.Constant("global_clipnorm", ClipNorm);
        return m.Div(m.Mul(g, c), m.Max(norm, c));
    });
}

/// <summary>
/// Coupled L2 weight decay (PyTorch <c>weight_decay</c>, optax <c>add_decayed_weights</c>): <c>g = g + wd*var</c>,
/// skipped for parameters that <paramref name="Exclude"/> matches.
/// </summary>
/// <param name="WeightDecay">The L2 coefficient.</param>
/// <param name="Exclude">Parameters left undecayed.</param>
/// <remarks>A parameter's group value replaces <paramref name="WeightDecay"/>; null for both skips the parameter.</remarks>
public sealed record AddL2(float? WeightDecay, ParameterPatterns Exclude) : IUpdatePiece
{
    /// <inheritdoc/>
    public IReadOnlyList<string> Slots => [];

    /// <inheritdoc/>
    public T Apply<T>(ITensorMath<T> m, ParameterStep<T> step, T g) =>
        Exclude.Matches(step.Name) || (step.Group?.L2 ?? WeightDecay) is not { } wd ? g : m.Scope("l2", () =>
            m.Add(g, m.Mul(m.Constant("l2", wd), step.Parameter)));
}

/// <summary>
/// Decoupled weight decay as Keras 3 applies it before the update: <c>var = var - var*wd*lr</c> (evaluated left to
/// right, with this step's learning rate), skipped for parameters that <paramref name="Exclude"/> matches.
/// </summary>
/// <param name="WeightDecay">The decay coefficient.</param>
/// <param name="Exclude">Parameters left undecayed.</param>
/// <remarks>A parameter's group value replaces <paramref name="WeightDecay"/>; null for both skips the parameter.</remarks>
public sealed record DecoupledWeightDecay(float? WeightDecay, ParameterPatterns Exclude) : IUpdatePiece
{
    /// <inheritdoc/>
    public IReadOnlyList<string> Slots => [];

    /// <inheritdoc/>
    public T Apply<T>(ITensorMath<T> m, ParameterStep<T> step, T g)
    {
        if (Exclude.Matches(step.Name) || (step.Group?.WeightDecay ?? WeightDecay) is not { } wd) return g;
        step.Parameter = m.Scope("weight_decay", () =>
            m.Sub(step.Parameter, m.Mul(m.Mul(step.Parameter, m.Constant("weight_decay", wd)), step.LearningRate)));
        return g;
    }
}

/// <summary>Keras <c>clipnorm</c> (tf.clip_by_norm per tensor): <c>g * c / max(||g||, c)</c>.</summary>
/// <param name="ClipNorm">The largest L2 norm a gradient tensor keeps.</param>
public sealed record ClipByNorm(float ClipNorm) : IUpdatePiece
{
    /// <inheritdoc/>
    public IReadOnlyList<string> Slots => [];

    /// <inheritdoc/>
    public T Apply<T>(ITensorMath<T> m, ParameterStep<T> step, T g) => m.Scope("clipnorm", () =>
    {
        var c = m.Constant("clipnorm", ClipNorm);
        var norm = m.Sqrt(m.SumOfSquares(g));
        return m.Div(m.Mul(g, c), m.Max(norm, c));
    });
}

/// <summary>Keras <c>clipvalue</c>: each element clipped to [-c, c].</summary>
/// <param name="ClipValue">The largest absolute value an element keeps.</param>
public sealed record ClipByValue(float ClipValue) : IUpdatePiece
{
    /// <inheritdoc/>
    public IReadOnlyList<string> Slots => [];

    /// <inheritdoc/>
    public T Apply<T>(ITensorMath<T> m, ParameterStep<T> step, T g) => m.Scope("clipvalue", () =>
        m.Clip(g, m.Constant("clipvalue_low", -ClipValue), m.Constant("clipvalue_high", ClipValue)));
}

/// <summary>
/// The Adadelta scaling (Zeiler 2012), turning a gradient g into the step delta, as <paramref name="Variant"/>'s
/// framework computes it (A = accum_grad, V = accum_var, c = 1-rho as <see cref="AdadeltaVariants.OneMinusRho"/> rounds it):
/// <code>
/// keras, pytorch: A' = rho*A + c*g*g;      delta = sqrt(V+eps) / sqrt(A'+eps) * g;  V' = rho*V + c*delta*delta
/// tfjs:           A' = A*rho + (g*g)*c;    delta = sqrt(V+eps) / sqrt(A+eps) * g;   V' = V*rho + (delta*delta)*c
/// optax:          A' = c*(g*g) + rho*A;    delta = sqrt(V+eps) / sqrt(A'+eps) * g;  V' = c*(delta*delta) + rho*V
/// </code>
/// Each expression is evaluated left to right in float32. TF.js divides by the accumulator of the previous step.
/// A parameter's group rho and epsilon replace <paramref name="Rho"/> and <paramref name="Epsilon"/>.
/// </summary>
/// <param name="Rho">Decay rate of both running averages.</param>
/// <param name="Epsilon">Added inside both square roots.</param>
/// <param name="Variant">Whose operation order and rounding to reproduce (default Keras).</param>
public sealed record ScaleByAdadelta(float Rho, float Epsilon, AdadeltaVariant Variant = AdadeltaVariant.Keras) : IUpdatePiece
{
    /// <summary>Slot of the running average of squared gradients.</summary>
    public const string AccumGrad = "accum_grad";

    /// <summary>Slot of the running average of squared updates.</summary>
    public const string AccumVar = "accum_var";

    /// <inheritdoc/>
    public IReadOnlyList<string> Slots => [AccumGrad, AccumVar];

    /// <inheritdoc/>
    public T Apply<T>(ITensorMath<T> m, ParameterStep<T> step, T g)
    {
        var r = step.Group?.Rho ?? Rho;
        var rho = m.Constant("rho", r);
        var oneMinusRho = m.Constant("one_minus_rho", AdadeltaVariants.OneMinusRho(Variant, r));
        var eps = m.Constant("epsilon", step.Group?.Epsilon ?? Epsilon);
        var a = step.State[AccumGrad];
        var v = step.State[AccumVar];
        T accumGrad, delta, accumVar;
        switch (Variant)
        {
            case AdadeltaVariant.Tfjs:
                accumGrad = m.Add(m.Mul(a, rho), m.Mul(m.Mul(g, g), oneMinusRho));
                delta = m.Mul(m.Div(m.Sqrt(m.Add(v, eps)), m.Sqrt(m.Add(a, eps))), g);
                accumVar = m.Add(m.Mul(v, rho), m.Mul(m.Mul(delta, delta), oneMinusRho));
                break;
            case AdadeltaVariant.Optax:
                accumGrad = m.Add(m.Mul(oneMinusRho, m.Mul(g, g)), m.Mul(rho, a));
                delta = m.Mul(m.Div(m.Sqrt(m.Add(v, eps)), m.Sqrt(m.Add(accumGrad, eps))), g);
                accumVar = m.Add(m.Mul(oneMinusRho, m.Mul(delta, delta)), m.Mul(rho, v));
                break;
            default:
                accumGrad = m.Add(m.Mul(rho, a), m.Mul(m.Mul(oneMinusRho, g), g));
                delta = m.Mul(m.Div(m.Sqrt(m.Add(v, eps)), m.Sqrt(m.Add(accumGrad, eps))), g);
                accumVar = m.Add(m.Mul(rho, v), m.Mul(m.Mul(oneMinusRho, delta), delta));
                break;
        }
        step.NewState[AccumGrad] = accumGrad;
        step.NewState[AccumVar] = accumVar;
        return delta;
    }
}

/// <summary>The final piece: <c>param = param - lr*delta</c>.</summary>
public sealed record ApplyLearningRate : IUpdatePiece
{
    /// <inheritdoc/>
    public IReadOnlyList<string> Slots => [];

    /// <inheritdoc/>
    public T Apply<T>(ITensorMath<T> m, ParameterStep<T> step, T delta)
    {
        step.NewParameter = m.Sub(step.Parameter, m.Mul(step.LearningRate, delta));
        return delta;
    }
}

/// <summary>
/// Keras 3 <c>gradient_accumulation_steps</c>: on each step the gradient is added to the accumulator; on every N-th step
/// (<c>(iterations + 1) % N == 0</c>) the rest of the chain receives <c>(g + accumulator) / N</c> and the accumulator is
/// reset to zero. On the other steps <see cref="ApplyOnlyEveryNthStep"/> keeps the parameter and the other state.
/// </summary>
/// <param name="Steps">N, the number of gradients per applied update.</param>
public sealed record AccumulateGradients(int Steps) : IUpdatePiece
{
    /// <summary>Slot of the sum of the gradients since the last applied update (Keras's accumulated gradient).</summary>
    public const string Accumulator = "gradient_accumulator";

    /// <inheritdoc/>
    public IReadOnlyList<string> Slots => [Accumulator];

    /// <inheritdoc/>
    public T Apply<T>(ITensorMath<T> m, ParameterStep<T> step, T g) => m.Scope("gradient_accumulation", () =>
    {
        var apply = step.RequireCounter("gradient_accumulation_steps").EveryNth(Steps);
        var sum = m.Add(g, step.State[Accumulator]);
        step.NewState[Accumulator] = m.Where(apply, m.Constant("zero", 0f), sum);
        return m.Div(sum, m.Constant("steps", Steps));
    });
}

/// <summary>
/// With gradient accumulation, after the update: on steps that do not apply (<c>(iterations + 1) % N != 0</c>) the
/// parameter and every state slot but the accumulator keep their values (a select, so the values are exact).
/// </summary>
/// <param name="Steps">N, as in <see cref="AccumulateGradients"/>.</param>
public sealed record ApplyOnlyEveryNthStep(int Steps) : IUpdatePiece
{
    /// <inheritdoc/>
    public IReadOnlyList<string> Slots => [];

    /// <inheritdoc/>
    public T Apply<T>(ITensorMath<T> m, ParameterStep<T> step, T update) => m.Scope("gradient_accumulation", () =>
    {
        var apply = step.RequireCounter("gradient_accumulation_steps").EveryNth(Steps);
        step.NewParameter = m.Where(apply, step.NewParameter ?? throw new InvalidOperationException("No new parameter value to gate."), step.Current);
        foreach (var slot in step.NewState.Keys.Where(s => s != AccumulateGradients.Accumulator).ToList())
            step.NewState[slot] = m.Where(apply, step.NewState[slot], step.State[slot]);
        return update;
    });
}

/// <summary>
/// Keras 3 <c>use_ema</c>, after the parameter update: <c>momentum = (iterations != 0) * ema_momentum</c>,
/// <c>ema = momentum*ema + (1 - momentum)*var</c> (so the first step copies the variable), and with
/// <c>ema_overwrite_frequency</c> F the parameter is replaced by its EMA when <c>(iterations + 1) % F == 0</c>.
/// </summary>
/// <param name="Momentum">The EMA momentum (float32).</param>
/// <param name="OverwriteFrequency">F, or null to never overwrite.</param>
public sealed record MovingAverage(float Momentum, int? OverwriteFrequency) : IUpdatePiece
{
    /// <summary>Slot of the moving average of the parameter.</summary>
    public const string Slot = "ema";

    /// <inheritdoc/>
    public IReadOnlyList<string> Slots => [Slot];

    /// <inheritdoc/>
    public T Apply<T>(ITensorMath<T> m, ParameterStep<T> step, T update) => m.Scope("ema", () =>
    {
        var counter = step.RequireCounter("use_ema");
        var variable = step.NewParameter ?? throw new InvalidOperationException("No new parameter value to average.");
        var momentum = m.Where(counter.IsFirstStep(), m.Constant("zero", 0f), m.Constant("ema_momentum", Momentum));
        var average = m.Add(m.Mul(momentum, step.State[Slot]), m.Mul(m.Sub(m.Constant("one", 1f), momentum), variable));
        step.NewState[Slot] = average;
        if (OverwriteFrequency is { } f) step.NewParameter = m.Where(counter.EveryNth(f), average, variable);
        return update;
    });
}
