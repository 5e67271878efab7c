//! The topic catalogue: where each aggregate's events are published and how they are keyed.

/// Users and their sessions: registrations, profile changes, sign-ins, token rotations and
/// sign-outs. Key: user id.
pub const IDENTITY_EVENTS: &str = "aether.identity.events.v1";
/// Servers: channels, members, roles, invites. Key: server id.
pub const SERVER_EVENTS: &str = "aether.servers.events.v1";
/// Messages, read markers and direct conversations. Key: channel (or conversation) id, so one
/// partition holds a channel's history in order, with each read marker after the message it
/// points at and a conversation's opening before its messages.
pub const MESSAGE_EVENTS: &str = "aether.messages.events.v1";
/// Projection updates for the realtime edge. Key: the read-model row's key (a channel id).
pub const UPDATES: &str = "aether.updates.v1";

/// Typing and presence signals between instances: ephemeral (kept a minute), never part of the
/// replayable log. Key: the user id.
pub const EPHEMERAL: &str = "aether.ephemeral.v1";

/// Every topic that carries domain events.
pub const EVENT_TOPICS: [&str; 3] = [IDENTITY_EVENTS, SERVER_EVENTS, MESSAGE_EVENTS];

/// The topic that carries events of `aggregate_type`.
pub fn topic_for(aggregate_type: &str) -> Option<&'static str> {
    match aggregate_type {
        "User" | "Session" => Some(IDENTITY_EVENTS),
        "Server" => Some(SERVER_EVENTS),
        "Message" | "ReadMarker" | "Conversation" | "ChannelPins" | "MessageReview" => {
            Some(MESSAGE_EVENTS)
        }
        _ => None,
    }
}
