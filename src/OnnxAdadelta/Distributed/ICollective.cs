using System.Diagnostics.CodeAnalysis;

namespace OnnxAdadelta.Distributed;

/// <summary>
/// The few collective operations data-parallel training needs, over the processes (ranks) of one job. Every rank
/// calls each operation in the same order; an operation returns when every rank has taken part.
/// </summary>
/// <remarks>Implementations: <see cref="MpiCollective"/> (Open MPI, host memory) and <see cref="LocalCollective"/> (one process).</remarks>
public interface ICollective : IDisposable
{
    /// <summary>This process's rank, from 0.</summary>
    int Rank { get; }

    /// <summary>The number of ranks.</summary>
    int Size { get; }

    /// <summary>Replaces <paramref name="values"/> on every rank by the element-wise float32 sum over all ranks.</summary>
    void AllReduceSum(Span<float> values);

    /// <summary>Copies <paramref name="bytes"/> of rank <paramref name="root"/> into <paramref name="bytes"/> of every other rank.</summary>
    void Broadcast(Span<byte> bytes, int root);

    /// <summary>The smallest and largest of <paramref name="value"/> over all ranks.</summary>
    (long Min, long Max) MinMax(long value);

    /// <summary>Returns when every rank has called it.</summary>
    void Barrier();

    /// <summary>Ends every rank of the job with <paramref name="exitCode"/>; does not return.</summary>
    [DoesNotReturn]
    void Abort(int exitCode);
}

/// <summary>A job of one rank: the collectives are no-ops. Lets the distributed code path run without MPI.</summary>
public sealed class LocalCollective : ICollective
{
    /// <inheritdoc/>
    public int Rank => 0;

    /// <inheritdoc/>
    public int Size => 1;

    /// <inheritdoc/>
    public void AllReduceSum(Span<float> values) { }

    /// <inheritdoc/>
    public void Broadcast(Span<byte> bytes, int root)
    {
        if (root != 0) throw new ArgumentOutOfRangeException(nameof(root), root, "A one-rank job has only rank 0.");
    }

    /// <inheritdoc/>
    public (long Min, long Max) MinMax(long value) => (value, value);

    /// <inheritdoc/>
    public void Barrier() { }

    /// <inheritdoc/>
    [DoesNotReturn]
    public void Abort(int exitCode) => Environment.Exit(exitCode);

    /// <inheritdoc/>
    public void Dispose() { }
}
