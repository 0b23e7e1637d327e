using OnnxAdadelta.Onnx;
using DataType = OnnxAdadelta.Onnx.Proto.TensorProto.Types.DataType;
using OnnxAdadelta.Graphs;

namespace OnnxAdadelta.Gradients;

/// <summary>
/// Gradients of the recurrent ops LSTM, GRU and RNN, by decomposition: the node's outputs are recomputed by unrolling
/// the recurrence over its (static) sequence length into MatMul, Add, Mul, Split, Where and activation nodes, which the
/// ordinary rules then differentiate. The forward node itself stays in the graph.
/// </summary>
public static partial class GradientRules
{
    private static void RegisterRecurrent(Dictionary<string, GradientRuleInfo> r)
    {
        AddDecomposition(r, DecomposeLstm, "LSTM");
        AddDecomposition(r, DecomposeGru, "GRU");
        AddDecomposition(r, DecomposeRnn, "RNN");
    }

    /// <summary>LSTM (opsets 7–22): inputs X, W, R, B, sequence_lens, initial_h, initial_c, P; outputs Y, Y_h, Y_c.</summary>
    internal static void DecomposeLstm(DecompositionContext c) => new Recurrence(c, RecurrentCell.Lstm).Unroll();

    /// <summary>GRU (opsets 7–22): inputs X, W, R, B, sequence_lens, initial_h; outputs Y, Y_h.</summary>
    internal static void DecomposeGru(DecompositionContext c) => new Recurrence(c, RecurrentCell.Gru).Unroll();

    /// <summary>RNN (opsets 7–22): inputs X, W, R, B, sequence_lens, initial_h; outputs Y, Y_h.</summary>
    internal static void DecomposeRnn(DecompositionContext c) => new Recurrence(c, RecurrentCell.Rnn).Unroll();

    private enum RecurrentCell { Lstm, Gru, Rnn }

    /// <summary>One activation of a recurrent op, with the alpha and beta it consumed (lower-cased name).</summary>
    private sealed record RecurrentActivation(string Name, float Alpha, float Beta);

    /// <summary>
    /// The unrolling of one recurrent node. Time runs over the static sequence length T; with layout 1, X, the initial
    /// states and the outputs are transposed to and from the layout-0 form. Each direction precomputes X·Wᵀ (+ bias) for
    /// all steps at once, splits it per step, and runs the cell; with sequence_lens, a step at or past a row's length
    /// keeps that row's state and gives zeros in Y, which also makes the reverse direction start at the row's last
    /// valid step.
    /// </summary>
    private sealed class Recurrence
    {
        private static readonly string[] LstmAttributes = ["activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size", "input_forget", "layout"];
        private static readonly string[] GruAttributes = ["activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size", "layout", "linear_before_reset"];
        private static readonly string[] RnnAttributes = ["activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size", "layout"];

        /// <summary>Alpha and beta use and defaults per activation, as ONNX Runtime's kernels read them.</summary>
        private static readonly Dictionary<string, (bool Alpha, bool Beta, float DefaultAlpha, float DefaultBeta)> ActivationArguments = new(StringComparer.Ordinal)
        {
            ["relu"] = (false, false, 0f, 0f),
            ["tanh"] = (false, false, 0f, 0f),
            ["sigmoid"] = (false, false, 0f, 0f),
            ["affine"] = (true, true, 0f, 0f),
            ["leakyrelu"] = (true, false, 0.01f, 0f),
            ["thresholdedrelu"] = (true, false, 0f, 0f),
            ["scaledtanh"] = (true, true, 0f, 0f),
            ["hardsigmoid"] = (true, true, 0.2f, 0.5f),
            ["elu"] = (true, false, 1f, 0f),
            ["softsign"] = (false, false, 0f, 0f),
            ["softplus"] = (false, false, 0f, 0f),
        };

        private readonly DecompositionContext _c;
        private readonly RecurrentCell _cell;
        private readonly int _gates;
        private readonly int _directions;
        private readonly bool _reverseOnly;
        private readonly long _hidden;
        private readonly long _steps;
        private readonly int _layout;
        private readonly float? _clip;
        private readonly bool _inputForget;
        private readonly bool _linearBeforeReset;
        private readonly RecurrentActivation[][] _activations;
        private readonly Dictionary<string, string> _constants = new(StringComparer.Ordinal);

        public Recurrence(DecompositionContext c, RecurrentCell cell)
        {
            _c = c;
            _cell = cell;
            _gates = cell switch { RecurrentCell.Lstm => 4, RecurrentCell.Gru => 3, _ => 1 };
            var known = cell switch { RecurrentCell.Lstm => LstmAttributes, RecurrentCell.Gru => GruAttributes, _ => RnnAttributes };
            foreach (var a in c.Node.Attribute)
                if (!known.Contains(a.Name)) throw c.Fail($"the attribute '{a.Name}' is not one of {c.Node.OpType}'s ({string.Join(", ", known)})");

            var direction = c.String("direction", "forward");
            (_directions, _reverseOnly) = direction switch
            {
                "forward" => (1, false),
                "reverse" => (1, true),
                "bidirectional" => (2, false),
                _ => throw c.Fail($"direction='{direction}' is not forward, reverse or bidirectional"),
            };
            _layout = (int)c.Int("layout", 0);
            if (_layout is not (0 or 1)) throw c.Fail($"layout={_layout} is not 0 or 1");
            if (c.Attribute("clip") is not null)
            {
                var clip = c.Float("clip", 0);
                if (!(clip > 0) || float.IsInfinity(clip)) throw c.Fail($"clip={clip} is not a positive finite threshold");
                _clip = clip;
            }
            var inputForget = c.Int("input_forget", 0);
            if (inputForget is not (0 or 1)) throw c.Fail($"input_forget={inputForget} is not 0 or 1");
            _inputForget = inputForget == 1;
            var linearBeforeReset = c.Int("linear_before_reset", 0);
            if (linearBeforeReset is not (0 or 1)) throw c.Fail($"linear_before_reset={linearBeforeReset} is not 0 or 1");
            _linearBeforeReset = linearBeforeReset == 1;

            var xDims = c.Type(c.I(0)).Dims;
            if (xDims is not { Length: 3 }) throw c.Fail($"X ('{c.I(0)}') must have rank 3, but its rank is {(xDims is null ? "unknown" : xDims.Length)}");
            int timeAxis = _layout == 0 ? 0 : 1;
            _steps = xDims[timeAxis] ?? throw c.Fail(
                $"the sequence length of X ('{c.I(0)}', axis {timeAxis}, '{c.Type(c.I(0)).Symbol(timeAxis) ?? "?"}') must be static to unroll the recurrence; " +
                "fix the input's shape, for example with --input-shape NAME=D0,D1,...");
            if (_steps < 1) throw c.Fail($"the sequence length of X ('{c.I(0)}') is {_steps}; at least 1 step is needed");

            var rDims = c.Type(c.I(2)).Dims;
            long? fromR = rDims is { Length: 3 } ? rDims[2] : null;
            if (c.Attribute("hidden_size") is not null)
            {
                _hidden = c.Int("hidden_size", 0);
                if (_hidden < 1) throw c.Fail($"hidden_size={_hidden} is not positive");
                if (fromR is { } h && h != _hidden) throw c.Fail($"hidden_size={_hidden} but R ('{c.I(2)}') has {h} columns");
            }
            else _hidden = fromR ?? throw c.Fail($"hidden_size is absent and the shape of R ('{c.I(2)}') is not static");

            _activations = Activations();
        }

        private int ActivationsPerDirection => _cell switch { RecurrentCell.Lstm => 3, RecurrentCell.Gru => 2, _ => 1 };

        /// <summary>
        /// The activations of each direction (f, g, h for LSTM; f, g for GRU; f for RNN), lower-cased; alpha and beta
        /// are consumed in list order by the activations that take them, with ONNX Runtime's defaults when the lists run out.
        /// </summary>
        private RecurrentActivation[][] Activations()
        {
            int k = ActivationsPerDirection;
            string[] defaults = _cell switch { RecurrentCell.Lstm => ["Sigmoid", "Tanh", "Tanh"], RecurrentCell.Gru => ["Sigmoid", "Tanh"], _ => ["Tanh"] };
            var names = _c.Attribute("activations") is { } a ? a.Strings.Select(s => s.ToStringUtf8()).ToArray() : null;
            if (names is null) names = Enumerable.Range(0, _directions).SelectMany(_ => defaults).ToArray();
            else if (names.Length != k * _directions)
                throw _c.Fail($"activations lists {names.Length} functions; {k * _directions} are expected ({k} per direction, {_directions} direction{(_directions > 1 ? "s" : "")})");
            var alphas = _c.Attribute("activation_alpha")?.Floats.ToArray() ?? [];
            var betas = _c.Attribute("activation_beta")?.Floats.ToArray() ?? [];
            int nextAlpha = 0, nextBeta = 0;
            var result = new RecurrentActivation[names.Length];
            for (int j = 0; j < names.Length; j++)
            {
                var name = names[j].ToLowerInvariant();
                if (!ActivationArguments.TryGetValue(name, out var use))
                    throw _c.Fail($"activations: '{names[j]}' is not one of Relu, Tanh, Sigmoid, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu, Softsign, Softplus");
                float alpha = use.Alpha ? (nextAlpha < alphas.Length ? alphas[nextAlpha++] : use.DefaultAlpha) : 0f;
                float beta = use.Beta ? (nextBeta < betas.Length ? betas[nextBeta++] : use.DefaultBeta) : 0f;
                result[j] = new RecurrentActivation(name, alpha, beta);
            }
            return Enumerable.Range(0, _directions).Select(d => result.Skip(d * k).Take(k).ToArray()).ToArray();
        }

        // ---- emission helpers

        private string Op(string opType, params string[] inputs) => _c.Op(opType, inputs);

        /// <summary>
        /// A scalar of X's element type, emitted once per value. It is a typed constant rather than a CastLike of X,
        /// which would put X on a path through an op without a gradient rule.
        /// </summary>
        private string K(double value)
        {
            var key = "s" + value.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
            if (_constants.TryGetValue(key, out var name)) return name;
            var type = _c.Type(_c.I(0)).ElementType;
            return _constants[key] = type switch
            {
                DataType.Float => _c.Constant(Tensors.Create("", new[] { (float)value })),
                DataType.Double => _c.Constant(Tensors.Create("", new[] { value })),
                DataType.Float16 or DataType.Bfloat16 =>
                    _c.Op("Cast", [_c.Constant(Tensors.Create("", new[] { (float)value }))], NodeRuleContext.Attr("to", (long)type)),
                _ => throw _c.Fail($"X ('{_c.I(0)}') is {type}; a float type is expected"),
            };
        }

        /// <summary>A 1-D int64 constant, emitted once per value list.</summary>
        private string Ints(params long[] values)
        {
            var key = "i" + string.Join(",", values);
            if (!_constants.TryGetValue(key, out var name)) _constants[key] = name = _c.Ints64(values);
            return name;
        }

        /// <summary>Splits <paramref name="x"/> along <paramref name="axis"/> into pieces of the given sizes.</summary>
        private string[] Split(string x, long axis, params long[] sizes) =>
            sizes.Length == 1 ? [x] : _c.Ops("Split", [x, Ints(sizes)], sizes.Length, NodeRuleContext.Attr("axis", axis));

        private string Squeeze(string x, long axis) => Op("Squeeze", x, Ints(axis));

        private string Unsqueeze(string x, params long[] axes) => Op("Unsqueeze", x, Ints(axes));

        private string Transpose(string x, params long[] perm) => _c.Op("Transpose", [x], NodeRuleContext.Attr("perm", perm));

        private string Concat(IReadOnlyList<string> parts, long axis) =>
            parts.Count == 1 ? parts[0] : _c.Op("Concat", [.. parts], NodeRuleContext.Attr("axis", axis));

        /// <summary>The per-direction slices of a tensor whose first axis is the direction.</summary>
        private string[] PerDirection(string x) => Split(x, 0, Enumerable.Repeat(1L, _directions).ToArray()).Select(p => Squeeze(p, 0)).ToArray();

        private string Clip(string x) => _clip is { } t ? Op("Clip", x, K(-t), K(t)) : x;

        private string Activate(RecurrentActivation a, string x) => a.Name switch
        {
            "relu" => Op("Relu", x),
            "tanh" => Op("Tanh", x),
            "sigmoid" => Op("Sigmoid", x),
            "affine" => Op("Add", Op("Mul", x, K(a.Alpha)), K(a.Beta)),
            "leakyrelu" => _c.Op("LeakyRelu", [x], NodeRuleContext.Attr("alpha", a.Alpha)),
            "thresholdedrelu" => Op("Where", Op("Greater", x, K(a.Alpha)), x, K(0)),
            "scaledtanh" => Op("Mul", Op("Tanh", Op("Mul", x, K(a.Beta))), K(a.Alpha)),
            "hardsigmoid" => Op("Clip", Op("Add", Op("Mul", x, K(a.Alpha)), K(a.Beta)), K(0), K(1)),
            "elu" => _c.Op("Elu", [x], NodeRuleContext.Attr("alpha", a.Alpha)),
            "softsign" => Op("Div", x, Op("Add", Op("Abs", x), K(1))),
            "softplus" => Op("Softplus", x),
            _ => throw _c.Fail($"activations: '{a.Name}' has no decomposition"),
        };

        // ---- the unrolling

        public void Unroll()
        {
            var c = _c;
            long h = _hidden;
            var x = _layout == 0 ? c.I(0) : Transpose(c.I(0), 1, 0, 2);        // [T, batch, input]
            var w = PerDirection(c.I(1));                                       // [gates*h, input]
            var r = PerDirection(c.I(2));                                       // [gates*h, h]
            var b = c.HasInput(3) ? PerDirection(c.I(3)) : null;                // [2*gates*h]
            string? lens = c.HasInput(4) ? c.I(4) : null;
            string[]? StateInput(int i) => c.HasInput(i) ? PerDirection(_layout == 0 ? c.I(i) : Transpose(c.I(i), 1, 0, 2)) : null;
            var h0 = StateInput(5);
            var c0 = _cell == RecurrentCell.Lstm ? StateInput(6) : null;
            var p = _cell == RecurrentCell.Lstm && c.HasInput(7) ? PerDirection(c.I(7)) : null;

            var masks = lens is null ? null : Enumerable.Range(0, (int)_steps)
                .Select(t => Unsqueeze(Op("Less", c.Scalar(t, lens), lens), 1)).ToArray();

            var ys = new List<string>();
            var hs = new List<string>();
            var cs = new List<string>();
            for (int d = 0; d < _directions; d++)
            {
                bool reverse = _reverseOnly || d == 1;
                var act = _activations[d];
                var gh = _gates * h;
                string[]? bias = b is null ? null : Split(b[d], 0, gh, gh);     // Wb, Rb
                var xw = Op("MatMul", x, Transpose(w[d], 1, 0));                // [T, batch, gates*h]
                string? recurrentBias = null;
                if (bias is not null)
                {
                    if (_cell == RecurrentCell.Gru) { xw = Op("Add", xw, bias[0]); recurrentBias = bias[1]; }
                    else xw = Op("Add", xw, Op("Add", bias[0], bias[1]));
                }
                var xs = Split(xw, 0, Enumerable.Repeat(1L, (int)_steps).ToArray()).Select(s => Squeeze(s, 0)).ToArray();
                var peep = p is null ? null : Split(p[d], 0, h, h, h);          // i, o, f

                string[] rt;
                string[]? rb = null;
                if (_cell == RecurrentCell.Gru)
                {
                    var parts = Split(r[d], 0, 2 * h, h);                       // z and r together, then h
                    rt = [Transpose(parts[0], 1, 0), Transpose(parts[1], 1, 0)];
                    if (recurrentBias is not null) rb = Split(recurrentBias, 0, 2 * h, h);
                }
                else rt = [Transpose(r[d], 1, 0)];

                // An absent initial state is zero: the first step then leaves out the terms it would multiply.
                string? hPrev = h0?[d];
                string? cPrev = _cell == RecurrentCell.Lstm ? c0?[d] : null;
                var y = new string[_steps];
                for (int k = 0; k < _steps; k++)
                {
                    int t = reverse ? (int)_steps - 1 - k : k;
                    string hNext, cNext = "";
                    switch (_cell)
                    {
                        case RecurrentCell.Lstm:
                            (hNext, cNext) = LstmStep(act, xs[t], hPrev, cPrev, rt[0], peep);
                            break;
                        case RecurrentCell.Gru:
                            hNext = GruStep(act, xs[t], hPrev, rt, rb);
                            break;
                        default:
                            hNext = Activate(act[0], Clip(hPrev is null ? xs[t] : Op("Add", xs[t], Op("MatMul", hPrev, rt[0]))));
                            break;
                    }
                    if (masks is not null)
                    {
                        hNext = Op("Where", masks[t], hNext, hPrev ?? K(0));
                        if (_cell == RecurrentCell.Lstm) cNext = Op("Where", masks[t], cNext, cPrev ?? K(0));
                        y[t] = Op("Where", masks[t], hNext, K(0));
                    }
                    else y[t] = hNext;
                    hPrev = hNext;
                    if (_cell == RecurrentCell.Lstm) cPrev = cNext;
                }
                if (c.O(0).Length > 0) ys.Add(Unsqueeze(Concat(y.Select(v => Unsqueeze(v, 0)).ToArray(), 0), 1));  // [T, 1, batch, h]
                hs.Add(Unsqueeze(hPrev!, 0));
                if (cPrev is not null) cs.Add(Unsqueeze(cPrev, 0));
            }

            if (c.O(0).Length > 0)
            {
                var yAll = Concat(ys, 1);                                       // [T, directions, batch, h]
                c.SetOutput(0, _layout == 0 ? yAll : Transpose(yAll, 2, 0, 1, 3));
            }
            if (c.O(1).Length > 0)
            {
                var hAll = Concat(hs, 0);                                       // [directions, batch, h]
                c.SetOutput(1, _layout == 0 ? hAll : Transpose(hAll, 1, 0, 2));
            }
            if (_cell == RecurrentCell.Lstm && c.O(2).Length > 0)
            {
                var cAll = Concat(cs, 0);
                c.SetOutput(2, _layout == 0 ? cAll : Transpose(cAll, 1, 0, 2));
            }
        }

        /// <summary>
        /// One LSTM step (gates i, o, f, c in W and R; peepholes i, o, f): i = f(clip(x·Wiᵀ + h·Riᵀ + Pi⊙C₋₁ + b)),
        /// f likewise (or 1 − i with input_forget), c̃ = g(clip(…)), C = f⊙C₋₁ + i⊙c̃, o = f(clip(… + Po⊙C)), H = o⊙h(C).
        /// </summary>
        private (string H, string C) LstmStep(RecurrentActivation[] act, string x, string? hPrev, string? cPrev, string rt, string[]? peep)
        {
            long h = _hidden;
            var pre = Split(hPrev is null ? x : Op("Add", x, Op("MatMul", hPrev, rt)), 1, h, h, h, h);
            string iPre = pre[0], oPre = pre[1], fPre = pre[2], cPre = pre[3];
            if (peep is not null && cPrev is not null) iPre = Op("Add", iPre, Op("Mul", peep[0], cPrev));
            var i = Activate(act[0], Clip(iPre));
            var g = Activate(act[1], Clip(cPre));
            var cell = Op("Mul", i, g);
            if (cPrev is not null)
            {
                string f;
                if (_inputForget) f = Op("Sub", K(1), i);
                else
                {
                    if (peep is not null) fPre = Op("Add", fPre, Op("Mul", peep[2], cPrev));
                    f = Activate(act[0], Clip(fPre));
                }
                cell = Op("Add", Op("Mul", f, cPrev), cell);
            }
            if (peep is not null) oPre = Op("Add", oPre, Op("Mul", peep[1], cell));
            var o = Activate(act[0], Clip(oPre));
            return (Op("Mul", o, Activate(act[2], cell)), cell);
        }

        /// <summary>
        /// One GRU step (gates z, r, h): z, r = f(clip(x·Wᵀ + h·Rᵀ + b)); h̃ = g(clip(x·Whᵀ + (r⊙H₋₁)·Rhᵀ + Rbh + Wbh)), or with
        /// linear_before_reset g(clip(x·Whᵀ + r⊙(H₋₁·Rhᵀ + Rbh) + Wbh)); H = (1 − z)⊙h̃ + z⊙H₋₁.
        /// </summary>
        private string GruStep(RecurrentActivation[] act, string x, string? hPrev, string[] rt, string[]? rb)
        {
            long h = _hidden;
            var xParts = Split(x, 1, 2 * h, h);
            var zrPre = hPrev is null ? xParts[0] : Op("Add", xParts[0], Op("MatMul", hPrev, rt[0]));
            if (rb is not null) zrPre = Op("Add", zrPre, rb[0]);
            var zr = Split(Activate(act[0], Clip(zrPre)), 1, h, h);
            string z = zr[0], reset = zr[1];
            string hPre;
            if (_linearBeforeReset)
            {
                string? recurrent = hPrev is null ? null : Op("MatMul", hPrev, rt[1]);
                if (rb is not null) recurrent = recurrent is null ? rb[1] : Op("Add", recurrent, rb[1]);
                hPre = recurrent is null ? xParts[1] : Op("Add", xParts[1], Op("Mul", reset, recurrent));
            }
            else
            {
                hPre = hPrev is null ? xParts[1] : Op("Add", xParts[1], Op("MatMul", Op("Mul", reset, hPrev), rt[1]));
                if (rb is not null) hPre = Op("Add", hPre, rb[1]);
            }
            var candidate = Activate(act[1], Clip(hPre));
            var kept = Op("Mul", Op("Sub", K(1), z), candidate);
            return hPrev is null ? kept : Op("Add", kept, Op("Mul", z, hPrev));
        }
    }
}
