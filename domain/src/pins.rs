//! The `ChannelPins` aggregate: the messages pinned in one channel or conversation.
//!
//! One aggregate per channel, with an id derived from the channel ([`pins_id`]), so the limit
//! on pins ([`DEFAULT_MAX_PINS`] unless configured otherwise) is decided on one stream and
//! can never be overrun by two moderators pinning at once. In a server's channel pinning takes
//! `MODERATOR` or above ([`ChannelAccess::can_pin`]); in a conversation either participant
//! pins. Pinning a pinned message, or unpinning one that is not pinned, changes nothing. Pins
//! share the messages' routing key, the channel id, so a consumer sees a pin after the message.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{ChannelId, MessageId, UserId};
use crate::message::LinkedMessage;
use crate::permissions::ChannelAccess;
use crate::EVENT_VERSION_1;

/// How many messages one channel may have pinned unless configured otherwise.
pub const DEFAULT_MAX_PINS: usize = 50;

/// The namespace of pin-set ids (UUIDv5 of the channel id).
const PINS_NAMESPACE: Uuid = Uuid::from_u128(0x3b7d_91e2_5c04_4f6a_8e19_d2a7_60c5_f3b1);

/// The id of `channel`'s pins: the same channel always gives the same id.
pub fn pins_id(channel: ChannelId) -> Uuid {
    Uuid::new_v5(&PINS_NAMESPACE, channel.to_string().as_bytes())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PinsCommand {
    /// Pins `message` in `channel_id`; refused when `max` are pinned already.
    PinMessage {
        actor: UserId,
        channel_id: ChannelId,
        message: LinkedMessage,
        access: ChannelAccess,
        max: usize,
        at: DateTime<Utc>,
    },
    UnpinMessage {
        actor: UserId,
        channel_id: ChannelId,
        message_id: MessageId,
        access: ChannelAccess,
        at: DateTime<Utc>,
    },
    /// Takes a deleted message off the pins, for whoever deleted it (the message's deletion
    /// is the permission: its author may delete it without being allowed to unpin). Refused
    /// for a message that is not deleted; nothing happens for one not pinned.
    UnpinDeleted {
        actor: UserId,
        channel_id: ChannelId,
        message: LinkedMessage,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
pub enum PinsEvent {
    /// A message was pinned in its channel or conversation.
    MessagePinned {
        channel_id: ChannelId,
        message_id: MessageId,
        pinned_by: UserId,
        pinned_at: DateTime<Utc>,
    },
    /// A pinned message was unpinned.
    MessageUnpinned {
        channel_id: ChannelId,
        message_id: MessageId,
        unpinned_by: UserId,
        unpinned_at: DateTime<Utc>,
    },
}

impl PinsEvent {
    pub fn channel_id(&self) -> ChannelId {
        match self {
            PinsEvent::MessagePinned { channel_id, .. }
            | PinsEvent::MessageUnpinned { channel_id, .. } => *channel_id,
        }
    }

    pub fn message_id(&self) -> MessageId {
        match self {
            PinsEvent::MessagePinned { message_id, .. }
            | PinsEvent::MessageUnpinned { message_id, .. } => *message_id,
        }
    }
}

impl DomainEvent for PinsEvent {
    fn event_type(&self) -> String {
        match self {
            PinsEvent::MessagePinned { .. } => "MessagePinned",
            PinsEvent::MessageUnpinned { .. } => "MessageUnpinned",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION_1.to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinsError {
    #[error("no such channel")]
    UnknownChannel,
    #[error("you are not a member of this channel")]
    NotAChannelMember,
    #[error("only moderators and above pin messages in a server's channels")]
    PinningNotAllowed,
    #[error("no such message in this channel")]
    UnknownMessage,
    #[error("this message has been deleted")]
    MessageDeleted,
    #[error("this message has not been deleted")]
    MessageNotDeleted,
    #[error("a channel holds at most {max} pinned messages")]
    TooManyPins { max: usize },
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelPins {
    /// Pinned messages, oldest pin first.
    pub pinned: Vec<MessageId>,
}

fn require_pinner(access: &ChannelAccess) -> Result<(), PinsError> {
    match access {
        ChannelAccess::UnknownChannel => Err(PinsError::UnknownChannel),
        _ if !access.can_view() => Err(PinsError::NotAChannelMember),
        _ if !access.can_pin() => Err(PinsError::PinningNotAllowed),
        _ => Ok(()),
    }
}

impl ChannelPins {
    fn decide(&self, command: PinsCommand) -> Result<Option<PinsEvent>, PinsError> {
        match command {
            PinsCommand::PinMessage {
                actor,
                channel_id,
                message,
                access,
                max,
                at,
            } => {
                require_pinner(&access)?;
                if message.channel_id != Some(channel_id) {
                    return Err(PinsError::UnknownMessage);
                }
                if message.deleted {
                    return Err(PinsError::MessageDeleted);
                }
                if self.pinned.contains(&message.message_id) {
                    return Ok(None);
                }
                if self.pinned.len() >= max {
                    return Err(PinsError::TooManyPins { max });
                }
                Ok(Some(PinsEvent::MessagePinned {
                    channel_id,
                    message_id: message.message_id,
                    pinned_by: actor,
                    pinned_at: at,
                }))
            }
            PinsCommand::UnpinMessage {
                actor,
                channel_id,
                message_id,
                access,
                at,
            } => {
                require_pinner(&access)?;
                if !self.pinned.contains(&message_id) {
                    return Ok(None);
                }
                Ok(Some(PinsEvent::MessageUnpinned {
                    channel_id,
                    message_id,
                    unpinned_by: actor,
                    unpinned_at: at,
                }))
            }
            PinsCommand::UnpinDeleted {
                actor,
                channel_id,
                message,
                at,
            } => {
                if message.channel_id != Some(channel_id) {
                    return Err(PinsError::UnknownMessage);
                }
                if !message.deleted {
                    return Err(PinsError::MessageNotDeleted);
                }
                if !self.pinned.contains(&message.message_id) {
                    return Ok(None);
                }
                Ok(Some(PinsEvent::MessageUnpinned {
                    channel_id,
                    message_id: message.message_id,
                    unpinned_by: actor,
                    unpinned_at: at,
                }))
            }
        }
    }
}

impl Aggregate for ChannelPins {
    const TYPE: &'static str = "ChannelPins";
    type Command = PinsCommand;
    type Event = PinsEvent;
    type Error = PinsError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        if let Some(event) = self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            PinsEvent::MessagePinned { message_id, .. } => {
                if !self.pinned.contains(&message_id) {
                    self.pinned.push(message_id);
                }
            }
            PinsEvent::MessageUnpinned { message_id, .. } => {
                self.pinned.retain(|pinned| *pinned != message_id);
            }
        }
    }
}
