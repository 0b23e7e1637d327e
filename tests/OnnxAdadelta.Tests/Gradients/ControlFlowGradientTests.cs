using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Gradients;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Onnx;
using static OnnxAdadelta.Tests.Gradients.GradientCheck;
using A = OnnxAdadelta.Gradients.GradientContext;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Gradients;

/// <summary>If, Loop and Scan: finite-difference checks through subgraphs that read outer-scope parameters.</summary>
public class ControlFlowGradientTests
{
    private const DataType D = DataType.Double;

    internal static NodeProto N(string op, string[] inputs, string[] outputs, params AttributeProto[] attributes)
    {
        var n = new NodeProto { OpType = op, Name = outputs[0] + "/" + op };
        n.Input.AddRange(inputs);
        n.Output.AddRange(outputs);
        n.Attribute.AddRange(attributes);
        return n;
    }

    internal static ValueInfoProto V(string name, DataType type, params long[] shape) => TypeProtos.ValueInfo(name, type, shape);

    /// <summary>A value info with an element type and no shape.</summary>
    internal static ValueInfoProto Untyped(string name, DataType type) =>
        new() { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type } } };

    internal static GraphProto Graph(string name, ValueInfoProto[] inputs, ValueInfoProto[] outputs, params NodeProto[] nodes)
    {
        var g = new GraphProto { Name = name };
        g.Input.AddRange(inputs);
        g.Output.AddRange(outputs);
        g.Node.AddRange(nodes);
        return g;
    }

    /// <summary>A bool condition that is a graph input (with a default), so no If on it is folded when the graph is built.</summary>
    private static In Runtime(string name, bool value) => Bool(name, [value]) with { Overridable = true };

    internal static AttributeProto G(string name, GraphProto g) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Graph, G = g };

    // then: x * w; else: x + b (w only in then, b only in else)
    private static AttributeProto[] OneParameterPerBranch(string tag) =>
    [
        G("then_branch", Graph($"then{tag}", [], [Untyped($"t{tag}", D)], N("Mul", ["x", "w"], [$"t{tag}"]))),
        G("else_branch", Graph($"else{tag}", [], [Untyped($"e{tag}", D)], N("Add", ["x", "b"], [$"e{tag}"]))),
    ];

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void IfWithAParameterInOnlyOneBranch(bool condition) =>
        Check("If", [Runtime("c", condition), Random("x", [2, 3], 1), Random("w", [3], 2), Random("b", [2, 3], 3)],
            OneParameterPerBranch(""), nodeInputs: ["c"]);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void AnIfOnAConstantConditionIsFoldedToItsBranch(bool condition)
    {
        // Only the taken branch's parameter has a path to the loss.
        Check("If", [Bool("c", [condition]), Random("x", [2, 3], 30), Random(condition ? "w" : "b", condition ? [3] : [2, 3], 31),
            Fixed(condition ? "b" : "w", [.. Enumerable.Repeat(0.5, condition ? 6 : 3)], condition ? [2, 3] : [3])],
            OneParameterPerBranch(""), nodeInputs: ["c"]);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void IfWithAParameterInBothBranchesAndTwoOutputs(bool condition)
    {
        // then: (tanh(x*w), w); else: (w*w + x, x) — w reaches both outputs in both branches differently.
        var then = Graph("then", [], [Untyped("t0", D), Untyped("t1", D)],
            N("Mul", ["x", "w"], ["tm"]), N("Tanh", ["tm"], ["t0"]), N("Identity", ["w"], ["t1"]));
        var otherwise = Graph("else", [], [Untyped("e0", D), Untyped("e1", D)],
            N("Mul", ["w", "w"], ["ww"]), N("Add", ["ww", "x"], ["e0"]), N("Identity", ["x"], ["e1"]));
        Check("If", [Runtime("c", condition), Random("x", [3], 4), Random("w", [3], 5)],
            [G("then_branch", then), G("else_branch", otherwise)], outputs: 2, nodeInputs: ["c"]);
    }

    [Fact]
    public void IfInsideAnIfBranch()
    {
        // outer then: inner If(c2) of (x*w | x+b), then * w; outer else: b * b
        var inner = N("If", ["c2"], ["inner"], OneParameterPerBranch("_in"));
        var then = Graph("then", [], [Untyped("t", D)], inner, N("Mul", ["inner", "w"], ["t"]));
        var otherwise = Graph("else", [], [Untyped("e", D)], N("Mul", ["b", "b"], ["e"]));
        foreach (var (c1, c2) in new[] { (true, true), (true, false), (false, true) })
            Check("If", [Runtime("c", c1), Runtime("c2", c2), Random("x", [3], 6), Random("w", [3], 7), Random("b", [3], 8)],
                [G("then_branch", then), G("else_branch", otherwise)], nodeInputs: ["c"]);
    }

    /// <summary>Body: h' = tanh(h * w + iter * b); scan output h' * w.</summary>
    private static GraphProto LoopBody() => Graph("body",
        [V("iter", DataType.Int64), V("cond_in", DataType.Bool), V("h", D, 2)],
        [V("cond_out", DataType.Bool), Untyped("h_next", D), Untyped("s", D)],
        N("Identity", ["cond_in"], ["cond_out"]),
        N("Cast", ["iter"], ["iter_f"], A.Attr("to", (long)D)),
        N("Mul", ["h", "w"], ["hw"]), N("Mul", ["iter_f", "b"], ["ib"]), N("Add", ["hw", "ib"], ["pre"]),
        N("Tanh", ["pre"], ["h_next"]), N("Mul", ["h_next", "w"], ["s"]));

    [Fact]
    public void LoopWithACarriedStateAndAScanOutput()
    {
        // The loop decomposes (unrolls): this is the finite-difference test of the decomposition mechanism too.
        Check("Loop", [Int64("M", [3]), Bool("cond", [true]), Random("h0", [2], 9), Random("w", [2], 10), Random("b", [2], 11)],
            [G("body", LoopBody())], outputs: 2, nodeInputs: ["M", "cond", "h0"]);
        Check("Loop", [Int64("M", [1]), Random("h0", [2], 12), Random("w", [2], 13), Random("b", [2], 14)],
            [G("body", LoopBody())], outputs: 2, nodeInputs: ["M", "", "h0"], lossOutputs: [1]);
    }

    [Fact]
    public void AnIfInsideALoopBody()
    {
        // iteration 0 takes the then branch (x*w, x is the carried value), later ones the else branch (x+b).
        var body = Graph("body",
            [V("iter", DataType.Int64), V("cond_in", DataType.Bool), V("x", D, 3)],
            [V("cond_out", DataType.Bool), Untyped("x_next", D)],
            N("Identity", ["cond_in"], ["cond_out"]),
            N("Less", ["iter", "one"], ["first"]),
            N("If", ["first"], ["branch"], OneParameterPerBranch("")),
            N("Tanh", ["branch"], ["x_next"]));
        body.Initializer.Add(Tensors.Create("one", [1L]));
        Check("Loop", [Int64("M", [3]), Random("x0", [3], 15), Random("w", [3], 16), Random("b", [3], 17)],
            [G("body", body)], nodeInputs: ["M", "", "x0"]);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ALoopInsideAnIfBranch(bool condition)
    {
        // The Loop decomposes inside the gradient If's then branch (types there come from a probe of the branch).
        var then = Graph("then", [], [Untyped("lf", D)], N("Loop", ["M", "", "x"], ["lf", "ls"], G("body", LoopBody())));
        var otherwise = Graph("else", [], [Untyped("e", D)], N("Mul", ["x", "w"], ["e"]));
        Check("If", [Runtime("c", condition), Int64("M", [2]), Random("x", [2], 27), Random("w", [2], 28), Random("b", [2], 29)],
            [G("then_branch", then), G("else_branch", otherwise)], nodeInputs: ["c"]);
    }

    [Fact]
    public void ALoopWithARunTimeTripCountIsRefused()
    {
        var m = new ModelProto { IrVersion = 9, Graph = Graph("g", [V("x", D, 2), V("n", DataType.Int64)], [Untyped("y", D)],
            N("Loop", ["n", "", "x"], ["y"], G("body", Without(LoopBody(), 2)))) };
        m.Graph.Initializer.Add(Tensors.Create("w", [0.5, 0.25], 2));
        m.Graph.Initializer.Add(Tensors.Create("b", [0.1, 0.2], 2));
        m.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        var e = Assert.Throws<OnnxAdadeltaException>(() => GradientGraphBuilder.Build(m, new BuildTrainingOptions { Loss = LossKind.Mse, Output = "y" }));
        Assert.Equal("Gradient of node 'y/Loop' (Loop, through its decomposition): the trip count 'n' is computed at run time, so the loop cannot be unrolled; fix the model's input shapes (build-training --input-shape NAME=D0,D1,...) so that it is known when the graph is built.", e.Message);
    }

    private static GraphProto Without(GraphProto g, int output)
    {
        var c = g.Clone();
        c.Output.RemoveAt(output);
        return c;
    }

    /// <summary>Body: s' = s * w + x_t; out = tanh(s') .</summary>
    private static GraphProto ScanBody() => Graph("body",
        [V("s", D, 2), V("xt", D, 2)],
        [Untyped("s_next", D), Untyped("o", D)],
        N("Mul", ["s", "w"], ["sw"]), N("Add", ["sw", "xt"], ["s_next"]), N("Tanh", ["s_next"], ["o"]));

    [Fact]
    public void ScanForward()
    {
        Check("Scan", [Random("s0", [2], 18), Random("X", [4, 2], 19), Random("w", [2], 20)],
            [G("body", ScanBody()), A.Attr("num_scan_inputs", 1L)], outputs: 2, nodeInputs: ["s0", "X"]);
    }

    [Fact]
    public void ScanReverseAlongOtherAxes()
    {
        // X is [2, 3]: scanned along axis 1 from the end; outputs stacked along axis -1 (1) in reverse.
        Check("Scan", [Random("s0", [2], 21), Random("X", [2, 3], 22), Random("w", [2], 23)],
            [G("body", ScanBody()), A.Attr("num_scan_inputs", 1L), A.Attr("scan_input_axes", [1L]), A.Attr("scan_input_directions", [1L]),
             A.Attr("scan_output_axes", [-1L]), A.Attr("scan_output_directions", [1L])], outputs: 2, nodeInputs: ["s0", "X"]);
        // Forward input direction, reverse output direction along axis 0.
        Check("Scan", [Random("s0", [2], 24), Random("X", [3, 2], 25), Random("w", [2], 26)],
            [G("body", ScanBody()), A.Attr("num_scan_inputs", 1L), A.Attr("scan_output_directions", [1L])], outputs: 2, nodeInputs: ["s0", "X"]);
    }

    [Fact]
    public void NoPathErrorsNameTheNodesThatBlockIt()
    {
        var m = new ModelProto { IrVersion = 9, Graph = Graph("g", [V("x", DataType.Float, 2)], [Untyped("y", DataType.Float)],
            N("Mul", ["x", "w"], ["xw"]),
            N("Shape", ["xw"], ["s"]), N("Cast", ["s"], ["sf"], A.Attr("to", (long)DataType.Float)),
            N("Cast", ["xw"], ["ci"], A.Attr("to", (long)DataType.Int64)), N("Cast", ["ci"], ["cf"], A.Attr("to", (long)DataType.Float)),
            N("ReduceSum", ["sf"], ["r"]), N("Add", ["r", "cf"], ["y"])) };
        m.Graph.Initializer.Add(Tensors.Create("w", [0.5f, 2f], 2));
        m.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        var e = Assert.Throws<OnnxAdadeltaException>(() => GradientGraphBuilder.Build(m, new BuildTrainingOptions { Loss = LossKind.Mse, Output = "y" }));
        Assert.Equal("No trainable parameter has a differentiable path to the loss 'loss' (float initializers, or inputs named with --trainable); "
            + "paths stop at Shape (node 's/Shape': the op has no gradient), Cast (node 'ci/Cast': its output 'ci' is int64).", e.Message);
    }

    [Fact]
    public void ARankGuardIsFoldedSoTheBranchThatNeverRunsIsNotDifferentiated()
    {
        // cond = (rank(x) == 2): x is [2, 3], so the then branch always runs. The else branch goes through an op
        // without a gradient rule (LpNormalization): differentiated, it would be an error.
        var then = Graph("then", [], [Untyped("t", DataType.Float)], N("Mul", ["x", "w"], ["t"]));
        var otherwise = Graph("else", [], [Untyped("e", DataType.Float)], N("Mul", ["x", "w"], ["xw"]), N("LpNormalization", ["xw"], ["e"]));
        var m = new ModelProto { IrVersion = 9, Graph = Graph("g", [V("x", DataType.Float, 2, 3)], [V("y", DataType.Float, 2, 3)],
            N("Shape", ["x"], ["s"]), N("Size", ["s"], ["rank"]), N("Equal", ["rank", "r2"], ["cond"]),
            N("If", ["cond"], ["y"], G("then_branch", then), G("else_branch", otherwise))) };
        m.Graph.Initializer.Add(Tensors.Create("w", [0.5f, 2f, -1f], 3));
        m.Graph.Initializer.Add(Tensors.Create("r2", [2L]));
        m.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        var training = GradientGraphBuilder.Build(m, new BuildTrainingOptions { Loss = LossKind.Mse, Output = "y" });
        Assert.DoesNotContain(training.Graph.Node, n => n.OpType == "If");
        Assert.Contains(training.Graph.Output, o => o.Name == "w_grad");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ARankGuardInsideABranchIsFolded(bool condition)
    {
        // then: If(rank(x) == 1) of (x * w | LpNormalization(x * w), no gradient rule); else: x + w.
        var guard = Graph("then", [], [Untyped("t", D)],
            N("Shape", ["x"], ["s"]), N("Size", ["s"], ["r"]), N("Equal", ["r", "one"], ["is1"]),
            N("If", ["is1"], ["t"],
                G("then_branch", Graph("t1", [], [Untyped("a", D)], N("Mul", ["x", "w"], ["a"]))),
                G("else_branch", Graph("t2", [], [Untyped("n", D)], N("Mul", ["x", "w"], ["xw"]), N("LpNormalization", ["xw"], ["n"])))));
        guard.Initializer.Add(Tensors.Create("one", [1L]));
        var otherwise = Graph("else", [], [Untyped("e", D)], N("Add", ["x", "w"], ["e"]));
        Check("If", [Runtime("c", condition), Random("x", [3], 32), Random("w", [3], 33)],
            [G("then_branch", guard), G("else_branch", otherwise)], nodeInputs: ["c"]);
    }
}
