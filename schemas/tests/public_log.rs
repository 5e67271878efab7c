//! The public log's contract, checked against the files consumers rely on: the JSON Schemas
//! under `schemas/json/`, the golden examples under `schemas/golden/`, and `docs/events.md`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use aether_domain::conversation::ConversationEvent;
use aether_domain::message::MessageEvent;
use aether_domain::receipts::ReadMarkerEvent;
use aether_domain::server::ServerEvent;
use aether_domain::session::SessionEvent;
use aether_domain::user::UserEvent;
use aether_schemas::catalog::{self, EVENT_TYPES};
use aether_schemas::envelope::REDACTED_FIELDS;
use aether_schemas::generate::{self, COMMAND};
use aether_schemas::{compat, topics, EventEnvelope, Metadata};
use cqrs_es::DomainEvent;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

fn read_json(path: &Path) -> Result<Value, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))
}

/// The `.json` files of `dir`, by name, in name order.
fn json_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut files: Vec<(String, PathBuf)> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .expect("a UTF-8 file name")
                .to_owned();
            (name, path)
        })
        .collect();
    files.sort();
    files
}

/// `<Type>.v<N>.json` → (`Type`, N).
fn parse_file_name(name: &str) -> Option<(&str, u32)> {
    let stem = name.strip_suffix(".json")?;
    let (event_type, major) = stem.rsplit_once(".v")?;
    Some((event_type, major.parse().ok()?))
}

fn validate(schema: &Value, instance: &Value) -> Result<(), String> {
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .map_err(|e| format!("the schema does not compile: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|error| format!("at `{}`: {error}", error.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

#[test]
fn schemas_are_up_to_date() {
    let mut problems = Vec::new();
    let generated = generate::schema_files().expect("the catalogue generates its schemas");
    for file in &generated {
        let path = generate::schema_dir().join(&file.name);
        match read_json(&path) {
            Ok(checked_in) if checked_in == file.schema => {}
            Ok(_) => problems.push(format!(
                "{} differs from what the Rust types generate",
                file.name
            )),
            Err(error) => problems.push(error),
        }
    }

    // Every other file must be an older, frozen version of a current event type.
    let current: BTreeSet<&str> = generated.iter().map(|file| file.name.as_str()).collect();
    for (name, _) in json_files(&generate::schema_dir()) {
        if current.contains(name.as_str()) {
            continue;
        }
        let frozen = parse_file_name(&name).is_some_and(|(event_type, major)| {
            let current = match catalog::event_type(event_type) {
                Some(event) => catalog::major(event.version).parse().ok(),
                None if event_type == "envelope" => Some(catalog::ENVELOPE_SCHEMA_VERSION),
                None => None,
            };
            current.is_some_and(|current: u32| major < current)
        });
        if !frozen {
            problems.push(format!(
                "{name} is neither a current schema nor an older version of a current event type"
            ));
        }
    }

    let doc_path = generate::events_doc_path();
    match fs::read_to_string(&doc_path) {
        Ok(doc) => match generate::update_events_doc(&doc) {
            Ok(updated) if updated == doc => {}
            Ok(_) => problems.push("the generated tables of docs/events.md are stale".into()),
            Err(error) => problems.push(error.to_string()),
        },
        Err(error) => problems.push(format!("{}: {error}", doc_path.display())),
    }

    assert!(
        problems.is_empty(),
        "the checked-in public-log schemas are out of date:\n  {}\n\nRun `{COMMAND}` and commit \
         the result. (It refuses incompatible changes to published versions: see \
         no_incompatible_change_without_a_new_version.)",
        problems.join("\n  ")
    );
}

#[test]
fn no_incompatible_change_without_a_new_version() {
    let mut broken = Vec::new();
    for file in generate::schema_files().expect("the catalogue generates its schemas") {
        let path = generate::schema_dir().join(&file.name);
        // A version that was never checked in is new: nothing published to be compatible with.
        let Ok(published) = read_json(&path) else {
            continue;
        };
        for incompatibility in compat::incompatibilities(&published, &file.schema) {
            broken.push(format!("{}: {incompatibility}", file.name));
        }
    }
    assert!(
        broken.is_empty(),
        "the Rust types changed a published event version incompatibly:\n  {}\n\n\
         Events are forever (docs/architecture.md, log rule 8): readers of the log, and events \
         already written, depend on these schemas. Either make the change compatible (only add optional fields: \
         `Option` or `#[serde(default)]`), or give the event type a new major version in \
         aether_schemas::catalog and the domain's `event_version`, run `{COMMAND}` (it writes \
         <Type>.v<N>.json beside the frozen old file), add schemas/golden/<Type>.v<N>.json, and \
         add an upcaster from the old version in aether_schemas::catalog::upcast. The rules are \
         in schemas/src/compat.rs.",
        broken.join("\n  ")
    );
}

/// Decodes `envelope` into the domain event `E` and publishes it again the way the relay does;
/// the result must be the envelope we started from.
fn round_trip<E>(envelope: &EventEnvelope) -> Result<EventEnvelope, String>
where
    E: DomainEvent + Serialize + DeserializeOwned,
{
    let event: E = envelope
        .decode()
        .map_err(|e| format!("does not decode as a {}: {e}", envelope.aggregate_type))?;
    let payload = serde_json::to_value(&event).map_err(|e| e.to_string())?;
    let metadata = Metadata {
        actor: envelope.actor.clone(),
        correlation_id: envelope.correlation_id.clone(),
        causation_id: envelope.causation_id.clone(),
        occurred_at: envelope.occurred_at,
        routing_key: String::new(),
        traceparent: None,
    };
    Ok(EventEnvelope::from_stored(
        &envelope.aggregate_type,
        &envelope.aggregate_id,
        envelope.sequence,
        &event.event_type(),
        &event.event_version(),
        payload,
        &metadata,
    ))
}

fn check_golden(name: &str, path: &Path) -> Result<(), String> {
    let value = read_json(path)?;
    let envelope_schema = read_json(&generate::schema_dir().join(catalog::envelope_file_name()))?;
    validate(&envelope_schema, &value).map_err(|e| format!("not a valid envelope: {e}"))?;
    let envelope: EventEnvelope =
        serde_json::from_value(value.clone()).map_err(|e| format!("not an envelope: {e}"))?;
    // No field of the envelope is lost or renamed on the way through the Rust type.
    let reencoded = serde_json::to_value(&envelope).map_err(|e| e.to_string())?;
    if reencoded != value {
        return Err(format!("the envelope re-encodes differently: {reencoded}"));
    }

    let expected_name = catalog::file_name(&envelope.event_type, &envelope.version);
    if name != expected_name {
        return Err(format!(
            "holds {} version {}, so it must be called {expected_name}",
            envelope.event_type, envelope.version
        ));
    }
    let event = catalog::event_type(&envelope.event_type)
        .ok_or_else(|| format!("{} is not in the catalogue", envelope.event_type))?;
    if envelope.aggregate_type != event.aggregate_type {
        return Err(format!(
            "aggregate_type {} but {} belongs to {}",
            envelope.aggregate_type, event.name, event.aggregate_type
        ));
    }
    let id = EventEnvelope::event_id(
        &envelope.aggregate_type,
        &envelope.aggregate_id,
        envelope.sequence,
    );
    if envelope.id != id {
        return Err(format!(
            "id {} is not the event id of {}/{}/{} ({id})",
            envelope.id, envelope.aggregate_type, envelope.aggregate_id, envelope.sequence
        ));
    }
    if let Some(fields) = envelope.data.as_object() {
        if let Some(secret) = REDACTED_FIELDS.iter().find(|f| fields.contains_key(**f)) {
            return Err(format!("public data must not contain `{secret}`"));
        }
    }

    // `data` matches the schema of the version it was written at, which stays checked in.
    let data_schema = read_json(&generate::schema_dir().join(name))?;
    validate(&data_schema, &envelope.data)
        .map_err(|e| format!("data does not match {name}: {e}"))?;

    // Today's code reads it (through an upcaster if it is an older version) and would
    // publish exactly the same message.
    let current = catalog::upcast(envelope).map_err(|e| e.to_string())?;
    let mut republished = match current.aggregate_type.as_str() {
        "User" => round_trip::<UserEvent>(&current),
        "Server" => round_trip::<ServerEvent>(&current),
        "Message" => round_trip::<MessageEvent>(&current),
        "Conversation" => round_trip::<ConversationEvent>(&current),
        "ReadMarker" => round_trip::<ReadMarkerEvent>(&current),
        "ChannelPins" => round_trip::<aether_domain::pins::PinsEvent>(&current),
        "MessageReview" => round_trip::<aether_domain::review::ReviewEvent>(&current),
        "Session" => round_trip::<SessionEvent>(&current),
        other => Err(format!("no domain events for aggregate type {other}")),
    }?;
    if republished.version != event.version {
        return Err(format!(
            "the domain writes {} at version {}, the catalogue says {}",
            event.name, republished.version, event.version
        ));
    }
    // A compatible change may have added optional fields and raised the minor version since
    // the example was written; everything the example has must come back unchanged.
    republished.version.clone_from(&current.version);
    if let (Some(now), Some(then)) = (republished.data.as_object_mut(), current.data.as_object()) {
        now.retain(|field, _| then.contains_key(field));
    }
    if republished != current {
        return Err(format!(
            "decodes, but today's code publishes it differently:\n    golden:      {}\n    \
             republished: {}",
            serde_json::to_string(&current).unwrap_or_default(),
            serde_json::to_string(&republished).unwrap_or_default()
        ));
    }
    Ok(())
}

#[test]
fn golden_examples_decode_forever() {
    let files = json_files(&generate::golden_dir());
    assert!(!files.is_empty(), "no golden examples found");
    let failures: Vec<String> = files
        .iter()
        .filter_map(|(name, path)| {
            check_golden(name, path)
                .err()
                .map(|error| format!("{name}: {error}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "golden examples of the public log no longer hold:\n  {}\n\nA golden example is a \
         message that was published; it must decode forever. Do not edit or regenerate it: \
         restore the Rust types, or add a new version with an upcaster (docs/events.md, \
         \"Versions and compatibility\").",
        failures.join("\n  ")
    );
}

#[test]
fn every_event_type_has_a_golden_example() {
    let golden: BTreeSet<String> = json_files(&generate::golden_dir())
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let missing: Vec<String> = EVENT_TYPES
        .iter()
        .map(|event| event.file_name())
        .filter(|name| !golden.contains(name))
        .collect();
    assert!(
        missing.is_empty(),
        "write a golden example (a complete envelope with realistic values) for each of: {}",
        missing.join(", ")
    );
}

#[test]
fn docs_describe_every_topic_header_and_event_type() {
    let doc = fs::read_to_string(generate::events_doc_path()).expect("docs/events.md exists");
    let mut missing = Vec::new();
    let topics = topics::EVENT_TOPICS.iter().chain([&topics::UPDATES]);
    for topic in topics {
        if !doc.contains(&format!("| `{topic}` |")) {
            missing.push(format!("topic {topic}"));
        }
    }
    let headers = [
        "ce_id",
        "ce_type",
        "ce_source",
        "ce_time",
        "ce_specversion",
        "content-type",
        "aether-hash",
        "aether-prev-hash",
        "aether-body-length",
    ];
    for header in headers {
        if !doc.contains(&format!("| `{header}` |")) {
            missing.push(format!("header {header}"));
        }
    }
    for event in EVENT_TYPES {
        if !doc.contains(&format!("| `{}` |", event.name)) {
            missing.push(format!("event type {}", event.name));
        }
        if !doc.contains(&format!("(../schemas/json/{})", event.file_name())) {
            missing.push(format!("a link to the schema of {}", event.name));
        }
    }
    assert!(
        missing.is_empty(),
        "docs/events.md lacks: {}",
        missing.join(", ")
    );
}

#[test]
fn a_stored_user_registration_is_published_without_its_password_hash() {
    let golden = read_json(&generate::golden_dir().join("UserRegistered.v1.json")).unwrap();
    let envelope: EventEnvelope = serde_json::from_value(golden).unwrap();
    let stored: UserEvent = envelope.decode().unwrap();
    let UserEvent::UserRegistered { password_hash, .. } = &stored else {
        panic!("{stored:?}");
    };
    assert_eq!(
        password_hash, "",
        "a public copy decodes with an empty hash"
    );

    // The store keeps the hash; the public copy built from it does not carry it.
    let mut payload = serde_json::to_value(&stored).unwrap();
    payload["UserRegistered"]["password_hash"] =
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into();
    let published = EventEnvelope::from_stored(
        "User",
        &envelope.aggregate_id,
        1,
        "UserRegistered",
        "1.0",
        payload,
        &Metadata::default(),
    );
    assert!(published.data.get("password_hash").is_none());
    let schema = read_json(&generate::schema_dir().join("UserRegistered.v1.json")).unwrap();
    validate(&schema, &published.data).unwrap();
}

#[test]
fn a_golden_example_that_breaks_its_schema_is_caught() {
    let schema = read_json(&generate::schema_dir().join("MessageSent.v1.json")).unwrap();
    let golden = read_json(&generate::golden_dir().join("MessageSent.v1.json")).unwrap();
    let mut data = golden["data"].clone();
    validate(&schema, &data).unwrap();

    data["channel_id"] = "general".into();
    assert!(
        validate(&schema, &data).is_err(),
        "a channel id must be a UUID"
    );
    data = golden["data"].clone();
    data.as_object_mut().unwrap().remove("body");
    assert!(validate(&schema, &data).is_err(), "body is required");
    data = golden["data"].clone();
    data["body"] = "x".repeat(4_001).into();
    assert!(
        validate(&schema, &data).is_err(),
        "body is at most 4000 characters"
    );
}
