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
        ("defaults", new AdadeltaOptions(learningRate: 1.0)),
        ("keras defaults", new AdadeltaOptions()),
        ("rho, epsilon", new AdadeltaOptions(0.5, rho: 0.9, epsilon: 1e-6)),
        ("schedule", new AdadeltaOptions(LearningRateSchedules.Parse("cosine:initial=1.0,decay_steps=5,alpha=0.1"))),
        ("legacy decay", new AdadeltaOptions(learningRate: 1.0, decay: 0.3)),
        ("clipvalue", new AdadeltaOptions(learningRate: 1.0, clipValue: 0.05)),
        ("maximize", new AdadeltaOptions(learningRate: 1.0, maximize: true)),
        ("loss scale", new AdadeltaOptions(learningRate: 1.0, lossScaleFactor: 1000)),
        ("weight decay, excluded b", new AdadeltaOptions(learningRate: 1.0, weightDecay: 0.1, excludeFromWeightDecay: ["b"])),
        ("l2", new AdadeltaOptions(learningRate: 1.0, l2: 0.1)),
        ("groups", new AdadeltaOptions(learningRate: 1.0, groups: [new ParameterGroup("b", learningRate: 0.25, rho: 0.8, epsilon: 1e-5, weightDecay: 0.02)])),
        ("scheduled groups", new AdadeltaOptions(LearningRateSchedules.Parse("piecewise:boundaries=2,values=1.0;0.5"), groups: [new ParameterGroup("W", l2: 0.01)])),
        ("ema", new AdadeltaOptions(learningRate: 1.0, useEma: true, emaMomentum: 0.9, emaOverwriteFrequency: 3)),
        ("accumulation", new AdadeltaOptions(learningRate: 1.0, gradientAccumulationSteps: 3)),
        ("everything", new AdadeltaOptions(learningRate: 1.0, clipValue: 0.5, maximize: true, lossScaleFactor: 8, weightDecay: 0.05, l2: 0.01,
            excludeFromWeightDecay: ["b"], decay: 0.1, useEma: true, emaMomentum: 0.95, emaOverwriteFrequency: 5, gradientAccumulationSteps: 2)),
    ];
}
