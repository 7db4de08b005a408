//! Lock-free measures that every layer records into and `/metrics` reads: [`Histogram`] (a
//! duration's distribution) and [`ERRORS`] (error answers sent, by code).
//!
//! Recording is a few relaxed atomic adds, never a lock, so a scrape cannot slow a press: the
//! web layer reads these at scrape time and hands the figures to `prometheus-client`
//! (`web::metrics`). They live here, under `node` and `bus`, because both record into them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A histogram of durations in fixed buckets ([`Histogram::BOUNDS`]), with sum and count.
#[derive(Debug)]
pub struct Histogram {
    /// Per bucket, not cumulative; the last counts what exceeds every bound (`+Inf`).
    buckets: [AtomicU64; Histogram::BOUNDS.len() + 1],
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::new()
    }
}

impl Histogram {
    /// Upper bounds of the buckets, in seconds: 0.5 ms to 2.5 s.
    pub const BOUNDS: [f64; 12] = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ];

    pub const fn new() -> Histogram {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; Histogram::BOUNDS.len() + 1],
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = Self::BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(Self::BOUNDS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Relaxed);
    }

    /// Each bucket's own count with its upper bound (the last is `f64::INFINITY`), the sum in
    /// seconds and the count (the buckets added up, so the two always agree).
    pub fn read(&self) -> Snapshot {
        let mut buckets = Vec::with_capacity(self.buckets.len());
        let mut count = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            let n = n.load(Relaxed);
            count += n;
            let bound = Self::BOUNDS.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, n));
        }
        Snapshot {
            buckets,
            sum: self.sum_micros.load(Relaxed) as f64 / 1e6,
            count,
        }
    }
}

/// A [`Histogram`] as read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// (upper bound in seconds, observations in this bucket alone).
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

/// The error codes a client can be sent (PROTOCOL.md); anything else counts as `other`.
pub const ERROR_CODES: [&str; 20] = [
    "bad_message",
    "bad_request",
    "forbidden_origin",
    "game_full",
    "game_in_progress",
    "invalid_config",
    "invalid_name",
    "invalid_state",
    "method_not_allowed",
    "not_enough_players",
    "not_found",
    "overloaded",
    "payload_too_large",
    "permission_denied",
    "rate_limited",
    "room_full",
    "unauthorized",
    "unavailable",
    "unknown_robot",
    "unsupported_media_type",
];

/// How an error answer went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// An `error` frame on a WebSocket.
    Ws,
    /// An HTTP answer with an error body (API, forms, refused upgrades).
    Http,
    /// A refused WebSocket upgrade (also counted under `Http`).
    Refused,
}

impl Via {
    pub const ALL: [Via; 3] = [Via::Ws, Via::Http, Via::Refused];
}

/// Error answers sent, by how and by code.
#[derive(Debug)]
pub struct ErrorCounts {
    /// `[via][code]`, the last code being `other`.
    counts: [[AtomicU64; ERROR_CODES.len() + 1]; 3],
}

/// Every error answer this process sent. Error frames and bodies are made in the web and
/// game layers alike, some by actix-web's `ResponseError` that sees no state: one process-wide
/// tally is what `/metrics` reports anyway.
pub static ERRORS: ErrorCounts = ErrorCounts {
    counts: [const { [const { AtomicU64::new(0) }; ERROR_CODES.len() + 1] }; 3],
};

impl ErrorCounts {
    pub fn count(&self, via: Via, code: &str) {
        let i = ERROR_CODES
            .iter()
            .position(|c| *c == code)
            .unwrap_or(ERROR_CODES.len());
        self.counts[via as usize][i].fetch_add(1, Relaxed);
    }

    /// Every (code, count) for `via`, `other` last.
    pub fn read(&self, via: Via) -> Vec<(&'static str, u64)> {
        ERROR_CODES
            .iter()
            .copied()
            .chain(["other"])
            .zip(&self.counts[via as usize])
            .map(|(code, n)| (code, n.load(Relaxed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_add_up_to_the_count() {
        let h = Histogram::new();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(9));
        let s = h.read();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets.len(), Histogram::BOUNDS.len() + 1);
        assert_eq!(s.buckets[0], (0.0005, 1));
        assert_eq!(s.buckets[3], (0.005, 1));
        assert_eq!(s.buckets[12], (f64::INFINITY, 1));
        assert!((s.sum - 9.0033).abs() < 1e-9, "{}", s.sum);
    }

    #[test]
    fn errors_are_counted_by_code_and_the_rest_as_other() {
        let errors = ErrorCounts {
            counts: [const { [const { AtomicU64::new(0) }; ERROR_CODES.len() + 1] }; 3],
        };
        errors.count(Via::Ws, "overloaded");
        errors.count(Via::Ws, "overloaded");
        errors.count(Via::Ws, "what");
        let ws = errors.read(Via::Ws);
        assert!(ws.contains(&("overloaded", 2)) && ws.contains(&("other", 1)));
        assert!(errors.read(Via::Http).iter().all(|(_, n)| *n == 0));
    }
}
