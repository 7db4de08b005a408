//! Presence across the cluster (PROTOCOL.md, "presence", "host hand-over").
//!
//! A robot is connected while a socket of its player is open on any server. Each server knows
//! only its own sockets, so:
//! - a server that is not the game's owner sends the owner a *report* — the robots with a
//!   socket here, and those whose socket opened here since its last report — whenever that
//!   changes, when the owner changes, and every [`PresenceTiming::refresh`] while it has any
//!   ([`Reporter`]);
//! - the owner merges its own sockets with the reports, forgets a report not refreshed within
//!   [`PresenceTiming::expiry`] (its server died), and applies the result to the game: robots
//!   marked away or back, the admin role handed on after [`PresenceTiming::handover`], robots
//!   away in `setup` for [`PresenceTiming::remove`] removed ([`Tracker`]).
//!
//! Reports are snapshots, not changes: a lost or repeated one does no harm, the next one
//! corrects it. Only the owner's conclusion (`connected` on each robot) is stored and shown.
//! A robot just joined (its player on the way to the race page) is kept connected for one
//! expiry until a socket of its player opens somewhere; so is every robot on a new owner, which
//! knows no reports yet. A socket that opened is an event, not a state: it ends that wait
//! however soon it closed again — the owner hears of it ([`Tracker::arrived`]) even when the
//! socket closed before any snapshot listed it, and from a report that came too late to
//! count as a snapshot.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::game::{Game, State};

/// Presence's durations (the last two can be shortened by flags, for tests).
#[derive(Debug, Clone)]
pub struct PresenceTiming {
    /// A server with players here reports at least this often.
    pub refresh: Duration,
    /// A report not refreshed for this long is forgotten (its server is gone).
    pub expiry: Duration,
    /// The admin away this long: the role passes on.
    pub handover: Duration,
    /// A robot away this long in `setup` is removed.
    pub remove: Duration,
}

impl PresenceTiming {
    pub fn new(handover: Duration, remove: Duration) -> PresenceTiming {
        PresenceTiming {
            refresh: Duration::from_secs(3),
            expiry: Duration::from_secs(10),
            handover,
            remove,
        }
    }
}

/// One server's last report.
struct Heard {
    counter: u64,
    robots: Vec<String>,
    at: Instant,
}

/// What the owner did to the game.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub away: Vec<String>,
    pub back: Vec<String>,
    pub new_admin: Option<String>,
    pub removed: Vec<String>,
}

impl Changes {
    pub fn any(&self) -> bool {
        !(self.away.is_empty()
            && self.back.is_empty()
            && self.new_admin.is_none()
            && self.removed.is_empty())
    }
}

/// The owner's side: reports by sending process, and since when each robot is away.
#[derive(Default)]
pub struct Tracker {
    reports: HashMap<String, Heard>,
    away_since: HashMap<String, Instant>,
    /// Until then, a robot nobody reports keeps its stored state (a new owner, a robot whose
    /// player is still on the way from the join form to the race page).
    unsure_until: HashMap<String, Instant>,
}

impl Tracker {
    /// Starts from a stored game: nobody has reported yet.
    pub fn taking_over(game: &Game, now: Instant, t: &PresenceTiming) -> Tracker {
        let mut tracker = Tracker::default();
        for robot in &game.robots {
            tracker
                .unsure_until
                .insert(robot.id.clone(), now + t.expiry);
            if !robot.connected {
                tracker.away_since.insert(robot.id.clone(), now);
            }
        }
        tracker
    }

    /// A robot just joined: its player's socket is on the way.
    pub fn joined(&mut self, robot_id: &str, now: Instant, t: &PresenceTiming) {
        self.unsure_until
            .insert(robot_id.to_owned(), now + t.expiry);
    }

    /// A socket of each of these robots opened (here, or on the server that reported it):
    /// their players came, so from now on only their sockets count.
    pub fn arrived<'a>(&mut self, robots: impl IntoIterator<Item = &'a String>) {
        for id in robots {
            self.unsure_until.remove(id);
        }
    }

    /// A server's report: `robots` with a socket there, `arrived` those whose socket opened
    /// there since its last report. Older reports from the same process (by counter) are
    /// ignored as snapshots; the sockets they saw opened did open.
    pub fn report(
        &mut self,
        origin: &str,
        counter: u64,
        robots: Vec<String>,
        arrived: &[String],
        now: Instant,
    ) {
        self.arrived(robots.iter().chain(arrived));
        if let Some(last) = self.reports.get(origin) {
            if counter < last.counter {
                return;
            }
        }
        self.reports.insert(
            origin.to_owned(),
            Heard {
                counter,
                robots,
                at: now,
            },
        );
    }

    /// Redis is unreachable: other servers cannot report, which says nothing about their
    /// players. Their last reports stand until it is back (no one is marked away, no host
    /// handed over, for a Redis blip).
    pub fn hold_reports(&mut self, now: Instant) {
        for report in self.reports.values_mut() {
            report.at = now;
        }
    }

    /// Applies presence to the game: `local` are the robots with a socket on this server.
    pub fn apply(
        &mut self,
        game: &mut Game,
        local: &[&str],
        now: Instant,
        t: &PresenceTiming,
    ) -> Changes {
        self.reports.retain(|_, r| r.at + t.expiry > now);
        self.unsure_until.retain(|_, until| *until > now);
        let mut changes = Changes::default();
        let ids: Vec<(String, bool)> = game
            .robots
            .iter()
            .map(|r| (r.id.clone(), r.connected))
            .collect();
        for (id, was) in &ids {
            let seen = local.contains(&id.as_str())
                || self.reports.values().any(|r| r.robots.contains(id));
            if seen {
                // Its player arrived: from now on only sockets count.
                self.unsure_until.remove(id);
            }
            let now_connected = seen || (*was && self.unsure_until.contains_key(id));
            if game.set_connected(id, now_connected) {
                if now_connected {
                    changes.back.push(id.clone());
                } else {
                    changes.away.push(id.clone());
                }
            }
            let connected = game.robot(id).is_some_and(|r| r.connected);
            if connected {
                self.away_since.remove(id);
            } else {
                self.away_since.entry(id.clone()).or_insert(now);
            }
        }
        if let Some(admin) = game.robots.iter().find(|r| r.admin && !r.connected) {
            let since = self.away_since.get(&admin.id).copied().unwrap_or(now);
            if since + t.handover <= now {
                changes.new_admin = game.hand_over_admin();
            }
        }
        if game.state == State::Setup {
            let expired: Vec<String> = game
                .robots
                .iter()
                .filter(|r| !r.connected)
                .filter(|r| {
                    self.away_since
                        .get(&r.id)
                        .is_some_and(|since| *since + t.remove <= now)
                })
                .map(|r| r.id.clone())
                .collect();
            for id in expired {
                // The last robot stays: an empty game ends by idling out.
                if game.robots.len() > 1 && game.remove(&id) {
                    self.away_since.remove(&id);
                    changes.removed.push(id);
                }
            }
        }
        self.away_since
            .retain(|id, _| game.robots.iter().any(|r| &r.id == id));
        changes
    }

    /// When [`Tracker::apply`] should run again by itself.
    pub fn next_check(&self, game: &Game, t: &PresenceTiming) -> Option<Instant> {
        let expiries = self.reports.values().map(|r| r.at + t.expiry);
        let unsure = self.unsure_until.values().copied();
        let handover = game
            .robots
            .iter()
            .filter(|r| r.admin && !r.connected)
            .filter(|_| game.robots.iter().any(|r| r.connected))
            .filter_map(|r| self.away_since.get(&r.id).map(|s| *s + t.handover));
        let removals = game
            .robots
            .iter()
            .filter(|r| game.state == State::Setup && !r.connected && game.robots.len() > 1)
            .filter_map(|r| self.away_since.get(&r.id).map(|s| *s + t.remove));
        expiries.chain(unsure).chain(handover).chain(removals).min()
    }
}

/// A report to send: numbered by the sender's process (see [`Tracker::report`]).
#[derive(Debug, PartialEq, Eq)]
pub struct Report {
    /// The robots with a socket here.
    pub robots: Vec<String>,
    /// The robots whose socket opened here since the last report sent (open or not now).
    pub arrived: Vec<String>,
}

/// A non-owner's side: what it last reported, and when.
#[derive(Default)]
pub struct Reporter {
    sent: Vec<String>,
    /// Robots whose socket opened here, not yet told.
    arrived: Vec<String>,
    /// The last report could not be sent: send one again, even an empty one.
    unsent: bool,
    /// The owner it was sent to, and when.
    to: Option<(String, Instant)>,
}

impl Reporter {
    /// Sockets of these robots opened here: the next report says so.
    pub fn arrived(&mut self, robots: Vec<String>) {
        self.arrived.extend(robots);
        self.arrived.sort_unstable();
        self.arrived.dedup();
    }

    /// The report to send to `owner` now, if one is due: the set changed, sockets opened, the
    /// owner changed, or the last one is about to go stale (only while there is something to
    /// report).
    pub fn due(
        &mut self,
        owner: &str,
        mut local: Vec<String>,
        now: Instant,
        t: &PresenceTiming,
    ) -> Option<Report> {
        local.sort_unstable();
        local.dedup();
        // Those still open are in the snapshot.
        self.arrived.retain(|r| !local.contains(r));
        let fresh_owner = self.to.as_ref().is_none_or(|(o, _)| o != owner);
        let stale = self
            .to
            .as_ref()
            .is_some_and(|(_, at)| *at + t.refresh <= now);
        let changed = local != self.sent || self.unsent || !self.arrived.is_empty();
        if !(changed || (fresh_owner && !local.is_empty()) || (stale && !local.is_empty())) {
            return None;
        }
        self.unsent = false;
        self.sent = local.clone();
        self.to = Some((owner.to_owned(), now));
        Some(Report {
            robots: local,
            arrived: std::mem::take(&mut self.arrived),
        })
    }

    /// When the next refresh is due, if any.
    pub fn next_refresh(&self, t: &PresenceTiming) -> Option<Instant> {
        match &self.to {
            Some((_, at)) if !self.sent.is_empty() => Some(*at + t.refresh),
            _ => None,
        }
    }

    /// The report could not be sent: the next [`Reporter::due`] sends one again, whatever
    /// changed or not, with its arrivals.
    pub fn forget_owner(&mut self, unsent: Report) {
        self.to = None;
        self.unsent = true;
        self.arrived(unsent.arrived);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::game::{GameConfig, PlayerName};

    fn timing() -> PresenceTiming {
        PresenceTiming::new(Duration::from_secs(10), Duration::from_secs(30))
    }

    fn game(players: usize) -> Game {
        let name = |s: &str| PlayerName::parse(s).unwrap();
        let mut game = Game::new("g".into(), GameConfig::default(), "r0".into(), name("a"));
        for i in 1..players {
            game.join(format!("r{i}"), name("b")).unwrap();
        }
        game
    }

    fn connected(game: &Game) -> Vec<bool> {
        game.robots.iter().map(|r| r.connected).collect()
    }

    #[test]
    fn local_and_reported_sockets_both_count_until_a_report_expires() {
        let t = timing();
        let start = Instant::now();
        let mut g = game(3);
        let mut tracker = Tracker::taking_over(&g, start, &t);
        // Within the first expiry nobody is marked away on a new owner.
        assert!(!tracker.apply(&mut g, &[], start, &t).any());
        tracker.report("n2/a", 1, vec!["r1".into()], &[], start);
        let later = start + t.expiry;
        let changes = tracker.apply(&mut g, &["r0"], later - Duration::from_millis(1), &t);
        assert_eq!(changes.away, Vec::<String>::new());
        let changes = tracker.apply(&mut g, &["r0"], later, &t);
        assert_eq!(changes.away, vec!["r1".to_string(), "r2".into()]);
        assert_eq!(connected(&g), [true, false, false]);
        // A fresh report brings r1 back; an older one from the same process is ignored.
        tracker.report("n2/a", 3, vec!["r1".into()], &[], later);
        tracker.report("n2/a", 2, vec![], &[], later);
        let changes = tracker.apply(&mut g, &["r0"], later, &t);
        assert_eq!(changes.back, vec!["r1".to_string()]);
        assert_eq!(tracker.next_check(&g, &t), Some(later + t.expiry));
    }

    #[test]
    fn the_admin_away_hands_over_and_away_robots_leave_setup() {
        let t = timing();
        let start = Instant::now();
        let mut g = game(3);
        let mut tracker = Tracker::default();
        tracker.apply(&mut g, &["r1", "r2"], start, &t);
        assert_eq!(connected(&g), [false, true, true]);
        assert_eq!(tracker.next_check(&g, &t), Some(start + t.handover));
        let changes = tracker.apply(&mut g, &["r1"], start + t.handover, &t);
        assert_eq!(changes.new_admin.as_deref(), Some("r1"));
        assert_eq!(changes.away, vec!["r2".to_string()]);
        assert!(g.robots[1].admin);
        // r0 goes 30 s after it went away; r2 30 s after it did.
        let changes = tracker.apply(&mut g, &["r1"], start + t.remove, &t);
        assert_eq!(changes.removed, vec!["r0".to_string()]);
        let ids: Vec<_> = g.robots.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["r1", "r2"]);
        let at = start + t.handover + t.remove;
        assert_eq!(tracker.next_check(&g, &t), Some(at));
        tracker.apply(&mut g, &["r1"], at, &t);
        assert_eq!(g.robots.len(), 1);
        // The last robot stays, away or not.
        tracker.apply(&mut g, &[], at + t.remove * 2, &t);
        assert_eq!(g.robots.len(), 1);
    }

    #[test]
    fn reports_stand_while_redis_is_unreachable() {
        let t = timing();
        let start = Instant::now();
        let mut g = game(2);
        let mut tracker = Tracker::default();
        tracker.report("n2/a", 1, vec!["r1".into()], &[], start);
        tracker.apply(&mut g, &["r0"], start, &t);
        // Redis down for a minute: the report is held, nobody goes away.
        for s in 1..=60 {
            let now = start + Duration::from_secs(s);
            tracker.hold_reports(now);
            assert!(!tracker.apply(&mut g, &["r0"], now, &t).any(), "at {s} s");
        }
        // Back, and no fresh report: it expires as usual.
        let changes = tracker.apply(&mut g, &["r0"], start + Duration::from_secs(70), &t);
        assert_eq!(changes.away, vec!["r1".to_string()]);
    }

    #[test]
    fn robots_away_mid_round_stay() {
        let t = timing();
        let start = Instant::now();
        let mut g = game(2);
        g.start_countdown("r0").unwrap();
        let mut tracker = Tracker::default();
        tracker.apply(&mut g, &["r0"], start, &t);
        tracker.apply(&mut g, &["r0"], start + t.remove * 3, &t);
        assert_eq!(connected(&g), [true, false]);
        assert_eq!(g.robots.len(), 2);
    }

    #[test]
    fn a_socket_that_opened_ends_the_wait_for_its_player_however_soon_it_closed() {
        let t = timing();
        let start = Instant::now();
        let mut g = game(4);
        let mut tracker = Tracker::default();
        for id in ["r1", "r2", "r3"] {
            tracker.joined(id, start, &t);
        }
        // Nobody's socket seen yet: all kept connected, their players on the way.
        assert!(!tracker.apply(&mut g, &["r0"], start, &t).any());
        // r1's socket opened and closed here, r2's on n2, both before any snapshot listed
        // them; r3's on n3, listed by a report that came after a newer one.
        tracker.arrived(&["r1".to_string()]);
        tracker.report("n2/a", 1, vec![], &["r2".into()], start);
        tracker.report("n3/a", 2, vec![], &[], start);
        tracker.report("n3/a", 1, vec!["r3".into()], &[], start);
        let changes = tracker.apply(&mut g, &["r0"], start, &t);
        assert_eq!(changes.away, ["r1", "r2", "r3"]);
    }

    #[test]
    fn reporters_send_changes_new_owners_and_refreshes_only() {
        let t = timing();
        let start = Instant::now();
        let mut r = Reporter::default();
        let report = |robots: &[&str], arrived: &[&str]| {
            let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
            Some(Report {
                robots: strings(robots),
                arrived: strings(arrived),
            })
        };
        assert_eq!(r.due("n1", vec![], start, &t), None);
        assert_eq!(
            r.due("n1", vec!["b".into(), "a".into(), "a".into()], start, &t),
            report(&["a", "b"], &[])
        );
        assert_eq!(r.due("n1", vec!["a".into(), "b".into()], start, &t), None);
        assert_eq!(r.next_refresh(&t), Some(start + t.refresh));
        let due = r.due("n1", vec!["a".into(), "b".into()], start + t.refresh, &t);
        assert_eq!(due, report(&["a", "b"], &[]), "a refresh");
        let due = r.due("n3", vec!["a".into(), "b".into()], start + t.refresh, &t);
        assert_eq!(due, report(&["a", "b"], &[]), "a new owner hears at once");
        assert_eq!(r.due("n3", vec![], start + t.refresh, &t), report(&[], &[]));
        assert_eq!(r.next_refresh(&t), None, "nothing to refresh");
        assert_eq!(r.due("n3", vec![], start + t.refresh * 5, &t), None);
        // A socket that opened and closed since: said, though the set is the same. One still
        // open is in the snapshot.
        r.arrived(vec!["e".into()]);
        let due = r.due("n3", vec!["e".into()], start + t.refresh * 5, &t);
        assert_eq!(due, report(&["e"], &[]));
        assert_eq!(
            r.due("n3", vec![], start + t.refresh * 5, &t),
            report(&[], &[])
        );
        r.arrived(vec!["c".into(), "c".into()]);
        let due = r.due("n3", vec![], start + t.refresh * 5, &t);
        assert_eq!(due, report(&[], &["c"]));
        assert_eq!(r.due("n3", vec![], start + t.refresh * 5, &t), None);
        // A report that could not be sent goes again, even an empty one, with its arrivals.
        r.forget_owner(report(&[], &["d"]).unwrap());
        let due = r.due("n3", vec![], start + t.refresh * 5, &t);
        assert_eq!(due, report(&[], &["d"]));
        assert_eq!(r.due("n3", vec![], start + t.refresh * 6, &t), None);
    }
}
