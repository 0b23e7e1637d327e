using System.IO.Compression;
using System.Reflection;
using System.Text.RegularExpressions;
using OnnxAdadelta.Onnx;

namespace OnnxAdadelta.Tests.Packaging;

/// <summary>
/// The README's install commands, run as written except where they would touch the machine or the repository: the pack
/// writes its packages to a temporary folder (and builds away from the repository's bin and obj), the tool goes to a
/// temporary <c>--tool-path</c> instead of <c>-g</c>, and the installed tool runs in a temporary folder that sees
/// <c>models/</c>. Slow (a Release pack of five platform packages): its own class.
/// </summary>
[Collection(SdkBuildCollection.Name)]
public class ToolPackageTests(BuildArtifacts artifacts)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(10);

    /// <summary>The platforms the CLI project packs, as its RuntimeIdentifiers list them.</summary>
    private static readonly string[] PackedRids = ["linux-x64", "linux-arm64", "osx-arm64", "win-x64", "win-arm64"];

    /// <summary>The commands of the README's TOOL-INSTALL block, split at whitespace.</summary>
    private static List<string[]> InstallCommands()
    {
        var readme = File.ReadAllText(Path.Combine(RepoPaths.Root, "README.md"));
        var block = Regex.Match(readme, "<!-- TOOL-INSTALL -->\n```sh\n(.*?)```\n<!-- /TOOL-INSTALL -->", RegexOptions.Singleline);
        Assert.True(block.Success, "README lacks the TOOL-INSTALL block");
        return block.Groups[1].Value.Split('\n')
            .Where(l => l.Trim().Length > 0 && !l.TrimStart().StartsWith('#'))
            .Select(l => Regex.Split(l.Trim(), @"\s+"))
            .ToList();
    }

    private static string ValueAfter(string[] args, string flag)
    {
        var i = Array.IndexOf(args, flag);
        Assert.True(i >= 0 && i + 1 < args.Length, $"'{string.Join(' ', args)}' has no {flag} value");
        return args[i + 1];
    }

    [PackagingFact]
    public void TheReadmeInstallsTheToolFromALocalPackThatRunsVersionAndTrains()
    {
        var commands = InstallCommands();
        Assert.Equal(4, commands.Count);
        var (pack, install, version, train) = (commands[0], commands[1], commands[2], commands[3]);
        Assert.Equal(new[] { "dotnet", "pack", "tools/OnnxAdadelta.Cli" }, pack[..3]);
        Assert.Equal(new[] { "dotnet", "tool", "install", "-g", "onnx-adadelta" }, install[..5]);
        Assert.Equal(new[] { "onnx-adadelta", "--version" }, version);
        Assert.Equal(new[] { "onnx-adadelta", "train" }, train[..2]);
        Assert.Equal(ValueAfter(pack, "-o"), ValueAfter(install, "--add-source"));

        // 1. The pack, into a temporary feed, building under the shared artifacts folder.
        var feed = artifacts.NewFolder("feed");
        var packArgs = pack[1..].ToArray();
        packArgs[Array.IndexOf(packArgs, "-o") + 1] = feed;
        var packed = DotnetProcess.Run("dotnet", [.. packArgs, "--artifacts-path", artifacts.Path, "--disable-build-servers"], RepoPaths.Root, Timeout);
        Assert.True(packed.ExitCode == 0, packed.ToString());

        // The package version is the CLI's version, the part of its informational version before the commit.
        var packageVersion = typeof(OnnxAdadelta.Cli.CliApp).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion.Split('+')[0];
        var pointer = Path.Combine(feed, $"onnx-adadelta.{packageVersion}.nupkg");
        Assert.Equal(
            new[] { Path.GetFileName(pointer) }.Concat(PackedRids.Select(r => $"onnx-adadelta.{r}.{packageVersion}.nupkg")).Order(StringComparer.Ordinal),
            Directory.GetFiles(feed).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        // The pointer package names the platform packages and holds no code; each platform package holds ONNX Runtime's
        // native library for its platform only.
        string packedCommit;
        using (var zip = ZipFile.OpenRead(pointer))
        {
            Assert.DoesNotContain(zip.Entries, e => e.Name.EndsWith(".dll", StringComparison.Ordinal));
            var nuspec = new StreamReader(zip.Entries.Single(e => e.Name == "onnx-adadelta.nuspec").Open()).ReadToEnd();
            packedCommit = Regex.Match(nuspec, "<repository [^>]*commit=\"([0-9a-f]{40})\"").Groups[1].Value;
            var settings = new StreamReader(zip.Entries.Single(e => e.Name == "DotnetToolSettings.xml").Open()).ReadToEnd();
            foreach (var rid in PackedRids)
                Assert.Contains($"RuntimeIdentifier=\"{rid}\" Id=\"onnx-adadelta.{rid}\"", settings);
        }
        foreach (var rid in PackedRids)
        {
            using var zip = ZipFile.OpenRead(Path.Combine(feed, $"onnx-adadelta.{rid}.{packageVersion}.nupkg"));
            var natives = zip.Entries.Where(e => e.Name is "onnxruntime.dll" or "libonnxruntime.so" or "libonnxruntime.dylib").ToList();
            Assert.True(natives.Count == 1, $"{rid}: {string.Join(", ", natives.Select(e => e.FullName))}");
            Assert.StartsWith($"tools/net10.0/{rid}/", natives[0].FullName);
            Assert.Contains(zip.Entries, e => e.FullName == $"tools/net10.0/{rid}/onnx-adadelta.dll");
        }

        // 2. The install, into a temporary tool path instead of -g.
        var toolPath = artifacts.NewFolder("tools");
        var installArgs = install[1..].ToArray();
        installArgs[Array.IndexOf(installArgs, "-g")] = "--tool-path";
        installArgs = [.. installArgs[..3], toolPath, .. installArgs[3..]];
        installArgs[Array.IndexOf(installArgs, "--add-source") + 1] = feed;
        var work = artifacts.NewFolder("work");
        var installed = DotnetProcess.Run("dotnet", installArgs, work, Timeout);
        Assert.True(installed.ExitCode == 0, installed.ToString());
        // The pointer and one platform package were installed, not the others.
        var store = Path.Combine(toolPath, ".store", "onnx-adadelta", packageVersion);
        var installedPackages = Directory.GetDirectories(store).Select(d => Path.GetFileName(d)!).Order(StringComparer.Ordinal).ToList();
        Assert.True(installedPackages.Count == 2 && installedPackages[0] == "onnx-adadelta" && PackedRids.Any(r => installedPackages[1] == $"onnx-adadelta.{r}"),
            string.Join(", ", installedPackages));

        // 3. --version: the package's version and the commit it was packed from (Source Link; none outside a git clone).
        var tool = Path.Combine(toolPath, OperatingSystem.IsWindows() ? "onnx-adadelta.exe" : "onnx-adadelta");
        var printed = DotnetProcess.Run(tool, version[1..], work, Timeout);
        Assert.True(printed.ExitCode == 0, printed.ToString());
        Assert.Equal(packedCommit.Length > 0 ? $"{packageVersion}+{packedCommit}" : packageVersion, printed.Out.Trim());

        // 4. A short training with the installed tool, on the shipped sample.
        Directory.CreateSymbolicLink(Path.Combine(work, "models"), RepoPaths.Models);
        var trained = DotnetProcess.Run(tool, train[1..], work, Timeout);
        Assert.True(trained.ExitCode == 0, trained.ToString());
        var checkpoint = ModelIO.Load(Path.Combine(work, ValueAfter(train, "-o")));
        Assert.Equal(long.Parse(ValueAfter(train, "--steps")), TestData.ValuesByName(checkpoint)["Adadelta/iterations"].ToInt64Array()[0]);
    }
}
