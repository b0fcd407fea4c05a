//! Giving memory back after a burst. A range of 10,000 keys, a watch fan-out or a
//! write storm fill SQLite's page caches and leave freed heap in the allocator, so
//! the process would stay at its peak size. Once the store has gone quiet after a
//! burst, this empties the connections' page caches and hands free heap pages back
//! to the system. An idle store does nothing here: no timer runs until the next
//! burst.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::writer::Request;
use super::{Store, lock};

/// Operations that make a burst worth cleaning up after.
const BURST_OPS: u64 = 1000;
/// How long the store must be quiet before it counts as idle.
const QUIET: Duration = Duration::from_millis(500);

/// Counts the store's operations and wakes the cleaner every `BURST_OPS` of them.
#[derive(Default)]
pub(super) struct Activity {
    ops: AtomicU64,
    burst: Notify,
}

impl Activity {
    pub fn record(&self) {
        if self.ops.fetch_add(1, Ordering::Relaxed) % BURST_OPS == BURST_OPS - 1 {
            self.burst.notify_one();
        }
    }

    fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }
}

impl Store {
    /// Releases memory whenever the store goes quiet after `BURST_OPS` operations,
    /// until `shutdown`.
    pub(super) async fn release_memory_after_bursts(&self, shutdown: CancellationToken) {
        let activity = &self.shared.activity;
        let mut released_at = activity.ops();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = activity.burst.notified() => {}
            }
            // A wake-up left over from the burst already cleaned up after.
            if activity.ops().wrapping_sub(released_at) < BURST_OPS {
                continue;
            }
            loop {
                let before = activity.ops();
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(QUIET) => {}
                }
                if activity.ops() == before {
                    break;
                }
            }
            self.release_memory().await;
            released_at = activity.ops();
        }
    }

    async fn release_memory(&self) {
        if let Err(err) = self.submit(Request::ReleaseMemory).await {
            tracing::debug!(%err, "releasing the writer's page cache failed");
        }
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for conn in lock(&shared.readers).iter() {
                if let Err(err) = conn.execute_batch("PRAGMA shrink_memory") {
                    tracing::debug!(%err, "releasing a reader's page cache failed");
                }
            }
            trim_heap();
        })
        .await;
    }
}

/// Returns the allocator's free pages, in every arena, to the system.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only walks glibc's own heap state
    // under the arenas' locks.
    unsafe {
        libc::malloc_trim(0);
    }
}
