//! The GraphQL API: queries over the read models, mutations that send commands, and the
//! subscriptions the realtime edge serves.
//!
//! The transport (HTTP, WebSocket) lives in `aether-realtime-edge`; this crate only needs the
//! caller's identity ([`Caller`]) in each request's data.

pub mod blocks;
pub mod cost;
pub mod document;
pub mod ephemeral;
pub mod error;
pub mod metrics;
mod moderation;
mod mutation;
mod query;
pub mod rate;
pub mod revocation;
mod server_events;
mod subscription;
pub mod tap;
pub mod types;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aether_commands::auth::TokenIssuer;
use aether_commands::backend::EventStoreBackend;
use aether_commands::store::EventRef;
use aether_commands::ChatCommands;
use aether_domain::UserId;
use aether_projections::{ReadModels, UpdateBus};
use async_graphql::Schema;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;
pub use mutation::MutationRoot;
pub use query::QueryRoot;
pub use subscription::SubscriptionRoot;
pub use tap::{EventTap, PresetEvent, TapKey, Tapped, TypingSignal};

/// The command service over the configured event store.
pub type Commands = ChatCommands<EventStoreBackend>;

/// Every mutation: the commands, and the ephemeral signals (typing, presence).
#[derive(async_graphql::MergedObject, Default)]
pub struct Mutations(MutationRoot, ephemeral::EphemeralMutation);

/// Every subscription: channel events, typing, presence.
#[derive(async_graphql::MergedSubscription, Default)]
pub struct Subscriptions(SubscriptionRoot, ephemeral::EphemeralSubscription);

pub type AetherSchema = Schema<QueryRoot, Mutations, Subscriptions>;

/// Limits on what one GraphQL document may ask for.
#[derive(Clone, Debug)]
pub struct ApiLimits {
    /// Deepest selection nesting accepted.
    pub max_depth: usize,
    /// Most one operation may cost: a field is 1 plus what it selects, a page its selection
    /// times its size (see [`cost`]).
    pub max_complexity: usize,
    /// Most items one page (`first`/`last`) may hold.
    pub max_page_size: i64,
    /// Longest a mutation whose payload is served from read models waits for them to apply
    /// its events.
    pub projection_wait: std::time::Duration,
    /// Most aliased fields one document may hold.
    pub max_aliases: usize,
    /// Most distinct emoji one message may carry as reactions.
    pub max_reaction_kinds: usize,
    /// Most messages one channel or conversation may have pinned.
    pub max_pins: usize,
    /// Per-user, per-address and per-account request rates.
    pub rates: rate::RateLimits,
    /// Whether the schema answers introspection (`__schema`, `__type`). On in the embedded
    /// mode; `aether serve` turns it off unless `--introspection` is given.
    pub introspection: bool,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            max_depth: 12,
            max_complexity: 1_000,
            max_page_size: 100,
            projection_wait: std::time::Duration::from_secs(5),
            max_aliases: 30,
            max_reaction_kinds: aether_domain::message::DEFAULT_MAX_REACTION_KINDS,
            max_pins: aether_domain::pins::DEFAULT_MAX_PINS,
            rates: rate::RateLimits::default(),
            introspection: true,
        }
    }
}

/// Everything resolvers need, shared by all requests.
#[derive(Clone)]
pub struct ApiState {
    pub commands: Arc<Commands>,
    /// The projectors' read models: every query and every subscription's catch-up reads them.
    pub read: ReadModels,
    pub updates: UpdateBus,
    /// Typing and presence.
    pub ephemeral: Arc<ephemeral::Ephemeral>,
    pub tokens: TokenIssuer,
    /// Sessions that ended: their access tokens are refused.
    pub revocations: Arc<revocation::Revocations>,
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

/// The sign-in session the caller's access token belongs to, if it names one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallerSession(pub Option<uuid::Uuid>);

/// Filled in by mutations: the event the response's consistency token names. Clones share one
/// value, so the transport keeps a clone and reads it after execution.
#[derive(Clone, Debug, Default)]
pub struct ConsistencyToken(Arc<Mutex<Option<EventRef>>>);

impl ConsistencyToken {
    pub fn observe(&self, event: EventRef) {
        if let Ok(mut last) = self.0.lock() {
            *last = Some(event);
        }
    }

    pub fn event(&self) -> Option<EventRef> {
        self.0.lock().ok().and_then(|last| last.clone())
    }
}

impl ApiState {
    /// Waits until the read models reflect `event`, whichever instance wrote it; `false` after
    /// `timeout`.
    pub async fn wait_until_projected(&self, event: &EventRef, timeout: Duration) -> bool {
        self.read
            .wait_applied(&event.aggregate_id, event.sequence, timeout)
            .await
    }
}

/// The public GraphQL schema in SDL, as committed in `schema.graphql` at the repository root:
/// what client code generators and the API changelog work from.
pub fn sdl() -> String {
    Schema::build(QueryRoot, Mutations::default(), Subscriptions::default())
        .finish()
        .sdl()
}

pub fn build_schema(state: ApiState) -> AetherSchema {
    let limits = state.limits.clone();
    let limiters = Arc::new(rate::RateLimiters::new(&limits.rates));
    let builder = Schema::build(QueryRoot, Mutations::default(), Subscriptions::default());
    let builder = if limits.introspection {
        builder
    } else {
        builder.disable_introspection()
    };
    builder
        .data(state)
        .data(limiters)
        .data(Arc::new(blocks::BlockLists::default()))
        .extension(rate::MutationRateLimit)
        .extension(document::AliasLimit {
            max: limits.max_aliases,
        })
        .extension(cost::QueryCost {
            max: limits.max_complexity,
            max_page: limits.max_page_size,
        })
        // Last, so innermost: it sees the parsed document before a limit refuses it.
        .extension(metrics::OperationMetrics::new(
            metrics::OperationNames::from_sdl(&sdl()),
        ))
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .finish()
}
