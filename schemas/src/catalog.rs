//! The catalogue of public event types and their JSON Schemas.
//!
//! Every event a domain aggregate can emit is published, and every published event type is
//! listed here with its aggregate, topic, current version and a one-line meaning. The JSON
//! Schema of an event's `data` object is generated from the Rust event enums of
//! `aether-domain` (with the `json-schema` feature): schemars describes the whole externally
//! tagged enum (`{"MessageSent": {...}}`), and [`EventType::data_schema`] takes the inner object
//! of one variant out of it — exactly what the public envelope carries as `data`.
//!
//! The generated schemas are checked in under `schemas/json/` by the `generate-schemas` binary;
//! the crate's tests fail when they are stale, when a schema changed incompatibly within a
//! version (see [`crate::compat`]) and when a golden example under `schemas/golden/` no longer
//! decodes.

use aether_domain::conversation::{Conversation, ConversationEvent};
use aether_domain::message::{Message, MessageEvent};
use aether_domain::pins::{ChannelPins, PinsEvent};
use aether_domain::receipts::{ReadMarker, ReadMarkerEvent};
use aether_domain::review::{MessageReview, ReviewEvent};
use aether_domain::server::{Server, ServerEvent};
use aether_domain::session::{Session, SessionEvent};
use aether_domain::user::{User, UserEvent};
use cqrs_es::Aggregate;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

use crate::envelope::EventEnvelope;
use crate::topics;

/// The JSON Schema dialect every checked-in schema uses.
pub const JSON_SCHEMA_DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// The version of the envelope's own schema (`schemas/json/envelope.v1.json`).
pub const ENVELOPE_SCHEMA_VERSION: u32 = 1;

/// The custom schema keyword that carries where an event type is published.
pub const EVENT_KEYWORD: &str = "x-aether-event";

/// One public event type at its current version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventType {
    /// The envelope's `type`, e.g. `MessageSent`.
    pub name: &'static str,
    /// The envelope's `aggregate_type`.
    pub aggregate_type: &'static str,
    /// The topic the event is published on.
    pub topic: &'static str,
    /// The current version, `MAJOR.MINOR`, as the domain writes it into the event store.
    pub version: &'static str,
    /// What happened, in one line, for the topic catalogue in `docs/events.md`.
    pub summary: &'static str,
}

const USER: &str = User::TYPE;
const SERVER: &str = Server::TYPE;
const CONVERSATION: &str = Conversation::TYPE;
const MESSAGE: &str = Message::TYPE;
const READ_MARKER: &str = ReadMarker::TYPE;
const PINS: &str = ChannelPins::TYPE;
const REVIEW: &str = MessageReview::TYPE;
const SESSION: &str = Session::TYPE;
const V1: &str = aether_domain::EVENT_VERSION_1;

const fn event(
    name: &'static str,
    aggregate_type: &'static str,
    topic: &'static str,
    summary: &'static str,
) -> EventType {
    EventType {
        name,
        aggregate_type,
        topic,
        version: V1,
        summary,
    }
}

/// Every public event type, grouped by aggregate in the order of the domain's enums.
pub const EVENT_TYPES: &[EventType] = &[
    event(
        "UserRegistered",
        USER,
        topics::IDENTITY_EVENTS,
        "An account was created. Its password hash stays in the event store and is never \
         published.",
    ),
    event(
        "ProfileChanged",
        USER,
        topics::IDENTITY_EVENTS,
        "A user changed their profile; the event carries all of it (display name, picture, status).",
    ),
    event(
        "AllSessionsEnded",
        USER,
        topics::IDENTITY_EVENTS,
        "The user signed out everywhere: every session that started before this ended.",
    ),
    event(
        "PasswordChanged",
        USER,
        topics::IDENTITY_EVENTS,
        "The user replaced their password. Its hash stays in the event store and is never \
         published; an `AllSessionsEnded` at the same instant follows.",
    ),
    event(
        "LoginFailed",
        USER,
        topics::IDENTITY_EVENTS,
        "Someone tried to sign in as the user with a wrong password.",
    ),
    event(
        "ExternalIdentityLinked",
        USER,
        topics::IDENTITY_EVENTS,
        "The account speaks for a subject of an external OpenID Connect issuer (its `iss` and \
         `sub`); written right after the account's `UserRegistered`, which has no password.",
    ),
    event(
        "UserBlocked",
        USER,
        topics::IDENTITY_EVENTS,
        "The user blocked another (`blocked`): no direct message between the two, and the \
         blocked person's messages are shown to the user without their words.",
    ),
    event(
        "UserUnblocked",
        USER,
        topics::IDENTITY_EVENTS,
        "The user unblocked someone they had blocked (`unblocked`).",
    ),
    event(
        "SessionStarted",
        SESSION,
        topics::IDENTITY_EVENTS,
        "A user signed in (or registered) on a device: a session whose refresh tokens rotate. \
         Keyed by the user.",
    ),
    event(
        "SessionRefreshed",
        SESSION,
        topics::IDENTITY_EVENTS,
        "A session's refresh token was traded for the next generation; the old one is spent.",
    ),
    event(
        "SessionEnded",
        SESSION,
        topics::IDENTITY_EVENTS,
        "A session ended: signed out, or a spent refresh token was presented again (reuse, \
         with the generation presented), which ends the whole token family.",
    ),
    event(
        "ServerCreated",
        SERVER,
        topics::SERVER_EVENTS,
        "A server was created; its owner is a member with the OWNER role from this event on.",
    ),
    event(
        "ServerRenamed",
        SERVER,
        topics::SERVER_EVENTS,
        "A server got a new name.",
    ),
    event(
        "ChannelCreated",
        SERVER,
        topics::SERVER_EVENTS,
        "A channel was created in the server.",
    ),
    event(
        "ChannelRenamed",
        SERVER,
        topics::SERVER_EVENTS,
        "A channel got a new name.",
    ),
    event(
        "ChannelArchived",
        SERVER,
        topics::SERVER_EVENTS,
        "A channel became read-only; its history stays readable.",
    ),
    event(
        "InviteCreated",
        SERVER,
        topics::SERVER_EVENTS,
        "A member created an invite code, optionally limited in uses and lifetime.",
    ),
    event(
        "InviteRevoked",
        SERVER,
        topics::SERVER_EVENTS,
        "An invite code stopped working.",
    ),
    event(
        "MemberJoined",
        SERVER,
        topics::SERVER_EVENTS,
        "A user joined the server with an invite code.",
    ),
    event(
        "MemberLeft",
        SERVER,
        topics::SERVER_EVENTS,
        "A member left the server.",
    ),
    event(
        "MemberRoleChanged",
        SERVER,
        topics::SERVER_EVENTS,
        "A member's role changed; the previous role is included.",
    ),
    event(
        "MemberRemoved",
        SERVER,
        topics::SERVER_EVENTS,
        "A moderator removed a member below their role, with an optional reason; the user may \
         rejoin with an invite.",
    ),
    event(
        "UserBanned",
        SERVER,
        topics::SERVER_EVENTS,
        "A user was banned from the server, with an optional reason: removed if a member, and \
         refused by every invite until unbanned.",
    ),
    event(
        "UserUnbanned",
        SERVER,
        topics::SERVER_EVENTS,
        "A ban was lifted; the user may join again with an invite.",
    ),
    event(
        "ServerDeleted",
        SERVER,
        topics::SERVER_EVENTS,
        "The owner deleted the server: from then on it answers as if it did not exist, and every \
         member listed lost access. Its history stays in the log.",
    ),
    event(
        "OwnershipTransferred",
        SERVER,
        topics::SERVER_EVENTS,
        "The owner handed the server to another member, who is its OWNER from then on; the \
         previous owner is an ADMIN.",
    ),
    event(
        "ChannelTopicChanged",
        SERVER,
        topics::SERVER_EVENTS,
        "A channel's topic was set, or cleared (topic null).",
    ),
    event(
        "ChannelMoved",
        SERVER,
        topics::SERVER_EVENTS,
        "A channel moved under a category (null: none); order lists every channel of the server, \
         archived ones included, in the order they are shown from then on.",
    ),
    event(
        "ChannelUnarchived",
        SERVER,
        topics::SERVER_EVENTS,
        "An archived channel is live again: members may post in it.",
    ),
    event(
        "ContentPolicyChanged",
        SERVER,
        topics::SERVER_EVENTS,
        "An admin chose what the rule stage does with messages its word filter finds offensive \
         from now on: ALLOW (stored as written), MASK (stored with the words replaced by `*`) or \
         BLOCK (refused).",
    ),
    event(
        "ModerationThresholdChanged",
        SERVER,
        topics::SERVER_EVENTS,
        "An admin chose the model score (greater than 0, at most 1) from which the model stage \
         flags a message of this server and hides it until a moderator decides. Before any such \
         event a server's threshold is 0.5.",
    ),
    event(
        "ConversationOpened",
        CONVERSATION,
        topics::MESSAGE_EVENTS,
        "A direct conversation (1:1 or group, outside any server) began between these people \
         (a group: three or more). Keyed by the conversation id, like its messages, so it \
         reaches a consumer before any of them.",
    ),
    event(
        "ParticipantsAdded",
        CONVERSATION,
        topics::MESSAGE_EVENTS,
        "A participant added people (`user_ids`) to a group; `participant_ids` is everyone in it \
         after. A one-to-one conversation never changes its people.",
    ),
    event(
        "ParticipantRemoved",
        CONVERSATION,
        topics::MESSAGE_EVENTS,
        "Someone is no longer in a group: its owner removed them, or they left (`removed_by` is \
         `user_id`). `participant_ids` is everyone left; `owner_id` the owner after (the \
         longest-standing participant takes over from an owner who leaves; null once nobody \
         is left).",
    ),
    event(
        "ConversationRenamed",
        CONVERSATION,
        topics::MESSAGE_EVENTS,
        "A participant named a group (`name`, 1–100 characters) or cleared its name (null); \
         `participant_ids` is everyone in it.",
    ),
    event(
        "MessageSent",
        MESSAGE,
        topics::MESSAGE_EVENTS,
        "A message was posted in a channel.",
    ),
    event(
        "DirectMessageSent",
        MESSAGE,
        topics::MESSAGE_EVENTS,
        "A message was posted in a direct conversation. Its later `MessageEdited` and \
         `MessageDeleted` carry the conversation id as their `channel_id`.",
    ),
    event(
        "MessageEdited",
        MESSAGE,
        topics::MESSAGE_EVENTS,
        "A message's body changed; the previous body is included, so the edit history is in the \
         log.",
    ),
    event(
        "MessageDeleted",
        MESSAGE,
        topics::MESSAGE_EVENTS,
        "A message was deleted: a tombstone that stays in history; its body is no longer shown.",
    ),
    event(
        "ReactionAdded",
        MESSAGE,
        topics::MESSAGE_EVENTS,
        "Someone reacted to a message with an emoji (a Unicode emoji, or a custom one's \
         `:name:`) they had not reacted with yet. Keyed by the message's channel or conversation.",
    ),
    event(
        "ReactionRemoved",
        MESSAGE,
        topics::MESSAGE_EVENTS,
        "Someone took back their reaction to a message. A deleted message's reactions go with it \
         without an event of their own.",
    ),
    event(
        "MessagePinned",
        PINS,
        topics::MESSAGE_EVENTS,
        "A message was pinned in its channel or conversation (by a moderator or above in a \
         server's channel, by either participant in a conversation). Keyed by the channel, like \
         its messages.",
    ),
    event(
        "MessageUnpinned",
        PINS,
        topics::MESSAGE_EVENTS,
        "A pinned message was unpinned. Keyed by the channel.",
    ),
    event(
        "MessageFlagged",
        REVIEW,
        topics::MESSAGE_EVENTS,
        "The model stage scored a server's message at or above the server's threshold: the \
         score (0 to 1), the model version that gave it, the threshold and a reason for \
         people. At most once per message. Keyed by the channel, like its messages; the \
         aggregate id is a UUIDv5 of the message id.",
    ),
    event(
        "MessageReported",
        REVIEW,
        topics::MESSAGE_EVENTS,
        "A member reported a message to the server's moderators, with a reason (once per \
         member and message). Keyed by the channel.",
    ),
    event(
        "MessageHidden",
        REVIEW,
        topics::MESSAGE_EVENTS,
        "A message is hidden from everyone but the server's moderators: by a moderator \
         (`hidden_by`), or by the model stage right after its flag (`hidden_by` absent). \
         Keyed by the channel.",
    ),
    event(
        "MessageRestored",
        REVIEW,
        topics::MESSAGE_EVENTS,
        "A moderator showed a hidden message again, with a reason. Keyed by the channel.",
    ),
    event(
        "FlagDismissed",
        REVIEW,
        topics::MESSAGE_EVENTS,
        "A moderator judged a message's flags and reports unfounded, with a reason; the message \
         leaves the moderation queue as it is shown. Keyed by the channel.",
    ),
    event(
        "ChannelMarkedRead",
        READ_MARKER,
        topics::MESSAGE_EVENTS,
        "A member read a channel up to a message. Keyed by the channel, like its messages, so \
         a consumer sees it after the message it points at.",
    ),
    event(
        "ConversationMarkedRead",
        READ_MARKER,
        topics::MESSAGE_EVENTS,
        "A participant read a direct conversation up to a message. Keyed by the conversation.",
    ),
];

/// What the catalogue could not do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("unknown event type {0}")]
    UnknownEventType(String),
    #[error("unknown aggregate type {0}")]
    UnknownAggregateType(String),
    #[error("the {aggregate_type} event enum has no variant {event_type}")]
    NoSuchVariant {
        aggregate_type: String,
        event_type: String,
    },
    #[error("the generated schema of {0} is not an object schema")]
    UnexpectedSchema(String),
    #[error(
        "{event_type} version {version} cannot be read as version {current}: there is no upcaster \
         for it (add one to aether_schemas::catalog::upcast)"
    )]
    NoUpcaster {
        event_type: String,
        version: String,
        current: String,
    },
}

/// The event type called `name`.
pub fn event_type(name: &str) -> Option<&'static EventType> {
    EVENT_TYPES.iter().find(|event| event.name == name)
}

/// The major part of a `MAJOR.MINOR` version: the number in schema and golden file names.
pub fn major(version: &str) -> &str {
    version.split('.').next().unwrap_or(version)
}

/// The file name of an event type's schema and golden example at `version`.
pub fn file_name(name: &str, version: &str) -> String {
    format!("{name}.v{}.json", major(version))
}

/// The file name of the envelope's schema.
pub fn envelope_file_name() -> String {
    format!("envelope.v{ENVELOPE_SCHEMA_VERSION}.json")
}

impl EventType {
    /// `MessageSent.v1.json`: the name of this version's schema and golden example.
    pub fn file_name(&self) -> String {
        file_name(self.name, self.version)
    }

    /// The JSON Schema of the envelope's `data` for this event type at its current version.
    pub fn data_schema(&self) -> Result<Value, CatalogError> {
        let enum_schema = event_enum_schema(self.aggregate_type)?;
        let variant =
            variant_schema(&enum_schema, self.name).ok_or_else(|| CatalogError::NoSuchVariant {
                aggregate_type: self.aggregate_type.to_owned(),
                event_type: self.name.to_owned(),
            })?;
        let Value::Object(variant) = variant else {
            return Err(CatalogError::UnexpectedSchema(self.name.to_owned()));
        };
        let mut schema = Map::new();
        schema.insert("$schema".into(), JSON_SCHEMA_DIALECT.into());
        schema.insert("title".into(), self.name.into());
        schema.insert("description".into(), self.summary.into());
        schema.insert(
            EVENT_KEYWORD.into(),
            json!({
                "type": self.name,
                "version": self.version,
                "aggregate_type": self.aggregate_type,
                "topic": self.topic,
            }),
        );
        schema.extend(variant);
        // Subschemas are inlined, so there are no shared definitions unless a type is
        // recursive; carry them over so that the schema stands alone if one ever is.
        if let Some(defs) = enum_schema.get("$defs") {
            schema.insert("$defs".into(), defs.clone());
        }
        Ok(Value::Object(schema))
    }
}

/// The JSON Schema of the envelope every event travels in.
pub fn envelope_schema() -> Value {
    let mut schema = generator()
        .into_root_schema_for::<EventEnvelope>()
        .to_value();
    if let Value::Object(fields) = &mut schema {
        fields.insert(
            "description".into(),
            "One event of AetherConnect's public log: the value of a Kafka message on an \
             `aether.<context>.events.v1` topic. `data` follows the schema of `type` at `version`."
                .into(),
        );
    }
    schema
}

/// The event type names of the domain's event enum for `aggregate_type`, in declaration order.
/// The catalogue must list exactly these.
pub fn domain_event_types(aggregate_type: &str) -> Result<Vec<String>, CatalogError> {
    let schema = event_enum_schema(aggregate_type)?;
    Ok(variants(&schema)
        .filter_map(|variant| variant_name(variant).map(str::to_owned))
        .collect())
}

/// The aggregate types whose events are public.
pub const AGGREGATE_TYPES: [&str; 8] = [
    USER,
    SESSION,
    SERVER,
    CONVERSATION,
    MESSAGE,
    READ_MARKER,
    PINS,
    REVIEW,
];

/// Brings an envelope written at an older version of its event type up to the current one,
/// so that [`EventEnvelope::decode`] reads it with today's domain types.
///
/// Versions that share the current major are compatible by the rules of [`crate::compat`] and
/// pass through. An incompatible change adds a new major version, and with it an upcaster here
/// that rewrites `data` from the old major to the new one: published events are never rewritten.
pub fn upcast(envelope: EventEnvelope) -> Result<EventEnvelope, CatalogError> {
    let current = event_type(&envelope.event_type)
        .ok_or_else(|| CatalogError::UnknownEventType(envelope.event_type.clone()))?;
    if major(&envelope.version) == major(current.version) {
        return Ok(envelope);
    }
    // No event type has a second major version yet, so there is no upcaster to apply.
    Err(CatalogError::NoUpcaster {
        event_type: envelope.event_type,
        version: envelope.version,
        current: current.version.to_owned(),
    })
}

/// Draft 2020-12 with every subschema inlined: each checked-in file reads on its own, and the
/// compatibility check compares fields directly instead of following references.
fn generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12()
        .with(|settings| settings.inline_subschemas = true)
        .into_generator()
}

fn schema_of<T: JsonSchema>() -> Value {
    generator().into_root_schema_for::<T>().to_value()
}

fn event_enum_schema(aggregate_type: &str) -> Result<Value, CatalogError> {
    match aggregate_type {
        USER => Ok(schema_of::<UserEvent>()),
        SERVER => Ok(schema_of::<ServerEvent>()),
        CONVERSATION => Ok(schema_of::<ConversationEvent>()),
        MESSAGE => Ok(schema_of::<MessageEvent>()),
        READ_MARKER => Ok(schema_of::<ReadMarkerEvent>()),
        PINS => Ok(schema_of::<PinsEvent>()),
        REVIEW => Ok(schema_of::<ReviewEvent>()),
        SESSION => Ok(schema_of::<SessionEvent>()),
        other => Err(CatalogError::UnknownAggregateType(other.to_owned())),
    }
}

/// The alternatives of an externally tagged enum's schema: one object per variant, with the
/// variant's name as its only property.
fn variants(enum_schema: &Value) -> impl Iterator<Item = &Value> {
    enum_schema
        .get("oneOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn variant_name(variant: &Value) -> Option<&str> {
    let properties = variant.get("properties")?.as_object()?;
    match properties.keys().collect::<Vec<_>>().as_slice() {
        [name] => Some(name.as_str()),
        _ => None,
    }
}

fn variant_schema(enum_schema: &Value, name: &str) -> Option<Value> {
    variants(enum_schema)
        .find(|variant| variant_name(variant) == Some(name))
        .and_then(|variant| variant.get("properties")?.get(name).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_lists_exactly_the_domain_events() {
        let mut listed: Vec<&str> = EVENT_TYPES.iter().map(|event| event.name).collect();
        let mut emitted = Vec::new();
        for aggregate_type in AGGREGATE_TYPES {
            for name in domain_event_types(aggregate_type).unwrap() {
                let event = event_type(&name)
                    .unwrap_or_else(|| panic!("{name} is emitted but not in the catalogue"));
                assert_eq!(event.aggregate_type, aggregate_type, "{name}");
                emitted.push(name);
            }
        }
        listed.sort_unstable();
        emitted.sort_unstable();
        assert_eq!(listed, emitted);
    }

    #[test]
    fn each_event_type_is_published_on_its_aggregates_topic() {
        for event in EVENT_TYPES {
            assert_eq!(
                topics::topic_for(event.aggregate_type),
                Some(event.topic),
                "{}",
                event.name
            );
        }
    }

    #[test]
    fn data_is_the_inner_object_of_the_variant() {
        let schema = event_type("MessageSent").unwrap().data_schema().unwrap();
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["title"], "MessageSent");
        assert_eq!(schema["properties"]["message_id"]["format"], "uuid");
        assert_eq!(schema["properties"]["sent_at"]["format"], "date-time");
        assert_eq!(schema["properties"]["body"]["maxLength"], 4000);
        assert_eq!(schema[EVENT_KEYWORD]["topic"], topics::MESSAGE_EVENTS);
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(required.contains(&"channel_id"), "{required:?}");
    }

    #[test]
    fn the_password_hash_is_not_part_of_the_public_schema() {
        let schema = event_type("UserRegistered").unwrap().data_schema().unwrap();
        let text = schema.to_string();
        for field in crate::envelope::REDACTED_FIELDS {
            assert!(!text.contains(field), "{field} in {text}");
        }
        assert!(schema["properties"]["username"].is_object());
    }

    #[test]
    fn optional_fields_are_not_required() {
        let schema = event_type("InviteCreated").unwrap().data_schema().unwrap();
        let required = schema["required"].as_array().unwrap();
        assert!(!required.contains(&json!("max_uses")));
        assert!(!required.contains(&json!("expires_at")));
        assert!(required.contains(&json!("code")));
    }

    #[test]
    fn an_unknown_variant_is_refused() {
        let bogus = EventType {
            name: "MessagePinned",
            ..EVENT_TYPES[12]
        };
        assert!(matches!(
            bogus.data_schema(),
            Err(CatalogError::NoSuchVariant { .. })
        ));
    }

    #[test]
    fn an_older_major_version_needs_an_upcaster() {
        let envelope = |version: &str| EventEnvelope {
            id: uuid::Uuid::nil(),
            event_type: "MessageSent".into(),
            version: version.into(),
            aggregate_type: MESSAGE.into(),
            aggregate_id: "m".into(),
            sequence: 1,
            occurred_at: chrono::DateTime::UNIX_EPOCH,
            actor: None,
            correlation_id: String::new(),
            causation_id: String::new(),
            data: json!({}),
        };
        assert!(upcast(envelope("1.0")).is_ok());
        assert!(upcast(envelope("1.3")).is_ok());
        assert!(matches!(
            upcast(envelope("0.9")),
            Err(CatalogError::NoUpcaster { .. })
        ));
    }
}
