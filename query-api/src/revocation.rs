//! Sessions that ended, as every instance knows them: an access token of an ended session is
//! refused on HTTP and its WebSockets are closed (4403), on every instance.
//!
//! A session ends by an event in the log: `SessionEnded` (signed out on one device, or a
//! reused refresh token) or `AllSessionsEnded` (signed out everywhere: every session that
//! started before it). Each instance applies those events as the log delivers them (and the
//! instance that wrote one applies it at once), into a bounded in-memory set. An entry is kept
//! only as long as an access token of the session can still be valid (the access-token
//! lifetime after the session ended); after that the token's own expiry refuses it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aether_domain::session::SessionEvent;
use aether_domain::user::UserEvent;
use aether_domain::UserId;
use aether_schemas::EventEnvelope;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use uuid::Uuid;

/// Revoked sessions (and users signed out everywhere) kept at most by default.
pub const DEFAULT_MAX_REVOKED: usize = 1_000_000;

/// Who an access token speaks for, as far as revocation cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder {
    pub user: UserId,
    /// The sign-in session the token names (`sid`); tokens of an external issuer name none.
    pub session: Option<Uuid>,
    /// When the token was issued (seconds since the epoch): a token without a session counts
    /// as started then.
    pub issued_at: i64,
}

impl Holder {
    /// When the holder's session started, in milliseconds: a session id is a UUIDv7, which
    /// carries it; otherwise the token's issue time.
    fn started_ms(&self) -> i64 {
        self.session
            .and_then(|session| session.get_timestamp())
            .map(|ts| {
                let (secs, nanos) = ts.to_unix();
                i64::try_from(secs)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(1_000)
                    .saturating_add(i64::from(nanos / 1_000_000))
            })
            .unwrap_or_else(|| self.issued_at.saturating_mul(1_000))
    }
}

#[derive(Debug, Default)]
struct Revoked {
    /// Ended sessions, with when to forget them (ms since the epoch).
    sessions: HashMap<Uuid, i64>,
    /// Users signed out everywhere: sessions started before the first value (ms) ended; the
    /// second is when to forget it.
    users: HashMap<UserId, (i64, i64)>,
}

/// The ended sessions an instance knows of. Cheap to ask; every change is announced to the
/// user's connections ([`Revocations::changes_of`]), so they re-check at once.
#[derive(Debug)]
pub struct Revocations {
    /// How long an entry is kept after its session ended: the access-token lifetime.
    keep: Duration,
    max: usize,
    revoked: Mutex<Revoked>,
    /// One channel per user whose connections watch: a session end wakes only its user's
    /// connections (an end whose user is unknown wakes every watcher).
    watchers: Mutex<HashMap<UserId, watch::Sender<u64>>>,
}

impl Revocations {
    /// `access_ttl` is how long an access token lives; `max` bounds the entries kept.
    pub fn new(access_ttl: Duration, max: usize) -> Self {
        Self {
            keep: access_ttl,
            max: max.max(1),
            revoked: Mutex::default(),
            watchers: Mutex::default(),
        }
    }

    fn now_ms() -> i64 {
        Utc::now().timestamp_millis()
    }

    fn forget_at(&self, ended_ms: i64) -> i64 {
        let keep = i64::try_from(self.keep.as_millis()).unwrap_or(i64::MAX);
        // A second of slack: token expiry is checked in whole seconds.
        ended_ms.saturating_add(keep).saturating_add(1_000)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Revoked> {
        self.revoked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops entries that no token can need any more; if still over the bound, the ones that
    /// will be forgotten soonest go first (their tokens are the closest to expiring anyway).
    fn make_room(&self, revoked: &mut Revoked) {
        if revoked.sessions.len() + revoked.users.len() < self.max {
            return;
        }
        let now = Self::now_ms();
        revoked.sessions.retain(|_, forget| *forget > now);
        revoked.users.retain(|_, (_, forget)| *forget > now);
        while revoked.sessions.len() + revoked.users.len() >= self.max {
            let soonest_session = revoked
                .sessions
                .iter()
                .min_by_key(|(_, forget)| **forget)
                .map(|(id, forget)| (*id, *forget));
            let soonest_user = revoked
                .users
                .iter()
                .min_by_key(|(_, (_, forget))| *forget)
                .map(|(id, (_, forget))| (*id, *forget));
            match (soonest_session, soonest_user) {
                (Some((id, s)), Some((_, u))) if s <= u => {
                    revoked.sessions.remove(&id);
                }
                (_, Some((id, _))) => {
                    revoked.users.remove(&id);
                }
                (Some((id, _)), None) => {
                    revoked.sessions.remove(&id);
                }
                (None, None) => break,
            }
        }
        tracing::warn!(
            max = self.max,
            "the set of ended sessions is full; the oldest entries were dropped (see --max-revoked-sessions)"
        );
    }

    /// Wakes the connections of `user` (of everyone when not known).
    fn notify(&self, user: Option<UserId>) {
        let watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        let wake = |sender: &watch::Sender<u64>| sender.send_modify(|n| *n = n.wrapping_add(1));
        match user {
            Some(user) => {
                if let Some(sender) = watchers.get(&user) {
                    wake(sender);
                }
            }
            None => watchers.values().for_each(wake),
        }
    }

    /// `session` of `user` (when known) ended at `at`.
    pub fn end_session(&self, session: Uuid, user: Option<UserId>, at: DateTime<Utc>) {
        let forget = self.forget_at(at.timestamp_millis());
        if forget <= Self::now_ms() {
            return;
        }
        {
            let mut revoked = self.lock();
            if revoked.sessions.contains_key(&session) {
                return;
            }
            self.make_room(&mut revoked);
            revoked.sessions.insert(session, forget);
        }
        self.notify(user);
    }

    /// Every session of `user` that started before `before` ended.
    pub fn end_all(&self, user: UserId, before: DateTime<Utc>) {
        let before_ms = before.timestamp_millis();
        let forget = self.forget_at(before_ms);
        if forget <= Self::now_ms() {
            return;
        }
        {
            let mut revoked = self.lock();
            if revoked
                .users
                .get(&user)
                .is_some_and(|(known, _)| *known >= before_ms)
            {
                return;
            }
            if !revoked.users.contains_key(&user) {
                self.make_room(&mut revoked);
            }
            revoked.users.insert(user, (before_ms, forget));
        }
        self.notify(Some(user));
    }

    /// Applies an event of the log: `SessionEnded` and `AllSessionsEnded` end sessions; every
    /// other event is ignored.
    pub fn apply(&self, envelope: &EventEnvelope) {
        match (
            envelope.aggregate_type.as_str(),
            envelope.event_type.as_str(),
        ) {
            ("Session", "SessionEnded") => {
                let (Ok(session), Ok(SessionEvent::SessionEnded { ended_at, .. })) = (
                    Uuid::parse_str(&envelope.aggregate_id),
                    envelope.decode::<SessionEvent>(),
                ) else {
                    tracing::warn!(id = %envelope.id, "a SessionEnded event could not be read");
                    return;
                };
                // The actor of a session's events is its user.
                let user = envelope
                    .actor
                    .as_deref()
                    .and_then(|actor| UserId::parse(actor).ok());
                self.end_session(session, user, ended_at);
            }
            ("User", "AllSessionsEnded") => {
                let (Ok(user), Ok(UserEvent::AllSessionsEnded { ended_at })) = (
                    UserId::parse(&envelope.aggregate_id),
                    envelope.decode::<UserEvent>(),
                ) else {
                    tracing::warn!(id = %envelope.id, "an AllSessionsEnded event could not be read");
                    return;
                };
                self.end_all(user, ended_at);
            }
            _ => {}
        }
    }

    /// Whether `holder`'s session has ended.
    pub fn is_revoked(&self, holder: &Holder) -> bool {
        let revoked = self.lock();
        if revoked.sessions.is_empty() && revoked.users.is_empty() {
            return false;
        }
        if let Some(session) = holder.session {
            if revoked.sessions.contains_key(&session) {
                return true;
            }
        }
        revoked
            .users
            .get(&holder.user)
            .is_some_and(|(before, _)| holder.started_ms() < *before)
    }

    /// Ticks when a session of `user` may have ended, for their connections to re-check.
    pub fn changes_of(&self, user: UserId) -> watch::Receiver<u64> {
        let mut watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = watchers.get(&user) {
            return sender.subscribe();
        }
        // Users whose connections all closed are forgotten as the map grows.
        if watchers.len() >= 1_024 && watchers.len().is_power_of_two() {
            watchers.retain(|_, sender| sender.receiver_count() > 0);
        }
        let (sender, receiver) = watch::channel(0);
        watchers.insert(user, sender);
        receiver
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        let revoked = self.lock();
        revoked.sessions.len() + revoked.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for Revocations {
    fn default() -> Self {
        Self::new(
            aether_commands::auth::DEFAULT_ACCESS_TTL,
            DEFAULT_MAX_REVOKED,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(user: UserId, session: Option<Uuid>) -> Holder {
        Holder {
            user,
            session,
            issued_at: Utc::now().timestamp(),
        }
    }

    #[test]
    fn an_ended_session_is_revoked_and_others_are_not() {
        let revocations = Revocations::default();
        let user = UserId::new();
        let (ended, other) = (Uuid::now_v7(), Uuid::now_v7());
        let changes = revocations.changes_of(user);
        let elsewhere = revocations.changes_of(UserId::new());
        revocations.end_session(ended, Some(user), Utc::now());
        // Only the user's own connections are woken.
        assert!(changes.has_changed().unwrap_or(false));
        assert!(!elsewhere.has_changed().unwrap_or(true));
        // An end whose user is unknown wakes everyone.
        revocations.end_session(Uuid::now_v7(), None, Utc::now());
        assert!(elsewhere.has_changed().unwrap_or(false));
        assert!(revocations.is_revoked(&holder(user, Some(ended))));
        assert!(!revocations.is_revoked(&holder(user, Some(other))));
        assert!(!revocations.is_revoked(&holder(user, None)));
    }

    #[test]
    fn signing_out_everywhere_ends_the_sessions_started_before() {
        let revocations = Revocations::default();
        let user = UserId::new();
        let before = Uuid::now_v7();
        std::thread::sleep(Duration::from_millis(3));
        revocations.end_all(user, Utc::now());
        std::thread::sleep(Duration::from_millis(3));
        let after = Uuid::now_v7();
        assert!(revocations.is_revoked(&holder(user, Some(before))));
        assert!(!revocations.is_revoked(&holder(user, Some(after))));
        assert!(!revocations.is_revoked(&holder(UserId::new(), Some(before))));
        // An earlier sign-out everywhere arriving late changes nothing.
        revocations.end_all(user, Utc::now() - chrono::Duration::seconds(60));
        assert!(!revocations.is_revoked(&holder(user, Some(after))));
    }

    #[test]
    fn entries_older_than_a_token_lifetime_are_not_kept_and_the_set_is_bounded() {
        let revocations = Revocations::new(Duration::from_secs(60), 10);
        revocations.end_session(
            Uuid::now_v7(),
            None,
            Utc::now() - chrono::Duration::seconds(120),
        );
        assert!(revocations.is_empty());
        for _ in 0..25 {
            revocations.end_session(Uuid::now_v7(), None, Utc::now());
        }
        assert!(revocations.len() <= 10, "{}", revocations.len());
        let newest = Uuid::now_v7();
        revocations.end_session(newest, None, Utc::now());
        assert!(revocations.is_revoked(&holder(UserId::new(), Some(newest))));
    }

    #[test]
    fn events_of_the_log_are_applied() {
        let revocations = Revocations::default();
        let (user, session) = (UserId::new(), Uuid::now_v7());
        let earlier = Uuid::now_v7();
        std::thread::sleep(Duration::from_millis(3));
        let envelope = |aggregate_type: &str, id: String, event_type: &str, data| EventEnvelope {
            id: Uuid::now_v7(),
            event_type: event_type.to_owned(),
            version: "1.0".to_owned(),
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: id,
            sequence: 2,
            occurred_at: Utc::now(),
            actor: None,
            correlation_id: String::new(),
            causation_id: String::new(),
            data,
        };
        let now = Utc::now().to_rfc3339();
        revocations.apply(&envelope(
            "Session",
            session.to_string(),
            "SessionEnded",
            serde_json::json!({ "reason": "LOGGED_OUT", "ended_at": now }),
        ));
        assert!(revocations.is_revoked(&holder(user, Some(session))));
        // Garbage is ignored, not a panic.
        revocations.apply(&envelope(
            "Session",
            "not-a-uuid".to_owned(),
            "SessionEnded",
            serde_json::json!({}),
        ));
        revocations.apply(&envelope(
            "User",
            user.to_string(),
            "AllSessionsEnded",
            serde_json::json!({ "ended_at": Utc::now().to_rfc3339() }),
        ));
        assert!(revocations.is_revoked(&holder(user, Some(earlier))));
        assert_eq!(revocations.len(), 2);
    }
}
