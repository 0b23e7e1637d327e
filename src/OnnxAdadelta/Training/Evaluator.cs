using Microsoft.ML.OnnxRuntime;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Runtime;

namespace OnnxAdadelta.Training;

/// <summary>
/// Evaluates a live <see cref="Trainer"/> on held-out data: the loss and accuracy (integer class labels) or mean squared
/// error (float targets). The model's inference form (dropout off, BatchNormalization on its running statistics) is
/// made once, with the parameters left as inputs, and one ONNX Runtime session runs it; each evaluation binds the
/// trainer's current parameter buffers directly, so nothing is exported, copied back or reloaded per evaluation.
/// </summary>
/// <remarks>Owns one session; dispose it. Valid for the trainer it was made for, between steps.</remarks>
public sealed class Evaluator : IDisposable
{
    private readonly Trainer _trainer;
    private readonly InferenceSession _session;
    private readonly RunOptions _run = new() { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
    private readonly Onnx.Proto.ModelProto _model;
    private readonly string[] _stateInputs;
    private readonly string[] _dataInputs;
    private readonly long? _ignoreIndex;
    private readonly Dictionary<string, Graphs.LabelCheck> _labels = new(StringComparer.Ordinal);

    /// <summary>
    /// Prepares evaluation of <paramref name="trainer"/>'s model: <paramref name="output"/> (default: the first output
    /// that needs no label) is compared with the label input <paramref name="target"/> (default: the one data input
    /// that only the loss reads).
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">The output or target is not in the model, or the target can't be chosen alone.</exception>
    public Evaluator(Trainer trainer, string? output = null, string? target = null)
    {
        ArgumentNullException.ThrowIfNull(trainer);
        _trainer = trainer;
        var info = trainer.Info;
        var (predictions, labels) = InferenceExport.OutputsAndLabels(trainer.Model, info);
        Output = output ?? predictions.FirstOrDefault(o => o != info.Loss)
            ?? throw new OnnxAdadeltaException($"The model has no output besides the loss '{info.Loss}' to evaluate; add one (for example build-training --output keeps it).");
        if (!info.Outputs.Contains(Output))
            throw new OnnxAdadeltaException($"--output {Output}: the model has no output '{Output}'; outputs: {string.Join(", ", info.Outputs)}.");
        if (target is null)
        {
            if (labels.Count != 1)
                throw new OnnxAdadeltaException(labels.Count == 0
                    ? "The model has no label input (a data input only the loss reads) to compare its output with."
                    : $"The model has several label inputs ({string.Join(", ", labels)}); name the target.");
            target = labels.Single();
        }
        else if (!info.DataInputs.Contains(target))
            throw new OnnxAdadeltaException($"Target '{target}' is not a data input of the model; data inputs: {string.Join(", ", info.DataInputs)}.");
        Target = target;
        foreach (var check in info.LabelChecks(trainer.Model)) _labels.TryAdd(check.Input, check);
        _ignoreIndex = _labels.GetValueOrDefault(target)?.IgnoreIndex;

        var model = InferenceExport.Export(trainer.Model, info, [info.Loss, Output], useEma: false, keepStateInputs: true);
        _model = model;
        var state = info.State.Where(s => s.Kind is StateKind.Parameter or StateKind.Buffer).Select(s => s.Input).ToHashSet(StringComparer.Ordinal);
        _stateInputs = model.Graph.Input.Select(i => i.Name).Where(state.Contains).ToArray();
        _dataInputs = model.Graph.Input.Select(i => i.Name).Where(info.DataInputs.Contains).ToArray();
        using var options = OrtSessions.Options(trainer.Device);
        _session = OrtSessions.Create(model, options, "the evaluation model");
        Loss = info.Loss;
    }

    /// <summary>The output compared with the target.</summary>
    public string Output { get; }

    /// <summary>The data input holding the labels or target values.</summary>
    public string Target { get; }

    /// <summary>The loss output.</summary>
    public string Loss { get; }

    /// <summary>
    /// Evaluates the trainer's current parameters on every row of <paramref name="data"/> (which must hold the model's
    /// data inputs, the target among them), in batches of <paramref name="batchSize"/> rows (or the model's fixed size).
    /// </summary>
    public EvaluationResult Evaluate(Dataset data, int batchSize = 256)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        if (!data.Arrays.TryGetValue(Target, out var targetArray))
            throw new OnnxAdadeltaException($"{data.Source} has no array for the target '{Target}'.");
        var metric = new MetricSum(Output, Target, targetArray.ElementType, data.Source, _ignoreIndex);
        var plan = data.Plan(data.FixedBatchSize is null ? (int)Math.Min(batchSize, data.RowCount) : null, shuffle: false, seed: 0);
        for (long step = 0; step < plan.BatchesPerEpoch; step++)
        {
            var rows = plan.RowsForStep(step);
            using var binding = _session.CreateIoBinding();
            var feeds = new List<OrtValue>();
            byte[]? targetRows = null;
            try
            {
                foreach (var name in _dataInputs)
                {
                    var batch = data.Gather(name, rows);
                    if (name == Target) targetRows = batch.Data;
                    var type = _session.InputMetadata[name].ElementDataType;
                    // Class labels are checked before the loss reads them, as in training (ignore_index honoured).
                    if (_labels.TryGetValue(name, out var labels))
                        labels.Check(batch.Data, type == Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Int32, $"the evaluation (rows {rows[0]} to {rows[^1]})");
                    var value = OrtValues.FromBytes(type, batch.Shape, batch.Data);
                    feeds.Add(value);
                    binding.BindInput(name, value);
                }
                foreach (var name in _stateInputs) binding.BindInput(name, _trainer.CurrentValue(name));
                binding.BindOutputToDevice(Loss, OrtMemoryInfo.DefaultInstance);
                binding.BindOutputToDevice(Output, OrtMemoryInfo.DefaultInstance);
                try { _session.RunWithBinding(_run, binding); }
                catch (OnnxRuntimeException e) { throw OrtErrors.Describe(e, _model, $"the evaluation (rows {rows[0]} to {rows[^1]})"); }
                var names = binding.GetOutputNames();
                using var results = binding.GetOutputValues();
                var loss = results[Array.IndexOf(names, Loss)];
                var lossValues = loss.GetTensorDataAsSpan<float>();
                if (lossValues.Length != 1) throw new OnnxAdadeltaException($"The loss '{Loss}' has {lossValues.Length} elements; a scalar is expected.");
                metric.AddLoss(lossValues[0], rows.Length);
                metric.Add(results[Array.IndexOf(names, Output)], targetRows ?? data.Gather(Target, rows).Data, rows);
            }
            finally { foreach (var v in feeds) v.Dispose(); }
        }
        return metric.Result();
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _run.Dispose();
        _session.Dispose();
    }
}
