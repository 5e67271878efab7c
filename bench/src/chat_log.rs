//! A realistic chat history as the relay would have published it: a few users register, a few
//! servers get channels, an invite and members, then mostly `MessageSent` with some edits and
//! deletions.
//!
//! Every event is a real domain event (validated values, `aether_domain` types), stored the way
//! the event store stores it (externally tagged JSON, metadata as the flat string map) and turned
//! into the envelope with `EventEnvelope::from_stored`, exactly as `commands/src/relay.rs` does.
//! Keys are the relay's routing keys: the user id for user events, the server id for server
//! events, the channel id for messages. The history is deterministic for a seed, except for
//! the ids, which are fresh UUIDs (v7 for messages) as in production.

use std::collections::VecDeque;

use aether_commands::relay::event_headers;
use aether_domain::message::MessageEvent;
use aether_domain::server::ServerEvent;
use aether_domain::user::UserEvent;
use aether_domain::{
    ChannelId, ChannelKind, ChannelName, DisplayName, InviteCode, MessageBody, MessageId, Role,
    ServerId, ServerName, UserId, Username,
};
use aether_schemas::{topics, EventEnvelope, Metadata};
use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use cqrs_es::DomainEvent;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rdkafka::message::OwnedHeaders;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Of every 100 message events: 90 sent, 7 edited, 3 deleted (edits and deletions need a
/// message to act on; until there is one, messages are sent).
const SENT_PERCENT: u32 = 90;
const EDITED_PERCENT: u32 = 7;
/// Messages kept as candidates for an edit or a deletion (the recent ones).
const LIVE_MESSAGES: usize = 5_000;

const WORDS: &[&str] = &[
    "the", "a", "we", "you", "I", "it", "is", "are", "was", "deploy", "build", "review", "merge",
    "ship", "today", "tomorrow", "later", "meeting", "lunch", "coffee", "bug", "fix", "test",
    "green", "red", "broken", "works", "again", "why", "how", "when", "maybe", "yes", "no",
    "thanks", "great", "idea", "plan", "release", "branch", "channel", "server", "message", "ping",
    "pong", "latency", "queue", "kafka", "postgres", "mongo", "rust", "compile", "cargo", "clippy",
    "ok", "sure", "please", "look", "at", "this", "that", "with", "for", "on", "in", "😀", "👍",
    "🚀",
];

/// How the history is shaped.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub events: usize,
    pub users: usize,
    pub servers: usize,
    /// Channels per server.
    pub channels: usize,
    /// Members per server besides its owner.
    pub members: usize,
    pub seed: u64,
}

impl Shape {
    /// Events before the first message.
    pub fn setup_events(&self) -> usize {
        self.users + self.servers * (1 + self.channels + 1 + self.members)
    }
}

/// One event ready to produce.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// The catalogue topic (without the deployment prefix).
    pub topic: &'static str,
    pub key: String,
    pub envelope: EventEnvelope,
    pub body: Vec<u8>,
    hash: String,
    prev_hash: String,
}

impl Outgoing {
    /// The relay's header set ([`event_headers`]). The hash chain is
    /// `sha256(prev_hash || envelope JSON)` per aggregate: the same size and shape as the event
    /// store's chain, though not its canonical form (no consumer here checks it).
    pub fn headers(&self) -> OwnedHeaders {
        event_headers(
            &self.envelope,
            &self.envelope.id.to_string(),
            &self.hash,
            &self.prev_hash,
            self.body.len(),
        )
    }
}

struct Server {
    id: ServerId,
    sequence: u64,
    prev_hash: String,
    channels: Vec<ChannelId>,
    /// The owner first.
    members: Vec<UserId>,
}

struct LiveMessage {
    id: MessageId,
    channel: ChannelId,
    author: UserId,
    body: MessageBody,
    sequence: u64,
    prev_hash: String,
}

/// Counts of what was generated, by event type.
#[derive(Clone, Debug, Default)]
pub struct Mix {
    pub users: usize,
    pub server_events: usize,
    pub sent: usize,
    pub edited: usize,
    pub deleted: usize,
    pub body_bytes: usize,
}

/// The history, one event at a time (a million envelopes are not held in memory).
pub struct ChatLog {
    rng: StdRng,
    clock: DateTime<Utc>,
    setup: VecDeque<Outgoing>,
    servers: Vec<Server>,
    live: Vec<LiveMessage>,
    left: usize,
    pub mix: Mix,
}

impl ChatLog {
    pub fn new(shape: Shape) -> anyhow::Result<Self> {
        anyhow::ensure!(
            shape.setup_events() < shape.events,
            "{} events are too few for {} users and {} servers ({} setup events)",
            shape.events,
            shape.users,
            shape.servers,
            shape.setup_events()
        );
        anyhow::ensure!(
            shape.members < shape.users,
            "members per server must be fewer than users"
        );
        let span = i64::try_from(shape.events).unwrap_or(i64::MAX / 4) * 2;
        let mut log = Self {
            rng: StdRng::seed_from_u64(shape.seed),
            clock: Utc::now() - Duration::milliseconds(span),
            setup: VecDeque::new(),
            servers: Vec::new(),
            live: Vec::new(),
            left: shape.events,
            mix: Mix::default(),
        };
        log.build_setup(shape)?;
        Ok(log)
    }

    fn tick(&mut self) -> DateTime<Utc> {
        self.clock += Duration::microseconds(self.rng.gen_range(500..1_500));
        self.clock
    }

    fn build_setup(&mut self, shape: Shape) -> anyhow::Result<()> {
        let mut users = Vec::with_capacity(shape.users);
        for n in 0..shape.users {
            let user_id = UserId::new();
            let at = self.tick();
            let event = UserEvent::UserRegistered {
                user_id,
                username: Username::parse(&format!("user{n:05}"))?,
                display_name: DisplayName::parse(&format!("User {n}"))?,
                // Redacted by `from_stored`, as in every public copy of the event.
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
                registered_at: at,
            };
            let id = user_id.to_string();
            let out = envelope("User", &id, 1, &event, Some(user_id), at, &id, "")?;
            self.setup.push_back(out);
            self.mix.users += 1;
            users.push(user_id);
        }
        for s in 0..shape.servers {
            let owner = users[s % users.len()];
            let mut server = Server {
                id: ServerId::new(),
                sequence: 0,
                prev_hash: String::new(),
                channels: Vec::new(),
                members: vec![owner],
            };
            let created_at = self.tick();
            let server_id = server.id;
            self.server_event(
                &mut server,
                owner,
                ServerEvent::ServerCreated {
                    server_id,
                    name: ServerName::parse(&format!("Server {s}"))?,
                    owner_id: owner,
                    created_at,
                },
            )?;
            for c in 0..shape.channels {
                let channel_id = ChannelId::new();
                server.channels.push(channel_id);
                self.server_event(
                    &mut server,
                    owner,
                    ServerEvent::ChannelCreated {
                        channel_id,
                        name: ChannelName::parse(&format!("channel-{c}"))?,
                        kind: ChannelKind::Text,
                        private: false,
                    },
                )?;
            }
            let code = InviteCode::parse(&format!("bench{s:05}invite"))?;
            self.server_event(
                &mut server,
                owner,
                ServerEvent::InviteCreated {
                    code: code.clone(),
                    created_by: owner,
                    max_uses: None,
                    expires_at: None,
                },
            )?;
            let others: Vec<UserId> = users.iter().copied().filter(|u| *u != owner).collect();
            let joining: Vec<UserId> = others
                .choose_multiple(&mut self.rng, shape.members)
                .copied()
                .collect();
            for user_id in joining {
                let joined_at = self.tick();
                self.server_event(
                    &mut server,
                    user_id,
                    ServerEvent::MemberJoined {
                        user_id,
                        role: Role::Member,
                        invite_code: code.clone(),
                        joined_at,
                    },
                )?;
                server.members.push(user_id);
            }
            self.servers.push(server);
        }
        Ok(())
    }

    fn server_event(
        &mut self,
        server: &mut Server,
        actor: UserId,
        event: ServerEvent,
    ) -> anyhow::Result<()> {
        server.sequence += 1;
        let id = server.id.to_string();
        let at = self.tick();
        let out = envelope(
            "Server",
            &id,
            server.sequence,
            &event,
            Some(actor),
            at,
            &id,
            &server.prev_hash,
        )?;
        server.prev_hash.clone_from(&out.hash);
        self.setup.push_back(out);
        self.mix.server_events += 1;
        Ok(())
    }

    fn body(&mut self) -> anyhow::Result<MessageBody> {
        // Mostly short messages, some long ones.
        let words = if self.rng.gen_ratio(1, 10) {
            self.rng.gen_range(30..120)
        } else {
            self.rng.gen_range(2..20)
        };
        let mut text = String::new();
        for n in 0..words {
            if n > 0 {
                text.push(if self.rng.gen_ratio(1, 40) { '\n' } else { ' ' });
            }
            text.push_str(WORDS.choose(&mut self.rng).copied().unwrap_or("ok"));
        }
        Ok(MessageBody::parse(&text)?)
    }

    fn message(&mut self) -> anyhow::Result<Outgoing> {
        let roll = self.rng.gen_range(0..100);
        let at = self.tick();
        if self.live.is_empty() || roll < SENT_PERCENT {
            let server = self
                .servers
                .choose(&mut self.rng)
                .context("no servers to write to")?;
            let channel = *server
                .channels
                .choose(&mut self.rng)
                .context("no channels")?;
            let author = *server.members.choose(&mut self.rng).context("no members")?;
            let server_id = server.id;
            let body = self.body()?;
            let message_id = MessageId::new();
            let event = MessageEvent::MessageSent {
                message_id,
                channel_id: channel,
                server_id,
                author_id: author,
                body: body.clone(),
                sent_at: at,
                reply_to_id: None,
                thread_root_id: None,
                also_in_channel: false,
                mentions: None,
                forwarded_from: None,
            };
            let id = message_id.to_string();
            let out = envelope(
                "Message",
                &id,
                1,
                &event,
                Some(author),
                at,
                &channel.to_string(),
                "",
            )?;
            if self.live.len() >= LIVE_MESSAGES {
                let old = self.rng.gen_range(0..self.live.len());
                self.live.swap_remove(old);
            }
            self.live.push(LiveMessage {
                id: message_id,
                channel,
                author,
                body,
                sequence: 1,
                prev_hash: out.hash.clone(),
            });
            self.mix.sent += 1;
            self.mix.body_bytes += out.body.len();
            return Ok(out);
        }
        let index = self.rng.gen_range(0..self.live.len());
        if roll < SENT_PERCENT + EDITED_PERCENT {
            let body = self.body()?;
            let message = &mut self.live[index];
            message.sequence += 1;
            let event = MessageEvent::MessageEdited {
                message_id: message.id,
                channel_id: message.channel,
                body: body.clone(),
                previous_body: std::mem::replace(&mut message.body, body),
                edited_at: at,
                mentions: None,
            };
            let out = envelope(
                "Message",
                &message.id.to_string(),
                message.sequence,
                &event,
                Some(message.author),
                at,
                &message.channel.to_string(),
                &message.prev_hash,
            )?;
            message.prev_hash.clone_from(&out.hash);
            self.mix.edited += 1;
            self.mix.body_bytes += out.body.len();
            Ok(out)
        } else {
            let message = self.live.swap_remove(index);
            let event = MessageEvent::MessageDeleted {
                message_id: message.id,
                channel_id: message.channel,
                deleted_by: message.author,
                deleted_at: at,
            };
            let out = envelope(
                "Message",
                &message.id.to_string(),
                message.sequence + 1,
                &event,
                Some(message.author),
                at,
                &message.channel.to_string(),
                &message.prev_hash,
            )?;
            self.mix.deleted += 1;
            self.mix.body_bytes += out.body.len();
            Ok(out)
        }
    }
}

impl Iterator for ChatLog {
    type Item = anyhow::Result<Outgoing>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        match self.setup.pop_front() {
            Some(out) => {
                self.mix.body_bytes += out.body.len();
                Some(Ok(out))
            }
            None => Some(self.message()),
        }
    }
}

/// An event as the event store keeps it, then as the relay publishes it.
#[allow(clippy::too_many_arguments)]
fn envelope<E: DomainEvent + Serialize>(
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: u64,
    event: &E,
    actor: Option<UserId>,
    at: DateTime<Utc>,
    routing_key: &str,
    prev_hash: &str,
) -> anyhow::Result<Outgoing> {
    let correlation_id = Uuid::now_v7().to_string();
    // The event store keeps metadata as a flat string map (`CommandContext::metadata`); read
    // it back the way the relay does.
    let stored = Metadata {
        actor: actor.map(|a| a.to_string()),
        causation_id: correlation_id.clone(),
        correlation_id,
        occurred_at: at,
        routing_key: routing_key.to_owned(),
        traceparent: None,
    }
    .to_map();
    let metadata = Metadata::from_value(&serde_json::to_value(stored)?);
    let payload = serde_json::to_value(event)?;
    let envelope = EventEnvelope::from_stored(
        aggregate_type,
        aggregate_id,
        sequence,
        &event.event_type(),
        &event.event_version(),
        payload,
        &metadata,
    );
    let body = serde_json::to_vec(&envelope)?;
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(&body);
    let hash = hex::encode(hasher.finalize());
    let topic = topics::topic_for(aggregate_type)
        .with_context(|| format!("no topic for {aggregate_type}"))?;
    let key = if metadata.routing_key.is_empty() {
        aggregate_id.to_owned()
    } else {
        metadata.routing_key
    };
    Ok(Outgoing {
        topic,
        key,
        envelope,
        body,
        hash,
        prev_hash: prev_hash.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(events: usize) -> Shape {
        Shape {
            events,
            users: 20,
            servers: 2,
            channels: 3,
            members: 5,
            seed: 7,
        }
    }

    #[test]
    fn a_history_of_valid_events_keyed_like_the_relay() {
        let shape = shape(2_000);
        let log = ChatLog::new(shape).expect("shape");
        let events: Vec<Outgoing> = log.map(|e| e.expect("event")).collect();
        assert_eq!(events.len(), 2_000);
        let mut channels = std::collections::HashSet::new();
        for out in &events {
            let e = &out.envelope;
            match e.aggregate_type.as_str() {
                "User" => {
                    assert_eq!(out.key, e.aggregate_id);
                    let _: UserEvent = e.decode().expect("user event");
                    assert!(e.data.get("password_hash").is_none());
                }
                "Server" => {
                    assert_eq!(out.key, e.aggregate_id);
                    if let ServerEvent::ChannelCreated { channel_id, .. } =
                        e.decode().expect("server event")
                    {
                        channels.insert(channel_id.to_string());
                    }
                }
                "Message" => {
                    let event: MessageEvent = e.decode().expect("message event");
                    assert_eq!(out.key, event.channel_id().to_string());
                    assert!(channels.contains(&out.key));
                }
                other => panic!("unexpected aggregate type {other}"),
            }
            // What a projector reads back is what was sent.
            let back: EventEnvelope = serde_json::from_slice(&out.body).expect("decodes");
            assert_eq!(&back, e);
        }
        // Sequences grow by one per aggregate, from 1.
        let mut seen = std::collections::HashMap::new();
        for out in &events {
            let e = &out.envelope;
            let last = seen.insert(e.aggregate_id.clone(), e.sequence).unwrap_or(0);
            assert_eq!(e.sequence, last + 1, "{}", e.aggregate_id);
        }
        let messages = events.len() - shape.setup_events();
        let edits = events
            .iter()
            .filter(|e| e.envelope.event_type == "MessageEdited")
            .count();
        assert!(
            edits > messages / 50 && edits < messages / 5,
            "{edits} edits"
        );
    }

    #[test]
    fn too_few_events_for_the_setup_are_refused() {
        assert!(ChatLog::new(shape(40)).is_err());
        assert!(ChatLog::new(shape(41)).is_ok());
    }
}
