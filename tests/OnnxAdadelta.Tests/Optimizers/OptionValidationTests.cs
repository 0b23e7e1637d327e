using OnnxAdadelta.Optimizers;

namespace OnnxAdadelta.Tests.Optimizers;

public class OptionValidationTests
{
    [Theory]
    [InlineData(0.5, null, 1.0, "clipnorm (0.5) and global_clipnorm (1)")]
    [InlineData(null, 0.5, 1.0, "clipvalue (0.5) and global_clipnorm (1)")]
    [InlineData(0.5, 0.25, null, "clipnorm (0.5) and clipvalue (0.25)")]
    [InlineData(0.5, 0.25, 1.0, "clipnorm (0.5) and clipvalue (0.25)")]
    public void ClipsAreMutuallyExclusive(double? clipNorm, double? clipValue, double? global, string message)
    {
        var e = Assert.Throws<ArgumentException>(() => new AdadeltaOptions { ClipNorm = clipNorm, ClipValue = clipValue, GlobalClipNorm = global }.Validate());
        Assert.Contains(message, e.Message);
    }

    public static TheoryData<string, Func<AdadeltaOptions>> Invalid => new()
    {
        { "Invalid global_clipnorm value: 0", () => new AdadeltaOptions { GlobalClipNorm = 0 }.Validate() },
        { "Invalid global_clipnorm value: NaN", () => new AdadeltaOptions { GlobalClipNorm = double.NaN }.Validate() },
        { "Invalid global_clipnorm value: 1E+300", () => new AdadeltaOptions { GlobalClipNorm = 1e300 }.Validate() },
        { "Invalid weight_decay value: -0.1", () => new AdadeltaOptions { WeightDecay = -0.1 }.Validate() },
        { "Invalid weight_decay value: NaN", () => new AdadeltaOptions { WeightDecay = double.NaN }.Validate() },
        { "Invalid weight_decay value: Infinity", () => new AdadeltaOptions { WeightDecay = double.PositiveInfinity }.Validate() },
        { "Invalid l2 value: -1", () => new AdadeltaOptions { L2 = -1 }.Validate() },
        { "Invalid l2 value: 1E+300", () => new AdadeltaOptions { L2 = 1e300 }.Validate() },
        { "Invalid decay value: -0.01", () => new AdadeltaOptions { Decay = -0.01 }.Validate() },
        { "Invalid decay value: -Infinity", () => new AdadeltaOptions { Decay = double.NegativeInfinity }.Validate() },
        { "Invalid loss_scale_factor value: 0", () => new AdadeltaOptions { LossScaleFactor = 0 }.Validate() },
        { "Invalid loss_scale_factor value: -8", () => new AdadeltaOptions { LossScaleFactor = -8 }.Validate() },
        { "Invalid loss_scale_factor value: NaN", () => new AdadeltaOptions { LossScaleFactor = double.NaN }.Validate() },
        { "Invalid loss_scale_factor value: 1E-50", () => new AdadeltaOptions { LossScaleFactor = 1e-50 }.Validate() },
        { "exclude_from_weight_decay ('bias') needs weight_decay or l2", () => new AdadeltaOptions { ExcludeFromWeightDecay = ["bias"] }.Validate() },
        { "Invalid exclude_from_weight_decay pattern: ''", () => new AdadeltaOptions { WeightDecay = 0.1, ExcludeFromWeightDecay = [""] }.Validate() },
    };

    [Theory]
    [MemberData(nameof(Invalid))]
    public void InvalidValuesAreNamed(string message, Func<AdadeltaOptions> create)
    {
        var e = Assert.Throws<ArgumentException>(create);
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void AnUnknownPreset()
    {
        var e = Assert.Throws<ArgumentException>(() => AdadeltaPreset.Parse("adam"));
        Assert.Contains("Unknown preset 'adam' (expected keras, pytorch, paper)", e.Message);
    }

    [Fact]
    public void ZeroDecaysAreAccepted()
    {
        var o = new AdadeltaOptions { WeightDecay = 0, L2 = 0, Decay = 0 };
        Assert.Equal(0, o.WeightDecay);
    }
}
