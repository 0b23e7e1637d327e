namespace OnnxAdadelta.Gradients;

/// <summary>Gradients of MatMul (numpy semantics: batched, broadcast batch axes, 1-D operands), Gemm and Einsum.</summary>
public static partial class GradientRules
{
    private static void RegisterLinearAlgebra(Dictionary<string, GradientRuleInfo> r)
    {
        Add(r, MatMulGradient, null, "MatMul");
        Add(r, GemmGradient, null, "Gemm");
        Add(r, EinsumGradient, null, "Einsum");
    }

    /// <summary>
    /// Einsum (equation; explicit or implicit output, ellipsis, repeated letters). The equation is first made
    /// explicit: each "..." becomes fresh letters (right-aligned, as the ellipsis broadcasts) and an implicit output is
    /// ONNX Runtime's: the ellipsis letters, then the letters that occur once, lowercase then uppercase, each
    /// alphabetically. Y is multilinear, so operand k's gradient is another Einsum: the output gradient (with the
    /// output's letters) times the other operands, summed down to operand k's distinct letters. Letters that only
    /// operand k has were summed over in Y: the gradient is broadcast along them. A letter repeated within operand k
    /// (a diagonal or trace) gets its gradient on the diagonal only: the Einsum takes identity matrices that copy
    /// it there. Where operand k has size 1 along a letter that another operand has larger (Einsum broadcasts such
    /// letters, ellipsis axes included), the gradient is summed over it: statically when the sizes are known, at run
    /// time (the axes where the operand's size is 1) when they are symbolic and might differ.
    /// </summary>
    private static void EinsumGradient(GradientContext c)
    {
        RefuseUnknownAttributes(c, "equation");
        var equation = c.String("equation", "");
        var e = Einsum.Explicit(c, equation);
        var go = c.GO(0)!;
        for (int k = 0; k < e.Inputs.Length; k++)
        {
            if (!c.IsGradientRequired(k)) continue;
            var term = e.Inputs[k];
            var distinct = term.Distinct().ToArray();
            var elsewhere = e.Output.Concat(e.Inputs.Where((_, j) => j != k).SelectMany(t => t)).ToHashSet();
            var kept = distinct.Where(elsewhere.Contains).ToArray();
            var dropped = distinct.Where(l => !elsewhere.Contains(l)).ToArray();

            var operands = new List<string> { go };
            var subscripts = new List<string> { e.Output };
            for (int j = 0; j < e.Inputs.Length; j++)
            {
                if (j == k) continue;
                operands.Add(c.I(j));
                subscripts.Add(e.Inputs[j]);
            }
            var g = operands.Count == 1 && subscripts[0] == new string(kept)
                ? go
                : c.Op("Einsum", [.. operands], GradientContext.Attr("equation", $"{string.Join(",", subscripts)}->{new string(kept)}"));

            // The dimension of each distinct letter at its first position in operand k.
            var x = c.I(k);
            var letters = kept.Concat(dropped).ToArray();
            if (dropped.Length > 0)
            {
                var positions = letters.Select(l => (long)term.IndexOf(l)).ToArray();
                var trailing = Enumerable.Range(kept.Length, dropped.Length).Select(a => (long)a).ToArray();
                g = c.Op("Expand", [c.Op("Unsqueeze", [g, c.Ints64(trailing)]), c.Op("Gather", [c.Shape(x), c.Ints64(positions)])]);
            }
            c.SetGI(k, Einsum.Unbroadcast(c, Einsum.Arrange(c, g, new string(letters), term, x), e, k));
        }
    }

    /// <summary>
    /// Y = A·B with numpy's rules: a 1-D A is read as [1,K] and a 1-D B as [K,1], the added axis then dropped from Y;
    /// batch axes broadcast. With A and B so promoted (Â, B̂) and the dropped axes put back into GO (Ĝ):
    /// dÂ = Ĝ·B̂ᵀ and dB̂ = Âᵀ·Ĝ, each of shape [batch(Y)…, rows, cols]; the promoted axis is squeezed out again and
    /// the broadcast batch axes are summed down to the operand's shape.
    /// </summary>
    private static void MatMulGradient(GradientContext c)
    {
        RefuseUnknownAttributes(c);
        string a = c.I(0), b = c.I(1), go = c.GO(0)!;
        var aDims = DimsOf(c, a);
        var bDims = DimsOf(c, b);
        int ra = aDims.Length, rb = bDims.Length;
        if (ra == 0 || rb == 0) throw c.Fail("MatMul of a scalar (rank-0) operand is not defined");
        var yDims = DimsOf(c, c.O(0));
        int batch = Math.Max(Math.Max(ra, 2), Math.Max(rb, 2)) - 2;
        if (yDims.Length != batch + (ra > 1 ? 1 : 0) + (rb > 1 ? 1 : 0))
            throw c.Fail($"the output '{c.O(0)}' has rank {yDims.Length}, which does not follow from operands of rank {ra} and {rb}");
        var yBatch = yDims[..batch];

        // GO with the row axis of a 1-D A and the column axis of a 1-D B put back: [batch…, M, N].
        var g = (ra == 1, rb == 1) switch
        {
            (true, true) => Unsqueeze(c, go, 0, 1),
            (true, false) => Unsqueeze(c, go, -2),
            (false, true) => Unsqueeze(c, go, -1),
            _ => go,
        };

        if (c.IsGradientRequired(0))
        {
            var bt = rb == 1 ? Unsqueeze(c, b, 0) : TransposeLastTwo(c, b, rb); // [batch…, N, K]
            var da = c.Op("MatMul", [g, bt]);                                   // [batch(Y)…, M, K]
            long?[] daDims;
            if (ra == 1)
            {
                da = c.Op("Squeeze", [da, c.Ints64(-2)]);
                daDims = [.. yBatch, aDims[0]];
            }
            else daDims = [.. yBatch, aDims[^2], aDims[^1]];
            c.SetGI(0, c.Unbroadcast(da, daDims, a));
        }
        if (c.IsGradientRequired(1))
        {
            var at = ra == 1 ? Unsqueeze(c, a, 1) : TransposeLastTwo(c, a, ra); // [batch…, K, M]
            var db = c.Op("MatMul", [at, g]);                                   // [batch(Y)…, K, N]
            long?[] dbDims;
            if (rb == 1)
            {
                db = c.Op("Squeeze", [db, c.Ints64(-1)]);
                dbDims = [.. yBatch, bDims[0]];
            }
            else dbDims = [.. yBatch, bDims[^2], bDims[^1]];
            c.SetGI(1, c.Unbroadcast(db, dbDims, b));
        }
    }

    /// <summary>
    /// Y = alpha·A'·B' + beta·C with A' = transA ? Aᵀ : A and B' likewise. dA' = alpha·GO·B'ᵀ and dB' = alpha·A'ᵀ·GO,
    /// each transposed back when its operand was transposed, written as one Gemm per operand; dC = beta·GO summed
    /// down to C's (unidirectionally broadcast) shape.
    /// </summary>
    private static void GemmGradient(GradientContext c)
    {
        RefuseUnknownAttributes(c, "alpha", "beta", "transA", "transB");
        string a = c.I(0), b = c.I(1), go = c.GO(0)!;
        float alpha = c.Float("alpha", 1f), beta = c.Float("beta", 1f);
        bool ta = c.Int("transA", 0) != 0, tb = c.Int("transB", 0) != 0;
        if (c.IsGradientRequired(0))
            c.SetGI(0, ta ? Gemm(c, b, go, tb, true, alpha) : Gemm(c, go, b, false, !tb, alpha));
        if (c.IsGradientRequired(1))
            c.SetGI(1, tb ? Gemm(c, go, a, true, ta, alpha) : Gemm(c, a, go, !ta, false, alpha));
        if (c.IsGradientRequired(2))
            c.SetGIBroadcast(2, beta == 1f ? go : c.Op("Mul", [go, c.Scalar(beta, go)]), c.O(0));
    }

    /// <summary>alpha · op(x) · op(y) as a Gemm without C.</summary>
    private static string Gemm(GradientContext c, string x, string y, bool transX, bool transY, float alpha)
    {
        var attributes = new List<global::OnnxAdadelta.Onnx.Proto.AttributeProto>();
        if (transX) attributes.Add(GradientContext.Attr("transA", 1L));
        if (transY) attributes.Add(GradientContext.Attr("transB", 1L));
        if (alpha != 1f) attributes.Add(GradientContext.Attr("alpha", alpha));
        return c.Op("Gemm", [x, y], [.. attributes]);
    }

    /// <summary>Einsum equations made explicit, and the placing of a gradient on an operand's letters.</summary>
    private static class Einsum
    {
        /// <summary>An equation with every ellipsis spelled out and the output explicit.</summary>
        public sealed record Equation(string[] Inputs, string Output);

        /// <summary>Parses <paramref name="equation"/> for the node's operands; fails naming it when malformed.</summary>
        public static Equation Explicit(GradientContext c, string equation)
        {
            var eq = equation.Replace(" ", "");
            if (eq.Length == 0) throw c.Fail("the equation is empty");
            var sides = eq.Split("->");
            if (sides.Length > 2) throw c.Fail($"equation '{equation}' has more than one '->'");
            var terms = sides[0].Split(',');
            if (terms.Length != c.Node.Input.Count)
                throw c.Fail($"equation '{equation}' names {terms.Length} operands for {c.Node.Input.Count} inputs");
            bool Valid(string t) => t.Replace("...", "").All(char.IsAsciiLetter) && t.Split("...").Length <= 2;
            if (!terms.All(Valid) || (sides.Length == 2 && !Valid(sides[1])))
                throw c.Fail($"equation '{equation}' is not made of letters and at most one '...' per term");

            var used = eq.Where(char.IsAsciiLetter).ToHashSet();
            var dims = Enumerable.Range(0, terms.Length).Select(k => DimsOf(c, c.I(k))).ToArray();
            var ellipsisRanks = terms.Select((t, k) =>
            {
                int letters = t.Replace("...", "").Length;
                int rank = t.Contains("...") ? dims[k].Length - letters : 0;
                if (rank < 0 || (!t.Contains("...") && dims[k].Length != letters))
                    throw c.Fail($"operand {k} of equation '{equation}' has rank {dims[k].Length}, which does not fit '{t}'");
                return rank;
            }).ToArray();
            int ellipsis = ellipsisRanks.Max();
            var fresh = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".Where(l => !used.Contains(l)).Take(ellipsis).ToArray();
            if (fresh.Length < ellipsis) throw c.Fail($"equation '{equation}' uses too many letters to spell out its ellipsis");

            var inputs = terms.Select((t, k) => t.Replace("...", new string(fresh[(ellipsis - ellipsisRanks[k])..]))).ToArray();
            string output;
            if (sides.Length == 2)
            {
                output = sides[1].Replace("...", new string(fresh));
                if (output.Distinct().Count() != output.Length) throw c.Fail($"equation '{equation}' repeats a letter in its output");
                var all = inputs.SelectMany(t => t).ToHashSet();
                if (output.Any(l => !all.Contains(l))) throw c.Fail($"equation '{equation}' has an output letter no operand has");
            }
            else
            {
                var counts = inputs.SelectMany(t => t).Where(l => !fresh.Contains(l)).GroupBy(l => l).Where(g => g.Count() == 1).Select(g => g.Key).ToArray();
                output = new string([.. fresh, .. counts.Where(char.IsAsciiLetterLower).Order(), .. counts.Where(char.IsAsciiLetterUpper).Order()]);
            }
            return new Equation(inputs, output);
        }

        /// <summary>
        /// Fits <paramref name="g"/>, laid out as operand <paramref name="k"/>, to the operand's shape where Einsum
        /// broadcast a letter. It is summed over the axes where the operand has size 1 and the letter is larger
        /// elsewhere: an axis whose size is symbolic is summed at run time, when it is 1, unless every other occurrence of
        /// its letter has the same symbol (or a static 1); summing a size-1 axis is harmless, so an axis of static size 1
        /// is summed whenever another occurrence might be larger. Where every other occurrence of a letter is (or may be)
        /// 1 while the operand's is larger, the Einsum gave size 1 and the result is expanded to the operand's shape.
        /// </summary>
        public static string Unbroadcast(GradientContext c, string g, Equation e, int k)
        {
            var x = c.I(k);
            var type = c.Type(x);
            var term = e.Inputs[k];
            var occurrences = new List<(char Letter, long? Size, string? Symbol)>();
            void Collect(string subscripts, string value)
            {
                var t = c.Type(value);
                for (int q = 0; q < subscripts.Length; q++) occurrences.Add((subscripts[q], t.Dims![q], t.Symbol(q)));
            }
            Collect(e.Output, c.O(0));
            for (int j = 0; j < e.Inputs.Length; j++)
                if (j != k) Collect(e.Inputs[j], c.I(j));
            var summed = new List<long>();
            var dynamic = new List<long>();
            bool expand = false;
            for (int p = 0; p < term.Length; p++)
            {
                long? size = type.Dims![p];
                var symbol = type.Symbol(p);
                var others = occurrences.Where(o => o.Letter == term[p]).ToArray();
                // Every other occurrence of size 1 (or possibly so): the Einsum gave size 1 where the operand is larger.
                if (size != 1 && others.Length > 0 && others.All(o => o.Size == 1 || (o.Size is null && (symbol is null || o.Symbol != symbol))))
                    expand = true;
                if (size is not null && size != 1) continue;
                bool larger = size == 1
                    ? others.Any(o => o.Size != 1)
                    : others.Any(o => o.Size != 1 && (symbol is null || o.Symbol != symbol));
                if (!larger) continue;
                (size == 1 ? summed : dynamic).Add(p);
            }
            if (summed.Count > 0) g = c.ReduceSum(g, [.. summed], keepDims: true);
            if (dynamic.Count > 0)
            {
                var candidates = c.Ints64([.. dynamic]);
                var isOne = c.Op("Equal", [c.Op("Gather", [c.Shape(x), candidates]), c.Ints64(1)]);
                var axes = c.Op("Compress", [candidates, isOne], GradientContext.Attr("axis", 0L));
                g = c.Op("ReduceSum", [g, axes], GradientContext.Attr("keepdims", 1L), GradientContext.Attr("noop_with_empty_axes", 1L));
            }
            return expand ? c.Op("Expand", [g, c.Shape(x)]) : g;
        }

        /// <summary>
        /// Lays <paramref name="g"/>, whose axes are the distinct <paramref name="letters"/>, out as operand
        /// <paramref name="x"/>'s <paramref name="term"/>: a Transpose when only the order differs; with repeated letters
        /// an Einsum with an identity matrix per repeat, which puts the values on the diagonal and zeros elsewhere.
        /// </summary>
        public static string Arrange(GradientContext c, string g, string letters, string term, string x)
        {
            if (letters == term) return g;
            if (term.Distinct().Count() == term.Length)
                return c.Op("Transpose", [g], GradientContext.Attr("perm", term.Select(l => (long)letters.IndexOf(l)).ToArray()));
            var used = letters.ToHashSet();
            var spare = new Queue<char>("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".Where(l => !used.Contains(l)));
            var target = new char[term.Length];
            var operands = new List<string> { g };
            var subscripts = new List<string> { letters };
            for (int p = 0; p < term.Length; p++)
            {
                if (term.IndexOf(term[p]) == p)
                {
                    target[p] = term[p];
                    continue;
                }
                target[p] = spare.Dequeue();
                var n = c.Op("Shape", [x], GradientContext.Attr("start", (long)p), GradientContext.Attr("end", p + 1L));
                var square = c.Op("ConstantOfShape", [c.Op("Concat", [n, n], GradientContext.Attr("axis", 0L))]);
                operands.Add(c.Op("CastLike", [c.Op("EyeLike", [square]), g]));
                subscripts.Add($"{term[p]}{target[p]}");
            }
            return c.Op("Einsum", [.. operands], GradientContext.Attr("equation", $"{string.Join(",", subscripts)}->{new string(target)}"));
        }
    }

    /// <summary>Swaps the last two axes of a value of rank <paramref name="rank"/> (at least 2).</summary>
    private static string TransposeLastTwo(GradientContext c, string x, int rank)
    {
        var perm = Enumerable.Range(0, rank).Select(k => (long)k).ToArray();
        (perm[^1], perm[^2]) = (perm[^2], perm[^1]);
        return c.Op("Transpose", [x], GradientContext.Attr("perm", perm));
    }

    private static string Unsqueeze(GradientContext c, string x, params long[] axes) => c.Op("Unsqueeze", [x, c.Ints64(axes)]);

    /// <summary>The inferred dimensions of a forward value; the rank must be known.</summary>
    private static long?[] DimsOf(GradientContext c, string value) =>
        c.Type(value).Dims ?? throw c.Fail($"the rank of '{value}' is unknown");

    /// <summary>Refuses a node that carries an attribute the rule does not know (it could change the op's meaning).</summary>
    private static void RefuseUnknownAttributes(GradientContext c, params string[] known)
    {
        foreach (var attribute in c.Node.Attribute)
            if (!known.Contains(attribute.Name))
                throw c.Fail($"attribute '{attribute.Name}' is not supported by the gradient rule{(known.Length > 0 ? $" (known: {string.Join(", ", known)})" : "")}");
    }
}
