//! The single writer thread. It owns the read-write connection, takes every queued
//! request at once (group commit: one transaction and one fsync for all of them),
//! gives each request that changes something the next revision, and only after the
//! commit answers the callers, updates the lease clocks and hands the events to the
//! watch hub. Each request runs in its own savepoint so one failing request does not
//! fail the others in its batch.

use rusqlite::{Connection, TransactionBehavior};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use tokio::sync::oneshot;

use super::Shared;
use super::apply::Apply;
use super::error::{Result, StoreError};
use super::sqlite::{self, first_id};
use super::types::{Event, Txn, TxnResult};
use super::watch::Batch;

/// Requests served by the writer. Every reply is sent after the batch commits.
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
}

/// Requests taken into one transaction at most.
const MAX_BATCH: usize = 512;

pub struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    head: i64,
    compact: i64,
}

/// What a request did, kept until the commit decides whether it happened.
enum Done {
    Txn(oneshot::Sender<Result<TxnResult>>, Result<TxnResult>),
    Revision(oneshot::Sender<Result<i64>>, Result<i64>),
}

/// In-memory effects that apply only once the batch is durable.
#[derive(Default)]
struct Effects {
    granted: Vec<(i64, i64)>,
    revoked: Vec<i64>,
    compact: Option<i64>,
    compacted_through: Option<i64>,
}

impl Writer {
    pub fn new(conn: Connection, shared: Arc<Shared>) -> Result<Self> {
        let (head, compact) = sqlite::head(&conn)?;
        Ok(Writer {
            conn,
            shared,
            head,
            compact,
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
            let (defrags, batch): (Vec<_>, Vec<_>) =
                batch.into_iter().partition(|r| matches!(r, Request::Defragment(_)));
            if !batch.is_empty() {
                self.commit(batch);
            }
            for request in defrags {
                if let Request::Defragment(reply) = request {
                    let _ = reply.send(self.conn.execute_batch("VACUUM").map_err(StoreError::from));
                }
            }
        }
        // All senders are gone: fold the WAL back into the database before exit.
        if let Err(err) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
            tracing::warn!(%err, "final WAL checkpoint failed");
        }
    }

    fn commit(&mut self, batch: Vec<Request>) {
        let mut done = Vec::with_capacity(batch.len());
        let mut events: Vec<Event> = Vec::new();
        let mut effects = Effects::default();
        let mut next = self.head + 1;

        let tx = match self.conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(err) => {
                let err = StoreError::from(err);
                for request in batch {
                    fail(request, &err);
                }
                return;
            }
        };
        let mut fatal = None;
        for request in batch {
            if let Err(err) = run_cached(&tx, "SAVEPOINT request") {
                fail(request, &err);
                fatal = Some(err);
                continue;
            }
            let mut apply = Apply::new(&tx, next, self.compact);
            let outcome = match request {
                Request::Txn(txn, reply) => {
                    let result = apply.txn(&txn.compare, &txn.success, &txn.failure);
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
                        sqlite::set_meta(&tx, "compact_revision", revision).map(|()| {
                            effects.compact = Some(revision);
                            next - 1
                        })
                    };
                    Done::Revision(reply, result)
                }
                Request::CompactStep { revisions, reply } => {
                    let result = compact_step(&tx, revisions);
                    if let Ok(through) = result {
                        effects.compacted_through = Some(through);
                    }
                    Done::Revision(reply, result)
                }
                Request::Defragment(_) => {
                    unreachable!("defragment requests are run outside batches")
                }
            };
            let ok = match &outcome {
                Done::Txn(_, r) => r.is_ok(),
                Done::Revision(_, r) => r.is_ok(),
            };
            if ok {
                let changed = apply.changed();
                events.append(&mut apply.events);
                if changed {
                    next += 1;
                }
                if let Err(err) = run_cached(&tx, "RELEASE request") {
                    fatal = Some(err);
                }
            } else {
                drop(apply);
                if let Err(err) =
                    run_cached(&tx, "ROLLBACK TO request").and_then(|()| run_cached(&tx, "RELEASE request"))
                {
                    fatal = Some(err);
                }
            }
            done.push(outcome);
        }

        let committed = match fatal {
            Some(err) => Err(err),
            None => tx.commit().map_err(StoreError::from),
        };
        if let Err(err) = committed {
            tracing::error!(%err, "store commit failed");
            for outcome in done {
                match outcome {
                    Done::Txn(reply, _) => {
                        let _ = reply.send(Err(same(&err)));
                    }
                    Done::Revision(reply, _) => {
                        let _ = reply.send(Err(same(&err)));
                    }
                }
            }
            return;
        }

        self.head = next - 1;
        self.shared.head.store(self.head, Ordering::Release);
        if let Some(compact) = effects.compact {
            self.compact = compact;
            self.shared.compact.store(compact, Ordering::Release);
            self.shared.compactor.notify_one();
        }
        if let Some(through) = effects.compacted_through {
            self.shared.compacted_through.send_replace(through);
        }
        for (id, ttl) in effects.granted {
            self.shared.lessor.insert(id, ttl);
        }
        for id in effects.revoked {
            self.shared.lessor.remove(id);
        }
        if !events.is_empty() {
            // No receivers is fine: nobody watches.
            let _ = self.shared.hub.send(Arc::new(Batch {
                revision: self.head,
                events,
            }));
        }
        for outcome in done {
            match outcome {
                Done::Txn(reply, result) => {
                    let _ = reply.send(result);
                }
                Done::Revision(reply, result) => {
                    let _ = reply.send(result);
                }
            }
        }
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

/// Runs a statement kept prepared (savepoints are on every request's path).
fn run_cached(conn: &Connection, sql: &str) -> Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// The same error again, for every request of a batch that failed to commit.
fn same(err: &StoreError) -> StoreError {
    match err {
        StoreError::NoSpace => StoreError::NoSpace,
        StoreError::ReadOnly(m) => StoreError::ReadOnly(m.clone()),
        other => StoreError::Database(other.to_string()),
    }
}

fn fail(request: Request, err: &StoreError) {
    match request {
        Request::Txn(_, reply) => {
            let _ = reply.send(Err(same(err)));
        }
        Request::LeaseGrant { reply, .. }
        | Request::LeaseRevoke { reply, .. }
        | Request::Compact { reply, .. }
        | Request::CompactStep { reply, .. } => {
            let _ = reply.send(Err(same(err)));
        }
        Request::Defragment(reply) => {
            let _ = reply.send(Err(same(err)));
        }
    }
}
