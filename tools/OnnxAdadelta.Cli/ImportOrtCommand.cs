using System.CommandLine;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Import;
using OnnxAdadelta.Onnx;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Graphs;

namespace OnnxAdadelta.Cli;

/// <summary>
/// <c>import-ort TRAINING_MODEL.onnx [--checkpoint PATH] [--params MODEL.onnx] -o TRAINING.onnx</c>: turns the training
/// model of ONNX Runtime's on-device training artifacts into a training graph for <c>rewrite</c> and <c>train</c>.
/// </summary>
public static class ImportOrtCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create(CliIO io)
    {
        var input = new Argument<string>("TRAINING_MODEL.onnx") { Description = "The training model that onnxruntime-training's generate_artifacts wrote." };
        var checkpoint = new Option<string?>("--checkpoint") { Description = "The ORT checkpoint generate_artifacts wrote beside it: the parameter values." };
        var parameters = new Option<string?>("--params") { Description = "An ONNX model whose initializers supply parameter values (over the checkpoint's)." };
        var output = new Option<string>("-o", "--out") { Description = "Where to write the training graph.", Required = true };
        var command = new Command("import-ort", "Turn an ONNX Runtime on-device training model (and its checkpoint) into a training graph.")
        {
            input, checkpoint, parameters, output,
        };
        command.SetAction(r => io.Guard(() =>
        {
            using var outputLock = DestinationLock.Acquire(r.GetValue(output)!, "training graph (-o)");
            var path = r.GetValue(input)!;
            var training = OrtArtifactImport.Import(ModelIO.Load(path, CliApp.LoadOptionsOf(r)), Options(path, r.GetValue(checkpoint), r.GetValue(parameters), CliApp.LoadOptionsOf(r)));
            var found = TrainingGraph.Analyze(training);
            ModelIO.Save(training, r.GetValue(output)!);
            io.Out.WriteLine($"wrote {r.GetValue(output)}: loss '{found.Loss}', {found.Parameters.Count} parameters " +
                $"({found.Parameters.Sum(p => Tensors.ElementCount(p.Value.Dims))} values), data inputs {string.Join(", ", found.DataInputs)}");
            return 0;
        }));
        return command;
    }

    /// <summary>The import options for a training model at <paramref name="path"/>.</summary>
    internal static OrtImportOptions Options(string path, string? checkpoint, string? parameters, LoadOptions load) =>
        Options(path, checkpoint, parameters is null ? null : ModelIO.Load(parameters, load));

    /// <summary>The import options for a training model at <paramref name="path"/>, with parameter values already loaded.</summary>
    internal static OrtImportOptions Options(string path, string? checkpoint, ModelProto? parameters) =>
        new() { Source = path, CheckpointPath = checkpoint, ParameterValues = parameters };
}
