namespace OnnxAdadelta.Optimizers;

/// <summary>
/// The float32 arithmetic that optimizer pieces and learning-rate schedules are written in, once. One implementation
/// emits ONNX nodes (<see cref="GraphMath"/>, values are tensor names); the other computes on arrays in plain C#
/// (<see cref="ArrayMath"/>, values are float arrays). Because both run the same code, the in-graph update
/// and the reference perform the same operations in the same order with the same constants.
/// </summary>
/// <remarks>
/// Binary operations broadcast a scalar (one element) against a tensor. Conditions (<see cref="Less"/> and friends)
/// are values too: a bool tensor in the graph, 0/1 in the reference; only <see cref="Where"/> reads them.
/// </remarks>
/// <typeparam name="T">The value handle: a tensor name or a float array.</typeparam>
public interface ITensorMath<T>
{
    /// <summary>A float32 scalar constant. <paramref name="hint"/> names it in the graph.</summary>
    T Constant(string hint, float value);

    /// <summary>a + b.</summary>
    T Add(T a, T b);

    /// <summary>a - b.</summary>
    T Sub(T a, T b);

    /// <summary>a * b.</summary>
    T Mul(T a, T b);

    /// <summary>a / b.</summary>
    T Div(T a, T b);

    /// <summary>-x (exact: flips the sign bit).</summary>
    T Neg(T x);

    /// <summary>Correctly rounded square root.</summary>
    T Sqrt(T x);

    /// <summary>Elementwise maximum.</summary>
    T Max(T a, T b);

    /// <summary>Elementwise minimum.</summary>
    T Min(T a, T b);

    /// <summary>Rounds toward negative infinity.</summary>
    T Floor(T x);

    /// <summary>Rounds toward positive infinity.</summary>
    T Ceil(T x);

    /// <summary>a raised to b.</summary>
    T Pow(T a, T b);

    /// <summary>Cosine.</summary>
    T Cos(T x);

    /// <summary>Natural logarithm.</summary>
    T Log(T x);

    /// <summary>x clamped to [lo, hi].</summary>
    T Clip(T x, T lo, T hi);

    /// <summary>The sum of the squares of all elements: a scalar.</summary>
    T SumOfSquares(T x);

    /// <summary>The condition a &lt; b.</summary>
    T Less(T a, T b);

    /// <summary>The condition a &lt;= b.</summary>
    T LessOrEqual(T a, T b);

    /// <summary>The condition a == b.</summary>
    T Equal(T a, T b);

    /// <summary>Where the condition holds, a; elsewhere b.</summary>
    T Where(T condition, T a, T b);

    /// <summary>Runs <paramref name="body"/> with names it creates prefixed by <paramref name="scope"/> (graph only).</summary>
    TResult Scope<TResult>(string scope, Func<TResult> body);
}
