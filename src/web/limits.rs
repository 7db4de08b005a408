//! What one WebSocket may send: a budget for every frame, and a human rate of presses.
//!
//! Both are token buckets, refilled by the clock and checked before a frame is parsed, so a
//! client that sends as fast as it can costs its server little more than reading the bytes,
//! and never costs other players their latency.

use std::time::Duration;

use tokio::time::Instant;

/// Presses a player may make per second (a sane human rate), with a burst of the same size.
pub const PRESSES_PER_SECOND: f64 = 30.0;
/// A connection over its frame budget this long is closed.
pub const OVER_BUDGET_CLOSE: Duration = Duration::from_secs(5);
/// At most one `rate_limited` answer this often while frames are dropped.
const TELL_EVERY: Duration = Duration::from_secs(1);

/// A token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub fn new(rate: f64, burst: f64, now: Instant) -> Bucket {
        Bucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
    }

    /// Takes a token if there is one.
    pub fn allow(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The human rate of presses.
pub fn presses(now: Instant) -> Bucket {
    Bucket::new(PRESSES_PER_SECOND, PRESSES_PER_SECOND, now)
}

/// What to do with one frame, by the connection's frame budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within budget: read it.
    Take,
    /// Over budget: drop it unread.
    Drop,
    /// Over budget: drop it, and say `rate_limited` (at most once a second).
    DropAndTell,
    /// Over budget for [`OVER_BUDGET_CLOSE`]: close the connection (1008).
    Close,
}

/// Every frame a connection sends, of any kind or validity, against one budget.
#[derive(Debug, Clone)]
pub struct FrameBudget {
    /// `None`: no limit (`-ws-frame-rate 0`).
    bucket: Option<Bucket>,
    /// Since when frames have been dropped with the budget not refilled in between.
    over_since: Option<Instant>,
    told_at: Option<Instant>,
}

impl FrameBudget {
    /// `rate` frames a second, bursts of twice that; 0: no limit.
    pub fn new(rate: u32, now: Instant) -> FrameBudget {
        let rate = f64::from(rate);
        FrameBudget {
            bucket: (rate > 0.0).then(|| Bucket::new(rate, 2.0 * rate, now)),
            over_since: None,
            told_at: None,
        }
    }

    /// Not flooding: the budget refilled to half since frames were last dropped.
    pub fn calm(&self) -> bool {
        self.over_since.is_none()
    }

    pub fn check(&mut self, now: Instant) -> Verdict {
        let Some(bucket) = &mut self.bucket else {
            return Verdict::Take;
        };
        let allowed = bucket.allow(now);
        // A client that lets the budget refill to half is no longer flooding; one that keeps
        // it empty is, even though a frame gets through now and then as tokens trickle in.
        if bucket.tokens >= bucket.burst / 2.0 {
            self.over_since = None;
        }
        if allowed {
            return Verdict::Take;
        }
        let since = *self.over_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= OVER_BUDGET_CLOSE {
            return Verdict::Close;
        }
        match self.told_at {
            Some(at) if now.saturating_duration_since(at) < TELL_EVERY => Verdict::Drop,
            _ => {
                self.told_at = Some(now);
                Verdict::DropAndTell
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presses_allow_a_human_rate_and_drop_a_flood() {
        let start = Instant::now();
        let mut limit = presses(start);
        // A flood within one instant: the burst passes, the rest does not.
        let passed = (0..100).filter(|_| limit.allow(start)).count();
        assert_eq!(passed, 30);
        // 20 presses a second for 10 seconds: never limited.
        let mut steady = presses(start);
        let all = (0..200).all(|i| steady.allow(start + Duration::from_millis(50 * i)));
        assert!(all);
    }

    #[test]
    fn a_flood_is_told_once_a_second_then_closed_after_five() {
        let start = Instant::now();
        let mut budget = FrameBudget::new(40, start);
        // 1,000 frames a second for 6 seconds.
        let mut verdicts = Vec::new();
        for i in 0..6_000u64 {
            let v = budget.check(start + Duration::from_millis(i));
            verdicts.push(v);
            if v == Verdict::Close {
                break;
            }
        }
        let taken = verdicts.iter().filter(|v| **v == Verdict::Take).count();
        let told = verdicts
            .iter()
            .filter(|v| **v == Verdict::DropAndTell)
            .count();
        assert_eq!(verdicts.last(), Some(&Verdict::Close));
        // The burst, then what trickled in over ~5 s: about 80 + 5 × 40.
        assert!((260..=300).contains(&taken), "{taken} taken");
        // Told once a second: at 80 ms, then every second after.
        assert!((5..=6).contains(&told), "{told} told");
        let closed_at = verdicts.len() as u64;
        assert!(
            (5_000..5_200).contains(&closed_at),
            "closed after {closed_at} ms"
        );
    }

    #[test]
    fn a_burst_then_calm_is_never_closed() {
        let start = Instant::now();
        let mut budget = FrameBudget::new(40, start);
        let mut now = start;
        // Ten times: 120 frames at once (40 dropped), then 4 s of quiet.
        for _ in 0..10 {
            for _ in 0..120 {
                assert_ne!(budget.check(now), Verdict::Close);
            }
            now += Duration::from_secs(4);
        }
        // Steady at the budget: everything taken.
        let mut steady = FrameBudget::new(40, start);
        let all =
            (0..400).all(|i| steady.check(start + Duration::from_millis(25 * i)) == Verdict::Take);
        assert!(all);
    }
}
