//! Watches. The writer hands every committed batch of events to a broadcast hub;
//! a watcher that starts in the past (or falls behind the hub) first replays history
//! from the database, then follows the hub. Nothing polls: an idle watcher sleeps on
//! the hub. A watcher whose history has been compacted away gets `Compacted` and must
//! relist; it never silently skips events.

use std::sync::Arc;
use tokio::sync::broadcast;

use super::Store;
use super::error::{Result, StoreError};
use super::sqlite;
use super::types::{Event, KeyRange};

/// The events of one commit, possibly spanning several revisions, ending at `revision`.
#[derive(Debug)]
pub struct Batch {
    pub revision: i64,
    pub events: Vec<Event>,
}

/// Batches the hub keeps for watchers that are behind before they must replay.
pub const HUB_CAPACITY: usize = 1024;

/// Revisions read from the database per replay step.
const REPLAY_WINDOW: i64 = 1024;

pub struct Watcher {
    store: Store,
    range: KeyRange,
    /// The first revision not yet delivered.
    next: i64,
    hub: broadcast::Receiver<Arc<Batch>>,
    replaying: bool,
}

impl Watcher {
    pub(super) fn new(store: Store, range: KeyRange, start_revision: i64) -> Result<Self> {
        // Subscribe before reading the head: a batch committed in between is then
        // both in the hub and at most the head, and is skipped by revision.
        let hub = store.shared.hub.subscribe();
        let head = store.revision();
        let next = if start_revision <= 0 { head + 1 } else { start_revision };
        let compact = store.compact_revision();
        if next < compact {
            return Err(StoreError::Compacted {
                compact_revision: compact,
            });
        }
        Ok(Watcher {
            store,
            range,
            next,
            hub,
            replaying: next <= head,
        })
    }

    /// The revision the next event will have at least.
    pub fn next_revision(&self) -> i64 {
        self.next
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
            match self.hub.recv().await {
                Ok(batch) => {
                    if batch.revision < self.next {
                        continue;
                    }
                    let events: Vec<Event> = batch
                        .events
                        .iter()
                        .filter(|e| e.kv.mod_revision >= self.next && self.range.contains(&e.kv.key))
                        .cloned()
                        .collect();
                    self.next = batch.revision + 1;
                    if !events.is_empty() {
                        return Ok(events);
                    }
                }
                // Fell behind the hub: the database has everything it missed.
                Err(broadcast::error::RecvError::Lagged(_)) => self.replaying = true,
                Err(broadcast::error::RecvError::Closed) => return Err(StoreError::Stopped),
            }
        }
    }

    /// Reads history from `next` onwards until some events turn up or the head is
    /// reached. Returns the events, the last revision covered and whether that was
    /// the head.
    async fn replay(&self) -> Result<(Vec<Event>, i64, bool)> {
        let range = self.range.clone();
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
