using System.CommandLine;
using System.Globalization;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Cli;

/// <summary>One row of a <c>train --log</c> CSV file.</summary>
/// <param name="Step">The optimizer's counter after the step.</param>
/// <param name="Loss">The step's training loss.</param>
/// <param name="LearningRate">The step's learning rate.</param>
/// <param name="ValLoss">Held-out loss, when evaluated at this step.</param>
/// <param name="ValAccuracy">Held-out accuracy, when evaluated at this step.</param>
/// <param name="ValMse">Held-out mean squared error, when evaluated at this step.</param>
public sealed record LogRow(long Step, double Loss, double LearningRate, double? ValLoss, double? ValAccuracy, double? ValMse);

/// <summary>Draws a run's curves with ScottPlot: training loss and held-out loss on the left axis, accuracy or MSE on the right.</summary>
public static class RunPlot
{
    /// <summary>"png" or "svg" from the file name, or null for anything else.</summary>
    public static string? FormatOf(string path) => Path.GetExtension(path).ToLowerInvariant() switch
    {
        ".png" => "png",
        ".svg" => "svg",
        _ => null,
    };

    /// <summary>Reads a <c>train --log</c> file (its header names the columns; step and loss are required).</summary>
    /// <exception cref="OnnxAdadeltaException">The file is not such a log; the message names the file and line.</exception>
    public static IReadOnlyList<LogRow> ReadLog(string path)
    {
        using var reader = new StreamReader(SafeFile.OpenRead(path, "step log"));
        var header = reader.ReadLine()?.Split(',') ?? throw new OnnxAdadeltaException($"{path}: empty; expected a 'train --log' CSV file.");
        int Column(string name) => Array.IndexOf(header, name);
        int step = Column("step"), loss = Column("loss"), lr = Column("learning_rate"), vl = Column("val_loss"), va = Column("val_accuracy"), vm = Column("val_mse");
        if (step < 0 || loss < 0)
            throw new OnnxAdadeltaException($"{path}: the header has no 'step' and 'loss' columns; expected a 'train --log' CSV file ({CsvLog.Header}).");
        var rows = new List<LogRow>();
        int number = 1;
        while (reader.ReadLine() is { } line)
        {
            number++;
            if (line.Length == 0) continue;
            var cells = line.Split(',');
            if (cells.Length != header.Length)
                throw new OnnxAdadeltaException($"{path}, line {number}: {cells.Length} cells, the header has {header.Length}.");
            double? Cell(int i) => i < 0 || cells[i].Length == 0 ? null
                : double.TryParse(cells[i], NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v
                : throw new OnnxAdadeltaException($"{path}, line {number}: '{cells[i]}' in column '{header[i]}' is not a number.");
            rows.Add(new LogRow((long)(Cell(step) ?? throw new OnnxAdadeltaException($"{path}, line {number}: no step.")),
                Cell(loss) ?? double.NaN, Cell(lr) ?? double.NaN, Cell(vl), Cell(va), Cell(vm)));
        }
        if (rows.Count == 0) throw new OnnxAdadeltaException($"{path}: no rows after the header.");
        return rows;
    }

    /// <summary>Draws <paramref name="rows"/> to <paramref name="path"/> (.png or .svg), written atomically.</summary>
    public static void Draw(IReadOnlyList<LogRow> rows, string path, int width = 900, int height = 500)
    {
        var format = FormatOf(path) ?? throw new OnnxAdadeltaException($"{path}: expected a .png or .svg file name.");
        var plot = new ScottPlot.Plot();
        var steps = rows.Select(r => (double)r.Step).ToArray();
        var loss = plot.Add.ScatterLine(steps, rows.Select(r => r.Loss).ToArray());
        loss.LegendText = "loss";
        var evaluated = rows.Where(r => r.ValLoss is not null).ToList();
        if (evaluated.Count > 0)
        {
            var v = plot.Add.Scatter(evaluated.Select(r => (double)r.Step).ToArray(), evaluated.Select(r => r.ValLoss!.Value).ToArray());
            v.LegendText = "val_loss";
        }
        var right = rows.Where(r => r.ValAccuracy is not null).Select(r => (r.Step, Value: r.ValAccuracy!.Value)).ToList();
        var rightName = "val_accuracy";
        if (right.Count == 0)
        {
            right = rows.Where(r => r.ValMse is not null).Select(r => (r.Step, Value: r.ValMse!.Value)).ToList();
            rightName = "val_mse";
        }
        if (right.Count > 0)
        {
            var m = plot.Add.Scatter(right.Select(p => (double)p.Step).ToArray(), right.Select(p => p.Value).ToArray());
            m.LegendText = rightName;
            m.Axes.YAxis = plot.Axes.Right;
            plot.Axes.Right.Label.Text = rightName;
        }
        plot.XLabel("step");
        plot.YLabel("loss");
        plot.ShowLegend();
        AtomicFile.Write(path, s =>
        {
            if (format == "png")
            {
                s.Write(plot.GetImageBytes(width, height, ScottPlot.ImageFormat.Png));
            }
            else
            {
                using var w = new StreamWriter(s, leaveOpen: true);
                w.Write(plot.GetSvgXml(width, height));
            }
        });
    }
}

/// <summary><c>plot LOG.csv -o FILE.png|svg</c>: draws a <c>train --log</c> file.</summary>
public static class PlotCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create(CliIO io)
    {
        var log = new Argument<string>("LOG.csv") { Description = "A CSV file written by 'train --log'." };
        var output = new Option<string>("-o", "--out") { Description = "The image to write: FILE.png or FILE.svg.", Required = true };
        var command = new Command("plot", "Draw the loss and validation curves of a 'train --log' file.") { log, output };
        command.SetAction(r => io.Guard(() =>
        {
            var path = r.GetValue(output)!;
            if (RunPlot.FormatOf(path) is null) throw new ArgumentException($"-o {path}: expected a .png or .svg file name.");
            using var destination = DestinationLock.Acquire(path, "plot (-o)");
            var rows = RunPlot.ReadLog(r.GetValue(log)!);
            RunPlot.Draw(rows, path);
            io.Out.WriteLine($"wrote {path} ({rows.Count} steps, {rows.Count(x => x.ValLoss is not null)} evaluations)");
            return 0;
        }));
        return command;
    }
}
