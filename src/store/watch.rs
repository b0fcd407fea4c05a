//! Watches. The hub hands every durable batch of events only to the watchers whose
//! range it touches, so a write wakes only the watchers that care about it. A watcher
//! that starts in the past (or falls behind) first replays history from the database,
//! then follows its inbox. Nothing polls: an idle watcher sleeps on its inbox. A
//! watcher whose history has been compacted away gets `Compacted` and must relist;
//! it never silently skips events.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

use super::error::{Result, StoreError};
use super::types::{Event, KeyRange};
use super::{Store, lock, sqlite};

/// The events of one commit, possibly spanning several revisions, ending at `revision`.
#[derive(Debug)]
struct Batch {
    revision: i64,
    events: Vec<Event>,
}

/// Batches an inbox holds for a watcher that is behind; past that it drops them and
/// the watcher replays from the database.
pub const INBOX_CAPACITY: usize = 1024;

/// Revisions read from the database per replay step.
const REPLAY_WINDOW: i64 = 1024;

/// The store's published revision and the registered watchers. The revision moves
/// under the watchers' lock, so a watcher registering sees each batch either in its
/// inbox or below the revision it reads.
pub(super) struct Hub {
    head: AtomicI64,
    inboxes: Mutex<Vec<Arc<Inbox>>>,
}

impl Hub {
    pub fn new(head: i64) -> Hub {
        Hub {
            head: AtomicI64::new(head),
            inboxes: Mutex::default(),
        }
    }

    /// The newest published (durable) revision.
    pub fn head(&self) -> i64 {
        self.head.load(Ordering::Acquire)
    }

    /// Publishes `revision` as the store's head, and hands `events` (the batch that
    /// brought it) to every watcher whose range holds one of their keys.
    pub fn publish(&self, revision: i64, events: Vec<Event>) {
        let inboxes = lock(&self.inboxes);
        if !events.is_empty() {
            let batch = Arc::new(Batch { revision, events });
            for inbox in inboxes.iter() {
                if batch.events.iter().any(|e| inbox.range.contains(&e.kv.key)) {
                    inbox.push(&batch);
                }
            }
        }
        self.head.store(revision, Ordering::Release);
    }

    /// Registers a watcher of `range`; returns its inbox and the revision published
    /// when it registered (everything after it will reach the inbox).
    fn register(&self, range: KeyRange) -> (Arc<Inbox>, i64) {
        let inbox = Arc::new(Inbox {
            range,
            queue: Mutex::default(),
            ready: Notify::new(),
        });
        let mut inboxes = lock(&self.inboxes);
        inboxes.push(inbox.clone());
        (inbox, self.head())
    }

    fn unregister(&self, inbox: &Arc<Inbox>) {
        lock(&self.inboxes).retain(|i| !Arc::ptr_eq(i, inbox));
    }
}

/// Batches waiting for one watcher.
struct Inbox {
    range: KeyRange,
    queue: Mutex<Queue>,
    ready: Notify,
}

#[derive(Default)]
struct Queue {
    batches: VecDeque<Arc<Batch>>,
    /// Batches were dropped: the watcher must replay.
    overflowed: bool,
}

impl Inbox {
    fn push(&self, batch: &Arc<Batch>) {
        let mut queue = lock(&self.queue);
        if queue.batches.len() >= INBOX_CAPACITY {
            queue.batches.clear();
            queue.overflowed = true;
        } else if !queue.overflowed {
            queue.batches.push_back(batch.clone());
        }
        drop(queue);
        self.ready.notify_one();
    }
}

pub struct Watcher {
    store: Store,
    inbox: Arc<Inbox>,
    /// The first revision not yet delivered.
    next: i64,
    replaying: bool,
}

impl Watcher {
    pub(super) fn new(store: Store, range: KeyRange, start_revision: i64) -> Result<Self> {
        let (inbox, head) = store.shared.hub.register(range);
        let next = if start_revision <= 0 { head + 1 } else { start_revision };
        // Built before the compaction check so that a refused watcher unregisters
        // its inbox as it drops.
        let watcher = Watcher {
            next,
            replaying: next <= head,
            inbox,
            store,
        };
        let compact = watcher.store.compact_revision();
        if next < compact {
            return Err(StoreError::Compacted {
                compact_revision: compact,
            });
        }
        Ok(watcher)
    }

    /// The revision the next event will have at least.
    pub fn next_revision(&self) -> i64 {
        if self.replaying {
            return self.next;
        }
        // Read before the inbox: every batch up to `head` is in it by then.
        let head = self.store.revision();
        let queue = lock(&self.inbox.queue);
        if queue.batches.is_empty() && !queue.overflowed {
            self.next.max(head + 1)
        } else {
            self.next
        }
    }

    /// Waits for the next events in the range, oldest first.
    pub async fn next(&mut self) -> Result<Vec<Event>> {
        loop {
            if self.replaying {
                let (events, through, caught_up) = self.replay().await?;
                self.next = through + 1;
                self.replaying = !caught_up;
                if !events.is_empty() {
                    return Ok(events);
                }
                continue;
            }
            let (batches, overflowed) = {
                let mut queue = lock(&self.inbox.queue);
                (
                    std::mem::take(&mut queue.batches),
                    std::mem::take(&mut queue.overflowed),
                )
            };
            if overflowed {
                // The database has everything the inbox dropped.
                self.replaying = true;
                continue;
            }
            if batches.is_empty() {
                self.inbox.ready.notified().await;
                continue;
            }
            let mut events = Vec::new();
            for batch in &batches {
                if batch.revision < self.next {
                    continue;
                }
                events.extend(
                    batch
                        .events
                        .iter()
                        .filter(|e| e.kv.mod_revision >= self.next && self.inbox.range.contains(&e.kv.key))
                        .cloned(),
                );
                self.next = batch.revision + 1;
            }
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }

    /// Reads history from `next` onwards until some events turn up or the head is
    /// reached. Returns the events, the last revision covered and whether that was
    /// the head.
    async fn replay(&self) -> Result<(Vec<Event>, i64, bool)> {
        let range = self.inbox.range.clone();
        let from = self.next;
        self.store
            .read(move |conn| {
                let (head, compact) = sqlite::head(conn)?;
                if from < compact {
                    return Err(StoreError::Compacted {
                        compact_revision: compact,
                    });
                }
                let mut start = from;
                while start <= head {
                    let end = (start + REPLAY_WINDOW - 1).min(head);
                    let events = sqlite::events(conn, &range, start, end)?;
                    if !events.is_empty() {
                        return Ok((events, end, end >= head));
                    }
                    start = end + 1;
                }
                Ok((Vec::new(), head.max(from - 1), true))
            })
            .await
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.store.shared.hub.unregister(&self.inbox);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Options, Sync};

    #[tokio::test]
    async fn a_write_reaches_only_the_watchers_of_its_range() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db"), Options { sync: Sync::Normal }).unwrap();
        let mut a = store.watch(KeyRange::prefix("/a/"), 0).unwrap();
        let b = store.watch(KeyRange::prefix("/b/"), 0).unwrap();
        store.put("/a/1", "x").await.unwrap();

        assert_eq!(lock(&a.inbox.queue).batches.len(), 1);
        assert!(lock(&b.inbox.queue).batches.is_empty(), "b's watcher is not woken");
        // Still, b has seen everything up to the head: its progress moves on.
        assert_eq!(b.next_revision(), store.revision() + 1);
        assert_eq!(a.next().await.unwrap()[0].kv.key, b"/a/1");

        drop(b);
        assert_eq!(
            lock(&store.shared.hub.inboxes).len(),
            1,
            "a dropped watcher unregisters"
        );
    }
}
