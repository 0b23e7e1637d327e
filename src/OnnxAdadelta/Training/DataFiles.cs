namespace OnnxAdadelta.Training;

/// <summary>
/// Reads training data from a file or folder, by its form: an <c>.npz</c> archive (<see cref="Npz"/>), a folder of
/// <c>NAME.npy</c> files, one <c>.npy</c> file (one array, named after the file), or a <c>.csv</c> file with a header
/// row (<see cref="CsvData"/>). Every form yields the same thing: named <see cref="DataArray"/>s with rows along axis 0.
/// </summary>
public static class DataFiles
{
    /// <summary>The forms the data files take, for messages.</summary>
    public const string Forms = ".npz, .csv, .npy, or a folder of .npy files";

    /// <summary>
    /// Reads the arrays of <paramref name="path"/>. When <paramref name="inputs"/> is given, only the arrays it names
    /// are loaded (all names are still listed in <paramref name="names"/>), and a CSV file takes each column group's
    /// element type and row shape from the input of the same name (see <see cref="CsvData"/>). A missing path, an
    /// unknown extension or a damaged file is an <see cref="OnnxAdadeltaException"/> naming it.
    /// </summary>
    /// <param name="path">The file or folder.</param>
    /// <param name="inputs">The graph inputs to feed, or null for every array (a CSV's columns then take float32, or int64 where every value is an integer).</param>
    /// <param name="names">Every array name the source has, in its order.</param>
    public static IReadOnlyDictionary<string, DataArray> Read(string path, IReadOnlyList<InputSpec>? inputs, out IReadOnlyList<string> names)
    {
        ArgumentNullException.ThrowIfNull(path);
        var wanted = inputs?.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        bool Include(string name) => wanted is null || wanted.Contains(name);
        if (Directory.Exists(path)) return ReadNpyFolder(path, Include, out names);
        if (!File.Exists(path)) throw new OnnxAdadeltaException($"{path}: no such file or folder.");
        switch (Path.GetExtension(path).ToLowerInvariant())
        {
            case ".npz":
                var arrays = Npz.Read(path, Include, out var list);
                names = list;
                return arrays;
            case ".npy":
                var name = Path.GetFileNameWithoutExtension(path);
                names = [name];
                return new Dictionary<string, DataArray>(StringComparer.Ordinal) { [name] = Npy.Read(path) };
            case ".csv":
                return CsvData.Read(path, inputs, out names);
            default:
                throw new OnnxAdadeltaException($"{path}: unknown data file extension '{Path.GetExtension(path)}'; expected {Forms}.");
        }
    }

    /// <summary>Reads every array of <paramref name="path"/> (see <see cref="Read(string, IReadOnlyList{InputSpec}?, out IReadOnlyList{string})"/>).</summary>
    public static IReadOnlyDictionary<string, DataArray> Read(string path) => Read(path, null, out _);

    private static OrderedDictionary<string, DataArray> ReadNpyFolder(string path, Func<string, bool> include, out IReadOnlyList<string> names)
    {
        var files = Directory.GetFiles(path, "*.npy").Order(StringComparer.Ordinal).ToList();
        if (files.Count == 0) throw new OnnxAdadeltaException($"{path}: a data folder holds one NAME.npy file per array; it has none.");
        var arrays = new OrderedDictionary<string, DataArray>(StringComparer.Ordinal);
        names = files.Select(f => Path.GetFileNameWithoutExtension(f)).ToList();
        foreach (var file in files)
        {
            var name = Path.GetFileNameWithoutExtension(file);
            if (include(name)) arrays.Add(name, Npy.Read(file));
        }
        return arrays;
    }
}
