//! Errors of the actor layer. The HTTP layer maps each to one status code.

use std::path::PathBuf;

/// Why a reprice or read could not be served by the actors.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ActorError {
    /// A bounded mailbox is full: the caller should retry later (503).
    #[error("the service is at capacity; retry shortly")]
    Overloaded,
    /// Storage failed earlier; writes are refused until restart (503).
    #[error("storage is unavailable; writes are refused until the service restarts")]
    StorageUnavailable,
    /// The actor stopped (shutdown in progress).
    #[error("the service is shutting down")]
    ShuttingDown,
}

/// A failure reading or writing the data directory.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O call failed on a path.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the data directory.
    #[error("data directory {0} is in use by another repricer process")]
    Locked(PathBuf),
    /// A file does not follow the format.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl StorageError {
    /// Wraps an I/O error with what was being done and where.
    pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StorageError {
        let path = path.into();
        move |source| StorageError::Io { action, path, source }
    }
}
