using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using OnnxAdadelta.Onnx;
using Spectre.Console;

namespace OnnxAdadelta.Cli;

/// <summary>The <c>onnx-adadelta</c> command line: parses, calls the library, prints.</summary>
public static class CliApp
{
    /// <summary>The program's name, as messages and help print it.</summary>
    public const string Name = "onnx-adadelta";

    /// <summary><c>--allow-external-links</c>, on every command: external data may be read through links out of the model's folder.</summary>
    public static readonly Option<bool> AllowExternalLinks = new("--allow-external-links")
    {
        Description = "Read a model's external data through symbolic links that lead out of its folder (a Hugging Face cache's blobs/).",
        Recursive = true,
    };

    /// <summary>How the commands load models, from the global flags.</summary>
    public static LoadOptions LoadOptionsOf(ParseResult r) =>
        r.GetValue(AllowExternalLinks) ? new LoadOptions { AllowExternalDataLinks = true } : LoadOptions.Default;

    /// <summary>Runs the command line; returns the exit code. Output goes to the given writers (the console by default).</summary>
    public static int Run(string[] args, TextWriter? output = null, TextWriter? error = null)
    {
        output ??= Console.Out;
        error ??= Console.Error;
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(output),
            Interactive = ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected ? InteractionSupport.Yes : InteractionSupport.No,
            Ansi = ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected ? AnsiSupport.Detect : AnsiSupport.No,
        });
        var io = new CliIO(console, output, error);
        var root = new RootCommand("onnx-adadelta: train ONNX training graphs with the Adadelta optimizer (tf.keras semantics) on ONNX Runtime.")
        {
            BuildTrainingCommand.Create(io),
            ImportOrtCommand.Create(io),
            RewriteCommand.Create(io),
            TrainCommand.Create(io),
            VerifyCommand.Create(io),
            ExportCommand.Create(io),
            EvaluateCommand.Create(io),
            InspectCommand.Create(io),
            GradCheckCommand.Create(io),
            PlotCommand.Create(io),
        };
        root.Options.Add(AllowExternalLinks);
        Action<string> warn = notice => error.WriteLine($"onnx-adadelta: warning: {notice}");
        AtomicFile.StaleTemporaryRemoved += warn;
        try
        {
            HelpNames.Apply(root);
            var helpOption = root.Options.OfType<HelpOption>().Single();
            helpOption.Action = new HelpWithExitCodes((HelpAction)helpOption.Action!);
            var parsed = root.Parse(args);
            if (parsed.Action is ParseErrorAction)
            {
                error.WriteLine($"{Name}: error: {UsageErrors.Describe(parsed)}");
                error.WriteLine(UsageErrors.SeeHelp(parsed));
                return ExitCodes.Usage;
            }
            if (parsed.Action is HelpWithExitCodes)
            {
                var help = new StringWriter();
                int code = parsed.Invoke(new InvocationConfiguration { Output = help, Error = error });
                output.Write(HelpWithExitCodes.Tidy(help.ToString()));
                return code;
            }
            // train handles SIGINT and SIGTERM itself (a checkpoint, then exit 130 or 143); other verbs end at once.
            return parsed.Invoke(new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null });
        }
        finally { AtomicFile.StaleTemporaryRemoved -= warn; }
    }
}

/// <summary>Where a command prints, and the one place that turns library errors into a message and an exit code.</summary>
/// <param name="Console">Rich output (tables, progress).</param>
/// <param name="Out">Plain standard output.</param>
/// <param name="Error">Standard error.</param>
public sealed record CliIO(IAnsiConsole Console, TextWriter Out, TextWriter Error)
{
    /// <summary>
    /// Runs a command body: bad input (a model, data or argument) prints one line on stderr and exits
    /// <see cref="ExitCodes.BadInput"/>; a cancelled run (Ctrl+C) exits <see cref="ExitCodes.Interrupted"/>.
    /// </summary>
    /// <param name="body">The command.</param>
    /// <param name="prefix">Put before the message (a distributed job names the rank).</param>
    public int Guard(Func<int> body, string prefix = "")
    {
        try { return body(); }
        catch (Exception e) when (e is OnnxAdadeltaException or ArgumentException or IOException or UnauthorizedAccessException)
        {
            var message = e is ArgumentException { ParamName: { } param } ? e.Message.Replace($" (Parameter '{param}')", "") : e.Message;
            Error.WriteLine($"{CliApp.Name}: error: {prefix}{message.ReplaceLineEndings(" ")}");
            return ExitCodes.BadInput;
        }
        catch (OperationCanceledException)
        {
            Error.WriteLine($"{CliApp.Name}: interrupted");
            return ExitCodes.Interrupted;
        }
        catch (Microsoft.ML.OnnxRuntime.OnnxRuntimeException e)
        {
            // The library turns ONNX Runtime's errors into one-line messages where it runs a model; any other one still
            // gets a single line naming the node, never a stack trace.
            Error.WriteLine($"onnx-adadelta: error: {OnnxAdadelta.Runtime.OrtErrors.Message(e.Message, null, "the model")}");
            return 1;
        }
    }

    /// <summary>The same, printing nothing on standard output (the other ranks of a distributed job); errors still show.</summary>
    public CliIO Quiet() => new(AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(TextWriter.Null), Interactive = InteractionSupport.No, Ansi = AnsiSupport.No }), TextWriter.Null, Error);
}

/// <summary>The standard help, followed by the exit codes.</summary>
internal sealed class HelpWithExitCodes(HelpAction inner) : SynchronousCommandLineAction
{
    /// <inheritdoc/>
    public override int Invoke(ParseResult parseResult)
    {
        int code = inner.Invoke(parseResult);
        parseResult.InvocationConfiguration.Output.WriteLine(ExitCodes.Help);
        return code;
    }

    /// <summary>
    /// States each default once: drops System.CommandLine's <c>[default: X]</c> where the description already says
    /// "(default ...)", and writes enum and boolean defaults in lowercase, as they are typed.
    /// </summary>
    public static string Tidy(string help)
    {
        var lines = help.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            var line = lines[i];
            line = System.Text.RegularExpressions.Regex.Replace(line, @"\[default: ([A-Z][a-z]+)\]", m => $"[default: {m.Groups[1].Value.ToLowerInvariant()}]");
            if (line.Contains("(default", StringComparison.Ordinal))
                line = System.Text.RegularExpressions.Regex.Replace(line, @" \[default: [^\]]*\]", "");
            lines[i] = line;
        }
        return string.Join('\n', lines);
    }
}
