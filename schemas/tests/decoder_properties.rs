//! Property tests of the event envelope decoder, the first code every consumer runs on bytes
//! from the log: whatever arrives — random bytes, a published example with a field replaced by
//! any JSON value — decoding answers with an event or an error, and never panics.
//!
//! Bounded for CI (`PROPTEST_CASES`, 512 here by default); a longer run:
//! `PROPTEST_CASES=200000 cargo test -p aether-schemas --test decoder_properties`.

use aether_domain::conversation::ConversationEvent;
use aether_domain::message::MessageEvent;
use aether_domain::receipts::ReadMarkerEvent;
use aether_domain::server::ServerEvent;
use aether_domain::session::SessionEvent;
use aether_domain::user::UserEvent;
use aether_schemas::catalog;
use aether_schemas::generate::golden_dir;
use aether_schemas::EventEnvelope;
use proptest::prelude::*;
use serde_json::Value;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(512);
    ProptestConfig::with_cases(cases)
}

/// Every published example, as JSON.
fn golden() -> Vec<Value> {
    let mut examples = Vec::new();
    if let Ok(entries) = std::fs::read_dir(golden_dir()) {
        for entry in entries.flatten() {
            if let Ok(text) = std::fs::read_to_string(entry.path()) {
                if let Ok(value) = serde_json::from_str(&text) {
                    examples.push(value);
                }
            }
        }
    }
    examples
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        "[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-8[0-9a-f]{3}-[0-9a-f]{12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Decodes `envelope` the way a consumer would: upcast, then into its aggregate's events.
fn consume(envelope: EventEnvelope) -> Result<(), String> {
    let envelope = catalog::upcast(envelope).map_err(|e| e.to_string())?;
    let decoded = match envelope.aggregate_type.as_str() {
        "User" => envelope.decode::<UserEvent>().map(drop),
        "Server" => envelope.decode::<ServerEvent>().map(drop),
        "Message" => envelope.decode::<MessageEvent>().map(drop),
        "Conversation" => envelope.decode::<ConversationEvent>().map(drop),
        "ReadMarker" => envelope.decode::<ReadMarkerEvent>().map(drop),
        "ChannelPins" => envelope
            .decode::<aether_domain::pins::PinsEvent>()
            .map(drop),
        "MessageReview" => envelope
            .decode::<aether_domain::review::ReviewEvent>()
            .map(drop),
        "Session" => envelope.decode::<SessionEvent>().map(drop),
        other => return Err(format!("unknown aggregate type {other}")),
    };
    decoded.map_err(|e| e.to_string())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_are_refused_not_panicked_on(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(envelope) = serde_json::from_slice::<EventEnvelope>(&bytes) {
            let _ = consume(envelope);
        }
    }

    #[test]
    fn a_published_example_with_any_field_replaced_decodes_or_is_refused(
        pick in any::<prop::sample::Index>(),
        field in any::<prop::sample::Index>(),
        in_data in any::<bool>(),
        replacement in any_json(),
    ) {
        let examples = golden();
        prop_assume!(!examples.is_empty());
        let mut example = pick.get(&examples).clone();
        let target = if in_data { &mut example["data"] } else { &mut example };
        if let Value::Object(fields) = target {
            let names: Vec<String> = fields.keys().cloned().collect();
            if !names.is_empty() {
                fields.insert(field.get(&names).clone(), replacement);
            }
        }
        if let Ok(envelope) = serde_json::from_value::<EventEnvelope>(example) {
            let _ = consume(envelope);
        }
    }

    #[test]
    fn every_published_example_still_decodes(pick in any::<prop::sample::Index>()) {
        let examples = golden();
        prop_assume!(!examples.is_empty());
        let envelope: EventEnvelope = serde_json::from_value(pick.get(&examples).clone())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(consume(envelope), Ok(()));
    }
}
