using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
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
/// <c>train MODEL.onnx --data DATA --steps N|--epochs N ... -o CHECKPOINT.onnx</c>: trains a training-step model (resumed,
/// optionally with new --lr/--rho/--epsilon/--schedule/--weight-decay), or a training graph that it first rewrites with
/// the Adadelta flags (an ONNX Runtime training model is imported first, its parameter values taken from
/// <c>--checkpoint</c> and/or <c>--params</c>; an inference model with --loss is differentiated first). The loop itself
/// is the library's <see cref="Fit"/>; this command parses, builds the callbacks and prints.
/// </summary>
public static class TrainCommand
{
    /// <summary>How much <c>train</c> prints.</summary>
    public enum Verbosity
    {
        /// <summary>Nothing on standard output but the final summary (or the --json document); warnings and errors still show.</summary>
        Quiet,

        /// <summary>What is being prepared, progress (about 20 lines, or a live bar on a terminal), one line per epoch, the summary.</summary>
        Normal,

        /// <summary>As normal, with a line for every step and every evaluation.</summary>
        Detailed,
    }

    /// <summary>Builds the command.</summary>
    public static Command Create(CliIO io)
    {
        var input = new Argument<string>("MODEL.onnx") { Description = "A training-step model or checkpoint (resumes it), a training graph (rewritten with the Adadelta flags), an ONNX Runtime training model with --checkpoint or --params (imported, then rewritten), or an inference model with --loss and --output." };
        var data = new Option<string>("--data") { Description = "The training data: an .npz (one array per data input), a .csv with a header row (NAME or NAME[i] columns), an .npy, or a folder of NAME.npy files; rows along axis 0.", Required = true };
        var steps = new Option<int?>("--steps") { Description = "Optimizer steps to run (or --epochs)." };
        var epochs = new Option<int?>("--epochs") { Description = "Passes over the data to run (or --steps)." };
        var common = new DataFlags();
        var device = new Option<Device>("--device") { Description = "cpu or cuda.", DefaultValueFactory = _ => Device.Cpu };
        var log = new Option<string?>("--log") { Description = "Stream one CSV row per step, flushed as it goes: step, epoch, loss, learning rate, elapsed seconds, and the validation metrics where computed." };
        var profile = new Option<string?>("--profile") { Description = "Write ONNX Runtime's profile of the training steps to this file (Chrome-trace JSON: open in chrome://tracing or ui.perfetto.dev)." };
        var output = new Option<string>("-o", "--out") { Description = "Where to write the checkpoint.", Required = true };
        var threads = new Option<int?>("--threads") { Description = "ONNX Runtime intra-op threads (default: one per core)." };
        var checkpoint = new Option<string?>("--checkpoint") { Description = "With an ONNX Runtime training model (generate_artifacts): its checkpoint, holding the parameter values." };
        var strict = new Option<bool>("--strict") { Description = "Refuse to resume a checkpoint with another data plan (data file, batch size, shuffle, seed) instead of warning." };
        var update = new Option<UpdateMode?>("--update") { Description = "fused (one ai.onnxadadelta.AdadeltaUpdate node, state in place; the default on cpu) or graph (the model's standard ops; the default on cuda)." };
        var eval = new Option<string?>("--eval") { Description = "Held-out data (any --data form): evaluate the live model on it (loss, and accuracy or MSE) every epoch or every --eval-every steps, and at the end." };
        var evalEvery = new Option<int?>("--eval-every") { Description = "Steps between evaluations on --eval (default: once per epoch).", HelpName = "K" };
        var saveEvery = new Option<int?>("--save-every") { Description = "Write a checkpoint every K steps beside -o (NAME.stepN.onnx).", HelpName = "K" };
        var keep = new Option<int>("--keep") { Description = "How many --save-every checkpoints to keep (default 3).", DefaultValueFactory = _ => 3 };
        var saveBest = new Option<string?>("--save-best") { Description = "Write NAME.best.onnx beside -o each time the metric reaches a new best: loss, val_loss, val_accuracy or val_mse.", HelpName = "METRIC" };
        var earlyStop = new Option<string?>("--early-stop") { Description = "Stop when the metric has not improved for PATIENCE checks (epochs for loss, evaluations for val_*).", HelpName = "METRIC:PATIENCE" };
        var plateau = new Option<string?>("--reduce-lr-on-plateau") { Description = "Multiply the learning rate by FACTOR when val_loss (loss without --eval) has not improved for PATIENCE checks.", HelpName = "FACTOR:PATIENCE" };
        var onNan = new Option<NonFinitePolicy>("--on-nan") { Description = "When a step's loss or new state is NaN or infinite: stop (default; exit 3, the last finite state written), skip (undo the step, go on, count the skips) or continue (keep it; checkpoints may then hold NaN).", DefaultValueFactory = _ => NonFinitePolicy.Stop };
        var plot = new Option<string?>("--plot") { Description = "Draw the loss and validation curves to this .png or .svg at the end.", HelpName = "FILE.png|svg" };
        var json = JsonOutput.Option();
        var quiet = new Option<bool>("--quiet", "-q") { Description = "Print only the final summary (same as --verbosity quiet)." };
        var verbosity = new Option<Verbosity>("--verbosity") { Description = "quiet, normal (default) or detailed (a line per step and per evaluation).", DefaultValueFactory = _ => Verbosity.Normal };
        var distributed = new Option<bool>("--distributed") { Description = "Data-parallel training over MPI: launch N copies with 'mpirun -np N'; each rank computes the gradients of its share of every batch and Open MPI sums them. Implied when mpirun launched more than one process." };
        var bucketMb = new Option<double>("--bucket-mb") { Description = "With --distributed: the gradient all-reduce runs in buckets of at most this many MiB.", DefaultValueFactory = _ => DistributedOptions.DefaultBucketMb };
        var checkReplicas = new Option<bool>("--check-replicas") { Description = "With --distributed: after every step, check that every rank holds bit-identical parameters and optimizer state; stop if not." };
        var flags = new AdadeltaFlags();
        var build = new BuildTrainingFlags(flags.Freeze);
        var command = new Command("train", "Train with Adadelta on ONNX Runtime and write a checkpoint to resume from.")
        {
            input, data, steps, epochs, device, log, profile, output, eval, evalEvery, saveEvery, keep, saveBest, earlyStop, plateau, onNan, plot,
            json, quiet, verbosity, threads, checkpoint, strict, update, distributed, bucketMb, checkReplicas,
        };
        common.AddTo(command);
        flags.AddTo(command);
        build.AddTo(command);
        command.SetAction((r, _) => Task.FromResult(Distribute(io, r.GetValue(distributed), (rankIO, collective) => rankIO.Guard(() =>
        {
            // Everything the flags alone decide is checked before any file is read or written.
            if (collective is null && (r.GetResult(bucketMb) is { Implicit: false } || r.GetValue(checkReplicas)))
                throw new ArgumentException($"{(r.GetValue(checkReplicas) ? "--check-replicas" : "--bucket-mb")} applies only to distributed training (--distributed, or launched by mpirun).");
            if (collective is not null && r.GetValue(device) != Device.Cpu)
                throw new ArgumentException("--distributed runs on the CPU (Open MPI all-reduce of host memory); the NCCL path for --device cuda is not built into this release.");
            var path = r.GetValue(input)!;
            var outPath = r.GetValue(output)!;
            if (r.GetValue(steps) is null == r.GetValue(epochs) is null)
                throw new ArgumentException("give either --steps N or --epochs N (one of them).");
            if (r.GetValue(steps) is < 1) throw new ArgumentException($"--steps {r.GetValue(steps)}: expected at least 1.");
            if (r.GetValue(epochs) is < 1) throw new ArgumentException($"--epochs {r.GetValue(epochs)}: expected at least 1.");
            if (r.GetValue(evalEvery) is { } ee && ee < 1) throw new ArgumentException($"--eval-every {ee}: expected at least 1.");
            if (r.GetValue(evalEvery) is not null && r.GetValue(eval) is null) throw new ArgumentException("--eval-every needs --eval DATA.");
            if (r.GetValue(saveEvery) is { } se && se < 1) throw new ArgumentException($"--save-every {se}: expected at least 1.");
            if (r.GetValue(keep) < 1) throw new ArgumentException($"--keep {r.GetValue(keep)}: expected at least 1.");
            if (r.GetValue(eval) is { } evalPath && !File.Exists(evalPath) && !Directory.Exists(evalPath)) throw new ArgumentException($"--eval {evalPath}: no such file or folder.");
            var best = r.GetValue(saveBest) is { } sb ? Metrics.Check(sb, "--save-best") : null;
            var stopRule = r.GetValue(earlyStop) is { } es ? ParsePair(es, "--early-stop", "METRIC:PATIENCE") : default;
            if (stopRule.Key is not null) Metrics.Check(stopRule.Key, "--early-stop");
            var plateauRule = r.GetValue(plateau) is { } pl ? ParsePair(pl, "--reduce-lr-on-plateau", "FACTOR:PATIENCE") : default;
            double plateauFactor = 0;
            if (plateauRule.Key is not null
                && (!double.TryParse(plateauRule.Key, NumberStyles.Float, CultureInfo.InvariantCulture, out plateauFactor) || !(plateauFactor > 0 && plateauFactor < 1)))
                throw new ArgumentException($"--reduce-lr-on-plateau {r.GetValue(plateau)}: FACTOR must be a number in (0, 1).");
            if (plateauRule.Key is not null && plateauRule.Value < 1) throw new ArgumentException($"--reduce-lr-on-plateau {r.GetValue(plateau)}: PATIENCE must be at least 1.");
            if (plateauRule.Key is not null && r.GetValue(profile) is not null) throw new ArgumentException("--reduce-lr-on-plateau can't be combined with --profile (a new learning rate opens a new session).");
            foreach (var (flag, metric) in new[] { ("--save-best", best), ("--early-stop", stopRule.Key) })
                if (metric?.StartsWith("val_", StringComparison.Ordinal) == true && r.GetValue(eval) is null)
                    throw new ArgumentException($"{flag} {metric}: a val_ metric needs --eval DATA.");
            var plotPath = r.GetValue(plot);
            if (plotPath is not null && RunPlot.FormatOf(plotPath) is null) throw new ArgumentException($"--plot {plotPath}: expected a .png or .svg file name.");
            var level = r.GetValue(quiet) || r.GetValue(json) ? Verbosity.Quiet : r.GetValue(verbosity);
            if (r.GetValue(quiet) && r.GetResult(verbosity) is { Implicit: false } && r.GetValue(verbosity) != Verbosity.Quiet)
                throw new ArgumentException($"--quiet and --verbosity {r.GetValue(verbosity).ToString().ToLowerInvariant()} contradict each other; give one.");
            if (collective is not null)
            {
                var single = new (bool Given, string Flag)[]
                {
                    (r.GetValue(evalEvery) is not null, "--eval-every"), (r.GetValue(saveEvery) is not null, "--save-every"), (best is not null, "--save-best"),
                    (stopRule.Key is not null, "--early-stop"), (plateauRule.Key is not null, "--reduce-lr-on-plateau"), (plotPath is not null, "--plot"),
                    (r.GetValue(onNan) != NonFinitePolicy.Stop, "--on-nan"), (r.GetValue(epochs) is not null, "--epochs"), (r.GetValue(json), "--json"),
                };
                if (single.FirstOrDefault(s => s.Given) is { Flag: { } flag })
                    throw new ArgumentException($"{flag} applies to single-process training; distributed training (--distributed, or launched by mpirun) takes --steps, --log, --eval (once, at the end) and -o.");
            }
            var say = level == Verbosity.Quiet ? TextWriter.Null : rankIO.Out;

            // Every output is locked (and so checked writable) before any work, so that a bad path fails at once, not
            // after the run. Rank 0 alone writes the checkpoint and the log, so it alone holds their locks.
            bool writer = collective is not { Rank: > 0 };
            using var outputLock = writer ? DestinationLock.Acquire(outPath, "checkpoint (-o)") : null;
            using var logLock = writer && r.GetValue(log) is { } logTarget ? DestinationLock.Acquire(logTarget, "step log (--log)") : null;
            using var plotLock = writer && plotPath is not null ? DestinationLock.Acquire(plotPath, "plot (--plot)") : null;

            // The step model's contract is read (or made) once here and passed along to everything below.
            var (model, info) = Prepare(path, r, flags, build, checkpoint, rankIO, say);
            var dataset = Dataset.Open(r.GetValue(data)!, TrainingRun.InputSpecs(model, info));
            var batchPlan = dataset.Plan(common.BatchSize(r), common.Shuffle(r), common.Seed(r));
            if (collective is not null)
                return RunDistributed(rankIO, collective, model, info, dataset, common.RunOptions(r, r.GetValue(steps)!.Value), r.GetValue(threads), r.GetValue(bucketMb),
                    r.GetValue(checkReplicas), r.GetValue(update), r.GetValue(log), outPath, r.GetValue(eval), level);

            var heldOut = r.GetValue(eval) is { } held ? Dataset.Open(held, TrainingRun.InputSpecs(model, info)) : null;
            say.WriteLine("loading the step model into ONNX Runtime…");
            using var trainer = new Trainer(model, info, new TrainerOptions { Device = r.GetValue(device), Threads = r.GetValue(threads), ProfilePath = r.GetValue(profile), Update = r.GetValue(update) });
            var dataPlan = DataPlan.Of(r.GetValue(data)!, batchPlan);
            if (trainer.Iteration > 0 && DataPlan.Read(model, path) is { } recorded && recorded.ChangesTo(dataPlan) is { Count: > 0 } changes)
            {
                var message = DataPlan.Describe(path, changes);
                if (r.GetValue(strict)) throw new ArgumentException($"{message}; expected the same plan under --strict.");
                rankIO.Error.WriteLine($"onnx-adadelta: warning: {message}.");
            }
            say.WriteLine($"update: {trainer.UpdateDescription}");
            // Warned once the run is sure to start, so that an error before it stays a single line.
            WarnOnKerasDefault(trainer.Info.Optimizer, rankIO);

            var policy = r.GetValue(onNan);
            var callbacks = new List<TrainingCallback>();
            var table = new HistoryTable();
            callbacks.Add(table);
            // One evaluator (one session) serves every evaluation of the run and the final held-out line.
            using var evaluator = heldOut is null ? null : new Evaluator(trainer);
            if (heldOut is not null) callbacks.Add(new ValidationCallback(heldOut, r.GetValue(evalEvery), evaluator: evaluator));
            string Beside(string suffix) => Path.Combine(Path.GetDirectoryName(Path.GetFullPath(outPath))!, StemOf(outPath) + suffix);
            // Every checkpoint of the run records its data plan, so that a resume from any of them can check it.
            Action<ModelProto> amend = dataPlan.WriteTo;
            PeriodicCheckpoint? periodic = null;
            if (r.GetValue(saveEvery) is { } every) callbacks.Add(periodic = new PeriodicCheckpoint(i => Beside($".step{i}.onnx"), every, r.GetValue(keep), policy == NonFinitePolicy.Continue, amend));
            BestCheckpoint? bestCheckpoint = null;
            if (best is not null) callbacks.Add(bestCheckpoint = new BestCheckpoint(Beside(".best.onnx"), best, amend));
            if (stopRule.Key is not null) callbacks.Add(new EarlyStopping(stopRule.Key, stopRule.Value));
            ReduceLearningRateOnPlateau? reducer = null;
            if (plateauRule.Key is not null) callbacks.Add(reducer = new ReduceLearningRateOnPlateau(heldOut is null ? "loss" : "val_loss", plateauFactor, plateauRule.Value));
            using var csv = r.GetValue(log) is { } logPath ? new CsvLog(logPath) : null;
            if (csv is not null) callbacks.Add(csv);

            var fit = new FitOptions
            {
                Steps = r.GetValue(steps),
                Epochs = r.GetValue(epochs),
                BatchSize = common.BatchSize(r),
                Shuffle = common.Shuffle(r),
                Seed = common.Seed(r),
                OnNonFinite = policy,
                Callbacks = callbacks,
            };
            using var signals = new SignalCancellation();
            var progress = new ProgressPrinter(rankIO, level, byEpochs: r.GetValue(epochs) is not null);
            History result = null!;
            progress.Run(callbacks, () => result = Fit.Run(trainer, dataset, fit, signals.Token));

            // No checkpoint holds a NaN or infinity unless --on-nan continue asked for it.
            bool finite = trainer.FindNonFinite() is null;
            string? written = finite || policy == NonFinitePolicy.Continue ? outPath : null;
            if (written is not null) Checkpoints.Save(trainer, outPath, policy == NonFinitePolicy.Continue, amend);
            csv?.Dispose();
            if (plotPath is not null && written is not null)
                RunPlot.Draw(r.GetValue(log) is { } logFile ? RunPlot.ReadLog(logFile) : table.Rows, plotPath);
            if (trainer.EndProfiling() is { } profilePath) say.WriteLine(DescribeProfile(profilePath, trainer.Info.Optimizer.Name));
            var summary = rankIO.Out;
            if (!r.GetValue(json))
            {
                foreach (var (iteration, lr) in reducer?.Reductions ?? []) summary.WriteLine($"learning rate reduced to {lr:G6} at step {iteration}");
                if (result.SkippedSteps > 0) summary.WriteLine($"skipped {result.SkippedSteps} step{(result.SkippedSteps == 1 ? "" : "s")} whose loss or update was not finite (--on-nan skip)");
                summary.WriteLine(ProgressPrinter.Summary(result, written, trainer.Iteration));
            }
            EvaluationResult? last = null;
            if (heldOut is not null && result.StopReason != StopReason.NonFinite)
            {
                last = result.Validations.Count > 0 && result.Validations[^1].Iteration == trainer.Iteration ? result.Validations[^1].Result : null;
                last ??= evaluator!.Evaluate(heldOut);
                if (!r.GetValue(json)) summary.WriteLine($"held-out {EvaluateCommand.Describe(last)}, loss {last.Loss:F6}");
            }
            int code = result.StopReason switch
            {
                StopReason.NonFinite => ExitCodes.NonFinite,
                StopReason.Interrupted => signals.ExitCode,
                _ => ExitCodes.Ok,
            };
            if (r.GetValue(json))
                WriteJson(rankIO.Out, result, trainer, written, last, bestCheckpoint, periodic, code);
            else if (result.StopReason == StopReason.EarlyStopping)
                summary.WriteLine(result.StopMessage);
            switch (result.StopReason)
            {
                case StopReason.NonFinite:
                    rankIO.Error.WriteLine(written is not null
                        ? $"onnx-adadelta: error: {result.StopMessage}; wrote {outPath} (iteration {trainer.Iteration}). Resume it with a lower --lr, or pass --on-nan skip."
                        : $"onnx-adadelta: error: {result.StopMessage}. Train again with a lower --lr, or pass --on-nan skip.");
                    break;
                case StopReason.Interrupted:
                    rankIO.Error.WriteLine($"onnx-adadelta: {signals.Name}: {result.StopMessage}; wrote {outPath} (iteration {trainer.Iteration}); resume with 'onnx-adadelta train {outPath} ...'.");
                    break;
            }
            return code;
        }, collective is { Size: > 1 } ? $"rank {collective.Rank} of {collective.Size}: " : ""))));
        return command;
    }

    /// <summary>The final summary of a run as one JSON document.</summary>
    private static void WriteJson(TextWriter output, History h, Trainer trainer, string? checkpoint, EvaluationResult? heldOut,
        BestCheckpoint? best, PeriodicCheckpoint? periodic, int code) => JsonOutput.Write(output, w =>
    {
        w.WriteNumber("steps", h.Last?.Step ?? 0);
        w.WriteNumber("iteration", trainer.Iteration);
        w.WriteNumber("epochs", h.Epochs.Count);
        w.Number("first_loss", h.First?.Loss);
        w.Number("last_loss", h.Last?.Loss);
        w.Number("elapsed_seconds", h.Last?.ElapsedSeconds);
        // The rate the last step applied, as the step model output it (computed on the host for older models).
        w.Number("learning_rate", h.Last?.LearningRate);
        w.WriteString("learning_rate_source", trainer.LearningRateFromGraph ? "graph" : "host");
        w.WriteNumber("skipped_steps", h.SkippedSteps);
        if (heldOut is null) w.WriteNull("eval");
        else
        {
            w.WriteStartObject("eval");
            w.WriteNumber("rows", heldOut.Rows);
            w.WriteString("output", heldOut.Output);
            w.Number("loss", heldOut.Loss);
            w.Number("accuracy", heldOut.Accuracy);
            w.Number("mean_squared_error", heldOut.MeanSquaredError);
            w.WriteEndObject();
        }
        if (checkpoint is null) w.WriteNull("checkpoint");
        else w.WriteString("checkpoint", Path.GetFullPath(checkpoint));
        w.Strings("periodic_checkpoints", periodic?.Kept ?? []);
        if (best?.SavedIteration is null) w.WriteNull("best_checkpoint_iteration");
        else w.WriteNumber("best_checkpoint_iteration", best.SavedIteration.Value);
        w.WriteString("stop_reason", h.StopReason switch
        {
            StopReason.Completed => "completed",
            StopReason.EarlyStopping => "early_stopping",
            StopReason.NonFinite => "non_finite",
            _ => "interrupted",
        });
        if (h.StopMessage is null) w.WriteNull("stop_message");
        else w.WriteString("stop_message", h.StopMessage);
        w.WriteNumber("exit_code", code);
    });

    /// <summary>The distributed run (main's data-parallel path): steps, the step log and the checkpoint; rank 0 prints.</summary>
    private static int RunDistributed(CliIO rankIO, ICollective collective, ModelProto model, StepModelInfo info, Dataset dataset, TrainingRunOptions run, int? threads,
        double bucketMb, bool checkReplicas, UpdateMode? update, string? logPath, string outPath, string? evalPath, Verbosity level)
    {
        var evalTarget = evalPath is null ? null : LabelInput(model, info);
        var say = level == Verbosity.Quiet ? TextWriter.Null : rankIO.Out;
        using var ranks = new DistributedTrainer(model, collective, new DistributedOptions { Threads = threads, BucketMb = bucketMb, CheckReplicas = checkReplicas, Update = update });
        say.WriteLine($"update: {ranks.UpdateDescription}");
        using var csv = collective.Rank == 0 && logPath is not null ? new CsvLog(logPath) : null;
        using var signals = new SignalCancellation();
        var progress = new ProgressPrinter(rankIO, level, byEpochs: false);
        var plan = dataset.Plan(run.BatchSize, run.Shuffle, run.Seed);
        StepReport? first = null, last = null;
        progress.Run([], () => DistributedRun.Run(ranks, dataset, run, s =>
        {
            var report = s with { Epoch = plan.EpochOf(s.Iteration - 1) + 1, StepInEpoch = plan.BatchInEpoch(s.Iteration - 1) + 1, StepsPerEpoch = plan.BatchesPerEpoch };
            first ??= report;
            last = report;
            csv?.Add(report);
            progress.Step(report);
        }, signals.Token));
        // No rank writes until every rank has finished its last step: a failure anywhere leaves no checkpoint.
        ranks.Barrier();
        if (collective.Rank != 0) return signals.Fired ? signals.ExitCode : ExitCodes.Ok;
        var result = ranks.Checkpoint();
        ModelIO.Save(result, outPath);
        rankIO.Out.WriteLine((first is null || last is null
            ? $"no steps run; wrote {outPath}"
            : $"trained {last.Step} steps in {last.ElapsedSeconds:F2} s ({ProgressPrinter.Rate(last):F1} steps/s): loss {first.Loss:F6} -> {last.Loss:F6}; wrote {outPath} (iteration {ranks.Iteration})")
            + $"; {collective.Size} ranks, global batch split by rows");
        if (evalPath is not null)
            rankIO.Out.WriteLine("held-out " + EvaluateCommand.Describe(Evaluation.Run(result, evalPath, evalTarget!)));
        if (!signals.Fired) return ExitCodes.Ok;
        rankIO.Error.WriteLine($"onnx-adadelta: {signals.Name}: interrupted after step {ranks.Iteration}; wrote {outPath} (iteration {ranks.Iteration}).");
        return signals.ExitCode;
    }

    /// <summary>The data input that only the loss reads (the labels), for --eval of a distributed run.</summary>
    private static string LabelInput(ModelProto stepModel, StepModelInfo info)
    {
        var inferenceInputs = InferenceExport.Export(stepModel, info).Graph.Input.Select(i => i.Name).ToHashSet();
        return TrainingRun.InputSpecs(stepModel, info).Select(s => s.Name).FirstOrDefault(n => !inferenceInputs.Contains(n))
            ?? throw new ArgumentException("--eval: the model has no label input to compare with; use 'onnx-adadelta evaluate'.");
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
        if (code is not (ExitCodes.Ok or ExitCodes.Interrupted or ExitCodes.Terminated) && collective.Size > 1) collective.Abort(code);
        collective.Dispose();
        return code;
    }

    /// <summary>
    /// Classifies the model and makes its step model, saying what happens on <paramref name="say"/>; returns it with its
    /// contract, read once from a step model's metadata or kept from the rewrite that wrote it.
    /// </summary>
    private static (ModelProto Model, StepModelInfo Info) Prepare(string path, ParseResult r, AdadeltaFlags flags, BuildTrainingFlags build, Option<string?> checkpoint, CliIO io, TextWriter say)
    {
        var model = ModelIO.Load(path, CliApp.LoadOptionsOf(r));
        var stepInfo = StepModelInfo.TryRead(model, path);
        bool isArtifact = stepInfo is null && OrtArtifactImport.IsArtifact(model);
        if (r.GetValue(checkpoint) is not null && !isArtifact)
            throw new ArgumentException($"--checkpoint applies only to ONNX Runtime training models ({OrtArtifactImport.AccumulatorOp} gradient accumulators); {path} is not one.");
        if (build.LossGiven(r))
        {
            if (stepInfo is not null) throw new ArgumentException($"{path} is already a training-step model; --loss applies only to inference models.");
            if (isArtifact) throw new ArgumentException($"{path} is an ONNX Runtime training model; --loss applies only to inference models.");
            say.WriteLine($"building the training graph of {Path.GetFileName(path)} (reverse-mode autodiff; large models take a few seconds)…");
            // Quiet and --json runs keep standard output for the summary alone.
            model = build.Build(model, r, ReferenceEquals(say, TextWriter.Null) ? io.Quiet() : io);
        }
        if (stepInfo is not null)
        {
            if (flags.FixedFlagGiven(r) is { } fixedFlag)
                throw new ArgumentException($"{path} is already a training-step model; {fixedFlag} is fixed in it (a resumed model takes only --lr, --schedule, --rho, --epsilon and --weight-decay).");
            if (flags.Changed(r, stepInfo.Optimizer) is { } changed)
            {
                say.WriteLine($"rewriting the optimizer of {Path.GetFileName(path)} with the new settings (parameters, accumulators and counter kept)…");
                model = OptimizerChange.Apply(model, stepInfo, changed, out stepInfo);
            }
            return (model, stepInfo);
        }
        var rewrite = flags.Rewrite(r);
        if (isArtifact)
        {
            say.WriteLine($"importing the ONNX Runtime training model {Path.GetFileName(path)}…");
            model = OrtArtifactImport.Import(model, ImportOrtCommand.Options(path, r.GetValue(checkpoint), rewrite.ParameterValues));
        }
        say.WriteLine("inserting the Adadelta update…");
        model = AdadeltaRewrite.Apply(model, flags.Options(r), rewrite, out var info);
        return (model, info);
    }

    private static void WarnOnKerasDefault(AdadeltaOptions options, CliIO io)
    {
        if (options.LearningRate is ConstantLearningRate { Value: var lr } && lr == (float)AdadeltaOptions.DefaultLearningRate && options.Groups.All(g => g.LearningRate is null))
            io.Error.WriteLine("onnx-adadelta: warning: the learning rate is 0.001, Keras's default, with which Adadelta learns slowly; Zeiler's paper and PyTorch use 1.0 (--preset pytorch, --preset paper or --lr 1.0).");
    }

    private static KeyValuePair<string, int> ParsePair(string value, string flag, string form)
    {
        var colon = value.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(value[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var n))
            throw new ArgumentException($"{flag} {value}: expected {form} (PATIENCE a whole number).");
        return new(value[..colon], n);
    }

    /// <summary>The file name of <paramref name="path"/> without its <c>.onnx</c> extension.</summary>
    private static string StemOf(string path)
    {
        var name = Path.GetFileName(path);
        return name.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase) ? name[..^5] : name;
    }
}

/// <summary>Turns SIGINT (Ctrl-C) and SIGTERM into a cancellation, once; a second signal ends the process at once.</summary>
internal sealed class SignalCancellation : IDisposable
{
    private readonly CancellationTokenSource _cts = new();
    private readonly PosixSignalRegistration[] _registrations;
    private int _signal;

    public SignalCancellation()
    {
        _registrations = [PosixSignalRegistration.Create(PosixSignal.SIGINT, Handle), PosixSignalRegistration.Create(PosixSignal.SIGTERM, Handle)];
    }

    private void Handle(PosixSignalContext context)
    {
        var code = context.Signal == PosixSignal.SIGTERM ? ExitCodes.Terminated : ExitCodes.Interrupted;
        // A second signal is not cancelled: the process ends as the signal's default action ends it.
        if (Interlocked.CompareExchange(ref _signal, code, 0) != 0) return;
        context.Cancel = true;
        _cts.Cancel();
    }

    public CancellationToken Token => _cts.Token;

    /// <summary>Whether a signal came.</summary>
    public bool Fired => Volatile.Read(ref _signal) != 0;

    /// <summary>130 after SIGINT, 143 after SIGTERM (128 + the signal number, as shells report them).</summary>
    public int ExitCode => Volatile.Read(ref _signal) == 0 ? ExitCodes.Interrupted : Volatile.Read(ref _signal);

    public string Name => Volatile.Read(ref _signal) == ExitCodes.Terminated ? "terminated (SIGTERM)" : "interrupted (SIGINT)";

    public void Dispose()
    {
        foreach (var r in _registrations) r.Dispose();
        _cts.Dispose();
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

    /// <summary>--batch-size.</summary>
    public int? BatchSize(ParseResult r) => r.GetValue(_batchSize);

    /// <summary>--shuffle.</summary>
    public bool Shuffle(ParseResult r) => r.GetValue(_shuffle);

    /// <summary>--seed.</summary>
    public int Seed(ParseResult r) => r.GetValue(_seed);

    /// <summary>The run options for <paramref name="steps"/> steps.</summary>
    public TrainingRunOptions RunOptions(ParseResult r, int steps) =>
        new() { Steps = steps, BatchSize = r.GetValue(_batchSize), Shuffle = r.GetValue(_shuffle), Seed = r.GetValue(_seed) };
}

/// <summary>Keeps the per-step losses and validation metrics the plot draws when there is no --log to read back.</summary>
internal sealed class HistoryTable : TrainingCallback
{
    private readonly List<LogRow> _rows = [];

    public IReadOnlyList<LogRow> Rows => _rows;

    public override void OnStepEnd(FitContext context, StepReport step) =>
        _rows.Add(new LogRow(step.Iteration, step.Loss, step.LearningRate, null, null, null));

    public override void OnValidation(FitContext context, ValidationReport validation)
    {
        if (_rows.Count == 0) return;
        var m = validation.Metrics;
        _rows[^1] = _rows[^1] with
        {
            ValLoss = m.TryGetValue("val_loss", out var l) ? l : null,
            ValAccuracy = m.TryGetValue("val_accuracy", out var a) ? a : null,
            ValMse = m.TryGetValue("val_mse", out var e) ? e : null,
        };
    }
}

/// <summary>
/// Progress: on a terminal a live bar (epoch, step/total, running-mean loss, learning rate, steps/s, ETA) with one line
/// per epoch kept above it; otherwise about 20 plain lines per run (every step under detailed verbosity), plus one per
/// epoch when training by epochs. Quiet prints nothing.
/// </summary>
internal sealed class ProgressPrinter(CliIO io, TrainCommand.Verbosity level, bool byEpochs)
{
    private sealed class Hook(ProgressPrinter owner) : TrainingCallback
    {
        public override void OnStepEnd(FitContext context, StepReport step) => owner.Step(step);

        public override void OnEpochEnd(FitContext context, EpochReport epoch) => owner.Epoch(epoch);

        public override void OnValidation(FitContext context, ValidationReport validation) => owner.Validation(validation);
    }

    private ProgressTask? _task;
    private ValidationReport? _lastValidation;
    private ValidationReport? _printedValidation;

    public void Run(List<TrainingCallback> callbacks, Action body)
    {
        if (level == TrainCommand.Verbosity.Quiet)
        {
            body();
            return;
        }
        callbacks.Add(new Hook(this));
        if (io.Console.Profile.Capabilities.Interactive)
        {
            io.Console.Progress()
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    _task = ctx.AddTask("training");
                    body();
                });
            return;
        }
        body();
    }

    internal static double Rate(StepReport s) => s.ElapsedSeconds > 0 ? s.Step / s.ElapsedSeconds : 0;

    private static string Eta(StepReport s)
    {
        var rate = Rate(s);
        if (rate <= 0) return "?";
        var left = TimeSpan.FromSeconds((s.Steps - s.Step) / rate);
        return left.TotalHours >= 1 ? left.ToString(@"h\:mm\:ss", CultureInfo.InvariantCulture) : left.ToString(@"m\:ss", CultureInfo.InvariantCulture);
    }

    private static string Loss(StepReport s) => (double.IsNaN(s.RunningLoss) ? s.Loss : s.RunningLoss).ToString("F6", CultureInfo.InvariantCulture);

    /// <summary>Shows one finished step.</summary>
    public void Step(StepReport s)
    {
        if (level == TrainCommand.Verbosity.Quiet) return;
        if (_task is not null)
        {
            _task.MaxValue = s.Steps;
            _task.Value = s.Step;
            _task.Description = $"epoch {s.Epoch}  step {s.Step}/{s.Steps}  loss {Loss(s)}  lr {s.LearningRate:G4}  {Rate(s):F0} steps/s  ETA {Eta(s)}";
            return;
        }
        int every = level == TrainCommand.Verbosity.Detailed ? 1 : Math.Max(1, s.Steps / 20);
        if (s.Step == 1 || s.Step % every == 0 || s.Step == s.Steps)
        {
            var val = _lastValidation is { } v && !ReferenceEquals(v, _printedValidation) ? "  " + Describe(v) : "";
            _printedValidation = _lastValidation;
            io.Out.WriteLine($"step {s.Iteration,6}  {s.Step}/{s.Steps}  epoch {s.Epoch}  loss {Loss(s)}  lr {s.LearningRate:G6}  {Rate(s),8:F1} steps/s  ETA {Eta(s)}{(s.Skipped ? "  (skipped: not finite)" : "")}{val}");
        }
    }

    private void Validation(ValidationReport v)
    {
        _lastValidation = v;
        if (level == TrainCommand.Verbosity.Detailed && _task is null)
            io.Out.WriteLine($"evaluated at step {v.Iteration}: {Describe(v)}");
    }

    private void Epoch(EpochReport e)
    {
        // The hook runs after the validation callback, so an evaluation at this epoch's end is already known.
        var val = _lastValidation is { } v && v.Iteration == e.Iteration ? "  " + Describe(v) : "";
        var line = $"epoch {e.Epoch}: loss {e.Loss:F6}{val}  ({e.Steps} steps, {e.ElapsedSeconds:F1} s)";
        if (_task is not null) io.Console.MarkupLine(Markup.Escape(line));
        else if (byEpochs || level == TrainCommand.Verbosity.Detailed) io.Out.WriteLine(line);
    }

    private static string Describe(ValidationReport v) => string.Join("  ", v.Metrics.Select(m => m.Key.EndsWith("accuracy", StringComparison.Ordinal)
        ? $"{m.Key} {m.Value:P2}" : $"{m.Key} {m.Value:F6}"));

    /// <summary>The summary line of a run; <paramref name="checkpoint"/> is null when none was written.</summary>
    public static string Summary(History h, string? checkpoint, long iteration)
    {
        var wrote = checkpoint is null ? "no checkpoint written (its state is not finite)" : $"wrote {checkpoint} (iteration {iteration})";
        return h.First is not { } first || h.Last is not { } last
            ? $"no steps run; {wrote}"
            : $"trained {last.Step} steps in {last.ElapsedSeconds:F2} s ({Rate(last):F1} steps/s): loss {first.Loss:F6} -> {last.Loss:F6}; {wrote}";
    }
}
