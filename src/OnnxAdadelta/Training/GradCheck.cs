using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Runtime;

namespace OnnxAdadelta.Training;

/// <summary>What <see cref="GradCheck"/> checks, and how.</summary>
public sealed record GradCheckOptions
{
    /// <summary>How the training graph is built (loss, output, target, parameters), as for <c>build-training</c>.</summary>
    public required BuildTrainingOptions Build { get; init; }

    /// <summary>Rows of the data the loss is computed on (the first ones). Default 8.</summary>
    public int Rows { get; init; } = 8;

    /// <summary>Names or patterns of the parameters to check (as <c>--trainable</c> takes them); empty: every trainable one.</summary>
    public IReadOnlyList<string> Parameters { get; init; } = [];

    /// <summary>Random directions per parameter. Default 3.</summary>
    public int Directions { get; init; } = 3;

    /// <summary>
    /// The step along a unit direction; null chooses one per parameter from its size and scale. Either way the step is
    /// also tried at a quarter and at four times its size, to tell a mismatch from finite-difference noise.
    /// </summary>
    public double? Step { get; init; }

    /// <summary>The largest relative error that passes; null: 1e-3 when the loss is computed in float64, 2e-2 in float32.</summary>
    public double? Tolerance { get; init; }

    /// <summary>Seeds the random directions.</summary>
    public ulong Seed { get; init; } = 1;

    /// <summary>Throws naming the first option out of range.</summary>
    public void Validate()
    {
        if (Rows < 1) throw new OnnxAdadeltaException($"--rows {Rows}: at least one row is needed.");
        if (Directions < 1) throw new OnnxAdadeltaException($"--directions {Directions}: at least one direction is needed.");
        if (Step is { } h && !(h > 0 && double.IsFinite(h))) throw new OnnxAdadeltaException($"--eps {h}: a positive finite step is needed.");
        if (Tolerance is { } t && !(t > 0 && t < 1)) throw new OnnxAdadeltaException($"--tolerance {t}: expected a value in (0, 1).");
    }
}

/// <summary>How one parameter fared.</summary>
public enum GradCheckStatus
{
    /// <summary>The gradient matches the finite differences within the tolerance in every direction.</summary>
    Passed,

    /// <summary>
    /// In some direction the finite differences disagree with each other (the path crosses kinks such as ReLU or max
    /// pooling), and the loss difference equals the path integral of the gradient within the tolerance.
    /// </summary>
    PassedAcrossKink,

    /// <summary>The gradient and the loss disagree.</summary>
    Failed,

    /// <summary>The parameter could not be moved in the original model (it is not one of its main graph's initializers).</summary>
    NotChecked,
}

/// <summary>The result for one parameter.</summary>
/// <param name="Name">The parameter.</param>
/// <param name="Elements">Its number of values.</param>
/// <param name="Status">Passed, failed, or why it was not checked.</param>
/// <param name="MaxError">The largest relative error over its directions (at the best step of each).</param>
/// <param name="Step">The step of the direction with the largest error.</param>
/// <param name="Detail">What was seen, for a failure or a kink.</param>
public sealed record ParameterCheck(string Name, long Elements, GradCheckStatus Status, double MaxError, double Step, string Detail);

/// <summary>The result of a gradient check.</summary>
/// <param name="Precision">"float64" or "float32": the precision of the loss the finite differences are taken of.</param>
/// <param name="PrecisionNote">Why float32 was used, or "".</param>
/// <param name="Tolerance">The relative tolerance applied.</param>
/// <param name="Rows">The rows of data the loss was computed on.</param>
/// <param name="Parameters">One result per parameter.</param>
public sealed record GradCheckReport(string Precision, string PrecisionNote, double Tolerance, int Rows, IReadOnlyList<ParameterCheck> Parameters)
{
    /// <summary>Whether no parameter failed and at least one was checked.</summary>
    public bool Passed => Parameters.All(p => p.Status != GradCheckStatus.Failed) && Parameters.Any(p => p.Status is GradCheckStatus.Passed or GradCheckStatus.PassedAcrossKink);
}

/// <summary>
/// Checks the training graph's gradients against central finite differences of the loss, as
/// <c>torch.autograd.gradcheck</c> does, on the user's own model and data. The loss is computed by ONNX Runtime on the
/// original model (its forward pass alone, cast to float64 where ONNX Runtime has float64 kernels for every op, else
/// in the model's own precision) and by a separate host implementation of the loss formula; the gradients come from
/// the training graph. For each parameter and each random unit direction <c>d</c>, the directional derivative
/// <c>g·d</c> is compared with <c>(L(p + h·d) − L(p − h·d)) / 2h</c> at three steps. Where the three estimates
/// disagree with each other (kinks), the loss difference is compared with the path integral of the gradient instead.
/// </summary>
public static class GradCheck
{
    private const int Segments = 16;

    /// <summary>
    /// Runs the check of <paramref name="inference"/> on the first rows of the data file or folder
    /// <paramref name="dataPath"/>, in any form <see cref="DataFiles"/> reads; only the model's inputs and the loss's
    /// target are read, a CSV's columns in their types and shapes.
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">A missing or damaged data file, or as <see cref="Run(ModelProto, GradCheckOptions, IReadOnlyDictionary{string, DataArray})"/>.</exception>
    public static GradCheckReport Run(ModelProto inference, GradCheckOptions options, string dataPath)
    {
        ArgumentNullException.ThrowIfNull(inference);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(dataPath);
        var initializers = inference.Graph.Initializer.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        var inputs = inference.Graph.Input.Where(i => !initializers.Contains(i.Name)).Select(InputSpec.From).ToList();
        if (options.Build.TargetName is { } target && inputs.All(i => i.Name != target)) inputs.Add(new InputSpec(target, TensorProto.Types.DataType.Undefined, null));
        return Run(inference, options, DataFiles.Read(dataPath, inputs, out _));
    }

    /// <summary>Runs the check of <paramref name="inference"/> on the first rows of <paramref name="data"/>.</summary>
    /// <exception cref="OnnxAdadeltaException">Bad options, missing data, or a model the autodiff refuses.</exception>
    public static GradCheckReport Run(ModelProto inference, GradCheckOptions options, IReadOnlyDictionary<string, DataArray> data)
    {
        ArgumentNullException.ThrowIfNull(inference);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var training = GradientGraphBuilder.Build(inference, options.Build, out var build);
        var reading = build.Loss ?? throw new InvalidOperationException("The build reported no loss.");
        var graph = TrainingGraph.Analyze(training);
        var patterns = options.Parameters.Count == 0 ? null : new ParameterPatterns(options.Parameters);
        var chosen = graph.Parameters.Where(p => patterns is null || patterns.Matches(p.Name)).ToList();
        if (chosen.Count == 0)
            throw new OnnxAdadeltaException($"--params {string.Join(" ", options.Parameters)}: no trainable parameter matches; they are {string.Join(", ", graph.Parameters.Select(p => p.Name).Take(12))}.");

        var needed = graph.DataInputs.Concat(reading.Target is { } t ? [t] : []).Distinct(StringComparer.Ordinal).ToList();
        int rows = options.Rows;
        foreach (var name in needed) rows = (int)Math.Min(rows, Array(data, name).Shape is [var first, ..] ? first : rows);
        if (rows < 1) throw new OnnxAdadeltaException($"The data has no rows (arrays {string.Join(", ", needed)}).");
        var batch = needed.ToDictionary(n => n, n => FirstRows(Array(data, n), n, rows), StringComparer.Ordinal);

        using var gradients = new GradientRunner(training, graph, batch);
        using var loss = LossRunner.Create(inference, reading, options.Build.Output, chosen.Select(p => p.Name), batch);
        double tolerance = options.Tolerance ?? (loss.Precision == "float64" ? 1e-3 : 2e-2);
        var rng = new SplitMix64(options.Seed);
        var results = new List<ParameterCheck>();
        var g0 = gradients.Gradients(null, null);
        foreach (var p in chosen)
        {
            var value = p.Value.ToDoubles();
            if (!loss.CanMove(p.Name))
            {
                results.Add(new ParameterCheck(p.Name, value.Length, GradCheckStatus.NotChecked, 0, 0,
                    "not an initializer of the original model's main graph (a promoted Constant or a subgraph initializer)"));
                continue;
            }
            results.Add(CheckParameter(p.Name, value, g0[p.Name], options, tolerance, loss, gradients, rng));
        }
        return new GradCheckReport(loss.Precision, loss.PrecisionNote, tolerance, rows, results);
    }

    private static ParameterCheck CheckParameter(string name, double[] p, double[] g, GradCheckOptions options, double tolerance,
        LossRunner loss, GradientRunner gradients, SplitMix64 rng)
    {
        int n = p.Length;
        double rms = Math.Sqrt(p.Sum(v => v * v) / Math.Max(n, 1));
        double gnorm = Math.Sqrt(g.Sum(v => v * v));
        // A random unit direction's derivative is about |g|/sqrt(n): errors are relative to at least that.
        double scale = Math.Max(gnorm / Math.Sqrt(Math.Max(n, 1)), 1e-30);
        double relative = loss.Precision == "float64" ? 1e-5 : 1e-2;
        double middle = options.Step ?? relative * Math.Max(rms, 0.05) * Math.Sqrt(n);
        var steps = new[] { middle, middle / 4, middle * 4 };
        var status = GradCheckStatus.Passed;
        double worst = 0, worstStep = middle;
        var details = new List<string>();
        for (int k = 0; k < options.Directions; k++)
        {
            var d = new double[n];
            for (int i = 0; i < n; i++) d[i] = 2 * rng.NextDouble() - 1;
            double dn = Math.Sqrt(d.Sum(v => v * v));
            for (int i = 0; i < n; i++) d[i] /= dn;

            var estimates = new List<(double H, double Numeric, double Analytic, double Error)>();
            foreach (var h in steps)
            {
                var (plus, lplus) = loss.At(name, p, d, h);
                var (minus, lminus) = loss.At(name, p, d, -h);
                double numeric = (lplus - lminus) / (2 * h);
                // The analytic value along the displacement actually applied (after rounding to the parameter's dtype).
                double analytic = 0;
                for (int i = 0; i < n; i++) analytic += g[i] * (plus[i] - minus[i]) / (2 * h);
                double relativeError = Math.Abs(numeric - analytic) / Math.Max(Math.Max(Math.Abs(analytic), Math.Abs(numeric)), scale);
                estimates.Add((h, numeric, analytic, relativeError));
            }
            var best = estimates.MinBy(e => e.Error);
            double spread = estimates.Max(e => estimates.Max(f => Math.Abs(e.Numeric - f.Numeric)))
                / Math.Max(estimates.Max(e => Math.Abs(e.Numeric)), scale);
            string seen = string.Join("; ", estimates.Select(e => $"h={e.H:G3}: {e.Numeric:G6}"));
            double error = best.Error;
            if (error > tolerance)
            {
                // The point estimates miss. Either the gradient is wrong, or kinks (ReLU, max pooling) lie within reach
                // of every step. The gradient theorem holds across kinks: L(p + h·d) − L(p − h·d) equals the integral of
                // g(p + t·d)·d over [−h, h] (trapezoid rule, each g from the training graph). A wrong gradient breaks it.
                double h = middle;
                double difference = loss.At(name, p, d, h).Loss - loss.At(name, p, d, -h).Loss;
                double integral = 0;
                for (int s = 0; s <= Segments; s++)
                {
                    double t = -h + 2 * h * s / Segments;
                    var gs = gradients.Gradients(name, Moved(p, d, t))[name];
                    double along = 0;
                    for (int i = 0; i < n; i++) along += gs[i] * d[i];
                    integral += (s == 0 || s == Segments ? 0.5 : 1) * along * (2 * h / Segments);
                }
                error = Math.Abs(difference - integral) / Math.Max(Math.Abs(difference), 2 * h * scale);
                string fd = spread > tolerance ? $"finite differences unstable ({seen})" : $"finite differences {best.Numeric:G6} against the gradient's {best.Analytic:G6} ({seen})";
                string path = $"the path integral of the gradient over ±{h:G3} gives {integral:G6} against a loss difference of {difference:G6}";
                if (error <= tolerance)
                {
                    if (status == GradCheckStatus.Passed) status = GradCheckStatus.PassedAcrossKink;
                    details.Add($"direction {k + 1}: {fd}; {path}, which agrees");
                }
                else
                {
                    status = GradCheckStatus.Failed;
                    details.Add($"direction {k + 1}: {fd}; {path}, which disagrees too");
                }
            }
            if (error >= worst) { worst = error; worstStep = best.H; }
        }
        return new ParameterCheck(name, n, status, worst, worstStep, string.Join(" | ", details));
    }

    private static double[] Moved(double[] p, double[] d, double t)
    {
        var moved = new double[p.Length];
        for (int i = 0; i < p.Length; i++) moved[i] = p[i] + t * d[i];
        return moved;
    }

    private static DataArray Array(IReadOnlyDictionary<string, DataArray> data, string name) =>
        data.TryGetValue(name, out var a) ? a
            : throw new OnnxAdadeltaException($"The data has no array '{name}' (it has {string.Join(", ", data.Keys)}); gradcheck needs every data input of the training graph and the loss target.");

    private static DataArray FirstRows(DataArray a, string name, int rows)
    {
        if (a.Shape.Length == 0) throw new OnnxAdadeltaException($"Array '{name}' is a scalar; rows are taken along its first axis.");
        long rowBytes = a.Data.Length / Math.Max(a.Shape[0], 1);
        return new DataArray(a.ElementType, [rows, .. a.Shape.Skip(1)], a.Data.AsSpan(0, (int)(rowBytes * rows)).ToArray());
    }

    /// <summary>An ORT value holding <paramref name="a"/> as <paramref name="type"/> (float data widens to float64).</summary>
    private static OrtValue Value(DataArray a, string name, TensorElementType type)
    {
        if (type == TensorElementType.Double && a.ElementType == TensorProto.Types.DataType.Float)
            return OrtValue.CreateTensorValueFromMemory(System.Array.ConvertAll(a.ToFloatArray(), v => (double)v), a.Shape);
        if ((TensorProto.Types.DataType)(int)type != a.ElementType)
            throw new OnnxAdadeltaException($"Array '{name}' is {a.TypeName}; the model's input '{name}' is {type.ToString().ToLowerInvariant()}.");
        return OrtValues.FromBytes(type, a.Shape, a.Data);
    }

    private static OrtValue ParameterValue(double[] values, long[] shape, TensorElementType type, out double[] rounded)
    {
        switch (type)
        {
            case TensorElementType.Double:
                rounded = values;
                return OrtValue.CreateTensorValueFromMemory(values.ToArray(), shape);
            case TensorElementType.Float:
                var f = System.Array.ConvertAll(values, v => (float)v);
                rounded = System.Array.ConvertAll(f, v => (double)v);
                return OrtValue.CreateTensorValueFromMemory(f, shape);
            case TensorElementType.Float16:
                var h = System.Array.ConvertAll(values, v => (Float16)(float)v);
                rounded = System.Array.ConvertAll(h, v => (double)(float)v);
                return OrtValue.CreateTensorValueFromMemory(h, shape);
            case TensorElementType.BFloat16:
                var b = System.Array.ConvertAll(values, v => (BFloat16)(float)v);
                rounded = System.Array.ConvertAll(b, v => (double)(float)v);
                return OrtValue.CreateTensorValueFromMemory(b, shape);
            default:
                throw new OnnxAdadeltaException($"A parameter of type {type} cannot be moved; float types are expected.");
        }
    }

    /// <summary>The element type of an input, or of an initializer the session lets a caller override.</summary>
    private static TensorElementType TypeOf(InferenceSession session, string name) =>
        (session.InputMetadata.TryGetValue(name, out var m) ? m : session.OverridableInitializerMetadata[name]).ElementDataType;

    private static double[] Doubles(OrtValue v)
    {
        var info = v.GetTensorTypeAndShape();
        return info.ElementDataType switch
        {
            TensorElementType.Double => v.GetTensorDataAsSpan<double>().ToArray(),
            TensorElementType.Float => System.Array.ConvertAll(v.GetTensorDataAsSpan<float>().ToArray(), x => (double)x),
            TensorElementType.Float16 => System.Array.ConvertAll(v.GetTensorDataAsSpan<Float16>().ToArray(), x => (double)(float)x),
            TensorElementType.BFloat16 => System.Array.ConvertAll(v.GetTensorDataAsSpan<BFloat16>().ToArray(), x => (double)(float)x),
            var other => throw new OnnxAdadeltaException($"The loss reads a value of type {other}; a float value is expected."),
        };
    }

    /// <summary>Runs the training graph for the gradients of every parameter, optionally with one parameter moved.</summary>
    private sealed class GradientRunner : IDisposable
    {
        private readonly InferenceSession _session;
        private readonly Dictionary<string, OrtValue> _data = new(StringComparer.Ordinal);
        private readonly IReadOnlyList<TrainableParameter> _parameters;
        private readonly Dictionary<string, long[]> _shapes;

        public GradientRunner(ModelProto training, TrainingGraph graph, Dictionary<string, DataArray> batch)
        {
            using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
            _session = OrtSessions.Create(training, options, "the training graph");
            _parameters = graph.Parameters;
            _shapes = graph.Parameters.ToDictionary(p => p.Name, p => p.Value.Dims.ToArray(), StringComparer.Ordinal);
            foreach (var name in graph.DataInputs)
                _data[name] = Value(batch[name], name, _session.InputMetadata[name].ElementDataType);
        }

        public Dictionary<string, double[]> Gradients(string? moved, double[]? values)
        {
            var inputs = new Dictionary<string, OrtValue>(_data, StringComparer.Ordinal);
            OrtValue? extra = null;
            if (moved is not null)
            {
                extra = ParameterValue(values!, _shapes[moved], TypeOf(_session, moved), out _);
                inputs[moved] = extra;
            }
            try
            {
                var names = _parameters.Select(p => p.Gradient).ToArray();
                using var results = _session.Run(new RunOptions(), inputs, names);
                return _parameters.Select((p, k) => (p.Name, Values: Doubles(results[k]))).ToDictionary(x => x.Name, x => x.Values, StringComparer.Ordinal);
            }
            catch (OnnxRuntimeException e) { throw new OnnxAdadeltaException($"ONNX Runtime failed running the training graph: {e.Message.Split('\n')[0]}", e); }
            finally { extra?.Dispose(); }
        }

        public void Dispose()
        {
            foreach (var v in _data.Values) v.Dispose();
            _session.Dispose();
        }
    }

    /// <summary>Runs the original model's forward pass and computes the loss on the host, in float64 where it can.</summary>
    private sealed class LossRunner : IDisposable
    {
        private readonly InferenceSession _session;
        private readonly Dictionary<string, OrtValue> _data = new(StringComparer.Ordinal);
        private readonly HashSet<string> _movable;
        private readonly Dictionary<string, long[]> _shapes;
        private readonly string _value;
        private readonly LossKind _kind;
        private readonly LossInputForm _form;
        private readonly int? _axis;
        private readonly DataArray? _target;

        public string Precision { get; }
        public string PrecisionNote { get; }

        private LossRunner(InferenceSession session, string precision, string note, HashSet<string> movable, Dictionary<string, long[]> shapes,
            string value, LossKind kind, LossInputForm form, int? axis, DataArray? target)
        {
            _session = session; Precision = precision; PrecisionNote = note; _movable = movable; _shapes = shapes;
            _value = value; _kind = kind; _form = form; _axis = axis; _target = target;
        }

        public static LossRunner Create(ModelProto inference, LossReading reading, string output, IEnumerable<string> parameters, Dictionary<string, DataArray> batch)
        {
            var model = inference.DeepCopy();
            var graph = model.Graph;
            bool exists = graph.Node.Any(n => n.Output.Contains(reading.Value)) || graph.Input.Any(i => i.Name == reading.Value);
            // The value the loss reads may exist only in the prepared model (inside an inlined function); then the
            // output itself is read, in the form the head gives it.
            var (value, form) = exists ? (reading.Value, reading.Form)
                : (output, reading.Form == LossInputForm.Logits && reading.Kind is LossKind.CrossEntropy or LossKind.Bce ? LossInputForm.Probabilities : reading.Form);
            if (!graph.Output.Any(o => o.Name == value)) graph.Output.Add(new ValueInfoProto { Name = value });
            var initializers = graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
            var movable = parameters.Where(initializers.ContainsKey).ToHashSet(StringComparer.Ordinal);
            var shapes = movable.ToDictionary(p => p, p => initializers[p].Dims.ToArray(), StringComparer.Ordinal);
            foreach (var p in movable.Where(p => !graph.Input.Any(i => i.Name == p)))
                graph.Input.Add(TypeProtos.ValueInfo(p, (TensorProto.Types.DataType)initializers[p].DataType, initializers[p].Dims));
            if (model.IrVersion < 4) model.IrVersion = 4;
            var target = reading.Target is { } t && batch.TryGetValue(t, out var a) ? a : null;
            var feeds = batch.Keys.Where(k => graph.Input.Any(i => i.Name == k)).ToList();

            string note;
            try
            {
                var runner = Open(Float64Cast.Apply(model), "float64", "", movable, shapes, value, reading, form, target, batch, feeds);
                runner.Evaluate([]);
                return runner;
            }
            catch (Exception e) when (e is OnnxAdadeltaException or OnnxRuntimeException)
            {
                note = $"no float64 form: {e.Message.Split('\n')[0]}";
            }
            var plain = Open(model, "float32", note, movable, shapes, value, reading, form, target, batch, feeds);
            plain.Evaluate([]);
            return plain;
        }

        private static LossRunner Open(ModelProto model, string precision, string note, HashSet<string> movable, Dictionary<string, long[]> shapes,
            string value, LossReading reading, LossInputForm form, DataArray? target, Dictionary<string, DataArray> batch, List<string> feeds)
        {
            using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
            var session = OrtSessions.Create(model, options, "the model");
            var runner = new LossRunner(session, precision, note, movable, shapes, value, reading.Kind, form, reading.ClassAxis, target);
            try
            {
                foreach (var name in feeds) runner._data[name] = Value(batch[name], name, session.InputMetadata[name].ElementDataType);
            }
            catch
            {
                runner.Dispose();
                throw;
            }
            return runner;
        }

        public bool CanMove(string parameter) => _movable.Contains(parameter);

        /// <summary>The loss with <paramref name="parameter"/> moved by <paramref name="t"/> along <paramref name="d"/>, and the values actually applied.</summary>
        public (double[] Applied, double Loss) At(string parameter, double[] p, double[] d, double t)
        {
            var moved = Moved(p, d, t);
            using var value = ParameterValue(moved, _shapes[parameter], TypeOf(_session, parameter), out var applied);
            return (applied, Evaluate(new Dictionary<string, OrtValue> { [parameter] = value }));
        }

        public double Evaluate(Dictionary<string, OrtValue> extra)
        {
            var inputs = new Dictionary<string, OrtValue>(_data, StringComparer.Ordinal);
            foreach (var (k, v) in extra) inputs[k] = v;
            try
            {
                using var results = _session.Run(new RunOptions(), inputs, [_value]);
                var shape = results[0].GetTensorTypeAndShape().Shape;
                return HostLoss.Compute(_kind, _form, Doubles(results[0]), shape, _axis, _target);
            }
            catch (OnnxRuntimeException e) { throw new OnnxAdadeltaException($"ONNX Runtime failed running the model ({Precision}): {e.Message.Split('\n')[0]}", e); }
        }

        public void Dispose()
        {
            foreach (var v in _data.Values) v.Dispose();
            _session.Dispose();
        }
    }
}
