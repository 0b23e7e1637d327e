using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using BenchmarkDotNet.Reports;

namespace OnnxAdadelta.Bench;

/// <summary>The compact markdown table printed after BenchmarkDotNet's summary, for the README.</summary>
public static class ReadmeTable
{
    /// <summary>
    /// One row per shape in <paramref name="summary"/>: standard-op, fused-op and fused-loop Mparam/s, the fused loop's
    /// GB/s, and the standard ops' and the fused op's throughput as fractions of the loop's (loop mean / case mean); then
    /// a line naming the runtime.
    /// </summary>
    public static string Markdown(Summary summary)
    {
        var text = new StringBuilder();
        text.AppendLine("| shape | standard ops Mparam/s | fused op Mparam/s | fused loop Mparam/s | fused loop GB/s | standard / loop | fused op / loop |");
        text.AppendLine("|---|---:|---:|---:|---:|---:|---:|");
        var cases = summary.BenchmarksCases;
        foreach (var shape in cases.Select(Throughput.ShapeOf).Distinct().Order())
        {
            double? Mean(Func<BenchmarkDotNet.Running.BenchmarkCase, bool> which) =>
                cases.FirstOrDefault(c => which(c) && Throughput.ShapeOf(c) == shape) is { } c ? Throughput.MeanNanoseconds(summary, c) : null;
            var graphMean = Mean(c => !Throughput.IsFusedLoop(c) && !Throughput.IsFusedOp(c));
            var opMean = Mean(Throughput.IsFusedOp);
            var loopMean = Mean(Throughput.IsFusedLoop);
            text.Append(CultureInfo.InvariantCulture, $"| {shape.Label} ")
                .Append(CultureInfo.InvariantCulture, $"| {F(graphMean, m => Throughput.MparamPerSecond(shape.Parameters, m), "N0")} ")
                .Append(CultureInfo.InvariantCulture, $"| {F(opMean, m => Throughput.MparamPerSecond(shape.Parameters, m), "N0")} ")
                .Append(CultureInfo.InvariantCulture, $"| {F(loopMean, m => Throughput.MparamPerSecond(shape.Parameters, m), "N0")} ")
                .Append(CultureInfo.InvariantCulture, $"| {F(loopMean, m => Throughput.GigabytesPerSecond(shape.Parameters, m), "N1")} ")
                .Append(graphMean is { } g && loopMean is { } l ? $"| {(l / g).ToString("N3", CultureInfo.InvariantCulture)} " : "| NA ")
                .AppendLine(opMean is { } o && loopMean is { } l2 ? $"| {(l2 / o).ToString("N3", CultureInfo.InvariantCulture)} |" : "| NA |");
        }
        text.AppendLine();
        text.AppendLine(FormattableString.Invariant(
            $"Float32 Adadelta step, CPU, {Environment.ProcessorCount} logical cores, {RuntimeInformation.FrameworkDescription}, ONNX Runtime {Microsoft.ML.OnnxRuntime.OrtEnv.Instance().GetVersionString()}; fused loop: one thread, one pass at 28 B/param."));
        return text.ToString();
    }

    private static string F(double? mean, Func<double, double> figure, string format) =>
        mean is { } m ? figure(m).ToString(format, CultureInfo.InvariantCulture) : "NA";
}
