//! Updates (channel events, typing signals, presence changes) serialized once per audience. An
//! audience is every subscriber of one edge whose subscription has the same document, operation
//! and payload-shaping variables: what each of them is sent for an update is the same bytes
//! (nothing reachable from these updates depends on who asks), so the first subscriber to need
//! an update's payload resolves and serializes it, the others of its audience wait for that and
//! share it, and each connection adds only its own framing (the subscription id).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aether_query_api::TapKey;
use futures::future::{BoxFuture, Shared};
use futures::FutureExt;

/// The default of [`crate::http::HttpLimits::shared_payloads`].
pub const DEFAULT_SHARED_PAYLOADS: usize = 4_096;

/// One update's payload for one audience.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    audience: Arc<str>,
    update: TapKey,
}

/// A payload being serialized, or serialized. Whichever subscriber of the audience polls it
/// drives it, so one whose connection is stuck sending holds up nobody else.
type Slot = Shared<BoxFuture<'static, Arc<str>>>;

#[derive(Default)]
struct Payloads {
    slots: HashMap<Key, Slot>,
    /// Keys oldest first: the oldest payload goes when the cache is full. Subscribers receive
    /// an event within moments of each other, so only the newest few events are ever shared.
    order: VecDeque<Key>,
}

/// The payloads an edge instance has serialized recently, shared by every connection.
pub struct Audiences {
    payloads: Mutex<Payloads>,
    capacity: usize,
    serialized: AtomicU64,
    delivered: AtomicU64,
}

/// How much serializing the audiences have saved, since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AudienceStats {
    /// Event payloads resolved and serialized (once per audience and event).
    pub serialized: u64,
    /// Event payloads sent to subscribers (once per subscriber and event).
    pub delivered: u64,
}

impl std::fmt::Debug for Audiences {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audiences")
            .field("capacity", &self.capacity)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Audiences {
    /// A cache holding the payloads of at most `capacity` (audience, event) pairs.
    pub fn new(capacity: usize) -> Self {
        Self {
            payloads: Mutex::default(),
            capacity: capacity.max(1),
            serialized: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> AudienceStats {
        AudienceStats {
            serialized: self.serialized.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
        }
    }

    /// The payload of `update` for `audience`: serialized by `serialize` if no subscriber of
    /// the audience has asked for it yet, otherwise the one already made (waiting for it while
    /// another subscriber makes it).
    pub async fn payload<F, Fut>(
        &self,
        audience: &Arc<str>,
        update: TapKey,
        serialize: F,
    ) -> Arc<str>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = String> + Send + 'static,
    {
        let key = Key {
            audience: audience.clone(),
            update,
        };
        let payload = self.slot(key, serialize).await;
        self.delivered.fetch_add(1, Ordering::Relaxed);
        payload
    }

    fn slot<F, Fut>(&self, key: Key, serialize: F) -> Slot
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = String> + Send + 'static,
    {
        let mut payloads = self
            .payloads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(slot) = payloads.slots.get(&key) {
            return slot.clone();
        }
        while payloads.order.len() >= self.capacity {
            let Some(oldest) = payloads.order.pop_front() else {
                break;
            };
            payloads.slots.remove(&oldest);
        }
        self.serialized.fetch_add(1, Ordering::Relaxed);
        let serializing = serialize();
        let slot = async move { Arc::<str>::from(serializing.await) }
            .boxed()
            .shared();
        payloads.slots.insert(key.clone(), slot.clone());
        payloads.order.push_back(key);
        slot
    }

    /// How many payloads the cache holds now.
    pub fn held(&self) -> usize {
        self.payloads
            .lock()
            .map(|payloads| payloads.slots.len())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use aether_domain::ChannelId;

    use super::*;

    fn place() -> ChannelId {
        ChannelId::new()
    }

    fn event(place: ChannelId, seq: i64) -> TapKey {
        TapKey::Channel { place, seq }
    }

    #[tokio::test]
    async fn one_audience_serializes_each_event_once() {
        let audiences = Arc::new(Audiences::new(16));
        let audience: Arc<str> = Arc::from("subscription { channelEvents }");
        let channel = place();
        let calls = Arc::new(AtomicUsize::new(0));
        let mut subscribers = Vec::new();
        for _ in 0..50 {
            let (audiences, audience, calls) = (audiences.clone(), audience.clone(), calls.clone());
            subscribers.push(tokio::spawn(async move {
                audiences
                    .payload(&audience, event(channel, 7), || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        // Slow enough that the other subscribers arrive while it runs.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        "{\"data\":7}".to_owned()
                    })
                    .await
            }));
        }
        for subscriber in subscribers {
            assert_eq!(&*subscriber.await.unwrap(), "{\"data\":7}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            audiences.stats(),
            AudienceStats {
                serialized: 1,
                delivered: 50
            }
        );
    }

    #[tokio::test]
    async fn a_subscriber_that_stops_waiting_holds_up_nobody() {
        let audiences = Arc::new(Audiences::new(16));
        let audience: Arc<str> = Arc::from("a");
        let channel = place();
        let slow = || async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            "shared".to_owned()
        };
        // The first subscriber starts serializing, then its connection stops polling it (it is
        // stuck sending to its client) without giving up.
        let mut first = Box::pin(audiences.payload(&audience, event(channel, 1), slow));
        assert!(futures::poll!(first.as_mut()).is_pending());
        let second = audiences.payload(&audience, event(channel, 1), || async {
            "other".to_owned()
        });
        let second = tokio::time::timeout(Duration::from_secs(5), second).await;
        assert_eq!(second.as_deref().ok(), Some("shared"));
        assert_eq!(&*first.await, "shared");
        assert_eq!(audiences.stats().serialized, 1);
    }

    #[tokio::test]
    async fn audiences_events_and_places_are_kept_apart() {
        let audiences = Audiences::new(16);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let (one, two) = (place(), place());
        let get = |audience: &Arc<str>, place, seq, text: &str| {
            let text = text.to_owned();
            let audience = audience.clone();
            let audiences = &audiences;
            async move {
                audiences
                    .payload(&audience, event(place, seq), || async move { text })
                    .await
            }
        };
        assert_eq!(&*get(&a, one, 1, "a1").await, "a1");
        assert_eq!(&*get(&b, one, 1, "b1").await, "b1");
        assert_eq!(&*get(&a, two, 1, "a-two-1").await, "a-two-1");
        assert_eq!(&*get(&a, one, 2, "a2").await, "a2");
        // Asked again: the first payload, not a new one.
        assert_eq!(&*get(&a, one, 1, "changed").await, "a1");
        assert_eq!(audiences.stats().serialized, 4);
    }

    #[tokio::test]
    async fn the_oldest_payloads_go_when_the_cache_is_full() {
        let audiences = Audiences::new(3);
        let audience: Arc<str> = Arc::from("a");
        let channel = place();
        for seq in 1..=5 {
            audiences
                .payload(
                    &audience,
                    event(channel, seq),
                    || async move { seq.to_string() },
                )
                .await;
        }
        assert_eq!(audiences.held(), 3);
        // Event 5 is still shared; event 1 was dropped and is serialized again.
        let again = audiences
            .payload(&audience, event(channel, 5), || async { "new".to_owned() })
            .await;
        assert_eq!(&*again, "5");
        let again = audiences
            .payload(&audience, event(channel, 1), || async { "new".to_owned() })
            .await;
        assert_eq!(&*again, "new");
        assert_eq!(audiences.held(), 3);
    }
}
