namespace OnnxAdadelta.Runtime;

/// <summary>The launch of an elementwise grid-stride kernel over one tensor.</summary>
/// <param name="Grid">Blocks in the grid (x dimension); 0 when there is nothing to do (no launch).</param>
/// <param name="Block">Threads per block.</param>
/// <param name="ElementsPerThread">The most elements one thread handles (the grid-stride loop's trip count).</param>
public readonly record struct CudaLaunchPlan(uint Grid, uint Block, long ElementsPerThread)
{
    /// <summary>Threads in the grid.</summary>
    public long Threads => (long)Grid * Block;
}

/// <summary>
/// Grid and block sizes of the fused update's CUDA kernel: one thread per element up to a grid cap, beyond which each
/// thread loops with a stride of the whole grid. The kernel indexes elements with 64 bits, so a tensor of more than
/// 2^31 elements needs no other plan.
/// </summary>
public static class CudaLaunch
{
    /// <summary>Threads per block: 256, a multiple of the warp size that lets several blocks share an SM.</summary>
    public const int DefaultBlock = 256;

    /// <summary>
    /// The most blocks launched (65,535: within every GPU's grid limits, and 16.7M threads, many times what any GPU
    /// keeps resident, so a memory-bound loop is not short of parallelism); larger tensors loop.
    /// </summary>
    public const int DefaultMaxGrid = 65_535;

    /// <summary>The plan for <paramref name="elements"/> elements.</summary>
    /// <param name="elements">Elements of the tensor (0 or more).</param>
    /// <param name="block">Threads per block: a multiple of 32 from 32 to 1024.</param>
    /// <param name="maxGrid">The most blocks: 1 to 2^31-1 (the x-dimension limit since compute capability 3.0).</param>
    /// <exception cref="ArgumentOutOfRangeException">An argument is out of its range.</exception>
    public static CudaLaunchPlan Plan(long elements, int block = DefaultBlock, int maxGrid = DefaultMaxGrid)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(elements);
        if (block < 32 || block > 1024 || block % 32 != 0)
            throw new ArgumentOutOfRangeException(nameof(block), block, "Threads per block must be a multiple of 32 from 32 to 1024.");
        ArgumentOutOfRangeException.ThrowIfLessThan(maxGrid, 1);
        if (elements == 0) return new CudaLaunchPlan(0, (uint)block, 0);
        long blocks = (elements - 1) / block + 1;
        uint grid = (uint)Math.Min(blocks, maxGrid);
        long threads = (long)grid * block;
        return new CudaLaunchPlan(grid, (uint)block, (elements - 1) / threads + 1);
    }
}
