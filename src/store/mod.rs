//! The revisioned key-value store every other part stands on: etcd's data model
//! (global revisions, per-key create/mod revision and version, leases, watches from
//! any uncompacted revision, compaction) on an embedded SQLite database.
//!
//! One writer thread commits in groups (see `writer`) and a sync thread makes each
//! commit durable before it is answered or published (see `durable`); reads run on
//! pooled read connections in parallel with both (WAL) and never serve a commit
//! before it is durable. Watchers are fed from the commit path, so an idle store
//! does no queries and no disk writes. External backends (Postgres,
//! a real etcd) will implement the same surface when multi-server HA arrives.

mod apply;
mod durable;
mod error;
mod lease;
mod memory;
pub mod snapshot;
mod sqlite;
mod types;
mod watch;
mod writer;

pub use durable::Sync;
pub use error::{Result, StoreError};
pub use types::*;
pub use watch::Watcher;

use rusqlite::Connection;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::{Notify, oneshot, watch as tokio_watch};
use tokio_util::sync::CancellationToken;

use durable::{Durability, Log, WalFile};
use lease::Lessor;
use memory::Activity;
use watch::Hub;
use writer::{Request, Writer};

/// Largest key plus value accepted in one put (etcd's default `--max-request-bytes`).
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;
/// Most operations in one transaction branch (etcd's default `--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;
/// Revisions physically compacted per writer request.
const COMPACT_STEP: i64 = 1000;
/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 4;

#[derive(Debug, Clone)]
pub struct Options {
    pub sync: Sync,
}

impl Default for Options {
    fn default() -> Self {
        Options { sync: Sync::Full }
    }
}

/// A handle to the open store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

/// State shared by the handles, the writer thread and the watchers.
struct Shared {
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<Request>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    compact: AtomicI64,
    /// How far commits are durable; reads wait for what they saw.
    durability: Durability,
    /// Reads and writes served, to clean up after bursts.
    activity: Activity,
    compacted_through: tokio_watch::Sender<i64>,
    /// Woken when the compaction revision moves.
    compactor: Notify,
    hub: Hub,
    lessor: Lessor,
    cluster_id: u64,
    member_id: u64,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and starts the writer.
    pub fn open(path: &Path, options: Options) -> Result<Store> {
        Self::open_with(path, options, |wal| Box::new(wal))
    }

    /// `open`, with `log` deciding what the sync thread syncs (tests wrap the WAL
    /// file to make its fsync fail).
    fn open_with(path: &Path, options: Options, log: impl FnOnce(WalFile) -> Box<dyn Log>) -> Result<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut conn = sqlite::open(path, false)?;
        sqlite::migrate(&mut conn)?;
        let log = match options.sync {
            Sync::Full => Some(log(WalFile::open(path)?)),
            Sync::Normal => None,
        };
        let (head, compact) = sqlite::head(&conn)?;
        let compacted_through = sqlite::meta(&conn, "compacted_through")?;
        let lessor = Lessor::default();
        for (id, ttl) in sqlite::leases(&conn)? {
            lessor.insert(id, ttl);
        }
        let cluster_id = sqlite::meta(&conn, "cluster_id")? as u64;
        let member_id = sqlite::meta(&conn, "member_id")? as u64;

        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            writer: Mutex::new(None),
            writer_thread: Mutex::new(None),
            readers: Mutex::new(Vec::new()),
            compact: AtomicI64::new(compact),
            durability: Durability::default(),
            activity: Activity::default(),
            compacted_through: tokio_watch::Sender::new(compacted_through),
            compactor: Notify::new(),
            hub: Hub::new(head),
            lessor,
            cluster_id,
            member_id,
        });
        let writer = Writer::new(conn, shared.clone(), log)?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(rx))?;
        *lock(&shared.writer) = Some(tx);
        *lock(&shared.writer_thread) = Some(thread);
        Ok(Store { shared })
    }

    /// Stops accepting writes, lets the writer finish what is queued and checkpoint,
    /// and waits for it. Blocking; call from a blocking context.
    pub fn close(&self) {
        lock(&self.shared.writer).take();
        lock(&self.shared.readers).clear();
        if let Some(thread) = lock(&self.shared.writer_thread).take() {
            let _ = thread.join();
        }
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The newest durable (published) revision.
    pub fn revision(&self) -> i64 {
        self.shared.hub.head()
    }

    pub fn compact_revision(&self) -> i64 {
        self.shared.compact.load(Ordering::Acquire)
    }

    pub fn cluster_id(&self) -> u64 {
        self.shared.cluster_id
    }

    pub fn member_id(&self) -> u64 {
        self.shared.member_id
    }

    /// Runs a read on a pooled connection inside one read transaction (snapshot),
    /// and answers once everything that snapshot could hold is durable.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.shared.activity.record();
        let shared = self.shared.clone();
        let (result, seen) = tokio::task::spawn_blocking(move || {
            let conn = lock(&shared.readers).pop();
            let mut conn = match conn {
                Some(c) => c,
                None => sqlite::open(&shared.path, false)?,
            };
            let result = (|| {
                let tx = conn.transaction()?;
                let out = f(&tx);
                tx.finish()?;
                out
            })();
            // Taken after the snapshot: covers every batch it can contain.
            let seen = shared.durability.seen();
            let mut readers = lock(&shared.readers);
            if readers.len() < MAX_IDLE_READERS && lock(&shared.writer).is_some() {
                readers.push(conn);
            }
            Ok::<_, StoreError>((result, seen))
        })
        .await
        .map_err(|e| StoreError::Database(format!("read task failed: {e}")))??;
        self.shared.durability.settle(seen).await?;
        result
    }

    async fn submit<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Request) -> Result<T> {
        self.shared.activity.record();
        let (tx, rx) = oneshot::channel();
        {
            let writer = lock(&self.shared.writer);
            let sender = writer.as_ref().ok_or(StoreError::Stopped)?;
            sender.send(make(tx)).map_err(|_| StoreError::Stopped)?;
        }
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    pub async fn range(&self, req: Range) -> Result<RangeResult> {
        check_key(&req.range.start)?;
        self.read(move |conn| {
            let (head, compact) = sqlite::head(conn)?;
            if req.revision > head {
                return Err(StoreError::FutureRevision);
            }
            if req.revision > 0 && req.revision < compact {
                return Err(StoreError::Compacted {
                    compact_revision: compact,
                });
            }
            sqlite::range(conn, &req, head)
        })
        .await
    }

    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<KeyValue>> {
        let result = self.range(Range::of(KeyRange::key(key))).await?;
        Ok(result.kvs.into_iter().next())
    }

    /// Applies a transaction atomically; every change it makes shares one new revision.
    pub async fn txn(&self, txn: Txn) -> Result<TxnResult> {
        validate_txn(&txn)?;
        self.submit(|reply| Request::Txn(txn, reply)).await
    }

    pub async fn put(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Result<TxnResult> {
        self.txn(Txn::single(Op::Put(Put {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })))
        .await
    }

    pub async fn delete(&self, range: KeyRange) -> Result<TxnResult> {
        self.txn(Txn::single(Op::Delete(Delete { range, prev_kv: false })))
            .await
    }

    /// Makes revisions before `revision` unreadable and removes their history in the
    /// background; with `wait`, returns once the history is physically gone.
    pub async fn compact(&self, revision: i64, wait: bool) -> Result<i64> {
        let head = self.submit(|reply| Request::Compact { revision, reply }).await?;
        if wait {
            let mut through = self.shared.compacted_through.subscribe();
            through
                .wait_for(|t| *t >= revision)
                .await
                .map_err(|_| StoreError::Stopped)?;
        }
        Ok(head)
    }

    pub async fn defragment(&self) -> Result<()> {
        self.submit(Request::Defragment).await
    }

    /// Grants a lease (`id` 0 picks one); returns the id and the granted TTL.
    pub async fn lease_grant(&self, id: i64, ttl: i64) -> Result<(i64, i64)> {
        if ttl > lease::MAX_TTL {
            return Err(StoreError::LeaseTtlTooLarge);
        }
        let ttl = ttl.max(lease::MIN_TTL);
        let id = if id != 0 {
            id
        } else {
            loop {
                let candidate = rand::random::<i64>() & i64::MAX;
                if candidate != 0 && !self.shared.lessor.contains(candidate) {
                    break candidate;
                }
            }
        };
        self.submit(|reply| Request::LeaseGrant { id, ttl, reply }).await?;
        Ok((id, ttl))
    }

    /// Revokes a lease and deletes its keys; returns the store revision after.
    pub async fn lease_revoke(&self, id: i64) -> Result<i64> {
        self.submit(|reply| Request::LeaseRevoke { id, reply }).await
    }

    /// Restarts a lease's TTL; returns the TTL.
    pub fn lease_keep_alive(&self, id: i64) -> Result<i64> {
        self.shared.lessor.keep_alive(id).ok_or(StoreError::LeaseNotFound)
    }

    pub async fn lease_time_to_live(&self, id: i64, with_keys: bool) -> Result<LeaseInfo> {
        let (remaining, granted_ttl) = self.shared.lessor.remaining(id).ok_or(StoreError::LeaseNotFound)?;
        let keys = if with_keys {
            self.read(move |conn| sqlite::lease_keys(conn, id)).await?
        } else {
            Vec::new()
        };
        Ok(LeaseInfo {
            id,
            remaining,
            granted_ttl,
            keys,
        })
    }

    pub fn leases(&self) -> Vec<i64> {
        self.shared.lessor.ids()
    }

    /// Watches a key range from `start_revision` (`<= 0`: from the next change).
    pub fn watch(&self, range: KeyRange, start_revision: i64) -> Result<Watcher> {
        Watcher::new(self.clone(), range, start_revision)
    }

    /// Database file size and the part of it in use, in bytes.
    pub async fn db_size(&self) -> Result<(i64, i64)> {
        self.read(sqlite::db_size).await
    }

    /// Writes a consistent copy of the database to `dest` (with the checksum
    /// trailer, see `snapshot`); returns the revision it holds.
    pub async fn snapshot(&self, dest: PathBuf) -> Result<i64> {
        let shared = self.shared.clone();
        let file = dest.clone();
        let (revision, seen) = tokio::task::spawn_blocking(move || {
            let revision = snapshot::save(&shared.path, &file)?;
            Ok::<_, StoreError>((revision, shared.durability.seen()))
        })
        .await
        .map_err(|e| StoreError::Database(format!("snapshot task failed: {e}")))??;
        // Like a read, it may hold commits that are not durable yet.
        if let Err(err) = self.shared.durability.settle(seen).await {
            let _ = std::fs::remove_file(&dest);
            return Err(err);
        }
        Ok(revision)
    }

    /// Expires leases, compacts history and gives memory back after bursts, in the
    /// background until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        tokio::join!(
            self.expire_leases(shutdown.clone()),
            self.compact_history(shutdown.clone()),
            self.release_memory_after_bursts(shutdown),
        );
    }

    async fn expire_leases(&self, shutdown: CancellationToken) {
        loop {
            let changed = self.shared.lessor.changed.notified();
            let deadline = self.shared.lessor.next_deadline();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = changed => continue,
                _ = sleep => {}
            }
            for id in self.shared.lessor.take_expired(tokio::time::Instant::now()) {
                match self.lease_revoke(id).await {
                    Ok(_) | Err(StoreError::LeaseNotFound) => self.shared.lessor.remove(id),
                    Err(err) => {
                        tracing::warn!(lease = id, %err, "expiring lease failed; will retry")
                    }
                }
            }
        }
    }

    async fn compact_history(&self, shutdown: CancellationToken) {
        loop {
            let target = self.compact_revision();
            if *self.shared.compacted_through.borrow() < target {
                let step = self.submit(|reply| Request::CompactStep {
                    revisions: COMPACT_STEP,
                    reply,
                });
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    result = step => if let Err(err) = result {
                        tracing::warn!(%err, "compaction step failed; will retry");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                        }
                    },
                }
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.shared.compactor.notified() => {}
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        Err(StoreError::EmptyKey)
    } else {
        Ok(())
    }
}

/// etcd's request checks: sizes, op counts, keys present, no key written twice.
fn validate_txn(txn: &Txn) -> Result<()> {
    fn ops(list: &[Op]) -> Result<()> {
        if list.len() > MAX_TXN_OPS {
            return Err(StoreError::TooManyOps);
        }
        for op in list {
            match op {
                Op::Put(p) => {
                    check_key(&p.key)?;
                    if p.key.len() + p.value.len() > MAX_REQUEST_BYTES {
                        return Err(StoreError::TooLarge);
                    }
                }
                Op::Delete(d) => check_key(&d.range.start)?,
                Op::Range(r) => check_key(&r.range.start)?,
                Op::Txn(t) => validate_txn(t)?,
            }
        }
        no_overlapping_writes(list)
    }
    if txn.compare.len() > MAX_TXN_OPS {
        return Err(StoreError::TooManyOps);
    }
    for c in &txn.compare {
        check_key(&c.range.start)?;
    }
    ops(&txn.success)?;
    ops(&txn.failure)
}

/// A put may not touch a key another put or a delete of the same branch touches.
fn no_overlapping_writes(list: &[Op]) -> Result<()> {
    let single_write = list.iter().filter(|op| !matches!(op, Op::Range(_))).count() <= 1
        && !list.iter().any(|op| matches!(op, Op::Txn(_)));
    if single_write {
        return Ok(());
    }
    writes(list).map(|_| ())
}

/// The keys a branch puts and the ranges it deletes, refusing overlaps.
fn writes(list: &[Op]) -> Result<(HashSet<Vec<u8>>, Vec<KeyRange>)> {
    let mut puts = HashSet::new();
    let mut deletes = Vec::new();
    for op in list {
        match op {
            Op::Put(p) => {
                if !puts.insert(p.key.clone()) {
                    return Err(StoreError::DuplicateKey);
                }
            }
            Op::Delete(d) => deletes.push(d.range.clone()),
            Op::Txn(t) => {
                // Only one branch of a nested txn runs: they may repeat each other.
                let (success_puts, success_deletes) = writes(&t.success)?;
                let (failure_puts, failure_deletes) = writes(&t.failure)?;
                for key in success_puts.union(&failure_puts) {
                    if !puts.insert(key.clone()) {
                        return Err(StoreError::DuplicateKey);
                    }
                }
                deletes.extend(success_deletes);
                deletes.extend(failure_deletes);
            }
            Op::Range(_) => {}
        }
    }
    for key in &puts {
        let key = KeyRange::key(key.clone());
        if deletes.iter().any(|d| d.overlaps(&key)) {
            return Err(StoreError::DuplicateKey);
        }
    }
    Ok((puts, deletes))
}

#[cfg(test)]
mod tests;
