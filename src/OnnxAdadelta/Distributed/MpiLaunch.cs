using System.Globalization;

namespace OnnxAdadelta.Distributed;

/// <summary>What the launcher (<c>mpirun</c>, <c>mpiexec</c>, <c>srun</c>) told this process through its environment.</summary>
/// <param name="Rank">This process's rank.</param>
/// <param name="Size">The number of processes launched.</param>
/// <param name="Variable">The variable the size was read from.</param>
public sealed record MpiLaunch(int Rank, int Size, string Variable)
{
    private static readonly (string Size, string Rank)[] Variables =
    [
        ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"), // Open MPI's mpirun
        ("PMIX_SIZE", "PMIX_RANK"),                       // PMIx launchers
        ("PMI_SIZE", "PMI_RANK"),                         // Hydra (MPICH), Slurm's PMI
    ];

    /// <summary>The launch described by <paramref name="environment"/> (the process's own by default), or null outside a launcher.</summary>
    /// <exception cref="OnnxAdadeltaException">A launcher variable holds something other than a count.</exception>
    public static MpiLaunch? Detect(Func<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        foreach (var (sizeName, rankName) in Variables)
        {
            if (environment(sizeName) is not { } sizeText) continue;
            if (!int.TryParse(sizeText, NumberStyles.None, CultureInfo.InvariantCulture, out var size) || size < 1)
                throw new OnnxAdadeltaException($"Environment variable {sizeName}='{sizeText}': expected a process count of at least 1.");
            var rankText = environment(rankName) ?? "0";
            if (!int.TryParse(rankText, NumberStyles.None, CultureInfo.InvariantCulture, out var rank) || rank >= size)
                throw new OnnxAdadeltaException($"Environment variable {rankName}='{rankText}': expected a rank from 0 to {size - 1}.");
            return new MpiLaunch(rank, size, sizeName);
        }
        return null;
    }
}
