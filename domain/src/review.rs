//! The `MessageReview` aggregate: what moderation decided about one message of a server's
//! channel — the model stage's flag, members' reports, and moderators' decisions to hide,
//! restore or dismiss.
//!
//! One aggregate per message, with an id derived from the message id ([`review_id`]), so the
//! message's own stream (edits, reactions) never waits on moderation, and a redelivered flag
//! meets the flag already recorded and changes nothing. Its events share the messages'
//! routing key, the channel id, so a consumer sees a flag after the message it is about.
//!
//! A message is **open** (in its server's moderation queue) from its first flag or report
//! until a moderator decides: `HideMessage`, `RestoreMessage` or `DismissFlag`, each with a
//! reason. A flag whose score reaches the server's threshold also hides the message at once
//! (`hidden_by` is then `None`: the model stage hid it), so that abuse is out of sight while it
//! waits for a person. Messages of direct conversations belong to no server and are not
//! reviewed.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{ChannelId, MessageId, ServerId, UserId};
use crate::moderation::ModerationThreshold;
use crate::permissions::ChannelAccess;
use crate::values::ModerationReason;
use crate::EVENT_VERSION_1;

/// The namespace of review ids (UUIDv5 of the message id).
const REVIEW_NAMESPACE: Uuid = Uuid::from_u128(0x9a41_0c6e_77d3_4b28_a5f0_1e6b_c2d4_8f37);

/// The id of `message`'s review: the same message always gives the same id.
pub fn review_id(message: MessageId) -> Uuid {
    Uuid::new_v5(&REVIEW_NAMESPACE, message.to_string().as_bytes())
}

/// The message a review is about, as its own aggregate stands when the command is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewedMessage {
    pub message_id: MessageId,
    pub channel_id: ChannelId,
    /// `None` for a message of a direct conversation (never reviewed).
    pub server_id: Option<ServerId>,
    pub author_id: UserId,
    pub deleted: bool,
}

/// A score of the model stage and what produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVerdict {
    /// The probability (0 to 1) that the message is abusive.
    pub score: f64,
    /// Which embedder and head gave the score (`all-MiniLM-L6-v2+logreg-…`).
    pub model_version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReviewCommand {
    /// The model stage scored the message; it is flagged (and hidden) when the score reaches
    /// the server's `threshold`. A message is flagged by the model at most once: a second
    /// verdict (a redelivered event, a re-scoring) changes nothing.
    FlagMessage {
        message: ReviewedMessage,
        verdict: ModelVerdict,
        threshold: ModerationThreshold,
        at: DateTime<Utc>,
    },
    /// A member reports the message to the server's moderators; reporting it again changes
    /// nothing.
    ReportMessage {
        actor: UserId,
        message: ReviewedMessage,
        access: ChannelAccess,
        reason: ModerationReason,
        at: DateTime<Utc>,
    },
    HideMessage {
        actor: UserId,
        message: ReviewedMessage,
        access: ChannelAccess,
        reason: ModerationReason,
        at: DateTime<Utc>,
    },
    RestoreMessage {
        actor: UserId,
        message: ReviewedMessage,
        access: ChannelAccess,
        reason: ModerationReason,
        at: DateTime<Utc>,
    },
    /// Closes the message's flags and reports as unfounded, leaving it as it is shown.
    DismissFlag {
        actor: UserId,
        message: ReviewedMessage,
        access: ChannelAccess,
        reason: ModerationReason,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
pub enum ReviewEvent {
    /// The model stage scored a message at or above its server's threshold.
    MessageFlagged {
        message_id: MessageId,
        channel_id: ChannelId,
        server_id: ServerId,
        author_id: UserId,
        score: f64,
        model_version: String,
        /// Why, for people: the score against the threshold.
        reason: String,
        threshold: ModerationThreshold,
        flagged_at: DateTime<Utc>,
    },
    /// A member reported a message to the server's moderators.
    MessageReported {
        message_id: MessageId,
        channel_id: ChannelId,
        server_id: ServerId,
        author_id: UserId,
        reported_by: UserId,
        reason: ModerationReason,
        reported_at: DateTime<Utc>,
    },
    /// The message is hidden from everyone but the server's moderators.
    MessageHidden {
        message_id: MessageId,
        channel_id: ChannelId,
        server_id: ServerId,
        author_id: UserId,
        /// `None` when the model stage hid it (its flag reached the threshold).
        #[serde(default)]
        hidden_by: Option<UserId>,
        reason: String,
        hidden_at: DateTime<Utc>,
    },
    /// A hidden message is shown again.
    MessageRestored {
        message_id: MessageId,
        channel_id: ChannelId,
        server_id: ServerId,
        author_id: UserId,
        restored_by: UserId,
        reason: ModerationReason,
        restored_at: DateTime<Utc>,
    },
    /// A moderator judged the message's flags and reports unfounded; it leaves the queue as
    /// it is shown.
    FlagDismissed {
        message_id: MessageId,
        channel_id: ChannelId,
        server_id: ServerId,
        author_id: UserId,
        dismissed_by: UserId,
        reason: ModerationReason,
        dismissed_at: DateTime<Utc>,
    },
}

impl ReviewEvent {
    pub fn message_id(&self) -> MessageId {
        match self {
            ReviewEvent::MessageFlagged { message_id, .. }
            | ReviewEvent::MessageReported { message_id, .. }
            | ReviewEvent::MessageHidden { message_id, .. }
            | ReviewEvent::MessageRestored { message_id, .. }
            | ReviewEvent::FlagDismissed { message_id, .. } => *message_id,
        }
    }

    pub fn channel_id(&self) -> ChannelId {
        match self {
            ReviewEvent::MessageFlagged { channel_id, .. }
            | ReviewEvent::MessageReported { channel_id, .. }
            | ReviewEvent::MessageHidden { channel_id, .. }
            | ReviewEvent::MessageRestored { channel_id, .. }
            | ReviewEvent::FlagDismissed { channel_id, .. } => *channel_id,
        }
    }

    pub fn server_id(&self) -> ServerId {
        match self {
            ReviewEvent::MessageFlagged { server_id, .. }
            | ReviewEvent::MessageReported { server_id, .. }
            | ReviewEvent::MessageHidden { server_id, .. }
            | ReviewEvent::MessageRestored { server_id, .. }
            | ReviewEvent::FlagDismissed { server_id, .. } => *server_id,
        }
    }

    pub fn author_id(&self) -> UserId {
        match self {
            ReviewEvent::MessageFlagged { author_id, .. }
            | ReviewEvent::MessageReported { author_id, .. }
            | ReviewEvent::MessageHidden { author_id, .. }
            | ReviewEvent::MessageRestored { author_id, .. }
            | ReviewEvent::FlagDismissed { author_id, .. } => *author_id,
        }
    }
}

impl DomainEvent for ReviewEvent {
    fn event_type(&self) -> String {
        match self {
            ReviewEvent::MessageFlagged { .. } => "MessageFlagged",
            ReviewEvent::MessageReported { .. } => "MessageReported",
            ReviewEvent::MessageHidden { .. } => "MessageHidden",
            ReviewEvent::MessageRestored { .. } => "MessageRestored",
            ReviewEvent::FlagDismissed { .. } => "FlagDismissed",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION_1.to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error("no such message")]
    UnknownMessage,
    #[error("this message has been deleted")]
    MessageDeleted,
    #[error("messages of direct conversations are not moderated")]
    NotInAServer,
    #[error("you are not a member of this channel")]
    NotAChannelMember,
    #[error("you cannot report your own message")]
    OwnMessage,
    #[error("only moderators and above review messages")]
    ReviewNotAllowed,
    #[error("this message is already hidden")]
    AlreadyHidden,
    #[error("this message is not hidden")]
    NotHidden,
    #[error("this message has no open flag or report")]
    NothingToDismiss,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageReview {
    /// Whether the model stage flagged the message (at most once).
    pub flagged: bool,
    /// Who reported it, in the order they did.
    pub reporters: Vec<UserId>,
    /// Whether it waits in the moderation queue.
    pub open: bool,
    pub hidden: bool,
}

/// The ids every event of a review carries, refused for a message that cannot be reviewed.
fn reviewable(message: &ReviewedMessage) -> Result<ServerId, ReviewError> {
    if message.deleted {
        return Err(ReviewError::MessageDeleted);
    }
    message.server_id.ok_or(ReviewError::NotInAServer)
}

fn require_viewer(access: &ChannelAccess) -> Result<(), ReviewError> {
    match access {
        ChannelAccess::UnknownChannel => Err(ReviewError::UnknownMessage),
        _ if !access.can_view() => Err(ReviewError::NotAChannelMember),
        _ => Ok(()),
    }
}

fn require_moderator(access: &ChannelAccess) -> Result<(), ReviewError> {
    require_viewer(access)?;
    if !access.can_moderate() {
        return Err(ReviewError::ReviewNotAllowed);
    }
    Ok(())
}

impl MessageReview {
    fn decide(&self, command: ReviewCommand) -> Result<Vec<ReviewEvent>, ReviewError> {
        match command {
            ReviewCommand::FlagMessage {
                message,
                verdict,
                threshold,
                at,
            } => {
                // A verdict on a message deleted since, or outside any server, is simply
                // dropped: the model stage runs after delivery and must never fail on it.
                let Ok(server_id) = reviewable(&message) else {
                    return Ok(vec![]);
                };
                if self.flagged || verdict.score < threshold.value() {
                    return Ok(vec![]);
                }
                let reason = format!(
                    "model score {:.3} reached this server's threshold {:.3}",
                    verdict.score,
                    threshold.value()
                );
                let mut events = vec![ReviewEvent::MessageFlagged {
                    message_id: message.message_id,
                    channel_id: message.channel_id,
                    server_id,
                    author_id: message.author_id,
                    score: verdict.score,
                    model_version: verdict.model_version,
                    reason: reason.clone(),
                    threshold,
                    flagged_at: at,
                }];
                if !self.hidden {
                    events.push(ReviewEvent::MessageHidden {
                        message_id: message.message_id,
                        channel_id: message.channel_id,
                        server_id,
                        author_id: message.author_id,
                        hidden_by: None,
                        reason,
                        hidden_at: at,
                    });
                }
                Ok(events)
            }
            ReviewCommand::ReportMessage {
                actor,
                message,
                access,
                reason,
                at,
            } => {
                require_viewer(&access)?;
                let server_id = reviewable(&message)?;
                if message.author_id == actor {
                    return Err(ReviewError::OwnMessage);
                }
                if self.reporters.contains(&actor) {
                    return Ok(vec![]);
                }
                Ok(vec![ReviewEvent::MessageReported {
                    message_id: message.message_id,
                    channel_id: message.channel_id,
                    server_id,
                    author_id: message.author_id,
                    reported_by: actor,
                    reason,
                    reported_at: at,
                }])
            }
            ReviewCommand::HideMessage {
                actor,
                message,
                access,
                reason,
                at,
            } => {
                require_moderator(&access)?;
                let server_id = reviewable(&message)?;
                if self.hidden {
                    return Err(ReviewError::AlreadyHidden);
                }
                Ok(vec![ReviewEvent::MessageHidden {
                    message_id: message.message_id,
                    channel_id: message.channel_id,
                    server_id,
                    author_id: message.author_id,
                    hidden_by: Some(actor),
                    reason: reason.into_inner(),
                    hidden_at: at,
                }])
            }
            ReviewCommand::RestoreMessage {
                actor,
                message,
                access,
                reason,
                at,
            } => {
                require_moderator(&access)?;
                let server_id = reviewable(&message)?;
                if !self.hidden {
                    return Err(ReviewError::NotHidden);
                }
                Ok(vec![ReviewEvent::MessageRestored {
                    message_id: message.message_id,
                    channel_id: message.channel_id,
                    server_id,
                    author_id: message.author_id,
                    restored_by: actor,
                    reason,
                    restored_at: at,
                }])
            }
            ReviewCommand::DismissFlag {
                actor,
                message,
                access,
                reason,
                at,
            } => {
                require_moderator(&access)?;
                let server_id = reviewable(&message)?;
                if !self.open {
                    return Err(ReviewError::NothingToDismiss);
                }
                Ok(vec![ReviewEvent::FlagDismissed {
                    message_id: message.message_id,
                    channel_id: message.channel_id,
                    server_id,
                    author_id: message.author_id,
                    dismissed_by: actor,
                    reason,
                    dismissed_at: at,
                }])
            }
        }
    }
}

impl Aggregate for MessageReview {
    const TYPE: &'static str = "MessageReview";
    type Command = ReviewCommand;
    type Event = ReviewEvent;
    type Error = ReviewError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ReviewEvent::MessageFlagged { .. } => {
                self.flagged = true;
                self.open = true;
            }
            ReviewEvent::MessageReported { reported_by, .. } => {
                if !self.reporters.contains(&reported_by) {
                    self.reporters.push(reported_by);
                }
                self.open = true;
            }
            ReviewEvent::MessageHidden { hidden_by, .. } => {
                self.hidden = true;
                // A moderator's decision closes the item; the model's own hiding waits for one.
                if hidden_by.is_some() {
                    self.open = false;
                }
            }
            ReviewEvent::MessageRestored { .. } => {
                self.hidden = false;
                self.open = false;
            }
            ReviewEvent::FlagDismissed { .. } => self.open = false,
        }
    }
}
