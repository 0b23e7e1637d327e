using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Optimizers;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;
using OnnxAdadelta.Runtime;

namespace OnnxAdadelta.Training;

/// <summary>How well a model does on a dataset.</summary>
/// <param name="Rows">Rows evaluated.</param>
/// <param name="Output">The output compared with the target.</param>
/// <param name="Accuracy">For integer class targets: the share of rows whose arg-max over axis 1 equals the label.</param>
/// <param name="MeanSquaredError">For float targets: the mean squared error.</param>
public sealed record EvaluationResult(long Rows, string Output, double? Accuracy, double? MeanSquaredError)
{
    /// <summary>The mean loss over the rows (each batch's loss weighted by its rows), when evaluated on a trainer (<see cref="Evaluator"/>).</summary>
    public double? Loss { get; init; }

    /// <summary>The metrics by name, prefixed (by default <c>val_loss</c>, <c>val_accuracy</c>, <c>val_mse</c>); those not computed are left out.</summary>
    public IReadOnlyDictionary<string, double> Metrics(string prefix = "val_")
    {
        ArgumentNullException.ThrowIfNull(prefix);
        var m = new Dictionary<string, double>(StringComparer.Ordinal);
        if (Loss is { } l) m[prefix + "loss"] = l;
        if (Accuracy is { } a) m[prefix + "accuracy"] = a;
        if (MeanSquaredError is { } e) m[prefix + "mse"] = e;
        return m;
    }
}

/// <summary>Runs an inference model over a dataset and compares one output with a target array.</summary>
public static class Evaluation
{
    /// <summary>
    /// Evaluates <paramref name="model"/> (an inference model; a checkpoint or step model is exported first) on the
    /// arrays of <paramref name="npzPath"/> (any form <see cref="DataFiles"/> reads): the model's inputs are fed from the arrays of the same names, and
    /// <paramref name="output"/> (default: the first output) is compared with the array <paramref name="target"/>.
    /// Only the arrays the model and the target need are read.
    /// </summary>
    public static EvaluationResult Run(ModelProto model, string npzPath, string target, string? output = null, int batchSize = 256)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(npzPath);
        var (inference, outputName, inputs, ignoreIndex) = Prepare(model, output, target);
        var arrays = DataFiles.Read(npzPath, [.. inputs, new InputSpec(target, DataType.Undefined, null)], out var names);
        return Run(inference, outputName, inputs, arrays, names, target, batchSize, npzPath, ignoreIndex);
    }

    /// <summary>
    /// Evaluates <paramref name="model"/> on arrays in memory, keyed by input name (the target among them);
    /// <paramref name="source"/> names them in errors. Otherwise as <see cref="Run(ModelProto, string, string, string?, int)"/>.
    /// </summary>
    public static EvaluationResult Run(ModelProto model, IReadOnlyDictionary<string, DataArray> arrays, string target, string? output = null,
        int batchSize = 256, string source = "the arrays")
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(arrays);
        var (inference, outputName, inputs, ignoreIndex) = Prepare(model, output, target);
        return Run(inference, outputName, inputs, arrays, arrays.Keys.ToList(), target, batchSize, source, ignoreIndex);
    }

    // A step model (or checkpoint) is exported first; it says which label its loss ignores, which the exported
    // inference model no longer does.
    private static (ModelProto Model, string Output, List<InputSpec> Inputs, long? IgnoreIndex) Prepare(ModelProto model, string? output, string target)
    {
        long? ignoreIndex = null;
        if (StepModelInfo.TryRead(model) is { } info)
        {
            ignoreIndex = info.LabelChecks(model).FirstOrDefault(c => c.Input == target)?.IgnoreIndex;
            model = InferenceExport.Export(model, info);
        }
        var index = new GraphIndex(model.Graph);
        output ??= model.Graph.Output[0].Name;
        if (!index.Outputs.ContainsKey(output))
            throw new OnnxAdadeltaException($"--output {output}: the model has no output '{output}'; outputs: {string.Join(", ", index.Outputs.Keys)}.");
        var inputs = model.Graph.Input.Where(i => !index.Initializers.ContainsKey(i.Name))
            .Select(i => new InputSpec(i.Name, i.Type.ElementType(), i.Type.Dims())).ToList();
        return (model, output, inputs, ignoreIndex);
    }

    private static EvaluationResult Run(ModelProto model, string output, List<InputSpec> inputs, IReadOnlyDictionary<string, DataArray> arrays,
        IReadOnlyList<string> names, string target, int batchSize, string source, long? ignoreIndex)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        var data = Dataset.Build(source, inputs, arrays, names);
        if (!arrays.TryGetValue(target, out var labels))
            throw new OnnxAdadeltaException($"{source} has no target array '{target}'; it has: {string.Join(", ", names)}.");
        if (labels.Shape.Length == 0 || labels.RowCount != data.RowCount)
            throw new OnnxAdadeltaException($"Target '{target}' has shape {labels.ShapeText}; {data.RowCount} rows are expected.");
        var metric = new MetricSum(output, target, labels.ElementType, source, ignoreIndex);

        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        using var session = OrtSessions.Create(model, options);
        using var runOptions = new RunOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        var plan = data.Plan(data.FixedBatchSize is null ? (int)Math.Min(batchSize, data.RowCount) : null, shuffle: false, seed: 0);
        var labelBytes = labels.Data;
        int labelRowBytes = (int)(labelBytes.LongLength / labels.RowCount);
        for (long step = 0; step < plan.BatchesPerEpoch; step++)
        {
            var rowsOfBatch = plan.RowsForStep(step);
            var feeds = inputs.Select(i => (i.Name, Batch: data.Gather(i.Name, rowsOfBatch))).ToList();
            var values = feeds.Select(f => OrtValues.FromBytes(session.InputMetadata[f.Name].ElementDataType, f.Batch.Shape, f.Batch.Data)).ToList();
            try
            {
                IDisposableReadOnlyCollection<OrtValue> results;
                try { results = session.Run(runOptions, feeds.Select(f => f.Name).ToArray(), values, [output]); }
                catch (OnnxRuntimeException e) { throw OrtErrors.Describe(e, model, $"the evaluation (rows {rowsOfBatch[0]} to {rowsOfBatch[^1]})"); }
                using var owned = results;
                var targetRows = new byte[rowsOfBatch.Length * labelRowBytes];
                for (int r = 0; r < rowsOfBatch.Length; r++)
                    Array.Copy(labelBytes, rowsOfBatch[r] * labelRowBytes, targetRows, r * labelRowBytes, labelRowBytes);
                metric.Add(results[0], targetRows, rowsOfBatch);
            }
            finally { foreach (var v in values) v.Dispose(); }
        }
        return metric.Result();
    }
}

/// <summary>Sums accuracy (integer class targets) or squared error (float targets) over batches, and the loss when given.</summary>
internal sealed class MetricSum
{
    private readonly string _output;
    private readonly string _target;
    private readonly DataType _targetType;
    private readonly string _source;
    private readonly long? _ignoreIndex;
    private long _rows, _counted, _correct, _values;
    private double _squared, _loss;
    private bool _hasLoss;

    /// <param name="output">The output compared with the target.</param>
    /// <param name="target">The target array's name.</param>
    /// <param name="targetType">Its element type: integer class labels (accuracy) or float values (squared error).</param>
    /// <param name="source">Names the data in errors (a file, or "the arrays").</param>
    /// <param name="ignoreIndex">A class label the loss ignores: such rows are neither checked nor counted in the accuracy.</param>
    public MetricSum(string output, string target, DataType targetType, string source, long? ignoreIndex = null)
    {
        if (targetType is not (DataType.Int64 or DataType.Int32 or DataType.Float))
            throw new OnnxAdadeltaException($"Target '{target}' is {NpyDTypes.Name(targetType)}; expected int64/int32 class labels or float32 values.");
        _output = output;
        _target = target;
        _targetType = targetType;
        _source = source;
        _ignoreIndex = ignoreIndex;
    }

    private bool Classes => _targetType != DataType.Float;

    /// <summary>Adds a batch loss (a mean over its rows).</summary>
    public void AddLoss(double loss, int rows)
    {
        _loss += loss * rows;
        _hasLoss = true;
    }

    /// <summary>
    /// Adds one batch: the model's output (host memory) and the target's raw bytes for the same rows, whose indices in the
    /// data are <paramref name="rowIds"/> (for errors). A class label outside [0, classes) that is not the ignore index is
    /// an error naming the row.
    /// </summary>
    public void Add(OrtValue outputValue, ReadOnlySpan<byte> target, IReadOnlyList<long> rowIds)
    {
        int rows = rowIds.Count;
        var info = outputValue.GetTensorTypeAndShape();
        var shape = info.Shape;
        float[] y = info.ElementDataType switch
        {
            TensorElementType.Float => outputValue.GetTensorDataAsSpan<float>().ToArray(),
            TensorElementType.Float16 => MixedPrecision.ToFloats(Tensors.FromRawBytes(_output, DataType.Float16, shape, outputValue.GetTensorMutableRawData())),
            TensorElementType.BFloat16 => MixedPrecision.ToFloats(Tensors.FromRawBytes(_output, DataType.Bfloat16, shape, outputValue.GetTensorMutableRawData())),
            var other => throw new OnnxAdadeltaException($"Output '{_output}' is {other}; a float output is expected to compare with '{_target}'."),
        };
        if (Classes)
        {
            if (shape.Length < 2 || shape[0] != rows)
                throw new OnnxAdadeltaException($"Output '{_output}' has shape [{string.Join(",", shape)}]; class scores [rows, classes] are expected for accuracy.");
            var labels = _targetType == DataType.Int64
                ? MemoryMarshal.Cast<byte, long>(target).ToArray()
                : MemoryMarshal.Cast<byte, int>(target).ToArray().Select(v => (long)v).ToArray();
            if (labels.Length != rows)
                throw new OnnxAdadeltaException($"Target '{_target}' has {labels.Length / Math.Max(1, rows)} labels per row; accuracy needs one class label per row.");
            int width = y.Length / rows;
            long classCount = shape[1];
            for (int r = 0; r < rows; r++)
            {
                long label = labels[r];
                if (label == _ignoreIndex) continue;
                if (label < 0 || label >= classCount)
                    throw new OnnxAdadeltaException(
                        $"{_source}: target '{_target}' row {rowIds[r]} holds label {label}, out of bounds; expected a class in [0, {classCount}) " +
                        $"(output '{_output}' has {classCount} classes on axis 1){(_ignoreIndex is { } ignore ? $" or the ignore_index {ignore}" : "")}.");
                _counted++;
                var row = y.AsSpan(r * width, width);
                int best = 0;
                for (int k = 1; k < row.Length; k++) if (row[k] > row[best]) best = k;
                if (best == labels[r]) _correct++;
            }
        }
        else
        {
            var values = MemoryMarshal.Cast<byte, float>(target);
            if (y.Length != values.Length)
                throw new OnnxAdadeltaException($"Output '{_output}' has {y.Length} values for {rows} rows; target '{_target}' has {values.Length / Math.Max(1, rows)} per row.");
            for (int i = 0; i < y.Length; i++)
            {
                double d = y[i] - values[i];
                _squared += d * d;
            }
            _values += values.Length;
        }
        _rows += rows;
    }

    /// <summary>The metrics over every batch added.</summary>
    /// <exception cref="OnnxAdadeltaException">Every label was the ignore index: there is no row to score.</exception>
    public EvaluationResult Result()
    {
        if (Classes && _counted == 0 && _rows > 0)
            throw new OnnxAdadeltaException($"{_source}: every label of target '{_target}' is the ignore_index {_ignoreIndex}; no row to evaluate.");
        return (Classes
            ? new EvaluationResult(_counted, _output, (double)_correct / _counted, null)
            : new EvaluationResult(_rows, _output, null, _squared / _values)) with { Loss = _hasLoss ? _loss / _rows : null };
    }
}
