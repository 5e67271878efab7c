//! Whether a new JSON Schema may replace a published one under the same version.
//!
//! A published event version is a contract with every reader of the log, including readers of
//! events written years ago. Within one major version, a schema may only change in ways that
//! keep both directions working — today's code decodes every old event, and an old reader
//! decodes every new one. The rules are deliberately few and strict:
//!
//! 1. Every field of the old schema is still there, under the same name.
//! 2. A field keeps its required-ness: required stays required, optional stays optional.
//! 3. A field keeps its shape: its type, `null`-ability, format, allowed values (enum members),
//!    length, range and pattern. Only annotations (`description`, `title`, `examples`,
//!    `default`, `deprecated`, `$comment`, `x-*` keywords) may change.
//! 4. A new field must be optional (in Rust: an `Option` or a `#[serde(default)]` field), so
//!    that events written before it existed still decode.
//! 5. The object's own keywords (`type`, `additionalProperties`, …) do not change.
//!
//! Anything else needs a new major version of the event type: a new schema file, a new golden
//! example, and an upcaster from the old version (see [`crate::catalog::upcast`]).

use std::fmt;

use serde_json::{Map, Value};

/// Keywords that document a schema without constraining what it accepts.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "title",
    "description",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// Keywords whose array value is a set: their order carries no meaning.
const SET_KEYWORDS: &[&str] = &["required", "enum", "type", "oneOf", "anyOf", "allOf"];

/// One way in which a new schema breaks a published one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incompatibility {
    /// A field of the old schema is gone (removed or renamed).
    FieldRemoved { field: String, was_required: bool },
    /// A required field became optional: readers relying on it would find it missing.
    NoLongerRequired { field: String },
    /// An optional field became required: old events without it no longer decode.
    NowRequired { field: String },
    /// A field that did not exist is required: old events without it no longer decode.
    NewRequiredField { field: String },
    /// A field's type, format, allowed values or constraints changed.
    ShapeChanged {
        field: String,
        old: Value,
        new: Value,
    },
    /// The object's own keywords (outside its fields) changed.
    ObjectChanged { old: Value, new: Value },
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Incompatibility::FieldRemoved {
                field,
                was_required: true,
            } => write!(f, "required field `{field}` was removed or renamed"),
            Incompatibility::FieldRemoved {
                field,
                was_required: false,
            } => write!(f, "optional field `{field}` was removed or renamed"),
            Incompatibility::NoLongerRequired { field } => {
                write!(f, "field `{field}` is no longer required")
            }
            Incompatibility::NowRequired { field } => {
                write!(f, "optional field `{field}` became required")
            }
            Incompatibility::NewRequiredField { field } => {
                write!(
                    f,
                    "new field `{field}` is required (a new field must be optional)"
                )
            }
            Incompatibility::ShapeChanged { field, old, new } => {
                write!(f, "field `{field}` changed its type from {old} to {new}")
            }
            Incompatibility::ObjectChanged { old, new } => {
                write!(f, "the object's own keywords changed from {old} to {new}")
            }
        }
    }
}

/// Every way in which `new` breaks `old`; empty when `new` may replace `old` in place.
pub fn incompatibilities(old: &Value, new: &Value) -> Vec<Incompatibility> {
    let mut found = Vec::new();
    let (old_fields, new_fields) = (properties(old), properties(new));
    let (old_required, new_required) = (required(old), required(new));
    for (field, old_shape) in &old_fields {
        let was_required = old_required.contains(field);
        let Some(new_shape) = new_fields.get(field) else {
            found.push(Incompatibility::FieldRemoved {
                field: field.clone(),
                was_required,
            });
            continue;
        };
        match (was_required, new_required.contains(field)) {
            (true, false) => found.push(Incompatibility::NoLongerRequired {
                field: field.clone(),
            }),
            (false, true) => found.push(Incompatibility::NowRequired {
                field: field.clone(),
            }),
            _ => {}
        }
        let (old_shape, new_shape) = (shape(old_shape), shape(new_shape));
        if old_shape != new_shape {
            found.push(Incompatibility::ShapeChanged {
                field: field.clone(),
                old: old_shape,
                new: new_shape,
            });
        }
    }
    for field in new_fields.keys() {
        if !old_fields.contains_key(field) && new_required.contains(field) {
            found.push(Incompatibility::NewRequiredField {
                field: field.clone(),
            });
        }
    }
    let (old_object, new_object) = (object_keywords(old), object_keywords(new));
    if old_object != new_object {
        found.push(Incompatibility::ObjectChanged {
            old: old_object,
            new: new_object,
        });
    }
    found
}

fn properties(schema: &Value) -> Map<String, Value> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn required(schema: &Value) -> Vec<String> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// The schema without its fields and annotations: what the object itself demands.
fn object_keywords(schema: &Value) -> Value {
    let mut object = shape(schema);
    if let Value::Object(keywords) = &mut object {
        keywords.remove("properties");
        keywords.remove("required");
        keywords.remove("$defs");
    }
    object
}

/// `schema` with annotations removed and set-valued keywords sorted, recursively: two schemas
/// with equal shapes accept exactly the same values.
pub fn shape(schema: &Value) -> Value {
    match schema {
        Value::Object(keywords) => {
            let mut shaped: Vec<(String, Value)> = keywords
                .iter()
                .filter(|(key, _)| !is_annotation(key))
                .map(|(key, value)| {
                    let value = if SET_KEYWORDS.contains(&key.as_str()) {
                        sorted(value)
                    } else if key == "properties" || key == "$defs" {
                        // Field names are data here, not keywords: shape each value only.
                        match value {
                            Value::Object(fields) => Value::Object(
                                fields
                                    .iter()
                                    .map(|(name, field)| (name.clone(), shape(field)))
                                    .collect(),
                            ),
                            other => shape(other),
                        }
                    } else {
                        shape(value)
                    };
                    (key.clone(), value)
                })
                .collect();
            shaped.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(shaped.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        other => other.clone(),
    }
}

fn is_annotation(keyword: &str) -> bool {
    ANNOTATIONS.contains(&keyword) || keyword.starts_with("x-")
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Array(items) => {
            let mut items: Vec<Value> = items.iter().map(shape).collect();
            items.sort_by_key(|item| item.to_string());
            Value::Array(items)
        }
        other => shape(other),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn published() -> Value {
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "MessageSent",
            "description": "A message was posted in a channel.",
            "type": "object",
            "properties": {
                "message_id": {"type": "string", "format": "uuid"},
                "body": {"type": "string", "minLength": 1, "maxLength": 4000},
                "role": {"type": "string", "enum": ["OWNER", "MEMBER"]},
                "edited_at": {"type": ["string", "null"], "format": "date-time"}
            },
            "required": ["message_id", "body", "role"]
        })
    }

    fn changed(change: impl FnOnce(&mut Value)) -> Vec<Incompatibility> {
        let mut new = published();
        change(&mut new);
        incompatibilities(&published(), &new)
    }

    #[test]
    fn the_same_schema_is_compatible() {
        assert_eq!(incompatibilities(&published(), &published()), vec![]);
    }

    #[test]
    fn annotations_and_ordering_may_change() {
        let found = changed(|schema| {
            schema["description"] = json!("Reworded.");
            schema["properties"]["body"]["description"] = json!("The text.");
            schema["properties"]["role"]["enum"] = json!(["MEMBER", "OWNER"]);
            schema["required"] = json!(["role", "body", "message_id"]);
            schema["x-aether-event"] = json!({"topic": "elsewhere"});
        });
        assert_eq!(found, vec![]);
    }

    #[test]
    fn an_optional_field_may_be_added() {
        let found = changed(|schema| {
            schema["properties"]["thread_id"] = json!({"type": ["string", "null"]});
        });
        assert_eq!(found, vec![]);
    }

    #[test]
    fn a_new_required_field_is_incompatible() {
        let found = changed(|schema| {
            schema["properties"]["thread_id"] = json!({"type": "string"});
            schema["required"]
                .as_array_mut()
                .unwrap()
                .push(json!("thread_id"));
        });
        assert_eq!(
            found,
            vec![Incompatibility::NewRequiredField {
                field: "thread_id".into()
            }]
        );
    }

    #[test]
    fn a_renamed_required_field_is_incompatible() {
        let found = changed(|schema| {
            let body = schema["properties"]
                .as_object_mut()
                .unwrap()
                .remove("body")
                .unwrap();
            schema["properties"]["text"] = body;
            schema["required"] = json!(["message_id", "text", "role"]);
        });
        assert_eq!(
            found,
            vec![
                Incompatibility::FieldRemoved {
                    field: "body".into(),
                    was_required: true
                },
                Incompatibility::NewRequiredField {
                    field: "text".into()
                },
            ]
        );
        assert!(found[0].to_string().contains("removed or renamed"));
    }

    #[test]
    fn a_changed_type_format_or_constraint_is_incompatible() {
        for change in [
            json!({"type": "integer"}),
            json!({"type": "string", "format": "date-time"}),
            json!({"type": ["string", "null"], "format": "uuid"}),
        ] {
            let found = changed(|schema| schema["properties"]["message_id"] = change.clone());
            let shape_changed = matches!(
                found.as_slice(),
                [Incompatibility::ShapeChanged { field, .. }] if field == "message_id"
            );
            assert!(shape_changed, "{found:?}");
        }
        let found = changed(|schema| schema["properties"]["body"]["maxLength"] = json!(8000));
        assert_eq!(found.len(), 1, "{found:?}");
        let found = changed(|schema| {
            schema["properties"]["role"]["enum"] = json!(["OWNER", "MEMBER", "GUEST"]);
        });
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn required_ness_may_not_change() {
        let found = changed(|schema| schema["required"] = json!(["message_id", "role"]));
        assert_eq!(
            found,
            vec![Incompatibility::NoLongerRequired {
                field: "body".into()
            }]
        );
        let found = changed(|schema| {
            schema["required"] = json!(["message_id", "body", "role", "edited_at"]);
        });
        assert_eq!(
            found,
            vec![Incompatibility::NowRequired {
                field: "edited_at".into()
            }]
        );
    }

    #[test]
    fn removing_an_optional_field_is_incompatible() {
        let found = changed(|schema| {
            schema["properties"]
                .as_object_mut()
                .unwrap()
                .remove("edited_at");
        });
        assert_eq!(
            found,
            vec![Incompatibility::FieldRemoved {
                field: "edited_at".into(),
                was_required: false
            }]
        );
    }

    #[test]
    fn closing_the_object_is_incompatible() {
        let found = changed(|schema| schema["additionalProperties"] = json!(false));
        assert!(
            matches!(found.as_slice(), [Incompatibility::ObjectChanged { .. }]),
            "{found:?}"
        );
    }
}
