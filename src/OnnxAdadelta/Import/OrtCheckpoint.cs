using Google.FlatBuffers;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Onnx;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Import;

/// <summary>
/// The parameter values of an ONNX Runtime on-device training checkpoint (the flatbuffer with file identifier
/// <c>ODTC</c> that onnxruntime-training's <c>generate_artifacts</c> writes beside the training model). Only the
/// module state is read; optimizer state and the property bag are ignored.
/// </summary>
/// <param name="Version">The checkpoint format version the file declares.</param>
/// <param name="Trainable">The parameters that require gradients, by name, in file order.</param>
/// <param name="Frozen">The parameters that do not, by name, in file order.</param>
public sealed record OrtCheckpoint(int Version, IReadOnlyDictionary<string, TensorProto> Trainable, IReadOnlyDictionary<string, TensorProto> Frozen)
{
    /// <summary>The flatbuffer file identifier of ORT training checkpoints.</summary>
    public const string FileIdentifier = "ODTC";

    /// <summary>Every parameter, trainable first, by name.</summary>
    public IReadOnlyDictionary<string, TensorProto> Parameters =>
        Trainable.Concat(Frozen).ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);

    /// <summary>Reads a checkpoint file.</summary>
    /// <exception cref="OnnxAdadeltaException">
    /// The file is missing or unreadable, is not a checkpoint, is truncated, or holds a tensor this library cannot
    /// represent; the one-line message names the file.
    /// </exception>
    public static OrtCheckpoint Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return Parse(SafeFile.ReadAllBytes(path, "ONNX Runtime checkpoint", int.MaxValue), path);
    }

    /// <summary>Parses checkpoint bytes; <paramref name="source"/> names them in errors.</summary>
    /// <exception cref="OnnxAdadeltaException">As for <see cref="Load"/>.</exception>
    public static OrtCheckpoint Parse(byte[] bytes, string source = "ORT checkpoint")
    {
        ArgumentNullException.ThrowIfNull(bytes);
        ArgumentNullException.ThrowIfNull(source);
        // A flatbuffer starts with the root table's offset (4 bytes) and the file identifier (4 bytes).
        if (bytes.Length < 8)
            throw new OnnxAdadeltaException($"{source}: truncated ORT training checkpoint ({bytes.Length} bytes; not even a flatbuffer header).");
        var identifier = new string(bytes.AsSpan(4, 4).ToArray().Select(b => b is >= 0x20 and < 0x7f ? (char)b : '?').ToArray());
        if (identifier != FileIdentifier)
            throw new OnnxAdadeltaException($"{source}: not an ONNX Runtime training checkpoint (file identifier '{identifier}', expected '{FileIdentifier}').");
        try
        {
            return new Reader(bytes, source).Read();
        }
        catch (Exception e) when (e is ArgumentOutOfRangeException or IndexOutOfRangeException or OverflowException)
        {
            throw new OnnxAdadeltaException($"{source}: truncated or corrupt ORT training checkpoint (an offset points past the end of its {bytes.Length} bytes).", e);
        }
    }

    /// <summary>Hand-written accessors for the tables of ort_training_checkpoint.fbs and ort.fbs that are read.</summary>
    private sealed class Reader(byte[] bytes, string source)
    {
        // Field slots (vtable offsets are 4 + 2 × field index).
        private const int CheckpointVersion = 0, CheckpointModuleState = 1;
        private const int ModuleRequiresGrad = 0, ModuleFrozen = 1, ModuleIsNominal = 2, ModuleHasExternalData = 3;
        private const int TensorName = 0, TensorDims = 2, TensorDataType = 3, TensorRawData = 4, TensorStringData = 5, TensorExternalOffset = 6;

        private readonly ByteBuffer _bb = new(bytes);

        public OrtCheckpoint Read()
        {
            var root = new Table(_bb.GetInt(0), _bb);
            int version = Field(root, CheckpointVersion) is var vo && vo != 0 ? _bb.GetInt(root.bb_pos + vo) : 0;
            if (Child(root, CheckpointModuleState) is not { } module)
                throw new OnnxAdadeltaException($"{source}: the ORT training checkpoint has no module state (no parameters).");
            if (Bool(module, ModuleIsNominal))
                throw new OnnxAdadeltaException($"{source}: the ORT training checkpoint is a nominal state (parameter names without values); save it after loading the parameters.");
            if (Bool(module, ModuleHasExternalData))
                throw new OnnxAdadeltaException($"{source}: the ORT training checkpoint keeps its tensors in an external data file, which is not supported.");
            var seen = new HashSet<string>(StringComparer.Ordinal);
            return new OrtCheckpoint(version, ReadTensors(module, ModuleRequiresGrad, seen), ReadTensors(module, ModuleFrozen, seen));
        }

        private Dictionary<string, TensorProto> ReadTensors(Table module, int field, HashSet<string> seen)
        {
            var result = new Dictionary<string, TensorProto>(StringComparer.Ordinal);
            foreach (var t in TableVector(module, field))
            {
                var tensor = Tensor(t);
                if (!seen.Add(tensor.Name))
                    throw new OnnxAdadeltaException($"{source}: the ORT training checkpoint holds parameter '{tensor.Name}' twice.");
                result[tensor.Name] = tensor;
            }
            return result;
        }

        private TensorProto Tensor(Table t)
        {
            var name = String(t, TensorName) ?? "";
            if (name.Length == 0) throw new OnnxAdadeltaException($"{source}: the ORT training checkpoint holds a tensor without a name.");
            var label = $"tensor '{name}'";
            int typeOffset = Field(t, TensorDataType);
            int type = typeOffset == 0 ? 0 : _bb.GetInt(t.bb_pos + typeOffset);
            if (type == (int)DataType.String || !Enum.IsDefined((DataType)type) || !DataTypes.HasRawForm(type))
                throw new OnnxAdadeltaException($"{source}: {label} has unsupported tensor type {DataTypes.Name(type)}; expected a numeric or BOOL type.");
            if (Field(t, TensorExternalOffset) is var eo && eo != 0 && _bb.GetLong(t.bb_pos + eo) >= 0)
                throw new OnnxAdadeltaException($"{source}: {label} keeps its data in an external file, which is not supported.");
            if (Field(t, TensorStringData) != 0 && VectorLength(t, TensorStringData) > 0)
                throw new OnnxAdadeltaException($"{source}: {label} holds string data; expected a numeric or BOOL type.");

            var (dimsStart, rank) = Vector(t, TensorDims, sizeof(long));
            var dims = new long[rank];
            for (int i = 0; i < rank; i++)
            {
                dims[i] = _bb.GetLong(dimsStart + i * sizeof(long));
                if (dims[i] < 0) throw new OnnxAdadeltaException($"{source}: {label} has a negative dimension ({dims[i]}).");
            }
            var (dataStart, length) = Vector(t, TensorRawData, 1);
            try { return Tensors.FromRawBytes(name, (DataType)type, dims, bytes.AsSpan(dataStart, length)); }
            catch (OnnxAdadeltaException e) { throw new OnnxAdadeltaException($"{source}: {e.Message}", e); }
        }

        private int Field(Table t, int index) => t.__offset(4 + 2 * index);

        private bool Bool(Table t, int index) => Field(t, index) is var o && o != 0 && _bb.Get(t.bb_pos + o) != 0;

        private Table? Child(Table t, int index) => Field(t, index) is var o && o != 0 ? new Table(t.__indirect(t.bb_pos + o), _bb) : null;

        private string? String(Table t, int index)
        {
            int o = Field(t, index);
            if (o == 0) return null;
            var (start, length) = Vector(t, index, 1);
            return System.Text.Encoding.UTF8.GetString(bytes, start, length);
        }

        private int VectorLength(Table t, int index) => Vector(t, index, 1).Length;

        /// <summary>Where a vector field's elements start and how many there are, checked against the buffer.</summary>
        private (int Start, int Length) Vector(Table t, int index, int elementSize)
        {
            int o = Field(t, index);
            if (o == 0) return (0, 0);
            int start = t.__vector(o);
            int length = t.__vector_len(o);
            if (length < 0 || start < 0 || (long)start + (long)length * elementSize > bytes.Length)
                throw new ArgumentOutOfRangeException(nameof(index), "vector past the end of the buffer");
            return (start, length);
        }

        private IEnumerable<Table> TableVector(Table t, int index)
        {
            var (start, length) = Vector(t, index, sizeof(int));
            for (int i = 0; i < length; i++) yield return new Table(t.__indirect(start + i * sizeof(int)), _bb);
        }
    }
}
