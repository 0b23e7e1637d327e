using OnnxAdadelta.Onnx.Proto;

namespace OnnxAdadelta.Graphs;

/// <summary>Graph clean-up passes that every rewrite ends with: dead-node removal and topological sorting.</summary>
public static class GraphPasses
{
    /// <summary>
    /// Moves the float initializers of subgraphs (If branches, Loop and Scan bodies, at any depth) into the main graph,
    /// where they can be trained like any other weight: exporters such as torch.onnx put the weights of a layer used
    /// only inside a branch there. ONNX names are unique across scopes, so the values keep their names; one whose name
    /// the main graph already defines stays where it is.
    /// </summary>
    public static void HoistSubgraphInitializers(GraphProto graph)
    {
        var taken = graph.Initializer.Select(t => t.Name).Concat(graph.Input.Select(i => i.Name))
            .Concat(graph.Node.SelectMany(n => n.Output)).ToHashSet(StringComparer.Ordinal);
        void Visit(GraphProto g)
        {
            foreach (var sub in g.Node.SelectMany(n => n.Attribute).SelectMany(a => a.G is null ? a.Graphs : a.Graphs.Prepend(a.G)))
            {
                foreach (var t in sub.Initializer.Where(t => t.DataType is (int)TensorProto.Types.DataType.Float or (int)TensorProto.Types.DataType.Double
                    or (int)TensorProto.Types.DataType.Float16 or (int)TensorProto.Types.DataType.Bfloat16).ToList())
                {
                    if (sub.Input.Any(i => i.Name == t.Name) || !taken.Add(t.Name)) continue;
                    sub.Initializer.Remove(t);
                    graph.Initializer.Add(t);
                }
                Visit(sub);
            }
        }
        Visit(graph);
    }

    /// <summary>The outer-scope values that a node's subgraphs (If, Loop, Scan bodies) read.</summary>
    public static IEnumerable<string> OuterScopeInputs(NodeProto node)
    {
        var graphs = node.Attribute.SelectMany(a => a.G is null ? a.Graphs : a.Graphs.Prepend(a.G));
        foreach (var g in graphs)
        {
            var defined = new HashSet<string>(g.Input.Select(i => i.Name).Concat(g.Initializer.Select(i => i.Name)), StringComparer.Ordinal);
            foreach (var n in g.Node) foreach (var o in n.Output) defined.Add(o);
            foreach (var n in g.Node)
            {
                foreach (var i in n.Input)
                    if (i.Length > 0 && !defined.Contains(i)) yield return i;
                foreach (var i in OuterScopeInputs(n))
                    if (!defined.Contains(i)) yield return i;
            }
        }
    }

    /// <summary>
    /// Orders the nodes so that each comes after the producers of its inputs (Kahn's algorithm, keeping the original
    /// order among ready nodes). Throws naming a node whose input nothing produces, or the nodes on a cycle.
    /// </summary>
    public static void TopologicalSort(GraphProto graph)
    {
        var available = new HashSet<string>(graph.Input.Select(i => i.Name).Concat(graph.Initializer.Select(i => i.Name)), StringComparer.Ordinal) { "" };
        var producerOf = new Dictionary<string, int>(StringComparer.Ordinal);
        var nodes = graph.Node.ToList();
        for (int i = 0; i < nodes.Count; i++)
            foreach (var o in nodes[i].Output)
                if (o.Length > 0 && !producerOf.TryAdd(o, i))
                    throw new OnnxAdadeltaException($"Graph '{graph.Name}': value '{o}' is produced by two nodes ('{nodes[producerOf[o]].Name}' and '{nodes[i].Name}').");

        var pending = new int[nodes.Count];
        var users = nodes.Select(_ => new List<int>()).ToArray();
        for (int i = 0; i < nodes.Count; i++)
        {
            foreach (var input in nodes[i].Input.Concat(OuterScopeInputs(nodes[i])).Distinct())
            {
                if (available.Contains(input)) continue;
                if (!producerOf.TryGetValue(input, out var p))
                    throw new OnnxAdadeltaException($"Node '{nodes[i].Name}' ({nodes[i].OpType}) reads '{input}', which no node, input or initializer provides.");
                pending[i]++;
                users[p].Add(i);
            }
        }
        var ready = new PriorityQueue<int, int>();
        for (int i = 0; i < nodes.Count; i++) if (pending[i] == 0) ready.Enqueue(i, i);
        var order = new List<NodeProto>(nodes.Count);
        while (ready.TryDequeue(out var i, out _))
        {
            order.Add(nodes[i]);
            foreach (var u in users[i]) if (--pending[u] == 0) ready.Enqueue(u, u);
        }
        if (order.Count != nodes.Count)
        {
            var stuck = nodes.Where((_, i) => pending[i] > 0).Take(5).Select(n => $"'{n.Name}' ({n.OpType})");
            throw new OnnxAdadeltaException($"Graph '{graph.Name}' has a cycle through {string.Join(", ", stuck)}.");
        }
        graph.Node.Clear();
        graph.Node.AddRange(order);
    }

    /// <summary>
    /// Removes nodes none of whose outputs reach a graph output, then initializers, inputs-free value infos that nothing
    /// reads. Graph inputs are kept (they are the model's interface).
    /// </summary>
    public static void RemoveDeadCode(GraphProto graph)
    {
        var producer = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
        foreach (var node in graph.Node)
            foreach (var o in node.Output) if (o.Length > 0) producer[o] = node;
        var live = new HashSet<string>(StringComparer.Ordinal);
        var liveNodes = new HashSet<NodeProto>(ReferenceEqualityComparer.Instance);
        var pending = new Stack<string>(graph.Output.Select(o => o.Name));
        while (pending.TryPop(out var value))
        {
            if (!live.Add(value) || !producer.TryGetValue(value, out var node) || !liveNodes.Add(node)) continue;
            foreach (var i in node.Input.Concat(OuterScopeInputs(node))) pending.Push(i);
        }
        var kept = graph.Node.Where(liveNodes.Contains).ToList();
        graph.Node.Clear();
        graph.Node.AddRange(kept);
        // Each list is rebuilt in one pass (removing items one by one would cost the list's length per item).
        var inputs = graph.Input.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        var keptInits = graph.Initializer.Where(t => live.Contains(t.Name) || inputs.Contains(t.Name)).ToList();
        if (keptInits.Count != graph.Initializer.Count)
        {
            graph.Initializer.Clear();
            graph.Initializer.AddRange(keptInits);
        }
        var produced = new HashSet<string>(kept.SelectMany(n => n.Output), StringComparer.Ordinal);
        var keptInfos = graph.ValueInfo.Where(v => produced.Contains(v.Name)).ToList();
        if (keptInfos.Count != graph.ValueInfo.Count)
        {
            graph.ValueInfo.Clear();
            graph.ValueInfo.AddRange(keptInfos);
        }
    }
}
