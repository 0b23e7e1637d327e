using System.CommandLine;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Graphs;

namespace OnnxAdadelta.Cli;

/// <summary>The Adadelta and rewrite flags that <c>rewrite</c> and <c>train</c> share.</summary>
public sealed class AdadeltaFlags
{
    private readonly Option<string?> _preset = new("--preset") { Description = "Defaults for --lr, --rho, --epsilon: keras (0.001, 0.95, 1e-7), pytorch (1.0, 0.9, 1e-6) or paper (1.0, 0.95, 1e-6); explicit flags override." };
    private readonly Option<string?> _variant = new("--variant") { Description = "Whose Adadelta to reproduce exactly: keras (default), pytorch, tfjs or optax; also sets that framework's defaults for --lr, --rho, --epsilon when --preset is not given." };
    private readonly Option<double?> _lr = new("--lr") { Description = "Learning rate (default 0.001)." };
    private readonly Option<double?> _rho = new("--rho") { Description = "Decay rate of the running averages (default 0.95)." };
    private readonly Option<double?> _epsilon = new("--epsilon") { Description = "Epsilon inside the square roots (default 1e-7)." };
    private readonly Option<string?> _name = new("--name") { Description = "Prefix of inserted nodes and state tensors (default Adadelta)." };
    private readonly Option<double?> _clipNorm = new("--clipnorm") { Description = "Rescale each gradient tensor to at most this L2 norm." };
    private readonly Option<double?> _clipValue = new("--clipvalue") { Description = "Clip each gradient element to [-v, v]." };
    private readonly Option<double?> _globalClipNorm = new("--global-clipnorm") { Description = "Rescale all gradients together to at most this global L2 norm." };
    private readonly Option<double?> _weightDecay = new("--weight-decay") { Description = "Decoupled weight decay (Keras 3): var -= var*wd*lr before each update." };
    private readonly Option<double?> _l2 = new("--l2") { Description = "Coupled L2 weight decay (PyTorch weight_decay): g += wd*var before the update." };
    private readonly Option<string[]> _exclude = new("--exclude-from-weight-decay") { Description = "PATTERN: parameters whose name contains it ('*' matches anything) are not decayed; repeatable.", Arity = ArgumentArity.ZeroOrMore };
    private readonly Option<bool> _maximize = new("--maximize") { Description = "Maximize the loss: negate the gradient first (PyTorch maximize)." };
    private readonly Option<double?> _decay = new("--decay") { Description = "TF 2.4 legacy decay: lr / (1 + decay*iterations)." };
    private readonly Option<double?> _lossScale = new("--loss-scale-factor") { Description = "Divide gradients by this factor before clipping (Keras 3 loss_scale_factor)." };
    private readonly Option<bool> _useEma = new("--use-ema") { Description = "Keep an exponential moving average of each parameter as state (Keras 3 use_ema); export it with 'export --ema'." };
    private readonly Option<double?> _emaMomentum = new("--ema-momentum") { Description = "EMA momentum in [0, 1] (default 0.99; needs --use-ema)." };
    private readonly Option<int?> _emaOverwrite = new("--ema-overwrite-frequency") { Description = "Overwrite the parameters with their EMA every N steps (needs --use-ema)." };
    private readonly Option<int?> _accumulation = new("--gradient-accumulation-steps") { Description = "Apply the mean of N micro-batch gradients every N steps (Keras 3 gradient_accumulation_steps)." };
    private readonly Option<string[]> _group = new("--group") { Description = "PATTERN:key=value,... a parameter group with its own lr, rho, epsilon, weight_decay, l2 (or frozen); the first matching group wins; repeatable.", Arity = ArgumentArity.ZeroOrMore };
    private readonly Option<string[]> _frozen = BuildTrainingFlags.FreezeOption();
    private readonly Option<bool> _fp32State = new("--fp32-state") { Description = "Keep the optimizer state of float16/bfloat16 parameters in float32 (default: the parameter's dtype, as Keras)." };
    private readonly Option<bool> _masterWeights = new("--master-weights") { Description = "Keep a float32 master copy of each float16/bfloat16 parameter; the update applies to it and the parameter is its cast (PyTorch AMP master weights)." };
    private readonly Option<string?> _schedule = new("--schedule") { Description = "Learning-rate schedule, e.g. exponential:initial=1.0,decay_steps=100,decay_rate=0.96 (see README)." };
    private readonly Option<string[]> _grad = new("--grad") { Description = "PARAM=OUTPUT: the gradient of PARAM (default: output PARAM_grad).", Arity = ArgumentArity.ZeroOrMore };
    private readonly Option<string?> _params = new("--params") { Description = "An ONNX model whose initializers supply parameter values." };
    private readonly Option<bool> _keepGradients = new("--keep-gradients") { Description = "Keep the gradient outputs in the step model." };

    private Option[] All => [_variant, _preset, _lr, _rho, _epsilon, _name, _clipNorm, _clipValue, _globalClipNorm, _weightDecay, _l2, _exclude,
        _maximize, _decay, _lossScale, _useEma, _emaMomentum, _emaOverwrite, _accumulation, _group, _frozen, _fp32State, _masterWeights, _schedule, _grad, _params, _keepGradients];

    /// <summary>The <c>--freeze</c> flag, which <see cref="BuildTrainingFlags"/> shares on <c>train</c>.</summary>
    public Option<string[]> Freeze => _frozen;

    /// <summary>Adds the flags to <paramref name="command"/>.</summary>
    public void AddTo(Command command)
    {
        foreach (var o in All) command.Options.Add(o);
    }

    /// <summary>Whether any optimizer or rewrite flag was given.</summary>
    public bool AnyGiven(ParseResult r) => All.Any(o => r.GetResult(o) is { Implicit: false });

    private Option[] Changeable => [_lr, _rho, _epsilon, _schedule, _weightDecay];

    /// <summary>The first flag given that a resumed step model can't change (all but those <see cref="Changed"/> takes), or null.</summary>
    public string? FixedFlagGiven(ParseResult r) => All.Except(Changeable).FirstOrDefault(o => r.GetResult(o) is { Implicit: false })?.Name;

    /// <summary>
    /// The options of a step model resumed with new settings: <paramref name="current"/> with the --lr (or --schedule),
    /// --rho, --epsilon and --weight-decay given; null when none of them is given.
    /// </summary>
    public AdadeltaOptions? Changed(ParseResult r, AdadeltaOptions current)
    {
        ArgumentNullException.ThrowIfNull(current);
        if (!Changeable.Any(o => r.GetResult(o) is { Implicit: false })) return null;
        var lr = r.GetValue(_lr);
        var schedule = r.GetValue(_schedule);
        if (lr is not null && schedule is not null)
            throw new ArgumentException("--lr and --schedule cannot both be given: the schedule sets the learning rate.");
        ILearningRateSchedule rate = schedule is not null ? LearningRateSchedules.Parse(schedule)
            : lr is { } v ? new ConstantLearningRate(v) : current.LearningRate;
        return (current with
        {
            LearningRate = rate,
            Rho = r.GetValue(_rho) ?? current.Rho,
            Epsilon = r.GetValue(_epsilon) ?? current.Epsilon,
            WeightDecay = r.GetValue(_weightDecay) ?? current.WeightDecay,
        }).Validate();
    }

    /// <summary>The optimizer arguments; invalid values throw <see cref="ArgumentException"/> naming them.</summary>
    public AdadeltaOptions Options(ParseResult r)
    {
        var lr = r.GetValue(_lr);
        var schedule = r.GetValue(_schedule);
        if (lr is not null && schedule is not null)
            throw new ArgumentException("--lr and --schedule cannot both be given: the schedule sets the learning rate.");
        var variant = r.GetValue(_variant) is { } v ? AdadeltaVariants.Parse(v) : AdadeltaVariant.Keras;
        var preset = r.GetValue(_preset) is { } p ? AdadeltaPreset.Parse(p) : null;
        var defaults = AdadeltaVariants.Defaults(variant);
        if (lr is null && schedule is null && preset is null && defaults.LearningRate is null)
            throw new ArgumentException($"--variant {AdadeltaVariants.Name(variant)} has no default learning rate (optax.adadelta needs one): give --lr or --schedule.");
        ILearningRateSchedule rate = schedule is not null ? LearningRateSchedules.Parse(schedule)
            : new ConstantLearningRate(lr ?? preset?.LearningRate ?? defaults.LearningRate!.Value);
        return new AdadeltaOptions
        {
            LearningRate = rate,
            Rho = r.GetValue(_rho) ?? preset?.Rho ?? defaults.Rho,
            Epsilon = r.GetValue(_epsilon) ?? preset?.Epsilon ?? defaults.Epsilon,
            Name = r.GetValue(_name) ?? AdadeltaOptions.DefaultName,
            ClipNorm = r.GetValue(_clipNorm),
            ClipValue = r.GetValue(_clipValue),
            GlobalClipNorm = r.GetValue(_globalClipNorm),
            WeightDecay = r.GetValue(_weightDecay),
            L2 = r.GetValue(_l2),
            ExcludeFromWeightDecay = r.GetValue(_exclude) ?? [],
            Maximize = r.GetValue(_maximize),
            Decay = r.GetValue(_decay),
            LossScaleFactor = r.GetValue(_lossScale),
            UseEma = r.GetValue(_useEma),
            EmaMomentum = r.GetValue(_emaMomentum),
            EmaOverwriteFrequency = r.GetValue(_emaOverwrite),
            GradientAccumulationSteps = r.GetValue(_accumulation),
            Groups = (r.GetValue(_group) ?? []).Select(ParameterGroup.Parse).ToList(),
            Frozen = r.GetValue(_frozen) ?? [],
            Fp32State = r.GetValue(_fp32State),
            MasterWeights = r.GetValue(_masterWeights),
            Variant = variant,
        }.Validate();
    }

    /// <summary>How the rewrite finds gradients and parameter values.</summary>
    public RewriteOptions Rewrite(ParseResult r)
    {
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in r.GetValue(_grad) ?? [])
        {
            var eq = pair.IndexOf('=');
            if (eq <= 0 || eq == pair.Length - 1) throw new ArgumentException($"--grad {pair}: expected PARAM=OUTPUT.");
            if (!map.TryAdd(pair[..eq], pair[(eq + 1)..])) throw new ArgumentException($"--grad names parameter '{pair[..eq]}' twice.");
        }
        return new RewriteOptions
        {
            Gradients = map,
            ParameterValues = r.GetValue(_params) is { } path ? ModelIO.Load(path, CliApp.LoadOptionsOf(r)) : null,
            KeepGradients = r.GetValue(_keepGradients),
        };
    }
}
