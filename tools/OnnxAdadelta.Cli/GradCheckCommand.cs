using System.CommandLine;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Training;
using Spectre.Console;

namespace OnnxAdadelta.Cli;

/// <summary>
/// <c>gradcheck MODEL.onnx --loss ... --output NAME --data DATA [--rows N] [--params P...] [--directions K] [--eps H]</c>:
/// the training graph's gradients against central finite differences of the loss.
/// </summary>
public static class GradCheckCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create(CliIO io)
    {
        var input = new Argument<string>("MODEL.onnx") { Description = "An inference model." };
        var data = new Option<string>("--data") { Description = "The model's inputs and the label/target array: .npz, .csv, .npy, or a folder of .npy files.", Required = true };
        var rows = new Option<int>("--rows") { Description = "Rows of data the loss is computed on (the first ones).", DefaultValueFactory = _ => 8 };
        var parameters = new Option<string[]>("--params") { Description = "NAME or PATTERN: the parameters to check (repeatable; default: every trainable one).", Arity = ArgumentArity.ZeroOrMore };
        var directions = new Option<int>("--directions") { Description = "Random directions per parameter.", DefaultValueFactory = _ => 3 };
        var eps = new Option<double?>("--eps") { Description = "The finite-difference step along a unit direction (default: chosen per parameter)." };
        var tolerance = new Option<double?>("--tolerance") { Description = "The largest relative error that passes (default: 1e-3 for a float64 loss, 2e-2 for float32)." };
        var seed = new Option<ulong>("--seed") { Description = "Seeds the random directions.", DefaultValueFactory = _ => 1UL };
        var flags = new BuildTrainingFlags();
        var command = new Command("gradcheck", "Check the gradients of MODEL.onnx's training graph against finite differences of the loss, computed by ONNX Runtime on the model itself.")
            { input, data, rows, parameters, directions, eps, tolerance, seed };
        flags.AddTo(command);
        command.SetAction(r => io.Guard(() =>
        {
            var model = ModelIO.Load(r.GetValue(input)!);
            var report = GradCheck.Run(model, new GradCheckOptions
            {
                Build = flags.Options(r),
                Rows = r.GetValue(rows),
                Parameters = r.GetValue(parameters) ?? [],
                Directions = r.GetValue(directions),
                Step = r.GetValue(eps),
                Tolerance = r.GetValue(tolerance),
                Seed = r.GetValue(seed),
            }, r.GetValue(data)!);
            Print(report, io);
            return report.Passed ? 0 : 1;
        }));
        return command;
    }

    private static void Print(GradCheckReport report, CliIO io)
    {
        io.Out.WriteLine($"loss in {report.Precision} on {report.Rows} rows{(report.PrecisionNote.Length > 0 ? $" ({report.PrecisionNote})" : "")}; tolerance {report.Tolerance:G3} (relative)");
        var table = new Table().AddColumns("parameter", "values", "max error", "step", "result");
        foreach (var p in report.Parameters)
            table.AddRow(Markup.Escape(p.Name), p.Elements.ToString("N0"), p.Status == GradCheckStatus.NotChecked ? "-" : p.MaxError.ToString("0.0e+0"),
                p.Status == GradCheckStatus.NotChecked ? "-" : p.Step.ToString("0.0e+0"), p.Status switch
                {
                    GradCheckStatus.Passed => "ok",
                    GradCheckStatus.PassedAcrossKink => "ok (kink)",
                    GradCheckStatus.Failed => "FAILED",
                    _ => "not checked",
                });
        io.Console.Write(table);
        foreach (var p in report.Parameters.Where(p => p.Detail.Length > 0))
            io.Out.WriteLine($"{p.Name}: {p.Detail}");
        int failed = report.Parameters.Count(p => p.Status == GradCheckStatus.Failed);
        int checkedCount = report.Parameters.Count(p => p.Status != GradCheckStatus.NotChecked);
        io.Out.WriteLine(report.Passed
            ? $"gradcheck passed: {checkedCount} parameters match the finite differences"
            : failed > 0 ? $"gradcheck FAILED: {failed} of {checkedCount} parameters disagree with the finite differences" : "gradcheck checked no parameter");
    }
}
