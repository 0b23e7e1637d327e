using System.CommandLine;
using OnnxAdadelta.Import;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Optimizers;
using Spectre.Console;

namespace OnnxAdadelta.Cli;

/// <summary><c>inspect MODEL.onnx</c>: what kind of model it is, what to run next, its parameters, state and opsets.</summary>
public static class InspectCommand
{
    /// <summary>The widest table <c>inspect</c> prints, in columns.</summary>
    public const int Width = 80;

    /// <summary>Builds the command.</summary>
    public static Command Create(CliIO io)
    {
        var input = new Argument<string>("MODEL.onnx") { Description = "Any ONNX model: an inference model, a training graph, ONNX Runtime training artifacts, a step model or a checkpoint." };
        var json = JsonOutput.Option();
        var command = new Command("inspect", "Say what kind of model a file is and the command to run next; list its parameters, gradients, optimizer state and opsets.") { input, json };
        command.SetAction(r => io.Guard(() =>
        {
            var path = r.GetValue(input)!;
            var model = ModelIO.Load(path, CliApp.LoadOptionsOf(r));
            var summary = ModelSummary.Of(model, path);
            var (kind, next) = Classify(model, summary, path);
            var (count, values) = Parameters(model, summary);
            if (r.GetValue(json))
            {
                JsonOutput.Write(io.Out, w =>
                {
                    w.WriteString("kind", kind);
                    w.WriteNumber("ir_version", summary.IrVersion);
                    w.Strings("opsets", summary.Opsets);
                    w.WriteNumber("parameters", count);
                    w.WriteNumber("parameter_values", values);
                    w.Strings("notes", summary.Notes.Where(n => !n.StartsWith("not a training graph", StringComparison.Ordinal)));
                    w.WriteStartArray("tensors");
                    foreach (var row in summary.Rows)
                    {
                        w.WriteStartObject();
                        w.WriteString("name", row.Name);
                        w.WriteString("role", row.Role);
                        w.WriteString("type", row.Type);
                        w.WriteString("detail", row.Detail);
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                    w.Strings("next", next);
                });
                return ExitCodes.Ok;
            }
            foreach (var line in Wrap($"{kind} (IR {summary.IrVersion}; opsets {string.Join(", ", summary.Opsets)})", Width)) io.Out.WriteLine(line);
            io.Out.WriteLine($"{count} parameters, {values:N0} values");
            foreach (var note in summary.Notes.Where(n => !n.StartsWith("not a training graph", StringComparison.Ordinal)))
                foreach (var line in Wrap(note, Width)) io.Out.WriteLine(line);
            var table = new Table().AddColumns("tensor", "role", "type");
            foreach (var row in summary.Rows) table.AddRow(Markup.Escape(Shorten(row.Name, 34)), Markup.Escape(row.Role), Markup.Escape(Shorten(row.Type, 22)));
            io.Console.Write(table);
            for (int i = 0; i < next.Length; i++) io.Out.WriteLine($"{(i == 0 ? "next" : "  or")}: {next[i]}");
            return ExitCodes.Ok;
        }));
        return command;
    }

    /// <summary>The model's kind in words and the exact commands to run next on it (the usual one first).</summary>
    public static (string Kind, string[] Next) Classify(ModelProto model, ModelSummary summary, string path)
    {
        var file = Quote(path);
        if (StepModelInfo.TryRead(model) is { } info)
        {
            var iterations = StepModelState.Values(model, info)[info.Iterations.Input].ToInt64Array()[0];
            return iterations > 0
                ? ($"training-step model: a checkpoint after {iterations} steps",
                    [$"{CliApp.Name} export {file} -o model.onnx", $"{CliApp.Name} train {file} --data DATA.npz --steps N -o next.ckpt.onnx"])
                : ("training-step model (not trained yet)", [$"{CliApp.Name} train {file} --data DATA.npz --steps N -o ckpt.onnx"]);
        }
        if (OrtArtifactImport.IsArtifact(model))
            return ("ONNX Runtime training model (generate_artifacts)", [$"{CliApp.Name} import-ort {file} --checkpoint CHECKPOINT -o training.onnx"]);
        if (summary.Kind == "training graph")
            return ("training graph", [$"{CliApp.Name} rewrite {file} -o step.onnx", $"{CliApp.Name} train {file} --data DATA.npz --steps N -o ckpt.onnx"]);
        var output = model.Graph.Output.Count > 0 ? model.Graph.Output[0].Name : "NAME";
        return ("inference model", [$"{CliApp.Name} build-training {file} --loss cross-entropy --output {Quote(output)} -o training.onnx"]);
    }

    /// <summary>The trainable parameters (a step model's, a training graph's, or an inference model's float initializers) and their element count.</summary>
    private static (int Count, long Values) Parameters(ModelProto model, ModelSummary summary)
    {
        var initializers = StepModelInfo.TryRead(model) is { } info ? StepModelState.Values(model, info) : model.Graph.Initializer.ToDictionary(t => t.Name, t => t);
        var names = summary.Rows.Any(r => r.Role == "parameter")
            ? summary.Rows.Where(r => r.Role == "parameter").Select(r => r.Name).ToList()
            : model.Graph.Initializer.Where(t => t.DataType is (int)TensorProto.Types.DataType.Float or (int)TensorProto.Types.DataType.Float16
                or (int)TensorProto.Types.DataType.Bfloat16 or (int)TensorProto.Types.DataType.Double).Select(t => t.Name).ToList();
        long values = names.Sum(n => initializers.TryGetValue(n, out var t) ? t.Dims.Aggregate(1L, (a, d) => a * d) : 0);
        return (names.Count, values);
    }

    /// <summary>Keeps the head and tail of a long name with an ellipsis between, so a table fits <see cref="Width"/> columns.</summary>
    public static string Shorten(string text, int max)
    {
        if (text.Length <= max) return text;
        int tail = (max - 1) / 2;
        return text[..(max - 1 - tail)] + "…" + text[^tail..];
    }

    /// <summary>Breaks a long line at spaces into lines of at most <paramref name="width"/> columns (continuations indented).</summary>
    public static IEnumerable<string> Wrap(string text, int width)
    {
        var line = "";
        foreach (var word in text.Split(' '))
        {
            if (line.Length > 0 && line.Length + 1 + word.Length > width)
            {
                yield return line;
                line = "  " + word;
            }
            else line = line.Length == 0 ? word : line + " " + word;
        }
        if (line.Length > 0) yield return line;
    }

    private static string Quote(string s) => s.Length > 0 && s.All(c => char.IsLetterOrDigit(c) || c is '/' or '.' or '-' or '_' or ':') ? s : $"'{s}'";
}
