using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using OnnxAdadelta.Onnx.Proto;
using OnnxAdadelta.Graphs;
using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Reference;
using Xunit.Abstractions;

namespace OnnxAdadelta.Tests.Optimizers;

/// <summary>
/// Each schedule emitted as an ONNX graph and run by ONNX Runtime (CPU) against the same code evaluated in C#.
/// </summary>
public sealed class ScheduleGraphTests(ITestOutputHelper output)
{
    /// <summary>A model <c>lr = schedule(float(step))</c> with an int64 scalar input "step" and a float scalar output "lr".</summary>
    internal static ModelProto BuildModel(ILearningRateSchedule schedule)
    {
        var graph = new GraphProto { Name = "schedule" };
        graph.Input.Add(TypeProtos.ValueInfo("step", TensorProto.Types.DataType.Int64, []));
        var math = new GraphMath(new GraphBuilder(graph), "lr_schedule");
        var lr = schedule.Compute(math, math.CastToFloat("step"));
        math.Rename(lr, "lr");
        graph.Output.Add(TypeProtos.ValueInfo("lr", TensorProto.Types.DataType.Float, []));
        var model = new ModelProto { IrVersion = 10, Graph = graph, ProducerName = "OnnxAdadelta.Tests" };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        return model;
    }

    /// <summary>The largest ULP distance between ONNX Runtime and <see cref="LearningRateScheduleExtensions.Evaluate"/> over the steps.</summary>
    private static (long Ulp, long AtStep, float Graph, float Reference) MaxUlp(ILearningRateSchedule schedule, IEnumerable<long> steps)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 1, InterOpNumThreads = 1 };
        using var session = new InferenceSession(BuildModel(schedule).ToByteArray(), options);
        using var runOptions = new RunOptions();
        var stepBuffer = new long[1];
        using var input = OrtValue.CreateTensorValueFromMemory(stepBuffer, []);
        var worst = (Ulp: -1L, AtStep: -1L, Graph: 0f, Reference: 0f);
        foreach (var step in steps)
        {
            stepBuffer[0] = step;
            using var results = session.Run(runOptions, ["step"], [input], ["lr"]);
            var graph = results[0].GetTensorDataAsSpan<float>()[0];
            var reference = schedule.Evaluate(step);
            var ulp = FloatDistance.Ulp(graph, reference);
            if (ulp > worst.Ulp) worst = (ulp, step, graph, reference);
        }
        return worst;
    }

    /// <summary>
    /// The largest ULP distance allowed between ONNX Runtime (CPU) and the C# reference, by schedule type.
    /// </summary>
    /// <remarks>
    /// Measured (Linux x64, ONNX Runtime 1.31.1 CPU, .NET 10): 0 ULP for every case in <see cref="ScheduleCases"/> at
    /// steps 0..300 and the far steps, and 0 ULP in a one-off wider sweep (every step of 0..100,000 or 0..200,000 for
    /// cosine with alpha 0 and 0.3, cosine restarts with t_mul 0.999, 1.3, 1.7 and 3, polynomial with powers 0.37,
    /// 2, 2.5 and 3 with and without cycle, exponential with and without staircase): none of 2.2 million values
    /// differed. Add, Sub, Mul, Div, Floor, Ceil, Min, comparisons and Where are correctly
    /// rounded or exact on both sides, so schedules built only from them (constant, piecewise, inverse time) must
    /// agree bit for bit anywhere. Pow, Cos and Log agree because ONNX Runtime's CPU kernels, on a one-element tensor,
    /// call the same C library functions (powf, cosf, logf) that .NET's MathF calls on Linux; on another C library
    /// or execution provider (a GPU's cosf is not glibc's) a few ULP are to be expected, so the bound there is 4
    /// (not measured).
    /// </remarks>
    private static long Bound(ILearningRateSchedule schedule) => schedule switch
    {
        ConstantLearningRate or PiecewiseConstantDecay or InverseTimeDecay => 0,
        _ => OperatingSystem.IsLinux() ? 0 : 4,
    };

    [Theory]
    [MemberData(nameof(ScheduleCases.Indexes), MemberType = typeof(ScheduleCases))]
    public void Graph_matches_the_reference(int index)
    {
        var c = ScheduleCases.All[index];
        var worst = MaxUlp(c.Schedule, ScheduleCases.Steps);
        output.WriteLine($"{c.Name}: max {worst.Ulp} ULP (step {worst.AtStep}: graph {worst.Graph:R}, reference {worst.Reference:R})");
        Assert.True(worst.Ulp <= Bound(c.Schedule),
            $"{c.Name}: ONNX Runtime and the C# reference differ by {worst.Ulp} ULP at step {worst.AtStep} " +
            $"({worst.Graph:R} vs {worst.Reference:R}); allowed {Bound(c.Schedule)}.");
    }

    [Fact]
    public void Graph_has_the_step_input_and_lr_output_only()
    {
        var model = BuildModel(new CosineDecayRestarts(0.1, 100));
        Assert.Equal(["step"], model.Graph.Input.Select(i => i.Name));
        Assert.Equal(["lr"], model.Graph.Output.Select(o => o.Name));
        // Every intermediate value is named under the schedule's scope.
        Assert.All(model.Graph.Node.SelectMany(n => n.Output).Where(o => o != "lr"), o => Assert.StartsWith("lr_schedule/", o));
        Assert.All(model.Graph.Initializer, t => Assert.StartsWith("lr_schedule/SGDRDecay/", t.Name));
    }

    [Fact]
    public void CosineDecay_computes_one_minus_alpha_in_double_like_keras()
    {
        // Keras's CosineDecay writes (1 - self.alpha) on the Python float, rounding to float32 only afterwards; for
        // alpha = 0.9999999 that differs from 1f - (float)alpha (1.0000000116860974E-07 vs 1.1920929E-07).
        const double alpha = 0.9999999;
        Assert.NotEqual((float)(1.0 - alpha), 1f - (float)alpha);
        var model = BuildModel(new CosineDecay(0.1, 100, alpha));
        var constant = model.Graph.Initializer.Single(t => t.Name == "lr_schedule/CosineDecay/one_minus_alpha");
        Assert.Equal((float)(1.0 - alpha), OnnxAdadelta.Onnx.Tensors.ToFloatArray(constant)[0]);
    }
}
