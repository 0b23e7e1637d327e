using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;
using OnnxAdadelta.Reference;
using OnnxAdadelta.Runtime;

namespace OnnxAdadelta.Training;

/// <summary>
/// Checks a training-step model against <see cref="ReferenceAdadelta"/>: ONNX Runtime trains; after every step the
/// gradients it computed are fed to the reference, and each parameter and accumulator is compared.
/// </summary>
/// <remarks>
/// float16 and bfloat16 parameters, gradients and state are widened to float32 (exactly) for the reference and the
/// comparison; the reference rounds to the storage dtypes as the graph's casts do (see <see cref="MixedPrecision"/>).
/// </remarks>
public static class NumericsCheck
{
    /// <summary>
    /// Runs <paramref name="steps"/> steps; <paramref name="batchAt"/> gives the batch of a global iteration.
    /// Returns one error report per parameter and per state slot, in model order.
    /// </summary>
    /// <param name="stepModel">A training-step model or checkpoint.</param>
    /// <param name="steps">How many steps to run.</param>
    /// <param name="batchAt">The batch of a global iteration.</param>
    /// <param name="device">Where ONNX Runtime runs.</param>
    /// <param name="resync">
    /// false (default): the reference follows its own trajectory, so rounding differences accumulate over the run.
    /// true: after each comparison the reference takes ONNX Runtime's state, so each step's error is measured alone.
    /// </param>
    /// <param name="update">How the trainer runs the update (<see cref="TrainerOptions.Update"/>); null: the step model's own standard ops, the graph being what the check is about.</param>
    public static IReadOnlyList<TensorError> Run(ModelProto stepModel, int steps,
        Func<long, IReadOnlyDictionary<string, (byte[] Data, long[] Shape)>> batchAt, Device device = Device.Cpu, bool resync = false,
        UpdateMode? update = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(steps);
        var info = StepModelInfo.Read(stepModel, "the model");
        var model = WithGradientOutputs(stepModel, info);
        var inits = StepModelState.Values(model, info);
        var parameters = info.Parameters.ToDictionary(p => p, p => MixedPrecision.ToFloats(inits[p]), StringComparer.Ordinal);
        var types = info.Parameters.ToDictionary(p => p, p => (DataType)inits[p].DataType, StringComparer.Ordinal);
        var reference = new ReferenceAdadelta(info.Optimizer, parameters, inits[info.Iterations.Input].ToInt64Array()[0], types);
        var slots = info.State.Where(s => s.Kind == StateKind.Slot).ToList();
        foreach (var s in slots) reference.SetState(s.Parameter!, s.Slot!, MixedPrecision.ToFloats(inits[s.Input]));

        var tracked = info.State.Where(s => s.Kind != StateKind.Iterations).ToList();
        var errors = tracked.Select(s => new TensorError(s.Input)).ToList();
        using var trainer = new Trainer(model, new TrainerOptions { Device = device, Update = update ?? UpdateMode.Graph, ExtraOutputs = info.Gradients.Values.Distinct().ToList() });
        for (int step = 0; step < steps; step++)
        {
            trainer.Step(batchAt(trainer.Iteration), stateToHost: true);
            reference.Step(info.Gradients.ToDictionary(g => g.Key, g => trainer.ReadOutput(g.Value), StringComparer.Ordinal));
            var actual = trainer.ReadState();
            for (int i = 0; i < tracked.Count; i++)
            {
                var s = tracked[i];
                var expected = s.Kind == StateKind.Parameter ? reference.Parameters[s.Input] : reference.State(s.Parameter!, s.Slot!);
                var value = MixedPrecision.ToFloats(actual[s.Input]);
                errors[i].Add(value, expected);
                if (!resync) continue;
                if (s.Kind == StateKind.Parameter) reference.SetParameter(s.Input, value);
                else reference.SetState(s.Parameter!, s.Slot!, value);
            }
        }
        return errors;
    }

    /// <summary>The step model with each parameter's raw gradient added as a graph output (when not one already).</summary>
    public static ModelProto WithGradientOutputs(ModelProto stepModel, StepModelInfo info)
    {
        var model = stepModel.DeepCopy();
        var outputs = model.Graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        var inits = StepModelState.Values(model, info);
        foreach (var (param, gradient) in info.Gradients)
            if (outputs.Add(gradient))
                model.Graph.Output.Add(TypeProtos.ValueInfo(gradient, (DataType)inits[param].DataType, inits[param].Dims));
        return model;
    }
}
