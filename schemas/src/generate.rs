//! What the `generate-schemas` binary writes, computed from the code: the JSON Schema files
//! under `schemas/json/` and the generated sections of `docs/events.md`.
//!
//! The crate's tests compare the checked-in files with these, so a Rust event type that
//! changes without its schema being regenerated fails the build. Golden examples under
//! `schemas/golden/` are never generated: they are written once per version, by hand, and kept.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::catalog::{self, CatalogError, EVENT_TYPES};

/// The command that regenerates everything this module describes.
pub const COMMAND: &str = "cargo run -p aether-schemas --bin generate-schemas";

/// One schema file: its name under `schemas/json/` and its content.
#[derive(Clone, Debug, PartialEq)]
pub struct SchemaFile {
    pub name: String,
    pub schema: Value,
}

/// The `schemas/` folder of the source checkout this crate was built from.
pub fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where the checked-in JSON Schemas live.
pub fn schema_dir() -> PathBuf {
    crate_dir().join("json")
}

/// Where the golden examples live: one envelope per event type and version, kept forever.
pub fn golden_dir() -> PathBuf {
    crate_dir().join("golden")
}

/// The public-log documentation, partly generated.
pub fn events_doc_path() -> PathBuf {
    let root = crate_dir()
        .parent()
        .map_or_else(|| crate_dir().join(".."), Path::to_path_buf);
    root.join("docs").join("events.md")
}

/// The envelope schema and the current version of every event type's schema.
pub fn schema_files() -> Result<Vec<SchemaFile>, CatalogError> {
    let mut files = vec![SchemaFile {
        name: catalog::envelope_file_name(),
        schema: catalog::envelope_schema(),
    }];
    for event in EVENT_TYPES {
        files.push(SchemaFile {
            name: event.file_name(),
            schema: event.data_schema()?,
        });
    }
    Ok(files)
}

/// The checked-in text of a schema: pretty-printed with keys sorted, ending in a new line, so
/// that the files are the same whatever `serde_json` features the build happens to enable.
pub fn render(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(&sorted_keys(schema)).unwrap_or_default();
    text.push('\n');
    text
}

fn sorted_keys(value: &Value) -> Value {
    match value {
        Value::Object(fields) => {
            let mut entries: Vec<(&String, &Value)> = fields.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(key, value)| (key.clone(), sorted_keys(value)))
                    .collect::<Map<String, Value>>(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted_keys).collect()),
        other => other.clone(),
    }
}

/// Why a generated section could not be placed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DocError {
    #[error("docs/events.md has no `{0}` marker")]
    MissingMarker(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// `doc` with every generated section replaced by what the code generates now.
pub fn update_events_doc(doc: &str) -> Result<String, DocError> {
    let mut doc = doc.to_owned();
    for (name, content) in doc_sections()? {
        doc = replace_section(&doc, name, &content)?;
    }
    Ok(doc)
}

/// The generated sections of `docs/events.md`, by marker name.
pub fn doc_sections() -> Result<Vec<(&'static str, String)>, CatalogError> {
    Ok(vec![
        ("envelope", envelope_table()),
        ("event-types", event_table()?),
    ])
}

fn start_marker(name: &str) -> String {
    format!("<!-- generated:{name}:start ({COMMAND}) -->")
}

fn end_marker(name: &str) -> String {
    format!("<!-- generated:{name}:end -->")
}

fn replace_section(doc: &str, name: &str, content: &str) -> Result<String, DocError> {
    let (start, end) = (start_marker(name), end_marker(name));
    let begin = doc
        .find(&start)
        .ok_or_else(|| DocError::MissingMarker(start.clone()))?
        + start.len();
    let finish = doc[begin..]
        .find(&end)
        .ok_or_else(|| DocError::MissingMarker(end.clone()))?
        + begin;
    Ok(format!("{}\n{content}{}", &doc[..begin], &doc[finish..]))
}

fn envelope_table() -> String {
    let schema = catalog::envelope_schema();
    let required = required_fields(&schema);
    let mut table = String::from("| field | type | required | meaning |\n|---|---|---|---|\n");
    // Declaration order of the Rust struct, which is the order on the wire.
    let order = [
        "id",
        "type",
        "version",
        "aggregate_type",
        "aggregate_id",
        "sequence",
        "occurred_at",
        "actor",
        "correlation_id",
        "causation_id",
        "data",
    ];
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut names: Vec<&String> = properties.keys().collect();
    names.sort_by_key(|name| {
        order
            .iter()
            .position(|known| known == name)
            .unwrap_or(order.len())
    });
    for name in names {
        let field = &properties[name];
        table.push_str(&format!(
            "| `{name}` | {} | {} | {} |\n",
            type_label(field),
            if required.contains(name) { "yes" } else { "no" },
            one_line(
                field
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            ),
        ));
    }
    table
}

fn event_table() -> Result<String, CatalogError> {
    let mut table = String::from(
        "| type | version | aggregate | topic | meaning | `data` fields (`?` = optional) \
         | schema | golden example |\n|---|---|---|---|---|---|---|---|\n",
    );
    for event in EVENT_TYPES {
        let schema = event.data_schema()?;
        let required = required_fields(&schema);
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        // Required fields, then optional ones, each by name: the same table whichever order
        // the JSON maps keep (serde_json's `preserve_order` may be on in a workspace build).
        let mut names: Vec<&String> = required
            .iter()
            .filter(|name| properties.contains_key(*name))
            .collect();
        names.sort();
        let mut optional: Vec<&String> = properties
            .keys()
            .filter(|name| !required.contains(name))
            .collect();
        optional.sort();
        names.extend(optional);
        let fields: Vec<String> = names
            .into_iter()
            .map(|name| {
                let optional = if required.contains(name) { "" } else { "?" };
                format!("`{name}{optional}`: {}", type_label(&properties[name]))
            })
            .collect();
        let file = event.file_name();
        table.push_str(&format!(
            "| `{name}` | {version} | {aggregate} | `{topic}` | {summary} | {fields} | \
             [{file}](../schemas/json/{file}) | [{file}](../schemas/golden/{file}) |\n",
            name = event.name,
            version = event.version,
            aggregate = event.aggregate_type,
            topic = event.topic,
            summary = event.summary,
            fields = fields.join("<br>"),
        ));
    }
    Ok(table)
}

fn required_fields(schema: &Value) -> Vec<String> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// A short human reading of a field's schema: `string (uuid)`, `integer or null`, `TEXT, VOICE`.
fn type_label(field: &Value) -> String {
    if let Some(values) = allowed_values(field) {
        return values.join(" / ");
    }
    let types: Vec<&str> = match field.get("type") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => vec!["any"],
    };
    let mut label = types.join(" or ");
    if let Some(format) = field.get("format").and_then(Value::as_str) {
        label.push_str(&format!(" ({format})"));
    }
    let length = |key: &str| field.get(key).and_then(Value::as_u64);
    match (length("minLength"), length("maxLength")) {
        (Some(min), Some(max)) => label.push_str(&format!(", {min}–{max} chars")),
        (None, Some(max)) => label.push_str(&format!(", ≤ {max} chars")),
        _ => {}
    }
    label
}

/// The values an enumeration allows, from `enum` or from a `oneOf` of constants.
fn allowed_values(field: &Value) -> Option<Vec<String>> {
    let quoted = |value: &Value| format!("`{}`", value.as_str().unwrap_or_default());
    if let Some(values) = field.get("enum").and_then(Value::as_array) {
        return Some(values.iter().map(quoted).collect());
    }
    let alternatives = field.get("oneOf")?.as_array()?;
    alternatives
        .iter()
        .map(|alternative| alternative.get("const").map(quoted))
        .collect()
}

fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_sorts_keys_and_ends_with_a_new_line() {
        let text = render(&serde_json::json!({"b": 1, "a": {"d": 2, "c": 3}}));
        assert_eq!(
            text,
            "{\n  \"a\": {\n    \"c\": 3,\n    \"d\": 2\n  },\n  \"b\": 1\n}\n"
        );
    }

    #[test]
    fn sections_are_replaced_between_their_markers_only() {
        let doc = format!(
            "intro\n{}\nold\n{}\noutro\n",
            start_marker("x"),
            end_marker("x")
        );
        let updated = replace_section(&doc, "x", "new\n").unwrap();
        assert_eq!(
            updated,
            format!(
                "intro\n{}\nnew\n{}\noutro\n",
                start_marker("x"),
                end_marker("x")
            )
        );
        assert_eq!(replace_section(&updated, "x", "new\n").unwrap(), updated);
        assert!(matches!(
            replace_section("no markers", "x", ""),
            Err(DocError::MissingMarker(_))
        ));
    }

    #[test]
    fn every_event_type_is_in_the_generated_table() {
        let table = event_table().unwrap();
        for event in EVENT_TYPES {
            assert!(
                table.contains(&format!("| `{}` |", event.name)),
                "{}",
                event.name
            );
        }
        assert!(table.contains("`role`: `OWNER` / `ADMIN`"), "{table}");
        assert!(
            table.contains("`expires_at?`: string or null (date-time)"),
            "{table}"
        );
    }
}
