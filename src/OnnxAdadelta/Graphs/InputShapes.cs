using System.Globalization;
using OnnxAdadelta.Onnx.Proto;

namespace OnnxAdadelta.Graphs;

/// <summary>
/// Fixes symbolic dimensions of graph inputs (<c>--input-shape NAME=D0,D1,…</c>), for ops whose gradient needs static
/// sizes (an unrolled recurrent layer, a resampling matrix). The dimensions travel with the model: the training graph,
/// the step model and the exported model all take inputs of that shape.
/// </summary>
public static class InputShapes
{
    /// <summary>
    /// Parses <c>NAME=D0,D1,…</c>; a dimension is a size ≥ 1, or <c>?</c> to keep the model's own dimension.
    /// </summary>
    /// <exception cref="OnnxAdadeltaException">The text is not of that form; the message quotes it.</exception>
    public static (string Name, long?[] Dims) Parse(string text)
    {
        var eq = text.LastIndexOf('=');
        if (eq <= 0 || eq == text.Length - 1)
            throw new OnnxAdadeltaException($"--input-shape '{text}': expected NAME=D0,D1,... (for example input=1,30,7; '?' keeps a dimension).");
        var dims = text[(eq + 1)..].Split(',').Select(d => d.Trim() switch
        {
            "?" => (long?)null,
            var v when long.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n >= 1 => n,
            var v => throw new OnnxAdadeltaException($"--input-shape '{text}': '{v}' is not a size (a whole number >= 1, or '?')."),
        }).ToArray();
        return (text[..eq], dims);
    }

    /// <summary>Applies <paramref name="shapes"/> to the graph inputs of <paramref name="model"/> in place.</summary>
    /// <exception cref="OnnxAdadeltaException">A name that is no graph input, a rank that differs, or a size that contradicts a fixed one.</exception>
    public static void Apply(ModelProto model, IReadOnlyDictionary<string, long?[]> shapes)
    {
        foreach (var (name, dims) in shapes)
        {
            var input = model.Graph.Input.FirstOrDefault(i => i.Name == name)
                ?? throw new OnnxAdadeltaException($"--input-shape {name}: the model has no graph input '{name}'; its inputs are {string.Join(", ", model.Graph.Input.Where(i => !model.Graph.Initializer.Any(t => t.Name == i.Name)).Select(i => i.Name))}.");
            var shape = input.Type?.TensorType?.Shape;
            if (shape is null)
            {
                if (dims.Any(d => d is null)) throw new OnnxAdadeltaException($"--input-shape {name}: the model gives no shape for '{name}', so every dimension must be a size.");
                input.Type ??= new TypeProto { TensorType = new TypeProto.Types.Tensor() };
                input.Type.TensorType ??= new TypeProto.Types.Tensor();
                input.Type.TensorType.Shape = new TensorShapeProto();
                foreach (var d in dims) input.Type.TensorType.Shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d!.Value });
                continue;
            }
            if (shape.Dim.Count != dims.Length)
                throw new OnnxAdadeltaException($"--input-shape {name}: {dims.Length} dimensions given, but '{name}' has rank {shape.Dim.Count} ({input.Type.Describe()}).");
            for (int k = 0; k < dims.Length; k++)
            {
                if (dims[k] is not { } size) continue;
                var dim = shape.Dim[k];
                if (dim.ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue && dim.DimValue != size)
                    throw new OnnxAdadeltaException($"--input-shape {name}: dimension {k} is fixed at {dim.DimValue} in the model, not {size}.");
                dim.DimValue = size;
            }
        }
    }
}
