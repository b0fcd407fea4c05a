//! Store errors. The messages are etcd's (`rpctypes`), because etcd clients match on
//! them and the etcd endpoint passes them through unchanged.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted { compact_revision: i64 },
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: request is too large")]
    TooLarge,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: too many changes in one revision")]
    TooManyChanges,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    #[error("etcdserver: the database is read-only: {0}")]
    ReadOnly(String),
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error(
        "store: an fsync of the write-ahead log failed; the outcome of writes since is unknown \
         and the store refuses every request until it is restarted"
    )]
    SyncFailed,
    #[error("store database: {0}")]
    Database(String),
    #[error("store I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// An error of the database or the disk rather than a refusal of the request.
    pub(crate) fn is_storage(&self) -> bool {
        matches!(
            self,
            StoreError::NoSpace
                | StoreError::ReadOnly(_)
                | StoreError::Stopped
                | StoreError::SyncFailed
                | StoreError::Database(_)
                | StoreError::Io(_)
        )
    }

    /// The same error again, for every request of a batch that failed as a whole.
    pub(crate) fn same(&self) -> StoreError {
        match self {
            StoreError::NoSpace => StoreError::NoSpace,
            StoreError::ReadOnly(m) => StoreError::ReadOnly(m.clone()),
            StoreError::SyncFailed => StoreError::SyncFailed,
            other => StoreError::Database(other.to_string()),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match err.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => StoreError::NoSpace,
            Some(ErrorCode::ReadOnly) | Some(ErrorCode::CannotOpen) | Some(ErrorCode::PermissionDenied) => {
                StoreError::ReadOnly(err.to_string())
            }
            _ => StoreError::Database(err.to_string()),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
