using BenchmarkDotNet.Attributes;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Bench;

/// <summary>
/// One Adadelta step over every parameter of an <see cref="UpdateShape"/>: in the rewritten ONNX graph through the
/// library's <see cref="Trainer"/>, and in the fused C# loop (<see cref="FusedAdadelta"/>), the baseline.
/// </summary>
/// <remarks>
/// Both keep their state across invocations, as training does: the trainer in its ORT buffers (ping-pong IOBinding),
/// the loop in its arrays. Each starts from the same parameters and applies the same fixed gradients.
/// </remarks>
public class AdadeltaUpdateBenchmarks
{
    private Trainer? _trainer;
    private Trainer? _fusedTrainer;
    private Dictionary<string, (byte[] Data, long[] Shape)>? _batch;
    private float[][] _p = [], _accumGrad = [], _accumVar = [], _g = [];
    private float _lr, _rho, _oneMinusRho, _eps;

    /// <summary>The optimizer settings of both cases (Keras defaults, learning rate 0.001).</summary>
    public static AdadeltaOptions Options { get; } = new() { LearningRate = new ConstantLearningRate(0.001) };

    /// <summary>The shapes benchmarked: <see cref="UpdateShape.All"/>.</summary>
    public static IEnumerable<UpdateShape> Shapes => UpdateShape.All;

    /// <summary>The parameter tensors updated by one step.</summary>
    [ParamsSource(nameof(Shapes))]
    public UpdateShape Shape { get; set; } = UpdateShape.One1M;

    /// <summary>The trainer of the in-graph case (after <see cref="SetupInGraph"/>).</summary>
    public Trainer Trainer => _trainer ?? throw new InvalidOperationException("SetupInGraph has not run.");

    /// <summary>The trainer of the fused-op case (after <see cref="SetupFusedOp"/>).</summary>
    public Trainer FusedTrainer => _fusedTrainer ?? throw new InvalidOperationException("SetupFusedOp has not run.");

    /// <summary>The fused loop's parameter arrays, one per tensor (after <see cref="SetupFusedLoop"/>).</summary>
    public IReadOnlyList<float[]> LoopParameters => _p;

    /// <summary>The fused loop's accum_grad arrays, one per tensor.</summary>
    public IReadOnlyList<float[]> LoopAccumGrad => _accumGrad;

    /// <summary>The fused loop's accum_var arrays, one per tensor.</summary>
    public IReadOnlyList<float[]> LoopAccumVar => _accumVar;

    /// <summary>Builds the training graph for <see cref="Shape"/>, rewrites it, and loads it into a <see cref="Trainer"/>.</summary>
    [GlobalSetup(Target = nameof(InGraphUpdate))]
    public void SetupInGraph()
    {
        var step = AdadeltaRewrite.Apply(UpdateGraphs.Build(Shape), Options);
        _trainer = new Trainer(step, new TrainerOptions { Update = UpdateMode.Graph });
        _batch = UpdateGraphs.Batch(Shape);
    }

    /// <summary>Loads the same step model into a <see cref="Trainer"/> that swaps in the fused op (state bound in place).</summary>
    [GlobalSetup(Target = nameof(FusedOpUpdate))]
    public void SetupFusedOp()
    {
        var step = AdadeltaRewrite.Apply(UpdateGraphs.Build(Shape), Options);
        _fusedTrainer = new Trainer(step, new TrainerOptions { Update = UpdateMode.Fused });
        _batch = UpdateGraphs.Batch(Shape);
    }

    /// <summary>Allocates the fused loop's arrays: the graph's initial parameters and gradients, zero accumulators.</summary>
    [GlobalSetup(Target = nameof(FusedLoop))]
    public void SetupFusedLoop()
    {
        _p = Enumerable.Range(0, Shape.Tensors).Select(i => UpdateGraphs.InitialParameter(Shape, i)).ToArray();
        _g = Enumerable.Range(0, Shape.Tensors).Select(i => UpdateGraphs.GradientValues(Shape, i)).ToArray();
        _accumGrad = Enumerable.Range(0, Shape.Tensors).Select(_ => new float[Shape.Elements]).ToArray();
        _accumVar = Enumerable.Range(0, Shape.Tensors).Select(_ => new float[Shape.Elements]).ToArray();
        _lr = Options.LearningRate.Evaluate(0);
        _rho = (float)Options.Rho;
        _oneMinusRho = 1f - (float)Options.Rho;
        _eps = (float)Options.Epsilon;
    }

    /// <summary>Disposes the trainer (its ORT session and buffers) and drops the loop's arrays.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _trainer?.Dispose();
        _trainer = null;
        _fusedTrainer?.Dispose();
        _fusedTrainer = null;
        _batch = null;
        _p = _accumGrad = _accumVar = _g = [];
    }

    /// <summary>One training step of the rewritten graph: the Adadelta update of every parameter; returns the loss.</summary>
    [Benchmark]
    public float InGraphUpdate() => _trainer!.Step(_batch!);

    /// <summary>One training step with the fused op <c>ai.onnxadadelta.AdadeltaUpdate</c> in place of the standard ops; returns the loss.</summary>
    [Benchmark]
    public float FusedOpUpdate() => _fusedTrainer!.Step(_batch!);

    /// <summary>One fused-loop Adadelta step over every tensor.</summary>
    [Benchmark(Baseline = true)]
    public void FusedLoop()
    {
        for (int t = 0; t < _p.Length; t++)
            FusedAdadelta.Step(_p[t], _accumGrad[t], _accumVar[t], _g[t], _lr, _rho, _oneMinusRho, _eps);
    }
}
