//! What the command side needs from an event store beyond cqrs-es's repository trait.

use std::future::Future;

use cqrs_es::persist::PersistedEventRepository;

/// A write-side look-up table kept in step with the events by the store itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectoryKind {
    /// username → user id
    Username,
    /// channel id → server id
    Channel,
    /// invite code → server id
    Invite,
}

impl DirectoryKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            DirectoryKind::Username => "username",
            DirectoryKind::Channel => "channel",
            DirectoryKind::Invite => "invite",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    #[error("the event store could not be prepared: {0}")]
    Migration(String),
}

/// Raised (inside a `PersistenceError`) when an append would make a directory key ambiguous,
/// such as a second account with the same username.
#[derive(Debug, thiserror::Error)]
#[error("{kind} is already taken")]
pub struct DirectoryConflict {
    pub kind: &'static str,
}

/// An event repository with the directory and log positions the command service relies on.
pub trait WriteStore: PersistedEventRepository + Clone + 'static {
    fn lookup(
        &self,
        kind: DirectoryKind,
        key: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// The log position of the newest event of one aggregate (0 if it has none): the
    /// consistency token a client can wait on.
    fn position_of(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;
}
