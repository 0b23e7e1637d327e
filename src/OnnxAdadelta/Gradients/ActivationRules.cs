namespace OnnxAdadelta.Gradients;

/// <summary>
/// Gradients of the activation ops beyond the elementwise basics (Selu, HardSigmoid, HardSwish, PRelu, Softsign,
/// ThresholdedRelu, Celu, Mish), of Sin and Cos, and of the piecewise-constant ops (Sign, Floor, Ceil, Round), whose
/// gradient is an explicit zero of the input's shape, so a parameter reached only through them gets a zero gradient.
/// </summary>
public static partial class GradientRules
{
    private static void RegisterActivations(Dictionary<string, GradientRuleInfo> r)
    {
        Add(r, SeluGradient, null, "Selu");
        Add(r, HardSigmoidGradient, null, "HardSigmoid");
        Add(r, HardSwishGradient, null, "HardSwish");
        Add(r, PReluGradient, null, "PRelu");
        Add(r, SoftsignGradient, null, "Softsign");
        Add(r, ThresholdedReluGradient, null, "ThresholdedRelu");
        Add(r, CeluGradient, null, "Celu");
        Add(r, MishGradient, null, "Mish");
        Add(r, c =>
        {
            KnownAttributes(c);
            c.SetGI(0, c.Op("Mul", [c.GO(0)!, c.Op("Cos", [c.I(0)])]));
        }, null, "Sin");
        Add(r, c =>
        {
            KnownAttributes(c);
            c.SetGI(0, c.Op("Neg", [c.Op("Mul", [c.GO(0)!, c.Op("Sin", [c.I(0)])])]));
        }, null, "Cos");
        Add(r, ZeroGradient, Inputs(0), "Sign", "Floor", "Ceil", "Round");
    }

    /// <summary>
    /// Selu: y = γ·x for x &gt; 0, γ·α·(eˣ − 1) otherwise (α = 1.67326…, γ = 1.05070… by default), so dy/dx = γ, or
    /// γ·α·eˣ = y + γ·α.
    /// </summary>
    private static void SeluGradient(GradientContext c)
    {
        KnownAttributes(c, "alpha", "gamma");
        var x = c.I(0);
        var go = c.GO(0)!;
        double alpha = c.Float("alpha", 1.67326319217681884765625f);
        double gamma = c.Float("gamma", 1.05070102214813232421875f);
        var positive = c.Op("Mul", [go, c.Scalar(gamma, x)]);
        var negative = c.Op("Mul", [go, c.Op("Add", [c.O(0), c.Scalar(gamma * alpha, x)])]);
        c.SetGI(0, c.Op("Where", [c.Op("Greater", [x, c.Scalar(0, x)]), positive, negative]));
    }

    /// <summary>HardSigmoid: y = max(0, min(1, α·x + β)) (α = 0.2, β = 0.5); dy/dx = α where 0 &lt; α·x + β &lt; 1, else 0.</summary>
    private static void HardSigmoidGradient(GradientContext c)
    {
        KnownAttributes(c, "alpha", "beta");
        var x = c.I(0);
        double alpha = c.Float("alpha", 0.2f);
        double beta = c.Float("beta", 0.5f);
        var z = c.Op("Add", [c.Op("Mul", [x, c.Scalar(alpha, x)]), c.Scalar(beta, x)]);
        var inside = c.Op("And", [c.Op("Greater", [z, c.Scalar(0, x)]), c.Op("Less", [z, c.Scalar(1, x)])]);
        c.SetGI(0, c.Op("Where", [inside, c.Op("Mul", [c.GO(0)!, c.Scalar(alpha, x)]), c.Scalar(0, x)]));
    }

    /// <summary>HardSwish: y = x·max(0, min(1, x/6 + ½)); dy/dx = 0 for x &lt; −3, 1 for x &gt; 3, x/3 + ½ in between.</summary>
    private static void HardSwishGradient(GradientContext c)
    {
        KnownAttributes(c);
        var x = c.I(0);
        var go = c.GO(0)!;
        var middle = c.Op("Mul", [go, c.Op("Add", [c.Op("Div", [x, c.Scalar(3, x)]), c.Scalar(0.5, x)])]);
        var upper = c.Op("Where", [c.Op("Greater", [x, c.Scalar(3, x)]), go, middle]);
        c.SetGI(0, c.Op("Where", [c.Op("Less", [x, c.Scalar(-3, x)]), c.Scalar(0, x), upper]));
    }

    /// <summary>
    /// PRelu: y = slope·x for x &lt; 0, x otherwise, with slope broadcast to X (unidirectional). dX = GO·slope or GO;
    /// dSlope = GO·x where x &lt; 0 (else 0), summed back to the slope's shape.
    /// </summary>
    private static void PReluGradient(GradientContext c)
    {
        KnownAttributes(c);
        var x = c.I(0);
        var go = c.GO(0)!;
        var zero = c.Scalar(0, x);
        var negative = c.Op("Less", [x, zero]);
        if (c.IsGradientRequired(0)) c.SetGIBroadcast(0, c.Op("Where", [negative, c.Op("Mul", [go, c.I(1)]), go]), c.O(0));
        if (c.IsGradientRequired(1)) c.SetGIBroadcast(1, c.Op("Where", [negative, c.Op("Mul", [go, x]), zero]), c.O(0));
    }

    /// <summary>Softsign: y = x/(1 + |x|); dy/dx = 1/(1 + |x|)².</summary>
    private static void SoftsignGradient(GradientContext c)
    {
        KnownAttributes(c);
        var x = c.I(0);
        var d = c.Op("Add", [c.Op("Abs", [x]), c.Scalar(1, x)]);
        c.SetGI(0, c.Op("Div", [c.GO(0)!, c.Op("Mul", [d, d])]));
    }

    /// <summary>ThresholdedRelu: y = x for x &gt; α (default 1), 0 otherwise; dy/dx = 1 where x &gt; α.</summary>
    private static void ThresholdedReluGradient(GradientContext c)
    {
        KnownAttributes(c, "alpha");
        var x = c.I(0);
        c.SetGI(0, c.Op("Where", [c.Op("Greater", [x, c.Scalar(c.Float("alpha", 1f), x)]), c.GO(0)!, c.Scalar(0, x)]));
    }

    /// <summary>Celu: y = max(0, x) + min(0, α·(e^(x/α) − 1)) (α = 1); dy/dx = 1 for x &gt; 0, e^(x/α) otherwise.</summary>
    private static void CeluGradient(GradientContext c)
    {
        KnownAttributes(c, "alpha");
        var x = c.I(0);
        var go = c.GO(0)!;
        double alpha = c.Float("alpha", 1f);
        if (alpha == 0) throw c.Fail("alpha=0 divides by zero (Celu needs a nonzero alpha)");
        var negative = c.Op("Mul", [go, c.Op("Exp", [c.Op("Div", [x, c.Scalar(alpha, x)])])]);
        c.SetGI(0, c.Op("Where", [c.Op("Greater", [x, c.Scalar(0, x)]), go, negative]));
    }

    /// <summary>Mish (opset 18): y = x·tanh(softplus(x)); dy/dx = t + x·(1 − t²)·σ(x) with t = tanh(softplus(x)).</summary>
    private static void MishGradient(GradientContext c)
    {
        KnownAttributes(c);
        var x = c.I(0);
        var t = c.Op("Tanh", [c.Op("Softplus", [x])]);
        var slope = c.Op("Mul", [c.Op("Mul", [x, c.Op("Sub", [c.Scalar(1, x), c.Op("Mul", [t, t])])]), c.Op("Sigmoid", [x])]);
        c.SetGI(0, c.Op("Mul", [c.GO(0)!, c.Op("Add", [t, slope])]));
    }

    /// <summary>
    /// Sign, Floor, Ceil, Round: piecewise constant, so the gradient is zero almost everywhere. It is an explicit zero
    /// tensor of the input's shape rather than no gradient, so a parameter whose only path to the loss runs through
    /// one of these trains with a zero gradient (as in PyTorch) instead of being an error.
    /// </summary>
    private static void ZeroGradient(GradientContext c)
    {
        KnownAttributes(c);
        var x = c.I(0);
        c.SetGI(0, c.Op("Expand", [c.Scalar(0, x), c.Shape(x)]));
    }
}
