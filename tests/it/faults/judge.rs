//! What the fault tests judge, over every player's screens and presses: no score going down, one
//! state per version, every press applied once or answered; and the reports printed with a
//! failure.

use std::collections::BTreeMap;

use crate::helpers::*;

/// Shows at most this many examples of one kind of violation.
const EXAMPLES: usize = 8;

fn examples(kind: &str, found: Vec<String>) -> Option<String> {
    if found.is_empty() {
        return None;
    }
    let n = found.len();
    let shown: Vec<String> = found.into_iter().take(EXAMPLES).collect();
    Some(format!(
        "{kind}: {n} case(s), e.g.\n  {}",
        shown.join("\n  ")
    ))
}

/// (a) Between two successive games a player drew, no robot's score went down.
pub(super) fn scores_that_went_down(players: &[RacingPlayer]) -> Option<String> {
    let names = robot_names(players);
    let mut found = Vec::new();
    for p in players {
        for pair in p.drawn.windows(2) {
            let (before, after) = (&pair[0], &pair[1]);
            for (robot, was) in &before.scores {
                match after.scores.get(robot) {
                    Some(now) if now < was => found.push(format!(
                        "{} saw {} go from {was} to {now}: {}  then  {}",
                        p.name,
                        names.get(robot).unwrap_or(robot),
                        before.describe(&names),
                        after.describe(&names)
                    )),
                    _ => {}
                }
            }
        }
    }
    examples("a robot's score went down on a player's screen", found)
}

/// (b) Over every player and every update received, one version number means one state and
/// one set of scores.
pub(super) fn versions_with_two_states(players: &[RacingPlayer]) -> Option<String> {
    let names = robot_names(players);
    let mut first_seen: BTreeMap<u64, (&str, &Shown)> = BTreeMap::new();
    let mut found = Vec::new();
    for p in players {
        for shown in &p.seen {
            match first_seen.get(&shown.version) {
                None => {
                    first_seen.insert(shown.version, (&p.name, shown));
                }
                Some((who, other)) if !other.same_as(shown) => found.push(format!(
                    "version {}: {who} was shown {}  but  {} was shown {}",
                    shown.version,
                    other.describe(&names),
                    p.name,
                    shown.describe(&names)
                )),
                Some(_) => {}
            }
        }
    }
    found.dedup();
    examples("one version, two different games", found)
}

/// (c) Each robot's final score is the presses its player sent minus those answered with an
/// error: every press applied once or answered, none lost, none counted twice.
pub(crate) fn presses_not_accounted_for(
    players: &[RacingPlayer],
    agreed: &Option<BTreeMap<String, u64>>,
) -> Option<String> {
    let mut found = Vec::new();
    for p in players {
        // Without agreement, judge each robot by its own player's screen.
        let final_score = match agreed {
            Some(scores) => scores.get(p.robot_id()).copied(),
            None => p.own_score(),
        };
        let expected = p.sent.saturating_sub(p.error_count());
        if final_score != Some(expected) {
            let fin = final_score.map_or("none".to_owned(), |s| s.to_string());
            let diff = final_score.map_or(String::new(), |s| {
                if s < expected {
                    format!(" ({} lost)", expected - s)
                } else {
                    format!(" ({} too many)", s - expected)
                }
            });
            found.push(format!(
                "robot {}: sent {}, errors {:?}, expected {expected}, final {fin}{diff}",
                p.name, p.sent, p.errors
            ));
        }
    }
    examples("presses neither applied once nor answered", found)
}

/// Per player: where it is, what it sent, what it got; then each one's final screen.
pub(crate) fn report(players: &[RacingPlayer]) -> String {
    let names = robot_names(players);
    let mut out = String::from("players:\n");
    for p in players {
        out.push_str(&format!("  {}\n", p.summary()));
        if let Some(last) = p.drawn.last() {
            out.push_str(&format!("    drawn last: {}\n", last.describe(&names)));
        }
        let events: Vec<&String> = p.events.iter().rev().take(40).rev().collect();
        out.push_str(&format!("    last events: {events:?}\n"));
    }
    out
}

/// The lines of each server's log that tell about ownership and trouble.
pub(crate) fn notable_logs(servers: &[Server]) -> String {
    let mut out = String::new();
    for (i, s) in servers.iter().enumerate() {
        let all = s.logs.all();
        let lines: Vec<&str> = all
            .lines()
            .filter(|l| {
                l.contains("WARN")
                    || l.contains("ERROR")
                    || l.contains("owns it now")
                    || l.contains("released")
            })
            .collect();
        let tail = &lines[lines.len().saturating_sub(12)..];
        out.push_str(&format!("server {i} log (notable, last 12):\n"));
        for l in tail {
            out.push_str(&format!("  {l}\n"));
        }
    }
    out
}

pub(crate) fn agreement(
    players: &[RacingPlayer],
    agreed: &Option<BTreeMap<String, u64>>,
) -> Option<String> {
    if agreed.is_some() {
        return None;
    }
    let names = robot_names(players);
    let views: Vec<String> = players
        .iter()
        .map(|p| {
            let scores: Vec<String> = p
                .scores()
                .iter()
                .map(|(id, s)| format!("{}={s}", names.get(id).unwrap_or(id)))
                .collect();
            format!("{} v{} [{}]", p.name, p.version(), scores.join(" "))
        })
        .collect();
    Some(format!(
        "players did not agree on the final scores within 20 s:\n  {}",
        views.join("\n  ")
    ))
}

/// (d) No acknowledged press lost: every score any player was ever shown for a robot is at most
/// its final score (in `agreed`, which the caller checked against Redis); and for the players
/// in `unsure` (their server was killed under them, so presses they sent just before may or may
/// not have been applied, and they were answered by nobody), no press counted twice.
pub(crate) fn acknowledged_presses_lost(
    players: &[RacingPlayer],
    agreed: &Option<BTreeMap<String, u64>>,
    unsure: &[&str],
) -> Option<String> {
    let agreed = agreed.as_ref()?;
    let names = robot_names(players);
    let mut found = Vec::new();
    for p in players {
        for shown in &p.seen {
            for (robot, score) in &shown.scores {
                let fin = agreed.get(robot).copied().unwrap_or(0);
                if *score > fin {
                    found.push(format!(
                        "{} was shown {} at {score} (version {}), final {fin}",
                        p.name,
                        names.get(robot).unwrap_or(robot),
                        shown.version
                    ));
                }
            }
        }
        if unsure.contains(&p.name.as_str()) {
            let most = p.sent.saturating_sub(p.error_count());
            let fin = agreed.get(p.robot_id()).copied().unwrap_or(0);
            if fin > most {
                found.push(format!(
                    "robot {}: sent {}, errors {:?}, final {fin}: counted twice",
                    p.name, p.sent, p.errors
                ));
            }
        }
    }
    found.dedup();
    examples("an acknowledged press lost, or one counted twice", found)
}
