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

    /// The robots with a socket on each other server, by node id (the reports' origins are
    /// `node_id/process`).
    pub fn players_by_server(&self) -> HashMap<String, usize> {
        let mut by: HashMap<&str, Vec<&String>> = HashMap::new();
        for (origin, heard) in &self.reports {
            let node = origin.rsplit_once('/').map_or(origin.as_str(), |(n, _)| n);
            by.entry(node).or_default().extend(&heard.robots);
        }
        (by.into_iter())
            .map(|(node, mut robots)| {
                robots.sort_unstable();
                robots.dedup();
                (node.to_owned(), robots.len())
            })
            .collect()
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
mod tests;
