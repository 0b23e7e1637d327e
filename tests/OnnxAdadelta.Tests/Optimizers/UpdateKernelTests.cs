using System.Numerics;
using System.Runtime.CompilerServices;
using OnnxAdadelta.Bench;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Reference;

namespace OnnxAdadelta.Tests.Optimizers;

// The compiled kernel (UpdateKernel) against the interpreter (UpdateProgram.RunBlock) and the reference, bit for bit.
public class UpdateKernelTests
{
    public static TheoryData<string> Cases => new(OptionCases.All.Select(c => c.Name));

    // Lanes the arithmetic treats specially, spread over a tensor at positions that fall in whole vectors and in the tail.
    private static readonly float[] Special = [float.NaN, float.PositiveInfinity, float.NegativeInfinity, -0f, 0f, float.Epsilon, -1e-39f, float.MaxValue];

    private static float[] Values(int n, int seed, float scale, bool special)
    {
        var v = Enumerable.Range(0, n).Select(i => scale * MathF.Sin(0.7f * i + 1.3f * seed) + 0.01f * (i % 5 - 2)).ToArray();
        if (special)
            for (int k = 0; k < Special.Length; k++)
            {
                int at = (37 * k + 11 * seed) % n;
                v[at] = Special[k];
                v[n - 1 - k % n] = Special[(k + seed) % Special.Length];
            }
        return v;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void CompiledInterpretedAndReferenceAgreeBitForBit(string name)
    {
        Assert.True(RuntimeFeature.IsDynamicCodeSupported);
        var options = OptionCases.All.Single(c => c.Name == name).Options;
        // 1037: whole vectors, more than two interpreter blocks, and a tail that is not a multiple of the vector width;
        // 5 is all tail on any vector width above 4.
        var sizes = new Dictionary<string, int> { ["W"] = 1037, ["b"] = 5 };
        var reference = new ReferenceAdadelta(options, sizes.ToDictionary(s => s.Key, s => Values(s.Value, 0, 1f, special: false)));
        var programs = sizes.Keys.ToDictionary(p => p, p => UpdateProgram.Record(options, p));
        Assert.All(programs.Values, p => Assert.True(p.IsCompiled));
        var parameters = sizes.ToDictionary(s => s.Key, s => Values(s.Value, 0, 1f, special: false));
        var state = sizes.ToDictionary(s => s.Key, s => programs[s.Key].Slots.Select(_ => new float[s.Value]).ToArray());
        for (int step = 0; step < 7; step++)
        {
            // Steps 4 and 5 feed NaN, infinite, signed-zero and denormal gradient lanes.
            var gradients = sizes.ToDictionary(s => s.Key, s => Values(s.Value, step + 1, 0.3f, special: step is 4 or 5));
            reference.Step(gradients);
            foreach (var p in sizes.Keys)
            {
                float[][] inputs = [parameters[p], gradients[p], .. state[p]];
                var compiled = programs[p].Run(step, inputs);
                var interpreted = programs[p].Run(step, inputs, interpreted: true);
                string what = $"{name}, step {step}, {p}";
                for (int o = 0; o < compiled.Length; o++) AssertBits(interpreted[o], compiled[o], $"{what}, output {o}, compiled vs interpreted");
                AssertBits(reference.Parameters[p], compiled[0], what);
                for (int s = 0; s < state[p].Length; s++) AssertBits(reference.State(p, programs[p].Slots[s]), compiled[1 + s], $"{what}/{programs[p].Slots[s]}");
                parameters[p] = compiled[0];
                state[p] = compiled[1..];
            }
        }
        Assert.Contains(parameters["W"], float.IsNaN);
        Assert.Contains(parameters["W"], float.IsFinite);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public unsafe void InPlaceOutputsMatchSeparateOutputs(bool interpreted)
    {
        var options = OptionCases.All.Single(c => c.Name == "everything").Options;
        var program = UpdateProgram.Record(options, "W");
        const int n = 1037;
        float** ins = stackalloc float*[program.Inputs];
        float** outs = stackalloc float*[1 + program.Slots.Count];
        for (long step = 0; step < 6; step++)
        {
            float[][] inputs = [Values(n, 1, 1f, false), Values(n, 2 + (int)step, 0.3f, step == 3), .. program.Slots.Select((_, s) => Values(n, 10 + s, 0.1f, false))];
            var expected = program.Run(step, inputs, interpreted);
            // In place: the parameter's output is its input's memory, each slot's output its input's.
            var scalars = new float[program.ScalarRegisters];
            program.EvaluateScalars(step, scalars);
            var memory = inputs.Select(a => (float[])a.Clone()).ToArray();
            var scratch = new float[program.ScratchFloats];
            var pins = memory.Select(m => System.Runtime.InteropServices.GCHandle.Alloc(m, System.Runtime.InteropServices.GCHandleType.Pinned)).ToArray();
            try
            {
                for (int k = 0; k < program.Inputs; k++) ins[k] = (float*)pins[k].AddrOfPinnedObject();
                outs[0] = ins[0];
                for (int o = 1; o <= program.Slots.Count; o++) outs[o] = ins[1 + o];
                fixed (float* work = scratch) program.RunElements(scalars, ins, outs, n, work, interpreted);
            }
            finally { foreach (var pin in pins) pin.Free(); }
            AssertBits(expected[0], memory[0], $"step {step}, parameter");
            for (int s = 0; s < program.Slots.Count; s++) AssertBits(expected[1 + s], memory[2 + s], $"step {step}, {program.Slots[s]}");
            Assert.Equal(inputs[1], memory[1]);
        }
    }

    [Fact]
    public void VectorFormsWithNoOptionCaseMatchTheScalarSemanticsLaneForLane()
    {
        // Where on an elementwise condition and the comparisons have no option case yet (their conditions are counter
        // tests, scalars), so their compiled forms are checked against the interpreter's scalar semantics directly.
        float[] values = [.. Special, 1f, -1f, 0.5f, 2f, -3.5f];
        int w = Vector<float>.Count;
        var pairs = (from a in values from b in values select (a, b)).ToList();
        for (int at = 0; at < pairs.Count; at += w)
        {
            var a = new float[w];
            var b = new float[w];
            for (int k = 0; k < w; k++) (a[k], b[k]) = pairs[(at + k) % pairs.Count];
            var va = new Vector<float>(a);
            var vb = new Vector<float>(b);
            foreach (var (op, result) in new (UpdateOp, Vector<float>)[]
            {
                (UpdateOp.Less, KernelOps.Less(va, vb)), (UpdateOp.LessOrEqual, KernelOps.LessOrEqual(va, vb)), (UpdateOp.Equal, KernelOps.Equal(va, vb)),
                (UpdateOp.Max, UpdateProgram.VectorMax(va, vb)), (UpdateOp.Min, UpdateProgram.VectorMin(va, vb)), (UpdateOp.Add, UpdateProgram.VectorAdd(va, vb)),
                (UpdateOp.Sub, UpdateProgram.VectorSub(va, vb)), (UpdateOp.Mul, UpdateProgram.VectorMul(va, vb)), (UpdateOp.Div, UpdateProgram.VectorDiv(va, vb)),
                (UpdateOp.Neg, UpdateProgram.VectorNeg(va)), (UpdateOp.Sqrt, UpdateProgram.VectorSqrt(va)),
            })
                for (int k = 0; k < w; k++)
                    Assert.True(Bits(UpdateProgram.Scalar(op, a[k], b[k])) == Bits(result[k]), $"{op}({a[k]:R}, {b[k]:R}): {result[k]:R}, scalar {UpdateProgram.Scalar(op, a[k], b[k]):R}");
            var where = KernelOps.Where(va, vb, -va);
            for (int k = 0; k < w; k++) Assert.Equal(Bits(KernelOps.WhereOne(a[k], b[k], -a[k])), Bits(where[k]));
            foreach (var condition in values)
            {
                var picked = KernelOps.Select(KernelOps.Mask(condition), va, vb);
                for (int k = 0; k < w; k++) Assert.Equal(Bits(KernelOps.WhereOne(condition, a[k], b[k])), Bits(picked[k]));
            }
        }
    }

    [Fact]
    public void ParametersWithTheSameCodeShareOneKernel()
    {
        var plain = new AdadeltaOptions { LearningRate = new ConstantLearningRate(0.5) };
        // Another learning rate is another constant (a scalar register's value), not other code.
        Assert.Same(UpdateKernel.For(UpdateProgram.Record(plain, "W")), UpdateKernel.For(UpdateProgram.Record(plain with { LearningRate = new ConstantLearningRate(0.25) }, "b")));
        var grouped = OptionCases.All.Single(c => c.Name == "weight decay, excluded b").Options;
        Assert.NotSame(UpdateKernel.For(UpdateProgram.Record(grouped, "W")), UpdateKernel.For(UpdateProgram.Record(grouped, "b")));
    }

    private static int Bits(float f) => BitConverter.SingleToInt32Bits(f);

    private static void AssertBits(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        if (BenchCheck.FirstDifference(expected, actual) is { } i)
            Assert.Fail($"{what}[{i}]: {actual[i]:R}, expected {expected[i]:R}");
    }
}
