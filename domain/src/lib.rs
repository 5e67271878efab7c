//! The chat rules of AetherConnect, with no I/O.
//!
//! Everything here is pure: identifiers and validated values ([`values`]), the role and
//! permission matrix ([`permissions`]), and the aggregates that decide what may happen —
//! [`user::User`], [`server::Server`] (a community with its channels, members, roles and
//! invites), [`conversation::Conversation`] (a direct conversation outside any server), [`message::Message`], [`pins::ChannelPins`] (a channel's pinned messages), [`review::MessageReview`] (moderation's
//! flags, reports and decisions about one message) and
//! [`receipts::ReadMarker`] (how far a user has read a channel). Each aggregate takes imperative commands and answers
//! with past-tense events or a refusal that says what was refused. Storage, transport and
//! clocks are adapters around this crate: commands carry the instant they happen at.

pub mod conversation;
pub mod ids;
pub mod message;
pub mod moderation;
pub mod permissions;
pub mod pins;
pub mod receipts;
pub mod review;
pub mod server;
pub mod session;
pub mod user;
pub mod values;

pub use ids::{ChannelId, MessageId, ServerId, UserId};
pub use moderation::{ContentPolicy, ModerationThreshold};
pub use permissions::{ChannelAccess, ChannelFacts, ChannelKind, Permission, Role};
pub use values::{
    AvatarUrl, ChannelCategory, ChannelName, ChannelTopic, ConversationName, DisplayName, Emoji,
    InviteCode, MessageBody, ModerationReason, Password, ServerName, StatusText, Username,
    ValidationError,
};

/// The version string every event of the first generation carries.
pub const EVENT_VERSION_1: &str = "1.0";
