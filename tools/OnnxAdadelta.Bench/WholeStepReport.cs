using System.Globalization;
using System.Text;

namespace OnnxAdadelta.Bench;

/// <summary>The README's whole-step table.</summary>
public static class WholeStepReport
{
    /// <summary>One markdown row per case: steps/s (median, range), update share, step time, peak RSS.</summary>
    public static string Markdown(IReadOnlyList<StepResult> results, WholeStep.Settings settings)
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(c, $"update: {settings.Update}; threads: {settings.Threads?.ToString(c) ?? "ORT default"}; session settings: {(settings.Ort.Count == 0 ? "the trainer's" : string.Join(" ", settings.Ort))}");
        sb.AppendLine();
        sb.AppendLine("| model | parameters | steps/s (median) | range | ms/step | update share (profile) | peak RSS MiB | RSS before session MiB |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in results)
        {
            var description = StepCase.Named(r.Case).Description;
            sb.AppendLine(c, $"| {description} | {r.Parameters:N0} | {r.StepsPerSecond:F1} | {r.MinStepsPerSecond:F1}–{r.MaxStepsPerSecond:F1} | {1000 / r.StepsPerSecond:F2} | {r.UpdateShare:P1} | {r.PeakRssMiB:N0} | {r.RssBeforeTrainerMiB:N0} |");
        }
        return sb.ToString();
    }
}

/// <summary>The README's peak-memory table: the same cases trained with the graph update (ping-pong) and the fused op (in place).</summary>
public static class MemoryReport
{
    /// <summary>One markdown row per case and update mode: state buffers, peak RSS during the steps, peak RSS of the run, steps/s.</summary>
    public static string Markdown(IReadOnlyList<StepResult> graph, IReadOnlyList<StepResult> fused, WholeStep.Settings settings)
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(c, $"threads: {settings.Threads?.ToString(c) ?? "ORT default"}; each case and update in its own process");
        sb.AppendLine();
        sb.AppendLine("| model | parameters | update | state buffers MiB | peak RSS during the steps MiB | peak RSS of the run MiB | steps/s |");
        sb.AppendLine("|---|---:|---|---:|---:|---:|---:|");
        foreach (var r in graph.Zip(fused).SelectMany(p => new[] { p.First, p.Second }))
        {
            var description = StepCase.Named(r.Case).Description;
            var update = r.Update == "fused" ? "fused op, in place" : "standard ops, ping-pong";
            var during = r.StepsPeakRssMiB < 0 ? "n/a" : r.StepsPeakRssMiB.ToString("N0", c);
            sb.AppendLine(c, $"| {description} | {r.Parameters:N0} | {update} | {r.StateMiB:N1} | {during} | {r.PeakRssMiB:N0} | {r.StepsPerSecond:F1} |");
        }
        return sb.ToString();
    }
}

/// <summary>The README's whole-step plot (ScottPlot 5).</summary>
public static class WholeStepPlot
{
    /// <summary>
    /// One bar per case (and per update, when the results hold both) splitting the step's kernel time (ONNX Runtime's profile) into the update and the rest
    /// (forward, loss, backward), labelled with the measured steps/s; written as SVG or PNG by the file's extension.
    /// </summary>
    public static void Save(IReadOnlyList<StepResult> results, string path)
    {
        bool mixed = results.Select(r => r.Update).Distinct().Count() > 1;
        var plot = new ScottPlot.Plot();
        var rest = ScottPlot.Colors.SteelBlue;
        var update = ScottPlot.Colors.DarkOrange;
        var bars = new List<ScottPlot.Bar>();
        for (int i = 0; i < results.Count; i++)
        {
            double u = 100 * results[i].UpdateShare;
            bars.Add(new ScottPlot.Bar { Position = i, ValueBase = 0, Value = 100 - u, FillColor = rest });
            bars.Add(new ScottPlot.Bar { Position = i, ValueBase = 100 - u, Value = 100, FillColor = update });
        }
        plot.Add.Bars(bars);
        plot.Axes.Bottom.SetTicks(
            [.. Enumerable.Range(0, results.Count).Select(i => (double)i)],
            [.. results.Select(r => $"{(mixed ? $"{r.Case}, {r.Update}" : r.Case)}\n{r.StepsPerSecond:G3} steps/s, {r.PeakRssMiB} MiB peak")]);
        plot.Axes.SetLimitsY(0, 100);
        plot.Title(mixed ? "Whole training step, standard-op (graph) and fused update: where the kernel time goes" : $"Whole training step ({results[0].Update} update): where the kernel time goes");
        plot.YLabel("% of ONNX Runtime kernel time");
        plot.Legend.ManualItems.Add(new ScottPlot.LegendItem { LabelText = "forward + loss + backward", FillColor = rest });
        plot.Legend.ManualItems.Add(new ScottPlot.LegendItem { LabelText = "Adadelta update", FillColor = update });
        plot.ShowLegend(ScottPlot.Alignment.UpperLeft);
        plot.Axes.Margins(bottom: 0, top: 0.15);
        if (Path.GetExtension(path).Equals(".svg", StringComparison.OrdinalIgnoreCase)) plot.SaveSvg(path, 820, 420);
        else plot.SavePng(path, 820, 420);
    }
}
