using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Training;

/// <summary>
/// Reads a CSV file as arrays: a header row names the columns, each later line is one row (example). A column headed
/// <c>NAME</c> is one value per row for the input <c>NAME</c> (shape [rows], or [rows, 1, …] when the input's other
/// dimensions are all 1). Columns headed <c>NAME[0]</c>, <c>NAME[1]</c>, … <c>NAME[n-1]</c> (in any order, all present)
/// are one row of the input <c>NAME</c>, flattened in row-major order: an input float32[batch, 1, 8, 8] takes
/// <c>images[0]</c> … <c>images[63]</c>, and an input of shape [batch, k] with k symbolic takes n columns as k = n.
/// Values are parsed in the input's element type (invariant culture: <c>.</c> decimals, <c>nan</c>, <c>inf</c>; bools
/// as 0/1 or true/false); where no input says, a column group is int64 when all its values are integers and float32
/// otherwise. Fields may be quoted ("…", with "" for a quote); blank lines are skipped; columns no input uses are
/// ignored. Each malformed line is one <see cref="OnnxAdadeltaException"/> naming the file, the line and the column.
/// </summary>
public static partial class CsvData
{
    [GeneratedRegex(@"^(?<name>.+)\[(?<index>[0-9]+)\]$")]
    private static partial Regex GroupCell();

    private sealed class Group(string name, int firstColumn)
    {
        public string Name { get; } = name;
        public int FirstColumn { get; } = firstColumn;
        public bool Plain { get; set; }
        public SortedDictionary<int, int> Columns { get; } = [];  // element index -> column
    }

    /// <summary>
    /// Reads the column groups of <paramref name="path"/> that <paramref name="inputs"/> names (all when null);
    /// <paramref name="names"/> receives every group name, in header order.
    /// </summary>
    public static IReadOnlyDictionary<string, DataArray> Read(string path, IReadOnlyList<InputSpec>? inputs, out IReadOnlyList<string> names)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new OnnxAdadeltaException($"{path}: no such file.");
        using var reader = new StreamReader(path, Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
        var file = Path.GetFileName(path);

        var headerLine = reader.ReadLine();
        int lineNumber = 1;
        while (headerLine is not null && headerLine.Trim().Length == 0) { headerLine = reader.ReadLine(); lineNumber++; }
        if (headerLine is null) throw new OnnxAdadeltaException($"{file}: empty; a CSV data file starts with a header row naming the columns.");
        var header = Split(headerLine, file, lineNumber);
        var groups = Groups(header, file, lineNumber);
        names = groups.Select(g => g.Name).ToList();

        var specs = inputs?.ToDictionary(i => i.Name, StringComparer.Ordinal);
        var used = groups.Where(g => specs is null || specs.ContainsKey(g.Name)).ToList();
        var rows = new List<string[]>();
        var lines = new List<int>();
        while (reader.ReadLine() is { } line)
        {
            lineNumber++;
            if (line.Trim().Length == 0) continue;
            var fields = Split(line, file, lineNumber);
            if (fields.Length != header.Length)
                throw new OnnxAdadeltaException($"{file}:{lineNumber}: {fields.Length} field{(fields.Length == 1 ? "" : "s")}, but the header has {header.Length} columns.");
            rows.Add(fields);
            lines.Add(lineNumber);
        }
        var result = new OrderedDictionary<string, DataArray>(StringComparer.Ordinal);
        foreach (var g in used)
        {
            InputSpec? spec = specs?.GetValueOrDefault(g.Name);
            result.Add(g.Name, Parse(g, header, rows, lines, spec, file));
        }
        return result;
    }

    private static List<Group> Groups(string[] header, string file, int line)
    {
        var groups = new List<Group>();
        var byName = new Dictionary<string, Group>(StringComparer.Ordinal);
        var seen = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int column = 0; column < header.Length; column++)
        {
            var cell = header[column].Trim();
            if (cell.Length == 0) throw new OnnxAdadeltaException($"{file}:{line}: column {column + 1} has an empty name.");
            if (seen.TryGetValue(cell, out var first))
                throw new OnnxAdadeltaException($"{file}:{line}: column {column + 1} repeats the name '{cell}' of column {first + 1}.");
            seen[cell] = column;
            var m = GroupCell().Match(cell);
            var name = m.Success ? m.Groups["name"].Value : cell;
            if (!byName.TryGetValue(name, out var g))
            {
                g = new Group(name, column);
                byName[name] = g;
                groups.Add(g);
            }
            if (m.Success)
            {
                if (g.Plain) throw new OnnxAdadeltaException($"{file}:{line}: column {column + 1} '{cell}' makes '{name}' a column group, but column {g.FirstColumn + 1} is '{name}' alone.");
                if (!int.TryParse(m.Groups["index"].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out var index))
                    throw new OnnxAdadeltaException($"{file}:{line}: column {column + 1} '{cell}': the index is too large.");
                g.Columns[index] = column;
            }
            else
            {
                if (g.Columns.Count > 0) throw new OnnxAdadeltaException($"{file}:{line}: column {column + 1} '{cell}' is a single column, but '{name}' is a column group from column {g.FirstColumn + 1}.");
                g.Plain = true;
                g.Columns[0] = column;
            }
        }
        foreach (var g in groups.Where(g => !g.Plain))
        {
            int missing = Enumerable.Range(0, g.Columns.Count).FirstOrDefault(i => !g.Columns.ContainsKey(i), -1);
            if (missing >= 0)
                throw new OnnxAdadeltaException(
                    $"{file}:{line}: the column group '{g.Name}' has {g.Columns.Count} columns up to '{g.Name}[{g.Columns.Keys.Max()}]' but no '{g.Name}[{missing}]'; its columns are {g.Name}[0] to {g.Name}[n-1].");
        }
        return groups;
    }

    private static DataArray Parse(Group g, string[] header, List<string[]> rows, List<int> lines, InputSpec? spec, string file)
    {
        int width = g.Columns.Count;
        var rowShape = RowShape(g, spec, file);
        var type = spec is { ElementType: not DataType.Undefined } ? spec.ElementType : Infer(g, rows);
        if (!NpyDTypes.IsSupported(type))
            throw new OnnxAdadeltaException($"{file}: graph input '{g.Name}' ({spec!.Describe()}) has an element type a CSV file can't hold; supported: {NpyDTypes.SupportedNames}.");
        int size = NpyDTypes.Size(type);
        var data = new byte[checked((long)rows.Count * width * size)];
        var columns = g.Columns.Values.ToArray();
        for (int r = 0; r < rows.Count; r++)
            for (int k = 0; k < width; k++)
            {
                var text = rows[r][columns[k]].Trim();
                if (!TryWrite(type, text, data.AsSpan((r * width + k) * size, size)))
                    throw new OnnxAdadeltaException(
                        $"{file}:{lines[r]}: column {columns[k] + 1} ('{header[columns[k]].Trim()}'): '{text}' is not {Expected(type)}.");
            }
        return new DataArray(type, [rows.Count, .. rowShape], data);
    }

    /// <summary>The shape of one row of group <paramref name="g"/>, from its input's dimensions where they are known.</summary>
    private static long[] RowShape(Group g, InputSpec? spec, string file)
    {
        int width = g.Columns.Count;
        var dims = spec?.Dims;
        string Want() => $"graph input '{g.Name}' ({spec!.Describe()})";
        if (dims is null) return g.Plain ? [] : [width];
        if (dims.Count == 0) return [];  // a scalar input: Dataset refuses it with its own message
        if (dims.Count == 1)
        {
            if (!g.Plain) throw new OnnxAdadeltaException($"{file}: '{g.Name}' is a column group ({width} column{(width == 1 ? "" : "s")}), but {Want()} takes one value per row: head one column '{g.Name}'.");
            return [];
        }
        var rest = dims.Skip(1).ToList();
        if (rest.All(d => d is long))
        {
            long per = rest.Aggregate(1L, (a, d) => a * (long)d!);
            if (per != width)
                throw new OnnxAdadeltaException(
                    $"{file}: '{g.Name}' has {width} column{(width == 1 ? "" : "s")}, but {Want()} needs {per} values per row ({g.Name}[0] to {g.Name}[{per - 1}]).");
            return rest.Select(d => (long)d!).ToArray();
        }
        if (rest.Count == 1) return [width];
        throw new OnnxAdadeltaException(
            $"{file}: {Want()} has more than one non-batch dimension and not all are fixed, so '{g.Name}' columns can't be shaped; fix them with --input-shape or use an .npz.");
    }

    private static DataType Infer(Group g, List<string[]> rows)
    {
        foreach (var row in rows)
            foreach (var column in g.Columns.Values)
                if (!long.TryParse(row[column].AsSpan().Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _))
                    return DataType.Float;
        return rows.Count == 0 ? DataType.Float : DataType.Int64;
    }

    private static string Expected(DataType type) => type switch
    {
        DataType.Float or DataType.Double or DataType.Float16 => $"a {NpyDTypes.Name(type)} number",
        DataType.Bool => "a bool (0, 1, true or false)",
        _ => $"an integer in the {NpyDTypes.Name(type)} range",
    };

    private static bool TryWrite(DataType type, string text, Span<byte> target)
    {
        const NumberStyles Int = NumberStyles.AllowLeadingSign;
        var c = CultureInfo.InvariantCulture;
        switch (type)
        {
            case DataType.Float:
                if (!TryFloat(text, out var f)) return false;
                BinaryPrimitives.WriteSingleLittleEndian(target, (float)f);
                return true;
            case DataType.Double:
                if (!TryFloat(text, out var d)) return false;
                BinaryPrimitives.WriteDoubleLittleEndian(target, d);
                return true;
            case DataType.Float16:
                if (!TryFloat(text, out var h)) return false;
                BinaryPrimitives.WriteHalfLittleEndian(target, (Half)h);
                return true;
            case DataType.Int64 when long.TryParse(text, Int, c, out var v): BinaryPrimitives.WriteInt64LittleEndian(target, v); return true;
            case DataType.Int32 when int.TryParse(text, Int, c, out var v): BinaryPrimitives.WriteInt32LittleEndian(target, v); return true;
            case DataType.Int16 when short.TryParse(text, Int, c, out var v): BinaryPrimitives.WriteInt16LittleEndian(target, v); return true;
            case DataType.Int8 when sbyte.TryParse(text, Int, c, out var v): target[0] = (byte)v; return true;
            case DataType.Uint64 when ulong.TryParse(text, NumberStyles.None, c, out var v): BinaryPrimitives.WriteUInt64LittleEndian(target, v); return true;
            case DataType.Uint32 when uint.TryParse(text, NumberStyles.None, c, out var v): BinaryPrimitives.WriteUInt32LittleEndian(target, v); return true;
            case DataType.Uint16 when ushort.TryParse(text, NumberStyles.None, c, out var v): BinaryPrimitives.WriteUInt16LittleEndian(target, v); return true;
            case DataType.Uint8 when byte.TryParse(text, NumberStyles.None, c, out var v): target[0] = v; return true;
            case DataType.Bool:
                switch (text.ToLowerInvariant())
                {
                    case "0" or "false": target[0] = 0; return true;
                    case "1" or "true": target[0] = 1; return true;
                    default: return false;
                }
            default: return false;
        }
    }

    /// <summary>A number in the invariant culture, or nan / inf / -inf as NumPy writes them.</summary>
    private static bool TryFloat(string text, out double value)
    {
        switch (text.ToLowerInvariant())
        {
            case "nan": value = double.NaN; return true;
            case "inf" or "+inf" or "infinity": value = double.PositiveInfinity; return true;
            case "-inf" or "-infinity": value = double.NegativeInfinity; return true;
        }
        return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out value);
    }

    /// <summary>Splits one line at commas; a field in double quotes may hold commas, and "" inside it is one quote.</summary>
    private static string[] Split(string line, string file, int lineNumber)
    {
        var fields = new List<string>();
        var field = new StringBuilder();
        int i = 0;
        while (true)
        {
            field.Clear();
            if (i < line.Length && line[i] == '"')
            {
                int open = i++;
                while (true)
                {
                    if (i >= line.Length)
                        throw new OnnxAdadeltaException($"{file}:{lineNumber}: the quote opened at character {open + 1} is not closed.");
                    if (line[i] == '"')
                    {
                        if (i + 1 < line.Length && line[i + 1] == '"') { field.Append('"'); i += 2; continue; }
                        i++;
                        break;
                    }
                    field.Append(line[i++]);
                }
                if (i < line.Length && line[i] != ',')
                    throw new OnnxAdadeltaException($"{file}:{lineNumber}: text after the closing quote at character {i + 1}; expected a comma.");
            }
            else
            {
                while (i < line.Length && line[i] != ',') field.Append(line[i++]);
            }
            fields.Add(field.ToString());
            if (i >= line.Length) break;
            i++;  // the comma
        }
        return [.. fields];
    }
}
