//! Counters, a gauge and histograms kept with atomics, rendered in the Prometheus text exposition
//! format at `/metrics`.
//!
//! One [`Metrics`] belongs to one server, so several servers in one process (tests, the demo) keep
//! separate figures. Recording never blocks: every figure is an atomic, the request counts included
//! (a fixed table of route × status).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// The route labels of `sandgate_requests_total`: a fixed set, so clients cannot create label values.
/// A label not listed here is counted as `other`.
pub const ROUTES: [&str; 11] = [
    "chat/completions",
    "completions",
    "responses",
    "v1_other",
    "healthz",
    "readyz",
    "metrics",
    "sandbox",
    "playground",
    "not_found",
    "other",
];

/// Statuses counted one by one; anything outside (impossible from hyper) is counted as the nearest.
const FIRST_STATUS: u16 = 100;
const LAST_STATUS: u16 = 599;
const N_STATUSES: usize = (LAST_STATUS - FIRST_STATUS + 1) as usize;

/// Every figure sandgate exports.
#[derive(Debug)]
pub struct Metrics {
    /// `ROUTES.len() × N_STATUSES` counters, route-major.
    requests: Box<[AtomicU64]>,
    /// From sending a request upstream to its response headers.
    pub upstream_latency: Histogram,
    /// Time sandgate itself spent on a request: total minus time waiting for the upstream. Recorded
    /// only by [`Metrics::answered`], once per proxied request.
    overhead: Histogram,
    blocks_rewritten: AtomicU64,
    histories_restored: AtomicU64,
    streams_cancelled: AtomicU64,
    streams_in_flight: AtomicI64,
}

/// Upper bounds (seconds) of the upstream latency buckets.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// Upper bounds (seconds) of the overhead buckets: sandgate's own time is counted in microseconds.
pub const OVERHEAD_BUCKETS: &[f64] =
    &[0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1];

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: (0..ROUTES.len() * N_STATUSES).map(|_| AtomicU64::new(0)).collect(),
            upstream_latency: Histogram::new(LATENCY_BUCKETS),
            overhead: Histogram::new(OVERHEAD_BUCKETS),
            blocks_rewritten: AtomicU64::new(0),
            histories_restored: AtomicU64::new(0),
            streams_cancelled: AtomicU64::new(0),
            streams_in_flight: AtomicI64::new(0),
        }
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    fn request_slot(&self, route: &str, status: u16) -> Option<&AtomicU64> {
        let r = ROUTES.iter().position(|r| *r == route).unwrap_or(ROUTES.len() - 1);
        let s = usize::from(status.clamp(FIRST_STATUS, LAST_STATUS) - FIRST_STATUS);
        self.requests.get(r * N_STATUSES + s)
    }

    /// Counts one answered request.
    pub fn request(&self, route: &str, status: u16) {
        if let Some(slot) = self.request_slot(route, status) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One proxied request is done with: the time sandgate spent on it (before it went upstream, and
    /// rewriting its answer) and the Python blocks it rewrote.
    pub fn answered(&self, overhead: Duration, blocks: usize) {
        self.overhead.observe(overhead);
        self.blocks_rewritten(blocks);
    }

    pub fn blocks_rewritten(&self, n: usize) {
        if n > 0 {
            self.blocks_rewritten.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    pub fn histories_restored(&self, n: usize) {
        if n > 0 {
            self.histories_restored.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// A stream's body is on its way to the client: counted in flight until [`Metrics::stream_ended`].
    pub fn stream_started(&self) {
        self.streams_in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A stream ended, or its client left before the end (`cancelled`).
    pub fn stream_ended(&self, cancelled: bool) {
        self.streams_in_flight.fetch_sub(1, Ordering::Relaxed);
        if cancelled {
            self.streams_cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Streams whose response body is still being sent.
    pub fn streams_in_flight(&self) -> i64 {
        self.streams_in_flight.load(Ordering::Relaxed)
    }

    pub fn streams_cancelled(&self) -> u64 {
        self.streams_cancelled.load(Ordering::Relaxed)
    }

    /// The number of requests answered on a route with a status.
    pub fn requests(&self, route: &str, status: u16) -> u64 {
        self.request_slot(route, status).map_or(0, |slot| slot.load(Ordering::Relaxed))
    }

    /// The Prometheus text exposition (format version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP sandgate_requests_total Requests answered, by route and status.\n");
        out.push_str("# TYPE sandgate_requests_total counter\n");
        let mut routes: Vec<(usize, &str)> = ROUTES.iter().copied().enumerate().collect();
        routes.sort_unstable_by_key(|(_, name)| *name);
        for (r, route) in routes {
            let counts = self.requests.iter().skip(r * N_STATUSES).take(N_STATUSES);
            for (status, n) in (FIRST_STATUS..=LAST_STATUS).zip(counts) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "sandgate_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                    );
                }
            }
        }
        self.upstream_latency.render(
            &mut out,
            "sandgate_upstream_latency_seconds",
            "Time from sending a request upstream to receiving its response headers.",
        );
        self.overhead.render(
            &mut out,
            "sandgate_overhead_seconds",
            "Time sandgate spent on a request itself: total time minus time waiting for the upstream.",
        );
        counter(
            &mut out,
            "sandgate_blocks_rewritten_total",
            "Python blocks rewritten in responses.",
            self.blocks_rewritten.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "sandgate_histories_restored_total",
            "Earlier replacements restored to the original markdown in request bodies.",
            self.histories_restored.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "sandgate_streams_cancelled_total",
            "Streams the client went away from before they ended.",
            self.streams_cancelled(),
        );
        out.push_str("# HELP sandgate_streams_in_flight Event streams being sent now.\n");
        out.push_str("# TYPE sandgate_streams_in_flight gauge\n");
        let _ = writeln!(out, "sandgate_streams_in_flight {}", self.streams_in_flight());
        out
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name} {value}");
}

/// A fixed-bucket histogram of durations.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One count per bound plus one for `+Inf`; not cumulative (summed when rendered).
    buckets: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self.bounds.iter().position(|b| secs <= *b).unwrap_or(self.bounds.len());
        if let Some(bucket) = self.buckets.get(i) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0u64;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            match self.bounds.get(i) {
                Some(b) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {}", self.count());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.request("chat/completions", 200);
        m.request("chat/completions", 200);
        m.request("v1_other", 404);
        m.request("no such route", 200);
        m.upstream_latency.observe(Duration::from_millis(3));
        m.upstream_latency.observe(Duration::from_secs(500));
        m.blocks_rewritten(2);
        m.stream_started();
        let text = m.render();
        assert!(
            text.contains("sandgate_requests_total{route=\"chat/completions\",status=\"200\"} 2\n")
        );
        assert!(text.contains("sandgate_requests_total{route=\"v1_other\",status=\"404\"} 1\n"));
        assert!(text.contains("sandgate_requests_total{route=\"other\",status=\"200\"} 1\n"));
        let chat = text.find("route=\"chat/completions\"").unwrap();
        assert!(chat < text.find("route=\"other\"").unwrap(), "sorted by route");
        assert!(text.contains("sandgate_upstream_latency_seconds_bucket{le=\"0.001\"} 0\n"));
        assert!(text.contains("sandgate_upstream_latency_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("sandgate_upstream_latency_seconds_bucket{le=\"120\"} 1\n"));
        assert!(text.contains("sandgate_upstream_latency_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("sandgate_upstream_latency_seconds_count 2\n"));
        assert!(text.contains("sandgate_blocks_rewritten_total 2\n"));
        assert!(text.contains("sandgate_streams_in_flight 1\n"));
        assert_eq!(m.requests("chat/completions", 200), 2);
    }
}
