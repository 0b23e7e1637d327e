using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;
using OnnxAdadelta.Runtime;

namespace OnnxAdadelta.Training;

/// <summary>Options of a <see cref="Trainer"/>.</summary>
public sealed record TrainerOptions
{
    /// <summary>The execution provider. Default CPU.</summary>
    public Device Device { get; init; } = Device.Cpu;

    /// <summary>ONNX Runtime's intra-op threads; null for its default (one per core).</summary>
    public int? Threads { get; init; }

    /// <summary>Further graph outputs to read back after each step (for example gradients, for verification).</summary>
    public IReadOnlyList<string> ExtraOutputs { get; init; } = [];
}

/// <summary>
/// Runs a training-step model through ONNX Runtime. Parameters, accumulators and the counter live in ORT buffers bound
/// with <see cref="OrtIoBinding"/>: each step reads one set and writes the other (ping-pong), so state never passes
/// through managed arrays between steps; only the loss (and any extra outputs asked for) is read back.
/// </summary>
/// <remarks>
/// The trainer owns its session, bindings and buffers; dispose it. It is not thread-safe. State can be read
/// (<see cref="ReadState"/>, <see cref="Checkpoint"/>) after a step run with <c>stateToHost</c> or on the CPU device.
/// </remarks>
public sealed class Trainer : IDisposable
{
    private sealed class Slot(StateBinding binding, OrtValue current, bool currentOnDevice)
    {
        public StateBinding Binding { get; } = binding;
        public OrtValue Current { get; set; } = current;
        public bool CurrentOnDevice { get; set; } = currentOnDevice;
        public OrtValue? Spare { get; set; }
    }

    private readonly InferenceSession _session;
    private readonly RunOptions _run = new() { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
    private readonly OrtMemoryInfo _deviceMemory;
    private readonly Slot[] _slots;
    private readonly string[] _hostOutputs;
    private readonly Dictionary<string, OrtValue> _hostBuffers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (long[] Shape, OrtValue Value)> _dataBuffers = new(StringComparer.Ordinal);
    private readonly IReadOnlyDictionary<string, NodeMetadata> _inputMetadata;
    private readonly Dictionary<string, LabelCheck> _labels = new(StringComparer.Ordinal);
    private OrtIoBinding[]? _pingPong;
    private int _parity;

    /// <summary>
    /// Loads <paramref name="stepModel"/> into an ONNX Runtime session, after checking its metadata against its graph
    /// (<see cref="StepModelInfo.Validate"/>) and its stored state (<see cref="StepModelInfo.ValidateState"/>).
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">The metadata or the stored state is not valid, or ONNX Runtime rejects the model.</exception>
    public Trainer(ModelProto stepModel, TrainerOptions? options = null)
    {
        options ??= new TrainerOptions();
        Model = stepModel;
        Info = StepModelInfo.Read(stepModel, "the step model");
        Info.ValidateState(stepModel, "the step model");
        Device = options.Device;
        var inits = stepModel.Graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        using (var sessionOptions = OrtSessions.Options(Device))
        {
            if (options.Threads is { } threads)
            {
                if (threads < 1) throw new ArgumentException($"Invalid thread count: {threads} (expected at least 1).");
                sessionOptions.IntraOpNumThreads = threads;
            }
            _session = OrtSessions.Create(stepModel, sessionOptions, "the step model");
        }
        _deviceMemory = OrtSessions.DeviceMemory(Device);
        _inputMetadata = _session.InputMetadata;
        foreach (var check in Info.LabelChecks(stepModel)) _labels.TryAdd(check.Input, check);
        _slots = Info.State.Select(s => new Slot(s, ToOrtValue(inits[s.Input]), Device == Device.Cpu)).ToArray();
        _hostOutputs = [Info.Loss, .. options.ExtraOutputs];
        Iteration = inits[Info.Iterations.Input].ToInt64Array()[0];
    }

    /// <summary>The step model this trainer runs (its initializers hold the state it started from).</summary>
    public ModelProto Model { get; }

    /// <summary>The step model's contract.</summary>
    public StepModelInfo Info { get; }

    /// <summary>The execution provider.</summary>
    public Device Device { get; }

    /// <summary>The optimizer's iteration counter: steps taken since the model was rewritten.</summary>
    public long Iteration { get; private set; }

    /// <summary>The data inputs the model expects, with their ONNX types.</summary>
    public IReadOnlyList<(string Name, NodeMetadata Metadata)> DataInputs =>
        Info.DataInputs.Select(n => (n, _inputMetadata[n])).ToList();

    /// <summary>
    /// Runs one training step on a batch (raw little-endian bytes and shape per data input); returns the loss.
    /// With <paramref name="stateToHost"/> the new state is written to CPU memory so it can be read.
    /// </summary>
    public float Step(IReadOnlyDictionary<string, (byte[] Data, long[] Shape)> batch, bool stateToHost = false)
    {
        bool toHost = stateToHost && Device != Device.Cpu;
        if (_pingPong is not null && !toHost)
        {
            var binding = _pingPong[_parity];
            BindData(binding, batch);
            RunWith(binding);
            foreach (var s in _slots) (s.Current, s.Spare) = (s.Spare!, s.Current);
            _parity ^= 1;
        }
        else
        {
            StepWithFreshBinding(batch, toHost);
        }
        Iteration++;
        return ReadLoss();
    }

    private void StepWithFreshBinding(IReadOnlyDictionary<string, (byte[] Data, long[] Shape)> batch, bool toHost)
    {
        DisposePingPong();
        using var binding = _session.CreateIoBinding();
        BindData(binding, batch);
        foreach (var s in _slots)
        {
            binding.BindInput(s.Binding.Input, s.Current);
            if (s.Spare is not null && !toHost) binding.BindOutput(s.Binding.Output, s.Spare);
            else binding.BindOutputToDevice(s.Binding.Output, toHost ? OrtMemoryInfo.DefaultInstance : _deviceMemory);
        }
        BindHostOutputs(binding);
        RunWith(binding);

        var names = binding.GetOutputNames();
        var values = binding.GetOutputValues().ToList();
        var byName = new Dictionary<string, OrtValue>(StringComparer.Ordinal);
        for (int i = 0; i < names.Length; i++) byName[names[i]] = values[i];
        var kept = new HashSet<OrtValue>(ReferenceEqualityComparer.Instance);
        foreach (var s in _slots)
        {
            var next = byName[s.Binding.Output];
            var old = s.Current;
            bool oldOnDevice = s.CurrentOnDevice;
            if (s.Spare is not null && !toHost)
            {
                // The output went into the spare buffer; the returned handle is only another view of it.
                s.Current = s.Spare;
                s.Spare = null;
            }
            else
            {
                s.Current = next;
                kept.Add(next);
            }
            s.CurrentOnDevice = !toHost;
            // Only device buffers are worth keeping as the next output buffer.
            if (oldOnDevice) { s.Spare?.Dispose(); s.Spare = old; }
            else old.Dispose();
        }
        foreach (var name in _hostOutputs)
            if (!_hostBuffers.ContainsKey(name)) { _hostBuffers[name] = byName[name]; kept.Add(byName[name]); }
        foreach (var v in values) if (!kept.Contains(v)) v.Dispose();

        if (_slots.All(s => s.CurrentOnDevice && s.Spare is not null)) BuildPingPong();
    }

    /// <summary>Runs one step; an error of ONNX Runtime becomes one line naming the node and the likely cause.</summary>
    private void RunWith(OrtIoBinding binding)
    {
        try { _session.RunWithBinding(_run, binding); }
        catch (OnnxRuntimeException e) { throw OrtErrors.Describe(e, Model, $"training step {Iteration + 1}"); }
    }

    private void BuildPingPong()
    {
        _pingPong = new OrtIoBinding[2];
        for (int p = 0; p < 2; p++)
        {
            var binding = _session.CreateIoBinding();
            foreach (var s in _slots)
            {
                binding.BindInput(s.Binding.Input, p == 0 ? s.Current : s.Spare!);
                binding.BindOutput(s.Binding.Output, p == 0 ? s.Spare! : s.Current);
            }
            BindHostOutputs(binding);
            _pingPong[p] = binding;
        }
        _parity = 0;
    }

    private void BindHostOutputs(OrtIoBinding binding)
    {
        foreach (var name in _hostOutputs)
        {
            if (_hostBuffers.TryGetValue(name, out var buffer)) binding.BindOutput(name, buffer);
            else binding.BindOutputToDevice(name, OrtMemoryInfo.DefaultInstance);
        }
    }

    private void BindData(OrtIoBinding binding, IReadOnlyDictionary<string, (byte[] Data, long[] Shape)> batch)
    {
        foreach (var name in Info.DataInputs)
        {
            if (!batch.TryGetValue(name, out var data))
                throw new OnnxAdadeltaException($"The batch has no value for data input '{name}'.");
            if (!_dataBuffers.TryGetValue(name, out var buffer) || !buffer.Shape.SequenceEqual(data.Shape))
            {
                if (buffer.Value is not null) buffer.Value.Dispose();
                var type = _inputMetadata[name].ElementDataType;
                try { buffer = (data.Shape, OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, type, data.Shape)); }
                catch (OnnxRuntimeException e)
                {
                    _dataBuffers.Remove(name);
                    throw new OnnxAdadeltaException($"Data input '{name}': ONNX Runtime cannot allocate a batch of shape [{string.Join(",", data.Shape)}] ({data.Data.Length} bytes): {e.Message.Split('\n')[0]}; lower --batch-size.", e);
                }
                _dataBuffers[name] = buffer;
            }
            if (_labels.TryGetValue(name, out var labels))
                labels.Check(data.Data, _inputMetadata[name].ElementDataType == TensorElementType.Int32, $"training step {Iteration + 1}");
            var target = buffer.Value.GetTensorMutableRawData();
            if (target.Length != data.Data.Length)
                throw new OnnxAdadeltaException($"Data input '{name}': {data.Data.Length} bytes for shape [{string.Join(",", data.Shape)}], expected {target.Length}.");
            data.Data.CopyTo(target);
            binding.BindInput(name, buffer.Value);
        }
    }

    private float ReadLoss()
    {
        var loss = _hostBuffers[Info.Loss];
        var span = loss.GetTensorDataAsSpan<float>();
        if (span.Length != 1) throw new OnnxAdadeltaException($"The loss '{Info.Loss}' has {span.Length} elements; a scalar is expected.");
        return span[0];
    }

    /// <summary>
    /// The last value of an extra output named in <see cref="TrainerOptions.ExtraOutputs"/>, as float32 (float16 and
    /// bfloat16 outputs, such as the gradients of such parameters, are widened exactly).
    /// </summary>
    public float[] ReadOutput(string name) =>
        _hostBuffers.TryGetValue(name, out var v) ? MixedPrecision.ToFloats(ToTensor(name, v))
        : throw new InvalidOperationException($"Output '{name}' was not requested or no step has run.");

    /// <summary>The current value of every state tensor, by input name, in its storage dtype (float32, float16, bfloat16 or int64).</summary>
    /// <exception cref="InvalidOperationException">The state is on the GPU: run the last step with <c>stateToHost</c>.</exception>
    public IReadOnlyDictionary<string, TensorProto> ReadState()
    {
        var result = new Dictionary<string, TensorProto>(StringComparer.Ordinal);
        foreach (var s in _slots)
        {
            if (s.CurrentOnDevice && Device != Device.Cpu)
                throw new InvalidOperationException("The state is in GPU memory; run the last step with stateToHost: true before reading it.");
            result[s.Binding.Input] = ToTensor(s.Binding.Input, s.Current);
        }
        return result;
    }

    private static TensorProto ToTensor(string name, OrtValue value)
    {
        var info = value.GetTensorTypeAndShape();
        var type = info.ElementDataType switch
        {
            TensorElementType.Float => DataType.Float,
            TensorElementType.Float16 => DataType.Float16,
            TensorElementType.BFloat16 => DataType.Bfloat16,
            TensorElementType.Int64 => DataType.Int64,
            var other => throw new OnnxAdadeltaException($"Tensor '{name}' is {other}; float32, float16, bfloat16 or int64 expected."),
        };
        return Tensors.FromRawBytes(name, type, info.Shape, value.GetTensorMutableRawData());
    }

    /// <summary>The step model with the current state written into its initializers: a checkpoint to resume from.</summary>
    public ModelProto Checkpoint()
    {
        var state = ReadState();
        var model = Model.Clone();
        var inits = model.Graph.Initializer;
        for (int i = 0; i < inits.Count; i++)
            if (state.TryGetValue(inits[i].Name, out var value)) inits[i] = value;
        return model;
    }

    private static OrtValue ToOrtValue(TensorProto t)
    {
        var type = (DataType)t.DataType switch
        {
            DataType.Float => TensorElementType.Float,
            DataType.Float16 => TensorElementType.Float16,
            DataType.Bfloat16 => TensorElementType.BFloat16,
            DataType.Int64 => TensorElementType.Int64,
            var other => throw new OnnxAdadeltaException($"State tensor '{t.Name}' is {other}; float32, float16, bfloat16 or int64 expected."),
        };
        var value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, type, [.. t.Dims]);
        t.ToRawBytes().CopyTo(value.GetTensorMutableRawData());
        return value;
    }

    private void DisposePingPong()
    {
        if (_pingPong is null) return;
        foreach (var b in _pingPong) b.Dispose();
        _pingPong = null;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        DisposePingPong();
        foreach (var s in _slots) { s.Current.Dispose(); s.Spare?.Dispose(); }
        foreach (var v in _hostBuffers.Values) v.Dispose();
        foreach (var (_, v) in _dataBuffers.Values) v.Dispose();
        _run.Dispose();
        _session.Dispose();
    }
}
