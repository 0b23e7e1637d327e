using System.Diagnostics;
using System.Globalization;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;

namespace OnnxAdadelta.Training;

/// <summary>How a training run feeds data.</summary>
public sealed record TrainingRunOptions
{
    /// <summary>Steps to run (optimizer updates).</summary>
    public required int Steps { get; init; }

    /// <summary>Rows per batch; null for the whole dataset (or the model's fixed batch size).</summary>
    public int? BatchSize { get; init; }

    /// <summary>Shuffle the rows each epoch.</summary>
    public bool Shuffle { get; init; }

    /// <summary>Seed of the shuffle.</summary>
    public int Seed { get; init; }
}

/// <summary>What one finished step reports.</summary>
/// <param name="Iteration">The optimizer's counter after the step (1 after the first step of a fresh model).</param>
/// <param name="Step">This run's step number, from 1.</param>
/// <param name="Steps">Steps in this run.</param>
/// <param name="Loss">The step's loss (computed before the update).</param>
/// <param name="LearningRate">The learning rate the step used.</param>
/// <param name="ElapsedSeconds">Seconds since the run started.</param>
public sealed record StepReport(long Iteration, int Step, int Steps, float Loss, float LearningRate, double ElapsedSeconds);

/// <summary>Trains a step model on a dataset for a number of steps.</summary>
public static class TrainingRun
{
    /// <summary>The data inputs of a step model as dataset specs (names, element types, dimensions).</summary>
    public static IReadOnlyList<InputSpec> InputSpecs(ModelProto stepModel)
    {
        var info = StepModelInfo.Read(stepModel, "the model");
        var index = new GraphIndex(stepModel.Graph);
        return info.DataInputs.Select(n => new InputSpec(n, index.TypeOf(n).ElementType(), index.TypeOf(n).Dims())).ToList();
    }

    /// <summary>The batch of global iteration <paramref name="iteration"/>: the rows the plan assigns it, per input.</summary>
    public static Dictionary<string, (byte[] Data, long[] Shape)> BatchAt(Dataset data, BatchPlan plan, IEnumerable<string> inputs, long iteration)
    {
        var rows = plan.RowsForStep(iteration);
        return inputs.ToDictionary(n => n, n => data.Gather(n, rows), StringComparer.Ordinal);
    }

    /// <summary>
    /// Runs <see cref="TrainingRunOptions.Steps"/> steps. Batches follow the optimizer's iteration counter, so a run
    /// resumed from a checkpoint sees the batches an uninterrupted run would have. The last step leaves the state in
    /// host memory, so the trainer can write a checkpoint. Stops early, after a whole step, when cancelled. Each batch
    /// is gathered from the dataset straight into the trainer's input buffers (one copy).
    /// </summary>
    public static void Run(Trainer trainer, Dataset data, TrainingRunOptions options, Action<StepReport>? onStep = null, CancellationToken cancel = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(options.Steps);
        var plan = data.Plan(options.BatchSize, options.Shuffle, options.Seed);
        var optimizer = trainer.Info.Optimizer;
        var clock = Stopwatch.StartNew();
        for (int step = 1; step <= options.Steps; step++)
        {
            bool last = step == options.Steps || cancel.IsCancellationRequested;
            var iteration = trainer.Iteration;
            var loss = trainer.Step(data, plan.RowsForStep(iteration), stateToHost: last);
            onStep?.Invoke(new StepReport(trainer.Iteration, step, options.Steps, loss, optimizer.LearningRateAt(iteration), clock.Elapsed.TotalSeconds));
            if (last) break;
        }
    }
}

/// <summary>Writes the per-step CSV log (step, loss, learning rate, elapsed seconds) atomically when completed.</summary>
public sealed class StepLog
{
    private readonly System.Text.StringBuilder _rows = new("step,loss,learning_rate,elapsed_seconds\n");

    /// <summary>Appends one step.</summary>
    public void Add(StepReport r) => _rows.Append(CultureInfo.InvariantCulture,
        $"{r.Iteration},{r.Loss.ToString("R", CultureInfo.InvariantCulture)},{r.LearningRate.ToString("R", CultureInfo.InvariantCulture)},{r.ElapsedSeconds.ToString("F6", CultureInfo.InvariantCulture)}\n");

    /// <summary>Writes the log to <paramref name="path"/> (temporary file, then rename).</summary>
    public void Save(string path) => AtomicFile.Write(path, s =>
    {
        using var w = new StreamWriter(s, leaveOpen: true);
        w.Write(_rows);
    });
}
