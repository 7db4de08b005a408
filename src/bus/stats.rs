//! What the Redis bus measures for `/metrics`, recorded at its measuring points (the writer's
//! round trip and answers, lease renewals, the supervisor receiving a game's update) and read
//! by the web layer through [`Bus::stats`](super::Bus::stats). Lock-free: see
//! [`crate::measure`].
//!
//! Relay lag needs the publishing time in the message: the writer puts `"at":<ms since the
//! Unix epoch>` first in what a save publishes. The field is optional and ignored by anyone
//! who does not look for it, so servers with and without it run in one cluster; it measures
//! wall clocks on two machines, so it is only as good as their clock sync (NTP: milliseconds).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::measure::Histogram;

/// The Redis bus's own figures.
#[derive(Debug, Default)]
pub struct BusStats {
    /// One pipelined batch of saves, from sending to Redis's answer.
    pub save_latency: Histogram,
    /// From an owner sending a save to this server receiving what it published.
    pub relay_lag: Histogram,
    /// Saves and ends refused because another server owns the game (fenced writes).
    pub fenced: AtomicU64,
    /// Leases found gone: a renewal or a save answered that nobody, or another server, owns
    /// the game.
    pub leases_lost: AtomicU64,
}

const STAMP: &str = "{\"at\":";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl BusStats {
    /// `publish` (a JSON object) with the time it is sent as its first field.
    pub fn stamp(publish: &str) -> String {
        match publish.strip_prefix('{') {
            Some(rest) => format!("{STAMP}{},{rest}", now_ms()),
            None => publish.to_owned(),
        }
    }

    /// A game's update was received: records how long it took, when it says when it was sent.
    pub fn heard(&self, payload: &[u8]) {
        if let Some(at) = sent_at(payload) {
            let lag = now_ms().saturating_sub(at);
            self.relay_lag.observe(Duration::from_millis(lag));
        }
    }

    pub fn lost_leases(&self, n: usize) {
        if n > 0 {
            self.leases_lost.fetch_add(n as u64, Relaxed);
        }
    }
}

/// The `at` of a stamped message.
fn sent_at(payload: &[u8]) -> Option<u64> {
    let rest = payload.strip_prefix(STAMP.as_bytes())?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamped_message_is_still_the_same_json_and_its_lag_is_recorded() {
        let publish = r#"{"type":"scores","origin":"n1","version":3}"#;
        let stamped = BusStats::stamp(publish);
        let v: serde_json::Value = serde_json::from_str(&stamped).unwrap();
        assert_eq!(v["type"], "scores");
        assert_eq!(v["version"], 3);
        assert!(v["at"].as_u64().unwrap() > 1_600_000_000_000);
        let stats = BusStats::default();
        stats.heard(stamped.as_bytes());
        stats.heard(publish.as_bytes());
        assert_eq!(stats.relay_lag.read().count, 1);
    }
}
