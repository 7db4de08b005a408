//! What the nemesis judges over the whole history of a run, and the figures it prints: faults
//! by kind, presses sent, answered, applied, dropped with a killed server's socket, lost,
//! counted twice.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::super::judge::{
    acknowledged_presses_lost, agreement, scores_that_went_down, versions_with_two_states,
};
use super::players::{answered, refused};
use super::schedule::{Kind, Schedule};
use crate::helpers::*;

/// After the last heal, every player's own presses move its robot again within this long.
pub(super) const RESUME_WITHIN: Duration = Duration::from_secs(5);

/// The figures of one run (or, added up, of several).
#[derive(Default)]
pub(super) struct Figures {
    pub faults: BTreeMap<Kind, usize>,
    /// Presses put on a socket.
    pub sent: u64,
    /// Presses answered: by a rise of the player's robot, or by an error.
    pub answered: u64,
    /// Presses answered with an error, every code (a `rate_limited` answer for as many as it
    /// says were dropped).
    pub errors: u64,
    /// The robots' final scores in Redis, added up.
    pub applied: u64,
    /// Presses neither applied nor answered, no more than were in flight on sockets whose
    /// server was killed (the closed socket is their answer).
    pub dropped: u64,
    /// Presses neither applied nor answered beyond those: must be 0.
    pub lost: u64,
    /// Presses applied beyond those sent and not refused: must be 0.
    pub doubled: u64,
    /// The slowest player's first rise after the last heal.
    pub resumed_in: Option<Duration>,
}

impl Figures {
    pub(super) fn add(&mut self, other: &Figures) {
        for (k, n) in &other.faults {
            *self.faults.entry(*k).or_default() += n;
        }
        self.sent += other.sent;
        self.answered += other.answered;
        self.errors += other.errors;
        self.applied += other.applied;
        self.dropped += other.dropped;
        self.lost += other.lost;
        self.doubled += other.doubled;
        self.resumed_in = self.resumed_in.max(other.resumed_in);
    }

    /// `faults=5 cut=1 … sent=… answered=… errors=… applied=… dropped_by_kill=… lost=0
    /// doubled=0 resumed_in=0.40s`: the summary scripts/nemesis reads.
    pub(super) fn line(&self) -> String {
        let total: usize = self.faults.values().sum();
        let kinds: Vec<String> = Kind::ALL
            .iter()
            .map(|k| format!("{}={}", k.name(), self.faults.get(k).unwrap_or(&0)))
            .collect();
        let resumed = self
            .resumed_in
            .map_or("never".to_owned(), |d| format!("{:.2}s", d.as_secs_f64()));
        format!(
            "faults={total} {} sent={} answered={} errors={} applied={} dropped_by_kill={} \
             lost={} doubled={} resumed_in={resumed}",
            kinds.join(" "),
            self.sent,
            self.answered,
            self.errors,
            self.applied,
            self.dropped,
            self.lost,
            self.doubled
        )
    }
}

/// A game as Redis holds it: version, state and every robot's score.
pub(super) type Stored = (u64, String, BTreeMap<String, u64>);

pub(super) fn stored(json: &str) -> Option<Stored> {
    let game: Value = serde_json::from_str(json).ok()?;
    Some((
        game["version"].as_u64()?,
        state(&game).to_owned(),
        scores_of(&game),
    ))
}

/// Every player's screen against what Redis holds for its game (`None`: no such key).
pub(super) fn screens_unlike_redis(
    games: &[Vec<RacingPlayer>],
    stored: &[Option<Stored>],
) -> Vec<String> {
    let mut found = Vec::new();
    for (g, players) in games.iter().enumerate() {
        let Some((version, st, scores)) = &stored[g] else {
            found.push(format!("game {g}: no game_state in Redis"));
            continue;
        };
        for p in players {
            let screen = (p.version(), state(&p.game), p.scores());
            if (screen.0, screen.1, &screen.2) != (*version, st.as_str(), scores) {
                found.push(format!(
                    "game {g}: {} shows v{} {} {:?}, Redis holds v{version} {st} {scores:?}",
                    p.name, screen.0, screen.1, screen.2
                ));
            }
        }
    }
    found
}

/// The first time `p`'s own robot rose on its screen after `healed`, counted from `healed`.
fn resumed_after(p: &RacingPlayer, healed: Instant) -> Option<Duration> {
    let own = |d: &Shown| d.scores.get(p.robot_id()).copied().unwrap_or(0);
    let before = p
        .drawn
        .iter()
        .take_while(|d| d.at <= healed)
        .last()
        .map_or(0, own);
    p.drawn
        .iter()
        .find(|d| d.at > healed && own(d) > before)
        .map(|d| d.at - healed)
}

/// Judges the whole history: per game, the players agreed on the final scores (`agreed`); no
/// score went down on a screen; one version is one state on every screen; nothing a player was
/// shown is above the final score (no acknowledged press lost); every robot's final score in
/// Redis is the presses its player sent minus those answered with an error, short by no more
/// than the presses in flight on sockets a killed server closed (`may_have_lost`), never above
/// it; every player's own presses moved its robot again within [`RESUME_WITHIN`] of `healed`.
/// Also: no server process panicked. The figures, and a line per failure.
pub(super) fn judge(
    schedule: &Schedule,
    games: &[Vec<RacingPlayer>],
    may_have_lost: &[Vec<u64>],
    agreed: &[Option<BTreeMap<String, u64>>],
    stored: &[Option<Stored>],
    healed: Instant,
    logs: &[(usize, String)],
) -> (Figures, Vec<String>) {
    let mut figures = Figures {
        faults: schedule.counts(),
        ..Figures::default()
    };
    let mut failures: Vec<String> = Vec::new();
    for (g, players) in games.iter().enumerate() {
        let in_game = |found: Option<String>| found.map(|f| format!("game {g}: {f}"));
        failures.extend(
            [
                agreement(players, &agreed[g]),
                scores_that_went_down(players),
                versions_with_two_states(players),
                acknowledged_presses_lost(players, &agreed[g], &[]),
            ]
            .into_iter()
            .filter_map(in_game),
        );
        if agreed[g].is_some() && agreed[g] != stored[g].as_ref().map(|s| s.2.clone()) {
            failures.push(format!(
                "game {g}: the players agree on {:?}, Redis holds {:?}",
                agreed[g],
                stored[g].as_ref().map(|s| &s.2)
            ));
        }
        let finals = stored[g].as_ref().map(|s| s.2.clone()).unwrap_or_default();
        for (p, allowed) in players.iter().zip(&may_have_lost[g]) {
            let expected = p.sent.saturating_sub(refused(p));
            let fin = finals.get(p.robot_id()).copied().unwrap_or(0);
            figures.sent += p.sent;
            figures.answered += answered(p);
            figures.errors += refused(p);
            figures.applied += fin;
            let short = expected.saturating_sub(fin);
            let over = fin.saturating_sub(expected);
            let lost = short.saturating_sub(*allowed);
            figures.dropped += short - lost;
            figures.lost += lost;
            figures.doubled += over;
            if lost > 0 || over > 0 {
                failures.push(format!(
                    "game {g}: robot {}: sent {}, errors {:?} (rate_limited for {}), expected \
                     {expected}, in Redis {fin}: {lost} lost, {over} counted twice (up to \
                     {allowed} could go with a killed server's socket)",
                    p.name, p.sent, p.errors, p.rate_limited_dropped
                ));
            }
            let resumed = resumed_after(p, healed);
            match resumed {
                Some(d) if d <= RESUME_WITHIN => {
                    figures.resumed_in = figures.resumed_in.max(Some(d));
                }
                _ => {
                    figures.resumed_in = figures.resumed_in.max(Some(Duration::MAX));
                    failures.push(format!(
                        "game {g}: {}'s presses did not move its robot within {RESUME_WITHIN:?} \
                         of the last heal ({})",
                        p.name,
                        resumed.map_or("never".to_owned(), |d| format!("after {d:?}"))
                    ));
                }
            }
        }
    }
    for (server, log) in logs {
        for line in log.lines().filter(|l| l.contains("panicked")) {
            failures.push(format!("server {server} panicked: {line}"));
        }
    }
    if figures.resumed_in == Some(Duration::MAX) {
        figures.resumed_in = None;
    }
    (figures, failures)
}
