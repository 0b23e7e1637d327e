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
