using System.Numerics.Tensors;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Runtime;
using OnnxAdadelta.Training;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Distributed;

/// <summary>Options of a <see cref="DistributedTrainer"/>.</summary>
public sealed record DistributedOptions
{
    /// <summary>The default bucket size, PyTorch DDP's <c>bucket_cap_mb</c>.</summary>
    public const double DefaultBucketMb = 25;

    /// <summary>ONNX Runtime's intra-op threads per rank; null for its default (one per core).</summary>
    public int? Threads { get; init; }

    /// <summary>
    /// The gradient all-reduce is one <c>MPI_Allreduce</c> per bucket of at most this many MiB of the flat gradient
    /// buffer (default 25, as DDP). Larger buckets mean fewer calls.
    /// </summary>
    public double BucketMb { get; init; } = DefaultBucketMb;

    /// <summary>
    /// After every step, compare a hash of every parameter and state tensor across ranks and stop with an error if
    /// any rank differs. Costs one pass over the state and two small all-reduces per step.
    /// </summary>
    public bool CheckReplicas { get; init; }

    /// <summary>
    /// How the update model runs, as <c>Trainer</c>: <see cref="UpdateMode.Fused"/> for the fused op with parameters and
    /// slots bound in place (an error where the fused op cannot run the step model's options), <see cref="UpdateMode.Graph"/>
    /// for the step model's standard ops with state bound ping-pong, or null (the default) for
    /// <see cref="FusedUpdate.DefaultMode"/>: fused where the fused op runs the options, else graph.
    /// </summary>
    public UpdateMode? Update { get; init; }
}

/// <summary>
/// Data-parallel training: every rank holds the whole model, computes the gradients of its shard of each batch, and
/// the gradients are summed over the ranks before one identical update on every rank.
/// </summary>
/// <remarks>
/// <para>The step model is split at its gradients (<see cref="StepSplit"/>). Each step:</para>
/// <list type="number">
/// <item>rank r of N takes rows [r·B/N, (r+1)·B/N) of the global batch of B rows and runs the gradient model on them;
/// every gradient, and the loss, is written by ONNX Runtime straight into its slice of one flat float32 buffer
/// (<see cref="FlatTensorBuffer"/>);</item>
/// <item>the rank multiplies its gradients and loss by its row count (with more than one rank);</item>
/// <item>the buffer is summed over the ranks (<see cref="ICollective.AllReduceSum"/>, in buckets) and divided by B, so each
/// row weighs the same whatever the shard sizes (the mean over the batch, not the mean of the ranks' means);</item>
/// <item>the update model applies Adadelta to the reduced gradients on every rank, reading them straight from the flat
/// buffer's slices: the step model's standard ops, or with <see cref="DistributedOptions.Update"/> fused the
/// <c>ai.onnxadadelta.AdadeltaUpdate</c> op, which updates each parameter and slot in place in its flat state buffer.</item>
/// </list>
/// <para>At the start every state tensor is broadcast from rank 0. Buffers (running statistics) are computed by each
/// rank on its shard and rank 0's values are broadcast after each step (as DDP's <c>broadcast_buffers</c>). The loss
/// is the same mean over the whole batch as in a single process. The loss must be a mean over the batch rows, as every
/// loss of <c>build-training</c> is.</para>
/// <para>CPU only: the gradient buffer is host memory. Gradients must be float32. Not thread-safe; every rank must
/// call <see cref="Step"/> the same number of times.</para>
/// </remarks>
public sealed class DistributedTrainer : IDisposable
{
    private readonly ICollective _collective;
    private readonly int _simulatedRanks;
    private readonly DistributedOptions _options;
    private readonly InferenceSession _gradientSession;
    private readonly InferenceSession _updateSession;
    private readonly RunOptions _run = new();
    // Every state tensor's current value in a flat buffer of its type; those bound ping-pong (the buffers, the counter,
    // and every tensor under the graph update) have their other copy in a spare buffer. Current and next name a tensor's
    // two slices (the same slice for a tensor updated in place); after each step the ping-pong ones swap.
    private readonly Dictionary<TensorElementType, FlatTensorBuffer> _state = [];
    private readonly Dictionary<TensorElementType, FlatTensorBuffer> _spare = [];
    private readonly Dictionary<string, FlatSlice> _current = new(StringComparer.Ordinal);
    private readonly Dictionary<string, FlatSlice> _next = new(StringComparer.Ordinal);
    private readonly string[] _pingPong;
    private readonly Dictionary<string, TensorElementType> _stateTypes = new(StringComparer.Ordinal);
    private readonly FlatTensorBuffer _gradients;
    private readonly OrtValue? _learningRate;
    private readonly float[][] _shards;
    private readonly Dictionary<string, (long[] Shape, OrtValue Value)> _dataBuffers = new(StringComparer.Ordinal);
    private readonly IReadOnlyDictionary<string, NodeMetadata> _dataMetadata;
    private readonly int _bucketElements;

    /// <summary>A trainer that is rank <see cref="ICollective.Rank"/> of the job <paramref name="collective"/>.</summary>
    /// <param name="stepModel">The training-step model (every rank must pass the same; rank 0's state wins).</param>
    /// <param name="collective">The job's collectives; the trainer does not dispose it.</param>
    /// <param name="options">Threads, bucket size, replica check, update mode.</param>
    public DistributedTrainer(ModelProto stepModel, ICollective collective, DistributedOptions? options = null)
        : this(stepModel, collective, 0, options) { }

    private DistributedTrainer(ModelProto stepModel, ICollective collective, int simulatedRanks, DistributedOptions? options)
    {
        ArgumentNullException.ThrowIfNull(stepModel);
        ArgumentNullException.ThrowIfNull(collective);
        _options = options ?? new DistributedOptions();
        if (!double.IsFinite(_options.BucketMb) || _options.BucketMb <= 0 || _options.BucketMb > 2048)
            throw new ArgumentException($"Invalid bucket size: {_options.BucketMb} MiB (expected more than 0 and at most 2048).");
        if (_options.Threads is < 1) throw new ArgumentException($"Invalid thread count: {_options.Threads} (expected at least 1).");
        _collective = collective;
        _simulatedRanks = simulatedRanks;
        // The split and the ranks' buffers read state values from initializers named as the inputs (format 1).
        stepModel = StepModelState.WithInputDefaults(stepModel);
        Model = stepModel;
        var info = StepModelInfo.Read(stepModel, "the model");
        // The same default and refusal as single-process training (Trainer): fused where the fused op runs the options.
        string? fallback = null;
        Update = _options.Update ?? FusedUpdate.DefaultMode(info, Device.Cpu, out fallback);
        if (!Enum.IsDefined(Update)) throw new ArgumentException($"Invalid update mode: {Update} (expected Fused or Graph).");
        if (Update == UpdateMode.Fused && FusedUpdate.Unsupported(info, Device.Cpu) is { } unsupported)
            throw new OnnxAdadeltaException($"--update fused: not available for this run: {unsupported}; use --update graph.");
        UpdateDescription = (Update == UpdateMode.Fused
            ? $"fused ({FusedUpdate.Domain}.{FusedUpdate.OpType}, parameters and state in place)"
            : $"graph (standard ONNX ops, state ping-pong{(fallback is null ? "" : $"; {fallback}")})") + "; on every rank after the all-reduce";
        Split = StepSplit.Apply(stepModel, Update);
        foreach (var g in Split.Gradients.Where(g => g.Type != DataType.Float))
            throw new OnnxAdadeltaException($"Gradient '{g.Name}' of parameter '{g.Parameter}' is {g.Type}; distributed training all-reduces float32 gradients only.");
        var specs = TrainingRun.InputSpecs(stepModel);
        foreach (var spec in specs.Where(s => s.Dims is { } d && (d.Count == 0 || d[0] is long)))
            throw new OnnxAdadeltaException($"Data input '{spec.Name}' has {(spec.Dims!.Count == 0 ? "no batch dimension" : $"a fixed batch dimension of {spec.Dims[0]}")}; distributed training splits each batch across ranks and needs a symbolic batch dimension.");

        using (var sessionOptions = OrtSessions.Options(Device.Cpu))
        {
            if (_options.Threads is { } threads) sessionOptions.IntraOpNumThreads = threads;
            // Every state input is bound at each run, so the sessions get no copy of the state values.
            _gradientSession = OrtSessions.Create(WithoutStateValues(Split.GradientModel, Info), sessionOptions, "the gradient model");
            if (Update == UpdateMode.Fused) FusedUpdate.Register(sessionOptions, Device.Cpu);
            _updateSession = OrtSessions.Create(WithoutStateValues(Split.UpdateModel, Info), sessionOptions, "the update model");
        }
        _dataMetadata = _gradientSession.InputMetadata;

        // State: one flat buffer per element type, filled from the model, then from rank 0; a spare one for the tensors
        // bound ping-pong (those the update does not write in place).
        var inits = stepModel.Graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var inPlace = Split.InPlaceState.Select(s => s.Input).ToHashSet(StringComparer.Ordinal);
        _pingPong = Info.State.Where(s => !inPlace.Contains(s.Input)).Select(s => s.Input).ToArray();
        foreach (var s in Info.State) _stateTypes[s.Input] = ElementType(inits[s.Input]);
        foreach (var group in Info.State.GroupBy(s => _stateTypes[s.Input]))
        {
            var state = _state[group.Key] = new FlatTensorBuffer(group.Key, group.Select(s => (s.Input, inits[s.Input].Dims.ToArray())));
            var spare = group.Where(s => !inPlace.Contains(s.Input)).ToList();
            if (spare.Count > 0) _spare[group.Key] = new FlatTensorBuffer(group.Key, spare.Select(s => (s.Input, inits[s.Input].Dims.ToArray())));
            foreach (var s in group)
            {
                inits[s.Input].ToRawBytes().CopyTo(state[s.Input].Bytes);
                _current[s.Input] = state[s.Input];
                _next[s.Input] = inPlace.Contains(s.Input) ? state[s.Input] : _spare[group.Key][s.Input];
            }
            _collective.Broadcast(state.Bytes, 0);
        }
        Iteration = Current(Info.Iterations.Input).AsSpan<long>()[0];

        // The flat gradient buffer: every gradient in parameter order, then the loss; ORT writes straight into it.
        _gradients = new FlatTensorBuffer(TensorElementType.Float, [.. Split.Gradients.Select(g => (g.Name, g.Shape)), (Info.Loss, [])]);
        if (Info.LearningRateOutput is { } rateName && Split.UpdateModel.Graph.Output.Any(o => o.Name == rateName))
            _learningRate = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, TensorElementType.Float, []);
        GradientCount = checked((int)Split.Gradients.Sum(g => g.ElementCount));
        _bucketElements = (int)Math.Max(1, Math.Min(int.MaxValue, _options.BucketMb * 1024 * 1024 / sizeof(float)));
        _shards = simulatedRanks > 0 ? Enumerable.Range(0, simulatedRanks).Select(_ => new float[_gradients.Length]).ToArray() : [];
    }

    /// <summary>
    /// A trainer that computes in one process what <paramref name="ranks"/> ranks compute together: each shard's
    /// gradient separately, scaled by its row count, summed in the order of Open MPI's linear reduction
    /// (<c>g0 + (g1 + (… + g[N-1]))</c>), divided by the batch's row count. A reference for the distributed run.
    /// </summary>
    public static DistributedTrainer Simulated(ModelProto stepModel, int ranks, DistributedOptions? options = null)
    {
        if (ranks < 1) throw new ArgumentOutOfRangeException(nameof(ranks), ranks, "Expected at least 1 rank.");
        return new DistributedTrainer(stepModel, new LocalCollective(), ranks, options);
    }

    /// <summary>The step model this trainer runs.</summary>
    public ModelProto Model { get; }

    /// <summary>The step model's contract.</summary>
    public StepModelInfo Info => Split.Info;

    /// <summary>How the update runs on every rank (<see cref="DistributedOptions.Update"/>).</summary>
    public UpdateMode Update { get; }

    /// <summary>The update mode in words (for the run's output).</summary>
    public string UpdateDescription { get; }

    /// <summary>
    /// Bytes of memory the trainer holds for parameters and optimizer state: the flat state buffers and the second copy of
    /// each tensor bound ping-pong (every tensor under the graph update; the counter and running statistics under the
    /// fused update, which writes parameters and slots in place).
    /// </summary>
    public long StateMemoryBytes => _state.Values.Concat(_spare.Values).Sum(b => b.Length * b.ElementSize);

    /// <summary>The gradient and update models.</summary>
    public StepSplit Split { get; }

    /// <summary>This process's rank (0 for a simulated job).</summary>
    public int Rank => _collective.Rank;

    /// <summary>Whether this trainer simulates the ranks in one process (<see cref="Simulated"/>).</summary>
    public bool IsSimulated => _simulatedRanks > 0;

    /// <summary>Whether <paramref name="flag"/> is true on any rank (a collective call: every rank must make it).</summary>
    public bool AnyRank(bool flag) => _collective.MinMax(flag ? 1 : 0).Max == 1;

    /// <summary>Returns when every rank has called it.</summary>
    public void Barrier() => _collective.Barrier();

    /// <summary>The number of ranks the batch is split over.</summary>
    public int Ranks => _simulatedRanks > 0 ? _simulatedRanks : _collective.Size;

    /// <summary>Values in the flat gradient buffer (all gradients, without the loss slot).</summary>
    public int GradientCount { get; }

    /// <summary>The bucket size in elements.</summary>
    public int BucketElements => _bucketElements;

    /// <summary>The optimizer's iteration counter.</summary>
    public long Iteration { get; private set; }

    /// <summary>
    /// The learning rate the last step applied (null before the first step): read from the update model's learning-rate
    /// output (<see cref="StepModelInfo.LearningRateOutput"/>), or computed on the host for a step model without one.
    /// </summary>
    public float? LearningRate { get; private set; }

    /// <summary>Whether <see cref="LearningRate"/> is read from the update model's output (true) or computed on the host.</summary>
    public bool LearningRateFromGraph => _learningRate is not null;

    /// <summary>Seconds the last step spent in the gradient all-reduce.</summary>
    public double LastAllReduceSeconds { get; private set; }

    /// <summary>The rows [start, end) of a batch of <paramref name="rows"/> rows that rank <paramref name="rank"/> of <paramref name="ranks"/> takes.</summary>
    public static (int Start, int End) ShardOf(int rows, int rank, int ranks)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        if (ranks < 1) throw new ArgumentOutOfRangeException(nameof(ranks), ranks, "Expected at least 1 rank.");
        if (rank < 0 || rank >= ranks) throw new ArgumentOutOfRangeException(nameof(rank), rank, $"Expected a rank from 0 to {ranks - 1}.");
        return ((int)((long)rank * rows / ranks), (int)((long)(rank + 1) * rows / ranks));
    }

    /// <summary>
    /// Runs one step on the global batch (every rank passes the same batch; each uses its own rows); returns the loss
    /// over the whole batch. The same call as <c>Trainer.Step</c>.
    /// </summary>
    public float Step(IReadOnlyDictionary<string, (byte[] Data, long[] Shape)> batch, bool stateToHost = false)
    {
        ArgumentNullException.ThrowIfNull(batch);
        _ = stateToHost; // the state is always in host memory
        int rows = BatchRows(batch);
        if (_simulatedRanks > 0)
        {
            // From the last rank down, so that rank 0's buffer values are the ones kept (as a real job broadcasts them).
            for (int r = _simulatedRanks - 1; r >= 0; r--)
            {
                var (start, end) = ShardOf(rows, r, _simulatedRanks);
                ComputeShard(Slice(batch, start, end), end - start);
                _gradients.AsSpan<float>().CopyTo(_shards[r]);
            }
            // Open MPI's linear reduction: the accumulator starts from the last rank and each lower rank is added to it.
            var flat = _gradients.AsSpan<float>();
            _shards[^1].CopyTo(flat);
            for (int r = _simulatedRanks - 2; r >= 0; r--) TensorPrimitives.Add(_shards[r], flat, flat);
            return Finish(rows);
        }
        var (lo, hi) = ShardOf(rows, Rank, Ranks);
        return StepOnShard(Slice(batch, lo, hi), rows);
    }

    /// <summary>
    /// Runs one step where this rank's rows of the global batch (<see cref="ShardOf"/>) are already gathered in
    /// <paramref name="shard"/>; <paramref name="globalRows"/> is the global batch's row count. Returns the global loss.
    /// </summary>
    public float StepOnShard(IReadOnlyDictionary<string, (byte[] Data, long[] Shape)> shard, int globalRows)
    {
        if (_simulatedRanks > 0) throw new InvalidOperationException("A simulated trainer takes the global batch: call Step.");
        var (lo, hi) = ShardOf(globalRows, Rank, Ranks);
        if (BatchRows(shard) != hi - lo)
            throw new OnnxAdadeltaException($"Rank {Rank} of {Ranks}: the shard has {BatchRows(shard)} rows; rows [{lo}, {hi}) of a batch of {globalRows} were expected.");
        ComputeShard(shard, hi - lo);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var flat = _gradients.AsSpan<float>();
        for (int offset = 0; offset < flat.Length; offset += _bucketElements)
            _collective.AllReduceSum(flat.Slice(offset, Math.Min(_bucketElements, flat.Length - offset)));
        LastAllReduceSeconds = clock.Elapsed.TotalSeconds;
        return Finish(globalRows);
    }

    // Gradients and loss of one shard, times its row count, into the flat buffer; the buffers' next values from it.
    private void ComputeShard(IReadOnlyDictionary<string, (byte[] Data, long[] Shape)> shard, int rows)
    {
        var flat = _gradients.AsSpan<float>();
        if (rows == 0)
        {
            flat.Clear();
            foreach (var s in Info.State.Where(s => s.Kind == StateKind.Buffer)) Current(s.Input).Bytes.CopyTo(Next(s.Input).Bytes);
            return;
        }
        using (var binding = _gradientSession.CreateIoBinding())
        {
            BindData(binding, shard);
            foreach (var s in Split.GradientModelState) binding.BindInput(s.Input, Current(s.Input).Value);
            binding.BindOutput(Info.Loss, _gradients[Info.Loss].Value);
            foreach (var g in Split.Gradients) binding.BindOutput(g.Name, _gradients[g.Name].Value);
            foreach (var s in Info.State.Where(s => s.Kind == StateKind.Buffer)) binding.BindOutput(s.Output, Next(s.Input).Value);
            _gradientSession.RunWithBinding(_run, binding);
        }
        // One rank: the shard is the batch, and its mean gradient is already the answer (bit-identical to Trainer).
        if (Ranks > 1) TensorPrimitives.Multiply(flat, (float)rows, flat);
    }

    // The reduced sums divided by the global row count; the update; rank 0's buffers; the replica check.
    private float Finish(int rows)
    {
        var flat = _gradients.AsSpan<float>();
        if (Ranks > 1) TensorPrimitives.Divide(flat, (float)rows, flat);
        using (var binding = _updateSession.CreateIoBinding())
        {
            foreach (var g in Split.Gradients) binding.BindInput(g.Name, _gradients[g.Name].Value);
            // A tensor updated in place has one slice as both its input and its output.
            foreach (var s in Split.UpdateModelState)
            {
                binding.BindInput(s.Input, Current(s.Input).Value);
                binding.BindOutput(s.Output, Next(s.Input).Value);
            }
            if (_learningRate is { } rate) binding.BindOutput(Info.LearningRateOutput!, rate);
            _updateSession.RunWithBinding(_run, binding);
        }
        LearningRate = _learningRate is { } applied ? applied.GetTensorDataAsSpan<float>()[0] : Info.Optimizer.LearningRateAt(Iteration);
        foreach (var s in Info.State.Where(s => s.Kind == StateKind.Buffer)) _collective.Broadcast(Next(s.Input).Bytes, 0);
        foreach (var name in _pingPong) (_current[name], _next[name]) = (_next[name], _current[name]);
        Iteration++;
        if (_options.CheckReplicas) CheckReplicas();
        return _gradients[Info.Loss].AsSpan<float>()[0];
    }

    private FlatSlice Current(string state) => _current[state];

    private FlatSlice Next(string state) => _next[state];

    private void CheckReplicas()
    {
        ulong hash = 14695981039346656037UL;
        foreach (var s in Info.State)
            foreach (var b in Current(s.Input).Bytes) hash = (hash ^ b) * 1099511628211UL;
        var (min, max) = _collective.MinMax((long)hash);
        if (min != max)
            throw new OnnxAdadeltaException($"Rank {Rank} of {Ranks}: the parameters and optimizer state differ across ranks after iteration {Iteration} (state hashes from {min:x16} to {max:x16}).");
    }

    /// <summary>The gradients the last step applied (reduced over the ranks), concatenated in parameter order (<see cref="StepSplit.Gradients"/>).</summary>
    public float[] ReadGradients() => Split.Gradients.SelectMany(g => _gradients[g.Name].AsSpan<float>().ToArray()).ToArray();

    /// <summary>The current value of every state tensor, by input name.</summary>
    public IReadOnlyDictionary<string, TensorProto> ReadState() =>
        Info.State.ToDictionary(s => s.Input, s => Tensors.FromRawBytes(s.Input, StorageType(_stateTypes[s.Input]), [.. Current(s.Input).Shape], Current(s.Input).Bytes), StringComparer.Ordinal);

    /// <summary>The step model with the current state written into its initializers: a checkpoint to resume from with any number of ranks.</summary>
    public ModelProto Checkpoint()
    {
        var state = ReadState();
        var model = Model.DeepCopy();
        var inits = model.Graph.Initializer;
        for (int i = 0; i < inits.Count; i++)
            if (state.TryGetValue(inits[i].Name, out var value)) inits[i] = value;
        return model;
    }

    private static int BatchRows(IReadOnlyDictionary<string, (byte[] Data, long[] Shape)> batch)
    {
        int? rows = null;
        foreach (var (name, (_, shape)) in batch)
        {
            if (shape.Length == 0) throw new OnnxAdadeltaException($"Data input '{name}' is a scalar; a batch dimension is expected.");
            if (rows is { } n && shape[0] != n) throw new OnnxAdadeltaException($"Data input '{name}' has {shape[0]} rows; the other inputs have {n}.");
            rows = checked((int)shape[0]);
        }
        return rows ?? throw new OnnxAdadeltaException("The batch has no data inputs.");
    }

    private static Dictionary<string, (byte[] Data, long[] Shape)> Slice(IReadOnlyDictionary<string, (byte[] Data, long[] Shape)> batch, int start, int end)
    {
        var result = new Dictionary<string, (byte[] Data, long[] Shape)>(StringComparer.Ordinal);
        foreach (var (name, (data, shape)) in batch)
        {
            int rowBytes = shape[0] == 0 ? 0 : checked((int)(data.Length / shape[0]));
            long[] sliced = [end - start, .. shape[1..]];
            result[name] = (data.AsSpan(start * rowBytes, (end - start) * rowBytes).ToArray(), sliced);
        }
        return result;
    }

    private void BindData(OrtIoBinding binding, IReadOnlyDictionary<string, (byte[] Data, long[] Shape)> batch)
    {
        foreach (var name in Info.DataInputs)
        {
            if (!_dataMetadata.ContainsKey(name)) continue; // an input the gradients do not read
            if (!batch.TryGetValue(name, out var data))
                throw new OnnxAdadeltaException($"The batch has no value for data input '{name}'.");
            if (!_dataBuffers.TryGetValue(name, out var buffer) || !buffer.Shape.SequenceEqual(data.Shape))
            {
                buffer.Value?.Dispose();
                buffer = (data.Shape, OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, _dataMetadata[name].ElementDataType, data.Shape));
                _dataBuffers[name] = buffer;
            }
            var target = buffer.Value.GetTensorMutableRawData();
            if (target.Length != data.Data.Length)
                throw new OnnxAdadeltaException($"Data input '{name}': {data.Data.Length} bytes for shape [{string.Join(",", data.Shape)}], expected {target.Length}.");
            data.Data.CopyTo(target);
            binding.BindInput(name, buffer.Value);
        }
    }

    private static TensorElementType ElementType(TensorProto t) => Trainer.ElementType(t);

    // A copy of a split model without the initializers that hold state values under the state inputs' names (format 1).
    private static ModelProto WithoutStateValues(ModelProto model, StepModelInfo info)
    {
        var state = info.State.Select(s => s.Input).ToHashSet(StringComparer.Ordinal);
        var copy = model.DeepCopy();
        foreach (var t in copy.Graph.Initializer.Where(t => state.Contains(t.Name)).ToList()) copy.Graph.Initializer.Remove(t);
        return copy;
    }

    private static DataType StorageType(TensorElementType t) => t switch
    {
        TensorElementType.Float => DataType.Float,
        TensorElementType.Float16 => DataType.Float16,
        TensorElementType.BFloat16 => DataType.Bfloat16,
        _ => DataType.Int64,
    };

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var b in _state.Values.Concat(_spare.Values)) b.Dispose();
        _gradients.Dispose();
        _learningRate?.Dispose();
        foreach (var (_, v) in _dataBuffers.Values) v.Dispose();
        _run.Dispose();
        _gradientSession.Dispose();
        _updateSession.Dispose();
    }
}
