//! Projection updates: what projectors publish after a commit, and the realtime edge fans out.
//!
//! The bus routes each update to its audience only: a channel's updates to the subscribers of
//! that channel, a membership change to the subscriptions of that member. A subscriber is woken
//! by what concerns it, not by every update of the instance, so the cost of an update is its
//! audience, not the number of subscriptions. A subscriber that falls behind its channel by
//! more than the bus capacity is told how far (`Lagged`) and re-reads the read model.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use aether_domain::{ChannelId, Role, ServerId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::rows::{ChannelEventRow, ServerEventRow};

/// The default number of a channel's updates a slow subscriber may fall behind before it must
/// re-read.
pub const DEFAULT_BUS_CAPACITY: usize = 1_024;

/// A member's own membership changes waiting for one subscription, at most (they are rare; a
/// subscription further behind re-checks its access in the read model).
const MEMBERSHIP_CAPACITY: usize = 16;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Update {
    /// A channel's messages changed; keyed by channel id.
    Channel(ChannelEventRow),
    /// A member joined, left or changed role (`role: None` means they are no longer a member).
    Membership {
        server_id: ServerId,
        user_id: UserId,
        role: Option<Role>,
    },
    /// A direct conversation opened; every participant hears of it.
    ConversationOpened {
        conversation_id: ChannelId,
        opened_by: UserId,
        participant_ids: Vec<UserId>,
        opened_at: DateTime<Utc>,
    },
    /// Something happened in a server (a channel, a member, the server itself, a pin); keyed
    /// by server id.
    Server(ServerEventRow),
    /// A group's people or name changed: everyone in it hears of it, and whoever is no longer
    /// in it (`removed`).
    ConversationChanged {
        conversation_id: ChannelId,
        participant_ids: Vec<UserId>,
        removed: Option<UserId>,
    },
}

impl Update {
    /// The key the update is published under: the id of the read-model row it describes (a
    /// channel, a server or a conversation), so that updates of one row stay in order.
    pub fn key(&self) -> String {
        match self {
            Update::Channel(row) => row.channel_id.to_string(),
            Update::Membership { server_id, .. } => server_id.to_string(),
            Update::Server(row) => row.server_id.to_string(),
            Update::ConversationOpened {
                conversation_id, ..
            }
            | Update::ConversationChanged {
                conversation_id, ..
            } => conversation_id.to_string(),
        }
    }

    pub fn channel_id(&self) -> Option<ChannelId> {
        match self {
            Update::Channel(event) => Some(event.channel_id),
            Update::Membership { .. }
            | Update::ConversationOpened { .. }
            | Update::ConversationChanged { .. }
            | Update::Server(_) => None,
        }
    }
}

/// Senders by key, created by the first subscriber and dropped once nobody listens.
#[derive(Debug)]
struct Routes<K> {
    capacity: usize,
    senders: Mutex<HashMap<K, broadcast::Sender<Arc<Update>>>>,
    /// Entries left after the last sweep: the next sweep is due when the map has doubled.
    swept_at: Mutex<usize>,
}

impl<K: Copy + Eq + Hash> Routes<K> {
    fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            senders: Mutex::default(),
            swept_at: Mutex::new(0),
        }
    }

    fn subscribe(&self, key: K) -> broadcast::Receiver<Arc<Update>> {
        let Ok(mut senders) = self.senders.lock() else {
            // A poisoned map (a panic elsewhere while it was held): a receiver that never
            // hears anything, closed at once, rather than a second panic.
            return broadcast::channel(1).0.subscribe();
        };
        let receiver = senders
            .entry(key)
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .subscribe();
        // Keys whose subscribers have all gone and that hear nothing more would stay forever:
        // sweep them whenever the map has doubled since the last sweep (amortised O(1)).
        if let Ok(mut swept_at) = self.swept_at.lock() {
            if senders.len() >= (*swept_at * 2).max(64) {
                senders.retain(|_, sender| sender.receiver_count() > 0);
                *swept_at = senders.len();
            }
        }
        receiver
    }

    fn publish(&self, key: K, update: &Arc<Update>) {
        let Ok(mut senders) = self.senders.lock() else {
            return;
        };
        if let Some(sender) = senders.get(&key) {
            if sender.send(update.clone()).is_err() {
                // Nobody listens any more.
                senders.remove(&key);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.senders.lock().map(|s| s.len()).unwrap_or(0)
    }
}

#[derive(Clone, Debug)]
pub struct UpdateBus {
    inner: Arc<Bus>,
}

#[derive(Debug)]
struct Bus {
    /// Every update, for whoever wants them all (tests, diagnostics).
    all: broadcast::Sender<Arc<Update>>,
    channels: Routes<ChannelId>,
    members: Routes<UserId>,
    servers: Routes<ServerId>,
    /// Moderation of a user's own messages (hidden, shown again), for their `userEvents`.
    authors: Routes<UserId>,
}

impl UpdateBus {
    pub fn new(capacity: usize) -> Self {
        let (all, _) = broadcast::channel(capacity.max(1));
        Self {
            inner: Arc::new(Bus {
                all,
                channels: Routes::new(capacity),
                members: Routes::new(MEMBERSHIP_CAPACITY),
                servers: Routes::new(capacity),
                authors: Routes::new(MEMBERSHIP_CAPACITY),
            }),
        }
    }

    /// Hands `update` to its audience; nobody listening is not an error.
    pub fn publish(&self, update: Update) {
        let update = Arc::new(update);
        match update.as_ref() {
            Update::Channel(event) => {
                self.inner.channels.publish(event.channel_id, &update);
                if event.kind.is_moderation() {
                    self.inner.authors.publish(event.message.author_id, &update);
                }
            }
            Update::Membership { user_id, .. } => self.inner.members.publish(*user_id, &update),
            Update::ConversationOpened {
                participant_ids, ..
            } => {
                for user in participant_ids {
                    self.inner.members.publish(*user, &update);
                }
            }
            Update::Server(event) => self.inner.servers.publish(event.server_id, &update),
            Update::ConversationChanged {
                participant_ids,
                removed,
                ..
            } => {
                for user in participant_ids.iter().chain(removed) {
                    self.inner.members.publish(*user, &update);
                }
            }
        }
        let _ = self.inner.all.send(update);
    }

    /// Every update, whatever its audience.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Update>> {
        self.inner.all.subscribe()
    }

    /// What a subscription to `channel` by `member` needs: the channel's updates and the
    /// member's own membership changes.
    pub fn watch_channel(&self, channel: ChannelId, member: UserId) -> ChannelFeed {
        ChannelFeed {
            channel: self.inner.channels.subscribe(channel),
            membership: self.inner.members.subscribe(member),
        }
    }
}

impl UpdateBus {
    /// What a subscription to `server`'s events by `member` needs: the server's updates and
    /// the member's own membership changes.
    pub fn watch_server(&self, server: ServerId, member: UserId) -> ChannelFeed {
        ChannelFeed {
            channel: self.inner.servers.subscribe(server),
            membership: self.inner.members.subscribe(member),
        }
    }

    /// A user's own news: membership changes from any server, conversations opened with them.
    pub fn watch_member(&self, member: UserId) -> broadcast::Receiver<Arc<Update>> {
        self.inner.members.subscribe(member)
    }

    /// Moderation of `author`'s own messages, wherever they wrote them: each of their messages
    /// hidden or shown again, as the channel's update.
    pub fn watch_own_messages(&self, author: UserId) -> broadcast::Receiver<Arc<Update>> {
        self.inner.authors.subscribe(author)
    }
}

/// One subscription's view of the bus; see [`UpdateBus::watch_channel`].
#[derive(Debug)]
pub struct ChannelFeed {
    channel: broadcast::Receiver<Arc<Update>>,
    membership: broadcast::Receiver<Arc<Update>>,
}

/// What a [`ChannelFeed`] hands out next.
#[derive(Debug)]
pub enum Heard {
    Update(Arc<Update>),
    /// This many of the channel's updates were missed: re-read the read model.
    MissedChannelUpdates(u64),
    /// Membership changes of the member were missed: re-check access.
    MissedMembership,
    /// The bus is gone (shutdown).
    Closed,
}

impl ChannelFeed {
    /// The next update; membership changes first when both are waiting, so access is decided
    /// before more of the channel is shown.
    pub async fn recv(&mut self) -> Heard {
        tokio::select! {
            biased;
            heard = self.membership.recv() => match heard {
                Ok(update) => Heard::Update(update),
                Err(RecvError::Lagged(_)) => Heard::MissedMembership,
                Err(RecvError::Closed) => Heard::Closed,
            },
            heard = self.channel.recv() => match heard {
                Ok(update) => Heard::Update(update),
                Err(RecvError::Lagged(missed)) => Heard::MissedChannelUpdates(missed),
                Err(RecvError::Closed) => Heard::Closed,
            },
        }
    }
}

impl Default for UpdateBus {
    fn default() -> Self {
        Self::new(DEFAULT_BUS_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::{ChannelEventKind, MessageRow};

    fn sent(channel: ChannelId, seq: i64) -> Update {
        Update::Channel(ChannelEventRow {
            channel_id: channel,
            seq,
            kind: ChannelEventKind::MessageSent,
            message: Box::new(MessageRow {
                id: aether_domain::MessageId::new(),
                channel_id: channel,
                server_id: Some(ServerId::new()),
                author_id: UserId::new(),
                body: Some(format!("message {seq}")),
                created_at: Utc::now(),
                edited_at: None,
                deleted: false,
                position: seq,
                version: 1,
                edits: Vec::new(),
                reactions: Vec::new(),
                reply_to_id: None,
                thread_root_id: None,
                thread_position: None,
                in_channel: true,
                thread: None,
                pinned: None,
                forwarded_from: None,
                review: None,
            }),
            reaction: None,
        })
    }

    fn seq(heard: Heard) -> i64 {
        match heard {
            Heard::Update(update) => match update.as_ref() {
                Update::Channel(event) => event.seq,
                Update::Membership { .. }
                | Update::ConversationOpened { .. }
                | Update::ConversationChanged { .. }
                | Update::Server(_) => -1,
            },
            other => panic!("expected an update, heard {other:?}"),
        }
    }

    async fn quiet(feed: &mut ChannelFeed) -> bool {
        tokio::time::timeout(std::time::Duration::from_millis(50), feed.recv())
            .await
            .is_err()
    }

    #[tokio::test]
    async fn a_subscription_hears_its_channel_and_its_own_membership_only() {
        let bus = UpdateBus::new(8);
        let (mine, other) = (ChannelId::new(), ChannelId::new());
        let (me, someone) = (UserId::new(), UserId::new());
        let mut feed = bus.watch_channel(mine, me);
        let mut all = bus.subscribe();

        bus.publish(sent(other, 1));
        bus.publish(Update::Membership {
            server_id: ServerId::new(),
            user_id: someone,
            role: None,
        });
        bus.publish(sent(mine, 1));
        bus.publish(Update::Membership {
            server_id: ServerId::new(),
            user_id: me,
            role: None,
        });
        bus.publish(sent(mine, 2));

        // Membership first when both wait, then the channel's updates in order.
        assert_eq!(seq(feed.recv().await), -1);
        assert_eq!(seq(feed.recv().await), 1);
        assert_eq!(seq(feed.recv().await), 2);
        assert!(quiet(&mut feed).await, "heard another channel's update");
        // The firehose still has all five.
        for _ in 0..5 {
            assert!(all.try_recv().is_ok());
        }
    }

    #[test]
    fn an_author_hears_of_their_own_messages_hidden_and_restored_only() {
        let bus = UpdateBus::new(8);
        let channel = ChannelId::new();
        let moderated = |update: Update, kind| match update {
            Update::Channel(mut row) => {
                row.kind = kind;
                (row.message.author_id, Update::Channel(row))
            }
            other => unreachable!("{other:?}"),
        };
        let (author, hidden) = moderated(sent(channel, 2), ChannelEventKind::MessageHidden);
        let (someone, restored) = moderated(sent(channel, 3), ChannelEventKind::MessageRestored);
        let mut own = bus.watch_own_messages(author);
        let mut theirs = bus.watch_own_messages(someone);
        let mut channel_feed = bus.watch_channel(channel, author);
        let own_sent = match sent(channel, 1) {
            Update::Channel(mut row) => {
                row.message.author_id = author;
                Update::Channel(row)
            }
            other => unreachable!("{other:?}"),
        };

        bus.publish(own_sent);
        bus.publish(hidden.clone());
        bus.publish(restored);

        // The author hears of their hidden message, not of their messages sent nor of
        // someone else's moderation; the channel's subscribers hear all three.
        assert_eq!(own.try_recv().ok().as_deref(), Some(&hidden));
        assert!(own.try_recv().is_err());
        assert!(
            matches!(theirs.try_recv().as_deref(), Ok(Update::Channel(row))
            if row.kind == ChannelEventKind::MessageRestored)
        );
        let mut heard = 0;
        while channel_feed.channel.try_recv().is_ok() {
            heard += 1;
        }
        assert_eq!(heard, 3);
        assert!(channel_feed.membership.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_subscriber_behind_by_more_than_the_capacity_is_told() {
        let bus = UpdateBus::new(4);
        let channel = ChannelId::new();
        let mut feed = bus.watch_channel(channel, UserId::new());
        for n in 1..=10 {
            bus.publish(sent(channel, n));
        }
        assert!(matches!(feed.recv().await, Heard::MissedChannelUpdates(6)));
        assert_eq!(seq(feed.recv().await), 7);
    }

    #[tokio::test]
    async fn routes_nobody_listens_to_are_dropped() {
        let bus = UpdateBus::new(4);
        let channel = ChannelId::new();
        let feed = bus.watch_channel(channel, UserId::new());
        assert_eq!(bus.inner.channels.len(), 1);
        drop(feed);
        // The next update for it finds nobody and drops the route.
        bus.publish(sent(channel, 1));
        assert_eq!(bus.inner.channels.len(), 0);
        // Channels abandoned without another update are swept as new ones arrive.
        for _ in 0..200 {
            drop(bus.watch_channel(ChannelId::new(), UserId::new()));
        }
        assert!(
            bus.inner.channels.len() < 130,
            "{} routes kept for 200 abandoned channels",
            bus.inner.channels.len()
        );
    }
}
