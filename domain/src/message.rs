//! The `Message` aggregate: one message in a channel or a direct conversation, with its edits
//! and its deletion.
//!
//! Whether the author may post is decided by the channel's server (or, for a conversation, by
//! its participants); the command carries that answer as a [`ChannelAccess`] computed from the
//! `Server` or `Conversation` aggregate at the moment of the command, and this aggregate refuses
//! what the access does not allow. A message in a conversation is sent as `DirectMessageSent`;
//! its edits and deletion are the same events as a channel message's, their `channel_id` being
//! the conversation's id.
//!
//! Reactions belong to the message too: who reacted with which emoji. Adding a reaction that is
//! already there, or removing one that is not, changes nothing (no event), so a client may
//! retry freely. A message holds at most a configured number of distinct emoji
//! ([`DEFAULT_MAX_REACTION_KINDS`] unless configured otherwise).

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::ids::{ChannelId, MessageId, ServerId, UserId};
use crate::permissions::ChannelAccess;
use crate::values::{Emoji, MessageBody};
use crate::EVENT_VERSION_1;

/// A message a new one points at (the one it replies to, or its thread's root), as its own
/// aggregate stands when the new one is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedMessage {
    pub message_id: MessageId,
    /// `None` if no such message was ever sent.
    pub channel_id: Option<ChannelId>,
    pub deleted: bool,
    /// The thread the linked message is itself a reply in.
    pub thread_root_id: Option<MessageId>,
}

/// How a new message relates to others: a reply quoting one (`reply_to`), a reply in the
/// thread of a root message (`thread_root`), both, or neither. A thread reply stays in its
/// thread unless `also_in_channel`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageLinks {
    pub reply_to: Option<LinkedMessage>,
    pub thread_root: Option<LinkedMessage>,
    pub also_in_channel: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// How many distinct emoji one message may carry unless configured otherwise.
pub const DEFAULT_MAX_REACTION_KINDS: usize = 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MessageCommand {
    SendMessage {
        message_id: MessageId,
        channel_id: ChannelId,
        author: UserId,
        body: MessageBody,
        access: ChannelAccess,
        /// What the message replies to and which thread it is in, if any.
        links: MessageLinks,
        at: DateTime<Utc>,
    },
    EditMessage {
        actor: UserId,
        body: MessageBody,
        access: ChannelAccess,
        at: DateTime<Utc>,
    },
    DeleteMessage {
        actor: UserId,
        access: ChannelAccess,
        at: DateTime<Utc>,
    },
    /// Reacts with `emoji`; refused when it would be the message's `max_kinds + 1`-th
    /// distinct emoji.
    AddReaction {
        actor: UserId,
        emoji: Emoji,
        access: ChannelAccess,
        max_kinds: usize,
        at: DateTime<Utc>,
    },
    RemoveReaction {
        actor: UserId,
        emoji: Emoji,
        access: ChannelAccess,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
pub enum MessageEvent {
    MessageSent {
        message_id: MessageId,
        channel_id: ChannelId,
        server_id: ServerId,
        author_id: UserId,
        body: MessageBody,
        sent_at: DateTime<Utc>,
        /// The message this one replies to (quotes), in the same channel.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to_id: Option<MessageId>,
        /// The root of the thread this message is a reply in; threads are one level deep.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread_root_id: Option<MessageId>,
        /// A thread reply also shown in the channel's own history.
        #[serde(default, skip_serializing_if = "is_false")]
        also_in_channel: bool,
    },
    /// A message was sent in a direct conversation (which belongs to no server).
    DirectMessageSent {
        message_id: MessageId,
        conversation_id: ChannelId,
        author_id: UserId,
        body: MessageBody,
        sent_at: DateTime<Utc>,
        /// The message this one replies to (quotes), in the same channel.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to_id: Option<MessageId>,
        /// The root of the thread this message is a reply in; threads are one level deep.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread_root_id: Option<MessageId>,
        /// A thread reply also shown in the channel's own history.
        #[serde(default, skip_serializing_if = "is_false")]
        also_in_channel: bool,
    },
    /// The previous body is kept in the event, so the edit history is in the log.
    MessageEdited {
        message_id: MessageId,
        channel_id: ChannelId,
        body: MessageBody,
        previous_body: MessageBody,
        edited_at: DateTime<Utc>,
    },
    /// A tombstone: the message stays in history as deleted, its body is no longer shown.
    MessageDeleted {
        message_id: MessageId,
        channel_id: ChannelId,
        deleted_by: UserId,
        deleted_at: DateTime<Utc>,
    },
    /// Someone reacted to a message with an emoji they had not reacted with yet.
    ReactionAdded {
        message_id: MessageId,
        channel_id: ChannelId,
        user_id: UserId,
        emoji: Emoji,
        reacted_at: DateTime<Utc>,
    },
    /// Someone took back their reaction.
    ReactionRemoved {
        message_id: MessageId,
        channel_id: ChannelId,
        user_id: UserId,
        emoji: Emoji,
        removed_at: DateTime<Utc>,
    },
}

/// The people who reacted to a message with one emoji, in the order they reacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    pub emoji: Emoji,
    pub users: Vec<UserId>,
}

/// A message as it was sent, in a server's channel or in a conversation: what read models
/// record of `MessageSent` and `DirectMessageSent` alike.
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    pub message_id: MessageId,
    /// The channel, or the conversation.
    pub channel_id: ChannelId,
    /// `None` in a conversation.
    pub server_id: Option<ServerId>,
    pub author_id: UserId,
    pub body: MessageBody,
    pub sent_at: DateTime<Utc>,
    pub reply_to_id: Option<MessageId>,
    pub thread_root_id: Option<MessageId>,
    /// Whether the channel's own history shows it: every message but a thread reply not
    /// also sent to the channel.
    pub in_channel: bool,
}

impl MessageEvent {
    /// The channel or conversation the message is in.
    pub fn channel_id(&self) -> ChannelId {
        match self {
            MessageEvent::MessageSent { channel_id, .. }
            | MessageEvent::MessageEdited { channel_id, .. }
            | MessageEvent::MessageDeleted { channel_id, .. }
            | MessageEvent::ReactionAdded { channel_id, .. }
            | MessageEvent::ReactionRemoved { channel_id, .. } => *channel_id,
            MessageEvent::DirectMessageSent {
                conversation_id, ..
            } => *conversation_id,
        }
    }

    /// The message the event is about.
    pub fn message_id(&self) -> MessageId {
        match self {
            MessageEvent::MessageSent { message_id, .. }
            | MessageEvent::DirectMessageSent { message_id, .. }
            | MessageEvent::MessageEdited { message_id, .. }
            | MessageEvent::MessageDeleted { message_id, .. }
            | MessageEvent::ReactionAdded { message_id, .. }
            | MessageEvent::ReactionRemoved { message_id, .. } => *message_id,
        }
    }

    /// The sent message, if this event sends one.
    pub fn sent(&self) -> Option<SentMessage> {
        match self {
            MessageEvent::MessageSent {
                message_id,
                channel_id,
                server_id,
                author_id,
                body,
                sent_at,
                reply_to_id,
                thread_root_id,
                also_in_channel,
            } => Some(SentMessage {
                message_id: *message_id,
                channel_id: *channel_id,
                server_id: Some(*server_id),
                author_id: *author_id,
                body: body.clone(),
                sent_at: *sent_at,
                reply_to_id: *reply_to_id,
                thread_root_id: *thread_root_id,
                in_channel: thread_root_id.is_none() || *also_in_channel,
            }),
            MessageEvent::DirectMessageSent {
                message_id,
                conversation_id,
                author_id,
                body,
                sent_at,
                reply_to_id,
                thread_root_id,
                also_in_channel,
            } => Some(SentMessage {
                message_id: *message_id,
                channel_id: *conversation_id,
                server_id: None,
                author_id: *author_id,
                body: body.clone(),
                sent_at: *sent_at,
                reply_to_id: *reply_to_id,
                thread_root_id: *thread_root_id,
                in_channel: thread_root_id.is_none() || *also_in_channel,
            }),
            MessageEvent::MessageEdited { .. }
            | MessageEvent::MessageDeleted { .. }
            | MessageEvent::ReactionAdded { .. }
            | MessageEvent::ReactionRemoved { .. } => None,
        }
    }
}

impl DomainEvent for MessageEvent {
    fn event_type(&self) -> String {
        match self {
            MessageEvent::MessageSent { .. } => "MessageSent",
            MessageEvent::DirectMessageSent { .. } => "DirectMessageSent",
            MessageEvent::MessageEdited { .. } => "MessageEdited",
            MessageEvent::MessageDeleted { .. } => "MessageDeleted",
            MessageEvent::ReactionAdded { .. } => "ReactionAdded",
            MessageEvent::ReactionRemoved { .. } => "ReactionRemoved",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION_1.to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("this message already exists")]
    AlreadySent,
    #[error("no such message")]
    UnknownMessage,
    #[error("no such channel")]
    UnknownChannel,
    #[error("you are not a member of this channel")]
    NotAChannelMember,
    #[error("you may not post in this channel")]
    PostingNotAllowed,
    #[error("only the author can edit a message")]
    NotTheAuthor,
    #[error("only the author or a moderator can delete a message")]
    DeleteNotAllowed,
    #[error("this message has been deleted")]
    MessageDeleted,
    #[error("you may not react in this channel")]
    ReactingNotAllowed,
    #[error("a message holds at most {max} different reactions")]
    TooManyReactions { max: usize },
    #[error("no such message to reply to in this channel")]
    UnknownReplyTarget,
    #[error("the message replied to has been deleted")]
    ReplyToDeleted,
    #[error("no such thread root in this channel")]
    UnknownThreadRoot,
    #[error("a thread's root has been deleted")]
    ThreadRootDeleted,
    #[error("a reply in a thread cannot start a thread of its own; reply in its root's thread")]
    NestedThread,
    #[error("only a reply in a thread can also be sent to the channel")]
    AlsoInChannelOutsideAThread,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: Option<MessageId>,
    pub channel_id: Option<ChannelId>,
    pub author: Option<UserId>,
    pub body: Option<MessageBody>,
    pub sent_at: Option<DateTime<Utc>>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted: bool,
    /// The root of the thread this message is a reply in.
    #[serde(default)]
    pub thread_root_id: Option<MessageId>,
    /// The message this one quotes.
    #[serde(default)]
    pub reply_to_id: Option<MessageId>,
    /// In the order each emoji was first used; an emoji nobody reacts with any more is gone.
    #[serde(default)]
    pub reactions: Vec<Reaction>,
}

/// The ids a new message in `channel` links to, refused unless each linked message was sent
/// in that channel and is not deleted, and a thread root is not itself a thread reply.
fn check_links(
    links: &MessageLinks,
    channel: ChannelId,
) -> Result<(Option<MessageId>, Option<MessageId>), MessageError> {
    if let Some(target) = links.reply_to {
        if target.channel_id != Some(channel) {
            return Err(MessageError::UnknownReplyTarget);
        }
        if target.deleted {
            return Err(MessageError::ReplyToDeleted);
        }
    }
    match links.thread_root {
        Some(root) => {
            if root.channel_id != Some(channel) {
                return Err(MessageError::UnknownThreadRoot);
            }
            if root.thread_root_id.is_some() {
                return Err(MessageError::NestedThread);
            }
            if root.deleted {
                return Err(MessageError::ThreadRootDeleted);
            }
        }
        None if links.also_in_channel => return Err(MessageError::AlsoInChannelOutsideAThread),
        None => {}
    }
    Ok((
        links.reply_to.map(|target| target.message_id),
        links.thread_root.map(|root| root.message_id),
    ))
}

/// Refuses unless `access` lets its holder see the channel at all.
fn require_member(access: &ChannelAccess) -> Result<(), MessageError> {
    match access {
        ChannelAccess::UnknownChannel => Err(MessageError::UnknownChannel),
        _ if !access.can_view() => Err(MessageError::NotAChannelMember),
        _ => Ok(()),
    }
}

impl Message {
    /// This message as a new message that links to it (as `id`) sees it.
    pub fn linked(&self, id: MessageId) -> LinkedMessage {
        LinkedMessage {
            message_id: id,
            channel_id: self.channel_id,
            deleted: self.deleted,
            thread_root_id: self.thread_root_id,
        }
    }

    /// The message as it stands, refused if it was never sent or is deleted.
    fn live(&self) -> Result<(MessageId, ChannelId, UserId, &MessageBody), MessageError> {
        // Checked first: deletion clears the body, so a deleted message would otherwise look
        // as if it had never been sent.
        if self.deleted {
            return Err(MessageError::MessageDeleted);
        }
        let (Some(id), Some(channel_id), Some(author), Some(body)) =
            (self.id, self.channel_id, self.author, self.body.as_ref())
        else {
            return Err(MessageError::UnknownMessage);
        };
        Ok((id, channel_id, author, body))
    }

    fn decide(&self, command: MessageCommand) -> Result<Option<MessageEvent>, MessageError> {
        match command {
            MessageCommand::SendMessage {
                message_id,
                channel_id,
                author,
                body,
                access,
                links,
                at,
            } => {
                if self.id.is_some() {
                    return Err(MessageError::AlreadySent);
                }
                require_member(&access)?;
                if !access.can_post() {
                    return Err(MessageError::PostingNotAllowed);
                }
                let (reply_to_id, thread_root_id) = check_links(&links, channel_id)?;
                let also_in_channel = links.also_in_channel;
                Ok(Some(match access.server_id() {
                    Some(server_id) => MessageEvent::MessageSent {
                        message_id,
                        channel_id,
                        server_id,
                        author_id: author,
                        body,
                        sent_at: at,
                        reply_to_id,
                        thread_root_id,
                        also_in_channel,
                    },
                    None => MessageEvent::DirectMessageSent {
                        message_id,
                        conversation_id: channel_id,
                        author_id: author,
                        body,
                        sent_at: at,
                        reply_to_id,
                        thread_root_id,
                        also_in_channel,
                    },
                }))
            }
            MessageCommand::EditMessage {
                actor,
                body,
                access,
                at,
            } => {
                let (message_id, channel_id, author, previous) = self.live()?;
                require_member(&access)?;
                if actor != author {
                    return Err(MessageError::NotTheAuthor);
                }
                if !access.can_post() {
                    return Err(MessageError::PostingNotAllowed);
                }
                if *previous == body {
                    return Ok(None);
                }
                Ok(Some(MessageEvent::MessageEdited {
                    message_id,
                    channel_id,
                    body,
                    previous_body: previous.clone(),
                    edited_at: at,
                }))
            }
            MessageCommand::DeleteMessage { actor, access, at } => {
                let (message_id, channel_id, author, _) = self.live()?;
                require_member(&access)?;
                if actor != author && !access.can_moderate() {
                    return Err(MessageError::DeleteNotAllowed);
                }
                Ok(Some(MessageEvent::MessageDeleted {
                    message_id,
                    channel_id,
                    deleted_by: actor,
                    deleted_at: at,
                }))
            }
            MessageCommand::AddReaction {
                actor,
                emoji,
                access,
                max_kinds,
                at,
            } => {
                let (message_id, channel_id, _, _) = self.live()?;
                require_member(&access)?;
                if !access.can_react() {
                    return Err(MessageError::ReactingNotAllowed);
                }
                match self.reactions.iter().find(|r| r.emoji == emoji) {
                    Some(reaction) if reaction.users.contains(&actor) => return Ok(None),
                    Some(_) => {}
                    None if self.reactions.len() >= max_kinds => {
                        return Err(MessageError::TooManyReactions { max: max_kinds })
                    }
                    None => {}
                }
                Ok(Some(MessageEvent::ReactionAdded {
                    message_id,
                    channel_id,
                    user_id: actor,
                    emoji,
                    reacted_at: at,
                }))
            }
            MessageCommand::RemoveReaction {
                actor,
                emoji,
                access,
                at,
            } => {
                let (message_id, channel_id, _, _) = self.live()?;
                require_member(&access)?;
                if !access.can_react() {
                    return Err(MessageError::ReactingNotAllowed);
                }
                let reacted = self
                    .reactions
                    .iter()
                    .any(|r| r.emoji == emoji && r.users.contains(&actor));
                if !reacted {
                    return Ok(None);
                }
                Ok(Some(MessageEvent::ReactionRemoved {
                    message_id,
                    channel_id,
                    user_id: actor,
                    emoji,
                    removed_at: at,
                }))
            }
        }
    }
}

impl Aggregate for Message {
    const TYPE: &'static str = "Message";
    type Command = MessageCommand;
    type Event = MessageEvent;
    type Error = MessageError;
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
        if let Some(sent) = event.sent() {
            self.id = Some(sent.message_id);
            self.channel_id = Some(sent.channel_id);
            self.author = Some(sent.author_id);
            self.body = Some(sent.body);
            self.sent_at = Some(sent.sent_at);
            self.thread_root_id = sent.thread_root_id;
            self.reply_to_id = sent.reply_to_id;
            return;
        }
        match event {
            MessageEvent::MessageSent { .. } | MessageEvent::DirectMessageSent { .. } => {}
            MessageEvent::MessageEdited {
                body, edited_at, ..
            } => {
                self.body = Some(body);
                self.edited_at = Some(edited_at);
            }
            MessageEvent::MessageDeleted { .. } => {
                self.deleted = true;
                self.body = None;
                self.reactions.clear();
            }
            MessageEvent::ReactionAdded { user_id, emoji, .. } => {
                add_reaction(&mut self.reactions, emoji, user_id);
            }
            MessageEvent::ReactionRemoved { user_id, emoji, .. } => {
                remove_reaction(&mut self.reactions, &emoji, user_id);
            }
        }
    }
}

/// Records that `user` reacted with `emoji` (once: a second time changes nothing). Read models
/// apply reaction events with this too, so they count exactly as the aggregate does.
pub fn add_reaction(reactions: &mut Vec<Reaction>, emoji: Emoji, user: UserId) {
    match reactions.iter_mut().find(|r| r.emoji == emoji) {
        Some(reaction) => {
            if !reaction.users.contains(&user) {
                reaction.users.push(user);
            }
        }
        None => reactions.push(Reaction {
            emoji,
            users: vec![user],
        }),
    }
}

/// Takes back `user`'s reaction with `emoji`; an emoji left with nobody is gone.
pub fn remove_reaction(reactions: &mut Vec<Reaction>, emoji: &Emoji, user: UserId) {
    if let Some(reaction) = reactions.iter_mut().find(|r| &r.emoji == emoji) {
        reaction.users.retain(|u| *u != user);
    }
    reactions.retain(|r| !r.users.is_empty());
}
