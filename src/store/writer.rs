//! The single writer thread. It owns the read-write connection, takes every queued
//! request at once (group commit: one transaction for all of them) and gives each
//! request that changes something the next revision. A request runs in its own
//! savepoint only when it could fail after writing (see `Request::needs_savepoint`),
//! so one failing request does not fail the others in its batch.
//!
//! Nothing here waits for the disk: SQLite commits without syncing and the
//! committed batch goes on to `durable`, which makes it durable and only then
//! publishes it and answers its requests, while this thread runs the next batch.

use rusqlite::Connection;
use std::sync::Arc;
use std::sync::mpsc;
use tokio::sync::oneshot;

use super::Shared;
use super::apply::Apply;
use super::durable::{Committed, Done, Effects, Log, Syncer, publish};
use super::error::{Result, StoreError};
use super::sqlite::{self, first_id};
use super::types::{Event, Op, Txn, TxnResult};

/// Requests served by the writer. The answers of a committed batch wait until it is
/// durable; refusals of a batch that cannot commit go out at once.
pub enum Request {
    Txn(Txn, oneshot::Sender<Result<TxnResult>>),
    LeaseGrant {
        id: i64,
        ttl: i64,
        reply: oneshot::Sender<Result<i64>>,
    },
    LeaseRevoke {
        id: i64,
        reply: oneshot::Sender<Result<i64>>,
    },
    /// Marks history before `revision` as gone (reads below it are refused).
    Compact {
        revision: i64,
        reply: oneshot::Sender<Result<i64>>,
    },
    /// Deletes superseded history for up to `revisions` more revisions; replies
    /// with how far history is now physically compacted.
    CompactStep {
        revisions: i64,
        reply: oneshot::Sender<Result<i64>>,
    },
    /// Rewrites the database file to return free pages (outside any batch).
    Defragment(oneshot::Sender<Result<()>>),
    /// Frees the writer connection's page cache (outside any batch).
    ReleaseMemory(oneshot::Sender<Result<()>>),
}

impl Request {
    /// Whether the request can fail after it has written something, so that it needs
    /// a savepoint to be undone without failing the rest of its batch. Most requests
    /// check everything before their first write (a put, a single-key delete, a
    /// guarded update); a savepoint costs two statements and a copy of every page the
    /// request touches that the batch had already changed.
    fn needs_savepoint(&self) -> bool {
        match self {
            Request::Txn(txn, _) => txn_needs_savepoint(txn),
            Request::LeaseRevoke { .. } | Request::CompactStep { .. } => true,
            Request::LeaseGrant { .. }
            | Request::Compact { .. }
            | Request::Defragment(_)
            | Request::ReleaseMemory(_) => false,
        }
    }
}

fn txn_needs_savepoint(txn: &Txn) -> bool {
    // Compares only read; then one branch runs.
    let branch = |ops: &[Op]| match ops {
        [] | [Op::Range(_) | Op::Put(_)] => false,
        [Op::Delete(d)] => !d.range.is_single_key(),
        [Op::Txn(t)] => txn_needs_savepoint(t),
        _ => true,
    };
    branch(&txn.success) || branch(&txn.failure)
}

/// Requests taken into one transaction at most.
const MAX_BATCH: usize = 512;

pub struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    head: i64,
    compact: i64,
    /// Where committed batches wait for their fsync; `None` when commits are not
    /// synced (`Sync::Normal`): batches are published at once.
    syncer: Option<Syncer>,
}

impl Writer {
    /// `log`: the write-ahead log to sync before a batch is published; `None` to
    /// publish as soon as SQLite has committed.
    pub fn new(conn: Connection, shared: Arc<Shared>, log: Option<Box<dyn Log>>) -> Result<Self> {
        let (head, compact) = sqlite::head(&conn)?;
        let syncer = log.map(|log| Syncer::spawn(shared.clone(), log)).transpose()?;
        Ok(Writer {
            conn,
            shared,
            head,
            compact,
            syncer,
        })
    }

    pub fn run(mut self, requests: mpsc::Receiver<Request>) {
        while let Ok(first) = requests.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match requests.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            if let Err(err) = self.shared.durability.check() {
                batch.into_iter().for_each(|request| fail(request, &err));
                continue;
            }
            let mut writes = Vec::with_capacity(batch.len());
            let mut maintenance = Vec::new();
            for request in batch {
                match request {
                    Request::Defragment(reply) => maintenance.push(("VACUUM", reply)),
                    Request::ReleaseMemory(reply) => maintenance.push(("PRAGMA shrink_memory", reply)),
                    write => writes.push(write),
                }
            }
            if !writes.is_empty()
                && let Some(committed) = self.commit(writes)
            {
                self.finish(committed);
            }
            // Neither changes what the store holds: nothing to wait for.
            for (sql, reply) in maintenance {
                let _ = reply.send(self.conn.execute_batch(sql).map_err(StoreError::from));
            }
        }
        // All senders are gone: answer what is in flight, then fold the WAL back into
        // the database (a checkpoint syncs both) before exit. After a failed fsync
        // the WAL is left as it is, for recovery at the next start.
        if let Some(syncer) = self.syncer.take() {
            syncer.stop();
        }
        if self.shared.durability.check().is_ok()
            && let Err(err) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        {
            tracing::warn!(%err, "final WAL checkpoint failed");
        }
    }

    /// Runs a batch in one transaction and commits it. Returns what is left to do
    /// once it is durable; `None` when nothing was committed (every request has had
    /// its answer then).
    fn commit(&mut self, batch: Vec<Request>) -> Option<Committed> {
        if let Err(err) = run_cached(&self.conn, "BEGIN IMMEDIATE") {
            batch.into_iter().for_each(|request| fail(request, &err));
            return None;
        }
        let tx = &self.conn;
        let mut done = Vec::with_capacity(batch.len());
        let mut events: Vec<Event> = Vec::new();
        let mut effects = Effects::default();
        let mut next = self.head + 1;
        let mut fatal = None;
        for request in batch {
            if let Some(err) = &fatal {
                // The batch is lost anyway: do not run the rest.
                fail(request, err);
                continue;
            }
            let savepoint = request.needs_savepoint();
            if savepoint && let Err(err) = run_cached(tx, "SAVEPOINT request") {
                fail(request, &err);
                fatal = Some(err);
                continue;
            }
            let mut apply = Apply::new(tx, next, self.compact);
            let outcome = match request {
                Request::Txn(mut txn, reply) => {
                    let result = apply.txn(&txn.compare, &mut txn.success, &mut txn.failure);
                    Done::Txn(reply, result)
                }
                Request::LeaseGrant { id, ttl, reply } => {
                    let result = apply.grant(id, ttl).map(|()| {
                        effects.granted.push((id, ttl));
                        next - 1
                    });
                    Done::Revision(reply, result)
                }
                Request::LeaseRevoke { id, reply } => {
                    let result = apply.revoke(id).map(|()| {
                        effects.revoked.push(id);
                        if apply.changed() { next } else { next - 1 }
                    });
                    Done::Revision(reply, result)
                }
                Request::Compact { revision, reply } => {
                    let current = effects.compact.unwrap_or(self.compact);
                    let result = if revision > next - 1 {
                        Err(StoreError::FutureRevision)
                    } else if revision <= current {
                        Err(StoreError::Compacted {
                            compact_revision: current,
                        })
                    } else {
                        sqlite::set_meta(tx, "compact_revision", revision).map(|()| {
                            effects.compact = Some(revision);
                            next - 1
                        })
                    };
                    Done::Revision(reply, result)
                }
                Request::CompactStep { revisions, reply } => {
                    let result = compact_step(tx, revisions);
                    if let Ok(through) = result {
                        effects.compacted_through = Some(through);
                    }
                    Done::Revision(reply, result)
                }
                Request::Defragment(_) | Request::ReleaseMemory(_) => {
                    unreachable!("maintenance requests are run outside batches")
                }
            };
            match outcome.error() {
                None => {
                    if apply.changed() {
                        next += 1;
                    }
                    events.append(&mut apply.events);
                    if savepoint && let Err(err) = run_cached(tx, "RELEASE request") {
                        fatal = Some(err);
                    }
                }
                Some(_) if savepoint => {
                    drop(apply);
                    if let Err(err) =
                        run_cached(tx, "ROLLBACK TO request").and_then(|()| run_cached(tx, "RELEASE request"))
                    {
                        fatal = Some(err);
                    }
                }
                // Refused before it wrote anything: nothing to undo.
                Some(err) if !apply.changed() && !err.is_storage() => {}
                // Failed half-way, or in the database, without a savepoint to go back
                // to: the batch cannot commit.
                Some(err) => fatal = Some(err.same()),
            }
            done.push(outcome);
        }

        if let Some(err) = fatal {
            self.abort(done, &err);
            return None;
        }
        let number = self.shared.durability.number_next();
        if let Err(err) = run_cached(&self.conn, "COMMIT") {
            self.abort(done, &err);
            // Readers may already wait for this number: it goes the way of a batch
            // that changed nothing.
            return Some(Committed {
                number,
                head: self.head,
                effects: Effects::default(),
                events: Vec::new(),
                done: Vec::new(),
            });
        }
        self.head = next - 1;
        if let Some(compact) = effects.compact {
            self.compact = compact;
        }
        Some(Committed {
            number,
            head: self.head,
            effects,
            events,
            done,
        })
    }

    /// Rolls back a batch that cannot commit and fails its requests.
    fn abort(&self, done: Vec<Done>, err: &StoreError) {
        tracing::error!(%err, "store commit failed");
        // Some errors (a full disk, I/O) end the transaction by themselves.
        if !self.conn.is_autocommit()
            && let Err(err) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::error!(%err, "store rollback failed");
        }
        done.into_iter().for_each(|outcome| outcome.fail(err));
    }

    /// Hands a committed batch to the syncer, or publishes it at once when commits
    /// are not synced.
    fn finish(&mut self, committed: Committed) {
        match &self.syncer {
            Some(syncer) => syncer.send(committed),
            None => publish(&self.shared, committed),
        }
    }
}

impl Drop for Writer {
    /// Also runs if the writer panics: readers waiting for a batch it committed but
    /// never handed on get an error instead of waiting forever.
    fn drop(&mut self) {
        if let Some(syncer) = self.syncer.take() {
            syncer.stop();
        }
        self.shared.durability.abandon_pending();
    }
}

/// Physically removes history the compaction revision made unreachable: rows
/// superseded by a newer row of the same key below the compaction revision, and
/// tombstones below it. Works through at most `revisions` revisions per call so the
/// writer is never held for long.
fn compact_step(conn: &Connection, revisions: i64) -> Result<i64> {
    let compact = sqlite::meta(conn, "compact_revision")?;
    let through = sqlite::meta(conn, "compacted_through")?;
    let upto = (through + revisions).min(compact);
    if upto <= through {
        return Ok(through);
    }
    let (lo, hi) = (first_id(through), first_id(upto));
    conn.prepare_cached(
        "DELETE FROM kv WHERE id IN (SELECT prev_id FROM kv WHERE id >= ?1 AND id < ?2 AND prev_id != 0)",
    )?
    .execute([lo, hi])?;
    conn.prepare_cached("DELETE FROM kv WHERE id >= ?1 AND id < ?2 AND version = 0")?
        .execute([lo, hi])?;
    sqlite::set_meta(conn, "compacted_through", upto)?;
    Ok(upto)
}

/// Runs a statement kept prepared (savepoints and the transaction's own statements
/// are on every request's path).
fn run_cached(conn: &Connection, sql: &str) -> Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

fn fail(request: Request, err: &StoreError) {
    match request {
        Request::Txn(_, reply) => {
            let _ = reply.send(Err(err.same()));
        }
        Request::LeaseGrant { reply, .. }
        | Request::LeaseRevoke { reply, .. }
        | Request::Compact { reply, .. }
        | Request::CompactStep { reply, .. } => {
            let _ = reply.send(Err(err.same()));
        }
        Request::Defragment(reply) | Request::ReleaseMemory(reply) => {
            let _ = reply.send(Err(err.same()));
        }
    }
}
