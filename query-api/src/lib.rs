//! The GraphQL API: queries over the read models, mutations that send commands, and the
//! subscriptions the realtime edge serves.
//!
//! The transport (HTTP, WebSocket) lives in `aether-realtime-edge`; this crate only needs the
//! caller's identity ([`Caller`]) in each request's data.

pub mod error;
mod mutation;
mod query;
mod subscription;
pub mod types;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use aether_commands::auth::TokenIssuer;
use aether_commands::{ChatCommands, SqliteEventStore};
use aether_domain::UserId;
use aether_projections::{ReadModels, UpdateBus, Watermarks};
use async_graphql::Schema;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;
pub use mutation::MutationRoot;
pub use query::QueryRoot;
pub use subscription::SubscriptionRoot;

/// The command service over the store this build runs on.
pub type Commands = ChatCommands<SqliteEventStore>;

pub type AetherSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Limits on what one GraphQL document may ask for.
#[derive(Clone, Debug)]
pub struct ApiLimits {
    /// Deepest selection nesting accepted.
    pub max_depth: usize,
    /// Most fields (weighted) one operation may select.
    pub max_complexity: usize,
    /// Most items one page (`first`/`last`) may hold.
    pub max_page_size: i64,
    /// Longest a mutation whose payload is served from read models waits for them to apply
    /// its events.
    pub projection_wait: std::time::Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            max_depth: 12,
            max_complexity: 1_000,
            max_page_size: 100,
            projection_wait: std::time::Duration::from_secs(5),
        }
    }
}

/// Everything resolvers need, shared by all requests.
#[derive(Clone)]
pub struct ApiState {
    pub commands: Arc<Commands>,
    pub read: ReadModels,
    pub updates: UpdateBus,
    pub tokens: TokenIssuer,
    pub watermarks: Watermarks,
    pub limits: ApiLimits,
    /// Cancelled on shutdown: open subscriptions end.
    pub shutdown: CancellationToken,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The authenticated user of a request or connection, if any.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caller(pub Option<UserId>);

/// Filled in by mutations: the log position the response's consistency token carries. Clones
/// share one value, so the transport keeps a clone and reads it after execution.
#[derive(Clone, Debug, Default)]
pub struct ConsistencyToken(Arc<AtomicI64>);

impl ConsistencyToken {
    pub fn observe(&self, position: i64) {
        self.0.fetch_max(position, Ordering::Relaxed);
    }

    pub fn position(&self) -> Option<i64> {
        Some(self.0.load(Ordering::Relaxed)).filter(|position| *position > 0)
    }
}

pub fn build_schema(state: ApiState) -> AetherSchema {
    let limits = state.limits.clone();
    Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
        .data(state)
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .finish()
}
