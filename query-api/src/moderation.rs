//! The GraphQL side of moderation: a server's content policy (the rule stage of the write
//! side), its model threshold, reports, and what moderators see of a message's review.

use aether_domain::{ContentPolicy, UserId};
use aether_projections::rows::{DecisionKind, ReviewRow};
use async_graphql::{ComplexObject, Context, Enum, InputObject, SimpleObject, ID};
use chrono::{DateTime, Utc};

use crate::error::gql;
use crate::types::{load_user, state, User};

/// What the rule stage does with a message whose words its filter finds offensive.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "ContentPolicy")]
pub enum ContentPolicyGql {
    /// Stored as written.
    Allow,
    /// Stored with the offending words replaced by `*`.
    Mask,
    /// Refused with `BAD_USER_INPUT` and the reason.
    Block,
}

impl From<ContentPolicyGql> for ContentPolicy {
    fn from(policy: ContentPolicyGql) -> Self {
        match policy {
            ContentPolicyGql::Allow => ContentPolicy::Allow,
            ContentPolicyGql::Mask => ContentPolicy::Mask,
            ContentPolicyGql::Block => ContentPolicy::Block,
        }
    }
}

#[derive(InputObject, Debug)]
pub struct SetContentPolicyInput {
    pub server_id: ID,
    pub policy: ContentPolicyGql,
}

impl From<ContentPolicy> for ContentPolicyGql {
    fn from(policy: ContentPolicy) -> Self {
        match policy {
            ContentPolicy::Allow => ContentPolicyGql::Allow,
            ContentPolicy::Mask => ContentPolicyGql::Mask,
            ContentPolicy::Block => ContentPolicyGql::Block,
        }
    }
}

#[derive(InputObject, Debug)]
pub struct SetModerationThresholdInput {
    pub server_id: ID,
    /// The model score (greater than 0, at most 1) from which the model stage flags a message
    /// and hides it until a moderator decides.
    pub threshold: f64,
}

#[derive(InputObject, Debug)]
pub struct ReportMessageInput {
    pub message_id: ID,
    /// Why (1 to 500 characters, no line breaks).
    pub reason: String,
}

/// A moderator's decision about a message, with the reason (1 to 500 characters).
#[derive(InputObject, Debug)]
pub struct ModerateMessageInput {
    pub message_id: ID,
    pub reason: String,
}

/// The model stage's flag on a message.
#[derive(SimpleObject, Clone, Debug)]
pub struct ModerationFlag {
    /// The probability (0 to 1) the model gives the message of being abusive.
    pub score: f64,
    /// The embedder and classifier head that gave the score.
    pub model_version: String,
    pub reason: String,
    pub flagged_at: DateTime<Utc>,
}

/// A member's report of a message.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct ModerationReport {
    #[graphql(skip)]
    pub reported_by: UserId,
    pub reason: String,
    pub reported_at: DateTime<Utc>,
}

#[ComplexObject]
impl ModerationReport {
    async fn reported_by(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        gql(load_user(state(ctx), self.reported_by).await)
    }
}

#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModerationDecisionKind {
    Hidden,
    Restored,
    Dismissed,
}

/// The last decision a moderator took about a message.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct ModerationDecision {
    pub kind: ModerationDecisionKind,
    #[graphql(skip)]
    pub decided_by: UserId,
    pub reason: String,
    pub decided_at: DateTime<Utc>,
}

#[ComplexObject]
impl ModerationDecision {
    async fn decided_by(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        gql(load_user(state(ctx), self.decided_by).await)
    }
}

/// What moderation recorded about a message, as its server's moderators see it.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct MessageModeration {
    /// Waiting in the server's moderation queue (flagged or reported, no decision since).
    pub open: bool,
    /// When it last entered the queue.
    pub opened_at: Option<DateTime<Utc>>,
    pub flag: Option<ModerationFlag>,
    /// Members' reports, in the order they came.
    pub reports: Vec<ModerationReport>,
    /// Why it is hidden, while it is.
    pub hidden_reason: Option<String>,
    pub hidden_at: Option<DateTime<Utc>>,
    #[graphql(skip)]
    pub hidden_by: Option<UserId>,
    pub decision: Option<ModerationDecision>,
}

#[ComplexObject]
impl MessageModeration {
    /// The moderator who hid it; `null` while it is not hidden or when the model stage hid it.
    async fn hidden_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        match self.hidden_by {
            Some(user) => gql(load_user(state(ctx), user).await).map(Some),
            None => Ok(None),
        }
    }
}

impl From<ReviewRow> for MessageModeration {
    fn from(review: ReviewRow) -> Self {
        Self {
            open: review.open,
            opened_at: review.opened_at,
            flag: review.flag.map(|flag| ModerationFlag {
                score: flag.score,
                model_version: flag.model_version,
                reason: flag.reason,
                flagged_at: flag.flagged_at,
            }),
            reports: review
                .reports
                .into_iter()
                .map(|report| ModerationReport {
                    reported_by: report.reported_by,
                    reason: report.reason,
                    reported_at: report.reported_at,
                })
                .collect(),
            hidden_reason: review.hidden.as_ref().map(|hidden| hidden.reason.clone()),
            hidden_at: review.hidden.as_ref().map(|hidden| hidden.hidden_at),
            hidden_by: review.hidden.and_then(|hidden| hidden.hidden_by),
            decision: review.decision.map(|decision| ModerationDecision {
                kind: match decision.kind {
                    DecisionKind::Hidden => ModerationDecisionKind::Hidden,
                    DecisionKind::Restored => ModerationDecisionKind::Restored,
                    DecisionKind::Dismissed => ModerationDecisionKind::Dismissed,
                },
                decided_by: decision.decided_by,
                reason: decision.reason,
                decided_at: decision.decided_at,
            }),
        }
    }
}
