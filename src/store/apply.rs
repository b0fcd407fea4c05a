//! Applies one transaction inside the writer's open SQLite transaction: evaluates
//! compares, runs the chosen ops, appends rows to the log, keeps the `live` table
//! current and collects the events watchers will see once the batch commits.

use rusqlite::{Connection, params};

use super::error::{Result, StoreError};
use super::sqlite::{self, MAX_CHANGES_PER_REVISION, first_id};
use super::types::{
    Compare, CompareOp, CompareTarget, Delete, Event, EventKind, KeyRange, KeyValue, Op, OpResult, Put, Range,
    TxnResult,
};

/// The changes of one revision in the making.
pub struct Apply<'a> {
    conn: &'a Connection,
    /// The revision these changes get.
    pub revision: i64,
    /// The compaction revision, for reads inside the transaction.
    compact: i64,
    /// Changes made so far (the next row's position within the revision).
    changes: i64,
    pub events: Vec<Event>,
}

impl<'a> Apply<'a> {
    pub fn new(conn: &'a Connection, revision: i64, compact: i64) -> Self {
        Apply {
            conn,
            revision,
            compact,
            changes: 0,
            events: Vec::new(),
        }
    }

    pub fn changed(&self) -> bool {
        self.changes > 0
    }

    /// The newest revision as seen inside this transaction.
    fn head(&self) -> i64 {
        if self.changed() {
            self.revision
        } else {
            self.revision - 1
        }
    }

    /// Runs the transaction. The ops' keys and values are moved into the new rows'
    /// events rather than copied: the request is spent once applied.
    pub fn txn(&mut self, compare: &[Compare], success: &mut [Op], failure: &mut [Op]) -> Result<TxnResult> {
        let mut succeeded = true;
        for c in compare {
            if !self.compare(c)? {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded { success } else { failure };
        let results = ops.iter_mut().map(|op| self.op(op)).collect::<Result<Vec<_>>>()?;
        Ok(TxnResult {
            revision: self.head(),
            succeeded,
            results,
        })
    }

    fn op(&mut self, op: &mut Op) -> Result<OpResult> {
        match op {
            Op::Range(r) => self.range(r).map(OpResult::Range),
            Op::Put(p) => self.put(p),
            Op::Delete(d) => self.delete(d),
            Op::Txn(t) => self.txn(&t.compare, &mut t.success, &mut t.failure).map(OpResult::Txn),
        }
    }

    fn range(&self, r: &Range) -> Result<super::types::RangeResult> {
        let head = self.head();
        if r.revision > head {
            return Err(StoreError::FutureRevision);
        }
        if r.revision > 0 && r.revision < self.compact {
            return Err(StoreError::Compacted {
                compact_revision: self.compact,
            });
        }
        sqlite::range(self.conn, r, head)
    }

    fn compare(&self, c: &Compare) -> Result<bool> {
        let kvs: Vec<KeyValue> = if c.range.is_single_key() {
            sqlite::get_live(self.conn, &c.range.start)?
                .map(|(_, kv)| kv)
                .into_iter()
                .collect()
        } else {
            sqlite::live_in_range(self.conn, &c.range)?
                .into_iter()
                .map(|(_, kv)| kv)
                .collect()
        };
        if kvs.is_empty() {
            // A value compare on a missing key always fails; otherwise a missing key
            // has version, revisions and lease 0.
            if matches!(c.target, CompareTarget::Value(_)) {
                return Ok(false);
            }
            return Ok(compare_kv(c, &KeyValue::default()));
        }
        Ok(kvs.iter().all(|kv| compare_kv(c, kv)))
    }

    fn next_id(&mut self) -> Result<i64> {
        if self.changes >= MAX_CHANGES_PER_REVISION {
            return Err(StoreError::TooManyChanges);
        }
        let id = first_id(self.revision) | self.changes;
        self.changes += 1;
        Ok(id)
    }

    fn put(&mut self, p: &mut Put) -> Result<OpResult> {
        let prev = sqlite::get_live(self.conn, &p.key)?;
        let prev_kv = prev.as_ref().map(|(_, kv)| kv);
        if (p.ignore_value || p.ignore_lease) && prev.is_none() {
            return Err(StoreError::KeyNotFound);
        }
        let lease = match prev_kv {
            Some(kv) if p.ignore_lease => kv.lease,
            _ => p.lease,
        };
        if lease != 0 && !sqlite::lease_exists(self.conn, lease)? {
            return Err(StoreError::LeaseNotFound);
        }
        let value = match prev_kv {
            Some(kv) if p.ignore_value => kv.value.clone(),
            _ => std::mem::take(&mut p.value),
        };
        // A key that is not live gets no predecessor, even if an older life of it ended
        // in a tombstone: nothing reads through that link (watch replay shows no previous
        // value after a delete, and compaction removes tombstones by themselves), and
        // looking it up cost an index search on every create.
        let prev_id = prev.as_ref().map_or(0, |(id, _)| *id);
        let id = self.next_id()?;
        let kv = KeyValue {
            key: std::mem::take(&mut p.key),
            value,
            create_revision: prev_kv.map_or(self.revision, |kv| kv.create_revision),
            mod_revision: self.revision,
            version: prev_kv.map_or(1, |kv| kv.version + 1),
            lease,
        };
        self.conn
            .prepare_cached(
                "INSERT INTO kv (id, key, create_revision, version, lease, value, prev_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                id,
                kv.key,
                kv.create_revision,
                kv.version,
                kv.lease,
                kv.value,
                prev_id
            ])?;
        self.conn
            .prepare_cached(
                "INSERT INTO live (key, id, lease) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE SET id = excluded.id, lease = excluded.lease",
            )?
            .execute(params![kv.key, id, kv.lease])?;
        let prev = prev.map(|(_, kv)| kv);
        let result = OpResult::Put {
            prev: if p.prev_kv { prev.clone() } else { None },
        };
        self.events.push(Event {
            kind: EventKind::Put,
            kv,
            prev,
        });
        Ok(result)
    }

    fn delete(&mut self, d: &Delete) -> Result<OpResult> {
        let targets = if d.range.is_single_key() {
            sqlite::get_live(self.conn, &d.range.start)?.into_iter().collect()
        } else {
            sqlite::live_in_range(self.conn, &d.range)?
        };
        let deleted = targets.len() as i64;
        let mut prevs = Vec::new();
        for (prev_id, prev) in targets {
            self.delete_key(prev_id, &prev)?;
            if d.prev_kv {
                prevs.push(prev.clone());
            }
            self.events.push(Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: prev.key.clone(),
                    mod_revision: self.revision,
                    ..Default::default()
                },
                prev: Some(prev),
            });
        }
        Ok(OpResult::Delete { deleted, prev: prevs })
    }

    fn delete_key(&mut self, prev_id: i64, prev: &KeyValue) -> Result<()> {
        let id = self.next_id()?;
        self.conn
            .prepare_cached(
                "INSERT INTO kv (id, key, create_revision, version, lease, value, prev_id) \
                 VALUES (?1, ?2, 0, 0, 0, x'', ?3)",
            )?
            .execute(params![id, prev.key, prev_id])?;
        self.conn
            .prepare_cached("DELETE FROM live WHERE key = ?1")?
            .execute([&prev.key])?;
        Ok(())
    }

    /// Deletes every key attached to the lease, then the lease.
    pub fn revoke(&mut self, lease: i64) -> Result<()> {
        if !sqlite::lease_exists(self.conn, lease)? {
            return Err(StoreError::LeaseNotFound);
        }
        for key in sqlite::lease_keys(self.conn, lease)? {
            self.delete(&Delete {
                range: KeyRange::key(key),
                prev_kv: false,
            })?;
        }
        self.conn.execute("DELETE FROM lease WHERE id = ?1", [lease])?;
        Ok(())
    }

    pub fn grant(&mut self, lease: i64, ttl: i64) -> Result<()> {
        if sqlite::lease_exists(self.conn, lease)? {
            return Err(StoreError::LeaseExists);
        }
        self.conn
            .execute("INSERT INTO lease (id, ttl) VALUES (?1, ?2)", params![lease, ttl])?;
        Ok(())
    }
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ord = match &c.target {
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::CreateRevision(v) => kv.create_revision.cmp(v),
        CompareTarget::ModRevision(v) => kv.mod_revision.cmp(v),
        CompareTarget::Lease(v) => kv.lease.cmp(v),
        CompareTarget::Value(v) => kv.value.as_slice().cmp(v.as_slice()),
    };
    match c.op {
        CompareOp::Equal => ord == Ordering::Equal,
        CompareOp::NotEqual => ord != Ordering::Equal,
        CompareOp::Greater => ord == Ordering::Greater,
        CompareOp::Less => ord == Ordering::Less,
    }
}
