using OnnxAdadelta.Optimizers;

namespace OnnxAdadelta.Bench;

/// <summary>
/// The optimizer option combinations the fused update is verified on, bit for bit against the reference: by the unit
/// tests and by <c>--check</c>. Each element-wise option appears, alone and combined; clipnorm and global_clipnorm are
/// not here because they run as the graph's standard ops (the fused op refuses them).
/// </summary>
public static class OptionCases
{
    /// <summary>Name and options of each case.</summary>
    public static IReadOnlyList<(string Name, AdadeltaOptions Options)> All { get; } =
    [
        ("defaults", new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) }),
        ("keras defaults", new AdadeltaOptions()),
        ("rho, epsilon", new AdadeltaOptions { LearningRate = new ConstantLearningRate(0.5), Rho = 0.9, Epsilon = 1e-6 }),
        ("schedule", new AdadeltaOptions { LearningRate = LearningRateSchedules.Parse("cosine:initial=1.0,decay_steps=5,alpha=0.1") }),
        ("legacy decay", new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), Decay = 0.3 }),
        ("clipvalue", new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), ClipValue = 0.05 }),
        ("maximize", new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), Maximize = true }),
        ("loss scale", new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), LossScaleFactor = 1000 }),
        ("weight decay, excluded b", new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), WeightDecay = 0.1, ExcludeFromWeightDecay = ["b"] }),
        ("l2", new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), L2 = 0.1 }),
        ("groups", new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), Groups = [new ParameterGroup("b", learningRate: 0.25, rho: 0.8, epsilon: 1e-5, weightDecay: 0.02)] }),
        ("scheduled groups", new AdadeltaOptions { LearningRate = LearningRateSchedules.Parse("piecewise:boundaries=2,values=1.0;0.5"), Groups = [new ParameterGroup("W", l2: 0.01)] }),
        ("ema", new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), UseEma = true, EmaMomentum = 0.9, EmaOverwriteFrequency = 3 }),
        ("accumulation", new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), GradientAccumulationSteps = 3 }),
        ("everything", new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0), ClipValue = 0.5, Maximize = true, LossScaleFactor = 8, WeightDecay = 0.05, L2 = 0.01, ExcludeFromWeightDecay = ["b"], Decay = 0.1, UseEma = true, EmaMomentum = 0.95, EmaOverwriteFrequency = 5, GradientAccumulationSteps = 2 }),
    ];
}
