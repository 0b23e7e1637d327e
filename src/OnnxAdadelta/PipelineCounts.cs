namespace OnnxAdadelta;

/// <summary>
/// Process-wide counts of the expensive steps of preparing a model, so that tests can hold a run to a fixed number of
/// them whatever its length: parses of the step-model contract (the JSON in the metadata) and ONNX Runtime sessions
/// opened.
/// </summary>
internal static class PipelineCounts
{
    private static int _contractParses;
    private static int _sessions;

    /// <summary>Step-model contracts parsed so far.</summary>
    public static int ContractParses => Volatile.Read(ref _contractParses);

    /// <summary>ONNX Runtime sessions opened so far.</summary>
    public static int Sessions => Volatile.Read(ref _sessions);

    public static void ContractParsed() => Interlocked.Increment(ref _contractParses);

    public static void SessionOpened() => Interlocked.Increment(ref _sessions);
}
