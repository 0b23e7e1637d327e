using System.CommandLine;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using Spectre.Console;

namespace OnnxAdadelta.Cli;

/// <summary>The flags that choose the loss and the trainable parameters (<c>build-training</c>, and <c>train</c> on an inference model).</summary>
public sealed class BuildTrainingFlags
{
    private readonly Option<string?> _loss = new("--loss") { Description = "cross-entropy | nll | bce | mse | output: the loss to append (needed for an inference model)." };
    private readonly Option<string?> _output = new("--output") { Description = "The float value the loss reads: a model output or any value of the graph (or, with --loss output, the scalar loss)." };
    private readonly Option<string?> _target = new("--target") { Description = "The label/target input (default: labels for cross-entropy and nll, target for mse and bce)." };
    private readonly Option<int?> _classAxis = new("--class-axis") { Description = "The class axis of --output for cross-entropy and nll (default: a Softmax's axis, else the axis the labels lack, else 1 for rank 2)." };
    private readonly Option<string[]> _inputShape = new("--input-shape") { Description = "NAME=D0,D1,...: fix the symbolic dimensions of a graph input ('?' keeps one); repeatable.", Arity = ArgumentArity.ZeroOrMore };
    private readonly Option<string[]> _freeze;
    private readonly bool _ownsFreeze;
    private readonly Option<string[]> _trainable = new("--trainable") { Description = "NAME or PATTERN: train only these (repeatable); exact names may be graph inputs without values.", Arity = ArgumentArity.ZeroOrMore };
    private readonly Option<bool> _list = new("--list-parameters") { Description = "Print every candidate parameter: its shape, whether it trains, and why." };
    private readonly Option<bool?> _trainableConstants = new("--trainable-constants") { Description = "Train float Constant-node tensors (more than one element) as weights: true or false (default: only where the model has no float initializers)." };
    private readonly Option<string?> _batchNorm = new("--batchnorm") { Description = "inference | train: BatchNormalization with its running statistics (default), or with batch statistics, the running ones updated each step." };
    private readonly Option<string?> _dropout = new("--dropout") { Description = "identity | train: Dropout as an identity (default), or a new random mask every step." };

    /// <summary>The flags, sharing <paramref name="freeze"/> with the Adadelta flags where a command has both.</summary>
    public BuildTrainingFlags(Option<string[]>? freeze = null)
    {
        _ownsFreeze = freeze is null;
        _freeze = freeze ?? FreezeOption();
    }

    /// <summary>The one <c>--freeze</c> flag (alias <c>--frozen</c>) of every verb.</summary>
    public static Option<string[]> FreezeOption() => new("--freeze", "--frozen")
    {
        Description = "NAME or PATTERN ('*' matches anything, otherwise a substring): parameters to leave untrained; repeatable.",
        Arity = ArgumentArity.ZeroOrMore,
    };

    /// <summary>Adds the flags to <paramref name="command"/>.</summary>
    public void AddTo(Command command)
    {
        foreach (var o in new Option[] { _loss, _output, _target, _classAxis, _inputShape, _trainable, _list, _trainableConstants, _batchNorm, _dropout }) command.Options.Add(o);
        if (_ownsFreeze) command.Options.Add(_freeze);
    }

    /// <summary>Whether --loss was given.</summary>
    public bool LossGiven(ParseResult r) => r.GetValue(_loss) is not null;

    /// <summary>The options; throws naming a missing or invalid flag.</summary>
    public BuildTrainingOptions Options(ParseResult r)
    {
        var loss = r.GetValue(_loss) switch
        {
            "cross-entropy" => LossKind.CrossEntropy,
            "nll" => LossKind.Nll,
            "bce" => LossKind.Bce,
            "mse" => LossKind.Mse,
            "output" => LossKind.Output,
            null => throw new ArgumentException("--loss is required: cross-entropy, nll, bce, mse or output."),
            var other => throw new ArgumentException($"--loss {other}: expected cross-entropy, nll, bce, mse or output."),
        };
        var output = r.GetValue(_output) ?? throw new ArgumentException("--output NAME is required: the float value the loss reads.");
        var shapes = new Dictionary<string, long?[]>(StringComparer.Ordinal);
        foreach (var text in r.GetValue(_inputShape) ?? [])
        {
            var (name, dims) = InputShapes.Parse(text);
            if (!shapes.TryAdd(name, dims)) throw new ArgumentException($"--input-shape names input '{name}' twice.");
        }
        return new BuildTrainingOptions
        {
            Loss = loss,
            Output = output,
            Target = r.GetValue(_target),
            ClassAxis = r.GetValue(_classAxis),
            InputShapes = shapes,
            Freeze = r.GetValue(_freeze) ?? [],
            Trainable = r.GetValue(_trainable) ?? [],
            TrainableConstants = r.GetValue(_trainableConstants),
            BatchNorm = r.GetValue(_batchNorm) switch
            {
                null or "inference" => BatchNormMode.Inference,
                "train" => BatchNormMode.Train,
                var other => throw new ArgumentException($"--batchnorm {other}: expected inference or train."),
            },
            Dropout = r.GetValue(_dropout) switch
            {
                null or "identity" => DropoutMode.Identity,
                "train" => DropoutMode.Train,
                var other => throw new ArgumentException($"--dropout {other}: expected identity or train."),
            },
        };
    }

    /// <summary>Builds the training graph of an inference model, printing the parameter counts (or list) and notes.</summary>
    public ModelProto Build(ModelProto inference, ParseResult r, CliIO io)
    {
        var training = GradientGraphBuilder.Build(inference, Options(r), out var report);
        foreach (var note in report.Notes) io.Out.WriteLine(note);
        io.Out.WriteLine(report.Summary());
        if (r.GetValue(_list))
        {
            var table = new Table().AddColumns("parameter", "shape", "trains", "why");
            foreach (var p in report.Parameters)
                table.AddRow(Markup.Escape(p.Name), Markup.Escape($"[{string.Join(",", p.Shape.Select(d => d?.ToString() ?? "?"))}]"), p.Trainable ? "yes" : "no", Markup.Escape(p.Reason));
            io.Console.Write(table);
        }
        return training;
    }
}

/// <summary><c>build-training MODEL.onnx --loss ... --output NAME -o TRAINING.onnx</c>: reverse-mode autodiff.</summary>
public static class BuildTrainingCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create(CliIO io)
    {
        var input = new Argument<string>("MODEL.onnx") { Description = "An inference model." };
        var output = new Option<string>("-o", "--out") { Description = "Where to write the training graph.", Required = true };
        var flags = new BuildTrainingFlags();
        var command = new Command("build-training", "Build a training graph (loss plus <param>_grad outputs, standard ONNX ops) from an inference model.") { input, output };
        flags.AddTo(command);
        command.SetAction(r => io.Guard(() =>
        {
            using var outputLock = DestinationLock.Acquire(r.GetValue(output)!, "training graph (-o)");
            var path = r.GetValue(input)!;
            var inference = ModelIO.Load(path, CliApp.LoadOptionsOf(r));
            if (StepModelInfo.TryRead(inference) is not null)
                throw new ArgumentException(
                    $"{path}: is a training-step model ('{StepModelInfo.MetadataKey}' metadata); build-training expects an inference model " +
                    "(train a step model with 'onnx-adadelta train', or 'export' its inference model first).");
            if (inference.Graph.Output.FirstOrDefault(o => o.Name.EndsWith("_grad", StringComparison.Ordinal)
                    && inference.Graph.Initializer.Any(t => t.Name == o.Name[..^5])) is { } grad)
                throw new ArgumentException(
                    $"{path}: is already a training graph (output '{grad.Name}' is a parameter's gradient); build-training expects an inference model " +
                    "(give a training graph to 'onnx-adadelta rewrite').");
            var training = flags.Build(inference, r, io);
            ModelIO.Save(training, r.GetValue(output)!);
            var grads = training.Graph.Output.Skip(1).Count(o => o.Name.EndsWith("_grad", StringComparison.Ordinal));
            io.Out.WriteLine($"wrote {r.GetValue(output)}: loss '{training.Graph.Output[0].Name}', {grads} gradient outputs");
            return 0;
        }));
        return command;
    }
}
