using System.CommandLine;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Reference;
using OnnxAdadelta.Training;
using Spectre.Console;
using OnnxAdadelta.Runtime;

namespace OnnxAdadelta.Cli;

/// <summary><c>verify STEP.onnx --data DATA.npz --steps N [--batch-size B] [--max-ulp K]</c>: ORT against the C# reference.</summary>
public static class VerifyCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create(CliIO io)
    {
        var input = new Argument<string>("STEP.onnx") { Description = "A training-step model or checkpoint." };
        var data = new Option<string>("--data") { HelpName = "FILE.npz", Description = "An .npz file with one array per data input.", Required = true };
        var steps = new Option<int>("--steps") { Description = "Steps to compare.", Required = true };
        var maxUlp = new Option<long>("--max-ulp") { Description = "Largest ULP distance allowed (default 0: bit-identical).", DefaultValueFactory = _ => 0 };
        var device = new Option<Device>("--device") { Description = "cpu or cuda.", DefaultValueFactory = _ => Device.Cpu };
        var common = new DataFlags();
        var json = JsonOutput.Option();
        var command = new Command("verify", "Run ONNX Runtime and the C# reference Adadelta on the same gradients; report abs, rel and ULP error; exit 1 past --max-ulp.") { input, data, steps, maxUlp, device, json };
        common.AddTo(command);
        command.SetAction(r => io.Guard(() =>
        {
            var model = ModelIO.Load(r.GetValue(input)!);
            var dataset = Dataset.Open(r.GetValue(data)!, TrainingRun.InputSpecs(model));
            var run = common.RunOptions(r, r.GetValue(steps));
            var plan = dataset.Plan(run.BatchSize, run.Shuffle, run.Seed);
            var inputs = TrainingRun.InputSpecs(model).Select(s => s.Name).ToList();
            var errors = NumericsCheck.Run(model, run.Steps, i => TrainingRun.BatchAt(dataset, plan, inputs, i), r.GetValue(device));

            var limit = r.GetValue(maxUlp);
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
}
