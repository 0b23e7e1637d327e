
namespace OnnxAdadelta.Optimizers;

/// <summary>
/// <see cref="ITensorMath{T}"/> on float32 arrays in plain C#: one scalar loop per operation, float arithmetic only
/// (the JIT never contracts a*b+c into a fused multiply-add), so results are those of IEEE single precision.
/// A one-element array is a scalar and broadcasts.
/// </summary>
public sealed class ArrayMath : ITensorMath<float[]>
{
    /// <summary>The shared instance; the class has no state.</summary>
    public static readonly ArrayMath Instance = new();

    private static float[] Map(float[] x, Func<float, float> f)
    {
        var r = new float[x.Length];
        for (int i = 0; i < x.Length; i++) r[i] = f(x[i]);
        return r;
    }

    private static float[] Zip(float[] a, float[] b, Func<float, float, float> f)
    {
        if (a.Length != b.Length && a.Length != 1 && b.Length != 1)
            throw new ArgumentException($"Cannot broadcast {a.Length} elements against {b.Length}.");
        var r = new float[Math.Max(a.Length, b.Length)];
        for (int i = 0; i < r.Length; i++) r[i] = f(a[a.Length == 1 ? 0 : i], b[b.Length == 1 ? 0 : i]);
        return r;
    }

    /// <inheritdoc/>
    public float[] Constant(string hint, float value) => [value];

    /// <inheritdoc/>
    public float[] Add(float[] a, float[] b) => Zip(a, b, static (x, y) => x + y);

    /// <inheritdoc/>
    public float[] Sub(float[] a, float[] b) => Zip(a, b, static (x, y) => x - y);

    /// <inheritdoc/>
    public float[] Mul(float[] a, float[] b) => Zip(a, b, static (x, y) => x * y);

    /// <inheritdoc/>
    public float[] Div(float[] a, float[] b) => Zip(a, b, static (x, y) => x / y);

    /// <inheritdoc/>
    public float[] Neg(float[] x) => Map(x, static v => -v);

    /// <inheritdoc/>
    public float[] Sqrt(float[] x) => Map(x, MathF.Sqrt);

    /// <inheritdoc/>
    public float[] Max(float[] a, float[] b) => Zip(a, b, static (x, y) => float.IsNaN(x) || float.IsNaN(y) ? float.NaN : MathF.Max(x, y));

    /// <inheritdoc/>
    public float[] Min(float[] a, float[] b) => Zip(a, b, static (x, y) => float.IsNaN(x) || float.IsNaN(y) ? float.NaN : MathF.Min(x, y));

    /// <inheritdoc/>
    public float[] Floor(float[] x) => Map(x, MathF.Floor);

    /// <inheritdoc/>
    public float[] Ceil(float[] x) => Map(x, MathF.Ceiling);

    /// <inheritdoc/>
    public float[] Pow(float[] a, float[] b) => Zip(a, b, MathF.Pow);

    /// <inheritdoc/>
    public float[] Cos(float[] x) => Map(x, MathF.Cos);

    /// <inheritdoc/>
    public float[] Log(float[] x) => Map(x, MathF.Log);

    /// <inheritdoc/>
    public float[] Clip(float[] x, float[] lo, float[] hi) => Min(Max(x, lo), hi);

    /// <inheritdoc/>
    public float[] SumOfSquares(float[] x)
    {
        float s = 0;
        foreach (var v in x) s += v * v;
        return [s];
    }

    /// <inheritdoc/>
    public float[] Less(float[] a, float[] b) => Zip(a, b, static (x, y) => x < y ? 1f : 0f);

    /// <inheritdoc/>
    public float[] LessOrEqual(float[] a, float[] b) => Zip(a, b, static (x, y) => x <= y ? 1f : 0f);

    /// <inheritdoc/>
    public float[] Equal(float[] a, float[] b) => Zip(a, b, static (x, y) => x == y ? 1f : 0f);

    /// <inheritdoc/>
    public float[] Where(float[] condition, float[] a, float[] b)
    {
        var n = Math.Max(condition.Length, Math.Max(a.Length, b.Length));
        var r = new float[n];
        for (int i = 0; i < n; i++)
            r[i] = condition[condition.Length == 1 ? 0 : i] != 0 ? a[a.Length == 1 ? 0 : i] : b[b.Length == 1 ? 0 : i];
        return r;
    }

    /// <inheritdoc/>
    public TResult Scope<TResult>(string scope, Func<TResult> body) => body();
}
