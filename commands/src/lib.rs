//! The write side: requests become aggregate commands, decided by `aether-domain` and appended
//! to the event store with their metadata in one transaction.
//!
//! The embedded store ([`sqlite::SqliteEventStore`]) is also the embedded log: projectors tail
//! its `events` table in commit order. [`service::ChatCommands`] is generic over any
//! [`store::WriteStore`], the same trait a PostgreSQL store implements.

pub mod audit;
pub mod auth;
pub mod backend;
pub mod error;
pub mod group_commit;
pub mod keys;
pub mod metrics;
pub mod postgres;
pub mod relay;
pub mod service;
pub mod sqlite;
pub mod store;

pub use error::{CommandError, ErrorCode};
pub use service::{
    too_many_participants, ChatCommands, CommandContext, Committed, ConversationRecord,
    LoginRefused, Moderation, OnlineNow, ProfileChange, ReadMarkRecord, SessionRecord,
    WRONG_CURRENT_PASSWORD,
};
pub use sqlite::SqliteEventStore;
