using System.CommandLine;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Runtime;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Cli;

/// <summary><c>rewrite TRAINING.onnx -o STEP.onnx [flags]</c>: inserts the Adadelta update into a training graph.</summary>
public static class RewriteCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create(CliIO io)
    {
        var input = new Argument<string>("TRAINING.onnx") { Description = "A training graph: loss output plus one <param>_grad output per parameter." };
        var output = new Option<string>("-o", "--out") { Description = "Where to write the training-step model.", Required = true };
        var flags = new AdadeltaFlags();
        var command = new Command("rewrite", "Insert Adadelta update nodes and state into a training graph, giving a training-step model.") { input, output };
        flags.AddTo(command);
        command.SetAction(r => io.Guard(() =>
        {
            using var outputLock = DestinationLock.Acquire(r.GetValue(output)!, "step model (-o)");
            var options = flags.Options(r);
            var path = r.GetValue(input)!;
            var step = AdadeltaRewrite.Apply(ModelIO.Load(path, CliApp.LoadOptionsOf(r)), options, flags.Rewrite(r), out var info);
            OrtSessions.Validate(step, $"the step model rewritten from {path}");
            ModelIO.Save(step, r.GetValue(output)!);
            io.Out.WriteLine($"wrote {r.GetValue(output)}: {info.Parameters.Count()} parameters, {info.State.Count} state tensors, learning rate {info.Optimizer.LearningRate}");
            return 0;
        }));
        return command;
    }
}
