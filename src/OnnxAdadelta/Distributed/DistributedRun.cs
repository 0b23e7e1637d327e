using System.Diagnostics;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Distributed;

/// <summary>Trains with a <see cref="DistributedTrainer"/> on a dataset, as <see cref="TrainingRun"/> does in one process.</summary>
public static class DistributedRun
{
    /// <summary>
    /// Runs <see cref="TrainingRunOptions.Steps"/> steps. Every rank builds the same batch plan (same rows, same
    /// shuffle seed) and gathers only its own rows of each batch; batches follow the iteration counter, so a run resumed
    /// from a checkpoint, with any number of ranks, sees the batches an uninterrupted run would. Stops early, after a
    /// whole step on every rank, when any rank is cancelled.
    /// </summary>
    /// <param name="trainer">The rank's trainer (a simulated one gathers every row).</param>
    /// <param name="data">The dataset; every rank must open the same one.</param>
    /// <param name="options">Steps, global batch size, shuffle, seed.</param>
    /// <param name="onStep">Called after every step with the loss over the global batch.</param>
    /// <param name="cancel">Stops after the current step.</param>
    public static void Run(DistributedTrainer trainer, Dataset data, TrainingRunOptions options, Action<StepReport>? onStep = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(trainer);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentOutOfRangeException.ThrowIfNegative(options.Steps);
        var plan = data.Plan(options.BatchSize, options.Shuffle, options.Seed);
        var optimizer = trainer.Info.Optimizer;
        var inputs = trainer.Info.DataInputs;
        var clock = Stopwatch.StartNew();
        for (int step = 1; step <= options.Steps; step++)
        {
            var iteration = trainer.Iteration;
            var rows = plan.RowsForStep(iteration);
            float loss;
            if (!trainer.IsSimulated)
            {
                var (start, end) = DistributedTrainer.ShardOf(rows.Length, trainer.Rank, trainer.Ranks);
                var mine = rows.AsSpan(start, end - start).ToArray();
                loss = trainer.StepOnShard(inputs.ToDictionary(n => n, n => data.Gather(n, mine), StringComparer.Ordinal), rows.Length);
            }
            else
            {
                loss = trainer.Step(inputs.ToDictionary(n => n, n => data.Gather(n, rows), StringComparer.Ordinal));
            }
            onStep?.Invoke(new StepReport(trainer.Iteration, step, options.Steps, loss, trainer.LearningRate ?? optimizer.LearningRateAt(iteration), clock.Elapsed.TotalSeconds));
            // Every rank stops after the same step: the ranks agree on whether any was cancelled.
            if (cancel.CanBeCanceled && trainer.AnyRank(cancel.IsCancellationRequested)) break;
        }
    }
}
