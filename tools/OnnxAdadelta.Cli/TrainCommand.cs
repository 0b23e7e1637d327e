using System.CommandLine;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Distributed;
using OnnxAdadelta.Import;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Training;
using Spectre.Console;
using OnnxAdadelta.Runtime;

namespace OnnxAdadelta.Cli;

/// <summary>
/// <c>train MODEL.onnx --data DATA.npz --steps N ... -o CHECKPOINT.onnx</c>: trains a training-step model, or a
/// training graph that it first rewrites with the Adadelta flags (an ONNX Runtime training model is imported first,
/// its parameter values taken from <c>--checkpoint</c> and/or <c>--params</c>).
/// </summary>
public static class TrainCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create(CliIO io)
    {
        var input = new Argument<string>("MODEL.onnx") { Description = "A training-step model or checkpoint (resumes it), a training graph (rewritten with the Adadelta flags), an ONNX Runtime training model with --checkpoint or --params (imported, then rewritten), or an inference model with --loss and --output." };
        var data = new Option<string>("--data") { Description = "The training data: an .npz (one array per data input), a .csv with a header row (NAME or NAME[i] columns), an .npy, or a folder of NAME.npy files; rows along axis 0.", Required = true };
        var steps = new Option<int>("--steps") { Description = "Optimizer steps to run.", Required = true };
        var common = new DataFlags();
        var device = new Option<Device>("--device") { Description = "cpu or cuda.", DefaultValueFactory = _ => Device.Cpu };
        var log = new Option<string?>("--log") { Description = "Write one CSV row per step: step, loss, learning rate, elapsed seconds." };
        var profile = new Option<string?>("--profile") { Description = "Write ONNX Runtime's profile of the training steps to this file (Chrome-trace JSON: open in chrome://tracing or ui.perfetto.dev)." };
        var output = new Option<string>("-o", "--out") { Description = "Where to write the checkpoint.", Required = true };
        var threads = new Option<int?>("--threads") { Description = "ONNX Runtime intra-op threads (default: one per core)." };
        var checkpoint = new Option<string?>("--checkpoint") { Description = "With an ONNX Runtime training model (generate_artifacts): its checkpoint, holding the parameter values." };
        var strict = new Option<bool>("--strict") { Description = "Refuse to resume a checkpoint with another data plan (data file, batch size, shuffle, seed) instead of warning." };
        var update = new Option<UpdateMode?>("--update") { Description = "fused (one ai.onnxadadelta.AdadeltaUpdate node, state in place) or graph (the model's standard ops, the default)." };
        var eval = new Option<string?>("--eval") { Description = "After training, report accuracy (or MSE) of the exported model on this held-out data (any --data form)." };
        var distributed = new Option<bool>("--distributed") { Description = "Data-parallel training over MPI: launch N copies with 'mpirun -np N'; each rank computes the gradients of its share of every batch and Open MPI sums them. Implied when mpirun launched more than one process." };
        var bucketMb = new Option<double>("--bucket-mb") { Description = "With --distributed: the gradient all-reduce runs in buckets of at most this many MiB.", DefaultValueFactory = _ => DistributedOptions.DefaultBucketMb };
        var checkReplicas = new Option<bool>("--check-replicas") { Description = "With --distributed: after every step, check that every rank holds bit-identical parameters and optimizer state; stop if not." };
        var flags = new AdadeltaFlags();
        var build = new BuildTrainingFlags(flags.Freeze);
        var command = new Command("train", "Train with Adadelta on ONNX Runtime and write a checkpoint to resume from.") { input, data, steps, device, log, profile, output, eval, threads, checkpoint, strict, update, distributed, bucketMb, checkReplicas };
        common.AddTo(command);
        flags.AddTo(command);
        build.AddTo(command);
        command.SetAction((r, cancel) => Task.FromResult(Distribute(io, r.GetValue(distributed), (rankIO, collective) => rankIO.Guard(() =>
        {
            if (collective is null && (r.GetResult(bucketMb) is { Implicit: false } || r.GetValue(checkReplicas)))
                throw new ArgumentException($"{(r.GetValue(checkReplicas) ? "--check-replicas" : "--bucket-mb")} applies only to distributed training (--distributed, or launched by mpirun).");
            if (collective is not null && r.GetValue(device) != Device.Cpu)
                throw new ArgumentException("--distributed runs on the CPU (Open MPI all-reduce of host memory); the NCCL path for --device cuda is not built into this release.");
            var path = r.GetValue(input)!;
            if (r.GetValue(steps) < 1) throw new ArgumentException($"--steps {r.GetValue(steps)}: expected at least 1.");
            if (r.GetValue(eval) is { } evalPath && !File.Exists(evalPath) && !Directory.Exists(evalPath)) throw new ArgumentException($"--eval {evalPath}: no such file or folder.");
            // Rank 0 alone writes the checkpoint and the log, so it alone holds their locks.
            bool writer = collective is not { Rank: > 0 };
            using var outputLock = writer ? DestinationLock.Acquire(r.GetValue(output)!, "checkpoint (-o)") : null;
            using var logLock = writer && r.GetValue(log) is { } logTarget ? DestinationLock.Acquire(logTarget, "step log (--log)") : null;
            var model = ModelIO.Load(path, CliApp.LoadOptionsOf(r));
            bool isStep = StepModelInfo.TryRead(model, path) is not null;
            bool isArtifact = OrtArtifactImport.IsArtifact(model);
            if (r.GetValue(checkpoint) is not null && !isArtifact)
                throw new ArgumentException($"--checkpoint applies only to ONNX Runtime training models ({OrtArtifactImport.AccumulatorOp} gradient accumulators); {path} is not one.");
            if (build.LossGiven(r))
            {
                if (isStep) throw new ArgumentException($"{path} is already a training-step model; --loss applies only to inference models.");
                if (isArtifact) throw new ArgumentException($"{path} is an ONNX Runtime training model; --loss applies only to inference models.");
                model = build.Build(model, r, rankIO);
            }
            if (!isStep)
            {
                var rewrite = flags.Rewrite(r);
                if (isArtifact)
                    model = OrtArtifactImport.Import(model, ImportOrtCommand.Options(path, r.GetValue(checkpoint), rewrite.ParameterValues));
                model = AdadeltaRewrite.Apply(model, flags.Options(r), rewrite);
            }
            else if (flags.AnyGiven(r))
                throw new ArgumentException($"{path} is already a training-step model with its optimizer settings; Adadelta flags apply only to training graphs.");
            var evalTarget = r.GetValue(eval) is null ? null : LabelInput(model);

            var dataset = Dataset.Open(r.GetValue(data)!, TrainingRun.InputSpecs(model));
            var run = common.RunOptions(r, r.GetValue(steps));
            if (collective is not null)
            {
                if (r.GetValue(update) == UpdateMode.Fused)
                    throw new ArgumentException("--update fused: distributed training runs the update model's standard ONNX ops; leave out --update or pass --update graph.");
                rankIO.Out.WriteLine("update: graph (standard ONNX ops, on every rank after the all-reduce)");
                using var ranks = new DistributedTrainer(model, collective, new DistributedOptions { Threads = r.GetValue(threads), BucketMb = r.GetValue(bucketMb), CheckReplicas = r.GetValue(checkReplicas) });
                var rankLog = r.GetValue(log) is null ? null : new StepLog();
                var rankProgress = new ProgressPrinter(rankIO, run.Steps);
                rankProgress.Run(report => DistributedRun.Run(ranks, dataset, run, s => { rankLog?.Add(s); report(s); }, cancel));
                // No rank writes until every rank has finished its last step: a failure anywhere leaves no checkpoint.
                ranks.Barrier();
                if (collective.Rank != 0) return 0;
                var result = ranks.Checkpoint();
                ModelIO.Save(result, r.GetValue(output)!);
                if (r.GetValue(log) is { } rankLogPath) rankLog!.Save(rankLogPath);
                rankIO.Out.WriteLine(rankProgress.Summary(r.GetValue(output)!, ranks.Iteration) + $"; {collective.Size} ranks, global batch split by rows");
                if (r.GetValue(eval) is { } rankHeld)
                    rankIO.Out.WriteLine("held-out " + EvaluateCommand.Describe(Evaluation.Run(result, rankHeld, evalTarget!)));
                return 0;
            }
            using var trainer = new Trainer(model, new TrainerOptions { Device = r.GetValue(device), Threads = r.GetValue(threads), ProfilePath = r.GetValue(profile), Update = r.GetValue(update) });
            var dataPlan = DataPlan.Of(r.GetValue(data)!, dataset.Plan(run.BatchSize, run.Shuffle, run.Seed));
            if (trainer.Iteration > 0 && DataPlan.Read(model, path) is { } recorded && recorded.ChangesTo(dataPlan) is { Count: > 0 } changes)
            {
                var message = DataPlan.Describe(path, changes);
                if (r.GetValue(strict)) throw new ArgumentException($"{message}; expected the same plan under --strict.");
                rankIO.Error.WriteLine($"onnx-adadelta: warning: {message}.");
            }
            rankIO.Out.WriteLine($"update: {trainer.UpdateDescription}");
            var stepLog = r.GetValue(log) is null ? null : new StepLog();
            var progress = new ProgressPrinter(rankIO, run.Steps);
            progress.Run(report => TrainingRun.Run(trainer, dataset, run, s => { stepLog?.Add(s); report(s); }, cancel));

            var trained = trainer.Checkpoint();
            dataPlan.WriteTo(trained);
            ModelIO.Save(trained, r.GetValue(output)!);
            if (r.GetValue(log) is { } logPath) stepLog!.Save(logPath);
            rankIO.Out.WriteLine(progress.Summary(r.GetValue(output)!, trainer.Iteration));
            if (trainer.EndProfiling() is { } profilePath) io.Out.WriteLine(DescribeProfile(profilePath, trainer.Info.Optimizer.Name));
            if (r.GetValue(eval) is { } held)
                rankIO.Out.WriteLine("held-out " + EvaluateCommand.Describe(Evaluation.Run(trained, held, evalTarget!)));
            return 0;
        }, collective is { Size: > 1 } ? $"rank {collective.Rank} of {collective.Size}: " : ""))));
        return command;
    }

    /// <summary>One line on a written profile: steps, and the update's share of the kernel time.</summary>
    private static string DescribeProfile(string path, string optimizerName)
    {
        var p = OrtProfile.Read(path);
        double share = p.NodeMicroseconds > 0 ? (double)p.MicrosecondsUnder(optimizerName + "/") / p.NodeMicroseconds : 0;
        return $"profile: wrote {path} ({p.Runs} steps, {p.Nodes.Count} nodes; the update ('{optimizerName}/' nodes) took {share:P1} of the kernel time)";
    }

    /// <summary>
    /// Runs <paramref name="body"/> in one process, or as one rank of an MPI job (when <paramref name="requested"/> or
    /// launched by mpirun with more than one process). Only rank 0 prints; a rank that fails reports itself on stderr
    /// and ends the whole job (MPI_Abort), so no rank hangs waiting for it.
    /// </summary>
    private static int Distribute(CliIO io, bool requested, Func<CliIO, ICollective?, int> body)
    {
        MpiCollective? collective = null;
        int code = io.Guard(() =>
        {
            if (requested || MpiLaunch.Detect() is { Size: > 1 }) collective = new MpiCollective();
            return 0;
        });
        if (code != 0 || collective is null) return code != 0 ? code : body(io, null);
        var rankIO = collective.Rank == 0 ? io : io.Quiet();
        try { code = body(rankIO, collective); }
        catch (Exception e) when (collective.Size > 1)
        {
            rankIO.Error.WriteLine($"onnx-adadelta: error: rank {collective.Rank} of {collective.Size}: {e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")}");
            code = 1;
        }
        if (code != 0 && collective.Size > 1) collective.Abort(code);
        collective.Dispose();
        return code;
    }

    /// <summary>The data input that only the loss reads (the labels), for --eval.</summary>
    private static string LabelInput(ModelProto stepModel)
    {
        var inferenceInputs = InferenceExport.Export(stepModel).Graph.Input.Select(i => i.Name).ToHashSet();
        return TrainingRun.InputSpecs(stepModel).Select(s => s.Name).FirstOrDefault(n => !inferenceInputs.Contains(n))
            ?? throw new ArgumentException("--eval: the model has no label input to compare with; use 'onnx-adadelta evaluate'.");
    }
}

/// <summary>Batching flags shared by <c>train</c> and <c>verify</c>.</summary>
public sealed class DataFlags
{
    private readonly Option<int?> _batchSize = new("--batch-size") { Description = "Rows per step (default: the whole dataset, or the model's fixed batch size)." };
    private readonly Option<bool> _shuffle = new("--shuffle") { Description = "Shuffle the rows every epoch." };
    private readonly Option<int> _seed = new("--seed") { Description = "Seed of the shuffle (default 0).", DefaultValueFactory = _ => 0 };

    /// <summary>Adds the flags to <paramref name="command"/>.</summary>
    public void AddTo(Command command)
    {
        command.Options.Add(_batchSize);
        command.Options.Add(_shuffle);
        command.Options.Add(_seed);
    }

    /// <summary>The run options for <paramref name="steps"/> steps.</summary>
    public TrainingRunOptions RunOptions(ParseResult r, int steps) =>
        new() { Steps = steps, BatchSize = r.GetValue(_batchSize), Shuffle = r.GetValue(_shuffle), Seed = r.GetValue(_seed) };
}

/// <summary>A live progress bar with loss and steps/s on a terminal; plain lines (about 20 per run) otherwise.</summary>
internal sealed class ProgressPrinter(CliIO io, int steps)
{
    private StepReport? _first;
    private StepReport? _last;

    public void Run(Action<Action<StepReport>> body)
    {
        if (io.Console.Profile.Capabilities.Interactive)
        {
            io.Console.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("training", maxValue: steps);
                    body(s =>
                    {
                        Record(s);
                        task.Value = s.Step;
                        task.Description = $"loss {s.Loss:F4}  {Rate(s):F0} steps/s";
                    });
                });
            return;
        }
        int every = Math.Max(1, steps / 20);
        body(s =>
        {
            Record(s);
            if (s.Step == 1 || s.Step % every == 0 || s.Step == steps)
                io.Out.WriteLine($"step {s.Iteration,6}  loss {s.Loss:F6}  lr {s.LearningRate:G6}  {Rate(s),8:F1} steps/s");
        });
    }

    private void Record(StepReport s)
    {
        _first ??= s;
        _last = s;
    }

    private static double Rate(StepReport s) => s.ElapsedSeconds > 0 ? s.Step / s.ElapsedSeconds : 0;

    public string Summary(string checkpoint, long iteration) => _first is null || _last is null
        ? $"no steps run; wrote {checkpoint}"
        : $"trained {_last.Step} steps in {_last.ElapsedSeconds:F2} s ({Rate(_last):F1} steps/s): loss {_first.Loss:F6} -> {_last.Loss:F6}; wrote {checkpoint} (iteration {iteration})";
}
