//! Errors of the storage layer.

use super::cell::CellDecodeError;

/// What went wrong reading or writing local data.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// RocksDB reported an error (I/O, corruption, a full disk...).
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// A stored value is not a valid cell.
    #[error("corrupt cell in local store: {0}")]
    Corrupt(#[from] CellDecodeError),
    /// The disk refuses writes (full, or failing): reads still work, and
    /// writes resume once it accepts them again.
    #[error(
        "the disk refuses writes ({cause}); reads still work, and writes resume once it accepts them again"
    )]
    Unwritable { cause: String },
    /// An earlier WAL fsync failed; acknowledging more writes would lie.
    #[error("write-ahead log sync failed ({0}); the write is not durable")]
    SyncFailed(String),
    /// The node is stopping and no longer accepts writes.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// A stored or received deletions entry cannot be decoded.
    #[error("corrupt deletions entry: {0}")]
    CorruptDeletions(#[from] super::deletions::DeletionsDecodeError),
    /// A write the store refuses because it breaks a bound; the message
    /// names it.
    #[error("{0}")]
    Refused(String),
    /// A background storage task died.
    #[error("storage task failed: {0}")]
    Task(String),
}

/// Result of storage operations.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
