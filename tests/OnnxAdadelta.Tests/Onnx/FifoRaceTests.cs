using OnnxAdadelta.Onnx;

namespace OnnxAdadelta.Tests.Onnx;

/// <summary>
/// Reads open the path first (without blocking) and check the opened handle, so a named pipe swapped in for a regular
/// file between a check and an open cannot make a read wait forever for a writer.
/// </summary>
public class FifoRaceTests
{
    [Fact]
    public async Task Opening_a_fifo_returns_at_once_and_reports_what_the_handle_is()
    {
        using var dir = new TempDir();
        HostileFileTests.MakeFifo(dir.File("pipe"));
        File.WriteAllBytes(dir.File("file"), [1, 2, 3]);

        // A blocked open would end the wait with a TimeoutException, failing the test.
        var (stream0, kind0) = await Task.Run(() => (SafeFile.OpenIfRegular(dir.File("pipe"), out var kind), kind)).WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Null(stream0);
        Assert.Equal(FileKind.Fifo, kind0);

        using (var stream = SafeFile.OpenIfRegular(dir.File("file"), out var kind))
        {
            Assert.Equal(FileKind.Regular, kind);
            Assert.Equal(3, stream!.Length);
            Assert.Equal(1, stream.ReadByte());
        }
        Assert.Null(SafeFile.OpenIfRegular(dir.File("missing"), out var missing));
        Assert.Equal(FileKind.Missing, missing);
        Assert.Null(SafeFile.OpenIfRegular(dir.Path, out var folder));
        Assert.Equal(FileKind.Directory, folder);
        // A Unix domain socket cannot be opened (ENXIO); it is named as what it is.
        using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        socket.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(dir.File("sock")));
        Assert.Null(SafeFile.OpenIfRegular(dir.File("sock"), out var sock));
        Assert.Equal(FileKind.Socket, sock);
        Assert.Contains("sock: is a socket; expected a data file that is a regular file.",
            Assert.Throws<OnnxAdadeltaException>(() => SafeFile.OpenRead(dir.File("sock"), "data file")).Message);
    }

    [Fact]
    public async Task A_path_swapped_between_a_file_and_a_fifo_while_it_is_read_never_hangs()
    {
        using var dir = new TempDir();
        HostileFileTests.MakeFifo(dir.File("pipe"));
        File.WriteAllBytes(dir.File("file"), [7, 7, 7, 7]);
        var path = dir.File("model.onnx");
        File.CreateSymbolicLink(path, dir.File("file"));
        using var stop = new CancellationTokenSource();
        // The path keeps changing what it leads to: a link to the file, then a link to the pipe, replaced atomically.
        var swapper = Task.Run(() =>
        {
            for (long k = 0; !stop.IsCancellationRequested; k++)
            {
                var link = dir.File($"link{k}");
                File.CreateSymbolicLink(link, dir.File(k % 2 == 0 ? "pipe" : "file"));
                File.Move(link, path, overwrite: true);
            }
        });
        int read = 0, refused = 0;
        var reader = Task.Run(() =>
        {
            for (int i = 0; i < 400; i++)
            {
                try
                {
                    Assert.Equal(new byte[] { 7, 7, 7, 7 }, SafeFile.ReadAllBytes(path, "ONNX model", 1 << 20));
                    read++;
                }
                catch (OnnxAdadeltaException e)
                {
                    Assert.Contains("is a named pipe (FIFO)", e.Message);
                    refused++;
                }
            }
        });
        try { await reader.WaitAsync(TimeSpan.FromSeconds(60)); } // a read blocked on the pipe ends in a TimeoutException
        finally { stop.Cancel(); }
        await swapper.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(400, read + refused);
    }
}
