//! Group commit for an event store: the command that gets the write turn writes every command
//! queued behind it too, in one transaction, and each command gets its own outcome.
//!
//! A store provides the write of one group ([`GroupWriter`]): typically one transaction with a
//! savepoint per command, so a lost optimistic-concurrency race undoes only that command. This
//! module owns the queue, the turn and the hand-back of outcomes, for every store alike.

use std::future::Future;
use std::sync::{Arc, Mutex};

use cqrs_es::persist::PersistenceError;
use tokio::sync::oneshot;

/// The outcome of one command's append: the log position of its last event.
pub type AppendOutcome = Result<i64, PersistenceError>;

/// Writes one group of queued items. `Ok` holds one outcome per item, in order; `Err` means the
/// transaction failed as a whole and nothing of the group was written.
pub trait GroupWriter<T>: Clone + Send + Sync + 'static {
    fn write_group(
        &self,
        group: &[T],
    ) -> impl Future<Output = Result<Vec<AppendOutcome>, String>> + Send;
}

struct Pending<T> {
    item: T,
    done: oneshot::Sender<AppendOutcome>,
}

/// The queue of appends waiting for the next group and the turn to write one.
pub struct GroupCommit<T> {
    /// Writers of this process take turns here, in arrival order.
    turn: Arc<tokio::sync::Mutex<()>>,
    pending: Arc<Mutex<Vec<Pending<T>>>>,
    /// Items written in one group at most.
    max_group: usize,
}

impl<T> Clone for GroupCommit<T> {
    fn clone(&self) -> Self {
        Self {
            turn: Arc::clone(&self.turn),
            pending: Arc::clone(&self.pending),
            max_group: self.max_group,
        }
    }
}

fn queue_poisoned() -> PersistenceError {
    PersistenceError::UnknownError("the append queue is poisoned".into())
}

/// The task writing a command's group went away before telling its outcome.
fn write_interrupted() -> PersistenceError {
    PersistenceError::UnknownError("the write carrying this command was interrupted".into())
}

impl<T: Send + 'static> GroupCommit<T> {
    pub fn new(max_group: usize) -> Self {
        Self {
            turn: Arc::default(),
            pending: Arc::default(),
            max_group: max_group.max(1),
        }
    }

    /// Takes the write turn for a write outside the queue (e.g. events mirrored from the log),
    /// so that it never contends with a group.
    pub async fn turn(&self) -> tokio::sync::OwnedMutexGuard<()> {
        Arc::clone(&self.turn).lock_owned().await
    }

    /// Queues `item` and returns its outcome once a group carrying it is written: by this
    /// caller, if it gets the turn first, or by whoever had it.
    pub async fn submit<W: GroupWriter<T>>(&self, writer: &W, item: T) -> AppendOutcome {
        let (done, mut outcome) = oneshot::channel();
        self.pending
            .lock()
            .map_err(|_| queue_poisoned())?
            .push(Pending { item, done });
        let turn = Arc::clone(&self.turn).lock_owned().await;
        match outcome.try_recv() {
            Ok(result) => return result,
            Err(oneshot::error::TryRecvError::Closed) => return Err(write_interrupted()),
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        let group: Vec<Pending<T>> = {
            let mut pending = self.pending.lock().map_err(|_| queue_poisoned())?;
            let take = pending.len().min(self.max_group);
            pending.drain(..take).collect()
        };
        // The group is written by its own task holding the turn: a caller that goes away (a
        // client hanging up) must not cut off the other commands' write halfway.
        let writer = writer.clone();
        tokio::spawn(async move {
            let (items, senders): (Vec<T>, Vec<_>) =
                group.into_iter().map(|p| (p.item, p.done)).unzip();
            match writer.write_group(&items).await {
                Ok(outcomes) => {
                    for (done, outcome) in senders.into_iter().zip(outcomes) {
                        let _ = done.send(outcome);
                    }
                }
                Err(error) => {
                    for done in senders {
                        let _ = done.send(Err(PersistenceError::ConnectionError(Box::new(
                            std::io::Error::other(error.clone()),
                        ))));
                    }
                }
            }
            drop(turn);
        });
        outcome.await.unwrap_or_else(|_| Err(write_interrupted()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Records group sizes; item `n` fails alone when `n` is odd, and a group holding 99 fails
    /// whole.
    #[derive(Clone, Default)]
    struct Recorder {
        groups: Arc<Mutex<Vec<usize>>>,
        written: Arc<AtomicUsize>,
    }

    impl GroupWriter<i64> for Recorder {
        async fn write_group(&self, group: &[i64]) -> Result<Vec<AppendOutcome>, String> {
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.groups.lock().expect("groups").push(group.len());
            if group.contains(&99) {
                return Err("the transaction failed".into());
            }
            Ok(group
                .iter()
                .map(|&n| {
                    if n % 2 == 1 {
                        Err(PersistenceError::OptimisticLockError)
                    } else {
                        self.written.fetch_add(1, Ordering::SeqCst);
                        Ok(n)
                    }
                })
                .collect())
        }
    }

    #[tokio::test]
    async fn callers_waiting_together_share_a_group_and_keep_their_own_outcomes() {
        let commit = GroupCommit::new(64);
        let writer = Recorder::default();
        let mut tasks = Vec::new();
        for n in 0..40_i64 {
            let (commit, writer) = (commit.clone(), writer.clone());
            tasks.push(tokio::spawn(
                async move { (n, commit.submit(&writer, n).await) },
            ));
        }
        for task in tasks {
            let (n, outcome) = task.await.expect("task");
            match outcome {
                Ok(position) => assert_eq!(position, n),
                Err(PersistenceError::OptimisticLockError) => assert_eq!(n % 2, 1),
                Err(other) => panic!("{n}: {other}"),
            }
        }
        let groups = writer.groups.lock().expect("groups").clone();
        assert_eq!(groups.iter().sum::<usize>(), 40);
        assert!(groups.len() < 40, "no group held more than one: {groups:?}");
        assert_eq!(writer.written.load(Ordering::SeqCst), 20);
    }

    #[tokio::test]
    async fn a_failed_transaction_fails_every_command_of_its_group_and_no_other() {
        let commit = GroupCommit::new(1);
        let writer = Recorder::default();
        assert!(commit.submit(&writer, 99).await.is_err());
        assert_eq!(commit.submit(&writer, 2).await.ok(), Some(2));
    }
}
