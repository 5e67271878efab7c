//! Whom each user has blocked, as the catalog read model says, kept a moment in memory: a
//! message resolves its author's words once per reader, and a live subscription checks every
//! update, so the lists must not cost a read each time.
//!
//! A list is read again once it is older than [`FRESHNESS`]; the instance that takes a block
//! or an unblock forgets the caller's list at once (and every subscription on it reads its
//! list again before its next update), so it holds from then on there, and on every other
//! instance within [`FRESHNESS`].

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

#[derive(Debug, Default)]
pub struct BlockLists {
    lists: Mutex<HashMap<UserId, (Instant, BlockList)>>,
    /// One more each time a list is forgotten: a subscription holding a list of an older
    /// generation reads it again.
    generation: AtomicU64,
}

impl BlockLists {
    /// Whom `user` blocks, no older than [`FRESHNESS`].
    pub async fn of(&self, read: &ReadModels, user: UserId) -> ApiResult<BlockList> {
        if let Some(list) = self.fresh(user) {
            return Ok(list);
        }
        let list: BlockList = Arc::new(read.blocked_by(user).await?.into_iter().collect());
        let mut lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        if lists.len() >= MAX_LISTS {
            lists.retain(|_, (read_at, _)| read_at.elapsed() < FRESHNESS);
            if lists.len() >= MAX_LISTS {
                lists.clear();
            }
        }
        lists.insert(user, (Instant::now(), list.clone()));
        Ok(list)
    }

    fn fresh(&self, user: UserId) -> Option<BlockList> {
        let lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        let (read_at, list) = lists.get(&user)?;
        (read_at.elapsed() < FRESHNESS).then(|| list.clone())
    }

    /// Drops `user`'s list: they just blocked or unblocked someone.
    pub fn forget(&self, user: UserId) {
        self.lists
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&user);
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

/// One subscriber's list, kept by their subscription and refreshed from the shared lists when
/// older than [`FRESHNESS`]: checking an update costs no lock.
pub(crate) struct ViewerBlocks {
    user: UserId,
    lists: Arc<BlockLists>,
    read: ReadModels,
    /// The list, when it was read, and the lists' generation then.
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
        let generation = self.lists.generation();
        let list = match &self.held {
            Some((read_at, seen, list)) if *seen == generation && read_at.elapsed() < FRESHNESS => {
                list.clone()
            }
            _ => {
                let list = self.lists.of(&self.read, self.user).await?;
                self.held = Some((Instant::now(), generation, list.clone()));
                list
            }
        };
        Ok(personal(&list, message))
    }
}
