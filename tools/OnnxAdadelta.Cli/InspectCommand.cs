using System.CommandLine;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using Spectre.Console;

namespace OnnxAdadelta.Cli;

/// <summary><c>inspect MODEL.onnx</c>: parameters, gradients, state and opsets.</summary>
public static class InspectCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create(CliIO io)
    {
        var input = new Argument<string>("MODEL.onnx") { Description = "Any ONNX model: a training graph, a step model, a checkpoint." };
        var command = new Command("inspect", "Show a model's parameters, gradients, optimizer state and opsets.") { input };
        command.SetAction(r => io.Guard(() =>
        {
            var path = r.GetValue(input)!;
            var summary = ModelSummary.Of(ModelIO.Load(path, CliApp.LoadOptionsOf(r)), path);
            io.Console.MarkupLineInterpolated($"[bold]{summary.Kind}[/] (IR {summary.IrVersion}; opsets {string.Join(", ", summary.Opsets)})");
            foreach (var note in summary.Notes) io.Console.WriteLine(note);
            var table = new Table().AddColumns("tensor", "role", "type", "detail");
            foreach (var row in summary.Rows) table.AddRow(Markup.Escape(row.Name), row.Role, Markup.Escape(row.Type), Markup.Escape(row.Detail));
            io.Console.Write(table);
            return 0;
        }));
        return command;
    }
}
