using System.CommandLine;
using OnnxAdadelta.Onnx.Proto;
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
        var data = new Option<string>("--data") { Description = "An .npz file with one array per data input, rows along axis 0.", Required = true };
        var steps = new Option<int>("--steps") { Description = "Optimizer steps to run.", Required = true };
        var common = new DataFlags();
        var device = new Option<Device>("--device") { Description = "cpu or cuda.", DefaultValueFactory = _ => Device.Cpu };
        var log = new Option<string?>("--log") { Description = "Write one CSV row per step: step, loss, learning rate, elapsed seconds." };
        var output = new Option<string>("-o", "--out") { Description = "Where to write the checkpoint.", Required = true };
        var threads = new Option<int?>("--threads") { Description = "ONNX Runtime intra-op threads (default: one per core)." };
        var checkpoint = new Option<string?>("--checkpoint") { Description = "With an ONNX Runtime training model (generate_artifacts): its checkpoint, holding the parameter values." };
        var eval = new Option<string?>("--eval") { Description = "After training, report accuracy (or MSE) of the exported model on this .npz (held-out data)." };
        var flags = new AdadeltaFlags();
        var build = new BuildTrainingFlags(flags.Freeze);
        var command = new Command("train", "Train with Adadelta on ONNX Runtime and write a checkpoint to resume from.") { input, data, steps, device, log, output, eval, threads, checkpoint };
        common.AddTo(command);
        flags.AddTo(command);
        build.AddTo(command);
        command.SetAction((r, cancel) => Task.FromResult(io.Guard(() =>
        {
            var path = r.GetValue(input)!;
            if (r.GetValue(steps) < 1) throw new ArgumentException($"--steps {r.GetValue(steps)}: expected at least 1.");
            if (r.GetValue(eval) is { } evalPath && !File.Exists(evalPath)) throw new ArgumentException($"--eval {evalPath}: no such file.");
            var model = ModelIO.Load(path);
            bool isStep = StepModelInfo.TryRead(model, path) is not null;
            bool isArtifact = OrtArtifactImport.IsArtifact(model);
            if (r.GetValue(checkpoint) is not null && !isArtifact)
                throw new ArgumentException($"--checkpoint applies only to ONNX Runtime training models ({OrtArtifactImport.AccumulatorOp} gradient accumulators); {path} is not one.");
            if (build.LossGiven(r))
            {
                if (isStep) throw new ArgumentException($"{path} is already a training-step model; --loss applies only to inference models.");
                if (isArtifact) throw new ArgumentException($"{path} is an ONNX Runtime training model; --loss applies only to inference models.");
                model = build.Build(model, r, io);
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
            using var trainer = new Trainer(model, new TrainerOptions { Device = r.GetValue(device), Threads = r.GetValue(threads) });
            var stepLog = r.GetValue(log) is null ? null : new StepLog();
            var progress = new ProgressPrinter(io, run.Steps);
            progress.Run(report => TrainingRun.Run(trainer, dataset, run, s => { stepLog?.Add(s); report(s); }, cancel));

            var trained = trainer.Checkpoint();
            ModelIO.Save(trained, r.GetValue(output)!);
            if (r.GetValue(log) is { } logPath) stepLog!.Save(logPath);
            io.Out.WriteLine(progress.Summary(r.GetValue(output)!, trainer.Iteration));
            if (r.GetValue(eval) is { } held)
                io.Out.WriteLine("held-out " + EvaluateCommand.Describe(Evaluation.Run(trained, held, evalTarget!)));
            return 0;
        })));
        return command;
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
