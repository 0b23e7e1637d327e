using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;

namespace OnnxAdadelta.Optimizers;

/// <summary>One named tensor in a summary: its role, type and element count.</summary>
/// <param name="Name">The tensor.</param>
/// <param name="Role">data, parameter, gradient, accum_grad, accum_var, iterations, output, loss, learning_rate.</param>
/// <param name="Type">A readable type such as float[batch,64].</param>
/// <param name="Detail">Extra information (the gradient of a parameter, where a state output feeds).</param>
public sealed record SummaryRow(string Name, string Role, string Type, string Detail);

/// <summary>What <c>onnx-adadelta inspect</c> shows: the model's kind, opsets, and its tensors by role.</summary>
/// <param name="Kind">"training-step model", "training graph" or "model".</param>
/// <param name="IrVersion">The IR version.</param>
/// <param name="Opsets">domain:version pairs.</param>
/// <param name="Rows">Tensors by role.</param>
/// <param name="Notes">Lines such as the optimizer arguments, or why the model is not a training graph.</param>
public sealed record ModelSummary(string Kind, long IrVersion, IReadOnlyList<string> Opsets, IReadOnlyList<SummaryRow> Rows, IReadOnlyList<string> Notes)
{
    /// <summary>Summarizes <paramref name="model"/>; errors name it as <paramref name="source"/>.</summary>
    /// <exception cref="OnnxAdadeltaException">A step model whose metadata disagrees with its graph.</exception>
    public static ModelSummary Of(ModelProto model, string source = "the model")
    {
        var index = new GraphIndex(model.Graph);
        var opsets = model.OpsetImport.Select(o => $"{(o.Domain.Length == 0 ? "ai.onnx" : o.Domain)}:{o.Version}").ToList();
        string TypeOf(string n) => index.TypeOf(n).Describe();
        var rows = new List<SummaryRow>();
        var notes = new List<string>();
        if (StepModelInfo.TryRead(model, source) is { } info)
        {
            var o = info.Optimizer;
            notes.Add($"optimizer: {o.Type} variant={AdadeltaVariants.Name(o.Variant)} name={o.Name} learning_rate={o.LearningRate.ToSpec()} rho={o.Rho:R} epsilon={o.Epsilon:R}"
                + (o.ClipNorm is { } cn ? $" clipnorm={cn:R}" : "") + (o.ClipValue is { } cv ? $" clipvalue={cv:R}" : "")
                + (o.GlobalClipNorm is { } gn ? $" global_clipnorm={gn:R}" : "") + (o.LossScaleFactor is { } ls ? $" loss_scale_factor={ls:R}" : "")
                + (o.WeightDecay is { } wd ? $" weight_decay={wd:R}" : "") + (o.L2 is { } l2 ? $" l2={l2:R}" : "")
                + (o.ExcludeFromWeightDecay is { Count: > 0 } ex ? $" exclude_from_weight_decay={string.Join(";", ex)}" : "")
                + (o.Maximize ? " maximize=true" : "") + (o.Decay is { } d ? $" decay={d:R}" : "")
                + (o.UseEma ? $" use_ema=true ema_momentum={o.EmaMomentum ?? AdadeltaOptions.DefaultEmaMomentum:R}" : "") + (o.EmaOverwriteFrequency is { } ef ? $" ema_overwrite_frequency={ef}" : "")
                + (o.GradientAccumulationSteps is { } ga ? $" gradient_accumulation_steps={ga}" : "")
                + (o.Groups is { Count: > 0 } gs ? string.Concat(gs.Select(g => $" group={g.ToSpec()}")) : "")
                + (o.Frozen is { Count: > 0 } fr ? $" frozen={string.Join(";", fr)}" : "")
                + (o.Fp32State ? " fp32_state=true" : "") + (o.MasterWeights ? " master_weights=true" : ""));
            var iterations = StepModelState.Values(model, info)[info.Iterations.Input];
            notes.Add($"iterations: {Onnx.Tensors.ToInt64Array(iterations)[0]}");
            notes.Add(info.State.All(s => s.Initial is not null)
                ? $"state values: format {info.FormatVersion}, in initializers named <input>{StepModelState.InitialSuffix} (the state inputs have none of their own, so any ONNX Runtime binding can feed them)"
                : $"state values: format {info.FormatVersion}, in initializers named as the inputs (train, verify and export upgrade it)");
            rows.AddRange(info.DataInputs.Select(d => new SummaryRow(d, "data", TypeOf(d), "")));
            rows.AddRange(info.Outputs.Select(n => new SummaryRow(n, n == info.Loss ? "loss" : "output", TypeOf(n), "")));
            foreach (var s in info.State)
            {
                var role = s.Kind switch { StateKind.Parameter => "parameter", StateKind.Slot => s.Slot!, StateKind.Buffer => "buffer", _ => "iterations" };
                var detail = s.Kind == StateKind.Parameter ? $"gradient {info.Gradients[s.Input]}; next value {s.Output}" : $"next value {s.Output}";
                rows.Add(new SummaryRow(s.Input, role, TypeOf(s.Input), detail));
            }
            if (info.LearningRateOutput is { } lr)
                rows.Add(new SummaryRow(lr, "learning_rate", TypeOf(lr), "the rate each step applies, read back with the loss"));
            else
                notes.Add("learning rate: no output for it (an older step model); train computes each step's rate on the host");
            return new ModelSummary("training-step model", model.IrVersion, opsets, rows, notes);
        }
        try
        {
            var g = TrainingGraph.Analyze(model);
            rows.AddRange(g.DataInputs.Select(d => new SummaryRow(d, "data", TypeOf(d), "")));
            rows.Add(new SummaryRow(g.Loss, "loss", TypeOf(g.Loss), ""));
            rows.AddRange(g.Parameters.Select(p => new SummaryRow(p.Name, "parameter", TypeOf(p.Name), $"gradient {p.Gradient} {TypeOf(p.Gradient)}")));
            rows.AddRange((g.Info.Buffers ?? []).Select(x => new SummaryRow(x.Input, "buffer", TypeOf(x.Input), $"next value {x.Output}")));
            if (g.Info.StepInput is { } stepInput) rows.Add(new SummaryRow(stepInput, "step", TypeOf(stepInput), "fed from the iteration counter by the rewrite"));
            return new ModelSummary("training graph", model.IrVersion, opsets, rows, notes);
        }
        catch (OnnxAdadeltaException e)
        {
            notes.Add($"not a training graph: {e.Message}");
            rows.AddRange(model.Graph.Input.Where(i => !index.Initializers.ContainsKey(i.Name)).Select(i => new SummaryRow(i.Name, "input", TypeOf(i.Name), "")));
            rows.AddRange(model.Graph.Initializer.Select(t => new SummaryRow(t.Name, "initializer", TypeOf(t.Name), "")));
            rows.AddRange(model.Graph.Output.Select(o => new SummaryRow(o.Name, "output", TypeOf(o.Name), "")));
            return new ModelSummary("model", model.IrVersion, opsets, rows, notes);
        }
    }
}
