//! Quotas per client address, token buckets of so many a minute: games created
//! (`-create-limit`), so one client cannot fill a server's memory with games; and games looked
//! up that the server does not hold (twenty times that), so one client cannot make a server
//! start a task and ask Redis for game after random game.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Addresses remembered before full buckets (the same as none) are forgotten; after a prune,
/// the next comes when the map has doubled, so that many addresses with tokens missing (an
/// attack from many addresses) cost a scan now and then, not one per request.
const PRUNE_AT: usize = 10_000;

/// Games a client address may look up per minute, per game it may create (see
/// [`AddressQuota::lookups`]).
pub const LOOKUPS_PER_CREATE: u32 = 20;

pub struct AddressQuota {
    /// Games a minute (0: no limit).
    per_minute: u32,
    buckets: Mutex<Buckets>,
}

#[derive(Default)]
struct Buckets {
    by_client: HashMap<String, (f64, Instant)>,
    prune_at: usize,
}

impl AddressQuota {
    /// The quota of games created looked up for a creation quota of `create_limit` a minute.
    pub fn lookups(create_limit: u32) -> AddressQuota {
        AddressQuota::new(create_limit.saturating_mul(LOOKUPS_PER_CREATE))
    }

    pub fn new(per_minute: u32) -> AddressQuota {
        AddressQuota {
            per_minute,
            buckets: Mutex::new(Buckets {
                by_client: HashMap::new(),
                prune_at: PRUNE_AT,
            }),
        }
    }

    /// Whether `client` may go ahead now (and counts it).
    pub fn allow(&self, client: &str) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let capacity = f64::from(self.per_minute);
        let now = Instant::now();
        let mut guard = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let buckets = &mut *guard;
        if buckets.by_client.len() >= buckets.prune_at {
            let per_sec = capacity / 60.0;
            buckets.by_client.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_sec < capacity
            });
            buckets.prune_at = PRUNE_AT.max(buckets.by_client.len() * 2);
        }
        let (tokens, at) = buckets
            .by_client
            .entry(client.to_owned())
            .or_insert((capacity, now));
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
        let quota = AddressQuota::new(3);
        assert!((0..3).all(|_| quota.allow("a")));
        assert!(!quota.allow("a"));
        assert!(quota.allow("b"));
        // Many addresses with tokens missing: pruned when the map doubles, not on every call.
        let many = AddressQuota::new(3);
        for i in 0..PRUNE_AT + 10 {
            assert!(many.allow(&format!("c{i}")));
        }
        let buckets = many.buckets.lock().unwrap();
        assert_eq!(buckets.by_client.len(), PRUNE_AT + 10);
        assert_eq!(buckets.prune_at, 2 * PRUNE_AT);
        drop(buckets);
        let unlimited = AddressQuota::lookups(0);
        assert!((0..1000).all(|_| unlimited.allow("a")));
    }
}
