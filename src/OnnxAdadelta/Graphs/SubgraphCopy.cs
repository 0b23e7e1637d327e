using OnnxAdadelta.Onnx.Proto;

namespace OnnxAdadelta.Graphs;

/// <summary>
/// Copies the nodes of a subgraph (an If branch, a Loop or Scan body, a function body) into another graph under fresh
/// names, with the subgraph's inputs bound to values of the destination; nested subgraphs that read renamed values
/// are rewritten to read the new names.
/// </summary>
public static class SubgraphCopy
{
    /// <summary>
    /// Appends the nodes (and initializers) of <paramref name="body"/> to <paramref name="b"/>'s graph. Every value the
    /// body defines gets a unique name under <paramref name="prefix"/>; inputs named in <paramref name="bind"/> read the
    /// bound value; values from outside the body keep their names. Returns the new name of every body value (its
    /// inputs, initializers and node outputs).
    /// </summary>
    public static Dictionary<string, string> Inline(GraphBuilder b, GraphProto body, IReadOnlyDictionary<string, string> bind, string prefix)
    {
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var i in body.Input)
            if (bind.TryGetValue(i.Name, out var v)) map[i.Name] = v;
        foreach (var t in body.Initializer)
        {
            if (map.ContainsKey(t.Name)) continue;
            var copy = t.Clone();
            map[t.Name] = b.Initializer($"{prefix}/{t.Name}", copy);
        }
        foreach (var node in body.Node)
        {
            var copy = node.Clone();
            copy.Name = b.UniqueName($"{prefix}/{(node.Name.Length > 0 ? node.Name : node.OpType)}");
            for (int i = 0; i < copy.Input.Count; i++)
                if (map.TryGetValue(copy.Input[i], out var v)) copy.Input[i] = v;
            foreach (var a in copy.Attribute)
            {
                if (a.G is not null) RenameOuterReads(a.G, map);
                foreach (var g in a.Graphs) RenameOuterReads(g, map);
            }
            for (int o = 0; o < copy.Output.Count; o++)
                if (copy.Output[o].Length > 0) copy.Output[o] = map[node.Output[o]] = b.UniqueName($"{prefix}/{node.Output[o]}");
            b.Graph.Node.Add(copy);
        }
        return map;
    }

    /// <summary>
    /// Rewrites, in place, every read of an outer-scope value of <paramref name="graph"/> (and of its nested subgraphs)
    /// that <paramref name="map"/> renames. Names the subgraph defines itself shadow the map.
    /// </summary>
    public static void RenameOuterReads(GraphProto graph, IReadOnlyDictionary<string, string> map)
    {
        var defined = new HashSet<string>(graph.Input.Select(i => i.Name).Concat(graph.Initializer.Select(t => t.Name)), StringComparer.Ordinal);
        foreach (var n in graph.Node) foreach (var o in n.Output) defined.Add(o);
        var visible = map.Where(p => !defined.Contains(p.Key)).ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);
        if (visible.Count == 0) return;
        foreach (var n in graph.Node)
        {
            for (int i = 0; i < n.Input.Count; i++)
                if (visible.TryGetValue(n.Input[i], out var v)) n.Input[i] = v;
            foreach (var a in n.Attribute)
            {
                if (a.G is not null) RenameOuterReads(a.G, visible);
                foreach (var g in a.Graphs) RenameOuterReads(g, visible);
            }
        }
        foreach (var o in graph.Output)
            if (visible.TryGetValue(o.Name, out var v))
            {
                // A subgraph output that is an outer value directly: route it through an Identity under the new name.
                var local = o.Name + "/outer";
                graph.Node.Add(new NodeProto { OpType = "Identity", Name = local, Input = { v }, Output = { local } });
                o.Name = local;
            }
    }
}
