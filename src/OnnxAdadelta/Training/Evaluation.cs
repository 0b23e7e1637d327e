using Microsoft.ML.OnnxRuntime;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Optimizers;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;
using OnnxAdadelta.Runtime;

namespace OnnxAdadelta.Training;

/// <summary>How well a model does on a dataset.</summary>
/// <param name="Rows">Rows evaluated (a row whose class label is the loss's ignore_index is skipped).</param>
/// <param name="Output">The output compared with the target.</param>
/// <param name="Accuracy">For integer class targets: the share of rows whose arg-max over axis 1 equals the label.</param>
/// <param name="MeanSquaredError">For float targets: the mean squared error.</param>
public sealed record EvaluationResult(long Rows, string Output, double? Accuracy, double? MeanSquaredError);

/// <summary>Runs an inference model over a dataset and compares one output with a target array.</summary>
public static class Evaluation
{
    /// <summary>
    /// Evaluates <paramref name="model"/> (an inference model; a checkpoint or step model is exported first) on the
    /// arrays of <paramref name="npzPath"/> (any form <see cref="DataFiles"/> reads): the model's inputs are fed from the arrays of the same names, and
    /// <paramref name="output"/> (default: the first output) is compared with the array <paramref name="target"/>.
    /// </summary>
    public static EvaluationResult Run(ModelProto model, string npzPath, string target, string? output = null, int batchSize = 256)
    {
        // A step model (or checkpoint) says which label its loss ignores; the exported inference model no longer does.
        long? ignoreIndex = null;
        if (StepModelInfo.TryRead(model) is { } stepInfo)
        {
            ignoreIndex = stepInfo.LabelChecks(model).FirstOrDefault(c => c.Input == target)?.IgnoreIndex;
            model = InferenceExport.Export(model);
        }
        var index = new GraphIndex(model.Graph);
        output ??= model.Graph.Output[0].Name;
        if (!index.Outputs.ContainsKey(output))
            throw new OnnxAdadeltaException($"--output {output}: the model has no output '{output}'; outputs: {string.Join(", ", index.Outputs.Keys)}.");
        var inputs = model.Graph.Input.Where(i => !index.Initializers.ContainsKey(i.Name))
            .Select(i => new InputSpec(i.Name, i.Type.ElementType(), i.Type.Dims())).ToList();
        // Only the arrays the model and the target need are read: others may be large, or of types this library can't read.
        var arrays = DataFiles.Read(npzPath, [.. inputs, new InputSpec(target, DataType.Undefined, null)], out var names);
        var data = Dataset.FromArrays(arrays, inputs, npzPath);
        if (!arrays.TryGetValue(target, out var labels))
            throw new OnnxAdadeltaException($"{npzPath} has no target array '{target}'; it has: {string.Join(", ", names)}.");
        if (labels.Shape.Length == 0 || labels.RowCount != data.RowCount)
            throw new OnnxAdadeltaException($"Target '{target}' has shape {labels.ShapeText}; {data.RowCount} rows are expected.");

        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        using var session = OrtSessions.Create(model, options);
        using var runOptions = new RunOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        var plan = data.Plan(data.FixedBatchSize is null ? (int)Math.Min(batchSize, data.RowCount) : null, shuffle: false, seed: 0);
        long correct = 0, rows = 0;
        double squared = 0;
        bool classes = labels.ElementType is DataType.Int64 or DataType.Int32;
        if (!classes && labels.ElementType != DataType.Float)
            throw new OnnxAdadeltaException($"Target '{target}' is {labels.TypeName}; expected int64/int32 class labels or float32 values.");
        var flatLabels = classes ? (labels.ElementType == DataType.Int64 ? labels.ToInt64Array() : labels.ToInt32Array().Select(v => (long)v).ToArray()) : null;
        var flatValues = classes ? null : labels.ToFloatArray();
        long valuesPerRow = labels.ElementCount / Math.Max(1, labels.RowCount);
        for (long step = 0; step < plan.BatchesPerEpoch; step++)
        {
            var rowsOfBatch = plan.RowsForStep(step);
            var feeds = inputs.Select(i => (i.Name, Batch: data.Gather(i.Name, rowsOfBatch))).ToList();
            var values = feeds.Select(f => ToOrtValue(f.Batch, session.InputMetadata[f.Name].ElementDataType)).ToList();
            try
            {
                IDisposableReadOnlyCollection<OrtValue> results;
                try { results = session.Run(runOptions, feeds.Select(f => f.Name).ToArray(), values, [output]); }
                catch (OnnxRuntimeException e) { throw OrtErrors.Describe(e, model, $"the evaluation (rows {rowsOfBatch[0]} to {rowsOfBatch[^1]})"); }
                using var owned = results;
                var y = results[0].GetTensorDataAsSpan<float>();
                var shape = results[0].GetTensorTypeAndShape().Shape;
                if (classes)
                {
                    if (shape.Length < 2 || shape[0] != rowsOfBatch.Length)
                        throw new OnnxAdadeltaException($"Output '{output}' has shape [{string.Join(",", shape)}]; class scores [rows, classes] are expected for accuracy.");
                    int width = (int)(y.Length / rowsOfBatch.Length);
                    long classCount = shape[1];
                    for (int r = 0; r < rowsOfBatch.Length; r++)
                    {
                        long label = flatLabels![rowsOfBatch[r]];
                        if (label == ignoreIndex) continue;
                        if (label < 0 || label >= classCount)
                            throw new OnnxAdadeltaException(
                                $"{npzPath}: target '{target}' row {rowsOfBatch[r]} holds label {label}, out of bounds; expected a class in [0, {classCount}) " +
                                $"(output '{output}' has {classCount} classes on axis 1){(ignoreIndex is { } ignore ? $" or the ignore_index {ignore}" : "")}.");
                        rows++;
                        var row = y.Slice(r * width, width);
                        int best = 0;
                        for (int k = 1; k < row.Length; k++) if (row[k] > row[best]) best = k;
                        if (best == label) correct++;
                    }
                }
                else
                {
                    if (y.Length != rowsOfBatch.Length * valuesPerRow)
                        throw new OnnxAdadeltaException($"Output '{output}' has {y.Length} values for {rowsOfBatch.Length} rows; target '{target}' has {valuesPerRow} per row.");
                    for (int r = 0; r < rowsOfBatch.Length; r++)
                        for (int k = 0; k < valuesPerRow; k++)
                        {
                            double d = y[(int)(r * valuesPerRow + k)] - flatValues![rowsOfBatch[r] * valuesPerRow + k];
                            squared += d * d;
                        }
                    rows += rowsOfBatch.Length;
                }
            }
            finally { foreach (var v in values) v.Dispose(); }
        }
        if (classes && rows == 0)
            throw new OnnxAdadeltaException($"{npzPath}: every label of target '{target}' is the ignore_index {ignoreIndex}; no row to evaluate.");
        return classes
            ? new EvaluationResult(rows, output, (double)correct / rows, null)
            : new EvaluationResult(rows, output, null, squared / (rows * valuesPerRow));
    }

    private static OrtValue ToOrtValue((byte[] Data, long[] Shape) batch, Microsoft.ML.OnnxRuntime.Tensors.TensorElementType type)
    {
        var value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, type, batch.Shape);
        batch.Data.CopyTo(value.GetTensorMutableRawData());
        return value;
    }
}
