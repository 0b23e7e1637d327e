using OnnxAdadelta.Onnx;
using OnnxAdadelta.Onnx.Proto;

namespace OnnxAdadelta.Graphs;

/// <summary>
/// Inlines model-local functions (<see cref="ModelProto.Functions"/>): every node that calls one is replaced by the
/// function's body, recursively (functions calling functions, calls inside subgraphs), so the autodiff sees only
/// ordinary ops.
/// </summary>
/// <remarks>
/// The body's inputs read the call's inputs (a missing optional input reads ""), its outputs become the call's
/// outputs, and every other value and node gets a fresh name under the call node's name. Attributes that refer to the
/// function's attributes (<c>ref_attr_name</c>) take the call's value, else the function's default
/// (<c>attribute_proto</c>), else are left out, as the ONNX spec says. The functions' opset imports join the model's;
/// two versions of one domain are refused.
/// </remarks>
public static class FunctionInlining
{
    private const int MaxDepth = 64;

    /// <summary>The model with every call of a local function inlined and the functions removed; <paramref name="model"/> is unchanged.</summary>
    /// <exception cref="OnnxAdadeltaException">An opset conflict, a recursive function, or a call that does not fit its function.</exception>
    public static ModelProto Inline(ModelProto model)
    {
        var result = model.DeepCopy();
        if (result.Functions.Count == 0) return result;
        var functions = new Dictionary<(string, string, string), FunctionProto>();
        foreach (var f in result.Functions)
        {
            if (!functions.TryAdd((f.Domain, f.Name, f.Overload), f))
                throw new OnnxAdadeltaException($"The model defines function '{Describe(f)}' twice.");
            ReconcileOpsets(result, f);
        }
        var names = new GraphBuilder(result.Graph);
        InlineGraph(result.Graph, functions, names);
        var functionDomains = result.Functions.Select(f => f.Domain).ToHashSet(StringComparer.Ordinal);
        result.Functions.Clear();
        var used = new HashSet<string>(StringComparer.Ordinal);
        CollectDomains(result.Graph, used);
        foreach (var unused in result.OpsetImport.Where(o => functionDomains.Contains(o.Domain) && !used.Contains(o.Domain) && o.Domain is not ("" or "ai.onnx")).ToList())
            result.OpsetImport.Remove(unused);
        return result;
    }

    private static string Describe(FunctionProto f) =>
        $"{(f.Domain.Length > 0 ? f.Domain + "." : "")}{f.Name}{(f.Overload.Length > 0 ? ":" + f.Overload : "")}";

    private static string Normal(string domain) => domain == "ai.onnx" ? "" : domain;

    private static void ReconcileOpsets(ModelProto model, FunctionProto f)
    {
        foreach (var import in f.OpsetImport)
        {
            var mine = model.OpsetImport.FirstOrDefault(o => Normal(o.Domain) == Normal(import.Domain));
            if (mine is null) model.OpsetImport.Add(import.Clone());
            else if (mine.Version != import.Version)
                throw new OnnxAdadeltaException($"Function '{Describe(f)}' imports {(Normal(import.Domain).Length == 0 ? "ai.onnx" : import.Domain)} opset {import.Version}, the model opset {mine.Version}; "
                    + "inlining it would change what its ops mean (convert the model so that both use one version).");
        }
    }

    private static void CollectDomains(GraphProto g, HashSet<string> used)
    {
        foreach (var n in g.Node)
        {
            used.Add(n.Domain);
            foreach (var a in n.Attribute)
            {
                if (a.G is not null) CollectDomains(a.G, used);
                foreach (var sub in a.Graphs) CollectDomains(sub, used);
            }
        }
    }

    private static void InlineGraph(GraphProto g, Dictionary<(string, string, string), FunctionProto> functions, GraphBuilder names)
    {
        var nodes = new List<NodeProto>();
        foreach (var node in g.Node)
        {
            foreach (var a in node.Attribute)
            {
                if (a.G is not null) InlineGraph(a.G, functions, names);
                foreach (var sub in a.Graphs) InlineGraph(sub, functions, names);
            }
            if (functions.TryGetValue((node.Domain, node.OpType, node.Overload), out var f)) nodes.AddRange(Expand(node, f, functions, names, []));
            else nodes.Add(node);
        }
        g.Node.Clear();
        g.Node.AddRange(nodes);
    }

    private static List<NodeProto> Expand(NodeProto call, FunctionProto f, Dictionary<(string, string, string), FunctionProto> functions,
        GraphBuilder names, List<string> stack)
    {
        var self = Describe(f);
        if (stack.Contains(self)) throw new OnnxAdadeltaException($"Function '{self}' calls itself (through {string.Join(" -> ", stack.Append(self))}); it cannot be inlined.");
        if (stack.Count >= MaxDepth) throw new OnnxAdadeltaException($"Function calls nest deeper than {MaxDepth} at '{self}'.");
        var callName = call.Name.Length > 0 ? call.Name : call.Output.FirstOrDefault(o => o.Length > 0) ?? f.Name;
        if (call.Input.Count > f.Input.Count)
            throw new OnnxAdadeltaException($"Node '{callName}' calls function '{self}' with {call.Input.Count} inputs; it takes {f.Input.Count}.");
        if (call.Output.Count > f.Output.Count)
            throw new OnnxAdadeltaException($"Node '{callName}' calls function '{self}' with {call.Output.Count} outputs; it has {f.Output.Count}.");

        var attributes = new Dictionary<string, AttributeProto>(StringComparer.Ordinal);
        foreach (var a in f.AttributeProto) attributes[a.Name] = a;
        var declared = f.Attribute.Concat(f.AttributeProto.Select(a => a.Name)).ToHashSet(StringComparer.Ordinal);
        foreach (var a in call.Attribute)
        {
            if (!declared.Contains(a.Name))
                throw new OnnxAdadeltaException($"Node '{callName}' gives attribute '{a.Name}' to function '{self}', which declares none of that name (it declares: {string.Join(", ", declared.Order(StringComparer.Ordinal))}).");
            attributes[a.Name] = a;
        }

        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int k = 0; k < f.Input.Count; k++) map[f.Input[k]] = k < call.Input.Count ? call.Input[k] : "";
        var results = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int k = 0; k < call.Output.Count; k++)
            if (call.Output[k].Length > 0 && !map.ContainsKey(f.Output[k])) results.TryAdd(f.Output[k], call.Output[k]);

        var nodes = new List<NodeProto>();
        var inner = stack.Append(self).ToList();
        foreach (var node in f.Node)
        {
            var copy = node.Clone();
            copy.Name = names.UniqueName($"{callName}/{(node.Name.Length > 0 ? node.Name : node.OpType)}");
            for (int i = 0; i < copy.Input.Count; i++)
                if (map.TryGetValue(copy.Input[i], out var v)) copy.Input[i] = v;
            ResolveReferences(copy, attributes);
            foreach (var a in copy.Attribute)
            {
                if (a.G is not null) SubgraphCopy.RenameOuterReads(a.G, map);
                foreach (var sub in a.Graphs) SubgraphCopy.RenameOuterReads(sub, map);
            }
            for (int o = 0; o < copy.Output.Count; o++)
            {
                var name = node.Output[o];
                if (name.Length == 0) continue;
                copy.Output[o] = map[name] = results.TryGetValue(name, out var r) ? r : names.UniqueName($"{callName}/{name}");
            }
            if (functions.TryGetValue((copy.Domain, copy.OpType, copy.Overload), out var callee))
                nodes.AddRange(Expand(copy, callee, functions, names, inner));
            else
            {
                foreach (var a in copy.Attribute)
                {
                    if (a.G is not null) InlineGraph(a.G, functions, names);
                    foreach (var sub in a.Graphs) InlineGraph(sub, functions, names);
                }
                nodes.Add(copy);
            }
        }
        // Outputs no body node produces under the call's name (an input passed straight through): copy them.
        for (int k = 0; k < call.Output.Count; k++)
        {
            if (call.Output[k].Length == 0 || (results.ContainsKey(f.Output[k]) && map.ContainsKey(f.Output[k]))) continue;
            var source = map.TryGetValue(f.Output[k], out var v) && v.Length > 0 ? v
                : throw new OnnxAdadeltaException($"Function '{self}' never computes its output '{f.Output[k]}'.");
            nodes.Add(new NodeProto { OpType = "Identity", Name = names.UniqueName($"{callName}/{f.Output[k]}/Identity"), Input = { source }, Output = { call.Output[k] } });
        }
        return nodes;
    }

    /// <summary>Replaces attribute references by the call's values (recursively through nested subgraphs); unset references are dropped.</summary>
    private static void ResolveReferences(NodeProto node, Dictionary<string, AttributeProto> attributes)
    {
        for (int i = node.Attribute.Count - 1; i >= 0; i--)
        {
            var a = node.Attribute[i];
            if (a.RefAttrName.Length > 0)
            {
                if (attributes.TryGetValue(a.RefAttrName, out var value))
                {
                    var resolved = value.Clone();
                    resolved.Name = a.Name;
                    resolved.RefAttrName = "";
                    node.Attribute[i] = resolved;
                }
                else node.Attribute.RemoveAt(i);
                continue;
            }
            if (a.G is not null) foreach (var n in a.G.Node) ResolveReferences(n, attributes);
            foreach (var sub in a.Graphs) foreach (var n in sub.Node) ResolveReferences(n, attributes);
        }
    }
}
