using System.CommandLine;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Reference;
using OnnxAdadelta.Training;
using Spectre.Console;
using OnnxAdadelta.Runtime;

namespace OnnxAdadelta.Cli;

/// <summary>
/// <c>verify STEP.onnx --data DATA.npz --steps N [--batch-size B] [--max-ulp K]</c>: ORT against the C# reference;
/// <c>verify STEP.onnx --against TRAJECTORY.npz [--data DATA.npz] [--steps N] [--max-ulp K] [--rtol R]</c>: ORT and
/// the reference against a run recorded by another framework.
/// </summary>
public static class VerifyCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create(CliIO io)
    {
        var input = new Argument<string>("STEP.onnx") { Description = "A training-step model or checkpoint." };
        var data = new Option<string?>("--data") { Description = "The data (an .npz, a .csv with a header row, an .npy, or a folder of NAME.npy files), one array per data input; needed unless --against has grads/ arrays." };
        var steps = new Option<int?>("--steps") { Description = "Steps to compare (needed without --against; with it, default all recorded)." };
        var against = new Option<string?>("--against") { Description = "A trajectory .npz recorded elsewhere (initial/P, params/P, optional grads/P per parameter): compare every step with it." };
        var maxUlp = new Option<long>("--max-ulp") { Description = "Largest ULP distance allowed (default 0: bit-identical).", DefaultValueFactory = _ => 0 };
        var rtol = new Option<double?>("--rtol") { Description = "With --against: a step is over the tolerance only when it is also past this relative error." };
        var device = new Option<Device>("--device") { Description = "cpu or cuda.", DefaultValueFactory = _ => Device.Cpu };
        var update = new Option<UpdateMode>("--update") { Description = "graph (the model's standard ops, default) or fused (the ai.onnxadadelta.AdadeltaUpdate op the trainer swaps in).", DefaultValueFactory = _ => UpdateMode.Graph };
        var common = new DataFlags();
        var json = JsonOutput.Option();
        var command = new Command("verify", "Run ONNX Runtime and the C# reference Adadelta on the same gradients, or compare both with a trajectory recorded by another framework (--against); report abs, rel and ULP error; exit 1 past the tolerance.")
            { input, data, steps, against, maxUlp, rtol, device, update, json };
        common.AddTo(command);
        command.SetAction(r => io.Guard(() =>
        {
            var model = ModelIO.Load(r.GetValue(input)!, CliApp.LoadOptionsOf(r));
            var limit = r.GetValue(maxUlp);
            if (r.GetValue(against) is { } trajectoryPath) return Against(io, r, model, trajectoryPath, r.GetValue(data), r.GetValue(steps), common, limit, r.GetValue(rtol));
            var dataPath = r.GetValue(data) ?? throw new ArgumentException("--data is required (without --against).");
            var stepCount = r.GetValue(steps) ?? throw new ArgumentException("--steps is required (without --against).");
            var dataset = Dataset.Open(dataPath, TrainingRun.InputSpecs(model));
            var run = common.RunOptions(r, stepCount);
            var plan = dataset.Plan(run.BatchSize, run.Shuffle, run.Seed);
            var inputs = TrainingRun.InputSpecs(model).Select(s => s.Name).ToList();
            var errors = NumericsCheck.Run(model, run.Steps, i => TrainingRun.BatchAt(dataset, plan, inputs, i), r.GetValue(device), update: r.GetValue(update));

            var worst = errors.Count == 0 ? 0 : errors.Max(e => e.MaxUlp);
            if (r.GetValue(json))
            {
                JsonOutput.Write(io.Out, w =>
                {
                    w.WriteNumber("steps", run.Steps);
                    w.WriteString("device", r.GetValue(device).ToString().ToLowerInvariant());
                    w.WriteNumber("max_ulp", worst);
                    w.WriteNumber("limit", limit);
                    w.WriteBoolean("pass", worst <= limit);
                    w.WriteStartArray("tensors");
                    foreach (var e in errors)
                    {
                        w.WriteStartObject();
                        w.WriteString("name", e.Name);
                        w.Number("max_abs", e.MaxAbs);
                        w.Number("max_rel", e.MaxRel);
                        w.WriteNumber("max_ulp", e.MaxUlp);
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                });
                return worst <= limit ? ExitCodes.Ok : ExitCodes.BadInput;
            }
            var table = new Table().AddColumns("tensor", "max abs", "max rel", "max ULP", "");
            foreach (var e in errors)
                table.AddRow(Markup.Escape(e.Name), e.MaxAbs.ToString("G3"), e.MaxRel.ToString("G3"), e.MaxUlp.ToString(), e.MaxUlp <= limit ? "ok" : "[red]over[/]");
            io.Console.Write(table);
            io.Out.WriteLine($"{run.Steps} steps on {r.GetValue(device).ToString().ToLowerInvariant()}: max ULP {worst} (limit {limit}) -> {(worst <= limit ? "pass" : "FAIL")}");
            return worst <= limit ? 0 : 1;
        }));
        return command;
    }

    private static int Against(CliIO io, ParseResult r, global::OnnxAdadelta.Onnx.Proto.ModelProto model, string path, string? dataPath, int? steps, DataFlags common, long maxUlp, double? rtol)
    {
        var trajectory = Trajectory.Read(path);
        Func<long, IReadOnlyDictionary<string, (byte[] Data, long[] Shape)>>? batchAt = null;
        if (trajectory.Gradients is null)
        {
            var file = dataPath ?? throw new ArgumentException($"--against {Path.GetFileName(path)} has no grads/ arrays: give --data so the step model computes the gradients.");
            var dataset = Dataset.Open(file, TrainingRun.InputSpecs(model));
            var run = common.RunOptions(r, steps ?? trajectory.Steps);
            var plan = dataset.Plan(run.BatchSize, run.Shuffle, run.Seed);
            var inputs = TrainingRun.InputSpecs(model).Select(s => s.Name).ToList();
            batchAt = i => TrainingRun.BatchAt(dataset, plan, inputs, i);
        }
        var errors = TrajectoryCheck.Run(model, trajectory, batchAt, steps);
        bool Over(StepError e) => e.MaxUlp > maxUlp && (rtol is not { } t || e.MaxRel > t);
        var table = new Table().AddColumns("source", "parameter", "max abs", "max rel", "max ULP", "first step over");
        foreach (var g in errors.GroupBy(e => (e.Source, e.Parameter)))
        {
            var first = g.FirstOrDefault(Over);
            table.AddRow(g.Key.Source, Markup.Escape(g.Key.Parameter), g.Max(e => e.MaxAbs).ToString("G3"), g.Max(e => e.MaxRel).ToString("G3"),
                g.Max(e => e.MaxUlp).ToString(), first is null ? "none" : $"[red]{first.Step}[/]");
        }
        io.Console.Write(table);
        var over = errors.Where(Over).ToList();
        var n = errors.Count == 0 ? 0 : errors.Max(e => e.Step);
        io.Out.WriteLine($"{n} steps against {Path.GetFileName(path)} ({(trajectory.Gradients is null ? "gradients from the data" : "recorded gradients")}): " +
            $"max ULP {(errors.Count == 0 ? 0 : errors.Max(e => e.MaxUlp))} (limit {maxUlp}{(rtol is { } rt ? $", rtol {rt:G3}" : "")}) -> " +
            (over.Count == 0 ? "pass" : $"FAIL (first at step {over.Min(e => e.Step)})"));
        return over.Count == 0 ? 0 : 1;
    }
}
