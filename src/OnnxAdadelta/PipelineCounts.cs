namespace OnnxAdadelta;

/// <summary>
/// Process-wide counts of the expensive steps of preparing a model, so that tests can hold a run to a fixed number of
/// them whatever its length: parses of the step-model contract (the JSON in the metadata), deep copies of whole
/// models (<see cref="Onnx.ModelCopies.DeepCopy"/>) and ONNX Runtime sessions opened.
/// </summary>
internal static class PipelineCounts
{
    private static int _contractParses;
    private static int _sessions;
    private static int _modelCopies;

    /// <summary>Step-model contracts parsed so far.</summary>
    public static int ContractParses => Volatile.Read(ref _contractParses);

    /// <summary>ONNX Runtime sessions opened so far.</summary>
    public static int Sessions => Volatile.Read(ref _sessions);

    /// <summary>Deep copies of whole models made so far.</summary>
    public static int ModelCopies => Volatile.Read(ref _modelCopies);

    public static void ContractParsed() => Interlocked.Increment(ref _contractParses);

    public static void SessionOpened() => Interlocked.Increment(ref _sessions);

    public static void ModelCopied() => Interlocked.Increment(ref _modelCopies);
}
