using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Gradients;
using static OnnxAdadelta.Tests.Gradients.GradientCheck;
using A = OnnxAdadelta.Gradients.GradientContext;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;

namespace OnnxAdadelta.Tests.Gradients;

public class IndexingGradientTests
{
    private static In Int32(string name, long[] values, params long[] shape)
    {
        var t = new TensorProto { Name = name, DataType = (int)DataType.Int32 };
        t.Dims.AddRange(shape);
        t.Int32Data.AddRange(values.Select(v => (int)v));
        return new In(name, [], shape, Differentiable: false) { Ints = t };
    }

    [Fact]
    public void GatherElementsAddsRepeatedAndNegativeIndices()
    {
        // Rows 0 and 2 (= -1) of column 0 are read twice.
        Check("GatherElements", [Random("x", [3, 4], 1), Int64("i", [0, 1, -1, 2, -1, 0, 2, 0, 0, 2, 1, -3], 3, 4)], [A.Attr("axis", 0L)]);
        Check("GatherElements", [Random("x", [3, 4], 2), Int64("i", [3, -1, 0, 1, 1, 2], 3, 2)], [A.Attr("axis", -1L)]);
        Check("GatherElements", [Random("x", [2, 3, 2], 3), Int32("i", [0, 1, -1, 1, 0, 0, 1, 1], 2, 2, 2)], [A.Attr("axis", 1L)]);
    }

    [Fact]
    public void GatherNDWithBatchDimsAndNegativeIndices()
    {
        Check("GatherND", [Random("x", [3, 4], 4), Int64("i", [0, 1, 2, -1, 0, 1], 3, 2)]);          // elements, one twice
        Check("GatherND", [Random("x", [3, 4], 5), Int64("i", [2, -3, 2], 3, 1)]);                   // rows
        Check("GatherND", [Random("x", [2, 3, 4], 6), Int64("i", [1, 2, 0, 0], 2, 2, 1)], [A.Attr("batch_dims", 1L)]);
    }

    [Fact]
    public void ScatterElementsWithoutReductionSendsTheGradientToTheSurvivingUpdate()
    {
        // Column 0: both updates write row 1, and only the later one survives.
        Check("ScatterElements", [Random("x", [3, 3], 7), Int64("i", [1, 0, 2, 1, 2, -3], 2, 3), Random("u", [2, 3], 8)], [A.Attr("axis", 0L)]);
        Check("ScatterElements", [Random("x", [2, 4], 9), Int64("i", [3, 0, -1, 1], 2, 2), Random("u", [2, 2], 10)], [A.Attr("axis", -1L), A.Attr("reduction", "none")]);
    }

    [Fact]
    public void ScatterElementsWithAddSumsIntoData()
    {
        Check("ScatterElements", [Random("x", [3, 3], 11), Int64("i", [1, 0, 2, 1, 2, 0], 2, 3), Random("u", [2, 3], 12)], [A.Attr("axis", 0L), A.Attr("reduction", "add")]);
    }

    [Theory]
    [InlineData("mul")]
    [InlineData("max")]
    public void OtherScatterReductionsAreRefused(string reduction)
    {
        var e = Assert.Throws<OnnxAdadeltaException>(() =>
            Check("ScatterND", [Random("x", [4, 3], 13), Int64("i", [1, 3], 2, 1), Random("u", [2, 3], 14)], [A.Attr("reduction", reduction)], opset: 18));
        Assert.Contains($"reduction='{reduction}'", e.Message);
        Assert.Contains("(ScatterND)", e.Message);
    }

    [Fact]
    public void ScatterNDRowsElementsAndDuplicates()
    {
        Check("ScatterND", [Random("x", [4, 3], 15), Int64("i", [1, 3], 2, 1), Random("u", [2, 3], 16)]);
        Check("ScatterND", [Random("x", [4, 3], 17), Int64("i", [1, 2, 3, 0], 2, 2), Random("u", [2], 18)]);
        Check("ScatterND", [Random("x", [4, 3], 19), Int64("i", [2, 2], 2, 1), Random("u", [2, 3], 20)]);   // the second write wins
        Check("ScatterND", [Random("x", [4, 3], 21), Int64("i", [2, 2, 0], 3, 1), Random("u", [3, 3], 22)], [A.Attr("reduction", "add")]);
    }

    [Theory]
    [InlineData(-1L, 1L, 1L)]
    [InlineData(0L, 0L, 1L)]
    [InlineData(1L, 1L, 0L)]
    public void TopKScattersTheValuesGradient(long axis, long largest, long sorted)
    {
        Check("TopK", [Random("x", [3, 4], 23), Int64("k", [2], 1)],
            [A.Attr("axis", axis), A.Attr("largest", largest), A.Attr("sorted", sorted)], outputs: 2, lossOutputs: [0]);
    }

    [Theory]
    [InlineData(0L, 0L)]
    [InlineData(1L, 0L)]
    [InlineData(0L, 1L)]
    [InlineData(1L, 1L)]
    public void CumSumEveryDirection(long exclusive, long reverse)
    {
        var attributes = new[] { A.Attr("exclusive", exclusive), A.Attr("reverse", reverse) };
        Check("CumSum", [Random("x", [2, 4], 24), Int64("axis", [1])], attributes);
        Check("CumSum", [Random("x", [3, 2], 25), Int32("axis", [-2])], attributes);
    }

    [Fact]
    public void TriluUpperLowerAndDiagonals()
    {
        Check("Trilu", [Random("x", [3, 4], 26)]);
        Check("Trilu", [Random("x", [3, 4], 27), Int64("k", [1])], [A.Attr("upper", 0L)]);
        Check("Trilu", [Random("x", [2, 3, 3], 28), Int64("k", [-1])], [A.Attr("upper", 1L)]);
    }

    [Fact]
    public void ModOfFloatsWithBroadcast()
    {
        Check("Mod", [Random("a", [2, 3], 29, -3, 3), Random("b", [3], 30, 0.6, 1.4)], [A.Attr("fmod", 1L)]);
        Check("Mod", [Random("a", [2, 3], 31, -3, 3), Random("b", [2, 1], 32, -1.4, -0.6)], [A.Attr("fmod", 1L)]);
    }

    [Fact]
    public void WhereWithAConditionOfLowerRankAndSizeOneAxes()
    {
        Check("Where", [Bool("c", [true, false, true], 3), Random("a", [2, 3], 33), Random("b", [2, 1], 34)]);
        Check("Where", [Bool("c", [true, false], 2, 1), Random("a", [3], 35), Random("b", [2, 3], 36)]);
    }

    [Fact]
    public void IndexAndShapeOpsCarryNoGradient()
    {
        foreach (var op in new[] { "ArgMax", "ArgMin", "Range", "Shape", "Size" })
            Assert.Contains(op, GradientRules.NoGradient);
    }
}

public class EinsumGradientTests
{
    [Theory]
    [InlineData("ij,jk->ik", new long[] { 2, 3 }, new long[] { 3, 4 })]
    [InlineData("ij,jk", new long[] { 2, 3 }, new long[] { 3, 4 })]                      // implicit output
    [InlineData("bij,bjk->bik", new long[] { 2, 2, 3 }, new long[] { 2, 3, 2 })]
    [InlineData("bhqd,bhkd->bhqk", new long[] { 1, 2, 3, 2 }, new long[] { 1, 2, 4, 2 })]
    [InlineData("...ij,...jk->...ik", new long[] { 2, 2, 3 }, new long[] { 2, 3, 2 })]
    [InlineData("...ij,jk", new long[] { 2, 2, 3 }, new long[] { 3, 2 })]                // implicit, ellipsis first
    [InlineData("i,j->ij", new long[] { 3 }, new long[] { 2 })]
    [InlineData("ij,k->i", new long[] { 2, 3 }, new long[] { 2 })]                        // letters only one operand has
    [InlineData("ij,ij->ji", new long[] { 2, 3 }, new long[] { 2, 3 })]
    [InlineData("aB,BC->Ca", new long[] { 2, 3 }, new long[] { 3, 2 })]                    // uppercase letters
    [InlineData("...ij,...jk->...ik", new long[] { 1, 2, 3 }, new long[] { 2, 3, 2 })]   // a broadcast ellipsis axis
    [InlineData("ij,jk->ik", new long[] { 2, 1 }, new long[] { 3, 2 })]                   // a broadcast letter
    [InlineData("bij,bjk->bik", new long[] { 2, 2, 3 }, new long[] { 1, 3, 2 })]
    [InlineData("ij, jk -> ik", new long[] { 2, 3 }, new long[] { 3, 2 })]                // spaces
    public void TwoOperands(string equation, long[] a, long[] b) =>
        Check("Einsum", [Random("a", a, 1), Random("b", b, 2)], [A.Attr("equation", equation)]);

    [Theory]
    [InlineData("ijk->kji", new long[] { 2, 3, 4 })]
    [InlineData("ij->", new long[] { 2, 3 })]
    [InlineData("ii->", new long[] { 3, 3 })]                                           // trace
    [InlineData("ii->i", new long[] { 3, 3 })]                                          // diagonal
    [InlineData("ii", new long[] { 3, 3 })]                                             // implicit trace
    [InlineData("bii->bi", new long[] { 2, 3, 3 })]
    [InlineData("iji->j", new long[] { 2, 3, 2 })]
    public void OneOperand(string equation, long[] x) =>
        Check("Einsum", [Random("x", x, 3)], [A.Attr("equation", equation)]);

    [Fact]
    public void ThreeOperandsAndARepeatedLetterOnAnother()
    {
        Check("Einsum", [Random("a", [2, 3], 4), Random("b", [3, 4], 5), Random("c", [4, 2], 6)], [A.Attr("equation", "ij,jk,kl->il")]);
        Check("Einsum", [Random("a", [3, 3], 7), Random("b", [3, 2], 8)], [A.Attr("equation", "ii,ij->j")]);
    }

    [Fact]
    public void SymbolicBatchAxesAreSummedAtRunTimeWhenTheyBroadcast()
    {
        // Different symbols: a's batch might be 1 against b's 2, and is. Same symbol: known equal, nothing summed.
        Check("Einsum", [Random("a", [1, 2, 3], 11), Random("b", [2, 3, 2], 12)], [A.Attr("equation", "bij,bjk->bik")],
            symbols: new Dictionary<string, string[]> { ["a"] = ["p", "", ""], ["b"] = ["q", "", ""] });
        Check("Einsum", [Random("a", [2, 2, 3], 13), Random("b", [2, 3, 2], 14)], [A.Attr("equation", "...ij,...jk->...ik")],
            symbols: new Dictionary<string, string[]> { ["a"] = ["n", "", ""], ["b"] = ["n", "", ""] });
    }

    [Fact]
    public void MalformedEquationsAreRefusedNamingThem()
    {
        // ONNX Runtime rejects these itself when it loads the forward model; the rule must not misread them.
        var node = new NodeProto { OpType = "Einsum", Name = "e", Input = { "a", "b" }, Output = { "y" } };
        node.Attribute.Add(A.Attr("equation", "ij,j.k->ik"));
        var e = Assert.Throws<OnnxAdadeltaException>(() => Explain(node));
        Assert.Contains("'ij,j.k->ik'", e.Message);
        node.Attribute[0] = A.Attr("equation", "ij->ij");
        e = Assert.Throws<OnnxAdadeltaException>(() => Explain(node));
        Assert.Contains("names 1 operands for 2 inputs", e.Message);
    }

    private static void Explain(NodeProto node)
    {
        var types = new Dictionary<string, OnnxAdadelta.Runtime.TypeAndShape>
        {
            ["a"] = new(DataType.Double, [2, 3]), ["b"] = new(DataType.Double, [3, 2]), ["y"] = new(DataType.Double, [2, 2]),
        };
        var graph = new GraphProto();
        var context = new A(new OnnxAdadelta.Graphs.GraphBuilder(graph), node, 17, types, _ => "g", _ => true);
        GradientRules.Find("Einsum")!.Rule!(context);
    }
}
