//! The `ReadMarker` aggregate: how far one user has read one channel.
//!
//! There is one marker per (user, channel), with an id derived from the pair
//! ([`read_marker_id`]), so markers of different users never contend and a user's history of
//! reading stays out of the `User` stream. A marker records what the user said they read;
//! where that message sits in the channel is the read side's business (the receipts read
//! model numbers a channel's messages as the log delivers them, and never moves a pointer
//! backwards). Read markers share the messages' routing key, the channel id, so they reach
//! every consumer in order with the messages they point at.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{ChannelId, MessageId, ServerId, UserId};
use crate::permissions::ChannelAccess;
use crate::EVENT_VERSION_1;

/// The namespace of read-marker ids (UUIDv5 of `"{user}:{channel}"`).
const READ_MARKER_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a47_93d5_4b8e_a1f0_5c3e_7d29_b814);

/// The id of `user`'s read marker in `channel`: the same pair always gives the same id.
pub fn read_marker_id(user: UserId, channel: ChannelId) -> Uuid {
    Uuid::new_v5(
        &READ_MARKER_NAMESPACE,
        format!("{user}:{channel}").as_bytes(),
    )
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReadMarkerCommand {
    /// The user has read `channel_id` up to and including `message_id`.
    MarkRead {
        user_id: UserId,
        channel_id: ChannelId,
        message_id: MessageId,
        /// The channel the message was sent in, or `None` if no such message exists.
        message_channel: Option<ChannelId>,
        /// What the user may do in the channel now.
        access: ChannelAccess,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
pub enum ReadMarkerEvent {
    ChannelMarkedRead {
        user_id: UserId,
        channel_id: ChannelId,
        server_id: ServerId,
        message_id: MessageId,
        read_at: DateTime<Utc>,
    },
    /// The user has read a direct conversation up to and including `message_id`.
    ConversationMarkedRead {
        user_id: UserId,
        conversation_id: ChannelId,
        message_id: MessageId,
        read_at: DateTime<Utc>,
    },
}

impl ReadMarkerEvent {
    /// Who read which channel (or conversation) up to which message, and when.
    pub fn read(&self) -> (UserId, ChannelId, MessageId, DateTime<Utc>) {
        match self {
            ReadMarkerEvent::ChannelMarkedRead {
                user_id,
                channel_id,
                message_id,
                read_at,
                ..
            }
            | ReadMarkerEvent::ConversationMarkedRead {
                user_id,
                conversation_id: channel_id,
                message_id,
                read_at,
            } => (*user_id, *channel_id, *message_id, *read_at),
        }
    }
}

impl DomainEvent for ReadMarkerEvent {
    fn event_type(&self) -> String {
        match self {
            ReadMarkerEvent::ChannelMarkedRead { .. } => "ChannelMarkedRead",
            ReadMarkerEvent::ConversationMarkedRead { .. } => "ConversationMarkedRead",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION_1.to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadMarkerError {
    #[error("no such channel")]
    UnknownChannel,
    #[error("you are not a member of this channel")]
    NotAChannelMember,
    #[error("no such message in this channel")]
    UnknownMessage,
    #[error("this read marker belongs to another user or channel")]
    WrongMarker,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadMarker {
    pub user_id: Option<UserId>,
    pub channel_id: Option<ChannelId>,
    /// The message the user last marked read.
    pub last_message_id: Option<MessageId>,
    pub read_at: Option<DateTime<Utc>>,
}

impl ReadMarker {
    fn decide(
        &self,
        command: ReadMarkerCommand,
    ) -> Result<Option<ReadMarkerEvent>, ReadMarkerError> {
        let ReadMarkerCommand::MarkRead {
            user_id,
            channel_id,
            message_id,
            message_channel,
            access,
            at,
        } = command;
        if self.user_id.is_some_and(|owner| owner != user_id)
            || self.channel_id.is_some_and(|channel| channel != channel_id)
        {
            return Err(ReadMarkerError::WrongMarker);
        }
        match access {
            ChannelAccess::UnknownChannel => return Err(ReadMarkerError::UnknownChannel),
            _ if !access.can_view() => return Err(ReadMarkerError::NotAChannelMember),
            _ => {}
        }
        if message_channel != Some(channel_id) {
            return Err(ReadMarkerError::UnknownMessage);
        }
        // Marking the same message again says nothing new.
        if self.last_message_id == Some(message_id) {
            return Ok(None);
        }
        Ok(Some(match access.server_id() {
            Some(server_id) => ReadMarkerEvent::ChannelMarkedRead {
                user_id,
                channel_id,
                server_id,
                message_id,
                read_at: at,
            },
            None => ReadMarkerEvent::ConversationMarkedRead {
                user_id,
                conversation_id: channel_id,
                message_id,
                read_at: at,
            },
        }))
    }
}

impl Aggregate for ReadMarker {
    const TYPE: &'static str = "ReadMarker";
    type Command = ReadMarkerCommand;
    type Event = ReadMarkerEvent;
    type Error = ReadMarkerError;
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
        let (user_id, channel_id, message_id, read_at) = event.read();
        self.user_id = Some(user_id);
        self.channel_id = Some(channel_id);
        self.last_message_id = Some(message_id);
        self.read_at = Some(read_at);
    }
}
