using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Onnx;

namespace OnnxAdadelta.Tests.Onnx;

/// <summary>A fresh folder under the system temp folder, deleted with everything in it on dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"onnxadadelta-test-{Guid.NewGuid():N}");
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    /// <summary>Names of all files in the folder and below, relative, sorted.</summary>
    public string[] Files() =>
        Directory.GetFiles(Path, "*", SearchOption.AllDirectories)
            .Select(f => System.IO.Path.GetRelativePath(Path, f)).Order(StringComparer.Ordinal).ToArray();

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); }
        catch (IOException) { }
    }
}

/// <summary>Small models built in code.</summary>
internal static class TestModels
{
    public static ValueInfoProto FloatValue(string name, params long[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims) shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = shape } },
        };
    }

    /// <summary>Y = X + B with B an initializer holding <paramref name="bias"/>; X and Y are float vectors of the same length.</summary>
    public static ModelProto Add(float[] bias)
    {
        var graph = new GraphProto { Name = "add" };
        graph.Input.Add(FloatValue("X", bias.Length));
        graph.Output.Add(FloatValue("Y", bias.Length));
        graph.Initializer.Add(Tensors.Create("B", bias, bias.Length));
        graph.Node.Add(new NodeProto { Name = "add", OpType = "Add", Input = { "X", "B" }, Output = { "Y" } });
        return Wrap(graph);
    }

    public static ModelProto Wrap(GraphProto graph) => new()
    {
        IrVersion = 8,
        ProducerName = "OnnxAdadelta.Tests",
        OpsetImport = { new OperatorSetIdProto { Domain = "", Version = 17 } },
        Graph = graph,
    };

    /// <summary>Floats 0, 1, 2… scaled by <paramref name="scale"/>.</summary>
    public static float[] Ramp(int n, float scale = 1) => Enumerable.Range(0, n).Select(i => i * scale).ToArray();

    /// <summary>A model with tensors in every place external data may sit: main graph, If subgraph, Constant attribute, sparse initializer, function.</summary>
    public static ModelProto Everywhere(int n)
    {
        var then = new GraphProto { Name = "then" };
        then.Initializer.Add(Tensors.Create("then_w", Ramp(n, 2), n));
        then.Node.Add(new NodeProto { Name = "then_id", OpType = "Identity", Input = { "then_w" }, Output = { "then_out" } });
        then.Output.Add(FloatValue("then_out", n));

        var graph = new GraphProto { Name = "main" };
        graph.Initializer.Add(Tensors.Create("w", Ramp(n), n));
        graph.Initializer.Add(Tensors.CreateTyped("typed_w", Ramp(n, -1), n));
        graph.Initializer.Add(Tensors.Create("small", [1f, 2f], 2));
        graph.SparseInitializer.Add(new SparseTensorProto
        {
            Values = Tensors.Create("sparse", Ramp(n, 3), n),
            Indices = Tensors.Create("", Enumerable.Range(0, n).Select(i => (long)i * 2).ToArray(), n),
            Dims = { 2L * n },
        });
        graph.Node.Add(new NodeProto
        {
            Name = "const",
            OpType = "Constant",
            Output = { "c" },
            Attribute = { new AttributeProto { Name = "value", Type = AttributeProto.Types.AttributeType.Tensor, T = Tensors.Create("", Ramp(n, 4), n) } },
        });
        graph.Node.Add(new NodeProto
        {
            Name = "if",
            OpType = "If",
            Input = { "cond" },
            Output = { "if_out" },
            Attribute = { new AttributeProto { Name = "then_branch", Type = AttributeProto.Types.AttributeType.Graph, G = then } },
        });
        var model = Wrap(graph);
        model.Functions.Add(new FunctionProto
        {
            Name = "f",
            Domain = "test",
            Node =
            {
                new NodeProto
                {
                    Name = "fconst",
                    OpType = "Constant",
                    Output = { "k" },
                    Attribute = { new AttributeProto { Name = "value", Type = AttributeProto.Types.AttributeType.Tensor, T = Tensors.Create("fk", Ramp(n, 5), n) } },
                },
            },
        });
        return model;
    }
}
