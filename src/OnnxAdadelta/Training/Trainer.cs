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

    /// <summary>
    /// Where to write ONNX Runtime's profile of the session (a Chrome-trace JSON file: one event per node run, with
    /// its op type and duration), or null for no profiling. The file is written by <see cref="Trainer.EndProfiling"/>.
    /// </summary>
    public string? ProfilePath { get; init; }

    /// <summary>
    /// Changes ONNX Runtime's session options after the trainer has set its own (device, threads, profiling), for
    /// settings it does not expose: for example <c>GraphOptimizationLevel</c>, <c>EnableMemoryPattern</c>,
    /// <c>EnableCpuMemArena</c> or config entries such as <c>session.intra_op.allow_spinning</c>. Null keeps them.
    /// </summary>
    public Action<SessionOptions>? ConfigureSession { get; init; }

    /// <summary>
    /// How the update runs: <see cref="UpdateMode.Fused"/> for the fused op (an error where it is not available),
    /// <see cref="UpdateMode.Graph"/> for the step model's standard ops, or null (the default) for
    /// <see cref="FusedUpdate.DefaultMode"/>: fused on the CPU where the fused op runs the step model's options, else graph.
    /// </summary>
    public UpdateMode? Update { get; init; }
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

    private InferenceSession _session;
    private readonly RunOptions _run = new() { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
    private readonly OrtMemoryInfo _deviceMemory;
    private readonly Slot[] _slots;
    private string[] _hostOutputs;
    // The step model's learning-rate output (null in older models: the rate is then computed on the host).
    private string? _learningRateOutput;
    private readonly Dictionary<string, OrtValue> _hostBuffers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (long[] Shape, OrtValue Value)> _dataBuffers = new(StringComparer.Ordinal);
    private IReadOnlyDictionary<string, NodeMetadata> _inputMetadata;
    private readonly TrainerOptions _options;
    // Undo of the last step: the ping-pong bindings keep the previous value of every state tensor not updated in place;
    // the tensors updated in place (the fused update's parameters and slots) are copied here before each step.
    private Dictionary<TensorElementType, byte[]>? _snapshot;
    private bool _undoable;
    private readonly Dictionary<TensorElementType, FlatTensorBuffer> _stateBuffers = [];
    private readonly Dictionary<TensorElementType, FlatTensorBuffer> _spareBuffers = [];
    private readonly Dictionary<TensorElementType, FlatTensorBuffer> _gradientBuffers = [];
    private readonly Dictionary<string, LabelCheck> _labels = new(StringComparer.Ordinal);
    private OrtIoBinding[]? _pingPong;
    private int _parity;
    private string? _profilePath;

    /// <summary>
    /// Loads <paramref name="stepModel"/> into an ONNX Runtime session, after checking its metadata against its graph
    /// (<see cref="StepModelInfo.Validate"/>) and its stored state (<see cref="StepModelInfo.ValidateState"/>).
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">The metadata or the stored state is not valid, or ONNX Runtime rejects the model.</exception>
    public Trainer(ModelProto stepModel, TrainerOptions? options = null)
        : this(stepModel, StepModelInfo.Read(stepModel ?? throw new ArgumentNullException(nameof(stepModel)), "the model"), options)
    {
    }

    /// <summary>
    /// Loads <paramref name="stepModel"/>, whose contract <paramref name="info"/> the caller has already read (for example
    /// with <see cref="StepModelInfo.Read"/>, or from <see cref="AdadeltaRewrite.Apply(ModelProto, AdadeltaOptions, Graphs.RewriteOptions?, out StepModelInfo)"/>),
    /// into an ONNX Runtime session after checking the contract against the graph (<see cref="StepModelInfo.Validate"/>,
    /// no parse) and the stored state (<see cref="StepModelInfo.ValidateState"/>).
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">The contract does not fit the model, the stored state is not valid, or ONNX Runtime rejects the model.</exception>
    public Trainer(ModelProto stepModel, StepModelInfo info, TrainerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(stepModel);
        ArgumentNullException.ThrowIfNull(info);
        options ??= new TrainerOptions();
        _options = options;
        // Older step models (state values in initializers named as the inputs) are upgraded, so checkpoints are format 2.
        info.Validate(stepModel, "the model");
        (Model, Info) = StepModelState.Upgrade(stepModel, info);
        Info.ValidateState(Model, "the step model");
        Device = options.Device;
        var inits = StepModelState.Values(Model, Info);
        // The fused op is the default on the CPU where it can run the options; on CUDA (unverified on GPUs) it is opt-in.
        if (options.Update == UpdateMode.Fused && FusedUpdate.Unsupported(Info, Device) is { } unsupported)
            throw new OnnxAdadeltaException($"--update fused: not available for this run: {unsupported}; use --update graph.");
        string? fallback = null;
        Update = options.Update ?? FusedUpdate.DefaultMode(Info, Device, out fallback);
        UpdateDescription = Update == UpdateMode.Fused
            ? $"fused ({FusedUpdate.Domain}.{FusedUpdate.OpType}, parameters and state in place)"
            : $"graph (standard ONNX ops, state ping-pong{(fallback is null ? "" : $"; {fallback}")})";
        if (options.Threads is < 1) throw new ArgumentException($"Invalid thread count: {options.Threads} (expected at least 1).");
        if (options.ProfilePath is { } profile)
        {
            _profilePath = Path.GetFullPath(profile);
            var dir = Path.GetDirectoryName(_profilePath)!;
            if (!Directory.Exists(dir))
                throw new OnnxAdadeltaException($"Profile {profile}: the folder {dir} does not exist.");
        }
        _session = OpenSession(Model, Info);
        _deviceMemory = OrtSessions.DeviceMemory(Device);
        _inputMetadata = _session.InputMetadata;
        foreach (var check in Info.LabelChecks(Model)) _labels.TryAdd(check.Input, check);
        _hostOutputs = [.. new[] { Info.Loss }.Concat(options.ExtraOutputs).Distinct(StringComparer.Ordinal)];
        BindLearningRate();
        if (Device == Device.Cpu)
        {
            // The fused node runs after every other node that reads a parameter or slot, so those are bound in place
            // (one buffer as input and output); the standard ops may read a parameter after writing its next value.
            _slots = FlatSlots(inits, inPlace: s => Update == UpdateMode.Fused && s.Kind is StateKind.Parameter or StateKind.Slot);
            // The first step binds the loss and other outputs to new buffers; later steps reuse them (ping-pong bindings).
            BindGradientBuffers(inits, options.ExtraOutputs);
        }
        else
        {
            _slots = Info.State.Select(s => new Slot(s, OrtValues.FromBytes(ElementType(inits[s.Input]), [.. inits[s.Input].Dims], inits[s.Input].ToRawBytes()), false)).ToArray();
        }
        // A negative counter was refused above by ValidateState.
        Iteration = inits[Info.Iterations.Input].ToInt64Array()[0];
    }

    // The learning-rate output, when the model has one, is read back to a float scalar in CPU memory after every step,
    // as the loss is (on a GPU too: ONNX Runtime copies the 4 bytes to the bound host buffer).
    private void BindLearningRate()
    {
        var next = Info.LearningRateOutput;
        // After a change of optimizer the old name goes, unless the loss or an extra output asked for is that value.
        if (_learningRateOutput is { } old && old != next && old != Info.Loss && !_options.ExtraOutputs.Contains(old))
        {
            _hostOutputs = [.. _hostOutputs.Where(n => n != old)];
            if (_hostBuffers.Remove(old, out var stale)) stale.Dispose();
        }
        _learningRateOutput = next;
        if (_learningRateOutput is not { } name || _hostOutputs.Contains(name, StringComparer.Ordinal)) return;
        _hostOutputs = [.. _hostOutputs, name];
        if (!_hostBuffers.ContainsKey(name))
            _hostBuffers[name] = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, TensorElementType.Float, []);
    }

    // The session of a step model, with the trainer's options (device, threads, profiling, the fused op).
    private InferenceSession OpenSession(ModelProto model, StepModelInfo info)
    {
        using var sessionOptions = OrtSessions.Options(Device);
        if (_options.Threads is { } threads) sessionOptions.IntraOpNumThreads = threads;
        if (_profilePath is not null)
        {
            sessionOptions.EnableProfiling = true;
            // ONNX Runtime appends its own suffix to this prefix; in the target's folder, so the final move is a rename.
            sessionOptions.ProfileOutputPathPrefix = Path.Combine(Path.GetDirectoryName(_profilePath)!, $".{Path.GetFileName(_profilePath)}.{Environment.ProcessId}.ort-profile");
        }
        _options.ConfigureSession?.Invoke(sessionOptions);
        if (Update == UpdateMode.Fused) FusedUpdate.Register(sessionOptions, Device);
        // The session's model shares the step model's nodes and tensors; the fused op's swap changes only its lists.
        var sessionModel = StepModelState.WithoutValues(model, info);
        if (Update == UpdateMode.Fused) FusedUpdate.SwapInPlace(sessionModel, info);
        return OrtSessions.Create(sessionModel, sessionOptions, "the step model");
    }

    /// <summary>
    /// Ends ONNX Runtime's profiling and writes the trace to <see cref="TrainerOptions.ProfilePath"/> (ONNX Runtime's own
    /// file, renamed into place); returns that path, or null when the trainer does not profile or has already written it.
    /// A trainer disposed without this call discards the trace, so a failed run leaves no profile behind.
    /// </summary>
    public string? EndProfiling()
    {
        if (_profilePath is null) return null;
        var target = _profilePath;
        _profilePath = null;
        var written = Path.GetFullPath(_session.EndProfiling());
        try { File.Move(written, target, overwrite: true); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            File.Delete(written);
            throw new OnnxAdadeltaException($"Profile {target}: can't write it ({e.Message}).", e);
        }
        return target;
    }

    /// <summary>
    /// The state in CPU memory, one <see cref="FlatTensorBuffer"/> per element type (float32, float16, bfloat16, int64)
    /// holding every state tensor of that type under its input name; empty on other devices. State bound ping-pong has
    /// its other copy elsewhere, so read values through <see cref="ReadState"/>.
    /// </summary>
    public IReadOnlyDictionary<TensorElementType, FlatTensorBuffer> StateBuffers => _stateBuffers;

    /// <summary>
    /// Bytes of CPU memory the trainer holds for parameters and optimizer state: the flat buffers, and the second copy of
    /// each tensor bound ping-pong (parameters and slots under the graph update; the counter and running statistics
    /// always). 0 on other devices.
    /// </summary>
    public long StateMemoryBytes => _stateBuffers.Values.Concat(_spareBuffers.Values).Sum(b => b.Length * b.ElementSize);

    /// <summary>
    /// The gradients named in <see cref="TrainerOptions.ExtraOutputs"/> (graph outputs of a step model rewritten with
    /// <c>KeepGradients</c>), one <see cref="FlatTensorBuffer"/> per element type, each slice named by the gradient's
    /// output name; after each <c>Step</c> they hold that step's gradients. Empty on other devices or when no
    /// gradient is asked for.
    /// </summary>
    public IReadOnlyDictionary<TensorElementType, FlatTensorBuffer> GradientBuffers => _gradientBuffers;

    // Every state tensor in a flat buffer of its type; those not bound in place get a second copy in a spare buffer.
    private Slot[] FlatSlots(IReadOnlyDictionary<string, TensorProto> inits, Func<StateBinding, bool> inPlace)
    {
        var types = Info.State.ToDictionary(s => s.Input, s => ElementType(inits[s.Input]), StringComparer.Ordinal);
        foreach (var group in Info.State.GroupBy(s => types[s.Input]))
        {
            _stateBuffers[group.Key] = new FlatTensorBuffer(group.Key, group.Select(s => (s.Input, inits[s.Input].Dims.ToArray())));
            var spare = group.Where(s => !inPlace(s)).ToList();
            if (spare.Count > 0) _spareBuffers[group.Key] = new FlatTensorBuffer(group.Key, spare.Select(s => (s.Input, inits[s.Input].Dims.ToArray())));
        }
        return Info.State.Select(s =>
        {
            var slice = _stateBuffers[types[s.Input]][s.Input];
            inits[s.Input].ToRawBytes().CopyTo(slice.Bytes);
            var spare = inPlace(s) ? slice.Value : _spareBuffers[types[s.Input]][s.Input].Value;
            return new Slot(s, slice.Value, true) { Spare = spare };
        }).ToArray();
    }

    // Gradients asked for as extra outputs are written straight into flat buffers (the parameter's shape and type).
    private void BindGradientBuffers(IReadOnlyDictionary<string, TensorProto> inits, IReadOnlyList<string> extraOutputs)
    {
        var gradients = Info.Gradients.Where(g => extraOutputs.Contains(g.Value)).ToList();
        foreach (var group in gradients.GroupBy(g => ElementType(inits[g.Key])))
        {
            var buffer = new FlatTensorBuffer(group.Key, group.Select(g => (g.Value, inits[g.Key].Dims.ToArray())));
            _gradientBuffers[group.Key] = buffer;
            foreach (var slice in buffer.Slices) _hostBuffers[slice.Name] = slice.Value;
        }
    }

    /// <summary>How the update runs in this trainer's session.</summary>
    public UpdateMode Update { get; }

    /// <summary>The update mode in words, with the reason when the fused op was not available (for the run's output).</summary>
    public string UpdateDescription { get; }

    /// <summary>The step model this trainer runs, in format 2 (its initializers hold the state it started from; see <see cref="StepModelState"/>).</summary>
    public ModelProto Model { get; private set; }

    /// <summary>The step model's contract.</summary>
    public StepModelInfo Info { get; private set; }

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
        ArgumentNullException.ThrowIfNull(batch);
        return Step(Batch.FromRaw(batch), stateToHost);
    }

    /// <summary>
    /// Runs one training step on <paramref name="batch"/> (a tensor per data input, or rows of a dataset gathered
    /// straight into the bound input buffers); returns the loss. With <paramref name="stateToHost"/> the new state is
    /// written to CPU memory so it can be read.
    /// </summary>
    public float Step(Batch batch, bool stateToHost = false)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (batch.Dataset is { } dataset) return Step(dataset, batch.RowIndices, stateToHost);
        foreach (var name in Info.DataInputs)
        {
            if (!batch.Tensors.TryGetValue(name, out var data))
                throw new OnnxAdadeltaException($"The batch has no value for data input '{name}'.");
            var target = DataBuffer(name, data.Shape).GetTensorMutableRawData();
            if (target.Length != data.Data.Length)
                throw new OnnxAdadeltaException($"Data input '{name}': {data.Data.Length} bytes for shape [{string.Join(",", data.Shape)}], expected {target.Length}.");
            data.Data.Span.CopyTo(target);
        }
        return Run(stateToHost);
    }

    /// <summary>
    /// Runs one training step on the given <paramref name="rows"/> of <paramref name="data"/>, in order; returns the loss.
    /// The rows are gathered straight into the buffers bound to the session's data inputs: one copy per batch.
    /// With <paramref name="stateToHost"/> the new state is written to CPU memory so it can be read.
    /// </summary>
    public float Step(Dataset data, ReadOnlySpan<long> rows, bool stateToHost = false)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (rows.Length == 0) throw new ArgumentException("A batch needs at least one row.", nameof(rows));
        foreach (var name in Info.DataInputs)
        {
            if (!data.Arrays.ContainsKey(name))
                throw new OnnxAdadeltaException($"{data.Source} has no array for data input '{name}'; it feeds {string.Join(", ", data.Arrays.Keys)}.");
            var target = DataBuffer(name, data.BatchShape(name, rows.Length)).GetTensorMutableRawData();
            long needed = (long)data.RowBytes(name) * rows.Length;
            if (target.Length != needed)
                throw new OnnxAdadeltaException(
                    $"Data input '{name}' takes {target.Length} bytes for {rows.Length} rows, but {data.Source}'s array '{name}' has {needed} ({data.Arrays[name]}); its element type differs from the model's.");
            data.Gather(name, rows, target);
        }
        return Run(stateToHost);
    }

    private float Run(bool stateToHost)
    {
        bool toHost = stateToHost && Device != Device.Cpu;
        _undoable = false;
        if (KeepUndo && Device == Device.Cpu && _slots.Any(s => ReferenceEquals(s.Current, s.Spare)))
        {
            _snapshot ??= _stateBuffers.ToDictionary(b => b.Key, b => new byte[b.Value.Bytes.Length]);
            foreach (var (type, buffer) in _stateBuffers) buffer.Bytes.CopyTo(_snapshot[type]);
        }
        if (_pingPong is not null && !toHost)
        {
            var binding = _pingPong[_parity];
            BindData(binding);
            RunWith(binding);
            foreach (var s in _slots) (s.Current, s.Spare) = (s.Spare!, s.Current);
            _parity ^= 1;
        }
        else
        {
            StepWithFreshBinding(toHost);
        }
        Iteration++;
        // The previous state is the other side of the ping-pong (plus the snapshot of what was updated in place).
        _undoable = KeepUndo && Device == Device.Cpu && _pingPong is not null;
        LearningRate = _learningRateOutput is { } rate ? ReadScalar(rate, "learning rate") : Info.Optimizer.LearningRateAt(Iteration - 1);
        return ReadLoss();
    }

    /// <summary>
    /// The learning rate the last step applied, or null before this trainer's first step. Read from the step model's
    /// learning-rate output (<see cref="StepModelInfo.LearningRateOutput"/>) with the loss after each step, so it is the
    /// value the graph used: the schedule (and the legacy decay) at that step, and a rate a changed optimizer set
    /// (<see cref="ChangeOptimizer"/>). For parameters in a group with a rate of its own, see <see cref="AdadeltaOptions.Groups"/>:
    /// this is the rate of the others. Older step models without that output get the rate computed on the host
    /// (<see cref="AdadeltaOptions.LearningRateAt(long)"/>, the same arithmetic in C#); see <see cref="LearningRateFromGraph"/>.
    /// </summary>
    public float? LearningRate { get; private set; }

    /// <summary>Whether <see cref="LearningRate"/> is read from the step model's output (true) or computed on the host for an older model without one.</summary>
    public bool LearningRateFromGraph => _learningRateOutput is not null;

    /// <summary>
    /// Whether each step keeps what <see cref="UndoLastStep"/> needs (CPU only). With the graph update the previous state
    /// is the spare side of the ping-pong buffers, at no cost; with the fused update, which writes parameters and slots in
    /// place, the flat state buffers are copied (one copy per element type) before each step. Default false.
    /// </summary>
    public bool KeepUndo { get; set; }

    /// <summary>Whether <see cref="UndoLastStep"/> can run: the last step ran with <see cref="KeepUndo"/> on the CPU and was not undone yet.</summary>
    public bool CanUndo => _undoable;

    /// <summary>
    /// Puts back the parameters and optimizer state from before the last step (one level: the step just taken). With
    /// <paramref name="keepCounter"/> the iteration counter keeps its advanced value, so the next step takes the next batch
    /// and the schedule moves on (a skipped step); otherwise the counter goes back too.
    /// </summary>
    /// <exception cref="InvalidOperationException">No step to undo (see <see cref="CanUndo"/>).</exception>
    public void UndoLastStep(bool keepCounter = false)
    {
        if (!_undoable) throw new InvalidOperationException("No step to undo: undo follows a step run with KeepUndo on the CPU, once.");
        _undoable = false;
        if (_snapshot is not null)
            foreach (var (type, bytes) in _snapshot) bytes.CopyTo(_stateBuffers[type].Bytes);
        // Every ping-pong binding reads one side and writes the other: swapping back and flipping the parity rewinds it.
        foreach (var s in _slots)
            if (!ReferenceEquals(s.Current, s.Spare)) (s.Current, s.Spare) = (s.Spare!, s.Current);
        _parity ^= 1;
        if (keepCounter)
        {
            var counter = _slots.Single(s => s.Binding.Kind == StateKind.Iterations);
            BitConverter.TryWriteBytes(counter.Current.GetTensorMutableRawData(), Iteration);
        }
        else Iteration--;
    }

    /// <summary>
    /// The first state tensor (parameter, slot or buffer) holding a NaN or infinity, or null when all are finite. On a GPU
    /// only state in host memory can be read: there it returns null unless the last step ran with <c>stateToHost</c>.
    /// </summary>
    public string? FindNonFinite()
    {
        foreach (var s in _slots)
        {
            if (s.Binding.Kind == StateKind.Iterations) continue;
            if (Device != Device.Cpu && s.CurrentOnDevice) continue;
            if (!NonFinite.AllFinite(s.Current)) return s.Binding.Input;
        }
        return null;
    }

    /// <summary>
    /// The learning rate of the step run at counter value <paramref name="iteration"/>, computed on the host from the
    /// optimizer's options (for a step not run yet; the rate of the step just run is <see cref="LearningRate"/>).
    /// </summary>
    public float LearningRateAt(long iteration) => Info.Optimizer.LearningRateAt(iteration);

    /// <summary>The OrtValue currently holding state input <paramref name="name"/> (valid until the next step).</summary>
    internal OrtValue CurrentValue(string name) =>
        _slots.FirstOrDefault(s => s.Binding.Input == name)?.Current ?? throw new ArgumentException($"'{name}' is not a state input of the model.", nameof(name));

    /// <summary>
    /// Rebuilds the step model's update from <paramref name="options"/> (see <see cref="OptimizerChange"/>) and goes on from
    /// the current parameters, accumulators and counter, which stay in their buffers: only the session is replaced. CPU
    /// only, and not while profiling (the new session would start a new profile).
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">The new options change the optimizer's state tensors (write a checkpoint and resume from it instead).</exception>
    public void ChangeOptimizer(AdadeltaOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (Device != Device.Cpu) throw new InvalidOperationException("ChangeOptimizer runs on the CPU device only.");
        if (_profilePath is not null) throw new InvalidOperationException("ChangeOptimizer can't run while the session is profiled.");
        var next = OptimizerChange.Apply(SharedCheckpoint(), Info, options, out var nextInfo);
        if (Update == UpdateMode.Fused && FusedUpdate.Unsupported(nextInfo, Device) is { } unsupported)
            throw new OnnxAdadeltaException($"The new optimizer settings can't run in the fused op: {unsupported}.");
        static string Key(StateBinding s) => $"{s.Input}>{s.Output}:{s.Kind}";
        if (!nextInfo.State.Select(Key).SequenceEqual(Info.State.Select(Key)))
            throw new OnnxAdadeltaException("The new optimizer settings change the optimizer's state tensors; write a checkpoint and resume from it with the new settings.");
        var session = OpenSession(next, nextInfo);
        // Before the first step the bindings don't exist yet (the first step makes them, with its output buffers).
        bool rebind = _pingPong is not null;
        DisposePingPong();
        _session.Dispose();
        _session = session;
        _inputMetadata = _session.InputMetadata;
        Model = next;
        Info = nextInfo;
        BindLearningRate();
        _undoable = false;
        if (rebind) BuildPingPong();
    }

    private void StepWithFreshBinding(bool toHost)
    {
        DisposePingPong();
        using var binding = _session.CreateIoBinding();
        BindData(binding);
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

    /// <summary>The host buffer of data input <paramref name="name"/> for a batch of <paramref name="shape"/> (reused while the shape stays).</summary>
    private OrtValue DataBuffer(string name, long[] shape)
    {
        if (!_dataBuffers.TryGetValue(name, out var buffer) || !buffer.Shape.SequenceEqual(shape))
        {
            buffer.Value?.Dispose();
            var type = _inputMetadata[name].ElementDataType;
            try { buffer = ((long[])shape.Clone(), OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, type, shape)); }
            catch (OnnxRuntimeException e)
            {
                _dataBuffers.Remove(name);
                throw new OnnxAdadeltaException($"Data input '{name}': ONNX Runtime cannot allocate a batch of shape [{string.Join(",", shape)}]: {e.Message.Split('\n')[0]}; lower --batch-size.", e);
            }
            _dataBuffers[name] = buffer;
        }
        return buffer.Value;
    }

    private void BindData(OrtIoBinding binding)
    {
        foreach (var name in Info.DataInputs)
        {
            var value = _dataBuffers[name].Value;
            // Class labels are checked against the class count before ONNX Runtime sees them (ignore_index honoured).
            if (_labels.TryGetValue(name, out var labels))
                labels.Check(value.GetTensorMutableRawData().ToArray(), _inputMetadata[name].ElementDataType == TensorElementType.Int32, $"training step {Iteration + 1}");
            binding.BindInput(name, value);
        }
    }

    private float ReadLoss() => ReadScalar(Info.Loss, "loss");

    private float ReadScalar(string name, string what)
    {
        var span = _hostBuffers[name].GetTensorDataAsSpan<float>();
        if (span.Length != 1) throw new OnnxAdadeltaException($"The {what} '{name}' has {span.Length} elements; a scalar is expected.");
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
    /// <remarks>An independent model (one deep copy); the trainer's own checkpoint writing shares the nodes instead (<see cref="SharedCheckpoint"/>).</remarks>
    public ModelProto Checkpoint() => SharedCheckpoint().DeepCopy();

    /// <summary>
    /// The checkpoint as a model that shares the step model's nodes and other initializers (no deep copy per
    /// checkpoint): its lists are its own, so entries can be added or replaced (metadata, for example), but its nodes
    /// and tensors must not be changed. What <see cref="Checkpoints.Save"/> and <see cref="ChangeOptimizer"/> use.
    /// </summary>
    internal ModelProto SharedCheckpoint()
    {
        var state = ReadState();
        var model = Model.ShareElements();
        StepModelState.Write(model, Info, state);
        return model;
    }

    /// <summary>The ORT element type of a state tensor (float32, float16, bfloat16 or int64).</summary>
    internal static TensorElementType ElementType(TensorProto t) => (DataType)t.DataType switch
    {
        DataType.Float => TensorElementType.Float,
        DataType.Float16 => TensorElementType.Float16,
        DataType.Bfloat16 => TensorElementType.BFloat16,
        DataType.Int64 => TensorElementType.Int64,
        var other => throw new OnnxAdadeltaException($"State tensor '{t.Name}' is {other}; float32, float16, bfloat16 or int64 expected."),
    };

    private void DisposePingPong()
    {
        if (_pingPong is null) return;
        foreach (var b in _pingPong) b.Dispose();
        _pingPong = null;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_profilePath is not null)
        {
            _profilePath = null;
            File.Delete(Path.GetFullPath(_session.EndProfiling()));
        }
        DisposePingPong();
        var flat = _stateBuffers.Values.Concat(_spareBuffers.Values).Concat(_gradientBuffers.Values).ToList();
        var owned = flat.SelectMany(b => b.Slices).Select(s => s.Value).ToHashSet(ReferenceEqualityComparer.Instance);
        foreach (var s in _slots)
        {
            if (!owned.Contains(s.Current)) s.Current.Dispose();
            if (s.Spare is not null && !owned.Contains(s.Spare)) s.Spare.Dispose();
        }
        foreach (var v in _hostBuffers.Values) if (!owned.Contains(v)) v.Dispose();
        foreach (var b in flat) b.Dispose();
        foreach (var (_, v) in _dataBuffers.Values) v.Dispose();
        _run.Dispose();
        _session.Dispose();
    }
}
