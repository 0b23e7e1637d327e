using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace OnnxAdadelta.Distributed;

/// <summary>NCCL's element types (<c>ncclDataType_t</c> in nccl.h).</summary>
public enum NcclDataType
{
    /// <summary>ncclFloat16.</summary>
    Float16 = 6,

    /// <summary>ncclFloat32.</summary>
    Float32 = 7,

    /// <summary>ncclBfloat16.</summary>
    Bfloat16 = 9,
}

/// <summary>The 128 bytes of an <c>ncclUniqueId</c>, passed by value to <c>ncclCommInitRank</c>.</summary>
[InlineArray(NcclUniqueId.Size)]
public struct NcclUniqueId
{
    /// <summary>Bytes in an id (NCCL_UNIQUE_ID_BYTES).</summary>
    public const int Size = 128;

    private byte _first;
}

/// <summary>
/// The NCCL calls the GPU all-reduce needs. <see cref="NcclLibrary"/> binds them to <c>libnccl.so.2</c>; tests
/// substitute a recording fake, so the host-side logic runs without NCCL or a GPU. Each returns an
/// <c>ncclResult_t</c> (0 is success).
/// </summary>
public interface INcclApi
{
    /// <summary><c>ncclGetUniqueId</c>.</summary>
    int GetUniqueId(out NcclUniqueId id);

    /// <summary><c>ncclCommInitRank</c>.</summary>
    int CommInitRank(out nint comm, int ranks, NcclUniqueId id, int rank);

    /// <summary><c>ncclAllReduce</c> (device pointers, enqueued on <paramref name="stream"/>).</summary>
    int AllReduce(nint send, nint receive, nuint count, NcclDataType type, int op, nint comm, nint stream);

    /// <summary><c>ncclCommDestroy</c>.</summary>
    int CommDestroy(nint comm);

    /// <summary><c>ncclGetErrorString</c>.</summary>
    string ErrorString(int result);
}

/// <summary>
/// <see cref="INcclApi"/> bound to the NCCL of the user's CUDA installation (<c>libnccl.so.2</c>, found on the
/// loader's path, for example from the <c>nvidia-nccl-cu12</c> wheel or the <c>libnccl2</c> package), loaded only
/// when created.
/// </summary>
/// <remarks>Unverified on hardware in this release: no GPU or NCCL was available where it was written.</remarks>
public sealed unsafe class NcclLibrary : INcclApi
{
    /// <summary>The shared-library names tried, in order.</summary>
    public static readonly IReadOnlyList<string> LibraryNames = ["libnccl.so.2", "libnccl.so"];

    private readonly delegate* unmanaged<NcclUniqueId*, int> _getUniqueId;
    private readonly delegate* unmanaged<nint*, int, NcclUniqueId, int, int> _commInitRank;
    private readonly delegate* unmanaged<nint, nint, nuint, int, int, nint, nint, int> _allReduce;
    private readonly delegate* unmanaged<nint, int> _commDestroy;
    private readonly delegate* unmanaged<int, byte*> _errorString;

    /// <summary>Loads NCCL.</summary>
    /// <exception cref="OnnxAdadeltaException">No NCCL library could be loaded, or it lacks a function.</exception>
    public NcclLibrary()
    {
        nint library = 0;
        foreach (var name in LibraryNames)
            if (NativeLibrary.TryLoad(name, out library)) break;
        if (library == 0)
            throw new OnnxAdadeltaException($"Distributed CUDA training needs NCCL, and none of {string.Join(", ", LibraryNames)} could be loaded: install NCCL for your CUDA version and put it on LD_LIBRARY_PATH.");
        nint Export(string name) => NativeLibrary.TryGetExport(library, name, out var address) ? address
            : throw new OnnxAdadeltaException($"The NCCL library has no function '{name}'; NCCL 2 is needed.");
        _getUniqueId = (delegate* unmanaged<NcclUniqueId*, int>)Export("ncclGetUniqueId");
        _commInitRank = (delegate* unmanaged<nint*, int, NcclUniqueId, int, int>)Export("ncclCommInitRank");
        _allReduce = (delegate* unmanaged<nint, nint, nuint, int, int, nint, nint, int>)Export("ncclAllReduce");
        _commDestroy = (delegate* unmanaged<nint, int>)Export("ncclCommDestroy");
        _errorString = (delegate* unmanaged<int, byte*>)Export("ncclGetErrorString");
    }

    /// <inheritdoc/>
    public int GetUniqueId(out NcclUniqueId id)
    {
        NcclUniqueId value = default;
        int result = _getUniqueId(&value);
        id = value;
        return result;
    }

    /// <inheritdoc/>
    public int CommInitRank(out nint comm, int ranks, NcclUniqueId id, int rank)
    {
        nint handle = 0;
        int result = _commInitRank(&handle, ranks, id, rank);
        comm = handle;
        return result;
    }

    /// <inheritdoc/>
    public int AllReduce(nint send, nint receive, nuint count, NcclDataType type, int op, nint comm, nint stream) =>
        _allReduce(send, receive, count, (int)type, op, comm, stream);

    /// <inheritdoc/>
    public int CommDestroy(nint comm) => _commDestroy(comm);

    /// <inheritdoc/>
    public string ErrorString(int result) => Marshal.PtrToStringUTF8((nint)_errorString(result)) ?? "no description";
}

/// <summary>
/// The GPU counterpart of the gradient all-reduce: an NCCL communicator over the ranks of an MPI job, summing a flat
/// device buffer in place, in buckets, on the CUDA stream ONNX Runtime computes on (so the reduction is ordered after
/// the gradient model's kernels and before the update model's, without a host synchronization).
/// </summary>
/// <remarks>
/// <para>Setup: rank 0 calls <c>ncclGetUniqueId</c>, the 128-byte id is broadcast over the bootstrap collective (MPI), and
/// every rank calls <c>ncclCommInitRank(ranks, id, rank)</c> on the GPU it uses.</para>
/// <para>Unverified on hardware: the host side (id exchange, bucketing, error reporting) is unit-tested against a fake
/// <see cref="INcclApi"/>; no GPU or NCCL was available to run it.</para>
/// </remarks>
public sealed class NcclAllReduce : IDisposable
{
    /// <summary>ncclSum in nccl.h.</summary>
    public const int Sum = 0;

    private readonly INcclApi _api;
    private nint _comm;

    private NcclAllReduce(INcclApi api, nint comm, int rank, int ranks)
    {
        _api = api;
        _comm = comm;
        Rank = rank;
        Ranks = ranks;
    }

    /// <summary>This rank.</summary>
    public int Rank { get; }

    /// <summary>The number of ranks.</summary>
    public int Ranks { get; }

    /// <summary>Creates the communicator of every rank of <paramref name="bootstrap"/> (a collective call).</summary>
    /// <param name="bootstrap">The job's host collectives, used once to share the NCCL id.</param>
    /// <param name="api">The NCCL calls; null loads <see cref="NcclLibrary"/>.</param>
    public static NcclAllReduce Create(ICollective bootstrap, INcclApi? api = null)
    {
        ArgumentNullException.ThrowIfNull(bootstrap);
        api ??= new NcclLibrary();
        NcclUniqueId id = default;
        if (bootstrap.Rank == 0) Check(api, api.GetUniqueId(out id), "ncclGetUniqueId", 0);
        Span<byte> bytes = id;
        bootstrap.Broadcast(bytes, 0);
        Check(api, api.CommInitRank(out var comm, bootstrap.Size, id, bootstrap.Rank), "ncclCommInitRank", bootstrap.Rank);
        return new NcclAllReduce(api, comm, bootstrap.Rank, bootstrap.Size);
    }

    /// <summary>
    /// Enqueues the in-place sum of <paramref name="count"/> elements at device address <paramref name="buffer"/> on
    /// <paramref name="stream"/>, one <c>ncclAllReduce</c> per bucket of at most <paramref name="bucketElements"/> elements.
    /// </summary>
    public void SumInPlace(nint buffer, long count, NcclDataType type, nint stream, long bucketElements)
    {
        ObjectDisposedException.ThrowIf(_comm == 0, this);
        if (buffer == 0) throw new ArgumentException("The device buffer is a null pointer.", nameof(buffer));
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (bucketElements < 1) throw new ArgumentOutOfRangeException(nameof(bucketElements), bucketElements, "Expected at least 1 element per bucket.");
        int size = type == NcclDataType.Float32 ? 4 : 2;
        for (long offset = 0; offset < count; offset += bucketElements)
        {
            var at = buffer + (nint)(offset * size);
            Check(_api, _api.AllReduce(at, at, (nuint)Math.Min(bucketElements, count - offset), type, Sum, _comm, stream), "ncclAllReduce", Rank);
        }
    }

    /// <summary>Destroys the communicator.</summary>
    public void Dispose()
    {
        if (_comm == 0) return;
        var comm = _comm;
        _comm = 0;
        Check(_api, _api.CommDestroy(comm), "ncclCommDestroy", Rank);
    }

    private static void Check(INcclApi api, int result, string call, int rank)
    {
        if (result != 0) throw new OnnxAdadeltaException($"{call} failed on rank {rank}: {api.ErrorString(result)} (ncclResult_t {result}).");
    }
}
