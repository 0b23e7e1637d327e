using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Runtime;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Training;

/// <summary>How the trainer runs the optimizer update.</summary>
public enum UpdateMode
{
    /// <summary>
    /// The fused op <c>ai.onnxadadelta.AdadeltaUpdate</c>: one multi-tensor node updates every parameter in one pass over
    /// memory, with parameters and state bound in place. The default on the CPU (<see cref="FusedUpdate.DefaultMode"/>);
    /// clipnorm's and global_clipnorm's sums of squares stay standard ops that the op reads. On CUDA, opt-in: a generated
    /// PTX kernel (<see cref="UpdatePtx"/>) that has not yet run on a GPU, without clipnorm or global_clipnorm.
    /// </summary>
    Fused,

    /// <summary>The step model's standard ONNX ops, as on disk (state bound ping-pong).</summary>
    Graph,
}

/// <summary>
/// The fused Adadelta update: <see cref="Swap"/> replaces a step model's update nodes with one
/// <c>ai.onnxadadelta.AdadeltaUpdate</c> node for the session (the file on disk keeps its standard ops), and
/// <see cref="Register"/> gives ONNX Runtime its kernel, which runs the <see cref="UpdateProgram"/> recorded from the same
/// update pieces as the graph and the reference.
/// </summary>
/// <remarks>
/// Node inputs: the iteration counter; then per parameter its float32 value (the master copy with master weights), its
/// gradient, its slots in chain order, with master weights the stored parameter, and the float32 scalar sums of squares
/// its norms read (clipnorm's ReduceSumSquare, global_clipnorm's sum over all gradients); then every other graph output
/// (loss, outputs, running statistics) as ordering inputs the kernel does not read. Because the node waits for every
/// value the step computes, no node reads a parameter or slot after the node has written it, so both can be bound in
/// place. Node outputs: per parameter its next value, its slots' next values, and the next master copy.
/// </remarks>
public static class FusedUpdate
{
    /// <summary>The custom-op domain.</summary>
    public const string Domain = "ai.onnxadadelta";

    /// <summary>The op type.</summary>
    public const string OpType = "AdadeltaUpdate";

    /// <summary>The node attribute holding the <see cref="Config"/> as JSON.</summary>
    public const string ConfigAttribute = "config";


    /// <summary>What one fused node updates.</summary>
    /// <param name="Optimizer">The optimizer's arguments.</param>
    /// <param name="Parameters">The parameters, in input order.</param>
    public sealed record Config(AdadeltaOptions Optimizer, IReadOnlyList<ConfigParameter> Parameters);

    /// <summary>One parameter of a fused node.</summary>
    /// <param name="Name">The parameter (group patterns and exclusions match it).</param>
    /// <param name="Master">Whether its chain reads a float32 master copy (then the stored parameter follows its slots).</param>
    public sealed record ConfigParameter(string Name, bool Master);

    /// <summary>Why the fused op cannot run <paramref name="info"/>'s update on <paramref name="device"/>, or null when it can.</summary>
    /// <remarks>
    /// On <see cref="Device.Cuda"/> the op needs the NVIDIA driver library and an ONNX Runtime with the CUDA execution
    /// provider (<see cref="CudaUnavailable"/>), and every parameter's program must have a PTX form (<see cref="UpdatePtx.Unsupported"/>).
    /// </remarks>
    public static string? Unsupported(StepModelInfo info, Device device)
    {
        ArgumentNullException.ThrowIfNull(info);
        if (device == Device.Cuda && CudaUnavailable() is { } cuda) return cuda;
        var options = info.Optimizer;
        try
        {
            foreach (var p in info.Parameters)
            {
                var program = UpdateProgram.Record(options, p);
                if (device == Device.Cuda && UpdatePtx.Unsupported(program) is { } why) return $"the fused op's CUDA kernel cannot update parameter '{p}': {why}";
                if (device == Device.Cuda && program.Reductions.Count > 0)
                    return $"the fused op's CUDA kernel does not read {string.Join(" and ", program.Reductions.Distinct())} sums (they stay on the GPU; the CPU kernel reads them)";
            }
            return null;
        }
        catch (NotSupportedException e) { return e.Message; }
    }

    /// <summary>
    /// The update mode a trainer takes when none is asked for: <see cref="UpdateMode.Fused"/> on the CPU where the fused op
    /// can run <paramref name="info"/>'s options, else <see cref="UpdateMode.Graph"/>, with the reason in
    /// <paramref name="why"/> (null when fused). On CUDA the fused op's kernel has not yet run on a GPU, so it stays opt-in there.
    /// </summary>
    public static UpdateMode DefaultMode(StepModelInfo info, Device device, out string? why)
    {
        ArgumentNullException.ThrowIfNull(info);
        why = device != Device.Cpu ? "the fused op is opt-in on CUDA (--update fused)" : Unsupported(info, device);
        return why is null ? UpdateMode.Fused : UpdateMode.Graph;
    }

    /// <summary>
    /// Why the fused op's CUDA kernel cannot run in this process (no NVIDIA driver library, or an ONNX Runtime without the
    /// CUDA execution provider), or null when both are present.
    /// </summary>
    public static string? CudaUnavailable()
    {
        if (CudaDriver.Unavailable is { } driver) return $"the fused op's CUDA kernel needs the NVIDIA driver: {driver}";
        if (!OrtSessions.CudaBuilt) return $"the fused op's CUDA kernel needs ONNX Runtime's {OrtSessions.CudaProvider}, which the loaded ONNX Runtime does not have";
        return null;
    }

    /// <summary>
    /// The step model with its update nodes replaced by one fused node (a new model; <paramref name="stepModel"/> is unchanged).
    /// </summary>
    /// <param name="stepModel">The training-step model.</param>
    /// <param name="orderingInputs">
    /// Whether the node also takes every other graph output as an ordering input (see the remarks), which is what makes
    /// binding parameters and slots in place safe in the whole step. False only for a graph that keeps no other reader of
    /// them: the update model of distributed training, whose gradients are graph inputs.
    /// </param>
    /// <exception cref="NotSupportedException">The options need a reduction (see <see cref="Unsupported"/>).</exception>
    public static ModelProto Swap(ModelProto stepModel, bool orderingInputs = true)
    {
        var info = StepModelInfo.Read(stepModel, "the step model");
        var model = OnnxAdadelta.Onnx.ModelCopies.DeepCopy(stepModel);
        SwapInPlace(model, info, orderingInputs);
        return model;
    }

    /// <summary>
    /// <see cref="Swap"/> on <paramref name="model"/> itself, whose contract <paramref name="info"/> is already read. Only
    /// the model's lists change (nodes removed, one added, reordered; an opset import added), so a model that shares its
    /// elements with another (<see cref="StepModelState.WithoutValues"/>) can be swapped without a deep copy. The
    /// learning-rate output (<see cref="StepModelInfo.LearningRateOutput"/>) keeps its nodes: only the nodes writing a
    /// parameter or slot go.
    /// </summary>
    internal static void SwapInPlace(ModelProto model, StepModelInfo info, bool orderingInputs = true)
    {
        var options = info.Optimizer;
        var chainSlots = UpdateChain.Slots(options.Chain());
        var programs = info.Parameters.ToDictionary(p => p, p => UpdateProgram.Record(options, p), StringComparer.Ordinal);

        var graph = model.Graph;
        var inputs = new List<string> { info.Iterations.Input };
        var outputs = new List<string>();
        var sources = new List<long>();
        var parameters = new List<ConfigParameter>();
        GraphIndex? index = null;  // built once, and only for options with a norm
        foreach (var p in info.State.Where(s => s.Kind == StateKind.Parameter))
        {
            var slots = info.State.Where(s => s.Kind == StateKind.Slot && s.Parameter == p.Input).ToDictionary(s => s.Slot!, StringComparer.Ordinal);
            var master = slots.GetValueOrDefault(MixedPrecision.MasterSlot);
            int chainParameter = inputs.Count;
            inputs.Add(master?.Input ?? p.Input);
            inputs.Add(info.Gradients[p.Input]);
            var slotInputs = chainSlots.Select(s =>
            {
                if (!slots.TryGetValue(s, out var binding))
                    throw new OnnxAdadeltaException($"The step model has no state slot '{s}' of parameter '{p.Input}' that its optimizer record needs.");
                inputs.Add(binding.Input);
                return inputs.Count - 1;
            }).ToList();
            int stored = chainParameter;
            if (master is not null) { stored = inputs.Count; inputs.Add(p.Input); }
            // The sums of squares the norms need stay standard ops (ReduceSumSquare), computed before the node runs.
            foreach (var reduction in programs[p.Input].Reductions) inputs.Add(ReductionValue(index ??= new GraphIndex(graph), options, p.Input, reduction));
            outputs.Add(p.Output);
            sources.Add(stored);
            for (int s = 0; s < chainSlots.Count; s++) { outputs.Add(slots[chainSlots[s]].Output); sources.Add(slotInputs[s]); }
            if (master is not null) { outputs.Add(master.Output); sources.Add(chainParameter); }
            parameters.Add(new ConfigParameter(p.Input, master is not null));
        }
        // Every other graph output must be computed before the node runs (see the remarks): ordering inputs.
        var written = outputs.ToHashSet(StringComparer.Ordinal);
        if (orderingInputs) inputs.AddRange(graph.Output.Select(o => o.Name).Where(o => !written.Contains(o) && o != info.Iterations.Output));

        foreach (var node in graph.Node.Where(n => n.Output.Any(written.Contains)).ToList()) graph.Node.Remove(node);
        var fused = new NodeProto { OpType = OpType, Domain = Domain, Name = $"{info.Optimizer.Name}/{OpType}" };
        fused.Input.AddRange(inputs);
        fused.Output.AddRange(outputs);
        fused.Attribute.Add(GraphBuilder.Attr(ConfigAttribute, JsonSerializer.Serialize(new Config(info.Optimizer, parameters), FusedUpdateJson.Default.Config)));
        fused.Attribute.Add(GraphBuilder.Attr(CustomOpDefinition.OutputSourcesAttribute, sources.ToArray()));
        graph.Node.Add(fused);
        if (!model.OpsetImport.Any(o => o.Domain == Domain)) model.OpsetImport.Add(new OperatorSetIdProto { Domain = Domain, Version = 1 });
        GraphPasses.RemoveDeadCode(graph);
        GraphPasses.TopologicalSort(graph);
    }

    // The step model's value holding a reduction's sum, by the names the rewrite gives them (GraphMath's scopes):
    // clipnorm's per-parameter ReduceSumSquare, and the input of global_clipnorm's Sqrt (the sum over all parameters).
    private static string ReductionValue(GraphIndex index, AdadeltaOptions options, string parameter, string reduction)
    {
        string? value = reduction switch
        {
            "clipnorm" => $"{options.Name}/{parameter}/clipnorm/sum_of_squares" is var sum && index.Producer(sum) is { OpType: "ReduceSumSquare" } ? sum : null,
            _ => index.Producer($"{options.Name}/global_clipnorm/sqrt") is { OpType: "Sqrt" } sqrt ? sqrt.Input[0] : null,
        };
        return value ?? throw new OnnxAdadeltaException(
            $"The step model has no {reduction} sum of squares for parameter '{parameter}' where the rewrite puts it; the fused op can't run its update (use --update graph).");
    }

    /// <summary>
    /// Adds the fused op's domain to <paramref name="options"/>: its CPU kernel, or on <see cref="Device.Cuda"/> its CUDA
    /// kernel (registered for <see cref="OrtSessions.CudaProvider"/>, the iteration counter read from CPU memory).
    /// </summary>
    public static void Register(SessionOptions options, Device device = Device.Cpu)
    {
        if (device == Device.Cuda)
            CustomOps.Register(options, Domain, [new CustomOpDefinition(OpType, OrtSessions.CudaProvider, info => new CudaKernel(info.GetString(ConfigAttribute))) { HostInputs = 1 }]);
        else
            CustomOps.Register(options, Domain, [new CustomOpDefinition(OpType, null, info => new CpuKernel(info.GetString(ConfigAttribute)))]);
    }

    // AllFloat32: every input and output float32 and no stored low-precision copy, so the kernel runs on the tensors' own memory.
    private readonly record struct Tensors(KernelTensor[] In, KernelTensor[] Out, KernelTensor? Stored, KernelTensor? StoredOut, long Length, bool AllFloat32);

    private static bool Float32(KernelTensor[] tensors)
    {
        foreach (var t in tensors) if (t.ElementType != TensorElementType.Float) return false;
        return true;
    }

    // What both kernels share: the node's configuration, each parameter's program, and reading the node's tensors.
    private abstract unsafe class FusedKernel : CustomOpKernel
    {
        protected readonly ConfigParameter[] _parameters;
        protected readonly UpdateProgram[] _programs;
        protected readonly float[][] _scalars;
        private readonly float[][] _reductions;
        private readonly int _slots;

        protected FusedKernel(string config)
        {
            var c = JsonSerializer.Deserialize(config, FusedUpdateJson.Default.Config) ?? throw new OnnxAdadeltaException($"{OpType}: attribute '{ConfigAttribute}' is empty.");
            var options = c.Optimizer.Validate();
            _parameters = [.. c.Parameters];
            _programs = _parameters.Select(p => UpdateProgram.Record(options, p.Name)).ToArray();
            _scalars = _programs.Select(p => new float[p.ScalarRegisters]).ToArray();
            _reductions = _programs.Select(p => new float[p.Reductions.Count]).ToArray();
            _slots = UpdateChain.Slots(options.Chain()).Count;
        }

        // The counter (in CPU memory on both providers), and each parameter's tensors, with its scalars evaluated.
        protected Tensors[] Gather(KernelContext context)
        {
            var counter = context.Input(0);
            if (counter.ElementType != TensorElementType.Int64) throw new OnnxAdadeltaException($"{OpType}: input 0 (the iteration counter) is {counter.ElementType}; int64 expected.");
            long iterations = *(long*)counter.Data;
            int input = 1, output = 0;
            var tensors = new Tensors[_parameters.Length];
            for (int i = 0; i < _parameters.Length; i++)
            {
                var program = _programs[i];
                var ins = new KernelTensor[program.Inputs];
                for (int k = 0; k < ins.Length; k++) ins[k] = context.Input(input++);
                KernelTensor? stored = _parameters[i].Master ? context.Input(input++) : null;
                var reductions = _reductions[i];
                for (int k = 0; k < reductions.Length; k++)
                {
                    var sum = context.Input(input++);
                    if (sum.ElementType != TensorElementType.Float || sum.ElementCount != 1)
                        throw new OnnxAdadeltaException($"{OpType}: the {program.Reductions[k]} sum of parameter '{_parameters[i].Name}' is {sum.ElementType}[{string.Join(",", sum.Shape)}]; a float32 scalar expected.");
                    reductions[k] = *(float*)sum.Data;
                }
                var shape = (stored ?? ins[0]).Shape;
                long n = ins[0].ElementCount;
                for (int k = 0; k < ins.Length; k++)
                    if (ins[k].ElementCount != n) throw new OnnxAdadeltaException($"{OpType}: input {input - ins.Length + k} of parameter '{_parameters[i].Name}' has {ins[k].ElementCount} elements, the parameter {n}.");
                var outs = new KernelTensor[1 + _slots];
                outs[0] = context.Output(output++, shape);
                for (int s = 0; s < _slots; s++) outs[1 + s] = context.Output(output++, ins[2 + s].Shape);
                KernelTensor? storedOut = null;
                if (_parameters[i].Master) { storedOut = outs[0]; outs[0] = context.Output(output++, ins[0].Shape); }
                tensors[i] = new Tensors(ins, outs, stored, storedOut, n, storedOut is null && Float32(ins) && Float32(outs));
                program.EvaluateScalars(iterations, _scalars[i], reductions);
            }
            return tensors;
        }
    }

    // The CPU kernel: parameters are cut into chunks, the chunks spread over ORT's intra-op threads, and each chunk runs
    // the parameter's program block by block (float16/bfloat16 values widened into and narrowed out of float32 blocks).
    private sealed unsafe class CpuKernel(string config) : FusedKernel(config)
    {
        private const int ChunkSize = 64 * UpdateProgram.BlockSize;

        [ThreadStatic] private static float[]? _scratch;

        // The chunk count of the last call (the work list's capacity for the next).
        private int _chunks;

        public override void Compute(KernelContext context)
        {
            var tensors = Gather(context);
            var work = new List<(int Parameter, long Start, int Length)>(_chunks);
            for (int i = 0; i < tensors.Length; i++)
                for (long start = 0; start < tensors[i].Length; start += ChunkSize) work.Add((i, start, (int)Math.Min(ChunkSize, tensors[i].Length - start)));
            _chunks = work.Count;
            context.ParallelFor(work.Count, w => RunChunk(tensors[work[w].Parameter], work[w].Parameter, work[w].Start, work[w].Length));
        }

        private void RunChunk(Tensors t, int parameter, long start, int length)
        {
            var program = _programs[parameter];
            int outs = t.Out.Length;
            int need = program.ScratchFloats + (program.Inputs + outs) * UpdateProgram.BlockSize;
            if (_scratch is null || _scratch.Length < need) _scratch = GC.AllocateUninitializedArray<float>(need, pinned: true);
            fixed (float* scratch = _scratch)
            {
                if (t.AllFloat32)
                {
                    // Straight from the tensors to the tensors (in place where bound so), in one call.
                    var inDirect = stackalloc float*[program.Inputs];
                    var outDirect = stackalloc float*[outs];
                    for (int k = 0; k < program.Inputs; k++) inDirect[k] = (float*)t.In[k].Data + start;
                    for (int o = 0; o < outs; o++) outDirect[o] = (float*)t.Out[o].Data + start;
                    program.RunElements(_scalars[parameter], inDirect, outDirect, length, scratch);
                    return;
                }
                float* convertedIn = scratch + program.ScratchFloats;
                float* convertedOut = convertedIn + program.Inputs * UpdateProgram.BlockSize;
                var inPtr = stackalloc float*[program.Inputs];
                var outPtr = stackalloc float*[outs];
                for (long at = start; at < start + length; at += UpdateProgram.BlockSize)
                {
                    int count = (int)Math.Min(UpdateProgram.BlockSize, start + length - at);
                    for (int k = 0; k < program.Inputs; k++)
                        inPtr[k] = Widen(t.In[k], at, count, convertedIn + k * UpdateProgram.BlockSize);
                    for (int o = 0; o < outs; o++)
                        outPtr[o] = t.Out[o].ElementType == TensorElementType.Float ? (float*)t.Out[o].Data + at : convertedOut + o * UpdateProgram.BlockSize;
                    program.RunElements(_scalars[parameter], inPtr, outPtr, count, scratch);
                    for (int o = 0; o < outs; o++)
                        if (t.Out[o].ElementType != TensorElementType.Float) Narrow(outPtr[o], t.Out[o], at, count);
                    if (t.StoredOut is { } storedOut) Narrow(outPtr[0], storedOut, at, count);
                }
            }
        }

        private static float* Widen(KernelTensor t, long at, int count, float* converted)
        {
            switch (t.ElementType)
            {
                case TensorElementType.Float:
                    return (float*)t.Data + at;
                case TensorElementType.Float16:
                    var h = (ushort*)t.Data + at;
                    for (int k = 0; k < count; k++) converted[k] = (float)BitConverter.UInt16BitsToHalf(h[k]);
                    return converted;
                case TensorElementType.BFloat16:
                    var b = (ushort*)t.Data + at;
                    for (int k = 0; k < count; k++) converted[k] = MixedPrecision.FromBFloat16Bits(b[k]);
                    return converted;
                default:
                    throw new OnnxAdadeltaException($"{OpType}: a {t.ElementType} tensor; float32, float16 or bfloat16 expected.");
            }
        }

        private static void Narrow(float* values, KernelTensor t, long at, int count)
        {
            switch (t.ElementType)
            {
                case TensorElementType.Float:
                    new ReadOnlySpan<float>(values, count).CopyTo(new Span<float>((float*)t.Data + at, count));
                    break;
                case TensorElementType.Float16:
                    var h = (ushort*)t.Data + at;
                    for (int k = 0; k < count; k++) h[k] = BitConverter.HalfToUInt16Bits((Half)values[k]);
                    break;
                case TensorElementType.BFloat16:
                    var b = (ushort*)t.Data + at;
                    for (int k = 0; k < count; k++) b[k] = MixedPrecision.ToBFloat16Bits(values[k]);
                    break;
                default:
                    throw new OnnxAdadeltaException($"{OpType}: a {t.ElementType} output; float32, float16 or bfloat16 expected.");
            }
        }
    }

    // The CUDA kernel: one launch per parameter, on ONNX Runtime's compute stream, of the PTX that UpdatePtx generates from
    // the parameter's program for its tensors' dtypes (generated once per node and dtype combination; the module is
    // loaded once per PTX text and device). The scalars are evaluated on the host and passed as kernel parameters.
    private sealed unsafe class CudaKernel(string config) : FusedKernel(config)
    {
        private readonly Dictionary<(int Parameter, string Types), string> _ptx = [];

        private static DataType StorageOf(KernelTensor t) => t.ElementType switch
        {
            TensorElementType.Float => DataType.Float,
            TensorElementType.Float16 => DataType.Float16,
            TensorElementType.BFloat16 => DataType.Bfloat16,
            var other => throw new OnnxAdadeltaException($"{OpType}: a {other} tensor; float32, float16 or bfloat16 expected."),
        };

        private string Ptx(int parameter, in Tensors t)
        {
            var inputs = t.In.Select(StorageOf).ToArray();
            var outputs = t.Out.Select(StorageOf).ToArray();
            DataType? stored = t.StoredOut is { } s ? StorageOf(s) : null;
            var key = (parameter, $"{string.Join(",", inputs)}>{string.Join(",", outputs)}>{stored}");
            lock (_ptx)
            {
                if (!_ptx.TryGetValue(key, out var ptx)) _ptx[key] = ptx = UpdatePtx.Emit(_programs[parameter], inputs, outputs, stored);
                return ptx;
            }
        }

        public override void Compute(KernelContext context)
        {
            var tensors = Gather(context);
            var stream = context.GpuComputeStream;
            int most = _programs.Select((p, i) => UpdatePtx.ParameterCount(p, tensors[i].StoredOut is not null)).DefaultIfEmpty(0).Max();
            void** arguments = stackalloc void*[most];
            IntPtr* pointers = stackalloc IntPtr[most];
            for (int i = 0; i < tensors.Length; i++)
            {
                var t = tensors[i];
                var plan = CudaLaunch.Plan(t.Length);
                if (plan.Grid == 0) continue;
                int device = CudaDriver.DeviceOf(t.In[0].Data);
                var function = CudaDriver.Function(Ptx(i, t), UpdatePtx.EntryName, device);
                long n = t.Length;
                int a = 0, p = 0;
                arguments[a++] = &n;
                foreach (var tensor in t.In) { pointers[p] = tensor.Data; arguments[a++] = &pointers[p++]; }
                foreach (var tensor in t.Out) { pointers[p] = tensor.Data; arguments[a++] = &pointers[p++]; }
                if (t.StoredOut is { } storedOut) { pointers[p] = storedOut.Data; arguments[a++] = &pointers[p++]; }
                fixed (float* scalars = _scalars[i])
                {
                    for (int r = 0; r < _programs[i].ScalarRegisters; r++) arguments[a++] = scalars + r;
                    CudaDriver.Launch(function, device, plan, stream, arguments);
                }
            }
        }
    }
}

/// <summary>The fused node's configuration attribute, serialized without reflection (AOT- and trim-safe).</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, UseStringEnumConverter = true)]
[JsonSerializable(typeof(FusedUpdate.Config))]
internal sealed partial class FusedUpdateJson : JsonSerializerContext;
