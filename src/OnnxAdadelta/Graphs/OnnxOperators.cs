namespace OnnxAdadelta.Graphs;

/// <summary>
/// The ai.onnx operator types with the opset version that introduced each (and, for the few that were dropped, the
/// version from which it is gone), from the ONNX operator documentation (docs/Operators.md and docs/Changelog.md).
/// </summary>
/// <remarks>
/// ONNX Runtime's schema registry is not reachable from its C# API, so this table answers "is this a standard op of
/// that opset?" for the import checks. The experimental ops of opsets 1 to 9 (ImageScaler, Crop, Affine…) count as
/// standard there, as ONNX Runtime still runs them in such models.
/// </remarks>
public static class OnnxOperators
{
    /// <summary>Op type → (first opset, first opset without it or null).</summary>
    private static readonly Dictionary<string, (int Since, int? Removed)> Table = Build();

    private static Dictionary<string, (int Since, int? Removed)> Build()
    {
        var t = new Dictionary<string, (int, int?)>(StringComparer.Ordinal);
        void Since(int version, params string[] ops)
        {
            foreach (var op in ops) t.Add(op, (version, null));
        }
        Since(1, "Abs", "Add", "And", "ArgMax", "ArgMin", "AveragePool", "BatchNormalization", "Cast", "Ceil", "Clip", "Concat",
            "Constant", "Conv", "ConvTranspose", "DepthToSpace", "Div", "Dropout", "Elu", "Equal", "Exp", "Flatten", "Floor",
            "GRU", "Gather", "Gemm", "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "Greater", "HardSigmoid", "Hardmax",
            "Identity", "If", "InstanceNormalization", "LRN", "LSTM", "LeakyRelu", "Less", "Log", "LogSoftmax", "Loop",
            "LpNormalization", "LpPool", "MatMul", "Max", "MaxPool", "MaxRoiPool", "Mean", "Min", "Mul", "Neg", "Not", "Or",
            "PRelu", "Pad", "Pow", "RNN", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
            "Reciprocal", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
            "ReduceProd", "ReduceSum", "ReduceSumSquare", "Relu", "Reshape", "Selu", "Shape", "Sigmoid", "Size", "Slice",
            "Softmax", "Softplus", "Softsign", "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tanh", "Tile", "TopK",
            "Transpose", "Unsqueeze", "Xor");
        Since(7, "Acos", "Asin", "Atan", "Cos", "Multinomial", "Sin", "Tan");
        Since(8, "Expand", "Scan");
        Since(9, "Acosh", "Asinh", "Atanh", "Compress", "ConstantOfShape", "Cosh", "Erf", "EyeLike", "IsNaN", "MaxUnpool",
            "MeanVarianceNormalization", "NonZero", "OneHot", "Shrink", "Sign", "Sinh", "TfIdfVectorizer", "Where");
        Since(10, "ConvInteger", "DequantizeLinear", "IsInf", "MatMulInteger", "Mod", "NonMaxSuppression", "QLinearConv",
            "QLinearMatMul", "QuantizeLinear", "Resize", "ReverseSequence", "RoiAlign", "StringNormalizer", "ThresholdedRelu");
        Since(11, "BitShift", "ConcatFromSequence", "CumSum", "Det", "DynamicQuantizeLinear", "GatherElements", "GatherND",
            "Range", "Round", "ScatterElements", "ScatterND", "SequenceAt", "SequenceConstruct", "SequenceEmpty",
            "SequenceErase", "SequenceInsert", "SequenceLength", "SplitToSequence", "Unique");
        Since(12, "Celu", "Einsum", "GreaterOrEqual", "LessOrEqual", "NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss");
        Since(14, "HardSwish", "Trilu");
        Since(15, "Bernoulli", "CastLike", "Optional", "OptionalGetElement", "OptionalHasElement");
        Since(16, "GridSample");
        Since(17, "BlackmanWindow", "DFT", "HammingWindow", "HannWindow", "LayerNormalization", "MelWeightMatrix", "STFT", "SequenceMap");
        Since(18, "BitwiseAnd", "BitwiseNot", "BitwiseOr", "BitwiseXor", "CenterCropPad", "Col2Im", "GroupNormalization", "Mish");
        Since(19, "DeformConv");
        Since(20, "AffineGrid", "Gelu", "ImageDecoder", "RegexFullMatch", "StringConcat", "StringSplit");
        Since(23, "Attention", "RMSNormalization", "RotaryEmbedding");
        Since(24, "Swish", "TensorScatter");
        Since(26, "CumProd");
        t.Add("Upsample", (7, 10));
        t.Add("Scatter", (9, 11));
        // The experimental ops of the first opsets, dropped at 10 (ThresholdedRelu became a standard op then).
        foreach (var op in new[] { "ATen", "Affine", "ConstantFill", "Crop", "DynamicSlice", "GRUUnit", "GivenTensorFill", "ImageScaler", "ParametricSoftplus", "Scale", "ScaledTanh" })
            t.Add(op, (1, 10));
        return t;
    }

    /// <summary>Every op type in the table.</summary>
    public static IEnumerable<string> All => Table.Keys.Order(StringComparer.Ordinal);

    /// <summary>Whether <paramref name="opType"/> is an ai.onnx op in opset <paramref name="opset"/>.</summary>
    public static bool IsStandard(string opType, long opset) =>
        Table.TryGetValue(opType, out var v) && v.Since <= opset && (v.Removed is not { } removed || opset < removed);

    /// <summary>The opset that introduced <paramref name="opType"/>, or null for an op ai.onnx never had.</summary>
    public static int? Since(string opType) => Table.TryGetValue(opType, out var v) ? v.Since : null;
}
