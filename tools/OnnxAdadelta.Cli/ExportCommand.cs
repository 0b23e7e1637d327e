using System.CommandLine;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Cli;

/// <summary><c>export CHECKPOINT.onnx -o MODEL.onnx [--output NAME]... [--ema]</c>: writes the inference model.</summary>
public static class ExportCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create(CliIO io)
    {
        var input = new Argument<string>("CHECKPOINT.onnx") { Description = "A checkpoint (or training-step model)." };
        var output = new Option<string>("-o", "--out") { Description = "Where to write the inference model.", Required = true };
        var keep = new Option<string[]>("--output") { Description = "An output to keep (repeatable; default: outputs that need no label input).", Arity = ArgumentArity.ZeroOrMore };
        var ema = new Option<bool>("--ema") { Description = "Export the moving averages of the parameters (a model rewritten with --use-ema) in place of their values." };
        var command = new Command("export", "Export the inference model from a checkpoint: the forward part, with trained parameters as initializers.") { input, output, keep, ema };
        command.SetAction(r => io.Guard(() =>
        {
            using var outputLock = DestinationLock.Acquire(r.GetValue(output)!, "inference model (-o)");
            var model = InferenceExport.Export(ModelIO.Load(r.GetValue(input)!, CliApp.LoadOptionsOf(r)), r.GetValue(keep), r.GetValue(ema));
            ModelIO.Save(model, r.GetValue(output)!);
            io.Out.WriteLine($"wrote {r.GetValue(output)}: inputs {string.Join(", ", model.Graph.Input.Select(i => i.Name))}; outputs {string.Join(", ", model.Graph.Output.Select(o => o.Name))}");
            return 0;
        }));
        return command;
    }
}
