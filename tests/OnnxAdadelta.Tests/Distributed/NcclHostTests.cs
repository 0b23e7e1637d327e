using OnnxAdadelta.Distributed;

namespace OnnxAdadelta.Tests.Distributed;

/// <summary>The host side of the NCCL all-reduce against a recording fake: no GPU or NCCL needed.</summary>
public class NcclHostTests
{
    private sealed class FakeNccl : INcclApi
    {
        public List<string> Calls { get; } = [];
        public int FailAllReduceAt { get; init; } = -1;
        public NcclUniqueId ReceivedId;

        public int GetUniqueId(out NcclUniqueId id)
        {
            id = default;
            for (int i = 0; i < NcclUniqueId.Size; i++) id[i] = (byte)(i + 1);
            Calls.Add("GetUniqueId");
            return 0;
        }

        public int CommInitRank(out nint comm, int ranks, NcclUniqueId id, int rank)
        {
            ReceivedId = id;
            Calls.Add($"CommInitRank {ranks} {rank}");
            comm = 0x1234;
            return 0;
        }

        public int AllReduce(nint send, nint receive, nuint count, NcclDataType type, int op, nint comm, nint stream)
        {
            Calls.Add($"AllReduce {send - 0x10000} {receive - 0x10000} {count} {type} {op} {comm:x} {stream:x}");
            return Calls.Count(c => c.StartsWith("AllReduce", StringComparison.Ordinal)) - 1 == FailAllReduceAt ? 5 : 0;
        }

        public int CommDestroy(nint comm)
        {
            Calls.Add($"CommDestroy {comm:x}");
            return 0;
        }

        public string ErrorString(int result) => result == 5 ? "invalid usage" : "other";
    }

    // Rank 1 of 2: the id arrives by broadcast from rank 0.
    private sealed class SecondRank : ICollective
    {
        public int Rank => 1;
        public int Size => 2;
        public void AllReduceSum(Span<float> values) => throw new NotSupportedException();
        public void Broadcast(Span<byte> bytes, int root) { Assert.Equal(0, root); bytes.Fill(42); }
        public (long Min, long Max) MinMax(long value) => throw new NotSupportedException();
        public void Barrier() { }
        [System.Diagnostics.CodeAnalysis.DoesNotReturn]
        public void Abort(int exitCode) => throw new NotSupportedException();
        public void Dispose() { }
    }

    [Fact]
    public void RankZeroMakesTheIdAndEveryRankJoinsWithIt()
    {
        var zero = new FakeNccl();
        using (var comm = NcclAllReduce.Create(new LocalCollective(), zero))
            Assert.Equal((0, 1), (comm.Rank, comm.Ranks));
        Assert.Equal(["GetUniqueId", "CommInitRank 1 0", "CommDestroy 1234"], zero.Calls);
        Assert.Equal(128, zero.ReceivedId[127]);

        var one = new FakeNccl();
        using (NcclAllReduce.Create(new SecondRank(), one)) { }
        Assert.Equal(["CommInitRank 2 1", "CommDestroy 1234"], one.Calls);
        Assert.Equal(42, one.ReceivedId[0]);
    }

    [Fact]
    public void TheBufferIsSummedInPlaceBucketByBucketOnTheGivenStream()
    {
        var api = new FakeNccl();
        using var comm = NcclAllReduce.Create(new LocalCollective(), api);
        comm.SumInPlace(0x10000, 10, NcclDataType.Float32, 0xbeef, bucketElements: 4);
        comm.SumInPlace(0x10000, 3, NcclDataType.Float16, 0xbeef, bucketElements: 4);
        Assert.Equal(
        [
            "AllReduce 0 0 4 Float32 0 1234 beef",
            "AllReduce 16 16 4 Float32 0 1234 beef",
            "AllReduce 32 32 2 Float32 0 1234 beef",
            "AllReduce 0 0 3 Float16 0 1234 beef",
        ], api.Calls.Where(c => c.StartsWith("AllReduce", StringComparison.Ordinal)));
    }

    [Fact]
    public void AFailedCallNamesItselfTheRankAndNcclsReason()
    {
        var api = new FakeNccl { FailAllReduceAt = 1 };
        using var comm = NcclAllReduce.Create(new LocalCollective(), api);
        var e = Assert.Throws<OnnxAdadeltaException>(() => comm.SumInPlace(0x10000, 8, NcclDataType.Float32, 0, bucketElements: 4));
        Assert.Equal("ncclAllReduce failed on rank 0: invalid usage (ncclResult_t 5).", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => comm.SumInPlace(0x10000, 8, NcclDataType.Float32, 0, bucketElements: 0));
    }

    [Fact]
    public void WithoutNcclTheErrorSaysWhatToInstall()
    {
        // This machine has no NCCL (no GPU stack); where one is installed the library loads and this check is moot.
        if (NcclLibrary.LibraryNames.Any(n => System.Runtime.InteropServices.NativeLibrary.TryLoad(n, out _)))
            Assert.NotNull(new NcclLibrary());
        else
            Assert.Contains("needs NCCL", Assert.Throws<OnnxAdadeltaException>(() => new NcclLibrary()).Message);
    }
}
