//! Commands of moderation after delivery: members report a message, the moderator role's
//! model stage flags one, moderators hide, restore or dismiss; admins choose the threshold.
//! Each runs on the message's `MessageReview` aggregate (its own stream, keyed by the channel
//! like the message), never on the message's own stream, so moderation never holds up an edit
//! or a reaction.

use aether_domain::message::Message;
use aether_domain::review::{
    review_id, MessageReview, ModelVerdict, ReviewCommand, ReviewedMessage,
};
use aether_domain::server::ServerCommand;
use aether_domain::{
    ChannelAccess, MessageId, ModerationReason, ModerationThreshold, ServerId, UserId,
};

use super::{ChatCommands, CommandContext, Committed};
use crate::error::CommandError;
use crate::store::WriteStore;

/// A message under review and where it stands for the actor.
struct ReviewTarget {
    message: ReviewedMessage,
    access: ChannelAccess,
}

/// Which decision a moderator takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReviewDecision {
    Hide,
    Restore,
    Dismiss,
}

impl<R: WriteStore> ChatCommands<R> {
    /// A member reports `message_id` to its server's moderators; reporting it again changes
    /// nothing.
    pub async fn report_message(
        &self,
        ctx: &CommandContext,
        message_id: MessageId,
        reason: &str,
    ) -> Result<Committed<MessageReview>, CommandError> {
        let actor = ctx.actor()?;
        let reason = ModerationReason::parse(reason)?;
        let target = self.review_target(message_id, actor).await?;
        let command = ReviewCommand::ReportMessage {
            actor,
            message: target.message,
            access: target.access,
            reason,
            at: ctx.at,
        };
        self.review_command(ctx, target.message, command).await
    }

    /// A moderator (or above) hides, restores or dismisses, with a reason.
    pub async fn decide_review(
        &self,
        ctx: &CommandContext,
        message_id: MessageId,
        decision: ReviewDecision,
        reason: &str,
    ) -> Result<Committed<MessageReview>, CommandError> {
        let actor = ctx.actor()?;
        let reason = ModerationReason::parse(reason)?;
        let ReviewTarget { message, access } = self.review_target(message_id, actor).await?;
        let at = ctx.at;
        let command = match decision {
            ReviewDecision::Hide => ReviewCommand::HideMessage {
                actor,
                message,
                access,
                reason,
                at,
            },
            ReviewDecision::Restore => ReviewCommand::RestoreMessage {
                actor,
                message,
                access,
                reason,
                at,
            },
            ReviewDecision::Dismiss => ReviewCommand::DismissFlag {
                actor,
                message,
                access,
                reason,
                at,
            },
        };
        self.review_command(ctx, message, command).await
    }

    /// The model stage's verdict on `message_id`, from the moderator role: flagged and hidden
    /// when it reaches the server's threshold, once per message (a redelivered event meets the
    /// recorded flag and changes nothing). A message that is gone, deleted or outside any server
    /// records nothing.
    pub async fn flag_message(
        &self,
        ctx: &CommandContext,
        message_id: MessageId,
        verdict: ModelVerdict,
    ) -> Result<Committed<MessageReview>, CommandError> {
        let (state, _) = self.load_at::<Message>(&message_id.to_string()).await?;
        let (Some(channel_id), Some(author_id)) = (state.channel_id, state.author) else {
            return Err(CommandError::not_found("message"));
        };
        let (access, _) = self
            .channel_access_and_policy(channel_id, author_id)
            .await?;
        let server_id = access.server_id();
        let threshold = match server_id {
            Some(server) => self.current_server(&server.to_string()).await?.threshold(),
            None => ModerationThreshold::DEFAULT,
        };
        let message = ReviewedMessage {
            message_id,
            channel_id,
            server_id,
            author_id,
            deleted: state.deleted,
        };
        let command = ReviewCommand::FlagMessage {
            message,
            verdict,
            threshold,
            at: ctx.at,
        };
        self.review_command(ctx, message, command).await
    }

    /// An admin chooses the model score from which messages of `server_id` are flagged.
    pub async fn set_moderation_threshold(
        &self,
        ctx: &CommandContext,
        server_id: ServerId,
        threshold: f64,
    ) -> Result<Committed<()>, CommandError> {
        let actor = ctx.actor()?;
        let threshold = ModerationThreshold::parse(threshold)?;
        let position = self
            .server_command(
                ctx,
                server_id,
                ServerCommand::SetModerationThreshold { actor, threshold },
            )
            .await?;
        Ok(Committed {
            value: (),
            position,
        })
    }

    /// A message `actor` can see, as moderation needs it.
    async fn review_target(
        &self,
        message_id: MessageId,
        actor: UserId,
    ) -> Result<ReviewTarget, CommandError> {
        let target = self.message_and_access(message_id, actor).await?;
        let author_id = target
            .state
            .author
            .ok_or_else(|| CommandError::not_found("message"))?;
        Ok(ReviewTarget {
            message: ReviewedMessage {
                message_id,
                channel_id: target.channel_id,
                server_id: target.access.server_id(),
                author_id,
                deleted: target.state.deleted,
            },
            access: target.access,
        })
    }

    /// Runs a command on `message`'s review, keyed by its channel like the message.
    async fn review_command(
        &self,
        ctx: &CommandContext,
        message: ReviewedMessage,
        command: ReviewCommand,
    ) -> Result<Committed<MessageReview>, CommandError> {
        let id = review_id(message.message_id).to_string();
        let (state, sequence) = self.load_at::<MessageReview>(&id).await?;
        let metadata = ctx.metadata(message.channel_id.to_string());
        let (review, position) = self
            .decide_retrying(&id, state, sequence, command, &metadata)
            .await?;
        Ok(Committed {
            value: review,
            position,
        })
    }
}
