//! Prometheus metrics in the text exposition format, kept by hand (a few counters, gauges and one
//! histogram do not need a metrics crate).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the job duration histogram, seconds.
const BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The server's metrics.
#[derive(Default)]
pub struct Metrics {
    /// (kind, outcome) → jobs finished.
    jobs: Mutex<BTreeMap<(&'static str, String), u64>>,
    durations: Mutex<BTreeMap<&'static str, Histogram>>,
    /// HTTP status → responses.
    responses: Mutex<BTreeMap<u16, u64>>,
    pub(crate) running: AtomicU64,
    pub(crate) queued: AtomicU64,
    rejected: AtomicU64,
}

impl Metrics {
    /// Records a finished job: `kind` is `execute` or `interactive`; `outcome` is a stage status
    /// (`RE`, `TO`, …), `ok`, `compile_error` or `error`.
    pub fn job_finished(&self, kind: &'static str, outcome: &str, duration: Duration) {
        *self
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((kind, outcome.to_owned()))
            .or_default() += 1;
        let secs = duration.as_secs_f64();
        let mut durations = self.durations.lock().unwrap_or_else(|e| e.into_inner());
        let h = durations.entry(kind).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// Records a job refused because the queue was full.
    pub fn job_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Records an HTTP response.
    pub fn response(&self, status: u16) {
        *self
            .responses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(status)
            .or_default() += 1;
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP piston_jobs_total Jobs finished, by kind and outcome."
        );
        let _ = writeln!(out, "# TYPE piston_jobs_total counter");
        for ((kind, outcome), n) in self.jobs.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                out,
                "piston_jobs_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP piston_job_duration_seconds Time from start to end of a job, queueing excluded."
        );
        let _ = writeln!(out, "# TYPE piston_job_duration_seconds histogram");
        for (kind, h) in self
            .durations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "piston_job_duration_seconds_bucket{{kind=\"{kind}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "piston_job_duration_seconds_bucket{{kind=\"{kind}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "piston_job_duration_seconds_sum{{kind=\"{kind}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "piston_job_duration_seconds_count{{kind=\"{kind}\"}} {}",
                h.count
            );
        }
        let gauges = [
            (
                "piston_jobs_running",
                "Jobs running now.",
                self.running.load(Ordering::Relaxed),
            ),
            (
                "piston_jobs_queued",
                "Jobs waiting for a slot now.",
                self.queued.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP piston_jobs_rejected_total Jobs refused with 503 because the queue was full."
        );
        let _ = writeln!(out, "# TYPE piston_jobs_rejected_total counter");
        let _ = writeln!(
            out,
            "piston_jobs_rejected_total {}",
            self.rejected.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP piston_http_responses_total HTTP responses, by status code."
        );
        let _ = writeln!(out, "# TYPE piston_http_responses_total counter");
        for (status, n) in self
            .responses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(out, "piston_http_responses_total{{code=\"{status}\"}} {n}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        m.job_finished("execute", "ok", Duration::from_millis(30));
        m.job_finished("execute", "TO", Duration::from_secs(3));
        m.response(200);
        let text = m.render();
        assert!(
            text.contains("piston_jobs_total{kind=\"execute\",outcome=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("piston_job_duration_seconds_bucket{kind=\"execute\",le=\"0.05\"} 1")
        );
        assert!(text.contains("piston_job_duration_seconds_count{kind=\"execute\"} 2"));
        assert!(text.contains("piston_http_responses_total{code=\"200\"} 1"));
    }
}
