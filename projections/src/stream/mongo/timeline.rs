//! The timeline read model in MongoDB: one document per message with its edit history, each
//! channel's numbered stream of changes that subscriptions resume from, and per-channel
//! counters. Same semantics, and the same updates, as the embedded one
//! ([`crate::timeline::TimelineProjection`]).
//!
//! A batch is worked out in memory: the messages and channel counters it touches are read
//! once, every event is applied to those copies in order, and the results are written back
//! with the batch's bookkeeping in a few bulk commands. Times are BSON dates, so they keep milliseconds; the rows pushed
//! to the realtime edge carry the same truncated times a later read returns.

use std::collections::{HashMap, HashSet};

use aether_domain::message::{add_reaction, remove_reaction, MessageEvent, Reaction};
use aether_domain::pins::PinsEvent;
use aether_domain::review::ReviewEvent;
use aether_domain::{ChannelId, Emoji, MessageId, ServerId, UserId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mongodb::bson::{doc, Bson, Document};

use super::{malformed, ModelCollection, MongoProjection, MongoTx};
use crate::rows::{
    apply_review, ChannelEventKind, ChannelEventRow, EditRow, MessageRow, PinRow, ReactionChange,
    ThreadSummary,
};
use crate::stream::source::StreamEvent;
use crate::stream::store::StoreError;
use crate::updates::Update;

const MESSAGES: &str = "messages";
const CHANNEL_EVENTS: &str = "channel_events";
const CHANNEL_HEADS: &str = "channel_heads";

#[derive(Debug, Default)]
pub struct MongoTimelineProjection;

impl MongoTimelineProjection {
    pub const NAME: &'static str = "timeline";
}

/// A message as this batch left it.
struct Touched {
    row: MessageRow,
    /// The first event of the batch that touched it: the one blamed if the write fails.
    origin: usize,
    /// Sent in this batch, so it is inserted rather than replaced.
    new: bool,
}

/// A channel's counters as this batch left them.
#[derive(Default)]
struct Head {
    last_event: i64,
    last_message: i64,
    origin: usize,
}

#[async_trait]
impl MongoProjection for MongoTimelineProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn collections(&self) -> &'static [ModelCollection] {
        &[
            ModelCollection {
                name: MESSAGES,
                indexes: &[
                    (&[("channel_id", 1), ("channel_seq", 1)], true),
                    (&[("thread_root_id", 1), ("thread_seq", 1)], false),
                    // A server's moderation queue.
                    (&[("server_id", 1), ("review_open", 1), ("_id", 1)], false),
                ],
                dump_order: &["channel_id", "channel_seq"],
            },
            ModelCollection {
                name: CHANNEL_EVENTS,
                indexes: &[(&[("channel_id", 1), ("seq", 1)], true)],
                dump_order: &["channel_id", "seq"],
            },
            ModelCollection {
                name: CHANNEL_HEADS,
                indexes: &[],
                dump_order: &["_id"],
            },
        ]
    }

    async fn apply(
        &self,
        tx: &mut MongoTx<'_>,
        events: &[(usize, &StreamEvent)],
        updates: &mut Vec<Update>,
    ) -> Result<(), StoreError> {
        let mut decoded = Vec::with_capacity(events.len());
        for (index, event) in events {
            let Some(envelope) = event.envelope() else {
                continue;
            };
            let undecodable = |e: serde_json::Error| StoreError::Event {
                index: *index,
                reason: format!("{} cannot be decoded: {e}", envelope.event_type),
            };
            let change = match envelope.aggregate_type.as_str() {
                "Message" => {
                    TimelineEvent::Message(Box::new(envelope.decode().map_err(undecodable)?))
                }
                "ChannelPins" => TimelineEvent::Pins(envelope.decode().map_err(undecodable)?),
                "MessageReview" => TimelineEvent::Review(envelope.decode().map_err(undecodable)?),
                _ => continue,
            };
            decoded.push((*index, event.sequence(), change));
        }
        if decoded.is_empty() {
            return Ok(());
        }

        // The first event of the batch that names each message and channel.
        let mut first_for: HashMap<String, usize> = HashMap::new();
        for (index, _, message) in &decoded {
            first_for
                .entry(message_id(message).to_string())
                .or_insert(*index);
            first_for
                .entry(message.channel_id().to_string())
                .or_insert(*index);
        }
        // The messages the batch changes, and the roots of the threads it replies in.
        let message_ids: Vec<String> = decoded
            .iter()
            .flat_map(|(_, _, m)| {
                let root = m.thread_root();
                std::iter::once(message_id(m)).chain(root)
            })
            .map(|id| id.to_string())
            .collect();
        let channel_ids: Vec<String> = decoded
            .iter()
            .map(|(_, _, m)| m.channel_id().to_string())
            .collect();
        let origin_of = |document: &Document| {
            document
                .get_str("_id")
                .ok()
                .and_then(|id| first_for.get(id).copied())
                .unwrap_or(decoded[0].0)
        };
        let mut messages: HashMap<String, Touched> = HashMap::new();
        for stored in tx
            .find(MESSAGES, doc! { "_id": { "$in": &message_ids } })
            .await?
        {
            let origin = origin_of(&stored);
            let row = message_from_document(&stored)
                .ok_or_else(|| malformed(origin, "message document", &stored))?;
            messages.insert(
                row.id.to_string(),
                Touched {
                    row,
                    origin,
                    new: false,
                },
            );
        }
        let mut heads: HashMap<String, Head> = HashMap::new();
        for stored in tx
            .find(CHANNEL_HEADS, doc! { "_id": { "$in": &channel_ids } })
            .await?
        {
            let id = stored.get_str("_id").unwrap_or_default().to_owned();
            let origin = origin_of(&stored);
            let (Ok(last_event), Ok(last_message)) =
                (stored.get_i64("last_event"), stored.get_i64("last_message"))
            else {
                return Err(malformed(origin, "channel head", &stored));
            };
            heads.insert(
                id,
                Head {
                    last_event,
                    last_message,
                    origin,
                },
            );
        }

        // Message ids in the order the batch first touched them, so writes are deterministic.
        let mut touched_order: Vec<String> = Vec::new();
        let mut channel_order: Vec<String> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut channel_events = Vec::with_capacity(decoded.len());
        for (index, version, event) in decoded {
            let channel = event.channel_id();
            let channel_key = channel.to_string();
            let head = heads.entry(channel_key.clone()).or_insert_with(|| Head {
                origin: index,
                ..Head::default()
            });
            if seen.insert(channel_key.clone()) {
                channel_order.push(channel_key.clone());
            }
            let mut reaction = None;
            let (kind, id) = match event {
                TimelineEvent::Review(review) => {
                    let message_id = review.message_id();
                    let row = &mut existing(&mut messages, message_id, index)?.row;
                    let kind = apply_review(&mut row.review, &review);
                    let key = message_id.to_string();
                    if seen.insert(key.clone()) {
                        touched_order.push(key);
                    }
                    // Flags, reports and dismissals change what moderators see only: no
                    // numbered change of the channel.
                    match kind {
                        Some(kind) => (kind, message_id),
                        None => continue,
                    }
                }
                TimelineEvent::Pins(pins) => {
                    let message_id = pins.message_id();
                    let row = &mut existing(&mut messages, message_id, index)?.row;
                    let kind = match pins {
                        PinsEvent::MessagePinned {
                            pinned_by,
                            pinned_at,
                            ..
                        } => {
                            row.pinned = Some(PinRow {
                                pinned_by,
                                pinned_at: millis(pinned_at),
                            });
                            ChannelEventKind::MessagePinned
                        }
                        PinsEvent::MessageUnpinned { .. } => {
                            row.pinned = None;
                            ChannelEventKind::MessageUnpinned
                        }
                    };
                    (kind, message_id)
                }
                TimelineEvent::Message(event) => {
                    let event = *event;
                    let added = matches!(event, MessageEvent::ReactionAdded { .. });
                    match event {
                        MessageEvent::MessageSent { .. }
                        | MessageEvent::DirectMessageSent { .. } => {
                            let Some(sent) = event.sent() else {
                                continue;
                            };
                            let message_id = sent.message_id;
                            let key = message_id.to_string();
                            if messages.contains_key(&key) {
                                return Err(StoreError::Event {
                                    index,
                                    reason: format!("message {key} is already in the timeline"),
                                });
                            }
                            head.last_message += 1;
                            let thread_position = match sent.thread_root_id {
                                Some(root) => {
                                    let touched = existing(&mut messages, root, index)?;
                                    let thread = touched.row.thread.get_or_insert(ThreadSummary {
                                        reply_count: 0,
                                        last_reply_at: millis(sent.sent_at),
                                        participants: Vec::new(),
                                    });
                                    thread.reply_count += 1;
                                    thread.last_reply_at = millis(sent.sent_at);
                                    if !thread.participants.contains(&sent.author_id) {
                                        thread.participants.push(sent.author_id);
                                    }
                                    let position = thread.reply_count;
                                    let root_key = root.to_string();
                                    if seen.insert(root_key.clone()) {
                                        touched_order.push(root_key);
                                    }
                                    Some(position)
                                }
                                None => None,
                            };
                            messages.insert(
                                key,
                                Touched {
                                    row: MessageRow {
                                        id: message_id,
                                        channel_id: channel,
                                        server_id: sent.server_id,
                                        author_id: sent.author_id,
                                        body: Some(sent.body.into_inner()),
                                        created_at: millis(sent.sent_at),
                                        edited_at: None,
                                        deleted: false,
                                        position: head.last_message,
                                        version,
                                        edits: Vec::new(),
                                        reactions: Vec::new(),
                                        reply_to_id: sent.reply_to_id,
                                        thread_root_id: sent.thread_root_id,
                                        thread_position,
                                        in_channel: sent.in_channel,
                                        thread: None,
                                        pinned: None,
                                        forwarded_from: sent.forwarded_from,
                                        review: None,
                                    },
                                    origin: index,
                                    new: true,
                                },
                            );
                            (ChannelEventKind::MessageSent, message_id)
                        }
                        MessageEvent::MessageEdited {
                            message_id,
                            body,
                            previous_body,
                            edited_at,
                            ..
                        } => {
                            let touched = existing(&mut messages, message_id, index)?;
                            let edited_at = millis(edited_at);
                            let row = &mut touched.row;
                            row.edits.push(EditRow {
                                body: previous_body.into_inner(),
                                replaced_at: edited_at,
                            });
                            row.body = Some(body.into_inner());
                            row.edited_at = Some(edited_at);
                            row.deleted = false;
                            row.version = version;
                            (ChannelEventKind::MessageEdited, message_id)
                        }
                        MessageEvent::MessageDeleted { message_id, .. } => {
                            // A tombstone keeps its place in the channel but none of its words.
                            let row = &mut existing(&mut messages, message_id, index)?.row;
                            row.body = None;
                            row.deleted = true;
                            row.edits.clear();
                            row.reactions.clear();
                            row.version = version;
                            (ChannelEventKind::MessageDeleted, message_id)
                        }
                        MessageEvent::ReactionAdded {
                            message_id,
                            user_id,
                            emoji,
                            ..
                        }
                        | MessageEvent::ReactionRemoved {
                            message_id,
                            user_id,
                            emoji,
                            ..
                        } => {
                            let row = &mut existing(&mut messages, message_id, index)?.row;
                            reaction = Some(Box::new(ReactionChange {
                                user_id,
                                emoji: emoji.to_string(),
                                added,
                            }));
                            if added {
                                add_reaction(&mut row.reactions, emoji, user_id);
                            } else {
                                remove_reaction(&mut row.reactions, &emoji, user_id);
                            }
                            row.version = version;
                            (ChannelEventKind::ReactionChanged, message_id)
                        }
                    }
                }
            };
            let key = id.to_string();
            if seen.insert(key.clone()) {
                touched_order.push(key.clone());
            }
            head.last_event += 1;
            let seq = head.last_event;
            let mut change = doc! {
                "channel_id": &channel_key,
                "seq": seq,
                "kind": kind.as_str(),
                "message_id": &key,
            };
            if let Some(reaction) = &reaction {
                change.insert("reaction", reaction_document(reaction));
            }
            channel_events.push((index, change));
            let message = messages
                .get(&key)
                .map(|touched| touched.row.clone())
                .ok_or_else(|| StoreError::Event {
                    index,
                    reason: format!("message {key} vanished while applying the batch"),
                })?;
            updates.push(Update::Channel(ChannelEventRow {
                channel_id: channel,
                seq,
                kind,
                message: Box::new(message),
                reaction,
            }));
        }

        // New messages first, then changed ones: each group goes to the server as one command.
        let touched: Vec<&Touched> = touched_order
            .iter()
            .filter_map(|key| messages.get(key))
            .collect();
        for touched in touched.iter().filter(|t| t.new) {
            tx.insert(touched.origin, MESSAGES, message_document(&touched.row));
        }
        for touched in touched.iter().filter(|t| !t.new) {
            let id = touched.row.id.to_string();
            let replacement = message_document(&touched.row);
            tx.update(
                touched.origin,
                MESSAGES,
                doc! { "_id": id },
                replacement,
                false,
            );
        }
        for (index, document) in channel_events {
            tx.insert(index, CHANNEL_EVENTS, document);
        }
        for key in &channel_order {
            let Some(head) = heads.get(key) else {
                continue;
            };
            let counters = doc! { "$set": {
                "last_event": head.last_event,
                "last_message": head.last_message,
            } };
            tx.update(
                head.origin,
                CHANNEL_HEADS,
                doc! { "_id": key },
                counters,
                true,
            );
        }
        Ok(())
    }
}

/// An event the timeline applies: a message's, or a channel's pins'.
enum TimelineEvent {
    /// Boxed: a sent message is far larger than a pin.
    Message(Box<MessageEvent>),
    Pins(PinsEvent),
    Review(ReviewEvent),
}

impl TimelineEvent {
    fn message_id(&self) -> MessageId {
        match self {
            TimelineEvent::Message(event) => event.message_id(),
            TimelineEvent::Pins(event) => event.message_id(),
            TimelineEvent::Review(event) => event.message_id(),
        }
    }

    fn channel_id(&self) -> ChannelId {
        match self {
            TimelineEvent::Message(event) => event.channel_id(),
            TimelineEvent::Pins(event) => event.channel_id(),
            TimelineEvent::Review(event) => event.channel_id(),
        }
    }

    /// The thread a sent message is a reply in.
    fn thread_root(&self) -> Option<MessageId> {
        match self {
            TimelineEvent::Message(event) => event.sent().and_then(|sent| sent.thread_root_id),
            TimelineEvent::Pins(_) | TimelineEvent::Review(_) => None,
        }
    }
}

fn message_id(event: &TimelineEvent) -> MessageId {
    event.message_id()
}

/// The message an edit or deletion is about; its absence is the event's fault (its aggregate's
/// earlier events are missing from this read model).
fn existing(
    messages: &mut HashMap<String, Touched>,
    id: MessageId,
    index: usize,
) -> Result<&mut Touched, StoreError> {
    messages
        .get_mut(&id.to_string())
        .ok_or_else(|| StoreError::Event {
            index,
            reason: format!("message {id} is not in the timeline"),
        })
}

/// `at` cut to what a BSON date holds.
fn millis(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at)
}

fn bson_time(at: DateTime<Utc>) -> mongodb::bson::DateTime {
    mongodb::bson::DateTime::from_millis(at.timestamp_millis())
}

fn chrono_time(at: mongodb::bson::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(at.timestamp_millis())
}

pub fn message_document(row: &MessageRow) -> Document {
    let reactions: Vec<Bson> = row
        .reactions
        .iter()
        .map(|reaction| {
            let users: Vec<String> = reaction.users.iter().map(UserId::to_string).collect();
            Bson::Document(doc! { "emoji": reaction.emoji.as_str(), "users": users })
        })
        .collect();
    let edits: Vec<Bson> = row
        .edits
        .iter()
        .map(|edit| {
            Bson::Document(doc! {
                "body": &edit.body,
                "replaced_at": bson_time(edit.replaced_at),
            })
        })
        .collect();
    doc! {
        "_id": row.id.to_string(),
        "channel_id": row.channel_id.to_string(),
        "server_id": row.server_id.map(|server| server.to_string()),
        "author_id": row.author_id.to_string(),
        "body": row.body.clone(),
        "created_at": bson_time(row.created_at),
        "edited_at": row.edited_at.map(bson_time),
        "deleted": row.deleted,
        "channel_seq": row.position,
        "version": row.version,
        "edits": edits,
        "reactions": reactions,
        "reply_to_id": row.reply_to_id.map(|id| id.to_string()),
        "thread_root_id": row.thread_root_id.map(|id| id.to_string()),
        "thread_seq": row.thread_position,
        "in_channel": row.in_channel,
        "forwarded_from": row
            .forwarded_from
            .map(|origin| serde_json::json!(origin).to_string()),
        "pinned": row.pinned.as_ref().map(|pin| doc! {
            "pinned_by": pin.pinned_by.to_string(),
            "pinned_at": bson_time(pin.pinned_at),
        }),
        // The same JSON as the SQL stores' `moderation` column, so every store answers alike.
        "moderation": row.review.as_ref().and_then(|review| serde_json::to_string(review).ok()),
        "review_open": row.review_open(),
        "thread": row.thread.as_ref().map(|thread| {
            let participants: Vec<String> =
                thread.participants.iter().map(UserId::to_string).collect();
            doc! {
                "reply_count": thread.reply_count,
                "last_reply_at": bson_time(thread.last_reply_at),
                "participants": participants,
            }
        }),
    }
}

fn reaction_document(reaction: &ReactionChange) -> Document {
    doc! {
        "user_id": reaction.user_id.to_string(),
        "emoji": &reaction.emoji,
        "added": reaction.added,
    }
}

/// The reaction a stored `ReactionChanged` change names; `None` if it is not one this code
/// wrote.
pub fn reaction_from_document(document: &Document) -> Option<ReactionChange> {
    Some(ReactionChange {
        user_id: UserId::parse(document.get_str("user_id").ok()?).ok()?,
        emoji: document.get_str("emoji").ok()?.to_owned(),
        added: document.get_bool("added").ok()?,
    })
}

/// The row a stored message document holds; `None` if it is not one this code wrote.
pub fn message_from_document(document: &Document) -> Option<MessageRow> {
    let id = |field: &str| document.get_str(field).ok();
    let body = match document.get("body") {
        Some(Bson::String(body)) => Some(body.clone()),
        Some(Bson::Null) | None => None,
        Some(_) => return None,
    };
    let edited_at = match document.get("edited_at") {
        Some(Bson::DateTime(at)) => Some(chrono_time(*at)?),
        Some(Bson::Null) | None => None,
        Some(_) => return None,
    };
    let mut edits = Vec::new();
    for edit in document.get_array("edits").ok()? {
        let edit = edit.as_document()?;
        edits.push(EditRow {
            body: edit.get_str("body").ok()?.to_owned(),
            replaced_at: chrono_time(*edit.get_datetime("replaced_at").ok()?)?,
        });
    }
    // Documents written before reactions existed have none.
    let mut reactions = Vec::new();
    if let Ok(stored) = document.get_array("reactions") {
        for reaction in stored {
            let reaction = reaction.as_document()?;
            let mut users = Vec::new();
            for user in reaction.get_array("users").ok()? {
                users.push(UserId::parse(user.as_str()?).ok()?);
            }
            reactions.push(Reaction {
                emoji: Emoji::parse(reaction.get_str("emoji").ok()?).ok()?,
                users,
            });
        }
    }
    // Documents written before threads existed are in their channel and in no thread.
    let optional_id = |field: &str| -> Option<Option<MessageId>> {
        match document.get(field) {
            Some(Bson::String(id)) => Some(Some(MessageId::parse(id).ok()?)),
            Some(Bson::Null) | None => Some(None),
            Some(_) => None,
        }
    };
    let thread = match document.get("thread") {
        Some(Bson::Document(thread)) => {
            let mut participants = Vec::new();
            for user in thread.get_array("participants").ok()? {
                participants.push(UserId::parse(user.as_str()?).ok()?);
            }
            Some(ThreadSummary {
                reply_count: thread.get_i64("reply_count").ok()?,
                last_reply_at: chrono_time(*thread.get_datetime("last_reply_at").ok()?)?,
                participants,
            })
        }
        Some(Bson::Null) | None => None,
        Some(_) => return None,
    };
    Some(MessageRow {
        id: MessageId::parse(id("_id")?).ok()?,
        channel_id: ChannelId::parse(id("channel_id")?).ok()?,
        server_id: match document.get("server_id") {
            Some(Bson::String(server)) => Some(ServerId::parse(server).ok()?),
            Some(Bson::Null) | None => None,
            Some(_) => return None,
        },
        author_id: UserId::parse(id("author_id")?).ok()?,
        body,
        created_at: chrono_time(*document.get_datetime("created_at").ok()?)?,
        edited_at,
        deleted: document.get_bool("deleted").ok()?,
        position: document.get_i64("channel_seq").ok()?,
        version: document.get_i64("version").ok()?,
        edits,
        reactions,
        reply_to_id: optional_id("reply_to_id")?,
        thread_root_id: optional_id("thread_root_id")?,
        thread_position: match document.get("thread_seq") {
            Some(Bson::Int64(position)) => Some(*position),
            Some(Bson::Null) | None => None,
            Some(_) => return None,
        },
        in_channel: match document.get("in_channel") {
            Some(Bson::Boolean(shown)) => *shown,
            None => true,
            Some(_) => return None,
        },
        thread,
        forwarded_from: match document.get("forwarded_from") {
            Some(Bson::String(origin)) => Some(serde_json::from_str(origin).ok()?),
            Some(Bson::Null) | None => None,
            Some(_) => return None,
        },
        pinned: match document.get("pinned") {
            Some(Bson::Document(pin)) => Some(PinRow {
                pinned_by: UserId::parse(pin.get_str("pinned_by").ok()?).ok()?,
                pinned_at: chrono_time(*pin.get_datetime("pinned_at").ok()?)?,
            }),
            Some(Bson::Null) | None => None,
            Some(_) => return None,
        },
        review: match document.get("moderation") {
            Some(Bson::String(json)) => Some(serde_json::from_str(json).ok()?),
            Some(Bson::Null) | None => None,
            Some(_) => return None,
        },
    })
}
