using Google.Protobuf;
using OnnxAdadelta.Onnx.Proto;

namespace OnnxAdadelta.Onnx;

/// <summary>
/// Loads and saves ONNX models. Loading reads external data into the tensors, so a loaded model is self-contained;
/// saving writes atomically and moves large tensors to a side file when asked to or when the model would pass protobuf's 2 GiB limit.
/// Fields this library's schema does not declare are kept and written back unchanged.
/// </summary>
public static class ModelIO
{
    /// <summary>
    /// Reads a model file, and the external data of its tensors from files relative to its folder.
    /// A file that is not an ONNX model, or is truncated, or whose external data cannot be read, gets an
    /// <see cref="OnnxAdadeltaException"/> naming it.
    /// </summary>
    /// <remarks>
    /// Only regular files are read (a folder, a named pipe or a device is refused before any byte is read), and none over
    /// protobuf's 2 GiB limit. External data must be a regular file whose real path (symbolic links resolved) lies inside
    /// the real path of the model's folder, unless <see cref="LoadOptions.AllowExternalDataLinks"/> is set.
    /// </remarks>
    public static ModelProto Load(string path, LoadOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        var bytes = SafeFile.ReadAllBytes(path, "ONNX model", MaxModelBytes);
        return Parse(bytes, Path.GetDirectoryName(Path.GetFullPath(path)), path, options?.AllowExternalDataLinks ?? false);
    }

    /// <summary>The largest model file read: protobuf's limit on one message (2 GiB - 1); larger tensors belong in external data.</summary>
    public const long MaxModelBytes = int.MaxValue;

    /// <summary>
    /// Parses a serialized model. External data is read from files relative to <paramref name="baseDirectory"/>;
    /// without one, a model with external data is an error.
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">The bytes are not an ONNX model, or its external data cannot be read.</exception>
    public static ModelProto Parse(byte[] bytes, string? baseDirectory = null)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        return Parse(bytes, baseDirectory, "ONNX model");
    }

    private static ModelProto Parse(byte[] bytes, string? baseDirectory, string source, bool allowLinks = false)
    {
        ModelProto model;
        try { model = ModelProto.Parser.ParseFrom(bytes); }
        catch (InvalidProtocolBufferException e)
        {
            throw new OnnxAdadeltaException($"{source}: not an ONNX model, or truncated ({ExternalData.OneLine(e.Message)}).", e);
        }
        // Protobuf reads many byte strings without complaint; an ONNX model has an IR version, a graph and,
        // from IR version 3 on, the operator sets it uses. A model cut short loses at least one of them.
        string? missing = model.IrVersion <= 0 ? "no ir_version"
            : model.Graph is null ? "no graph"
            : model.IrVersion >= 3 && model.OpsetImport.Count == 0 ? "no opset_import"
            : null;
        if (missing is not null)
            throw new OnnxAdadeltaException($"{source}: not an ONNX model, or truncated ({missing}); expected a ModelProto with ir_version, opset_import and graph.");
        CheckUniqueNames(model.Graph!, source);
        ExternalData.Resolve(model, baseDirectory, source, allowLinks);
        return model;
    }

    /// <summary>
    /// Two initializers, inputs or outputs of one name: what protobuf makes of two model files concatenated (their graphs
    /// merge), or of a damaged one. Refused here, so that no later dictionary fails with a bare "same key" message.
    /// </summary>
    private static void CheckUniqueNames(GraphProto graph, string source)
    {
        static string? Twice(IEnumerable<string> names)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var n in names) if (!seen.Add(n)) return n;
            return null;
        }
        var (kind, name) = Twice(graph.Initializer.Select(t => t.Name)) is { } i ? ("initializers", i)
            : Twice(graph.SparseInitializer.Select(t => t.Values?.Name ?? "")) is { Length: > 0 } si ? ("sparse initializers", si)
            : Twice(graph.Input.Select(v => v.Name)) is { } input ? ("graph inputs", input)
            : Twice(graph.Output.Select(v => v.Name)) is { } output ? ("graph outputs", output)
            : (null, null);
        if (kind is not null)
            throw new OnnxAdadeltaException(
                $"{source}: the graph has two {kind} named '{name}' (two model files concatenated, or a damaged file?); expected each name once.");
    }

    /// <summary>
    /// Writes <paramref name="model"/> to <paramref name="path"/> through a temporary file and a rename, so that the target is
    /// either the old file or the complete new one. With <see cref="SaveOptions.ExternalData"/>, or when the model would be
    /// larger than <see cref="SaveOptions.MaxInlineBytes"/>, tensors of at least <see cref="SaveOptions.ExternalDataThreshold"/>
    /// bytes go to <c>&lt;file name&gt;.data</c> beside it (written the same way, before the model). The caller's model is not changed.
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">
    /// The model still refers to external data it never read, it cannot be brought under the size limit, or the files cannot be written.
    /// </exception>
    public static void Save(ModelProto model, string path, SaveOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(path);
        options ??= SaveOptions.Default;
        if (options.ExternalDataThreshold < 1)
            throw new ArgumentOutOfRangeException(nameof(options), "ExternalDataThreshold must be at least 1 byte.");
        if (options.MaxInlineBytes < 1 || options.MaxInlineBytes > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(options), $"MaxInlineBytes must be between 1 and {int.MaxValue}.");

        if (ExternalData.FirstExternal(model) is { } stale)
            throw new OnnxAdadeltaException(
                $"{path}: {stale.Where} still refers to external data that was never read; expected a model from ModelIO.Load, whose tensors hold their data.");

        try
        {
            if (!options.ExternalData && SerializedSize(model) <= options.MaxInlineBytes)
            {
                AtomicFile.Write(path, model.WriteTo);
                return;
            }

            var copy = model.DeepCopy();
            var dataFile = Path.GetFileName(Path.GetFullPath(path)) + ".data";
            var moved = ExternalData.Externalize(copy, options.ExternalDataThreshold, dataFile);
            long size = SerializedSize(copy);
            if (size > options.MaxInlineBytes)
                throw new OnnxAdadeltaException(
                    $"{path}: the model takes {(size >= int.MaxValue ? "over 2 GiB" : $"{size} bytes")} even with tensors of {options.ExternalDataThreshold} bytes or more in {dataFile}; " +
                    $"expected at most {options.MaxInlineBytes} (lower SaveOptions.ExternalDataThreshold).");
            if (moved.Count == 0)
            {
                AtomicFile.Write(path, copy.WriteTo);
                return;
            }
            var dataPath = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, dataFile);
            AtomicFile.WriteAll([(dataPath, s => ExternalData.WriteSideFile(s, moved)), (path, copy.WriteTo)]);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new OnnxAdadeltaException($"{path}: cannot write ({ExternalData.OneLine(e.Message)}).", e);
        }
    }

    /// <summary>
    /// The serialized size of a model as a long. <see cref="IMessage.CalculateSize"/> returns an int that wraps past 2 GiB,
    /// so the tensors, which hold nearly all the bytes, are summed as longs first; only when they fit is the whole model measured.
    /// </summary>
    internal static long SerializedSize(ModelProto model)
    {
        long tensors = 0;
        foreach (var f in ModelTensors.All(model))
        {
            int s = f.Tensor.CalculateSize();
            if (s < 0) return long.MaxValue;
            tensors += s;
        }
        if (tensors >= int.MaxValue) return tensors;
        // The rest of a model (nodes, names, shapes) is small next to its tensors, so the sum stays under 4 GiB
        // and a wrapped int shows as negative.
        int total = model.CalculateSize();
        return total < 0 ? long.MaxValue : total;
    }
}
