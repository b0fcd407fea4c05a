//! Durability of commits: nothing the writer commits is answered, published to
//! watchers or served to a reader before it is on disk. This is etcd's promise too
//! (an entry is applied, and so visible, only once its WAL record is fsynced).
//!
//! With `Sync::Full`, SQLite commits without syncing (`synchronous=NORMAL`) and the
//! writer hands the committed batch to the `store-sync` thread. That thread
//! `fdatasync`s the `-wal` file and only then publishes the batch: the revision,
//! compaction, lease clocks and watch events, and last the answers. Meanwhile the
//! writer already runs the next batch; one fdatasync covers every batch committed
//! before it started. This is as durable as `synchronous=FULL`, which fsyncs the WAL
//! inside COMMIT:
//! - fdatasync returns once the file's data and the metadata needed to read it back
//!   (its size) are on disk: every frame written before the call, commit frames
//!   included. The page cache belongs to the file, not the descriptor, so syncing
//!   our own descriptor covers SQLite's writes; and since Linux 4.13 a writeback error
//!   is reported on every descriptor open when it happened, so SQLite's checkpoints
//!   syncing first cannot hide one from us.
//! - SQLite keeps every sync `NORMAL` needs for consistency: the WAL before a
//!   checkpoint copies frames into the database (no unsynced frame ever reaches it),
//!   the database after, and the WAL header whenever a new WAL generation starts,
//!   before any of its frames. A generation restarts only once every frame of the old
//!   one has been checkpointed, that is synced.
//! - The `-wal` file's directory entry is synced once when it is opened here; the
//!   writer's connection keeps the file open, so SQLite neither deletes nor recreates
//!   it while the store runs (it does both only when the last connection closes).
//! - Readers run beside the writer (WAL) and can see a batch between its COMMIT and
//!   its fdatasync, so every read waits until what it could have seen is durable
//!   (`Durability::settle`) before it answers.
//!
//! A failed fdatasync is final: the kernel may have dropped the pages it could not
//! write, and a later fdatasync would succeed without them. The batches it covered
//! and everything after fail with `SyncFailed` (their outcome is unknown: a restart's
//! WAL recovery finds what reached the disk), and the store serves nothing more.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use tokio::sync::{Notify, oneshot};

use super::Shared;
use super::error::{Result, StoreError};
use super::types::{Event, TxnResult};

/// How hard the store works to make a commit durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Sync {
    /// fdatasync the WAL after every commit, before the commit is acknowledged or
    /// shown to anyone: no acknowledged write is lost on power loss.
    #[default]
    Full,
    /// fsync only at checkpoints: survives a process crash, not a power cut.
    Normal,
}

/// Batches are numbered in commit order; this tracks how far the writer has
/// committed and how far that is durable.
#[derive(Default)]
pub(super) struct Durability {
    committed: AtomicU64,
    durable: AtomicU64,
    changed: Notify,
    failed: AtomicBool,
}

impl Durability {
    /// Numbers the next batch. The writer calls this right before the COMMIT that
    /// makes the batch visible, so a reader that sees the batch sees its number.
    pub fn number_next(&self) -> u64 {
        self.committed.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The newest batch number. Taken after a read transaction, it covers every
    /// batch that transaction could have seen.
    pub fn seen(&self) -> u64 {
        self.committed.load(Ordering::SeqCst)
    }

    /// Refuses everything once an fsync has failed.
    pub fn check(&self) -> Result<()> {
        if self.failed.load(Ordering::Acquire) {
            Err(StoreError::SyncFailed)
        } else {
            Ok(())
        }
    }

    /// Waits until batch `seen` is durable: at most the fsync in flight and the
    /// next, and nothing when no write is in flight.
    pub async fn settle(&self, seen: u64) -> Result<()> {
        loop {
            let changed = self.changed.notified();
            if self.durable.load(Ordering::Acquire) >= seen {
                return Ok(());
            }
            self.check()?;
            changed.await;
        }
    }

    fn reached(&self, number: u64) {
        self.durable.store(number, Ordering::Release);
        self.changed.notify_waiters();
    }

    fn fail(&self) {
        self.failed.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// The writer is gone (it panicked): batches it numbered but never made durable
    /// never will be, and readers waiting for them must not wait forever.
    pub fn abandon_pending(&self) {
        if self.durable.load(Ordering::Acquire) < self.committed.load(Ordering::Acquire) {
            self.fail();
        }
    }
}

/// What a request did, kept until its batch is durable (or lost).
pub(super) enum Done {
    Txn(oneshot::Sender<Result<TxnResult>>, Result<TxnResult>),
    Revision(oneshot::Sender<Result<i64>>, Result<i64>),
}

impl Done {
    pub fn error(&self) -> Option<&StoreError> {
        match self {
            Done::Txn(_, r) => r.as_ref().err(),
            Done::Revision(_, r) => r.as_ref().err(),
        }
    }

    fn send(self) {
        match self {
            Done::Txn(reply, result) => {
                let _ = reply.send(result);
            }
            Done::Revision(reply, result) => {
                let _ = reply.send(result);
            }
        }
    }

    pub fn fail(self, err: &StoreError) {
        match self {
            Done::Txn(reply, _) => {
                let _ = reply.send(Err(err.same()));
            }
            Done::Revision(reply, _) => {
                let _ = reply.send(Err(err.same()));
            }
        }
    }
}

/// In-memory effects of a batch, applied when it is published.
#[derive(Default)]
pub(super) struct Effects {
    pub granted: Vec<(i64, i64)>,
    pub revoked: Vec<i64>,
    pub compact: Option<i64>,
    pub compacted_through: Option<i64>,
}

/// A committed batch: what to publish and answer once it is durable.
pub(super) struct Committed {
    pub number: u64,
    /// The store revision after the batch.
    pub head: i64,
    pub effects: Effects,
    pub events: Vec<Event>,
    pub done: Vec<Done>,
}

impl Committed {
    fn fail(self, err: &StoreError) {
        self.done.into_iter().for_each(|done| done.fail(err));
    }
}

/// The write-ahead log as the syncer sees it: something to make durable.
pub(super) trait Log: Send + 'static {
    fn sync(&mut self) -> io::Result<()>;
}

/// SQLite's `<db>-wal` file.
pub(super) struct WalFile(File);

impl WalFile {
    /// Opens the log of the database at `db`, which SQLite has already opened in
    /// WAL mode (so the file exists), and makes its directory entry durable.
    pub fn open(db: &Path) -> io::Result<WalFile> {
        let mut name = db.as_os_str().to_owned();
        name.push("-wal");
        let wal = File::open(name)?;
        let dir = match db.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()?;
        Ok(WalFile(wal))
    }
}

impl Log for WalFile {
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

/// The `store-sync` thread and its queue of committed batches.
pub(super) struct Syncer {
    shared: Arc<Shared>,
    queue: mpsc::Sender<Committed>,
    thread: std::thread::JoinHandle<()>,
}

impl Syncer {
    pub fn spawn(shared: Arc<Shared>, log: Box<dyn Log>) -> io::Result<Syncer> {
        let (queue, committed) = mpsc::channel();
        let thread = std::thread::Builder::new().name("store-sync".into()).spawn({
            let shared = shared.clone();
            move || sync(&shared, log, committed)
        })?;
        Ok(Syncer { shared, queue, thread })
    }

    /// Queues a committed batch for its sync.
    pub fn send(&self, batch: Committed) {
        if let Err(mpsc::SendError(batch)) = self.queue.send(batch) {
            // The thread is gone (it panicked): nothing can be made durable any more.
            self.shared.durability.fail();
            batch.fail(&StoreError::SyncFailed);
        }
    }

    /// Lets the thread finish the batches it has, and waits for it.
    pub fn stop(self) {
        drop(self.queue);
        let _ = self.thread.join();
    }
}

/// Syncs the log for every batch committed since the last sync, then publishes
/// them in commit order.
fn sync(shared: &Shared, mut log: Box<dyn Log>, committed: mpsc::Receiver<Committed>) {
    while let Ok(first) = committed.recv() {
        // Taken before the sync starts: all of them were committed (written to the
        // log) before it, so it covers them.
        let mut ready = vec![first];
        ready.extend(committed.try_iter());
        let synced = shared.durability.check().and_then(|()| {
            log.sync().map_err(|err| {
                tracing::error!(%err, "fsync of the store's write-ahead log failed; refusing all requests until restarted");
                shared.durability.fail();
                StoreError::SyncFailed
            })
        });
        match synced {
            Ok(()) => ready.into_iter().for_each(|batch| publish(shared, batch)),
            Err(err) => ready.into_iter().for_each(|batch| batch.fail(&err)),
        }
    }
}

/// Makes a durable batch visible: the revision, compaction, lease clocks and watch
/// events, then the answers.
pub(super) fn publish(shared: &Shared, batch: Committed) {
    shared.hub.publish(batch.head, batch.events);
    if let Some(compact) = batch.effects.compact {
        shared.compact.store(compact, Ordering::Release);
        shared.compactor.notify_one();
    }
    if let Some(through) = batch.effects.compacted_through {
        shared.compacted_through.send_replace(through);
    }
    for (id, ttl) in batch.effects.granted {
        shared.lessor.insert(id, ttl);
    }
    for id in batch.effects.revoked {
        shared.lessor.remove(id);
    }
    shared.durability.reached(batch.number);
    batch.done.into_iter().for_each(Done::send);
}
