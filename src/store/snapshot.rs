//! Snapshots: a consistent copy of the database (`VACUUM INTO`, taken while the
//! server runs) followed by the SHA-256 of that copy. The trailer is what
//! `etcdctl snapshot save` looks for (it insists on `size % 512 == 32`; SQLite
//! pages keep the body a multiple of 512), so the same file comes out of the etcd
//! endpoint, `etcdctl` and `kube etcd-snapshot save`, and restore verifies it.

use rusqlite::Connection;
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::error::{Result, StoreError};
use super::sqlite;

const TRAILER: u64 = 32;
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Writes a snapshot of the database behind `conn` to `dest`; returns the
/// revision the snapshot holds.
pub fn write(conn: &Connection, dest: &Path) -> Result<i64> {
    let partial = partial_path(dest);
    let _ = fs::remove_file(&partial);
    let result = (|| {
        let target = partial
            .to_str()
            .ok_or_else(|| StoreError::Database(format!("snapshot path {} is not UTF-8", partial.display())))?;
        conn.execute("VACUUM INTO ?1", [target])?;
        let revision = {
            let copy = sqlite::open(&partial, true)?;
            sqlite::head(&copy)?.0
        };
        let digest = hash(File::open(&partial)?, u64::MAX)?;
        let mut file = OpenOptions::new().append(true).open(&partial)?;
        file.write_all(&digest)?;
        file.sync_all()?;
        fs::rename(&partial, dest)?;
        sync_parent(dest)?;
        Ok(revision)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&partial);
    }
    result
}

/// Snapshots the database file at `db` (the server may be running).
pub fn save(db: &Path, dest: &Path) -> Result<i64> {
    if !db.exists() {
        return Err(StoreError::Database(format!("no database at {}", db.display())));
    }
    let conn = sqlite::open(db, false)?;
    write(&conn, dest)
}

/// Restores a snapshot into `db`, which must not exist yet; returns its revision.
pub fn restore(snapshot: &Path, db: &Path) -> Result<i64> {
    if db.exists() {
        return Err(StoreError::Database(format!(
            "{} already exists; restore into a fresh data dir",
            db.display()
        )));
    }
    let len = fs::metadata(snapshot)?.len();
    if len < TRAILER + SQLITE_MAGIC.len() as u64 {
        return Err(invalid(snapshot, "too short"));
    }
    let body = len - TRAILER;
    let digest = hash(File::open(snapshot)?, body)?;
    let mut trailer = [0u8; TRAILER as usize];
    let mut file = File::open(snapshot)?;
    io::copy(&mut (&mut file).take(body), &mut io::sink())?;
    file.read_exact(&mut trailer)?;
    if digest[..] != trailer {
        return Err(invalid(snapshot, "checksum mismatch (truncated or corrupt)"));
    }
    let mut magic = [0u8; 16];
    File::open(snapshot)?.read_exact(&mut magic)?;
    if &magic != SQLITE_MAGIC {
        return Err(invalid(snapshot, "not a kube store snapshot"));
    }

    if let Some(dir) = db.parent() {
        fs::create_dir_all(dir)?;
    }
    let partial = partial_path(db);
    let result = (|| {
        let mut out = File::create(&partial)?;
        io::copy(&mut File::open(snapshot)?.take(body), &mut out)?;
        out.sync_all()?;
        let revision = {
            let mut conn = sqlite::open(&partial, false)?;
            sqlite::migrate(&mut conn)?;
            let revision = sqlite::head(&conn)?.0;
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
            revision
        };
        fs::rename(&partial, db)?;
        sync_parent(db)?;
        Ok(revision)
    })();
    if result.is_err() {
        for suffix in ["", "-wal", "-shm"] {
            let _ = fs::remove_file(format!("{}{suffix}", partial.display()));
        }
    }
    result
}

fn invalid(path: &Path, why: &str) -> StoreError {
    StoreError::Database(format!("{}: invalid snapshot: {why}", path.display()))
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

fn hash(reader: impl Read, limit: u64) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    io::copy(&mut reader.take(limit), &mut hasher)?;
    Ok(hasher.finalize().into())
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}
