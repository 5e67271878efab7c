//! Rate limits: token buckets keyed by who is asking (a user, an IP address, a username being
//! logged into), so one flooding client is slowed down without touching anyone else.
//!
//! A bucket holds up to `burst` tokens and refills at `per_second`; each request takes one, and
//! a request that finds the bucket empty is refused with `RATE_LIMITED` and how long to wait.
//! Memory is bounded: at most `max_keys` buckets are kept, and when that is reached the
//! buckets that have refilled completely (whose keys have been quiet) are forgotten first —
//! a full bucket is what a new one would be anyway.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aether_commands::ErrorCode;
use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ErrorExtensions, Pos, ServerResult, Variables};
use async_trait::async_trait;
use tokio::time::Instant;

use crate::Caller;

/// How fast one key may go.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests that may come at once after a quiet spell.
    pub burst: u32,
}

impl Rate {
    pub const fn new(per_second: f64, burst: u32) -> Self {
        Self { per_second, burst }
    }

    /// No limit (benchmarks, trusted internal clients).
    pub const fn unlimited() -> Self {
        Self::new(f64::MAX, u32::MAX)
    }
}

/// `RATE/BURST` (`20/100`: twenty a second, a hundred at once) or `off`.
impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(Self::unlimited());
        }
        let (rate, burst) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?}: expected RATE/BURST (e.g. 20/100) or off"))?;
        let per_second: f64 = rate
            .trim()
            .parse()
            .map_err(|_| format!("{rate:?} is not a number of requests per second"))?;
        let burst: u32 = burst
            .trim()
            .parse()
            .map_err(|_| format!("{burst:?} is not a whole number of requests"))?;
        if !(per_second.is_finite() && per_second > 0.0) || burst == 0 {
            return Err(format!(
                "{text:?}: the rate and the burst must be above zero (or say off)"
            ));
        }
        Ok(Self::new(per_second, burst))
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == Self::unlimited() {
            f.write_str("off")
        } else {
            write!(f, "{}/{}", self.per_second, self.burst)
        }
    }
}

/// The limits the API enforces; every one is configurable (see the README's Limits table).
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimits {
    /// Mutations per signed-in user.
    pub mutations_per_user: Rate,
    /// Mutations per client IP address, signed in or not.
    pub mutations_per_ip: Rate,
    /// Login and register attempts per client IP address.
    pub logins_per_ip: Rate,
    /// Login attempts per username, from anywhere: slows password guessing spread over many
    /// addresses.
    pub logins_per_username: Rate,
    /// Failed logins per client IP address, whichever accounts they tried: once spent, every
    /// login from the address waits (password spraying: one guess each at many accounts).
    pub failed_logins_per_ip: Rate,
    /// Subscriptions one WebSocket connection may start.
    pub subscribes_per_connection: Rate,
    /// Query cost (see [`crate::cost`]) one signed-in user may spend.
    pub query_cost_per_user: Rate,
    /// Query cost one client address may spend, signed in or not.
    pub query_cost_per_ip: Rate,
    /// Buckets kept per limiter at most.
    pub max_keys: usize,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            mutations_per_user: Rate::new(20.0, 100),
            mutations_per_ip: Rate::new(100.0, 500),
            logins_per_ip: Rate::new(2.0, 20),
            logins_per_username: Rate::new(0.2, 5),
            failed_logins_per_ip: Rate::new(0.2, 10),
            subscribes_per_connection: Rate::new(10.0, 50),
            query_cost_per_user: Rate::new(500.0, 5_000),
            query_cost_per_ip: Rate::new(2_000.0, 20_000),
            max_keys: 100_000,
        }
    }
}

impl RateLimits {
    /// Nothing limited.
    pub fn unlimited() -> Self {
        Self {
            mutations_per_user: Rate::unlimited(),
            mutations_per_ip: Rate::unlimited(),
            logins_per_ip: Rate::unlimited(),
            logins_per_username: Rate::unlimited(),
            failed_logins_per_ip: Rate::unlimited(),
            subscribes_per_connection: Rate::unlimited(),
            query_cost_per_user: Rate::unlimited(),
            query_cost_per_ip: Rate::unlimited(),
            ..Self::default()
        }
    }
}

/// A request refused for going too fast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttled {
    /// When a retry would succeed (rounded up to whole milliseconds).
    pub retry_after: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets of one kind of limit, keyed.
#[derive(Debug)]
pub struct RateLimiter {
    rate: Rate,
    /// Counts this limiter's refusals, if they are refusals a client sees.
    refused: Option<metrics::Counter>,
    max_keys: usize,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// A limiter whose refusals are counted as limit `name`.
    pub fn new(name: &'static str, rate: Rate, max_keys: usize) -> Self {
        Self {
            refused: Some(crate::metrics::refusals(name)),
            ..Self::uncounted(rate, max_keys)
        }
    }

    /// A limiter whose refusals are not refusals of a request (typing signals coalesced).
    pub fn uncounted(rate: Rate, max_keys: usize) -> Self {
        Self {
            refused: None,
            rate,
            max_keys: max_keys.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token from `key`'s bucket, or says how long until one is there.
    pub fn check(&self, key: &str) -> Result<(), Throttled> {
        self.take_at(key, 1.0, true, Instant::now())
    }

    /// Takes `n` tokens at once (a document of `n` mutations), or none and says how long
    /// until `n` are there. More than the burst never fits: the wait is then the time to fill
    /// the whole bucket, and the request is refused every time.
    pub fn check_n(&self, key: &str, n: u32) -> Result<(), Throttled> {
        self.take_at(key, f64::from(n.max(1)), true, Instant::now())
    }

    /// Whether a token is there, taking none.
    pub fn peek(&self, key: &str) -> Result<(), Throttled> {
        self.take_at(key, 1.0, false, Instant::now())
    }

    /// The largest number of tokens one request can take.
    pub fn burst(&self) -> u32 {
        self.rate.burst
    }

    fn take_at(&self, key: &str, n: f64, take: bool, now: Instant) -> Result<(), Throttled> {
        let burst = f64::from(self.rate.burst.max(1));
        let per_second = self.rate.per_second.max(f64::MIN_POSITIVE);
        // A poisoned lock only means another request panicked mid-update; the buckets are
        // still numbers, so keep limiting rather than letting everything through.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !buckets.contains_key(key) && buckets.len() >= self.max_keys {
            let full_after = Duration::from_secs_f64(burst / per_second);
            buckets.retain(|_, bucket| now.saturating_duration_since(bucket.at) < full_after);
            if buckets.len() >= self.max_keys {
                // Still full of active keys: forget the longest-quiet one.
                if let Some(oldest) = buckets
                    .iter()
                    .min_by_key(|(_, bucket)| bucket.at)
                    .map(|(key, _)| key.clone())
                {
                    buckets.remove(&oldest);
                }
            }
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let refilled = now.saturating_duration_since(bucket.at).as_secs_f64() * per_second;
        bucket.tokens = (bucket.tokens + refilled).min(burst);
        bucket.at = now;
        if bucket.tokens >= n {
            if take {
                bucket.tokens -= n;
            }
            return Ok(());
        }
        let wait = (n.min(burst) - bucket.tokens).max(0.0) / per_second;
        if let Some(refused) = &self.refused {
            refused.increment(1);
        }
        Err(Throttled {
            retry_after: Duration::from_millis((wait * 1_000.0).ceil() as u64),
        })
    }
}

/// Every limiter of the API, built from [`RateLimits`].
#[derive(Debug)]
pub struct RateLimiters {
    pub mutations_per_user: RateLimiter,
    pub mutations_per_ip: RateLimiter,
    pub logins_per_ip: RateLimiter,
    pub logins_per_username: RateLimiter,
    pub failed_logins_per_ip: RateLimiter,
    pub query_cost_per_user: RateLimiter,
    pub query_cost_per_ip: RateLimiter,
}

impl RateLimiters {
    pub fn new(limits: &RateLimits) -> Self {
        let limiter = |name, rate| RateLimiter::new(name, rate, limits.max_keys);
        Self {
            mutations_per_user: limiter("mutations_per_user", limits.mutations_per_user),
            mutations_per_ip: limiter("mutations_per_ip", limits.mutations_per_ip),
            logins_per_ip: limiter("logins_per_ip", limits.logins_per_ip),
            logins_per_username: limiter("logins_per_username", limits.logins_per_username),
            failed_logins_per_ip: limiter("failed_logins_per_ip", limits.failed_logins_per_ip),
            query_cost_per_user: limiter("query_cost_per_user", limits.query_cost_per_user),
            query_cost_per_ip: limiter("query_cost_per_ip", limits.query_cost_per_ip),
        }
    }
}

impl Default for RateLimiters {
    fn default() -> Self {
        Self::new(&RateLimits::default())
    }
}

/// The address a request came from, put in each request's data by the transport. Absent (in
/// tests that run the schema directly) means no per-address limit applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// A refusal as clients see it: `RATE_LIMITED`, with `retryAfterMs` in the extensions.
pub fn throttled_error(throttled: Throttled, what: &str) -> async_graphql::Error {
    let millis = u64::try_from(throttled.retry_after.as_millis()).unwrap_or(u64::MAX);
    async_graphql::Error::new(format!(
        "too many {what}; retry in {:.1} s",
        throttled.retry_after.as_secs_f64()
    ))
    .extend_with(|_, extensions| {
        extensions.set("code", ErrorCode::RateLimited.as_str());
        extensions.set("retryAfterMs", millis);
    })
}

/// Takes a token for every mutation field a document holds (aliases and fragment spreads
/// expanded: 30 aliased `sendMessage` are 30 mutations): from the caller's bucket when signed
/// in, and from the client address's bucket. A document is taken whole or refused whole.
#[derive(Debug, Default)]
pub struct MutationRateLimit;

impl ExtensionFactory for MutationRateLimit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(MutationRateLimit)
    }
}

/// Takes `n` tokens of `key` from `limiter`, refusing with `RATE_LIMITED`.
fn take_mutations(limiter: &RateLimiter, key: &str, n: usize) -> ServerResult<()> {
    let n32 = u32::try_from(n).unwrap_or(u32::MAX);
    limiter.check_n(key, n32).map_err(|throttled| {
        let error = if n32 > limiter.burst() {
            let millis = u64::try_from(throttled.retry_after.as_millis()).unwrap_or(u64::MAX);
            async_graphql::Error::new(format!(
                "this document holds {n} mutations; at most {} are accepted at once",
                limiter.burst()
            ))
            .extend_with(|_, extensions| {
                extensions.set("code", ErrorCode::RateLimited.as_str());
                extensions.set("retryAfterMs", millis);
            })
        } else {
            throttled_error(throttled, "mutations")
        };
        error.into_server_error(Pos::default())
    })
}

#[async_trait]
impl Extension for MutationRateLimit {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let Some(limiters) = ctx.data_opt::<Arc<RateLimiters>>() else {
            return Ok(document);
        };
        let mutations = crate::document::count_mutation_fields(&document);
        if mutations > 0 {
            if let Some(Caller(Some(user))) = ctx.data_opt::<Caller>() {
                take_mutations(&limiters.mutations_per_user, &user.to_string(), mutations)?;
            }
            if let Some(ClientIp(ip)) = ctx.data_opt::<ClientIp>() {
                take_mutations(&limiters.mutations_per_ip, &ip.to_string(), mutations)?;
            }
        }
        Ok(document)
    }
}

/// Takes a login attempt's tokens: from the client address's bucket and, for a login, from
/// the username's; a login from an address that spent its failed logins waits too. Called by
/// `login` and `register` before any password is hashed, so a flood costs the server almost
/// nothing. Over HTTP and WebSocket alike: the transport puts the address in the data.
pub fn check_login(
    ctx: &async_graphql::Context<'_>,
    username: Option<&str>,
) -> async_graphql::Result<()> {
    let Some(limiters) = ctx.data_opt::<Arc<RateLimiters>>() else {
        return Ok(());
    };
    if let Some(ClientIp(ip)) = ctx.data_opt::<ClientIp>() {
        let ip = ip.to_string();
        limiters
            .logins_per_ip
            .check(&ip)
            .map_err(|t| throttled_error(t, "sign-in attempts from this address"))?;
        if username.is_some() {
            limiters
                .failed_logins_per_ip
                .peek(&ip)
                .map_err(|t| throttled_error(t, "failed sign-ins from this address"))?;
        }
    }
    if let Some(username) = username {
        limiters
            .logins_per_username
            .check(&username.trim().to_lowercase())
            .map_err(|t| throttled_error(t, "sign-in attempts for this account"))?;
    }
    Ok(())
}

/// Counts a failed login against the client address, whichever account it tried.
pub fn record_failed_login(ctx: &async_graphql::Context<'_>) {
    if let (Some(limiters), Some(ClientIp(ip))) = (
        ctx.data_opt::<Arc<RateLimiters>>(),
        ctx.data_opt::<ClientIp>(),
    ) {
        // Already refused or not, the failure is counted: an empty bucket only stays empty.
        let _ = limiters.failed_logins_per_ip.check(&ip.to_string());
    }
}

/// A bounded count of held places (connections, subscriptions): [`Slots::take`] gives a
/// [`Slot`] while fewer than `max` are held, and dropping the slot frees its place.
#[derive(Clone, Debug)]
pub struct Slots {
    held: Arc<std::sync::atomic::AtomicUsize>,
    max: usize,
}

/// One held place of a [`Slots`].
#[derive(Debug)]
pub struct Slot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Slots {
    pub fn new(max: usize) -> Self {
        Self {
            held: Arc::default(),
            max,
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// How many are held now.
    pub fn held(&self) -> usize {
        self.held.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn take(&self) -> Option<Slot> {
        use std::sync::atomic::Ordering;
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < self.max).then_some(held + 1)
            })
            .ok()
            .map(|_| Slot(self.held.clone()))
    }
}

/// How many subscriptions one WebSocket connection may hold at once; the transport puts one in
/// each connection's data. Absent (plain HTTP, tests that run the schema directly) means no
/// limit.
#[derive(Clone, Debug)]
pub struct SubscriptionBudget {
    slots: Slots,
    /// How fast the connection may start subscriptions, whatever it holds.
    starts: Arc<RateLimiter>,
}

/// One subscription's share of its connection's budget, given back when the subscription ends.
#[derive(Debug)]
pub struct SubscriptionPermit {
    _slot: Option<Slot>,
}

impl SubscriptionBudget {
    pub fn new(max: usize) -> Self {
        Self::with_rate(max, Rate::unlimited())
    }

    /// At most `max` at once, started no faster than `rate`.
    pub fn with_rate(max: usize, rate: Rate) -> Self {
        Self {
            slots: Slots::new(max),
            starts: Arc::new(RateLimiter::new("subscribes_per_connection", rate, 1)),
        }
    }
}

/// A permit for one more subscription on the caller's connection, or `RATE_LIMITED`.
pub fn subscription_permit(
    ctx: &async_graphql::Context<'_>,
) -> async_graphql::Result<SubscriptionPermit> {
    let Some(budget) = ctx.data_opt::<SubscriptionBudget>() else {
        return Ok(SubscriptionPermit { _slot: None });
    };
    // Starting a subscription is the costly message a WebSocket client can repeat (each reads
    // the read model); it is limited per connection, pings and completions are not.
    budget
        .starts
        .check("connection")
        .map_err(|t| throttled_error(t, "subscriptions started on this connection"))?;
    let slot = budget.slots.take().ok_or_else(|| {
        async_graphql::Error::new(format!(
            "this connection already holds {} subscriptions, the most allowed; end one first \
             (see --max-subscriptions-per-connection)",
            budget.slots.max()
        ))
        .extend_with(|_, extensions| extensions.set("code", ErrorCode::RateLimited.as_str()))
    })?;
    Ok(SubscriptionPermit { _slot: Some(slot) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: f64, burst: u32) -> RateLimiter {
        RateLimiter::new("test", Rate::new(per_second, burst), 10)
    }

    #[test]
    fn a_slot_is_given_back_when_it_drops() {
        let slots = Slots::new(2);
        let first = slots.take();
        let second = slots.take();
        assert!(first.is_some() && second.is_some());
        assert!(slots.take().is_none());
        assert_eq!(slots.held(), 2);
        drop(first);
        assert_eq!(slots.held(), 1);
        assert!(slots.take().is_some());
    }

    #[test]
    fn rates_read_as_rate_slash_burst_or_off() {
        assert_eq!("20/100".parse(), Ok(Rate::new(20.0, 100)));
        assert_eq!(" 0.5 / 3 ".parse(), Ok(Rate::new(0.5, 3)));
        assert_eq!("off".parse(), Ok(Rate::unlimited()));
        for bad in ["20", "x/1", "1/x", "0/5", "5/0", "-1/5", "inf/5", ""] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?} was accepted");
        }
        assert_eq!(Rate::new(20.0, 100).to_string(), "20/100");
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_refuses() {
        let limiter = RateLimiter::new("test", Rate::unlimited(), 10);
        for _ in 0..10_000 {
            assert!(limiter.check("bot").is_ok());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_passes_then_the_rate_holds() {
        let limiter = limiter(2.0, 3);
        for _ in 0..3 {
            assert!(limiter.check("alice").is_ok());
        }
        let refused = limiter.check("alice").unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(500));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(limiter.check("alice").is_ok());
        assert!(limiter.check("alice").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_document_takes_one_token_per_mutation_or_none() {
        let limiter = limiter(1.0, 10);
        assert!(limiter.check_n("alice", 8).is_ok());
        // 2 left: a document of 3 is refused whole, and takes nothing.
        let refused = limiter.check_n("alice", 3).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        assert!(limiter.check_n("alice", 2).is_ok());
        // More than the burst never fits.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(limiter.check_n("alice", 11).is_err());
        assert!(limiter.check_n("alice", 10).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn peeking_takes_nothing() {
        let limiter = limiter(1.0, 1);
        assert!(limiter.peek("mallory").is_ok());
        assert!(limiter.peek("mallory").is_ok());
        assert!(limiter.check("mallory").is_ok());
        assert!(limiter.peek("mallory").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn one_key_flooding_leaves_the_others_alone() {
        let limiter = limiter(1.0, 2);
        for _ in 0..50 {
            let _ = limiter.check("flood");
        }
        assert!(limiter.check("flood").is_err());
        assert!(limiter.check("bob").is_ok());
        assert!(limiter.check("bob").is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn memory_stays_bounded_and_quiet_keys_go_first() {
        let limiter = limiter(1.0, 1);
        assert!(limiter.check("busy").is_ok());
        tokio::time::advance(Duration::from_secs(5)).await;
        for n in 0..9 {
            assert!(limiter.check(&format!("key-{n}")).is_ok());
        }
        // `busy` has been quiet long enough to be full: it is forgotten for the new key.
        assert!(limiter.check("newcomer").is_ok());
        let kept = limiter.buckets.lock().map(|b| b.len()).unwrap_or_default();
        assert!(kept <= 10, "{kept} buckets");
        // The keys that just spent their token are still limited.
        assert!(limiter.check("key-3").is_err());
    }
}
