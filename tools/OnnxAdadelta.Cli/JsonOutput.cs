using System.CommandLine;
using System.Text.Json;

namespace OnnxAdadelta.Cli;

/// <summary>The <c>--json</c> flag: one JSON document on standard output instead of the tables (Utf8JsonWriter, so AOT-safe).</summary>
public static class JsonOutput
{
    /// <summary>A new <c>--json</c> option for a verb.</summary>
    public static Option<bool> Option() => new("--json") { Description = "Print one JSON document on standard output instead of tables and text." };

    /// <summary>Writes the document that <paramref name="body"/> builds as one line on <paramref name="output"/>.</summary>
    public static void Write(TextWriter output, Action<Utf8JsonWriter> body)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            writer.WriteStartObject();
            body(writer);
            writer.WriteEndObject();
        }
        output.WriteLine(System.Text.Encoding.UTF8.GetString(stream.ToArray()));
    }

    /// <summary>A number, or null when it is NaN or infinite (JSON has no such numbers).</summary>
    public static void Number(this Utf8JsonWriter writer, string name, double? value)
    {
        if (value is { } v && double.IsFinite(v)) writer.WriteNumber(name, v);
        else writer.WriteNull(name);
    }

    /// <summary>An array of strings.</summary>
    public static void Strings(this Utf8JsonWriter writer, string name, IEnumerable<string> values)
    {
        writer.WriteStartArray(name);
        foreach (var v in values) writer.WriteStringValue(v);
        writer.WriteEndArray();
    }
}
