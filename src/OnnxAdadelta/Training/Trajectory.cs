using Microsoft.ML.OnnxRuntime;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Reference;
using OnnxAdadelta.Runtime;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Training;

/// <summary>
/// A training run recorded by another framework, as an .npz: for each parameter <c>p</c>, <c>initial/p</c> (its value
/// before the first step), <c>params/p</c> with shape <c>[steps, ...]</c> (its value after each step) and optionally
/// <c>grads/p</c> with shape <c>[steps, ...]</c> (the gradient each step applied). All float32. Parameter names are the
/// step model's; extra arrays are ignored.
/// </summary>
/// <param name="Initial">Each parameter's value before the first step.</param>
/// <param name="Parameters">Each parameter's value after each step ([step][element]).</param>
/// <param name="Gradients">Each parameter's gradient at each step, or null (then the step model computes them from data).</param>
public sealed record Trajectory(IReadOnlyDictionary<string, float[]> Initial, IReadOnlyDictionary<string, float[][]> Parameters,
    IReadOnlyDictionary<string, float[][]>? Gradients)
{
    /// <summary>Steps recorded.</summary>
    public int Steps => Parameters.Values.FirstOrDefault()?.Length ?? 0;

    /// <summary>Reads and checks a trajectory file.</summary>
    /// <exception cref="OnnxAdadeltaException">A missing, mis-shaped or non-float32 array; the message names it.</exception>
    public static Trajectory Read(string path)
    {
        var file = Path.GetFileName(path);
        var arrays = Npz.Read(path);
        var initial = new Dictionary<string, float[]>(StringComparer.Ordinal);
        var parameters = new Dictionary<string, float[][]>(StringComparer.Ordinal);
        var gradients = new Dictionary<string, float[][]>(StringComparer.Ordinal);
        int? steps = null;
        float[][] Stacked(string key, DataArray a, long elements)
        {
            if (a.ElementType != DataType.Float) throw new OnnxAdadeltaException($"{file}: '{key}' is {a.TypeName}; float32 is expected.");
            if (a.Shape.Length == 0 || a.ElementCount != a.Shape[0] * elements)
                throw new OnnxAdadeltaException($"{file}: '{key}' has shape {a.ShapeText}; [steps, ...] with {elements} elements per step is expected.");
            if (steps is { } s && a.Shape[0] != s) throw new OnnxAdadeltaException($"{file}: '{key}' has {a.Shape[0]} steps, other arrays {s}.");
            steps = (int)a.Shape[0];
            var flat = a.ToFloatArray();
            return Enumerable.Range(0, (int)a.Shape[0]).Select(i => flat.AsSpan((int)(i * elements), (int)elements).ToArray()).ToArray();
        }
        foreach (var (key, a) in arrays.Where(kv => kv.Key.StartsWith("initial/", StringComparison.Ordinal)))
        {
            if (a.ElementType != DataType.Float) throw new OnnxAdadeltaException($"{file}: '{key}' is {a.TypeName}; float32 is expected.");
            initial[key["initial/".Length..]] = a.ToFloatArray();
        }
        if (initial.Count == 0) throw new OnnxAdadeltaException($"{file}: no 'initial/<parameter>' arrays; a trajectory has initial/, params/ and optionally grads/ arrays per parameter.");
        foreach (var (name, value) in initial)
        {
            if (!arrays.TryGetValue($"params/{name}", out var p)) throw new OnnxAdadeltaException($"{file}: 'initial/{name}' has no 'params/{name}' (the value after each step).");
            parameters[name] = Stacked($"params/{name}", p, value.Length);
            if (arrays.TryGetValue($"grads/{name}", out var g)) gradients[name] = Stacked($"grads/{name}", g, value.Length);
        }
        if (gradients.Count > 0 && gradients.Count != initial.Count)
            throw new OnnxAdadeltaException($"{file}: grads/ covers {string.Join(", ", gradients.Keys)} but not {string.Join(", ", initial.Keys.Except(gradients.Keys))}; give every parameter's gradients or none.");
        return new Trajectory(initial, parameters, gradients.Count > 0 ? gradients : null);
    }
}

/// <summary>One parameter at one step: the largest errors of its elements against the recorded trajectory.</summary>
/// <param name="Source">"graph" (the step model in ONNX Runtime) or "reference" (the C# reference Adadelta).</param>
/// <param name="Parameter">The parameter.</param>
/// <param name="Step">The step, from 1.</param>
/// <param name="MaxAbs">Largest absolute error.</param>
/// <param name="MaxRel">Largest relative error.</param>
/// <param name="MaxUlp">Largest distance in float32 units in the last place.</param>
public sealed record StepError(string Source, string Parameter, int Step, double MaxAbs, double MaxRel, long MaxUlp);

/// <summary>
/// <c>verify --against</c>: replays a recorded trajectory with the step model's optimizer and compares every parameter
/// after every step. With recorded gradients, those are fed as the gradients (the step model is cut at its gradient
/// values, so only the optimizer runs), which isolates the optimizer; without, the step model computes them from data.
/// Both the graph (ONNX Runtime) and the C# reference are compared.
/// </summary>
public static class TrajectoryCheck
{
    /// <summary>The sources compared.</summary>
    public static IReadOnlyList<string> Sources { get; } = ["graph", "reference"];

    /// <summary>Replays <paramref name="trajectory"/> (or its first <paramref name="steps"/> steps) and returns the errors per source, parameter and step.</summary>
    /// <param name="stepModel">A step model or checkpoint; its optimizer state and counter are the start, its parameters are replaced by the trajectory's.</param>
    /// <param name="trajectory">The recorded run.</param>
    /// <param name="batchAt">Batches by global iteration, needed when the trajectory has no gradients.</param>
    /// <param name="steps">Steps to compare (default: all recorded).</param>
    /// <exception cref="OnnxAdadeltaException">The trajectory does not fit the model; the message names the parameter.</exception>
    public static IReadOnlyList<StepError> Run(ModelProto stepModel, Trajectory trajectory,
        Func<long, IReadOnlyDictionary<string, (byte[] Data, long[] Shape)>>? batchAt = null, int? steps = null)
    {
        var model = StepModelState.Upgrade(stepModel);
        var info = StepModelInfo.Read(model, "the step model");
        var values = StepModelState.Values(model, info);
        var parameters = info.Parameters.ToList();
        foreach (var p in parameters)
        {
            if (!trajectory.Initial.TryGetValue(p, out var init))
                throw new OnnxAdadeltaException($"The trajectory has no 'initial/{p}' for parameter '{p}'; it has {string.Join(", ", trajectory.Initial.Keys)}.");
            if ((DataType)values[p].DataType != DataType.Float) throw new OnnxAdadeltaException($"Parameter '{p}' is {DataTypes.Name(values[p].DataType)}; verify --against compares float32 parameters.");
            if (init.Length != Tensors.ElementCount(values[p].Dims))
                throw new OnnxAdadeltaException($"The trajectory's 'initial/{p}' has {init.Length} elements; parameter '{p}' has {Tensors.ElementCount(values[p].Dims)}.");
        }
        int n = steps ?? trajectory.Steps;
        if (n < 0 || n > trajectory.Steps) throw new OnnxAdadeltaException($"--steps {n}: the trajectory records {trajectory.Steps} steps.");
        if (trajectory.Gradients is null && batchAt is null) throw new OnnxAdadeltaException("The trajectory has no grads/ arrays: give --data so the step model computes the gradients.");

        // The start: the trajectory's parameters, the model's optimizer state and counter.
        var start = values.ToDictionary(v => v.Key, v => v.Value, StringComparer.Ordinal);
        foreach (var p in parameters) start[p] = Tensors.Create(p, trajectory.Initial[p], [.. values[p].Dims]);
        var reference = new ReferenceAdadelta(info.Optimizer, parameters.ToDictionary(p => p, p => trajectory.Initial[p], StringComparer.Ordinal),
            values[info.Iterations.Input].ToInt64Array()[0]);
        foreach (var s in info.State.Where(s => s.Kind == StateKind.Slot)) reference.SetState(s.Parameter!, s.Slot!, MixedPrecision.ToFloats(values[s.Input]));

        var errors = new List<StepError>();
        void Compare(string source, int step, string p, float[] actual)
        {
            var expected = trajectory.Parameters[p][step];
            double abs = 0, rel = 0;
            long ulp = 0;
            for (int i = 0; i < actual.Length; i++)
            {
                abs = Math.Max(abs, FloatDistance.Abs(actual[i], expected[i]));
                rel = Math.Max(rel, FloatDistance.Rel(actual[i], expected[i]));
                ulp = Math.Max(ulp, FloatDistance.Ulp(actual[i], expected[i]));
            }
            errors.Add(new StepError(source, p, step + 1, abs, rel, ulp));
        }

        if (trajectory.Gradients is { } recorded)
        {
            var optimizer = OptimizerOnly(model, info);
            var fed = info.State.Where(s => optimizer.Graph.Input.Any(i => i.Name == s.Input)).ToList();
            using var options = OrtSessions.Options(Device.Cpu);
            using var session = OrtSessions.Create(optimizer, options, "the step model's optimizer");
            var current = fed.ToDictionary(s => s.Input, s => start[s.Input], StringComparer.Ordinal);
            for (int step = 0; step < n; step++)
            {
                var gradients = parameters.ToDictionary(p => p, p => recorded[p][step], StringComparer.Ordinal);
                var names = fed.Select(s => s.Input).Concat(parameters.Select(p => info.Gradients[p])).ToArray();
                var inputs = fed.Select(s => ToOrt(current[s.Input]))
                    .Concat(parameters.Select(p => OrtValue.CreateTensorValueFromMemory(gradients[p], [.. values[p].Dims]))).ToArray();
                try
                {
                    using var outputs = session.Run(new RunOptions(), names, inputs, fed.Select(s => s.Output).ToArray());
                    for (int k = 0; k < fed.Count; k++) current[fed[k].Input] = FromOrt(fed[k].Input, outputs[k]);
                }
                finally { foreach (var v in inputs) v.Dispose(); }
                reference.Step(gradients);
                foreach (var p in parameters)
                {
                    Compare("graph", step, p, current[p].ToFloatArray());
                    Compare("reference", step, p, reference.Parameters[p]);
                }
            }
            return errors;
        }

        var withGradients = NumericsCheck.WithGradientOutputs(model, info);
        StepModelState.Write(withGradients, info, start);
        using var trainer = new Trainer(withGradients, new TrainerOptions { ExtraOutputs = info.Gradients.Values.Distinct().ToList() });
        for (int step = 0; step < n; step++)
        {
            trainer.Step(batchAt!(trainer.Iteration), stateToHost: true);
            reference.Step(info.Gradients.ToDictionary(g => g.Key, g => trainer.ReadOutput(g.Value), StringComparer.Ordinal));
            var state = trainer.ReadState();
            foreach (var p in parameters)
            {
                Compare("graph", step, p, state[p].ToFloatArray());
                Compare("reference", step, p, reference.Parameters[p]);
            }
        }
        return errors;
    }

    /// <summary>
    /// The step model cut at its gradient values: each gradient becomes a graph input, and only the optimizer's nodes
    /// remain, with the parameters, slots and counter as inputs and their next values as outputs.
    /// </summary>
    public static ModelProto OptimizerOnly(ModelProto stepModel, StepModelInfo info)
    {
        var model = StepModelState.WithoutValues(stepModel, info);
        var graph = model.Graph;
        var gradients = info.Gradients.Values.ToHashSet(StringComparer.Ordinal);
        foreach (var node in graph.Node)
            for (int i = 0; i < node.Output.Count; i++)
                if (gradients.Contains(node.Output[i])) node.Output[i] = $"{node.Output[i]}/recorded_instead";
        var types = graph.Input.ToDictionary(i => i.Name, StringComparer.Ordinal);
        foreach (var (p, g) in info.Gradients)
            if (!types.ContainsKey(g)) graph.Input.Add(new ValueInfoProto { Name = g, Type = types[p].Type.Clone() });
        var outputs = info.State.Where(s => s.Kind != StateKind.Buffer).Select(s => s.Output).ToHashSet(StringComparer.Ordinal);
        foreach (var o in graph.Output.Where(o => !outputs.Contains(o.Name)).ToList()) graph.Output.Remove(o);
        GraphPasses.RemoveDeadCode(graph);
        var read = graph.Node.SelectMany(n => n.Input.Concat(GraphPasses.OuterScopeInputs(n))).Concat(graph.Output.Select(o => o.Name)).ToHashSet(StringComparer.Ordinal);
        foreach (var input in graph.Input.Where(i => !read.Contains(i.Name) && !gradients.Contains(i.Name)).ToList()) graph.Input.Remove(input);
        return model;
    }

    private static OrtValue ToOrt(TensorProto t) => (DataType)t.DataType is DataType.Float or DataType.Int64
        ? OrtValues.FromTensor(t)
        : throw new OnnxAdadeltaException($"State '{t.Name}' is {(DataType)t.DataType}; verify --against runs float32 models.");

    private static TensorProto FromOrt(string name, OrtValue v)
    {
        var shape = v.GetTensorTypeAndShape().Shape;
        return v.GetTensorTypeAndShape().ElementDataType == Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Int64
            ? Tensors.Create(name, v.GetTensorDataAsSpan<long>().ToArray(), shape)
            : Tensors.Create(name, v.GetTensorDataAsSpan<float>().ToArray(), shape);
    }
}
