using System.Diagnostics;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Optimizers;

namespace OnnxAdadelta.Training;

/// <summary>What <see cref="Training.Fit.Run"/> does when a step's loss, or the state after it, is NaN or infinite.</summary>
public enum NonFinitePolicy
{
    /// <summary>Undo the step and stop (Keras TerminateOnNaN): the trainer keeps the last finite state.</summary>
    Stop,

    /// <summary>Undo the step's update and go on with the next batch (as PyTorch's GradScaler skips a step); the counter advances.</summary>
    Skip,

    /// <summary>Keep going with whatever the step produced (checkpoints may then hold NaN).</summary>
    Continue,
}

/// <summary>Why a run ended.</summary>
public enum StopReason
{
    /// <summary>All the steps ran.</summary>
    Completed,

    /// <summary>A callback stopped it (early stopping).</summary>
    EarlyStopping,

    /// <summary>A non-finite loss or state under <see cref="NonFinitePolicy.Stop"/>.</summary>
    NonFinite,

    /// <summary>The cancellation token fired (Ctrl-C, SIGTERM).</summary>
    Interrupted,
}

/// <summary>How <see cref="Training.Fit.Run"/> trains: how long, on which batches, with which callbacks.</summary>
public sealed record FitOptions
{
    /// <summary>Optimizer steps to run; give this or <see cref="Epochs"/>.</summary>
    public int? Steps { get; init; }

    /// <summary>Passes over the data to run (each <see cref="BatchPlan.BatchesPerEpoch"/> steps); give this or <see cref="Steps"/>.</summary>
    public int? Epochs { get; init; }

    /// <summary>Rows per batch; null for the whole dataset (or the model's fixed batch size).</summary>
    public int? BatchSize { get; init; }

    /// <summary>Shuffle the rows each epoch.</summary>
    public bool Shuffle { get; init; }

    /// <summary>Seed of the shuffle.</summary>
    public int Seed { get; init; }

    /// <summary>What a NaN or infinite loss or state does. Default <see cref="NonFinitePolicy.Stop"/>.</summary>
    public NonFinitePolicy OnNonFinite { get; init; } = NonFinitePolicy.Stop;

    /// <summary>Callbacks, called in order at each event.</summary>
    public IReadOnlyList<TrainingCallback> Callbacks { get; init; } = [];
}

/// <summary>One finished pass over the data.</summary>
/// <param name="Epoch">The epoch number, from 1, counted from the optimizer's counter (so it continues on resume).</param>
/// <param name="Iteration">The optimizer's counter at the end of the epoch.</param>
/// <param name="Loss">The mean training loss of the epoch's steps run in this run (skipped steps left out).</param>
/// <param name="Steps">Steps of this epoch run in this run.</param>
/// <param name="ElapsedSeconds">Seconds since the run started.</param>
public sealed record EpochReport(long Epoch, long Iteration, double Loss, int Steps, double ElapsedSeconds);

/// <summary>One evaluation on held-out data.</summary>
/// <param name="Iteration">The optimizer's counter when evaluated.</param>
/// <param name="Step">This run's step number.</param>
/// <param name="Epoch">The epoch of that step.</param>
/// <param name="Result">The evaluation.</param>
public sealed record ValidationReport(long Iteration, int Step, long Epoch, EvaluationResult Result)
{
    /// <summary>The metrics, named <c>val_loss</c>, <c>val_accuracy</c> or <c>val_mse</c>.</summary>
    public IReadOnlyDictionary<string, double> Metrics { get; } = Result.Metrics();
}

/// <summary>
/// The record of a run, as Keras's <c>History</c>: one entry per epoch and per evaluation (not per step, so memory stays
/// flat over long runs), the first and last step, skipped steps and why the run ended.
/// </summary>
public sealed class History
{
    private readonly List<EpochReport> _epochs = [];
    private readonly List<ValidationReport> _validations = [];

    /// <summary>Finished epochs.</summary>
    public IReadOnlyList<EpochReport> Epochs => _epochs;

    /// <summary>Evaluations on held-out data.</summary>
    public IReadOnlyList<ValidationReport> Validations => _validations;

    /// <summary>The first step run.</summary>
    public StepReport? First { get; private set; }

    /// <summary>The last step run.</summary>
    public StepReport? Last { get; private set; }

    /// <summary>Steps whose update was undone under <see cref="NonFinitePolicy.Skip"/>.</summary>
    public int SkippedSteps { get; internal set; }

    /// <summary>Why the run ended.</summary>
    public StopReason StopReason { get; internal set; } = StopReason.Completed;

    /// <summary>What ended the run, in words (null when it completed).</summary>
    public string? StopMessage { get; internal set; }

    /// <summary>The last value of each metric: <c>loss</c> (of the last epoch) and the <c>val_</c> metrics.</summary>
    public IReadOnlyDictionary<string, double> Latest
    {
        get
        {
            var m = new Dictionary<string, double>(StringComparer.Ordinal);
            if (_epochs.Count > 0) m["loss"] = _epochs[^1].Loss;
            if (_validations.Count > 0) foreach (var (k, v) in _validations[^1].Metrics) m[k] = v;
            return m;
        }
    }

    internal void Record(StepReport s)
    {
        First ??= s;
        Last = s;
    }

    internal void Add(EpochReport e) => _epochs.Add(e);

    internal void Add(ValidationReport v) => _validations.Add(v);
}

/// <summary>What callbacks see of a run in progress, and how they end it.</summary>
public sealed class FitContext
{
    private readonly IReadOnlyList<TrainingCallback> _callbacks;

    internal FitContext(Trainer trainer, Dataset data, BatchPlan plan, int totalSteps, IReadOnlyList<TrainingCallback> callbacks, Stopwatch clock)
    {
        Trainer = trainer;
        Data = data;
        Plan = plan;
        TotalSteps = totalSteps;
        _callbacks = callbacks;
        Clock = clock;
    }

    /// <summary>The trainer (its parameters are live: read them between steps).</summary>
    public Trainer Trainer { get; }

    /// <summary>The training data.</summary>
    public Dataset Data { get; }

    /// <summary>The batch plan.</summary>
    public BatchPlan Plan { get; }

    /// <summary>Steps this run will take unless stopped.</summary>
    public int TotalSteps { get; }

    /// <summary>The run's record so far.</summary>
    public History History { get; } = new();

    internal Stopwatch Clock { get; }

    /// <summary>Whether a callback asked to stop.</summary>
    public bool StopRequested { get; private set; }

    /// <summary>Ends the run after the current step.</summary>
    public void Stop(StopReason reason, string message)
    {
        if (StopRequested) return;
        StopRequested = true;
        History.StopReason = reason;
        History.StopMessage = message;
    }

    /// <summary>Records an evaluation and tells every callback (<see cref="TrainingCallback.OnValidation"/>).</summary>
    public void ReportValidation(ValidationReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        History.Add(report);
        foreach (var c in _callbacks) c.OnValidation(this, report);
    }
}

/// <summary>
/// A hook into <see cref="Training.Fit.Run"/> (as Keras callbacks): override the events needed. Events come in order:
/// begin, then per step <see cref="OnStepEnd"/>, <see cref="OnEpochEnd"/> when an epoch ends there, and
/// <see cref="OnValidation"/> when a callback reports an evaluation; then end.
/// </summary>
public abstract class TrainingCallback
{
    /// <summary>Before the first step.</summary>
    public virtual void OnTrainBegin(FitContext context) { }

    /// <summary>
    /// Whether the state after step <paramref name="step"/> (this run's number, from 1) must be readable on the host,
    /// for example to write a checkpoint (matters on a GPU only).
    /// </summary>
    public virtual bool NeedsHostState(FitContext context, int step) => false;

    /// <summary>After each step (also a skipped one, with <see cref="StepReport.Skipped"/>).</summary>
    public virtual void OnStepEnd(FitContext context, StepReport step) { }

    /// <summary>After the last step of an epoch.</summary>
    public virtual void OnEpochEnd(FitContext context, EpochReport epoch) { }

    /// <summary>After an evaluation on held-out data.</summary>
    public virtual void OnValidation(FitContext context, ValidationReport validation) { }

    /// <summary>After the last step, however the run ended.</summary>
    public virtual void OnTrainEnd(FitContext context) { }
}

/// <summary>The training loop: steps over batches with callbacks, a NaN policy and cancellation, returning a <see cref="History"/>.</summary>
public static class Fit
{
    /// <summary>
    /// Trains <paramref name="trainer"/> on <paramref name="data"/> for <see cref="FitOptions.Steps"/> steps or
    /// <see cref="FitOptions.Epochs"/> epochs. Batches follow the optimizer's iteration counter, so a run resumed from a
    /// checkpoint sees the batches an uninterrupted run would have. After each step the loss, and on the CPU the
    /// parameters and accumulators, are checked for NaN and infinity (see <see cref="NonFinitePolicy"/>). When
    /// <paramref name="cancel"/> fires, one more whole step runs and the run stops (<see cref="StopReason.Interrupted"/>).
    /// The last step leaves the state in host memory, so the trainer can write a checkpoint.
    /// </summary>
    /// <exception cref="ArgumentException">Neither or both of steps and epochs, or a count below 1.</exception>
    public static History Run(Trainer trainer, Dataset data, FitOptions options, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(trainer);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Steps is null == options.Epochs is null)
            throw new ArgumentException("Give either steps or epochs (one of them).", nameof(options));
        if (options.Steps is < 1) throw new ArgumentException($"Invalid steps: {options.Steps} (expected at least 1).", nameof(options));
        if (options.Epochs is < 1) throw new ArgumentException($"Invalid epochs: {options.Epochs} (expected at least 1).", nameof(options));
        var plan = data.Plan(options.BatchSize, options.Shuffle, options.Seed);
        long total = options.Steps ?? (long)options.Epochs!.Value * plan.BatchesPerEpoch;
        if (total > int.MaxValue)
            throw new ArgumentException($"{options.Epochs} epochs of {plan.BatchesPerEpoch} steps is {total} steps, over the {int.MaxValue} a run can take.", nameof(options));

        var callbacks = options.Callbacks;
        var context = new FitContext(trainer, data, plan, (int)total, callbacks, Stopwatch.StartNew());
        var history = context.History;
        double epochSum = 0;
        int epochSteps = 0, epochRan = 0;
        bool keptUndo = trainer.KeepUndo;
        // Undo needs the state from before each step: free with the graph update, one copy of it with the fused one.
        trainer.KeepUndo = options.OnNonFinite != NonFinitePolicy.Continue;
        try
        {
            foreach (var c in callbacks) c.OnTrainBegin(context);
            for (int step = 1; step <= total; step++)
            {
                bool interrupted = cancel.IsCancellationRequested;
                bool last = step == total || interrupted;
                bool toHost = last || callbacks.Any(c => c.NeedsHostState(context, step));
                long iteration = trainer.Iteration;
                float loss = trainer.Step(data, plan.RowsForStep(iteration), stateToHost: toHost);
                // The rate the step applied, read from the graph with the loss (see Trainer.LearningRate).
                float rate = trainer.LearningRate!.Value;
                bool skipped = false;
                if (options.OnNonFinite != NonFinitePolicy.Continue
                    && (!float.IsFinite(loss) ? $"the loss is {loss}" : trainer.FindNonFinite() is { } bad ? $"'{bad}' holds a NaN or infinity" : null) is { } what)
                {
                    if (!trainer.CanUndo)
                    {
                        context.Stop(StopReason.NonFinite, $"step {iteration + 1}: {what}; the state can't be rolled back on {trainer.Device} (no checkpoint of it is written)");
                        break;
                    }
                    if (options.OnNonFinite == NonFinitePolicy.Stop)
                    {
                        trainer.UndoLastStep();
                        context.Stop(StopReason.NonFinite,
                            $"step {iteration + 1}: {what}; stopped with the state of step {iteration} (the last finite one)");
                        break;
                    }
                    trainer.UndoLastStep(keepCounter: true);
                    history.SkippedSteps++;
                    skipped = true;
                }
                long epoch = plan.EpochOf(iteration) + 1;
                epochRan++;
                if (!skipped) { epochSum += loss; epochSteps++; }
                var report = new StepReport(trainer.Iteration, step, (int)total, loss, rate, context.Clock.Elapsed.TotalSeconds)
                {
                    Epoch = epoch,
                    StepInEpoch = plan.BatchInEpoch(iteration) + 1,
                    StepsPerEpoch = plan.BatchesPerEpoch,
                    RunningLoss = epochSteps > 0 ? epochSum / epochSteps : double.NaN,
                    Skipped = skipped,
                };
                history.Record(report);
                foreach (var c in callbacks) c.OnStepEnd(context, report);
                if (trainer.Iteration % plan.BatchesPerEpoch == 0)
                {
                    var e = new EpochReport(epoch, trainer.Iteration, epochSteps > 0 ? epochSum / epochSteps : double.NaN, epochRan, context.Clock.Elapsed.TotalSeconds);
                    history.Add(e);
                    foreach (var c in callbacks) c.OnEpochEnd(context, e);
                    epochSum = 0;
                    epochSteps = epochRan = 0;
                }
                if (interrupted) context.Stop(StopReason.Interrupted, $"interrupted after step {trainer.Iteration}");
                if (context.StopRequested) break;
            }
        }
        finally
        {
            trainer.KeepUndo = keptUndo;
            foreach (var c in callbacks) c.OnTrainEnd(context);
        }
        return history;
    }
}

/// <summary>
/// Evaluates the live trainer on held-out data every <c>everySteps</c> steps, or at the end of each epoch when null, and
/// reports it to the other callbacks (<see cref="FitContext.ReportValidation"/>). One <see cref="Evaluator"/> serves the run.
/// </summary>
/// <param name="data">The held-out data (the model's data inputs, labels among them).</param>
/// <param name="everySteps">Steps between evaluations, or null for once per epoch.</param>
/// <param name="batchSize">Rows per evaluation batch.</param>
/// <param name="evaluator">An evaluator of the trainer to use (the caller keeps and disposes it); null to make one for the run.</param>
public sealed class ValidationCallback(Dataset data, int? everySteps = null, int batchSize = 256, Evaluator? evaluator = null) : TrainingCallback
{
    private Evaluator? _evaluator;

    /// <inheritdoc/>
    public override void OnTrainBegin(FitContext context)
    {
        if (everySteps is < 1) throw new ArgumentException($"Invalid evaluation interval: {everySteps} steps (expected at least 1).");
        _evaluator = evaluator ?? new Evaluator(context.Trainer);
    }

    /// <inheritdoc/>
    public override void OnStepEnd(FitContext context, StepReport step)
    {
        if (everySteps is { } k && step.Step % k == 0) Evaluate(context, step);
    }

    /// <inheritdoc/>
    public override void OnEpochEnd(FitContext context, EpochReport epoch)
    {
        if (everySteps is null && context.History.Last is { } last) Evaluate(context, last);
    }

    private void Evaluate(FitContext context, StepReport step) =>
        context.ReportValidation(new ValidationReport(context.Trainer.Iteration, step.Step, step.Epoch, _evaluator!.Evaluate(data, batchSize)));

    /// <inheritdoc/>
    public override void OnTrainEnd(FitContext context)
    {
        if (evaluator is null) _evaluator?.Dispose();
        _evaluator = null;
    }
}

/// <summary>Which way a monitored metric improves.</summary>
public static class Metrics
{
    /// <summary>Whether larger values of <paramref name="metric"/> are better (accuracy); smaller otherwise (loss, mse).</summary>
    public static bool HigherIsBetter(string metric) => metric.EndsWith("accuracy", StringComparison.Ordinal);

    /// <summary>The metrics a callback can monitor.</summary>
    public static readonly IReadOnlyList<string> Names = ["loss", "val_loss", "val_accuracy", "val_mse"];

    /// <summary>Checks a metric name, naming <paramref name="flag"/> in the error.</summary>
    public static string Check(string metric, string flag) => Names.Contains(metric)
        ? metric
        : throw new ArgumentException($"{flag}: unknown metric '{metric}' (expected one of {string.Join(", ", Names)}).");

    /// <summary>
    /// Reads <paramref name="metric"/> when it was just computed: <c>loss</c> at an epoch's end, the <c>val_</c> ones at an
    /// evaluation.
    /// </summary>
    internal static double? From(string metric, EpochReport? epoch, ValidationReport? validation) =>
        metric == "loss" ? epoch?.Loss : validation is not null && validation.Metrics.TryGetValue(metric, out var v) ? v : null;
}

/// <summary>Tracks the best value of a metric; calls back when it improves or stalls.</summary>
public abstract class MonitorCallback(string metric, double minDelta = 0) : TrainingCallback
{
    private double? _best;

    /// <summary>The monitored metric.</summary>
    public string Metric { get; } = Metrics.Check(metric, "metric");

    /// <summary>Evaluations (or epochs, for <c>loss</c>) since the last improvement.</summary>
    protected int Wait { get; set; }

    /// <summary>The best value so far.</summary>
    public double? Best => _best;

    /// <inheritdoc/>
    public override void OnEpochEnd(FitContext context, EpochReport epoch) => Observe(context, Metrics.From(Metric, epoch, null));

    /// <inheritdoc/>
    public override void OnValidation(FitContext context, ValidationReport validation) => Observe(context, Metrics.From(Metric, null, validation));

    private void Observe(FitContext context, double? value)
    {
        if (value is not { } v || double.IsNaN(v)) return;
        bool better = _best is not { } b || (Metrics.HigherIsBetter(Metric) ? v > b + minDelta : v < b - minDelta);
        if (better)
        {
            _best = v;
            Wait = 0;
            OnImproved(context, v);
        }
        else
        {
            Wait++;
            OnStalled(context, v);
        }
    }

    /// <summary>The metric reached a new best <paramref name="value"/>.</summary>
    protected virtual void OnImproved(FitContext context, double value) { }

    /// <summary>The metric did not improve (<see cref="Wait"/> counts how many times in a row).</summary>
    protected virtual void OnStalled(FitContext context, double value) { }
}

/// <summary>Stops the run when <see cref="MonitorCallback.Metric"/> has not improved for <paramref name="patience"/> checks in a row (Keras EarlyStopping).</summary>
public sealed class EarlyStopping(string metric, int patience, double minDelta = 0) : MonitorCallback(metric, minDelta)
{
    /// <summary>Checks without improvement that stop the run.</summary>
    public int Patience { get; } = patience >= 0 ? patience : throw new ArgumentException($"Invalid patience: {patience} (expected >= 0).", nameof(patience));

    /// <inheritdoc/>
    protected override void OnStalled(FitContext context, double value)
    {
        if (Wait >= Math.Max(1, Patience))
            context.Stop(StopReason.EarlyStopping, $"early stopping: {Metric} has not improved on {Best:G6} for {Wait} checks");
    }
}

/// <summary>
/// Multiplies the learning rate by <paramref name="factor"/> when <see cref="MonitorCallback.Metric"/> has not improved
/// for <paramref name="patience"/> checks (Keras ReduceLROnPlateau), by rewriting the live trainer's optimizer
/// (<see cref="Trainer.ChangeOptimizer"/>); the parameters, accumulators and counter carry over. Needs a constant
/// learning rate.
/// </summary>
public sealed class ReduceLearningRateOnPlateau(string metric, double factor, int patience, double minLearningRate = 0) : MonitorCallback(metric)
{
    /// <summary>The factor, in (0, 1).</summary>
    public double Factor { get; } = factor > 0 && factor < 1 ? factor : throw new ArgumentException($"Invalid factor: {factor} (expected a number in (0, 1)).", nameof(factor));

    /// <summary>Checks without improvement before a reduction.</summary>
    public int Patience { get; } = patience >= 1 ? patience : throw new ArgumentException($"Invalid patience: {patience} (expected >= 1).", nameof(patience));

    /// <summary>Reductions made, with the iteration and the new rate.</summary>
    public List<(long Iteration, double LearningRate)> Reductions { get; } = [];

    /// <inheritdoc/>
    public override void OnTrainBegin(FitContext context)
    {
        if (context.Trainer.Info.Optimizer.LearningRate is not ConstantLearningRate)
            throw new ArgumentException("--reduce-lr-on-plateau needs a constant learning rate; the model has a schedule.");
    }

    /// <inheritdoc/>
    protected override void OnStalled(FitContext context, double value)
    {
        if (Wait < Patience) return;
        Wait = 0;
        var current = ((ConstantLearningRate)context.Trainer.Info.Optimizer.LearningRate).Value;
        var next = Math.Max(minLearningRate, current * Factor);
        if (next >= current) return;
        context.Trainer.ChangeOptimizer(context.Trainer.Info.Optimizer with { LearningRate = new ConstantLearningRate(next) });
        Reductions.Add((context.Trainer.Iteration, next));
    }
}

/// <summary>
/// Writes a checkpoint every <paramref name="everySteps"/> steps to <c>pathOf(iteration)</c> and keeps only the last
/// <paramref name="keep"/> it wrote. A checkpoint never holds a NaN or infinity unless <paramref name="allowNonFinite"/>.
/// <paramref name="amend"/>, when given, adds to each checkpoint before it is written (for example its data plan).
/// </summary>
public sealed class PeriodicCheckpoint(Func<long, string> pathOf, int everySteps, int keep, bool allowNonFinite = false, Action<ModelProto>? amend = null) : TrainingCallback
{
    private readonly Queue<string> _written = new();

    /// <summary>Paths written and still kept, oldest first.</summary>
    public IReadOnlyCollection<string> Kept => _written;

    /// <inheritdoc/>
    public override void OnTrainBegin(FitContext context)
    {
        if (everySteps < 1) throw new ArgumentException($"Invalid checkpoint interval: {everySteps} steps (expected at least 1).");
        if (keep < 1) throw new ArgumentException($"Invalid number of checkpoints to keep: {keep} (expected at least 1).");
    }

    /// <inheritdoc/>
    public override bool NeedsHostState(FitContext context, int step) => step % everySteps == 0;

    /// <inheritdoc/>
    public override void OnStepEnd(FitContext context, StepReport step)
    {
        if (step.Step % everySteps != 0) return;
        var path = pathOf(context.Trainer.Iteration);
        Checkpoints.Save(context.Trainer, path, allowNonFinite, amend);
        if (!_written.Contains(path)) _written.Enqueue(path);
        while (_written.Count > keep) File.Delete(_written.Dequeue());
    }
}

/// <summary>
/// Writes a checkpoint to <paramref name="path"/> each time <paramref name="metric"/> reaches a new best (Keras
/// ModelCheckpoint save_best_only); <paramref name="amend"/>, when given, adds to it before it is written.
/// </summary>
public sealed class BestCheckpoint(string path, string metric, Action<ModelProto>? amend = null) : MonitorCallback(metric)
{
    /// <summary>The iteration of the checkpoint written last, or null.</summary>
    public long? SavedIteration { get; private set; }

    /// <inheritdoc/>
    protected override void OnImproved(FitContext context, double value)
    {
        Checkpoints.Save(context.Trainer, path, amend: amend);
        SavedIteration = context.Trainer.Iteration;
    }
}

/// <summary>Writes a trainer's checkpoint, refusing non-finite state.</summary>
public static class Checkpoints
{
    /// <summary>
    /// Writes <paramref name="trainer"/>'s checkpoint to <paramref name="path"/> (atomically). Unless
    /// <paramref name="allowNonFinite"/>, a parameter, accumulator or buffer holding a NaN or infinity is refused.
    /// <paramref name="amend"/>, when given, adds to the checkpoint before it is written (for example its data plan).
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">The state is not finite; nothing is written.</exception>
    public static void Save(Trainer trainer, string path, bool allowNonFinite = false, Action<ModelProto>? amend = null)
    {
        ArgumentNullException.ThrowIfNull(trainer);
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!allowNonFinite && trainer.FindNonFinite() is { } bad)
            throw new OnnxAdadeltaException($"Not writing {path}: state tensor '{bad}' holds a NaN or infinity.");
        // The checkpoint shares the trainer's nodes and tensors (no deep copy per checkpoint); amend adds to its lists.
        var model = trainer.SharedCheckpoint();
        amend?.Invoke(model);
        ModelIO.Save(model, path);
    }
}
