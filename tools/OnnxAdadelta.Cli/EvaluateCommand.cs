using System.CommandLine;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Cli;

/// <summary><c>evaluate MODEL.onnx --data DATA.npz --target labels [--output NAME]</c>: accuracy or loss.</summary>
public static class EvaluateCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create(CliIO io)
    {
        var input = new Argument<string>("MODEL.onnx") { Description = "An inference model, checkpoint or step model." };
        var data = new Option<string>("--data") { Description = "The model's inputs and the target: an .npz, a .csv with a header row, an .npy, or a folder of NAME.npy files.", Required = true };
        var target = new Option<string>("--target") { Description = "The target array: int labels (accuracy) or floats (mean squared error).", DefaultValueFactory = _ => "labels" };
        var output = new Option<string?>("--output") { Description = "The output to compare (default: the first)." };
        var json = JsonOutput.Option();
        var command = new Command("evaluate", "Report a model's accuracy (class labels) or mean squared error (float targets) on a dataset.") { input, data, target, output, json };
        command.SetAction(r => io.Guard(() =>
        {
            var result = Evaluation.Run(ModelIO.Load(r.GetValue(input)!, CliApp.LoadOptionsOf(r)), r.GetValue(data)!, r.GetValue(target)!, r.GetValue(output));
            if (r.GetValue(json))
                JsonOutput.Write(io.Out, w =>
                {
                    w.WriteNumber("rows", result.Rows);
                    w.WriteString("output", result.Output);
                    w.Number("accuracy", result.Accuracy);
                    w.Number("mean_squared_error", result.MeanSquaredError);
                });
            else
                io.Out.WriteLine(Describe(result));
            return 0;
        }));
        return command;
    }

    /// <summary>One line: rows, output, and accuracy or MSE.</summary>
    public static string Describe(EvaluationResult r) => r.Accuracy is { } a
        ? $"accuracy {a:P2} ({r.Rows} rows, output '{r.Output}')"
        : $"mean squared error {r.MeanSquaredError:G6} ({r.Rows} rows, output '{r.Output}')";
}
