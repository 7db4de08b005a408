//! The nemesis's schedule: which faults, on what, when and for how long, drawn from a seed by a
//! small PRNG of its own (splitmix64), so a seed and a length give the same schedule on every
//! machine and every run. Also the seeds and the length a run uses (fixed, or from the
//! environment).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// How long a fault is held, in milliseconds: at least past a lease, at most twelve of them.
const HOLD_MS: (u64, u64) = (1_500, 12_000);
/// The quiet time between one episode (one fault, or two overlapping) and the next.
const GAP_MS: (u64, u64) = (1_000, 4_000);
/// The delay a slowed link adds each way.
const SLOW_MS: (u64, u64) = (50, 300);
/// An episode has two overlapping faults one time in this many.
const TWO_IN: u64 = 3;

/// splitmix64: a tiny, good-enough generator whose output depends on the seed alone.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A number in `lo..=hi`.
    fn between(&mut self, (lo, hi): (u64, u64)) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

/// The kinds of fault, in the order the figures list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Kind {
    Cut,
    Slow,
    Freeze,
    Kill,
    RedisFreeze,
    RedisKill,
    RedisEmpty,
}

impl Kind {
    pub(super) const ALL: [Kind; 7] = [
        Kind::Cut,
        Kind::Slow,
        Kind::Freeze,
        Kind::Kill,
        Kind::RedisFreeze,
        Kind::RedisKill,
        Kind::RedisEmpty,
    ];

    /// The name the summary lines (and scripts/nemesis) use.
    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Cut => "cut",
            Kind::Slow => "slow",
            Kind::Freeze => "freeze",
            Kind::Kill => "kill",
            Kind::RedisFreeze => "redis_freeze",
            Kind::RedisKill => "redis_kill",
            Kind::RedisEmpty => "redis_empty",
        }
    }

    fn on_redis(self) -> bool {
        matches!(self, Kind::RedisFreeze | Kind::RedisKill | Kind::RedisEmpty)
    }
}

/// One fault and what it is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    /// The server's link to Redis cut (its proxy holds every byte, closes nothing).
    Cut(usize),
    /// The server's link to Redis delayed this long each way.
    Slow(usize, Duration),
    /// The server frozen (SIGSTOP), past its lease.
    Freeze(usize),
    /// The server killed (SIGKILL), started again when the fault ends.
    Kill(usize),
    /// Redis frozen (SIGSTOP).
    RedisFreeze,
    /// Redis killed (SIGKILL), started again from its AOF when the fault ends.
    RedisKill,
    /// Redis killed and its data files deleted; started again empty when the fault ends.
    RedisEmpty,
}

/// What a fault acts on: two faults at once never share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    Server(usize),
    Redis,
}

impl Fault {
    pub(super) fn kind(self) -> Kind {
        match self {
            Fault::Cut(_) => Kind::Cut,
            Fault::Slow(..) => Kind::Slow,
            Fault::Freeze(_) => Kind::Freeze,
            Fault::Kill(_) => Kind::Kill,
            Fault::RedisFreeze => Kind::RedisFreeze,
            Fault::RedisKill => Kind::RedisKill,
            Fault::RedisEmpty => Kind::RedisEmpty,
        }
    }

    pub(super) fn target(self) -> Target {
        match self {
            Fault::Cut(i) | Fault::Slow(i, _) | Fault::Freeze(i) | Fault::Kill(i) => {
                Target::Server(i)
            }
            Fault::RedisFreeze | Fault::RedisKill | Fault::RedisEmpty => Target::Redis,
        }
    }

    /// A fault on anything but `busy`, drawn from `rng`.
    fn draw(rng: &mut Rng, servers: usize, busy: Option<Target>) -> Fault {
        let kinds: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|k| !(k.on_redis() && busy == Some(Target::Redis)))
            .collect();
        let kind = kinds[rng.below(kinds.len() as u64) as usize];
        let free: Vec<usize> = (0..servers)
            .filter(|i| busy != Some(Target::Server(*i)))
            .collect();
        let server = free[rng.below(free.len() as u64) as usize];
        match kind {
            Kind::Cut => Fault::Cut(server),
            Kind::Slow => Fault::Slow(server, Duration::from_millis(rng.between(SLOW_MS))),
            Kind::Freeze => Fault::Freeze(server),
            Kind::Kill => Fault::Kill(server),
            Kind::RedisFreeze => Fault::RedisFreeze,
            Kind::RedisKill => Fault::RedisKill,
            Kind::RedisEmpty => Fault::RedisEmpty,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Cut(i) => write!(f, "server {i}'s Redis link cut"),
            Fault::Slow(i, d) => write!(f, "server {i}'s Redis link slowed by {d:?} each way"),
            Fault::Freeze(i) => write!(f, "server {i} frozen (SIGSTOP)"),
            Fault::Kill(i) => write!(f, "server {i} killed (SIGKILL), then started again"),
            Fault::RedisFreeze => write!(f, "Redis frozen (SIGSTOP)"),
            Fault::RedisKill => write!(f, "Redis killed, then started again from its AOF"),
            Fault::RedisEmpty => write!(f, "Redis killed, its files deleted, started again empty"),
        }
    }
}

/// A fault at its time: applied `start` after the schedule begins, healed `hold` later.
#[derive(Debug, Clone, Copy)]
pub(super) struct Planned {
    pub fault: Fault,
    pub start: Duration,
    pub hold: Duration,
}

impl Planned {
    pub(super) fn end(&self) -> Duration {
        self.start + self.hold
    }
}

/// The faults of one run, in the order they start.
pub(super) struct Schedule {
    pub seed: u64,
    pub secs: u64,
    pub faults: Vec<Planned>,
}

impl Schedule {
    /// Episodes of one fault, or (one time in [`TWO_IN`]) two overlapping faults on different
    /// targets, each held 1.5–12 s, with 1–4 s of quiet between episodes; every fault healed
    /// within `secs` of the start.
    pub(super) fn new(seed: u64, secs: u64, servers: usize) -> Schedule {
        let total = secs * 1000;
        let mut rng = Rng::new(seed);
        let mut faults = Vec::new();
        let mut t = 0;
        while t + HOLD_MS.0 <= total {
            let hold = rng.between(HOLD_MS).min(total - t);
            let first = Fault::draw(&mut rng, servers, None);
            faults.push(planned(first, t, hold));
            let mut end = t + hold;
            let second_at = t + rng.below(hold);
            if rng.below(TWO_IN) == 0 && second_at + HOLD_MS.0 <= total {
                let hold = rng.between(HOLD_MS).min(total - second_at);
                let second = Fault::draw(&mut rng, servers, Some(first.target()));
                faults.push(planned(second, second_at, hold));
                end = end.max(second_at + hold);
            }
            t = end + rng.between(GAP_MS);
        }
        Schedule { seed, secs, faults }
    }

    /// When the last fault is healed, from the start.
    pub(super) fn end(&self) -> Duration {
        self.faults
            .iter()
            .map(Planned::end)
            .max()
            .unwrap_or_default()
    }

    /// How many faults of each kind (every kind listed).
    pub(super) fn counts(&self) -> BTreeMap<Kind, usize> {
        let mut counts: BTreeMap<Kind, usize> = Kind::ALL.iter().map(|k| (*k, 0)).collect();
        for p in &self.faults {
            *counts.entry(p.fault.kind()).or_default() += 1;
        }
        counts
    }

    /// How to run this schedule again.
    pub(super) fn replay(&self) -> String {
        format!(
            "NEMESIS_SEED={} NEMESIS_SECS={} cargo test --test it faults::nemesis -- --nocapture",
            self.seed, self.secs
        )
    }
}

fn planned(fault: Fault, start_ms: u64, hold_ms: u64) -> Planned {
    Planned {
        fault,
        start: Duration::from_millis(start_ms),
        hold: Duration::from_millis(hold_ms),
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "schedule of seed {} ({} s, {} fault(s)):",
            self.seed,
            self.secs,
            self.faults.len()
        )?;
        for p in &self.faults {
            writeln!(
                f,
                "  +{:6.2}s for {:5.2}s: {}",
                p.start.as_secs_f64(),
                p.hold.as_secs_f64(),
                p.fault
            )?;
        }
        Ok(())
    }
}

/// The seeds to run: `NEMESIS_SEED=<seed>` (one); `NEMESIS_SEEDS=<a>,<b>,…` (these) or
/// `NEMESIS_SEEDS=<n>` (n random ones); otherwise `fixed`.
pub(super) fn seeds(fixed: &[u64]) -> Vec<u64> {
    let parse = |s: &str| -> u64 {
        s.trim()
            .parse()
            .unwrap_or_else(|_| panic!("not a seed: {s:?}"))
    };
    if let Some(one) = env("NEMESIS_SEED") {
        return vec![parse(&one)];
    }
    match env("NEMESIS_SEEDS") {
        Some(list) if list.contains(',') => list
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(parse)
            .collect(),
        Some(count) => (0..parse(&count)).map(|_| rand::random::<u64>()).collect(),
        None => fixed.to_vec(),
    }
}

/// The schedule's length: `NEMESIS_SECS`, else `default`.
pub(super) fn secs(default: u64) -> u64 {
    env("NEMESIS_SECS").map_or(default, |s| {
        s.trim()
            .parse()
            .unwrap_or_else(|_| panic!("NEMESIS_SECS is not a number of seconds: {s:?}"))
    })
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_schedule_every_time() {
        let a = Schedule::new(7, 30, 3).to_string();
        assert_eq!(a, Schedule::new(7, 30, 3).to_string());
        assert_ne!(a, Schedule::new(8, 30, 3).to_string());
    }

    #[test]
    fn faults_are_held_within_bounds_and_never_share_a_target() {
        for seed in 0..200 {
            let s = Schedule::new(seed, 60, 3);
            for (i, p) in s.faults.iter().enumerate() {
                assert!(p.end() <= Duration::from_secs(60), "{s}");
                assert!(p.hold >= Duration::from_millis(HOLD_MS.0), "{s}");
                assert!(p.hold <= Duration::from_millis(HOLD_MS.1), "{s}");
                // At most two at once, on different targets.
                let overlapping: Vec<&Planned> =
                    s.faults[..i].iter().filter(|q| q.end() > p.start).collect();
                assert!(overlapping.len() <= 1, "{s}");
                assert!(
                    overlapping
                        .iter()
                        .all(|q| q.fault.target() != p.fault.target()),
                    "{s}"
                );
            }
        }
    }
}
