//! Typing and presence: signals that matter for seconds and never enter the event store.
//!
//! Every instance publishes its signals through a [`SignalSink`] — straight to its own hub in
//! the embedded mode, or to the short-retention topic `aether.ephemeral.v1` in the distributed
//! mode, read back by every instance (see `aether_realtime_edge::edge`) and handed to
//! [`Ephemeral::receive`]. So every instance sees every instance's signals.
//!
//! - **Typing:** `startTyping` sends a signal that holds until `typing_ttl` from now; members
//!   subscribed to the channel see `typing: true`, then `typing: false` when it expires
//!   unrenewed. A user's signals per channel are coalesced to one per `typing_interval`.
//! - **Presence:** each instance counts the authenticated WebSocket connections of each user and
//!   reports the user's status (`ONLINE`, `AWAY` if the client said so, none once their last
//!   connection here closed) when it changes, and again every `heartbeat` while connected. Every
//!   instance folds the reports of all instances: a user is ONLINE while any live report says
//!   so, AWAY while every live report says away, and OFFLINE once no live report is left for
//!   `offline_grace` (a reconnect within it does not flicker). A report is live until
//!   `3 × heartbeat` old, so the users of an instance that died go offline too. Only changes
//!   are pushed to subscribers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aether_domain::{ChannelId, UserId};
use async_graphql::Enum;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::rate::{Rate, RateLimiter};

/// Limits and timings of typing and presence; all configurable.
#[derive(Clone, Debug, PartialEq)]
pub struct EphemeralLimits {
    /// How long a typing signal holds unless renewed.
    pub typing_ttl: Duration,
    /// The shortest time between two typing signals of one user in one channel that are
    /// forwarded; more frequent ones are coalesced.
    pub typing_interval: Duration,
    /// How often an instance repeats its presence reports while users are connected.
    pub heartbeat: Duration,
    /// How long a user must be without any live report before they are shown offline.
    pub offline_grace: Duration,
    /// Signals a slow subscriber may fall behind before it skips ahead.
    pub buffer: usize,
}

impl Default for EphemeralLimits {
    fn default() -> Self {
        Self {
            typing_ttl: Duration::from_secs(6),
            typing_interval: Duration::from_secs(1),
            heartbeat: Duration::from_secs(10),
            offline_grace: Duration::from_secs(3),
            buffer: 4_096,
        }
    }
}

/// What a user shows as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Enum)]
pub enum PresenceStatus {
    Online,
    Away,
    Offline,
}

/// One signal, as it travels between instances.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Signal {
    Typing {
        channel_id: ChannelId,
        user_id: UserId,
        until: DateTime<Utc>,
    },
    /// What one instance knows of one user: `Online`/`Away` while connected there, `Offline`
    /// once their last connection there closed.
    Presence {
        instance: Uuid,
        user_id: UserId,
        status: PresenceStatus,
    },
}

impl Signal {
    /// The key that keeps one user's signals in order on the topic.
    pub fn key(&self) -> String {
        match self {
            Signal::Typing { user_id, .. } | Signal::Presence { user_id, .. } => {
                user_id.to_string()
            }
        }
    }
}

/// Where an instance sends its signals.
pub trait SignalSink: Send + Sync {
    fn send(&self, signal: Signal);
}

/// A change of a user's presence, as subscribers see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PresenceChange {
    pub user_id: UserId,
    pub status: PresenceStatus,
    /// This instance's count of the changes it has shown, this one included: what makes two
    /// changes with the same user and status different updates.
    pub seq: u64,
}

#[derive(Default)]
struct Local {
    connections: u32,
    away: bool,
}

impl Local {
    fn status(&self) -> PresenceStatus {
        match (self.connections, self.away) {
            (0, _) => PresenceStatus::Offline,
            (_, true) => PresenceStatus::Away,
            (_, false) => PresenceStatus::Online,
        }
    }
}

#[derive(Default)]
struct Folded {
    /// Each instance's last report and when it came.
    reports: HashMap<Uuid, (PresenceStatus, Instant)>,
    /// What subscribers were last told.
    shown: Option<PresenceStatus>,
    /// Since when no live report says connected.
    gone_since: Option<Instant>,
}

/// The typing and presence hub of one instance.
pub struct Ephemeral {
    instance: Uuid,
    limits: EphemeralLimits,
    sink: Arc<dyn SignalSink>,
    typing: broadcast::Sender<Signal>,
    presence: broadcast::Sender<PresenceChange>,
    presence_seq: std::sync::atomic::AtomicU64,
    local: Mutex<HashMap<UserId, Local>>,
    folded: Mutex<HashMap<UserId, Folded>>,
    typing_rate: RateLimiter,
    counters: crate::metrics::EphemeralCounters,
}

impl std::fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ephemeral")
            .field("instance", &self.instance)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Delivers signals to the hub itself: the embedded mode, one instance.
pub struct LoopbackSink(std::sync::Weak<Ephemeral>);

impl SignalSink for LoopbackSink {
    fn send(&self, signal: Signal) {
        if let Some(hub) = self.0.upgrade() {
            hub.receive(signal);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps hold plain values; one panicked holder leaves them usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Ephemeral {
    fn build(limits: EphemeralLimits, sink: Arc<dyn SignalSink>) -> Self {
        let interval = limits.typing_interval.as_secs_f64().max(0.001);
        Self {
            instance: Uuid::now_v7(),
            typing: broadcast::channel(limits.buffer.max(1)).0,
            presence: broadcast::channel(limits.buffer.max(1)).0,
            presence_seq: std::sync::atomic::AtomicU64::new(0),
            typing_rate: RateLimiter::uncounted(Rate::new(1.0 / interval, 1), 100_000),
            limits,
            sink,
            counters: crate::metrics::EphemeralCounters::new(),
            local: Mutex::new(HashMap::new()),
            folded: Mutex::new(HashMap::new()),
        }
    }

    /// A hub whose signals go through `sink` (which must bring every instance's signals back
    /// to [`Self::receive`]).
    pub fn new(limits: EphemeralLimits, sink: Arc<dyn SignalSink>) -> Arc<Self> {
        Arc::new(Self::build(limits, sink))
    }

    /// A hub for one instance alone: its signals come straight back to it.
    pub fn loopback(limits: EphemeralLimits) -> Arc<Self> {
        Arc::new_cyclic(|hub| Self::build(limits, Arc::new(LoopbackSink(hub.clone()))))
    }

    pub fn limits(&self) -> &EphemeralLimits {
        &self.limits
    }

    /// `user` is typing in `channel`. `false` when coalesced with a signal sent moments ago.
    pub fn start_typing(&self, user: UserId, channel: ChannelId) -> bool {
        if self
            .typing_rate
            .check(&format!("{user}:{channel}"))
            .is_err()
        {
            return false;
        }
        let ttl = chrono::Duration::from_std(self.limits.typing_ttl).unwrap_or_default();
        self.sink.send(Signal::Typing {
            channel_id: channel,
            user_id: user,
            until: Utc::now() + ttl,
        });
        true
    }

    /// A WebSocket of `user` was authenticated on this instance.
    pub fn connected(&self, user: UserId) {
        let status = {
            let mut local = lock(&self.local);
            let entry = local.entry(user).or_default();
            entry.connections += 1;
            entry.status()
        };
        self.report(user, status);
    }

    /// A WebSocket of `user` on this instance closed.
    pub fn disconnected(&self, user: UserId) {
        let status = {
            let mut local = lock(&self.local);
            let Some(entry) = local.get_mut(&user) else {
                return;
            };
            entry.connections = entry.connections.saturating_sub(1);
            let status = entry.status();
            if entry.connections == 0 {
                local.remove(&user);
            }
            status
        };
        self.report(user, status);
    }

    /// The client says whether `user` is away (idle) or back.
    pub fn set_away(&self, user: UserId, away: bool) {
        let status = {
            let mut local = lock(&self.local);
            let Some(entry) = local.get_mut(&user) else {
                return;
            };
            entry.away = away;
            entry.status()
        };
        self.report(user, status);
    }

    fn report(&self, user: UserId, status: PresenceStatus) {
        self.sink.send(Signal::Presence {
            instance: self.instance,
            user_id: user,
            status,
        });
    }

    /// A signal from any instance (this one included).
    pub fn receive(&self, signal: Signal) {
        match signal {
            typing @ Signal::Typing { .. } => {
                self.counters.typing_signals.increment(1);
                // Each subscription of this instance that listens gets it.
                let reached = self.typing.send(typing).unwrap_or(0);
                self.counters.typing_fanout.increment(reached as u64);
            }
            Signal::Presence {
                instance,
                user_id,
                status,
            } => {
                self.counters.presence_signals.increment(1);
                lock(&self.folded)
                    .entry(user_id)
                    .or_default()
                    .reports
                    .insert(instance, (status, Instant::now()));
                self.fold(Instant::now());
            }
        }
    }

    pub fn typing(&self) -> broadcast::Receiver<Signal> {
        self.typing.subscribe()
    }

    pub fn presence(&self) -> broadcast::Receiver<PresenceChange> {
        self.presence.subscribe()
    }

    /// What `user` shows as now, as far as this instance has heard.
    pub fn status_of(&self, user: UserId) -> PresenceStatus {
        lock(&self.folded)
            .get(&user)
            .and_then(|folded| folded.shown)
            .unwrap_or(PresenceStatus::Offline)
    }

    /// Works out every user's status from the live reports and tells subscribers what changed.
    fn fold(&self, now: Instant) {
        let expiry = self.limits.heartbeat * 3;
        let mut changes = Vec::new();
        let mut folded = lock(&self.folded);
        folded.retain(|user, entry| {
            entry.reports.retain(|_, (status, at)| {
                *status != PresenceStatus::Offline && now.duration_since(*at) < expiry
            });
            let live = entry.reports.values().map(|(status, _)| *status);
            let connected = if live.clone().any(|s| s == PresenceStatus::Online) {
                Some(PresenceStatus::Online)
            } else if live.clone().any(|s| s == PresenceStatus::Away) {
                Some(PresenceStatus::Away)
            } else {
                None
            };
            let next = match connected {
                Some(status) => {
                    entry.gone_since = None;
                    Some(status)
                }
                None => {
                    let since = *entry.gone_since.get_or_insert(now);
                    if now.duration_since(since) >= self.limits.offline_grace {
                        Some(PresenceStatus::Offline)
                    } else {
                        None
                    }
                }
            };
            if let Some(next) = next {
                if entry.shown != Some(next) {
                    // Someone never shown online does not need an offline event.
                    if !(entry.shown.is_none() && next == PresenceStatus::Offline) {
                        let seq = self
                            .presence_seq
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                            + 1;
                        changes.push(PresenceChange {
                            user_id: *user,
                            status: next,
                            seq,
                        });
                    }
                    entry.shown = Some(next);
                }
            }
            // Forget users who are offline and shown so.
            !(entry.reports.is_empty() && entry.shown == Some(PresenceStatus::Offline))
        });
        drop(folded);
        for change in changes {
            let reached = self.presence.send(change).unwrap_or(0);
            self.counters.presence_fanout.increment(reached as u64);
        }
    }

    /// Repeats this instance's reports every `heartbeat` and settles debounced changes, until
    /// `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let tick = Duration::from_millis(250)
            .min(self.limits.offline_grace.max(Duration::from_millis(10)));
        let mut last_heartbeat = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(tick) => {}
            }
            if last_heartbeat.elapsed() >= self.limits.heartbeat {
                last_heartbeat = Instant::now();
                let reports: Vec<(UserId, PresenceStatus)> = lock(&self.local)
                    .iter()
                    .map(|(user, local)| (*user, local.status()))
                    .collect();
                for (user, status) in reports {
                    self.report(user, status);
                }
            }
            self.fold(Instant::now());
        }
    }
}

// --- GraphQL ---------------------------------------------------------------------------------

use async_graphql::{Context, Object, SimpleObject, Subscription, ID};
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::error::{gql, ApiError, ApiResult};
use crate::rate::subscription_permit;
use crate::subscription::mismatched_preset;
use crate::tap::{EventTap, PresetEvent, Tapped, TypingSignal};
use crate::types::{load_user, require_caller, require_member, required_place, state, Place, User};
use crate::ApiState;

/// Someone started or stopped typing in a channel or a direct conversation.
#[derive(SimpleObject, Clone, Debug)]
pub struct TypingEvent {
    /// The channel or conversation, as the subscription named it.
    pub channel_id: ID,
    pub user: User,
    /// `false` once the signal expired unrenewed.
    pub typing: bool,
    /// When `typing: true` lapses unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// A member's presence changed.
#[derive(SimpleObject, Clone, Debug)]
pub struct PresenceEvent {
    pub user: User,
    pub status: PresenceStatus,
}

/// What a client may set; `OFFLINE` follows from its connections closing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub enum SettablePresence {
    Online,
    Away,
}

#[derive(Debug, Default)]
pub struct EphemeralMutation;

#[Object]
impl EphemeralMutation {
    /// Tells the other subscribers of a channel, or of a direct conversation (its id in
    /// `channelId`), that the caller is typing, for `typingTtlSeconds`. Send it again while
    /// typing goes on; signals closer together than the coalescing interval are dropped (the
    /// answer is then `false`).
    async fn start_typing(&self, ctx: &Context<'_>, channel_id: ID) -> async_graphql::Result<bool> {
        let result: ApiResult<bool> = async {
            let user = require_caller(ctx)?;
            let channel = ChannelId::parse(&channel_id)?;
            let state = state(ctx);
            required_place(state, channel, user).await?;
            Ok(state.ephemeral.start_typing(user, channel))
        }
        .await;
        gql(result)
    }

    /// Shows the caller away (idle) or back online, on every connection they hold here.
    async fn set_presence(
        &self,
        ctx: &Context<'_>,
        status: SettablePresence,
    ) -> async_graphql::Result<PresenceStatus> {
        let result: ApiResult<PresenceStatus> = async {
            let user = require_caller(ctx)?;
            let hub = &state(ctx).ephemeral;
            hub.set_away(user, status == SettablePresence::Away);
            Ok(match status {
                SettablePresence::Online => PresenceStatus::Online,
                SettablePresence::Away => PresenceStatus::Away,
            })
        }
        .await;
        gql(result)
    }
}

#[derive(Debug, Default)]
pub struct EphemeralSubscription;

/// Whose presence a `presence` subscription reports.
enum Audience {
    /// The members of a server, looked up as changes arrive (members come and go).
    Server(aether_domain::ServerId),
    /// The people of a direct conversation, sorted; a group's change as it changes.
    People(ChannelId, Vec<UserId>),
}

#[Subscription]
impl EphemeralSubscription {
    /// Who starts and stops typing in a channel or a direct conversation (its id in
    /// `channelId`), the caller's own signals excluded.
    async fn typing(
        &self,
        ctx: &Context<'_>,
        channel_id: ID,
    ) -> async_graphql::Result<BoxStream<'static, async_graphql::Result<TypingEvent>>> {
        if let Some(update) = PresetEvent::of(ctx) {
            let Tapped::Typing(signal) = update else {
                return Err(mismatched_preset().into());
            };
            let (state, signal) = (state(ctx).clone(), *signal);
            return Ok(futures::stream::once(async move {
                typing_event(&state, signal).await.map_err(Into::into)
            })
            .boxed());
        }
        let state = state(ctx).clone();
        let user = require_caller(ctx)?;
        let channel = ChannelId::parse(&channel_id).map_err(ApiError::from)?;
        let permit = subscription_permit(ctx)?;
        // Watch the caller's membership changes first, then check: a removal between the two
        // is not missed.
        let mut membership = state.updates.watch_member(user);
        let place = required_place(&state, channel, user).await?;
        let tap = EventTap::of(ctx);
        let mut signals = state.ephemeral.typing();
        let shutdown = state.shutdown.clone();
        Ok(async_stream::stream! {
            let _permit = permit;
            // Who is typing now, and until when.
            let mut typing: HashMap<UserId, DateTime<Utc>> = HashMap::new();
            let mut due: Vec<TypingSignal> = Vec::new();
            loop {
                let next_expiry = typing.values().min().copied();
                let wait = next_expiry
                    .map(|at| (at - Utc::now()).to_std().unwrap_or_default())
                    .unwrap_or(Duration::from_secs(3600));
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return,
                    // Access is decided before anything more of the channel is shown, as for
                    // its events: removal, ban, leaving or demotion ends it with FORBIDDEN.
                    changed = membership.recv() => {
                        let still = match changed {
                            Ok(update) => crate::subscription::still_sees_place(&update, &place, user),
                            Err(broadcast::error::RecvError::Lagged(_)) => {
                                crate::subscription::still_sees_place_now(&state, &place, user).await
                            }
                            Err(broadcast::error::RecvError::Closed) => return,
                        };
                        if let Err(error) = still {
                            yield Err(error.into());
                            return;
                        }
                        continue;
                    }
                    _ = tokio::time::sleep(wait), if next_expiry.is_some() => {
                        let now = Utc::now();
                        typing.retain(|who, until| {
                            let expired = *until <= now;
                            if expired {
                                due.push(TypingSignal { channel_id: channel, user_id: *who, typing: false, until: *until });
                            }
                            !expired
                        });
                    }
                    received = signals.recv() => match received {
                        Ok(Signal::Typing { channel_id, user_id, until }) if channel_id == channel && user_id != user => {
                            typing.insert(user_id, until);
                            due.push(TypingSignal { channel_id: channel, user_id, typing: true, until });
                        }
                        Ok(_) => {}
                        // Typing is of the moment: a subscriber that fell behind skips ahead.
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                }
                for signal in due.drain(..) {
                    match &tap {
                        Some(tap) => {
                            if !tap.hand(Tapped::Typing(signal)).await {
                                return;
                            }
                        }
                        None => match typing_event(&state, signal).await {
                            Ok(event) => yield Ok(event),
                            Err(error) => { yield Err(error.into()); return; }
                        },
                    }
                }
            }
        }
        .boxed())
    }

    /// Presence changes (`ONLINE`, `AWAY`, `OFFLINE`) of the members of a server (for its
    /// members) or of the people in a direct conversation (for them): name exactly one of
    /// `serverId` and `conversationId`.
    async fn presence(
        &self,
        ctx: &Context<'_>,
        server_id: Option<ID>,
        conversation_id: Option<ID>,
    ) -> async_graphql::Result<BoxStream<'static, async_graphql::Result<PresenceEvent>>> {
        if let Some(update) = PresetEvent::of(ctx) {
            let Tapped::Presence(change) = update else {
                return Err(mismatched_preset().into());
            };
            let (state, change) = (state(ctx).clone(), *change);
            return Ok(futures::stream::once(async move {
                presence_event(&state, change).await.map_err(Into::into)
            })
            .boxed());
        }
        let state = state(ctx).clone();
        let user = require_caller(ctx)?;
        // Watch the caller's membership changes first, then check: a removal between the two
        // is not missed.
        let mut membership = state.updates.watch_member(user);
        let mut audience = match (server_id, conversation_id) {
            (Some(server_id), None) => {
                let server = aether_domain::ServerId::parse(&server_id).map_err(ApiError::from)?;
                require_member(&state, server, user).await?;
                Audience::Server(server)
            }
            (None, Some(conversation_id)) => {
                let id = ChannelId::parse(&conversation_id).map_err(ApiError::from)?;
                match required_place(&state, id, user).await? {
                    Place::Conversation(conversation) => {
                        let mut people = conversation.participants;
                        people.sort();
                        Audience::People(conversation.id, people)
                    }
                    Place::Channel(_) => {
                        return Err(ApiError::bad_input(
                            "conversationId names a channel; ask for its server's presence",
                        )
                        .into())
                    }
                }
            }
            _ => {
                return Err(
                    ApiError::bad_input("name exactly one of serverId and conversationId").into(),
                )
            }
        };
        let permit = subscription_permit(ctx)?;
        let tap = EventTap::of(ctx);
        let mut changes = state.ephemeral.presence();
        let shutdown = state.shutdown.clone();
        Ok(async_stream::stream! {
            let _permit = permit;
            loop {
                let change = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return,
                    // A member who leaves, is removed or banned stops seeing the server's
                    // presence: the subscription ends with FORBIDDEN, as a channel's events do.
                    // A member who leaves, is removed or banned stops seeing the server's
                    // presence, and someone gone from a group its people's: the subscription
                    // ends with FORBIDDEN, as a channel's events do.
                    changed = membership.recv() => {
                        let changed = match changed {
                            Ok(update) => Some(update),
                            Err(broadcast::error::RecvError::Lagged(_)) => None,
                            Err(broadcast::error::RecvError::Closed) => return,
                        };
                        if let Err(error) = still_in_audience(&state, &mut audience, changed.as_deref(), user).await {
                            yield Err(error.into());
                            return;
                        }
                        continue;
                    }
                    received = changes.recv() => match received {
                        Ok(change) => change,
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                };
                let counts = match &audience {
                    Audience::Server(server) => match state.read.member_role(*server, change.user_id).await {
                        Ok(role) => role.is_some(),
                        Err(error) => { yield Err(ApiError::from(error).into()); return; }
                    },
                    Audience::People(_, people) => people.binary_search(&change.user_id).is_ok(),
                };
                if !counts {
                    continue;
                }
                match &tap {
                    Some(tap) => {
                        if !tap.hand(Tapped::Presence(change)).await {
                            return;
                        }
                    }
                    None => match presence_event(&state, change).await {
                        Ok(event) => yield Ok(event),
                        Err(error) => { yield Err(error.into()); return; }
                    },
                }
            }
        }
        .boxed())
    }
}

/// Whether `user` still belongs to the presence `audience` after `changed` (one of their own
/// changes; `None` when some were missed and the read model must say), following a group's
/// people as they change.
async fn still_in_audience(
    state: &ApiState,
    audience: &mut Audience,
    changed: Option<&aether_projections::Update>,
    user: UserId,
) -> ApiResult<()> {
    use aether_projections::Update;
    match (audience, changed) {
        (Audience::Server(server), Some(update)) => match update {
            Update::Membership {
                server_id,
                user_id,
                role: None,
            } if server_id == server && *user_id == user => Err(ApiError::forbidden(
                "you are no longer a member of this server",
            )),
            _ => Ok(()),
        },
        (Audience::Server(server), None) => match state.read.member_role(*server, user).await? {
            Some(_) => Ok(()),
            None => Err(ApiError::forbidden(
                "you are no longer a member of this server",
            )),
        },
        (Audience::People(id, people), Some(update)) => match update {
            Update::ConversationChanged {
                conversation_id,
                participant_ids,
                removed,
            } if conversation_id == id => {
                if *removed == Some(user) {
                    return Err(crate::subscription::gone_from_conversation());
                }
                *people = participant_ids.clone();
                people.sort();
                Ok(())
            }
            _ => Ok(()),
        },
        (Audience::People(id, people), None) => {
            let conversation = crate::types::visible_conversation(state, *id, user)
                .await
                .map_err(|_| crate::subscription::gone_from_conversation())?;
            *people = conversation.participants;
            people.sort();
            Ok(())
        }
    }
}

async fn typing_event(state: &ApiState, signal: TypingSignal) -> ApiResult<TypingEvent> {
    Ok(TypingEvent {
        channel_id: ID(signal.channel_id.to_string()),
        user: load_user(state, signal.user_id).await?,
        typing: signal.typing,
        expires_at: signal.until,
    })
}

async fn presence_event(state: &ApiState, change: PresenceChange) -> ApiResult<PresenceEvent> {
    Ok(PresenceEvent {
        user: load_user(state, change.user_id).await?,
        status: change.status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Arc<Ephemeral> {
        Ephemeral::loopback(EphemeralLimits::default())
    }

    async fn settle(hub: &Arc<Ephemeral>, by: Duration) {
        tokio::time::advance(by).await;
        hub.fold(Instant::now());
    }

    #[tokio::test(start_paused = true)]
    async fn a_user_is_online_while_connected_and_offline_after_the_grace() {
        let hub = hub();
        let mut changes = hub.presence();
        let user = UserId::new();
        hub.connected(user);
        hub.connected(user);
        assert_eq!(
            changes.try_recv().ok().map(|c| c.status),
            Some(PresenceStatus::Online)
        );
        hub.disconnected(user);
        assert_eq!(
            hub.status_of(user),
            PresenceStatus::Online,
            "one connection is left"
        );
        hub.disconnected(user);
        settle(&hub, Duration::from_secs(1)).await;
        assert!(changes.try_recv().is_err(), "not offline within the grace");
        settle(&hub, Duration::from_secs(3)).await;
        assert_eq!(
            changes.try_recv().ok().map(|c| c.status),
            Some(PresenceStatus::Offline)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconnect_within_the_grace_does_not_flicker() {
        let hub = hub();
        let user = UserId::new();
        hub.connected(user);
        let mut changes = hub.presence();
        hub.disconnected(user);
        settle(&hub, Duration::from_secs(1)).await;
        hub.connected(user);
        settle(&hub, Duration::from_secs(10)).await;
        assert!(changes.try_recv().is_err(), "no offline, no second online");
        assert_eq!(hub.status_of(user), PresenceStatus::Online);
    }

    #[tokio::test(start_paused = true)]
    async fn away_shows_while_every_connection_is_away() {
        let hub = hub();
        let user = UserId::new();
        hub.connected(user);
        let mut changes = hub.presence();
        hub.set_away(user, true);
        assert_eq!(
            changes.try_recv().ok().map(|c| c.status),
            Some(PresenceStatus::Away)
        );
        hub.set_away(user, false);
        assert_eq!(
            changes.try_recv().ok().map(|c| c.status),
            Some(PresenceStatus::Online)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn another_instance_keeps_a_user_online_and_its_silence_expires() {
        let hub = hub();
        let user = UserId::new();
        let elsewhere = Uuid::now_v7();
        hub.receive(Signal::Presence {
            instance: elsewhere,
            user_id: user,
            status: PresenceStatus::Online,
        });
        assert_eq!(hub.status_of(user), PresenceStatus::Online);
        // Connected here too, then gone here: still online through the other instance.
        hub.connected(user);
        hub.disconnected(user);
        settle(&hub, Duration::from_secs(5)).await;
        assert_eq!(hub.status_of(user), PresenceStatus::Online);
        // The other instance stops reporting (it died): offline after 3 heartbeats + grace.
        settle(&hub, Duration::from_secs(31)).await;
        settle(&hub, Duration::from_secs(4)).await;
        assert_eq!(hub.status_of(user), PresenceStatus::Offline);
    }

    #[tokio::test(start_paused = true)]
    async fn typing_is_coalesced_per_user_and_channel() {
        let hub = hub();
        let mut typing = hub.typing();
        let (user, channel) = (UserId::new(), ChannelId::new());
        assert!(hub.start_typing(user, channel));
        assert!(!hub.start_typing(user, channel));
        assert!(hub.start_typing(user, ChannelId::new()));
        assert!(typing.try_recv().is_ok());
        assert!(typing.try_recv().is_ok());
        assert!(typing.try_recv().is_err());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(hub.start_typing(user, channel));
    }
}
