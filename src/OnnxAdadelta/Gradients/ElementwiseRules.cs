namespace OnnxAdadelta.Gradients;

/// <summary>Gradients of elementwise ops (numpy broadcasting undone by <see cref="GradientContext.SetGIBroadcast"/>).</summary>
public static partial class GradientRules
{
    private static void RegisterElementwise(Dictionary<string, GradientRuleInfo> r)
    {
        Add(r, c =>
        {
            var go = c.GO(0)!;
            c.SetGIBroadcast(0, go, c.O(0));
            c.SetGIBroadcast(1, go, c.O(0));
        }, null, "Add");
        Add(r, c =>
        {
            var go = c.GO(0)!;
            c.SetGIBroadcast(0, go, c.O(0));
            if (c.IsGradientRequired(1)) c.SetGIBroadcast(1, c.Op("Neg", [go]), c.O(0));
        }, null, "Sub");
        Add(r, c =>
        {
            var go = c.GO(0)!;
            if (c.IsGradientRequired(0)) c.SetGIBroadcast(0, c.Op("Mul", [go, c.I(1)]), c.O(0));
            if (c.IsGradientRequired(1)) c.SetGIBroadcast(1, c.Op("Mul", [go, c.I(0)]), c.O(0));
        }, null, "Mul");
        Add(r, c =>
        {
            // y = a / b: da = g / b, db = -g * y / b.
            var go = c.GO(0)!;
            if (c.IsGradientRequired(0)) c.SetGIBroadcast(0, c.Op("Div", [go, c.I(1)]), c.O(0));
            if (c.IsGradientRequired(1)) c.SetGIBroadcast(1, c.Op("Neg", [c.Op("Div", [c.Op("Mul", [go, c.O(0)]), c.I(1)])]), c.O(0));
        }, null, "Div");
        Add(r, c => c.SetGI(0, c.Op("Neg", [c.GO(0)!])), null, "Neg");
        Add(r, c => c.SetGI(0, c.GO(0)!), null, "Identity");
        Add(r, c =>
        {
            // y = a^b with b not trained: da = g * b * a^(b-1).
            var b = c.Op("CastLike", [c.I(1), c.I(0)]);
            var power = c.Op("Pow", [c.I(0), c.Op("Sub", [b, c.Scalar(1, c.I(0))])]);
            c.SetGIBroadcast(0, c.Op("Mul", [c.Op("Mul", [c.GO(0)!, b]), power]), c.O(0));
        }, Inputs(0), "Pow");
        Add(r, c => c.SetGI(0, c.Op("Div", [c.Op("Mul", [c.GO(0)!, c.Scalar(0.5, c.O(0))]), c.O(0)])), null, "Sqrt");
        Add(r, c => c.SetGI(0, c.Op("Neg", [c.Op("Mul", [c.Op("Mul", [c.GO(0)!, c.O(0)]), c.O(0)])])), null, "Reciprocal");
        Add(r, c => c.SetGI(0, c.Op("Mul", [c.GO(0)!, c.O(0)])), null, "Exp");
        Add(r, c => c.SetGI(0, c.Op("Div", [c.GO(0)!, c.I(0)])), null, "Log");
        Add(r, c => c.SetGI(0, c.Op("Mul", [c.GO(0)!, c.Op("Sign", [c.I(0)])])), null, "Abs");
        Add(r, c =>
        {
            var one = c.Scalar(1, c.O(0));
            c.SetGI(0, c.Op("Mul", [c.GO(0)!, c.Op("Sub", [one, c.Op("Mul", [c.O(0), c.O(0)])])]));
        }, null, "Tanh");
        Add(r, c =>
        {
            var one = c.Scalar(1, c.O(0));
            c.SetGI(0, c.Op("Mul", [c.Op("Mul", [c.GO(0)!, c.O(0)]), c.Op("Sub", [one, c.O(0)])]));
        }, null, "Sigmoid");
        Add(r, c => c.SetGI(0, c.Op("Where", [c.Op("Greater", [c.O(0), c.Scalar(0, c.O(0))]), c.GO(0)!, c.Scalar(0, c.O(0))])), null, "Relu");
        Add(r, c =>
        {
            var go = c.GO(0)!;
            var alpha = c.Scalar(c.Float("alpha", 0.01f), c.I(0));
            c.SetGI(0, c.Op("Where", [c.Op("Greater", [c.I(0), c.Scalar(0, c.I(0))]), go, c.Op("Mul", [go, alpha])]));
        }, null, "LeakyRelu");
        Add(r, c =>
        {
            // y = x for x > 0, alpha*(e^x - 1) otherwise: dy/dx = 1, or y + alpha.
            var go = c.GO(0)!;
            var alpha = c.Scalar(c.Float("alpha", 1f), c.I(0));
            c.SetGI(0, c.Op("Where", [c.Op("Greater", [c.I(0), c.Scalar(0, c.I(0))]), go, c.Op("Mul", [go, c.Op("Add", [c.O(0), alpha])])]));
        }, null, "Elu");
        Add(r, c => c.SetGI(0, c.Op("Mul", [c.GO(0)!, c.Op("Sigmoid", [c.I(0)])])), null, "Softplus");
        Add(r, c =>
        {
            // d erf(x)/dx = 2/sqrt(pi) * exp(-x^2).
            var x = c.I(0);
            var e = c.Op("Exp", [c.Op("Neg", [c.Op("Mul", [x, x])])]);
            c.SetGI(0, c.Op("Mul", [c.GO(0)!, c.Op("Mul", [e, c.Scalar(2 / Math.Sqrt(Math.PI), x)])]));
        }, null, "Erf");
        Add(r, GeluGradient, null, "Gelu");
        Add(r, c =>
        {
            // Passes where min <= x <= max (absent bounds do not clip).
            var x = c.I(0);
            string? mask = null;
            if (c.HasInput(1)) mask = c.Op("GreaterOrEqual", [x, c.I(1)]);
            if (c.HasInput(2))
            {
                var upper = c.Op("LessOrEqual", [x, c.I(2)]);
                mask = mask is null ? upper : c.Op("And", [mask, upper]);
            }
            c.SetGI(0, mask is null ? c.GO(0)! : c.Op("Where", [mask, c.GO(0)!, c.Scalar(0, x)]));
        }, Inputs(0), "Clip");
        Add(r, c =>
        {
            var go = c.GO(0)!;
            var zero = c.Scalar(0, c.O(0));
            if (c.IsGradientRequired(1)) c.SetGIBroadcast(1, c.Op("Where", [c.I(0), go, zero]), c.O(0));
            if (c.IsGradientRequired(2)) c.SetGIBroadcast(2, c.Op("Where", [c.I(0), zero, go]), c.O(0));
        }, Inputs(1, 2), "Where");
        Add(r, MinMaxGradient, null, "Max", "Min");
        Add(r, c =>
        {
            for (int i = 0; i < c.Node.Input.Count; i++) c.SetGIBroadcast(i, c.GO(0)!, c.O(0));
        }, null, "Sum");
        Add(r, c =>
        {
            var g = c.Op("Div", [c.GO(0)!, c.Scalar(c.Node.Input.Count, c.O(0))]);
            for (int i = 0; i < c.Node.Input.Count; i++) c.SetGIBroadcast(i, g, c.O(0));
        }, null, "Mean");
        Add(r, c =>
        {
            // Float-to-float casts only: integer values carry no gradient and never reach here.
            c.SetGI(0, c.Op("CastLike", [c.GO(0)!, c.I(0)]));
        }, null, "Cast");
        // CastLike(x, like): only x carries a gradient, cast back to x's type; 'like' lends its type alone.
        Add(r, c => c.SetGI(0, c.Op("CastLike", [c.GO(0)!, c.I(0)])), Inputs(0), "CastLike");
    }

    /// <summary>
    /// Gelu (opset 20). approximate="none": y = x·Φ(x), dy/dx = Φ(x) + x·φ(x).
    /// approximate="tanh": y = ½x(1+tanh u), u = √(2/π)(x + 0.044715x³), dy/dx = ½(1+t) + ½x(1−t²)·√(2/π)(1 + 3·0.044715x²).
    /// </summary>
    private static void GeluGradient(GradientContext c)
    {
        var x = c.I(0);
        var go = c.GO(0)!;
        var half = c.Scalar(0.5, x);
        var one = c.Scalar(1, x);
        string d;
        switch (c.String("approximate", "none"))
        {
            case "none":
                var cdf = c.Op("Mul", [half, c.Op("Add", [one, c.Op("Erf", [c.Op("Mul", [x, c.Scalar(1 / Math.Sqrt(2), x)])])])]);
                var pdf = c.Op("Mul", [c.Op("Exp", [c.Op("Mul", [c.Op("Mul", [x, x]), c.Scalar(-0.5, x)])]), c.Scalar(1 / Math.Sqrt(2 * Math.PI), x)]);
                d = c.Op("Add", [cdf, c.Op("Mul", [x, pdf])]);
                break;
            case "tanh":
                var k = c.Scalar(Math.Sqrt(2 / Math.PI), x);
                var a = c.Scalar(0.044715, x);
                var x2 = c.Op("Mul", [x, x]);
                var u = c.Op("Mul", [k, c.Op("Add", [x, c.Op("Mul", [a, c.Op("Mul", [x2, x])])])]);
                var t = c.Op("Tanh", [u]);
                var du = c.Op("Mul", [k, c.Op("Add", [one, c.Op("Mul", [c.Scalar(3 * 0.044715, x), x2])])]);
                var left = c.Op("Mul", [half, c.Op("Add", [one, t])]);
                var right = c.Op("Mul", [c.Op("Mul", [c.Op("Mul", [half, x]), c.Op("Sub", [one, c.Op("Mul", [t, t])])]), du]);
                d = c.Op("Add", [left, right]);
                break;
            case var other:
                throw c.Fail($"approximate='{other}' is not an ONNX Gelu mode (none, tanh)");
        }
        c.SetGI(0, c.Op("Mul", [go, d]));
    }

    /// <summary>Max/Min: the gradient goes to the input that was selected; on ties, to the first such input.</summary>
    private static void MinMaxGradient(GradientContext c)
    {
        var go = c.GO(0)!;
        var zero = c.Scalar(0, c.O(0));
        string? taken = null;
        for (int i = 0; i < c.Node.Input.Count; i++)
        {
            var equal = c.Op("Equal", [c.I(i), c.O(0)]);
            var mine = taken is null ? equal : c.Op("And", [equal, c.Op("Not", [taken])]);
            taken = taken is null ? equal : c.Op("Or", [taken, equal]);
            if (c.IsGradientRequired(i)) c.SetGIBroadcast(i, c.Op("Where", [mine, go, zero]), c.O(0));
        }
    }
}
