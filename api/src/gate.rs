//! Admission control: at most `max_concurrent_jobs` jobs run at once, at most `max_queued_jobs`
//! wait for a slot; anything past that is refused at once (503) instead of growing a backlog.
//! An admitted job also gets its span and clock here ([`Gate::admit`]), and its end is recorded
//! in one place ([`JobRecord`]), for `/execute` and WebSocket jobs alike.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Span;

use crate::engine::JobRequest;
use crate::metrics::Metrics;

/// The job slots.
pub struct Gate {
    slots: Arc<Semaphore>,
    max_running: usize,
    max_queued: u64,
    metrics: Arc<Metrics>,
}

/// A running job's slot; released on drop.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The queue is full.
#[derive(Debug, thiserror::Error)]
#[error("server is busy: {running} jobs are running and {queued} are waiting; try again later")]
pub struct Busy {
    pub running: usize,
    pub queued: u64,
}

struct QueuedGuard<'a>(&'a Metrics);

impl Drop for QueuedGuard<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Gate {
    pub fn new(max_running: usize, max_queued: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_running)),
            max_running,
            max_queued: max_queued as u64,
            metrics,
        }
    }

    fn slot(&self, permit: OwnedSemaphorePermit) -> Slot {
        self.metrics.running.fetch_add(1, Ordering::Relaxed);
        Slot {
            _permit: permit,
            metrics: Arc::clone(&self.metrics),
        }
    }

    /// Takes a slot, waiting in the queue if there is room in it.
    pub async fn enter(&self) -> Result<Slot, Busy> {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(self.slot(permit));
        }
        let queued = &self.metrics.queued;
        let mut current = queued.load(Ordering::Relaxed);
        loop {
            if current >= self.max_queued {
                self.metrics.job_rejected();
                return Err(Busy {
                    running: self.max_running,
                    queued: current,
                });
            }
            match queued.compare_exchange(current, current + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        let _guard = QueuedGuard(&self.metrics);
        let permit = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .expect("the job semaphore is never closed");
        Ok(self.slot(permit))
    }

    /// Admits `job`: a slot as [`Gate::enter`] gives it, then the job's span (`job`, with a fresh
    /// `id`, the `kind`, `language` and `version`) and its clock.
    pub async fn admit(&self, kind: JobKind, job: &JobRequest) -> Result<(Slot, JobRecord), Busy> {
        let slot = self.enter().await?;
        let span = tracing::info_span!(
            "job",
            id = %uuid::Uuid::new_v4(),
            kind = kind.as_str(),
            language = %job.runtime.language,
            version = %job.runtime.version,
        );
        let record = JobRecord {
            kind,
            span,
            started: Instant::now(),
            metrics: Arc::clone(&self.metrics),
        };
        Ok((slot, record))
    }

    /// Waits until every running job has released its slot.
    pub async fn drain(&self) {
        let _all = self.slots.acquire_many(self.max_running as u32).await;
    }
}

/// What a job is, in its span and in the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// `POST /api/v2/execute`.
    Execute,
    /// A job of a WebSocket session.
    Interactive,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Execute => "execute",
            Self::Interactive => "interactive",
        }
    }
}

/// An admitted job's span and clock, and the one place its end is recorded. Dropped without
/// [`JobRecord::failed`] or [`JobRecord::finished`], it records nothing.
pub struct JobRecord {
    kind: JobKind,
    span: Span,
    started: Instant,
    metrics: Arc<Metrics>,
}

impl JobRecord {
    /// The job's span: the job's own work and logs go in it.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// The job could not run: counted with the outcome `error` (the caller logs why).
    pub fn failed(self) {
        self.metrics
            .job_finished(self.kind.as_str(), "error", self.started.elapsed());
    }

    /// The job ran: counted with `outcome` (see [`Metrics::job_finished`]) and logged in its span.
    pub fn finished(self, outcome: &str) {
        let elapsed = self.started.elapsed();
        self.metrics
            .job_finished(self.kind.as_str(), outcome, elapsed);
        let ms = elapsed.as_millis() as u64;
        self.span.in_scope(|| match self.kind {
            JobKind::Execute => tracing::info!(%outcome, ms, "job done"),
            JobKind::Interactive => tracing::info!(%outcome, ms, "interactive job done"),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_past_the_queue() {
        let metrics = Arc::new(Metrics::default());
        let gate = Arc::new(Gate::new(1, 1, Arc::clone(&metrics)));
        let first = gate.enter().await.unwrap();
        let waiter = {
            let gate = Arc::clone(&gate);
            tokio::spawn(async move { gate.enter().await.map(|_| ()) })
        };
        while metrics.queued.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        let err = gate.enter().await.err().expect("queue is full");
        assert_eq!(err.queued, 1);
        drop(first);
        waiter.await.unwrap().unwrap();
        assert_eq!(metrics.queued.load(Ordering::Relaxed), 0);
        assert_eq!(metrics.running.load(Ordering::Relaxed), 0);
    }
}
