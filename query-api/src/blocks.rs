//! Whom each user has blocked, as the catalog read model says, kept a moment in memory: a
//! message resolves its author's words once per reader, and a live subscription checks every
//! update, so the lists must not cost a read each time.
//!
//! A list is read again once it is older than its lifetime, [`FRESHNESS`] less up to half of it
//! (spread by user, so that lists read together are not all read again together). That read
//! happens in the background: whoever asks meanwhile gets the list as it was, so a delivery
//! never waits on the read model for a list it already had. The instance that takes a block or
//! an unblock forgets the caller's list at once (the next ask reads it, and waits for it, and
//! every subscription on the instance asks again before its next update), so a block holds from
//! then on there, and on every other instance within [`FRESHNESS`], one read and a second (a
//! subscription takes its list from the shared ones every [`HELD`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aether_domain::UserId;
use aether_projections::read::ReadModels;
use aether_projections::rows::MessageRow;

use crate::error::ApiResult;

/// How long a list read from the read model is used before it is read again: with every
/// subscriber checking each update, 1,000 subscribers read 200 lists a second.
pub const FRESHNESS: Duration = Duration::from_secs(5);

/// Lists kept at most; past that, the stale ones are dropped (and all, if none is).
const MAX_LISTS: usize = 100_000;

/// Whom one user blocks.
pub type BlockList = Arc<HashSet<UserId>>;

#[derive(Debug)]
struct Kept {
    read_at: Instant,
    list: BlockList,
    /// A read of a newer list is under way.
    refreshing: bool,
}

#[derive(Debug, Default)]
pub struct BlockLists {
    lists: Mutex<HashMap<UserId, Kept>>,
    /// One more each time a list is forgotten: a subscription holding a list of an older
    /// generation reads it again.
    generation: AtomicU64,
}

/// How long `user`'s list is used before it is read again: [`FRESHNESS`] less a part of its
/// half that depends on the user.
fn lifetime(user: UserId) -> Duration {
    let spread = (user.as_uuid().as_u128() % 1_024) as u32;
    FRESHNESS - (FRESHNESS / 2) * spread / 1_024
}

impl BlockLists {
    /// Whom `user` blocks: as last read, and read again in the background when older than its
    /// lifetime; read now only when this instance has none (never read, or forgotten).
    pub async fn of(self: &Arc<Self>, read: &ReadModels, user: UserId) -> ApiResult<BlockList> {
        let stale = {
            let mut lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
            match lists.get_mut(&user) {
                Some(kept) if kept.read_at.elapsed() < lifetime(user) => {
                    return Ok(kept.list.clone())
                }
                Some(kept) => {
                    let start = !kept.refreshing;
                    kept.refreshing = true;
                    Some((kept.list.clone(), start))
                }
                None => None,
            }
        };
        match stale {
            Some((list, start_refresh)) => {
                if start_refresh {
                    let (lists, read) = (self.clone(), read.clone());
                    tokio::spawn(async move {
                        if let Err(error) = lists.read(&read, user).await {
                            tracing::warn!(?error, "cannot read a block list again");
                            lists.refresh_failed(user);
                        }
                    });
                }
                Ok(list)
            }
            None => self.read(read, user).await,
        }
    }

    /// Reads `user`'s list from the read model and keeps it, unless a list was forgotten while
    /// it was being read: it may predate the block that forgot it (a background read begun
    /// before the block), so it answers this ask but is not kept.
    async fn read(&self, read: &ReadModels, user: UserId) -> ApiResult<BlockList> {
        let began = self.generation();
        let list: BlockList = Arc::new(read.blocked_by(user).await?.into_iter().collect());
        let mut lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        if self.generation() != began {
            if let Some(kept) = lists.get_mut(&user) {
                kept.refreshing = false;
            }
            return Ok(list);
        }
        if lists.len() >= MAX_LISTS {
            lists.retain(|user, kept| kept.read_at.elapsed() < lifetime(*user));
            if lists.len() >= MAX_LISTS {
                lists.clear();
            }
        }
        lists.insert(
            user,
            Kept {
                read_at: Instant::now(),
                list: list.clone(),
                refreshing: false,
            },
        );
        Ok(list)
    }

    /// A background read failed: the next ask tries again.
    fn refresh_failed(&self, user: UserId) {
        if let Some(kept) = self
            .lists
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&user)
        {
            kept.refreshing = false;
        }
    }

    /// Drops `user`'s list: they just blocked or unblocked someone.
    pub fn forget(&self, user: UserId) {
        let mut lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        lists.remove(&user);
        // Under the lock: a read that keeps its list checks the generation under it too.
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// Whether `list` hides the words of a message by `author` (forwarding one by
/// `original_author`): someone on the list wrote them.
pub fn hides(list: &HashSet<UserId>, author: UserId, original_author: Option<UserId>) -> bool {
    !list.is_empty()
        && (list.contains(&author) || original_author.is_some_and(|a| list.contains(&a)))
}

/// Whether an update of `message` must be resolved for this reader alone rather than shared
/// with everyone: it shows words `list` hides, or may quote them (a reply; the quoted
/// message's author is known only when resolving).
pub fn personal(list: &HashSet<UserId>, message: &MessageRow) -> bool {
    hides_row(list, message) || (!list.is_empty() && message.reply_to_id.is_some())
}

/// [`hides`] for a message as the read model has it.
pub fn hides_row(list: &HashSet<UserId>, message: &MessageRow) -> bool {
    let original = message.forwarded_from.map(|origin| origin.author_id);
    hides(list, message.author_id, original)
}

/// How long a subscription uses the list it took from the shared lists before it asks them again.
const HELD: Duration = Duration::from_secs(1);

/// One subscriber's list, kept by their subscription and taken again from the shared lists when
/// older than [`HELD`] (or when a list was forgotten): checking an update costs no lock.
pub(crate) struct ViewerBlocks {
    user: UserId,
    lists: Arc<BlockLists>,
    read: ReadModels,
    /// The list, when it was taken, and the lists' generation then.
    held: Option<(Instant, u64, BlockList)>,
}

impl ViewerBlocks {
    pub(crate) fn new(user: UserId, lists: Arc<BlockLists>, read: ReadModels) -> Self {
        Self {
            user,
            lists,
            read,
            held: None,
        }
    }

    /// Whether an update of `message` must be resolved for this subscriber alone.
    pub(crate) async fn personal(&mut self, message: &MessageRow) -> ApiResult<bool> {
        let list = self.take().await?;
        Ok(personal(&list, message))
    }

    /// The subscriber's list: the one held, or taken again from the shared lists when older than
    /// [`HELD`] or a list was forgotten since.
    pub(crate) async fn take(&mut self) -> ApiResult<BlockList> {
        let generation = self.lists.generation();
        match &self.held {
            Some((taken_at, seen, list)) if *seen == generation && taken_at.elapsed() < HELD => {
                Ok(list.clone())
            }
            _ => {
                let list = self.lists.of(&self.read, self.user).await?;
                self.held = Some((Instant::now(), generation, list.clone()));
                Ok(list)
            }
        }
    }
}
