//! Game creation quota per client address: a token bucket of `-create-limit` games a minute,
//! so one client cannot fill a server's memory with games.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Addresses remembered before full buckets (the same as none) are forgotten.
const PRUNE_AT: usize = 10_000;

pub struct CreateQuota {
    /// Games a minute (0: no limit).
    per_minute: u32,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl CreateQuota {
    pub fn new(per_minute: u32) -> CreateQuota {
        CreateQuota {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `client` may create a game now (and counts it).
    pub fn allow(&self, client: &str) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let capacity = f64::from(self.per_minute);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= PRUNE_AT {
            let per_sec = capacity / 60.0;
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_sec < capacity
            });
        }
        let (tokens, at) = buckets.entry(client.to_owned()).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * capacity / 60.0).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_quota_and_others_theirs() {
        let quota = CreateQuota::new(3);
        assert!((0..3).all(|_| quota.allow("a")));
        assert!(!quota.allow("a"));
        assert!(quota.allow("b"));
        let unlimited = CreateQuota::new(0);
        assert!((0..1000).all(|_| unlimited.allow("a")));
    }
}
