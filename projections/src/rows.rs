//! Read-model rows as the query side hands them out.

use crate::sql::SqlRow;
use aether_domain::message::{ForwardOrigin, Reaction};
use aether_domain::review::ReviewEvent;
use aether_domain::{
    ChannelId, ChannelKind, ContentPolicy, MessageId, ModerationThreshold, Role, ServerId, UserId,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A row that could not be read back: a bug or a damaged database, never user input.
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    #[error("read model unavailable: {0}")]
    Database(#[from] sqlx::Error),
    #[error("read model unavailable: {0}")]
    Unavailable(String),
    #[error("read model holds a malformed {column}: {value}")]
    Malformed { column: &'static str, value: String },
}

impl RowError {
    /// The store could not be reached or did not answer in time: worth a retry, unlike a row
    /// it holds that cannot be read.
    pub fn is_unavailable(&self) -> bool {
        match self {
            RowError::Unavailable(_) => true,
            // A schema or table not there yet: its projector has never run.
            RowError::Database(sqlx::Error::Database(error)) => {
                matches!(error.code().as_deref(), Some("42P01" | "3F000"))
            }
            RowError::Database(error) => matches!(
                error,
                sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::Protocol(_)
            ),
            RowError::Malformed { .. } => false,
        }
    }
}

pub fn parse_id<T>(
    row: &SqlRow,
    column: &'static str,
    parse: impl Fn(&str) -> Result<T, aether_domain::ValidationError>,
) -> Result<T, RowError> {
    let value: String = row.get(column)?;
    parse(&value).map_err(|_| RowError::Malformed { column, value })
}

pub fn parse_optional_id<T>(
    row: &SqlRow,
    column: &'static str,
    parse: impl Fn(&str) -> Result<T, aether_domain::ValidationError>,
) -> Result<Option<T>, RowError> {
    let value: Option<String> = row.get(column)?;
    value
        .map(|value| parse(&value).map_err(|_| RowError::Malformed { column, value }))
        .transpose()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRow {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub status_text: Option<String>,
}

impl UserRow {
    pub fn from_row(row: &SqlRow) -> Result<Self, RowError> {
        Ok(Self {
            id: parse_id(row, "id", UserId::parse)?,
            username: row.get("username")?,
            display_name: row.get("display_name")?,
            avatar_url: row.get("avatar_url")?,
            status_text: row.get("status_text")?,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerRow {
    pub id: ServerId,
    pub name: String,
    pub owner_id: UserId,
    #[serde(default)]
    pub content_policy: ContentPolicy,
    /// `None` while the server never chose one ([`ModerationThreshold::DEFAULT`] applies).
    #[serde(default)]
    pub moderation_threshold: Option<ModerationThreshold>,
}

impl ServerRow {
    pub fn from_row(row: &SqlRow) -> Result<Self, RowError> {
        let policy: String = row.get("content_policy")?;
        let threshold: Option<String> = row.get("moderation_threshold")?;
        Ok(Self {
            id: parse_id(row, "id", ServerId::parse)?,
            name: row.get("name")?,
            owner_id: parse_id(row, "owner_id", UserId::parse)?,
            content_policy: ContentPolicy::parse(&policy).ok_or(RowError::Malformed {
                column: "content_policy",
                value: policy,
            })?,
            moderation_threshold: match threshold {
                Some(text) => Some(
                    text.parse::<f64>()
                        .ok()
                        .and_then(|value| ModerationThreshold::parse(value).ok())
                        .ok_or(RowError::Malformed {
                            column: "moderation_threshold",
                            value: text,
                        })?,
                ),
                None => None,
            },
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRow {
    pub id: ChannelId,
    pub server_id: ServerId,
    pub name: String,
    pub kind: ChannelKind,
    pub private: bool,
    pub archived: bool,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
}

impl ChannelRow {
    pub fn from_row(row: &SqlRow) -> Result<Self, RowError> {
        let kind: String = row.get("kind")?;
        Ok(Self {
            id: parse_id(row, "id", ChannelId::parse)?,
            server_id: parse_id(row, "server_id", ServerId::parse)?,
            name: row.get("name")?,
            kind: ChannelKind::parse(&kind).ok_or(RowError::Malformed {
                column: "kind",
                value: kind,
            })?,
            private: row.get("private")?,
            archived: row.get("archived")?,
            topic: row.get("topic")?,
            category: row.get("category")?,
        })
    }
}

/// What happened in a server, as `serverEvents` tells its members.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerEventKind {
    ServerRenamed,
    ServerDeleted,
    OwnershipTransferred,
    ChannelCreated,
    ChannelRenamed,
    ChannelArchived,
    ChannelUnarchived,
    ChannelTopicChanged,
    ChannelMoved,
    MemberJoined,
    MemberLeft,
    MemberRemoved,
    MemberBanned,
    MemberRoleChanged,
    MessagePinned,
    MessageUnpinned,
    /// Moderation news, for MODERATOR and up only: the model flagged a message, a member
    /// reported one, a message was hidden or restored, a flag was dismissed.
    MessageFlagged,
    MessageReported,
    MessageHidden,
    MessageRestored,
    FlagDismissed,
}

impl ServerEventKind {
    /// Whether the event took `user`'s membership away (`user_id` is whom it concerns).
    pub fn ends_membership_of(self, user_id: Option<UserId>, user: UserId) -> bool {
        match self {
            ServerEventKind::ServerDeleted => true,
            ServerEventKind::MemberLeft
            | ServerEventKind::MemberRemoved
            | ServerEventKind::MemberBanned => user_id == Some(user),
            _ => false,
        }
    }
}

/// What an event of a server says beyond its kind; which fields are set depends on the kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerEventData {
    /// The member the event is about (joined, left, removed, banned, new role, new owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    /// Who did it, where the event names them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<UserId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The server's or channel's new name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// The channel's place in the server's list (0 is first), after a move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<MessageId>,
    /// Why, for moderation news: the report's or the decision's reason, or the model's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One numbered event of a server: `seq` counts the server's events from 1 with no gap, so a
/// subscriber that saw `seq` knows exactly what it missed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerEventRow {
    pub server_id: ServerId,
    pub seq: i64,
    pub kind: ServerEventKind,
    /// The channel the event is about, if any.
    pub channel_id: Option<ChannelId>,
    /// About a private channel, or moderation news: only members who may see private channels
    /// (MODERATOR and up, who also moderate) are told.
    pub private: bool,
    pub data: ServerEventData,
    pub occurred_at: DateTime<Utc>,
}

impl ServerEventRow {
    pub fn from_row(row: &SqlRow) -> Result<Self, RowError> {
        let kind: String = row.get("kind")?;
        let data: String = row.get("data")?;
        Ok(Self {
            server_id: parse_id(row, "server_id", ServerId::parse)?,
            seq: row.get("seq")?,
            kind: serde_json::from_value(serde_json::Value::String(kind.clone())).map_err(
                |_| RowError::Malformed {
                    column: "kind",
                    value: kind,
                },
            )?,
            channel_id: parse_optional_id(row, "channel_id", ChannelId::parse)?,
            private: row.get("private")?,
            data: serde_json::from_str(&data).map_err(|_| RowError::Malformed {
                column: "data",
                value: data,
            })?,
            occurred_at: row.get("occurred_at")?,
        })
    }
}

/// A direct conversation and everyone in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationRow {
    pub id: ChannelId,
    pub opened_by: UserId,
    /// Sorted by id.
    pub participants: Vec<UserId>,
    pub opened_at: DateTime<Utc>,
    /// Opened with three or more people: its people and name may change.
    pub group: bool,
    /// Who removes people from a group; `None` once nobody is left.
    pub owner: Option<UserId>,
    pub name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRow {
    pub server_id: ServerId,
    pub user_id: UserId,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

pub fn parse_role(row: &SqlRow) -> Result<Role, RowError> {
    let role: String = row.get("role")?;
    Role::parse(&role).ok_or(RowError::Malformed {
        column: "role",
        value: role,
    })
}

impl MemberRow {
    pub fn from_row(row: &SqlRow) -> Result<Self, RowError> {
        Ok(Self {
            server_id: parse_id(row, "server_id", ServerId::parse)?,
            user_id: parse_id(row, "user_id", UserId::parse)?,
            role: parse_role(row)?,
            joined_at: row.get("joined_at")?,
        })
    }
}

/// A ban in force: who, by whom, why and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BanRow {
    pub user_id: UserId,
    pub banned_by: UserId,
    pub reason: Option<String>,
    pub banned_at: DateTime<Utc>,
}

impl BanRow {
    pub fn from_row(row: &SqlRow) -> Result<Self, RowError> {
        Ok(Self {
            user_id: parse_id(row, "user_id", UserId::parse)?,
            banned_by: parse_id(row, "banned_by", UserId::parse)?,
            reason: row.get("reason")?,
            banned_at: row.get("banned_at")?,
        })
    }
}

/// One earlier body of an edited message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditRow {
    pub body: String,
    pub replaced_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageRow {
    pub id: MessageId,
    /// The channel, or the conversation.
    pub channel_id: ChannelId,
    /// `None` in a conversation.
    pub server_id: Option<ServerId>,
    pub author_id: UserId,
    /// `None` once deleted.
    pub body: Option<String>,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted: bool,
    /// The message's place in its channel, from 1: its pagination cursor.
    pub position: i64,
    /// The message aggregate's version: 1 when sent, one more per change (an edit, a
    /// reaction added or taken back, the deletion).
    pub version: i64,
    /// Earlier bodies, oldest first; emptied when the message is deleted.
    pub edits: Vec<EditRow>,
    /// Who reacted with what, each emoji in the order it was first used and its people in the
    /// order they reacted; emptied when the message is deleted.
    #[serde(default)]
    pub reactions: Vec<Reaction>,
    /// The message this one quotes.
    #[serde(default)]
    pub reply_to_id: Option<MessageId>,
    /// The root of the thread this message is a reply in.
    #[serde(default)]
    pub thread_root_id: Option<MessageId>,
    /// A thread reply's place in its thread, from 1: its cursor in `thread`.
    #[serde(default)]
    pub thread_position: Option<i64>,
    /// Whether the channel's own history shows it (false for a thread reply not also sent to
    /// the channel).
    #[serde(default = "shown")]
    pub in_channel: bool,
    /// The thread of which this message is the root, once it has a reply.
    #[serde(default)]
    pub thread: Option<ThreadSummary>,
    /// Who pinned it in its channel and when, while it is pinned.
    #[serde(default)]
    pub pinned: Option<PinRow>,
    /// The message it forwards, when it is a forward.
    #[serde(default)]
    pub forwarded_from: Option<ForwardOrigin>,
    /// What moderation recorded about it; `None` while nobody flagged or reported it.
    #[serde(default)]
    pub review: Option<ReviewRow>,
}

impl MessageRow {
    /// Whether moderators hid it from everyone else.
    pub fn hidden(&self) -> bool {
        self.review
            .as_ref()
            .is_some_and(|review| review.hidden.is_some())
    }

    /// Whether it waits in its server's moderation queue.
    pub fn review_open(&self) -> bool {
        self.review.as_ref().is_some_and(|review| review.open)
    }
}

/// A message's review: the model stage's flag, members' reports, whether it is hidden, and the
/// last moderator's decision. Every store keeps it as this JSON, so all of them answer alike.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReviewRow {
    #[serde(default)]
    pub flag: Option<FlagRow>,
    #[serde(default)]
    pub reports: Vec<ReportRow>,
    #[serde(default)]
    pub hidden: Option<HiddenRow>,
    /// Waiting in the moderation queue: from a flag or report to a moderator's decision.
    #[serde(default)]
    pub open: bool,
    /// When it last entered the queue.
    #[serde(default)]
    pub opened_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub decision: Option<DecisionRow>,
}

/// The model stage's flag.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlagRow {
    pub score: f64,
    pub model_version: String,
    pub reason: String,
    pub flagged_at: DateTime<Utc>,
}

/// One member's report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRow {
    pub reported_by: UserId,
    pub reason: String,
    pub reported_at: DateTime<Utc>,
}

/// Why and by whom a message is hidden (`hidden_by` is `None` when the model stage hid it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HiddenRow {
    pub hidden_by: Option<UserId>,
    pub reason: String,
    pub hidden_at: DateTime<Utc>,
}

/// What a moderator decided last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DecisionKind {
    Hidden,
    Restored,
    Dismissed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRow {
    pub kind: DecisionKind,
    pub decided_by: UserId,
    pub reason: String,
    pub decided_at: DateTime<Utc>,
}

/// Applies one review event to a message's review, in every store alike. Answers the channel
/// change that members see, if any: a message hidden or shown again. Flags, reports and
/// dismissals change only what moderators see.
pub fn apply_review(
    review: &mut Option<ReviewRow>,
    event: &ReviewEvent,
) -> Option<ChannelEventKind> {
    let row = review.get_or_insert_with(ReviewRow::default);
    let open = |row: &mut ReviewRow, at: DateTime<Utc>| {
        if !row.open {
            row.open = true;
            row.opened_at = Some(at);
        }
    };
    match event {
        ReviewEvent::MessageFlagged {
            score,
            model_version,
            reason,
            flagged_at,
            ..
        } => {
            row.flag = Some(FlagRow {
                score: *score,
                model_version: model_version.clone(),
                reason: reason.clone(),
                flagged_at: *flagged_at,
            });
            open(row, *flagged_at);
            None
        }
        ReviewEvent::MessageReported {
            reported_by,
            reason,
            reported_at,
            ..
        } => {
            if !row.reports.iter().any(|r| r.reported_by == *reported_by) {
                row.reports.push(ReportRow {
                    reported_by: *reported_by,
                    reason: reason.to_string(),
                    reported_at: *reported_at,
                });
            }
            open(row, *reported_at);
            None
        }
        ReviewEvent::MessageHidden {
            hidden_by,
            reason,
            hidden_at,
            ..
        } => {
            row.hidden = Some(HiddenRow {
                hidden_by: *hidden_by,
                reason: reason.clone(),
                hidden_at: *hidden_at,
            });
            if let Some(by) = hidden_by {
                row.open = false;
                row.decision = Some(DecisionRow {
                    kind: DecisionKind::Hidden,
                    decided_by: *by,
                    reason: reason.clone(),
                    decided_at: *hidden_at,
                });
            }
            Some(ChannelEventKind::MessageHidden)
        }
        ReviewEvent::MessageRestored {
            restored_by,
            reason,
            restored_at,
            ..
        } => {
            row.hidden = None;
            row.open = false;
            row.decision = Some(DecisionRow {
                kind: DecisionKind::Restored,
                decided_by: *restored_by,
                reason: reason.to_string(),
                decided_at: *restored_at,
            });
            Some(ChannelEventKind::MessageRestored)
        }
        ReviewEvent::FlagDismissed {
            dismissed_by,
            reason,
            dismissed_at,
            ..
        } => {
            row.open = false;
            row.decision = Some(DecisionRow {
                kind: DecisionKind::Dismissed,
                decided_by: *dismissed_by,
                reason: reason.to_string(),
                decided_at: *dismissed_at,
            });
            None
        }
    }
}

/// A message's pin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinRow {
    pub pinned_by: UserId,
    pub pinned_at: DateTime<Utc>,
}

fn shown() -> bool {
    true
}

/// A root message's thread at a glance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadSummary {
    /// Replies sent in the thread (a deleted one stays as a tombstone, and counts).
    pub reply_count: i64,
    pub last_reply_at: DateTime<Utc>,
    /// Everyone who replied, in the order of their first reply.
    pub participants: Vec<UserId>,
}

impl MessageRow {
    pub fn from_row(row: &SqlRow) -> Result<Self, RowError> {
        let edits: String = row.get("edits")?;
        Ok(Self {
            id: parse_id(row, "id", MessageId::parse)?,
            channel_id: parse_id(row, "channel_id", ChannelId::parse)?,
            server_id: parse_optional_id(row, "server_id", ServerId::parse)?,
            author_id: parse_id(row, "author_id", UserId::parse)?,
            body: row.get("body")?,
            created_at: row.get("created_at")?,
            edited_at: row.get("edited_at")?,
            deleted: row.get("deleted")?,
            position: row.get("channel_seq")?,
            version: row.get("version")?,
            edits: serde_json::from_str(&edits).map_err(|_| RowError::Malformed {
                column: "edits",
                value: edits,
            })?,
            reactions: json_column(row, "reactions")?,
            reply_to_id: parse_optional_id(row, "reply_to_id", MessageId::parse)?,
            thread_root_id: parse_optional_id(row, "thread_root_id", MessageId::parse)?,
            thread_position: row.get("thread_seq")?,
            in_channel: row.get("in_channel")?,
            thread: match row.get::<Option<DateTime<Utc>>>("thread_last_reply_at")? {
                Some(last_reply_at) => Some(ThreadSummary {
                    reply_count: row.get("thread_replies")?,
                    last_reply_at,
                    participants: json_column(row, "thread_participants")?,
                }),
                None => None,
            },
            forwarded_from: match row.get::<Option<String>>("forwarded_from")? {
                Some(text) => {
                    Some(
                        serde_json::from_str(&text).map_err(|_| RowError::Malformed {
                            column: "forwarded_from",
                            value: text,
                        })?,
                    )
                }
                None => None,
            },
            pinned: match row.get::<Option<DateTime<Utc>>>("pinned_at")? {
                Some(pinned_at) => Some(PinRow {
                    pinned_by: parse_id(row, "pinned_by", UserId::parse)?,
                    pinned_at,
                }),
                None => None,
            },
            review: optional_json_column(row, "moderation")?,
        })
    }
}

/// A JSON text column, read into `T`.
pub(crate) fn json_column<T: serde::de::DeserializeOwned>(
    row: &SqlRow,
    column: &'static str,
) -> Result<T, RowError> {
    let text: String = row.get(column)?;
    serde_json::from_str(&text).map_err(|_| RowError::Malformed {
        column,
        value: text,
    })
}

/// A nullable JSON text column, read into `T`.
pub(crate) fn optional_json_column<T: serde::de::DeserializeOwned>(
    row: &SqlRow,
    column: &'static str,
) -> Result<Option<T>, RowError> {
    let Some(text) = row.get::<Option<String>>(column)? else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|_| RowError::Malformed {
            column,
            value: text,
        })
}

/// What happened to a channel's message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelEventKind {
    MessageSent,
    MessageEdited,
    MessageDeleted,
    /// Someone reacted to the message or took their reaction back ([`ReactionChange`]).
    ReactionChanged,
    /// The message was pinned in its channel.
    MessagePinned,
    /// The message was unpinned.
    MessageUnpinned,
    /// Moderators hid the message from everyone else (or the model stage did, pending them).
    MessageHidden,
    /// A hidden message is shown again.
    MessageRestored,
}

impl ChannelEventKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ChannelEventKind::MessageSent => "MessageSent",
            ChannelEventKind::MessageEdited => "MessageEdited",
            ChannelEventKind::MessageDeleted => "MessageDeleted",
            ChannelEventKind::ReactionChanged => "ReactionChanged",
            ChannelEventKind::MessagePinned => "MessagePinned",
            ChannelEventKind::MessageUnpinned => "MessageUnpinned",
            ChannelEventKind::MessageHidden => "MessageHidden",
            ChannelEventKind::MessageRestored => "MessageRestored",
        }
    }

    /// Whether moderators hid the message or showed it again: news for its author too.
    pub const fn is_moderation(self) -> bool {
        matches!(
            self,
            ChannelEventKind::MessageHidden | ChannelEventKind::MessageRestored
        )
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            ChannelEventKind::MessageSent,
            ChannelEventKind::MessageEdited,
            ChannelEventKind::MessageDeleted,
            ChannelEventKind::ReactionChanged,
            ChannelEventKind::MessagePinned,
            ChannelEventKind::MessageUnpinned,
            ChannelEventKind::MessageHidden,
            ChannelEventKind::MessageRestored,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == value)
    }
}

/// One change to a channel, numbered by `seq` (from 1, per channel, no gaps).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelEventRow {
    pub channel_id: ChannelId,
    pub seq: i64,
    pub kind: ChannelEventKind,
    /// Boxed: the row travels in updates beside much smaller ones.
    pub message: Box<MessageRow>,
    /// The reaction a `ReactionChanged` is about; `None` for every other kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaction: Option<Box<ReactionChange>>,
}

/// One person's reaction, added or taken back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionChange {
    pub user_id: UserId,
    pub emoji: String,
    pub added: bool,
}
