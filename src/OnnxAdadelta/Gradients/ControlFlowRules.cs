using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Onnx;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;
using OnnxAdadelta.Graphs;

namespace OnnxAdadelta.Gradients;

/// <summary>
/// Gradients of control flow: If gets a gradient If on the same condition whose branches recompute and differentiate
/// the forward branches; Loop and Scan with a trip count known when the graph is built are unrolled by a decomposition.
/// </summary>
/// <remarks>
/// Subgraphs read outer-scope values that are not node inputs; their gradients are handed back with
/// <see cref="GradientContext.SetOuterGI"/>. A Loop whose trip count or condition is computed at run time, and a Scan
/// whose sequence length is not static, are refused with a message naming the node.
/// </remarks>
public static partial class GradientRules
{
    private static void RegisterControlFlow(Dictionary<string, GradientRuleInfo> r)
    {
        Add(r, IfGradient, Inputs(), "If");
        AddDecomposition(r, LoopDecomposition, "Loop");
        AddDecomposition(r, ScanDecomposition, "Scan");
    }

    private static void KnownAttributes(NodeRuleContext c, params string[] known)
    {
        foreach (var a in c.Node.Attribute)
            if (!known.Contains(a.Name))
                throw c.Fail($"attribute '{a.Name}' is not handled (known: {string.Join(", ", known)})");
    }

    private static GraphProto Subgraph(NodeRuleContext c, string name) =>
        c.Attribute(name)?.G ?? throw c.Fail($"the graph attribute '{name}' is missing");

    private static AttributeProto GraphAttr(string name, GraphProto g) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Graph, G = g };

    /// <summary>
    /// If: both branches are differentiated from the gradients of the If's outputs with respect to every outer-scope
    /// value whose gradient is needed (zeros from a branch that does not read it); a gradient If on the same condition
    /// picks the taken branch's gradients.
    /// </summary>
    private static void IfGradient(GradientContext c)
    {
        KnownAttributes(c, "then_branch", "else_branch");
        var pass = c.Pass ?? throw c.Fail("the rule needs the driver's pass");
        var wrt = c.OuterInputs.Where(c.IsOuterGradientRequired).ToList();
        if (wrt.Count == 0) return;
        var gradients = Enumerable.Range(0, c.Node.Output.Count).Select(c.GO).ToList();
        var then = pass.DifferentiateSubgraph(c, Subgraph(c, "then_branch"), gradients, wrt, "then");
        var otherwise = pass.DifferentiateSubgraph(c, Subgraph(c, "else_branch"), gradients, wrt, "else");
        var outputs = c.Ops("If", [c.I(0)], wrt.Count, GraphAttr("then_branch", then), GraphAttr("else_branch", otherwise));
        for (int k = 0; k < wrt.Count; k++) c.SetOuterGI(wrt[k], outputs[k]);
    }

    private static string StaticHint(NodeRuleContext c) =>
        $"fix the model's input shapes (build-training --input-shape NAME=D0,D1,...) so that it is known when the graph is built";

    /// <summary>
    /// Loop with a constant trip count M and a condition that stays true (the loop input is absent or constant true,
    /// and the body passes its condition input through or outputs constant true): unrolled M times; loop-carried
    /// values thread through the copies and scan outputs are stacked on a new leading axis.
    /// </summary>
    private static void LoopDecomposition(DecompositionContext c)
    {
        KnownAttributes(c, "body");
        var body = Subgraph(c, "body");
        if (!c.HasInput(0)) throw c.Fail("the loop has no trip count M (it runs until its condition turns false), so it cannot be unrolled");
        var m = c.ConstantInts(0) ?? throw c.Fail($"the trip count '{c.I(0)}' is computed at run time, so the loop cannot be unrolled; {StaticHint(c)}");
        if (m.Length != 1 || m[0] < 0) throw c.Fail($"the trip count '{c.I(0)}' is [{string.Join(",", m)}]; a non-negative scalar is expected");
        if (c.HasInput(1) && c.ConstantInts(1) is not [1])
            throw c.Fail($"the loop condition '{c.I(1)}' is not constant true; only loops that run exactly M times can be unrolled");
        int n = c.Node.Input.Count - 2;
        if (body.Input.Count != n + 2) throw c.Fail($"the body takes {body.Input.Count} inputs; {n + 2} (iteration, condition and {n} loop-carried values) were expected");
        int k = body.Output.Count - 1 - n;
        if (k < 0) throw c.Fail($"the body has {body.Output.Count} outputs; at least {n + 1} were expected");
        if (!ConditionStaysTrue(body, c)) throw c.Fail($"the body computes its condition '{body.Output[0].Name}'; only loops whose condition stays true can be unrolled");

        var trips = m[0];
        if (trips > 4096) throw c.Fail($"the trip count {trips} is too large to unroll (at most 4096)");
        var carried = Enumerable.Range(0, n).Select(j => c.I(2 + j)).ToArray();
        var scans = Enumerable.Range(0, k).Select(_ => new List<string>()).ToArray();
        var yes = trips > 0 ? c.Op("Cast", [c.ScalarInt64(1)], NodeRuleContext.Attr("to", (long)DataType.Bool)) : "";
        for (long t = 0; t < trips; t++)
        {
            var outs = c.Inline(body, [c.ScalarInt64(t), yes, .. carried], $"iter{t}");
            carried = outs[1..(1 + n)];
            for (int j = 0; j < k; j++) scans[j].Add(c.Op("Unsqueeze", [outs[1 + n + j], c.Ints64(0)]));
        }
        for (int j = 0; j < n; j++)
            if (c.HasOutput(j)) c.SetOutput(j, trips > 0 ? carried[j] : c.Op("Identity", [carried[j]]));
        for (int j = 0; j < k; j++)
        {
            if (!c.HasOutput(n + j)) continue;
            if (trips == 0) throw c.Fail($"the scan output '{c.O(n + j)}' of a loop that runs 0 times has no known shape");
            c.SetOutput(n + j, scans[j].Count == 1 ? scans[j][0] : c.Op("Concat", [.. scans[j]], NodeRuleContext.Attr("axis", 0L)));
        }
    }

    /// <summary>Whether a Loop body's condition output is its condition input passed through, or constant true.</summary>
    private static bool ConditionStaysTrue(GraphProto body, DecompositionContext c)
    {
        var cond = body.Output[0].Name;
        var input = body.Input[1].Name;
        for (int hops = 0; hops < 16; hops++)
        {
            if (cond == input) return true;
            if (body.Initializer.FirstOrDefault(t => t.Name == cond) is { } init) return IsTrue(init);
            var producer = body.Node.FirstOrDefault(nd => nd.Output.Contains(cond));
            if (producer is null) return c.ConstantValue(cond) is [1];
            if (producer.OpType == "Identity") { cond = producer.Input[0]; continue; }
            if (producer.OpType == "Constant" && producer.Attribute.FirstOrDefault(a => a.Name == "value") is { } v) return IsTrue(v.T);
            return false;
        }
        return false;
    }

    private static bool IsTrue(TensorProto t) => t.DataType == (int)DataType.Bool && t.ToArray<bool>() is [true];

    /// <summary>
    /// Scan with a static sequence length: unrolled over the sequence, each step slicing the scan inputs (Gather at
    /// the step's position along each input's scan axis, from the end for reverse directions), threading the states,
    /// and stacking the scan outputs along their axes (in reverse for reverse directions).
    /// </summary>
    private static void ScanDecomposition(DecompositionContext c)
    {
        KnownAttributes(c, "body", "num_scan_inputs", "scan_input_axes", "scan_input_directions", "scan_output_axes", "scan_output_directions");
        var body = Subgraph(c, "body");
        var m = (int)c.Int("num_scan_inputs", -1);
        if (m < 1 || m > c.Node.Input.Count) throw c.Fail($"num_scan_inputs {m} is out of range [1, {c.Node.Input.Count}]");
        int n = c.Node.Input.Count - m;
        int k = body.Output.Count - n;
        if (body.Input.Count != n + m) throw c.Fail($"the body takes {body.Input.Count} inputs; {n + m} ({n} states and {m} scan slices) were expected");
        if (k < 0) throw c.Fail($"the body has {body.Output.Count} outputs; at least {n} were expected");
        long[] Per(string name, int count)
        {
            var v = c.Ints(name) ?? new long[count];
            if (v.Length != count) throw c.Fail($"attribute '{name}' has {v.Length} values; {count} were expected");
            return v;
        }
        var inDirs = Per("scan_input_directions", m);
        var inAxes = Per("scan_input_axes", m);
        var outDirs = Per("scan_output_directions", k);
        var outAxes = Per("scan_output_axes", k);
        foreach (var d in inDirs.Concat(outDirs))
            if (d is not (0 or 1)) throw c.Fail($"a scan direction is {d}; 0 (forward) or 1 (reverse) is expected");

        long? length = null;
        var axes = new long[m];
        for (int j = 0; j < m; j++)
        {
            var x = c.I(n + j);
            int rank = c.Rank(x);
            var a = inAxes[j] < 0 ? inAxes[j] + rank : inAxes[j];
            if (a < 0 || a >= rank) throw c.Fail($"scan_input_axes[{j}] = {inAxes[j]} is out of range for '{x}' of rank {rank}");
            axes[j] = a;
            if (c.Type(x).Dims![a] is { } size)
            {
                if (length is { } l && l != size) throw c.Fail($"the scan inputs have different sequence lengths ({l} and {size} for '{x}')");
                length = size;
            }
        }
        var steps = length ?? throw c.Fail($"the sequence length of '{c.I(n)}' along axis {axes[0]} is not static, so the scan cannot be unrolled; {StaticHint(c)}");
        if (steps > 4096) throw c.Fail($"the sequence length {steps} is too large to unroll (at most 4096)");

        var states = Enumerable.Range(0, n).Select(c.I).ToArray();
        var per = Enumerable.Range(0, k).Select(_ => new List<string>()).ToArray();
        for (long t = 0; t < steps; t++)
        {
            var slices = Enumerable.Range(0, m).Select(j =>
                c.Op("Gather", [c.I(n + j), c.ScalarInt64(inDirs[j] == 1 ? steps - 1 - t : t)], NodeRuleContext.Attr("axis", axes[j]))).ToArray();
            var outs = c.Inline(body, [.. states, .. slices], $"step{t}");
            states = outs[..n];
            for (int j = 0; j < k; j++) per[j].Add(outs[n + j]);
        }
        for (int j = 0; j < n; j++)
            if (c.HasOutput(j)) c.SetOutput(j, steps > 0 ? states[j] : c.Op("Identity", [states[j]]));
        for (int j = 0; j < k; j++)
        {
            if (!c.HasOutput(n + j)) continue;
            if (steps == 0) throw c.Fail($"the scan output '{c.O(n + j)}' of an empty sequence has no known shape");
            int rank = c.Rank(c.O(n + j));
            var a = outAxes[j] < 0 ? outAxes[j] + rank : outAxes[j];
            if (a < 0 || a >= rank) throw c.Fail($"scan_output_axes[{j}] = {outAxes[j]} is out of range for '{c.O(n + j)}' of rank {rank}");
            var items = outDirs[j] == 1 ? per[j].AsEnumerable().Reverse() : per[j];
            var stacked = items.Select(v => c.Op("Unsqueeze", [v, c.Ints64(a)])).ToArray();
            c.SetOutput(n + j, stacked.Length == 1 ? stacked[0] : c.Op("Concat", stacked, NodeRuleContext.Attr("axis", a)));
        }
    }
}
