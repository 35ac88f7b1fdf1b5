//! Process health shared by the actors and the admin endpoints (R12).

use std::sync::atomic::{AtomicBool, Ordering};

/// What `/healthz/ready` and the write path need to know about the process.
///
/// A storage failure is sticky: after a failed write or fsync the page cache can no longer be
/// trusted (a later fsync may report success for data that was lost), so the process stops
/// taking writes, keeps serving what is durable, and reports itself not live so that it is
/// restarted and recovers from disk.
#[derive(Debug, Default)]
pub struct Health {
    restored: AtomicBool,
    draining: AtomicBool,
    storage_failed: AtomicBool,
}

impl Health {
    /// Recovery finished: the state on disk is loaded.
    pub fn mark_restored(&self) {
        self.restored.store(true, Ordering::SeqCst);
    }

    /// Shutdown began: stop being ready so the load balancer drains us.
    pub fn mark_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// A write or fsync failed; writes stay refused for the life of the process.
    pub fn mark_storage_failed(&self) {
        self.storage_failed.store(true, Ordering::SeqCst);
    }

    /// Ready to take traffic.
    pub fn is_ready(&self) -> bool {
        self.restored.load(Ordering::SeqCst) && !self.draining.load(Ordering::SeqCst) && !self.storage_failed()
    }

    /// Alive unless storage failed (a restart is then the way back).
    pub fn is_live(&self) -> bool {
        !self.storage_failed()
    }

    /// True once a write or fsync has failed.
    pub fn storage_failed(&self) -> bool {
        self.storage_failed.load(Ordering::SeqCst)
    }
}
