using OnnxAdadelta.Runtime;

namespace OnnxAdadelta.Tests.Runtime;

public class CudaLaunchTests
{
    [Fact]
    public void NoElementsMeansNoLaunch()
    {
        var plan = CudaLaunch.Plan(0);
        Assert.Equal(0u, plan.Grid);
        Assert.Equal(0, plan.ElementsPerThread);
    }

    [Theory]
    [InlineData(1L, 1u, 1L)]
    [InlineData(255L, 1u, 1L)]
    [InlineData(256L, 1u, 1L)]
    [InlineData(257L, 2u, 1L)]
    [InlineData(1_000_000L, 3907u, 1L)]
    [InlineData(65_535L * 256, 65_535u, 1L)]
    [InlineData(65_535L * 256 + 1, 65_535u, 2L)]
    [InlineData(16_777_216L, 65_535u, 2L)]
    public void OneThreadPerElementUpToTheGridCapThenTheThreadsLoop(long elements, uint grid, long perThread)
    {
        var plan = CudaLaunch.Plan(elements);
        Assert.Equal(new CudaLaunchPlan(grid, CudaLaunch.DefaultBlock, perThread), plan);
    }

    public static TheoryData<long> Sizes => new(
    [
        1, 31, 32, 33, 1023, 1024, 1025, 10_000, 1L << 24, (1L << 24) + 3,
        int.MaxValue - 1L, int.MaxValue, 1L << 31, (1L << 31) + 1, 3_000_000_000L, (1L << 32) + 7, 1L << 40, long.MaxValue / 2,
    ]);

    [Theory]
    [MemberData(nameof(Sizes))]
    public void EveryElementIsCoveredOnceAndNoThreadLoopsMoreThanNeeded(long elements)
    {
        foreach (var (block, maxGrid) in new[] { (256, CudaLaunch.DefaultMaxGrid), (32, 1), (1024, int.MaxValue), (128, 7) })
        {
            var plan = CudaLaunch.Plan(elements, block, maxGrid);
            Assert.Equal((uint)block, plan.Block);
            Assert.InRange(plan.Grid, 1u, (uint)maxGrid);
            // The grid-stride loop reaches index tid + k * threads for k < ElementsPerThread: all of 0..elements-1 ...
            Assert.True(plan.Threads * plan.ElementsPerThread >= elements, $"{elements} elements, {plan}");
            // ... with the last trip of some thread still inside the tensor (no trip wasted),
            Assert.True(plan.Threads * (plan.ElementsPerThread - 1) < elements, $"{elements} elements, {plan}");
            // ... and no block without an element in its first trip.
            Assert.True((long)(plan.Grid - 1) * block < elements, $"{elements} elements, {plan}");
            // The largest index plus the stride (the loop's last increment) fits in the kernel's 64-bit index.
            Assert.True(elements - 1 <= long.MaxValue - plan.Threads);
        }
    }

    [Fact]
    public void TensorsBeyondTwoToThe31ElementsNeedTheSixtyFourBitIndex()
    {
        long elements = 3_000_000_000L;
        var plan = CudaLaunch.Plan(elements);
        // The last element's byte offset as float32 overflows 32 bits: the kernel computes it with 64-bit shifts.
        Assert.True((elements - 1) * 4 > uint.MaxValue);
        Assert.Equal(CudaLaunch.DefaultMaxGrid, (int)plan.Grid);
        Assert.Equal(179, plan.ElementsPerThread);
    }

    [Theory]
    [InlineData(-1L, 256, 1)]
    [InlineData(10L, 0, 1)]
    [InlineData(10L, 100, 1)]
    [InlineData(10L, 2048, 1)]
    [InlineData(10L, 256, 0)]
    public void BadArgumentsAreRefusedWithTheValue(long elements, int block, int maxGrid)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => CudaLaunch.Plan(elements, block, maxGrid));
        Assert.NotNull(e.ActualValue);
    }
}
