//! Running blocking storage calls (synced writes, fsyncs, range scans) off
//! the async threads.
//!
//! A real node hands them to tokio's blocking pool. The simulation runs
//! every node on one thread and must replay exactly, so a thread that
//! called [`run_inline_on_this_thread`] runs them in place instead: the
//! simulated stores are in memory, and another thread's timing must not
//! decide what happens first.

use std::cell::Cell;

use super::error::StorageError;

thread_local! {
    static INLINE: Cell<bool> = const { Cell::new(false) };
}

/// From now on, blocking storage work started on this thread runs in
/// place (the simulation).
pub fn run_inline_on_this_thread() {
    INLINE.with(|inline| inline.set(true));
}

/// Runs `work` on the blocking pool (or in place, see the module docs).
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StorageError> {
    if INLINE.with(Cell::get) {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageError::Task(e.to_string()))
}
