//! SQLite access: opening and migrating the database, and every query the store
//! makes. Functions take a `&Connection` so the same code reads from a pooled read
//! connection or inside the writer's open transaction (which sees its own writes).

use rusqlite::config::DbConfig;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params, params_from_iter};
use std::path::Path;

use super::error::{Result, StoreError};
use super::types::{Event, EventKind, KeyRange, KeyValue, Range, RangeResult, SortOrder, SortTarget};

/// Bits of a row id that number changes within one revision.
pub const SUB_BITS: u32 = 20;
pub const MAX_CHANGES_PER_REVISION: i64 = 1 << SUB_BITS;

/// The first row id of `revision`.
pub fn first_id(revision: i64) -> i64 {
    revision << SUB_BITS
}

pub fn revision_of(id: i64) -> i64 {
    id >> SUB_BITS
}

const MIGRATIONS: &[&str] = &[include_str!("../../migrations/0001_init.sql")];

/// Opens a connection. Every connection runs with `synchronous=NORMAL`: SQLite then
/// syncs around checkpoints but not at commit; with `Sync::Full` the store syncs
/// the log itself after each commit, before anyone learns of it (see `durable`).
pub fn open(path: &Path, read_only: bool) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    // SQLite quietly opens a file it cannot write read-only; a store must know now.
    if !read_only && conn.is_readonly(rusqlite::MAIN_DB)? {
        return Err(StoreError::ReadOnly(format!("{} cannot be written", path.display())));
    }
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Plans that do not depend on bound values. Without this, SQLite (built with STAT4)
    // marks keyed lookups such as `WHERE key = ?1` for re-preparation whenever their
    // bindings change, and rusqlite clears the bindings of every statement it returns to
    // its cache: each cached lookup was parsed and planned again on every run.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Brings the schema up to date; refuses a database that is not ours or is newer.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let quick: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if quick != "ok" {
        return Err(StoreError::Database(format!("database is corrupt: {quick}")));
    }
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let version = version.max(0) as usize;
    if version > MIGRATIONS.len() {
        return Err(StoreError::Database(format!(
            "database schema version {version} is newer than this binary understands ({})",
            MIGRATIONS.len()
        )));
    }
    if version == 0 {
        let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        if tables > 0 {
            return Err(StoreError::Database(
                "the file holds a database that is not a kube store".into(),
            ));
        }
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

/// The newest revision and the compaction revision, read in one snapshot.
pub fn head(conn: &Connection) -> Result<(i64, i64)> {
    let (max_id, compact): (Option<i64>, i64) = conn.query_row(
        "SELECT (SELECT max(id) FROM kv), (SELECT value FROM meta WHERE name = 'compact_revision')",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let revision = max_id.map(revision_of).unwrap_or(0).max(compact).max(1);
    Ok((revision, compact))
}

pub fn meta(conn: &Connection, name: &str) -> Result<i64> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

pub fn set_meta(conn: &Connection, name: &str, value: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO meta (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        params![name, value],
    )?;
    Ok(())
}

macro_rules! kv_columns {
    () => {
        "kv.key, kv.value, kv.create_revision, kv.id, kv.version, kv.lease"
    };
}
const KV_COLUMNS: &str = kv_columns!();
const KEY_COLUMNS: &str = "kv.key, x'', kv.create_revision, kv.id, kv.version, kv.lease";

fn kv_from_row(row: &Row, at: usize) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: row.get(at)?,
        value: row.get(at + 1)?,
        create_revision: row.get(at + 2)?,
        mod_revision: revision_of(row.get(at + 3)?),
        version: row.get(at + 4)?,
        lease: row.get(at + 5)?,
    })
}

/// On every write's path: a literal, so the statement cache needs no allocation.
pub const GET_LIVE: &str = concat!(
    "SELECT ",
    kv_columns!(),
    " FROM live JOIN kv ON kv.id = live.id WHERE live.key = ?1"
);

/// The live value of a key at the newest revision, with its row id.
pub fn get_live(conn: &Connection, key: &[u8]) -> Result<Option<(i64, KeyValue)>> {
    let mut stmt = conn.prepare_cached(GET_LIVE)?;
    let row = stmt
        .query_row([key], |r| Ok((r.get::<_, i64>(3)?, kv_from_row(r, 0)?)))
        .optional()?;
    Ok(row)
}

/// A SQL condition on `column` for a key range, and its parameters.
fn range_condition(column: &str, range: &KeyRange) -> (String, Vec<Value>) {
    let blob = |b: &[u8]| Value::Blob(b.to_vec());
    if range.is_single_key() {
        return (format!("{column} = ?"), vec![blob(&range.start)]);
    }
    match range.upper_bound() {
        Some(end) => (
            format!("{column} >= ? AND {column} < ?"),
            vec![blob(&range.start), blob(end)],
        ),
        None => (format!("{column} >= ?"), vec![blob(&range.start)]),
    }
}

/// The live keys in a range at the newest revision, with their row ids (for deletes).
pub fn live_in_range(conn: &Connection, range: &KeyRange) -> Result<Vec<(i64, KeyValue)>> {
    let (cond, args) = range_condition("live.key", range);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {KV_COLUMNS} FROM live JOIN kv ON kv.id = live.id WHERE {cond} ORDER BY live.key"
    ))?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok((r.get::<_, i64>(3)?, kv_from_row(r, 0)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Serves a range read at `head` (the snapshot's newest revision) or at the past
/// revision the request names; the caller has checked it against compaction.
pub fn range(conn: &Connection, req: &Range, head: i64) -> Result<RangeResult> {
    let at = if req.revision <= 0 { head } else { req.revision };
    // At the newest revision only the live table is read; in the past, the newest
    // row of each key at or before `at` that is not a tombstone.
    let (source, count_source, order, cond, args) = if at >= head {
        let (cond, args) = range_condition("live.key", &req.range);
        (
            "live JOIN kv ON kv.id = live.id".to_string(),
            "live".to_string(),
            "live.key",
            cond,
            args,
        )
    } else {
        let (cond, mut args) = range_condition("key", &req.range);
        args.push(Value::Integer(first_id(at + 1)));
        let source =
            format!("(SELECT max(id) AS id FROM kv WHERE {cond} AND id < ? GROUP BY key) m JOIN kv ON kv.id = m.id");
        (source.clone(), source, "kv.key", "kv.version > 0".to_string(), args)
    };

    let full_scan = req.needs_full_scan();
    let count = if req.count_only || req.limit > 0 {
        let mut stmt = conn.prepare_cached(&format!("SELECT count(*) FROM {count_source} WHERE {cond}"))?;
        Some(stmt.query_row(params_from_iter(&args), |r| r.get::<_, i64>(0))?)
    } else {
        None
    };
    if req.count_only {
        return Ok(RangeResult {
            revision: head,
            kvs: Vec::new(),
            more: false,
            count: count.unwrap_or(0),
        });
    }

    // Values are needed to sort by value even when only keys are returned.
    let values_needed = !req.keys_only || req.sort_target == SortTarget::Value;
    let columns = if values_needed { KV_COLUMNS } else { KEY_COLUMNS };
    let limit = if req.limit > 0 && !full_scan {
        // One more than asked tells whether there are more.
        format!(" LIMIT {}", req.limit + 1)
    } else {
        String::new()
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {columns} FROM {source} WHERE {cond} ORDER BY {order}{limit}"
    ))?;
    let mut kvs = stmt
        .query_map(params_from_iter(&args), |r| kv_from_row(r, 0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;

    let count = count.unwrap_or(kvs.len() as i64);
    if full_scan {
        filter_and_sort(&mut kvs, req);
    }
    if req.keys_only && values_needed {
        kvs.iter_mut().for_each(|kv| kv.value.clear());
    }
    let more = req.limit > 0 && kvs.len() as i64 > req.limit;
    if more {
        kvs.truncate(req.limit as usize);
    }
    Ok(RangeResult {
        revision: head,
        kvs,
        more,
        count,
    })
}

fn filter_and_sort(kvs: &mut Vec<KeyValue>, req: &Range) {
    let within = |v: i64, min: i64, max: i64| (min <= 0 || v >= min) && (max <= 0 || v <= max);
    kvs.retain(|kv| {
        within(kv.mod_revision, req.min_mod_revision, req.max_mod_revision)
            && within(kv.create_revision, req.min_create_revision, req.max_create_revision)
    });
    let order = if req.sort_order == SortOrder::None && req.sort_target != SortTarget::Key {
        // etcd sorts ascending when only a target is given.
        SortOrder::Ascend
    } else {
        req.sort_order
    };
    if order == SortOrder::None {
        return;
    }
    // Stable sort on top of key order, as etcd does.
    match req.sort_target {
        SortTarget::Key => {}
        SortTarget::Version => kvs.sort_by_key(|kv| kv.version),
        SortTarget::Create => kvs.sort_by_key(|kv| kv.create_revision),
        SortTarget::Mod => kvs.sort_by_key(|kv| kv.mod_revision),
        SortTarget::Value => kvs.sort_by(|a, b| a.value.cmp(&b.value)),
    }
    if order == SortOrder::Descend {
        kvs.reverse();
    }
}

/// Events with revisions in `[from, to]` on keys in `range`, oldest first.
pub fn events(conn: &Connection, range: &KeyRange, from: i64, to: i64) -> Result<Vec<Event>> {
    let (cond, args) = range_condition("e.key", range);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT e.key, e.value, e.create_revision, e.id, e.version, e.lease, \
                p.key, p.value, p.create_revision, p.id, p.version, p.lease \
         FROM kv e LEFT JOIN kv p ON p.id = e.prev_id AND p.version > 0 \
         WHERE e.id >= ? AND e.id < ? AND {cond} ORDER BY e.id"
    ))?;
    let mut all = vec![Value::Integer(first_id(from)), Value::Integer(first_id(to + 1))];
    all.extend(args);
    let mut rows = stmt.query(params_from_iter(all))?;
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        let kv = kv_from_row(row, 0)?;
        let prev = match row.get::<_, Option<i64>>(9)? {
            Some(_) => Some(kv_from_row(row, 6)?),
            None => None,
        };
        events.push(if kv.version == 0 {
            Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: kv.key,
                    mod_revision: kv.mod_revision,
                    ..Default::default()
                },
                prev,
            }
        } else {
            Event {
                kind: EventKind::Put,
                kv,
                prev,
            }
        });
    }
    Ok(events)
}

/// `lease != 0` repeats the condition of the partial index `live_lease`: SQLite uses
/// a partial index only when the query's own terms imply its condition.
pub const LEASE_KEYS: &str = "SELECT key FROM live WHERE lease = ?1 AND lease != 0 ORDER BY key";

/// Keys currently attached to a lease.
pub fn lease_keys(conn: &Connection, lease: i64) -> Result<Vec<Vec<u8>>> {
    let mut stmt = conn.prepare_cached(LEASE_KEYS)?;
    let rows = stmt.query_map([lease], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn lease_exists(conn: &Connection, lease: i64) -> Result<bool> {
    let mut stmt = conn.prepare_cached("SELECT 1 FROM lease WHERE id = ?1")?;
    Ok(stmt.exists([lease])?)
}

pub fn leases(conn: &Connection) -> Result<Vec<(i64, i64)>> {
    let mut stmt = conn.prepare("SELECT id, ttl FROM lease")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Bytes the database file occupies and bytes in use.
pub fn db_size(conn: &Connection) -> Result<(i64, i64)> {
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    Ok((pages * page_size, (pages - free) * page_size))
}
