using System.Globalization;
using System.IO.Compression;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Samples;

/// <summary>The UCI optdigits data (models/data/digits.csv.gz): 8x8 images, labels 0..9.</summary>
public static class Digits
{
    /// <summary>Pixels per image.</summary>
    public const int Features = 64;

    /// <summary>Digit classes.</summary>
    public const int Classes = 10;

    /// <summary>Rows of pixels scaled to [0, 1] and their labels.</summary>
    /// <param name="Pixels">Row-major [rows, 64].</param>
    /// <param name="Labels">One label per row.</param>
    public sealed record Set(float[] Pixels, long[] Labels);

    /// <summary>Reads the gzipped CSV: 64 grey levels (0..16) then the label, one image per line.</summary>
    public static Set Load(string csvGz)
    {
        using var reader = new StreamReader(new GZipStream(File.OpenRead(csvGz), CompressionMode.Decompress));
        var pixels = new List<float>();
        var labels = new List<long>();
        int lineNo = 0;
        while (reader.ReadLine() is { } line)
        {
            lineNo++;
            if (line.Length == 0) continue;
            var cells = line.Split(',');
            if (cells.Length != Features + 1) throw new InvalidDataException($"{csvGz}:{lineNo}: {cells.Length} columns, expected {Features + 1}.");
            for (int i = 0; i < Features; i++) pixels.Add(float.Parse(cells[i], CultureInfo.InvariantCulture) / 16f);
            labels.Add(long.Parse(cells[Features], CultureInfo.InvariantCulture));
        }
        return new Set([.. pixels], [.. labels]);
    }

    /// <summary>Every fifth row (index 4, 9, …) to the test split, the rest to training.</summary>
    public static (Set Train, Set Test) Split(Set all)
    {
        var rows = Enumerable.Range(0, all.Labels.Length).ToList();
        return (Take(all, rows.Where(r => r % 5 != 4)), Take(all, rows.Where(r => r % 5 == 4)));
    }

    private static Set Take(Set all, IEnumerable<int> rows)
    {
        var list = rows.ToList();
        var pixels = new float[list.Count * Features];
        for (int i = 0; i < list.Count; i++) Array.Copy(all.Pixels, list[i] * Features, pixels, i * Features, Features);
        return new Set(pixels, list.Select(r => all.Labels[r]).ToArray());
    }

    /// <summary>
    /// Writes a split as .npz with arrays X (float32 [rows, 64]), images (the same pixels as float32 [rows, 1, 8, 8])
    /// and labels (int64 [rows]).
    /// </summary>
    public static void Save(Set set, string path) => Npz.Write(path, new Dictionary<string, DataArray>
    {
        ["X"] = DataArray.FromFloat(set.Pixels, set.Labels.Length, Features),
        ["images"] = DataArray.FromFloat(set.Pixels, set.Labels.Length, 1, 8, 8),
        ["labels"] = DataArray.FromInt64(set.Labels, set.Labels.Length),
    });
}
