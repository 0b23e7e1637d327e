using OnnxAdadelta.Tests.Cli;

namespace OnnxAdadelta.Tests.Frameworks;

/// <summary>The commands of the README's "Validating across frameworks" section, run as written (about 5 s).</summary>
public class ReadmeFrameworksTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("onnx-adadelta-readme-fw-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static IReadOnlyList<string> Commands()
    {
        var readme = File.ReadAllText(Path.Combine(RepoPaths.Root, "README.md"));
        var section = readme[readme.IndexOf("## Validating across frameworks", StringComparison.Ordinal)..];
        var block = section[(section.IndexOf("```sh\n", StringComparison.Ordinal) + 6)..];
        return block[..block.IndexOf("```", StringComparison.Ordinal)].Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }

    // Files the commands write go to the temporary folder; repository paths stay as they are.
    private string[] Paths(IEnumerable<string> args) => args.Select(a =>
        a.StartsWith("models/", StringComparison.Ordinal) ? Path.Combine(RepoPaths.Root, a)
        : a.EndsWith(".npz", StringComparison.Ordinal) || a.EndsWith(".onnx", StringComparison.Ordinal) ? Path.Combine(_dir, a)
        : a).ToArray();

    [Fact]
    public void TheSectionHasTheCommands()
    {
        var commands = Commands();
        Assert.Equal(5, commands.Count);
        Assert.All(commands, c => Assert.True(c.StartsWith("node tests/node/") || c.StartsWith("onnx-adadelta "), c));
    }

    [NodeFact]
    public void TheCommandsRunAndSayWhatTheReadmeSays()
    {
        var said = new List<string>();
        foreach (var command in Commands())
        {
            var words = command.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (words[0] == "node")
            {
                said.Add(NodeRunner.Run(Path.GetFileName(words[1]), Paths(words[2..])));
                continue;
            }
            var r = CliRunner.Run(Paths(words[1..]));
            Assert.True(r.ExitCode == 0, $"{command}: {r.Err}");
            said.Add(r.Out);
        }
        Assert.Contains("100 steps against tfjs.npz (recorded gradients): max ULP 0 (limit 0) -> pass", said[2]);
        Assert.Contains("100 steps of 32 rows, loss 2.372910499572754 -> 1.6895698308944702", said[4]);
    }
}
