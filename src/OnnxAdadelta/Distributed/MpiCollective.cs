using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;
using System.Text;

namespace OnnxAdadelta.Distributed;

/// <summary>
/// The collectives over Open MPI's <c>MPI_COMM_WORLD</c>, bound directly to <c>libmpi.so.40</c> (Open MPI 3 to 5) with
/// function pointers. Open MPI's handles (the communicator, datatypes, operations) are the addresses of exported
/// globals (<c>ompi_mpi_comm_world</c>, <c>ompi_mpi_float</c>, <c>ompi_mpi_op_sum</c>), read with
/// <see cref="NativeLibrary.GetExport"/>. The library is loaded only when an instance is created, so a single-process
/// run never needs MPI installed.
/// </summary>
/// <remarks>
/// MPI is initialized with <c>MPI_THREAD_FUNNELED</c>: every call must come from the thread that created the instance.
/// One instance per process; disposing it calls <c>MPI_Finalize</c>, after which MPI cannot be initialized again.
/// MPI errors are fatal (Open MPI's default handler ends the job with its own message).
/// </remarks>
public sealed unsafe class MpiCollective : ICollective
{
    /// <summary>The shared-library names tried, in order.</summary>
    public static readonly IReadOnlyList<string> LibraryNames = ["libmpi.so.40", "libmpi.so"];

    private const int ThreadFunneled = 1; // MPI_THREAD_FUNNELED in Open MPI's mpi.h
    private static readonly nint InPlace = 1; // MPI_IN_PLACE in Open MPI's mpi.h
    private const int ChunkBytes = 1 << 30;
    private static int s_initialized;

    private readonly nint _library;
    private readonly nint _world, _float, _byte, _int64, _sum, _min, _max;
    private readonly delegate* unmanaged<nint, nint, int, nint, nint, nint, int> _allreduce;
    private readonly delegate* unmanaged<nint, int, nint, int, nint, int> _bcast;
    private readonly delegate* unmanaged<nint, int> _barrier;
    private readonly delegate* unmanaged<int> _finalize;
    private readonly delegate* unmanaged<nint, int, int> _abort;
    private readonly delegate* unmanaged<int, byte*, int*, int> _errorString;
    private readonly int _thread;
    private bool _disposed;

    /// <summary>Loads Open MPI and calls <c>MPI_Init_thread</c>.</summary>
    /// <exception cref="OnnxAdadeltaException">Open MPI is not installed, is not Open MPI, or is already initialized in this process.</exception>
    public MpiCollective()
    {
        if (Interlocked.Exchange(ref s_initialized, 1) == 1)
            throw new OnnxAdadeltaException("MPI is already initialized in this process; create one MpiCollective per process.");
        _library = Load();
        _world = Export("ompi_mpi_comm_world");
        _float = Export("ompi_mpi_float");
        _byte = Export("ompi_mpi_byte");
        _int64 = Export("ompi_mpi_int64_t");
        _sum = Export("ompi_mpi_op_sum");
        _min = Export("ompi_mpi_op_min");
        _max = Export("ompi_mpi_op_max");
        var init = (delegate* unmanaged<int*, nint, int, int*, int>)Export("MPI_Init_thread");
        var rank = (delegate* unmanaged<nint, int*, int>)Export("MPI_Comm_rank");
        var size = (delegate* unmanaged<nint, int*, int>)Export("MPI_Comm_size");
        _allreduce = (delegate* unmanaged<nint, nint, int, nint, nint, nint, int>)Export("MPI_Allreduce");
        _bcast = (delegate* unmanaged<nint, int, nint, int, nint, int>)Export("MPI_Bcast");
        _barrier = (delegate* unmanaged<nint, int>)Export("MPI_Barrier");
        _finalize = (delegate* unmanaged<int>)Export("MPI_Finalize");
        _abort = (delegate* unmanaged<nint, int, int>)Export("MPI_Abort");
        _errorString = (delegate* unmanaged<int, byte*, int*, int>)Export("MPI_Error_string");

        // Open MPI's own SIGSEGV/SIGBUS/SIGFPE handlers would replace the .NET runtime's, which turns null references
        // into exceptions through SIGSEGV; keep them out unless the user set the parameter.
        SetEnvironmentIfUnset("OMPI_MCA_opal_signal", "");
        int provided;
        Check(init(null, 0, ThreadFunneled, &provided), "MPI_Init_thread");
        if (provided < ThreadFunneled)
            throw new OnnxAdadeltaException($"MPI_Init_thread: Open MPI provides thread level {provided}; MPI_THREAD_FUNNELED ({ThreadFunneled}) is needed.");
        int r, s;
        Check(rank(_world, &r), "MPI_Comm_rank");
        Check(size(_world, &s), "MPI_Comm_size");
        Rank = r;
        Size = s;
        _thread = Environment.CurrentManagedThreadId;
    }

    /// <inheritdoc/>
    public int Rank { get; }

    /// <inheritdoc/>
    public int Size { get; }

    /// <summary>Whether an Open MPI library can be loaded on this machine (it is loaded and released again).</summary>
    public static bool IsAvailable()
    {
        foreach (var name in LibraryNames)
        {
            if (!NativeLibrary.TryLoad(name, out var handle)) continue;
            bool isOpenMpi = NativeLibrary.TryGetExport(handle, "ompi_mpi_comm_world", out _);
            NativeLibrary.Free(handle);
            if (isOpenMpi) return true;
        }
        return false;
    }

    /// <inheritdoc/>
    public void AllReduceSum(Span<float> values)
    {
        CheckThread();
        fixed (float* p = values)
        {
            for (long offset = 0; offset < values.Length; offset += ChunkBytes / sizeof(float))
            {
                int count = (int)Math.Min(ChunkBytes / sizeof(float), values.Length - offset);
                Check(_allreduce(InPlace, (nint)(p + offset), count, _float, _sum, _world), "MPI_Allreduce");
            }
        }
    }

    /// <inheritdoc/>
    public void Broadcast(Span<byte> bytes, int root)
    {
        CheckThread();
        if (root < 0 || root >= Size) throw new ArgumentOutOfRangeException(nameof(root), root, $"Expected a rank from 0 to {Size - 1}.");
        fixed (byte* p = bytes)
        {
            for (long offset = 0; offset < bytes.Length; offset += ChunkBytes)
            {
                int count = (int)Math.Min(ChunkBytes, bytes.Length - offset);
                Check(_bcast((nint)(p + offset), count, _byte, root, _world), "MPI_Bcast");
            }
        }
    }

    /// <inheritdoc/>
    public (long Min, long Max) MinMax(long value)
    {
        CheckThread();
        long min = value, max = value;
        Check(_allreduce(InPlace, (nint)(&min), 1, _int64, _min, _world), "MPI_Allreduce");
        Check(_allreduce(InPlace, (nint)(&max), 1, _int64, _max, _world), "MPI_Allreduce");
        return (min, max);
    }

    /// <inheritdoc/>
    public void Barrier()
    {
        CheckThread();
        Check(_barrier(_world), "MPI_Barrier");
    }

    /// <inheritdoc/>
    [DoesNotReturn]
    public void Abort(int exitCode)
    {
        Console.Out.Flush();
        Console.Error.Flush();
        _abort(_world, exitCode);
        // MPI_Abort does not return; if an implementation did, end this process at least.
        Environment.Exit(exitCode);
    }

    /// <summary>Calls <c>MPI_Finalize</c>.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Check(_finalize(), "MPI_Finalize");
    }

    private void CheckThread()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Environment.CurrentManagedThreadId != _thread)
            throw new InvalidOperationException($"MPI was initialized on thread {_thread} (MPI_THREAD_FUNNELED); this call came from thread {Environment.CurrentManagedThreadId}.");
    }

    private void Check(int code, string call)
    {
        if (code == 0) return;
        var text = new byte[512];
        int length = 0;
        fixed (byte* p = text)
            if (_errorString(code, p, &length) != 0) length = 0;
        var message = length > 0 ? Encoding.ASCII.GetString(text, 0, Math.Min(length, text.Length)) : "no description";
        throw new OnnxAdadeltaException($"{call} failed on rank {Rank}: error {code} ({message}).");
    }

    private nint Export(string name) =>
        NativeLibrary.TryGetExport(_library, name, out var address) ? address
        : throw new OnnxAdadeltaException($"The MPI library has no symbol '{name}': Open MPI (libmpi.so.40) is needed; MPICH and Microsoft MPI use other handles.");

    private static nint Load()
    {
        foreach (var name in LibraryNames)
            if (NativeLibrary.TryLoad(name, out var handle)) return handle;
        throw new OnnxAdadeltaException($"Distributed training needs Open MPI, and none of {string.Join(", ", LibraryNames)} could be loaded: install it (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev) and launch with mpirun.");
    }

    [DllImport("libc", EntryPoint = "setenv")]
    private static extern int NativeSetEnv(string name, string value, int overwrite);

    private static void SetEnvironmentIfUnset(string name, string value)
    {
        if (Environment.GetEnvironmentVariable(name) is null) NativeSetEnv(name, value, 0);
    }
}
