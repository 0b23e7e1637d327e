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
/// <param name="LearningRate">The learning rate the step applied, as the step model output it (<see cref="Trainer.LearningRate"/>).</param>
/// <param name="ElapsedSeconds">Seconds since the run started.</param>
public sealed record StepReport(long Iteration, int Step, int Steps, float Loss, float LearningRate, double ElapsedSeconds)
{
    /// <summary>The epoch of the step, from 1, counted from the optimizer's counter (so it continues on resume).</summary>
    public long Epoch { get; init; } = 1;

    /// <summary>The step's place in its epoch, from 1.</summary>
    public long StepInEpoch { get; init; } = 1;

    /// <summary>Steps in an epoch.</summary>
    public long StepsPerEpoch { get; init; } = 1;

    /// <summary>The mean loss of this epoch's steps so far in this run (skipped steps left out): what a progress bar shows.</summary>
    public double RunningLoss { get; init; } = double.NaN;

    /// <summary>Whether the step's update was undone because its loss or state was not finite (<see cref="NonFinitePolicy.Skip"/>).</summary>
    public bool Skipped { get; init; }
}

/// <summary>Trains a step model on a dataset for a number of steps.</summary>
public static class TrainingRun
{
    /// <summary>The data inputs of a step model as dataset specs (names, element types, dimensions).</summary>
    public static IReadOnlyList<InputSpec> InputSpecs(ModelProto stepModel) => InputSpecs(stepModel, StepModelInfo.Read(stepModel, "the model"));

    /// <summary>The data inputs of a step model, whose contract <paramref name="info"/> is already read, as dataset specs.</summary>
    public static IReadOnlyList<InputSpec> InputSpecs(ModelProto stepModel, StepModelInfo info)
    {
        ArgumentNullException.ThrowIfNull(stepModel);
        ArgumentNullException.ThrowIfNull(info);
        var index = new GraphIndex(stepModel.Graph);
        return info.DataInputs.Select(n => new InputSpec(n, index.TypeOf(n).ElementType(), index.TypeOf(n).Dims())).ToList();
    }

    /// <summary>The batch of global iteration <paramref name="iteration"/>: the rows the plan assigns it, per input.</summary>
    public static Dictionary<string, (byte[] Data, long[] Shape)> BatchAt(Dataset data, BatchPlan plan, IEnumerable<string> inputs, long iteration)
    {
        var rows = plan.RowsForStep(iteration);
        return inputs.ToDictionary(n => n, n => data.Gather(n, rows), StringComparer.Ordinal);
    }

    /// <summary>The batch of global iteration <paramref name="iteration"/> as dataset rows (gathered when a trainer binds it).</summary>
    public static Batch BatchAt(Dataset data, BatchPlan plan, long iteration)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(plan);
        return Batch.FromRows(data, plan.RowsForStep(iteration));
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
        var clock = Stopwatch.StartNew();
        for (int step = 1; step <= options.Steps; step++)
        {
            bool last = step == options.Steps || cancel.IsCancellationRequested;
            var loss = trainer.Step(data, plan.RowsForStep(trainer.Iteration), stateToHost: last);
            onStep?.Invoke(new StepReport(trainer.Iteration, step, options.Steps, loss, trainer.LearningRate!.Value, clock.Elapsed.TotalSeconds));
            if (last) break;
        }
    }
}

/// <summary>
/// Streams one CSV row per step to a file, flushed as it goes: <c>step,epoch,loss,learning_rate,elapsed_seconds</c>,
/// then <c>val_loss,val_accuracy,val_mse</c>, filled on the steps where an evaluation ran (empty otherwise). The row of a
/// step is written when the next step ends (or the run ends), so that an evaluation after the step lands in its row.
/// </summary>
public sealed class CsvLog : TrainingCallback, IDisposable
{
    /// <summary>The header row.</summary>
    public const string Header = "step,epoch,loss,learning_rate,elapsed_seconds,val_loss,val_accuracy,val_mse";

    private readonly StreamWriter _writer;
    private StepReport? _pending;
    private readonly Dictionary<long, IReadOnlyDictionary<string, double>> _metrics = [];

    /// <summary>Creates (or truncates) <paramref name="path"/> and writes the header.</summary>
    /// <exception cref="OnnxAdadeltaException">The path is not a regular file or a new path.</exception>
    public CsvLog(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        SafeFile.CheckWritable(path, "step log");
        _writer = new StreamWriter(new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read));
        _writer.WriteLine(Header);
        _writer.Flush();
    }

    /// <summary>Adds one step (written when the next one comes, or at the end).</summary>
    public void Add(StepReport step)
    {
        ArgumentNullException.ThrowIfNull(step);
        WritePending();
        _pending = step;
    }

    /// <inheritdoc/>
    public override void OnStepEnd(FitContext context, StepReport step) => Add(step);

    /// <inheritdoc/>
    public override void OnValidation(FitContext context, ValidationReport validation) => _metrics[validation.Iteration] = validation.Metrics;

    /// <inheritdoc/>
    public override void OnTrainEnd(FitContext context) => WritePending();

    private void WritePending()
    {
        if (_pending is not { } r) return;
        static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);
        _metrics.Remove(r.Iteration, out var metrics);
        string M(string name) => metrics is not null && metrics.TryGetValue(name, out var v) ? F(v) : "";
        _writer.WriteLine(string.Join(',', r.Iteration.ToString(CultureInfo.InvariantCulture), r.Epoch.ToString(CultureInfo.InvariantCulture),
            r.Loss.ToString("R", CultureInfo.InvariantCulture), r.LearningRate.ToString("R", CultureInfo.InvariantCulture),
            r.ElapsedSeconds.ToString("F6", CultureInfo.InvariantCulture), M("val_loss"), M("val_accuracy"), M("val_mse")));
        _writer.Flush();
        _pending = null;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        WritePending();
        _writer.Dispose();
    }
}
