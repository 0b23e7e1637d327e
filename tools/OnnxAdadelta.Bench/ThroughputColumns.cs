using System.Globalization;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace OnnxAdadelta.Bench;

/// <summary>Throughput figures of one benchmark case, from its mean time and its shape's parameter count.</summary>
public static class Throughput
{
    /// <summary>The shape a case ran with.</summary>
    public static UpdateShape ShapeOf(BenchmarkCase benchmarkCase) =>
        (UpdateShape)benchmarkCase.Parameters[nameof(AdadeltaUpdateBenchmarks.Shape)];

    /// <summary>Whether the case is the fused loop (the baseline).</summary>
    public static bool IsFusedLoop(BenchmarkCase benchmarkCase) =>
        benchmarkCase.Descriptor.WorkloadMethod.Name == nameof(AdadeltaUpdateBenchmarks.FusedLoop);

    /// <summary>Whether the case is the fused op in ONNX Runtime.</summary>
    public static bool IsFusedOp(BenchmarkCase benchmarkCase) =>
        benchmarkCase.Descriptor.WorkloadMethod.Name == nameof(AdadeltaUpdateBenchmarks.FusedOpUpdate);

    /// <summary>The case's mean time per invocation in nanoseconds, or null when it has no result.</summary>
    public static double? MeanNanoseconds(Summary summary, BenchmarkCase benchmarkCase) =>
        summary[benchmarkCase]?.ResultStatistics?.Mean;

    /// <summary>Million parameters updated per second.</summary>
    public static double MparamPerSecond(long parameters, double meanNanoseconds) => parameters / meanNanoseconds * 1e3;

    /// <summary>The memory bandwidth one fused pass implies: 28 bytes per parameter over the mean time, in GB/s.</summary>
    public static double GigabytesPerSecond(long parameters, double meanNanoseconds) =>
        (double)FusedAdadelta.BytesPerParameter * parameters / meanNanoseconds;

    /// <summary>The fused-loop case with the same shape as <paramref name="benchmarkCase"/>, or null.</summary>
    public static BenchmarkCase? FusedLoopFor(Summary summary, BenchmarkCase benchmarkCase) =>
        summary.BenchmarksCases.FirstOrDefault(c => IsFusedLoop(c) && ShapeOf(c) == ShapeOf(benchmarkCase));

    /// <summary>Throughput of <paramref name="benchmarkCase"/> as a fraction of the fused loop's on the same shape, or null.</summary>
    public static double? FractionOfFusedLoop(Summary summary, BenchmarkCase benchmarkCase) =>
        FusedLoopFor(summary, benchmarkCase) is { } loop && MeanNanoseconds(summary, loop) is { } loopMean
            && MeanNanoseconds(summary, benchmarkCase) is { } mean
            ? loopMean / mean : null;
}

/// <summary>The figures <see cref="ThroughputColumn"/> can show.</summary>
public enum ThroughputKind
{
    /// <summary>Million parameters updated per second.</summary>
    MparamPerSecond,

    /// <summary>Implied memory bandwidth at 28 bytes per parameter (fused loop only).</summary>
    FusedLoopBandwidth,

    /// <summary>Throughput as a fraction of the fused loop's on the same shape.</summary>
    FractionOfFusedLoop,
}

/// <summary>A BenchmarkDotNet column computed from each case's mean time and its shape's parameter count.</summary>
/// <param name="kind">Which figure the column shows.</param>
public sealed class ThroughputColumn(ThroughputKind kind) : IColumn
{
    /// <summary>The Mparam/s column.</summary>
    public static readonly ThroughputColumn Mparams = new(ThroughputKind.MparamPerSecond);

    /// <summary>The GB/s column (fused loop rows only).</summary>
    public static readonly ThroughputColumn Bandwidth = new(ThroughputKind.FusedLoopBandwidth);

    /// <summary>The fraction-of-loop column.</summary>
    public static readonly ThroughputColumn Fraction = new(ThroughputKind.FractionOfFusedLoop);

    /// <summary>All three, in table order.</summary>
    public static IColumn[] All => [Mparams, Bandwidth, Fraction];

    /// <inheritdoc/>
    public string Id => $"{nameof(ThroughputColumn)}.{kind}";

    /// <inheritdoc/>
    public string ColumnName => kind switch
    {
        ThroughputKind.MparamPerSecond => "Mparam/s",
        ThroughputKind.FusedLoopBandwidth => "GB/s at 28 B/param",
        _ => "x of loop",
    };

    /// <inheritdoc/>
    public bool AlwaysShow => true;

    /// <inheritdoc/>
    public ColumnCategory Category => ColumnCategory.Custom;

    /// <inheritdoc/>
    public int PriorityInCategory => (int)kind;

    /// <inheritdoc/>
    public bool IsNumeric => true;

    /// <inheritdoc/>
    public UnitType UnitType => UnitType.Dimensionless;

    /// <inheritdoc/>
    public string Legend => kind switch
    {
        ThroughputKind.MparamPerSecond => "Million parameters updated per second: parameter count / mean time",
        ThroughputKind.FusedLoopBandwidth => "Memory bandwidth the fused loop implies: 28 bytes (4 float reads, 3 float writes) per parameter / mean time",
        _ => "Throughput as a fraction of the fused loop's on the same shape (fused-loop mean / this mean)",
    };

    /// <inheritdoc/>
    public bool IsAvailable(Summary summary) => true;

    /// <inheritdoc/>
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    /// <inheritdoc/>
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, summary.Style);

    /// <inheritdoc/>
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        if (Throughput.MeanNanoseconds(summary, benchmarkCase) is not { } mean) return "NA";
        long parameters = Throughput.ShapeOf(benchmarkCase).Parameters;
        return kind switch
        {
            ThroughputKind.MparamPerSecond => Format(Throughput.MparamPerSecond(parameters, mean), "N1"),
            ThroughputKind.FusedLoopBandwidth => Throughput.IsFusedLoop(benchmarkCase) ? Format(Throughput.GigabytesPerSecond(parameters, mean), "N1") : "-",
            _ => Throughput.FractionOfFusedLoop(summary, benchmarkCase) is { } f ? Format(f, "N3") : "NA",
        };
    }

    private static string Format(double value, string format) => value.ToString(format, CultureInfo.InvariantCulture);

    /// <inheritdoc/>
    public override string ToString() => ColumnName;
}
