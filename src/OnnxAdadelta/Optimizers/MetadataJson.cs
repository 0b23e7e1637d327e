using System.Collections;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

namespace OnnxAdadelta.Optimizers;

/// <summary>
/// The JSON of the step-model contract kept in <c>metadata_props</c> (<see cref="StepModelInfo"/>, with the
/// <see cref="AdadeltaOptions"/> record inside), generated at build time so that the library needs no reflection and stays trim- and AOT-safe: snake_case names,
/// enums as strings, no indentation.
/// </summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, UseStringEnumConverter = true, WriteIndented = false)]
[JsonSerializable(typeof(StepModelInfo))]
internal sealed partial class MetadataJson : JsonSerializerContext
{
    private static JsonSerializerOptions? s_compact;

    /// <summary>
    /// The serialization contract of <typeparamref name="T"/>: the generated one plus one rule, empty lists of options
    /// are left out as unset options are. Built on first use, after the generated <see cref="Default"/> exists.
    /// </summary>
    public static JsonTypeInfo<T> Of<T>()
    {
        var options = s_compact ??= new JsonSerializerOptions(Default.Options) { TypeInfoResolver = Default.WithAddedModifier(OmitEmptyLists) };
        return (JsonTypeInfo<T>)options.GetTypeInfo(typeof(T));
    }

    private static void OmitEmptyLists(JsonTypeInfo type)
    {
        if (type.Type != typeof(AdadeltaOptions)) return;
        foreach (var p in type.Properties)
            if (p.PropertyType != typeof(string) && typeof(IEnumerable).IsAssignableFrom(p.PropertyType) && !typeof(IDictionary).IsAssignableFrom(p.PropertyType)
                && p.ShouldSerialize is null)
                p.ShouldSerialize = static (_, value) => value is IEnumerable e && e.GetEnumerator().MoveNext();
    }
}
