//! The GraphQL side of moderation: a server's content policy (the rule stage of the write
//! side).

use aether_domain::ContentPolicy;
use async_graphql::{Enum, InputObject, ID};

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
