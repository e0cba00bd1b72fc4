//! Download progress, reported by the library and drawn by whoever calls it.

/// Receives download progress. Implementations must be cheap; they are called for every chunk.
pub trait Progress: Send + Sync {
    /// A download of `total` bytes starts; `label` is e.g. `python 3.11.2`.
    fn start(&self, label: &str, total: u64);
    /// `done` bytes of `label` have arrived so far.
    fn advance(&self, label: &str, done: u64);
    /// `label` is complete (verified and stored) or failed.
    fn finish(&self, label: &str, ok: bool);
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: &str, _: u64) {}
    fn finish(&self, _: &str, _: bool) {}
}
