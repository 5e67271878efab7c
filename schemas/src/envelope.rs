//! The event envelope every event carries on every topic (docs/events.md): identity, ordering, causality and the event's data.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Fields that stay in the event store and are removed from every public copy of an event.
pub const REDACTED_FIELDS: &[&str] = &["password_hash"];

/// The namespace of event ids: an event's id is UUIDv5 of `type/aggregate_id/sequence`, so the
/// same stored event always has the same id, whoever publishes it and however often.
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6ae7_4e2c_0b1d_4c55_9d7e_a37c_2f10_c0de);

/// Metadata that every command attaches to the events it appends.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Metadata {
    /// Who caused the event (a user id), if anyone.
    pub actor: Option<String>,
    /// One id per request, shared by everything that request caused.
    pub correlation_id: String,
    /// The id of the message (request or event) that directly caused this one.
    pub causation_id: String,
    pub occurred_at: DateTime<Utc>,
    /// The log's partition key: events with the same key stay in order.
    pub routing_key: String,
    /// The W3C trace context of the request that decided the event, when it was traced: the
    /// relay publishes the event with it (a Kafka `traceparent` header), so that every later
    /// hop joins the request's trace. It stays in the event store; the public envelope does not
    /// carry it.
    pub traceparent: Option<String>,
}

impl Metadata {
    pub const ACTOR: &'static str = "actor";
    pub const CORRELATION_ID: &'static str = "correlation_id";
    pub const CAUSATION_ID: &'static str = "causation_id";
    pub const OCCURRED_AT: &'static str = "occurred_at";
    pub const ROUTING_KEY: &'static str = "routing_key";
    pub const TRACEPARENT: &'static str = "traceparent";

    /// The flat string map the event store keeps beside each event.
    pub fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::with_capacity(6);
        if let Some(actor) = &self.actor {
            map.insert(Self::ACTOR.to_owned(), actor.clone());
        }
        map.insert(Self::CORRELATION_ID.to_owned(), self.correlation_id.clone());
        map.insert(Self::CAUSATION_ID.to_owned(), self.causation_id.clone());
        map.insert(Self::OCCURRED_AT.to_owned(), self.occurred_at.to_rfc3339());
        map.insert(Self::ROUTING_KEY.to_owned(), self.routing_key.clone());
        if let Some(traceparent) = &self.traceparent {
            map.insert(Self::TRACEPARENT.to_owned(), traceparent.clone());
        }
        map
    }

    /// Reads the stored map back; missing keys become empty values rather than errors, so that
    /// an old event with less metadata still decodes.
    pub fn from_value(value: &Value) -> Self {
        let get = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        Self {
            actor: get(Self::ACTOR),
            correlation_id: get(Self::CORRELATION_ID).unwrap_or_default(),
            causation_id: get(Self::CAUSATION_ID).unwrap_or_default(),
            occurred_at: get(Self::OCCURRED_AT)
                .and_then(|at| DateTime::parse_from_rfc3339(&at).ok())
                .map(|at| at.with_timezone(&Utc))
                .unwrap_or_default(),
            routing_key: get(Self::ROUTING_KEY).unwrap_or_default(),
            traceparent: get(Self::TRACEPARENT),
        }
    }
}

/// One event as the public log carries it (the Kafka message value).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EventEnvelope {
    /// The event's id: UUIDv5 of `aggregate_type/aggregate_id/sequence`, so the same event
    /// always has the same id, however often it is published. Consumers de-duplicate on it.
    pub id: Uuid,
    /// The event type, e.g. `MessageSent`: the name of `data`'s JSON Schema.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The version of the event type, `MAJOR.MINOR`; `data` follows the schema of that major.
    #[schemars(pattern(r"^[0-9]+\.[0-9]+$"))]
    pub version: String,
    /// The kind of aggregate that decided the event: `User`, `Server` or `Message`.
    pub aggregate_type: String,
    /// The id of that aggregate (a UUID for every aggregate type so far).
    pub aggregate_id: String,
    /// The event's position in its aggregate's history, from 1, without gaps.
    #[schemars(range(min = 1))]
    pub sequence: u64,
    /// When the command that caused the event was decided.
    pub occurred_at: DateTime<Utc>,
    /// The user id of whoever caused the event, or null for the system.
    pub actor: Option<String>,
    /// One id per request, shared by every event that request caused.
    pub correlation_id: String,
    /// The id of the request or event that directly caused this one.
    pub causation_id: String,
    /// The event itself: an object that follows the JSON Schema of `type` at `version`.
    #[schemars(with = "serde_json::Map<String, Value>")]
    pub data: Value,
}

impl EventEnvelope {
    pub fn event_id(aggregate_type: &str, aggregate_id: &str, sequence: u64) -> Uuid {
        let name = format!("{aggregate_type}/{aggregate_id}/{sequence}");
        Uuid::new_v5(&EVENT_ID_NAMESPACE, name.as_bytes())
    }

    /// Builds the public envelope of a stored event. `payload` is the stored form (an externally
    /// tagged enum, `{"MessageSent": {...}}`); `data` becomes the inner object, with
    /// [`REDACTED_FIELDS`] removed.
    pub fn from_stored(
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: u64,
        event_type: &str,
        event_version: &str,
        payload: Value,
        metadata: &Metadata,
    ) -> Self {
        let mut data = match payload {
            Value::Object(mut outer) if outer.len() == 1 => {
                outer.remove(event_type).unwrap_or(Value::Object(outer))
            }
            other => other,
        };
        if let Value::Object(fields) = &mut data {
            for field in REDACTED_FIELDS {
                fields.remove(*field);
            }
        }
        Self {
            id: Self::event_id(aggregate_type, aggregate_id, sequence),
            event_type: event_type.to_owned(),
            version: event_version.to_owned(),
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            sequence,
            occurred_at: metadata.occurred_at,
            actor: metadata.actor.clone(),
            correlation_id: metadata.correlation_id.clone(),
            causation_id: metadata.causation_id.clone(),
            data,
        }
    }

    /// Decodes `data` as the externally tagged domain event it came from.
    pub fn decode<E: serde::de::DeserializeOwned>(&self) -> Result<E, serde_json::Error> {
        let mut tagged = serde_json::Map::with_capacity(1);
        tagged.insert(self.event_type.clone(), self.data.clone());
        serde_json::from_value(Value::Object(tagged))
    }
}

/// An envelope at a position of a log, with the key that orders it.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedEvent {
    /// Position in the log: strictly increasing in commit order.
    pub position: i64,
    pub routing_key: String,
    pub envelope: EventEnvelope,
    /// The W3C trace context of the request that decided the event, when it was traced
    /// ([`Metadata::traceparent`]): a reader of the log continues the request's trace.
    pub traceparent: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn data_is_the_inner_event_without_secrets() {
        let metadata = Metadata {
            routing_key: "u1".into(),
            ..Metadata::default()
        };
        let envelope = EventEnvelope::from_stored(
            "User",
            "u1",
            1,
            "UserRegistered",
            "1.0",
            json!({"UserRegistered": {"username": "alice", "password_hash": "$argon2id$..."}}),
            &metadata,
        );
        assert_eq!(envelope.data, json!({"username": "alice"}));
        assert_eq!(envelope.id, EventEnvelope::event_id("User", "u1", 1));
        assert_ne!(envelope.id, EventEnvelope::event_id("User", "u1", 2));
    }

    #[test]
    fn metadata_survives_the_store_round_trip() {
        let metadata = Metadata {
            actor: Some("u1".into()),
            correlation_id: "c".into(),
            causation_id: "d".into(),
            occurred_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            routing_key: "k".into(),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        };
        let stored = serde_json::to_value(metadata.to_map()).unwrap();
        assert_eq!(Metadata::from_value(&stored), metadata);
    }
}
