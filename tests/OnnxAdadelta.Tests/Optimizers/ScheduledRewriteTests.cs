using OnnxAdadelta.Optimizers;
using OnnxAdadelta.Reference;
using OnnxAdadelta.Training;

namespace OnnxAdadelta.Tests.Optimizers;

/// <summary>Every schedule through the whole path: rewrite, ONNX Runtime training, the C# reference.</summary>
public class ScheduledRewriteTests
{
    public static TheoryData<string> Specs => new()
    {
        "exponential:initial=1.0,decay_steps=20,decay_rate=0.5,staircase=false",
        "exponential:initial=1.0,decay_steps=20,decay_rate=0.5,staircase=true",
        "piecewise:boundaries=30;60,values=1.0;0.5;0.1",
        "polynomial:initial=1.0,decay_steps=80,end=0.01,power=2,cycle=true",
        "inverse_time:initial=1.0,decay_steps=10,decay_rate=0.5,staircase=false",
        "cosine:initial=1.0,decay_steps=100,alpha=0.1",
        "cosine_restarts:initial=1.0,first_decay_steps=25,t_mul=2,m_mul=0.9,alpha=0",
    };

    [Theory]
    [MemberData(nameof(Specs))]
    public void ScheduledStepsMatchTheReference(string spec)
    {
        // Measured on Linux x64 with ONNX Runtime 1.31.1 CPU: 0 ULP for every schedule over 150 steps. The learning
        // rate is computed by one scalar op chain on each side, and ORT's CPU kernels call the same libm functions
        // .NET's MathF does; off Linux the libm may differ, so a few ULP are allowed there.
        var options = new AdadeltaOptions { LearningRate = LearningRateSchedules.Parse(spec) };
        var step = TestData.StepModel(options);
        var errors = NumericsCheck.Run(step, 150, i => TestData.Batch(i % 5));
        long bound = OperatingSystem.IsLinux() ? 0 : 16;
        Assert.All(errors, e => Assert.True(e.MaxUlp <= bound, $"{spec}: {e.Name} {e.MaxUlp} ULP"));
    }

    [Fact]
    public void TheScheduleChangesTheUpdate()
    {
        // A decaying schedule must move the parameters less than its constant initial rate: the graph does not ignore it.
        static float Moved(AdadeltaOptions o)
        {
            using var t = new Trainer(TestData.StepModel(o));
            var start = TestData.ValuesByName(t.Model)["W"].RawData.ToByteArray();
            for (int i = 0; i < 60; i++) t.Step(TestData.Batch(i % 5));
            var end = OnnxAdadelta.Onnx.Tensors.ToFloatArray(t.ReadState()["W"]);
            var begin = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(start).ToArray();
            return end.Zip(begin).Sum(p => Math.Abs(p.First - p.Second));
        }
        var constant = Moved(new AdadeltaOptions { LearningRate = new ConstantLearningRate(1.0) });
        var decayed = Moved(new AdadeltaOptions { LearningRate = LearningRateSchedules.Parse("exponential:initial=1.0,decay_steps=5,decay_rate=0.1") });
        Assert.True(decayed < constant * 0.5f, $"decayed {decayed} vs constant {constant}");
    }
}
