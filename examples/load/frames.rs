//! Incoming frames, parsed into just what the tool needs (the rest is skipped), and what a
//! player last drew from them.

use std::borrow::Cow;

use serde::Deserialize;

#[derive(Deserialize)]
pub struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(default)]
    pub version: u64,
    #[serde(default)]
    pub scores: Vec<u64>,
    #[serde(default, borrow)]
    pub game: Option<GameMsg<'a>>,
    #[serde(default)]
    pub robot_id: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Deserialize)]
pub struct GameMsg<'a> {
    pub version: u64,
    #[serde(borrow)]
    pub state: Cow<'a, str>,
    #[serde(borrow)]
    pub robots: Vec<RobotMsg<'a>>,
}

#[derive(Deserialize)]
pub struct RobotMsg<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    pub score: u64,
}

/// What a player last drew: version, lanes (robot ids in `robots` order) and their scores.
#[derive(Default)]
pub struct View {
    pub version: u64,
    pub ids: Vec<String>,
    pub scores: Vec<u64>,
    pub me: Option<usize>,
    pub playing: bool,
}

impl View {
    /// Applies a full view if newer; returns how many OTHER robots' scores rose.
    pub fn apply_full(&mut self, game: &GameMsg, me: &str) -> Option<u64> {
        if game.version <= self.version {
            return None;
        }
        let mut rose = 0;
        for (i, r) in game.robots.iter().enumerate() {
            if r.id == me {
                continue;
            }
            let before = if self.ids.get(i).is_some_and(|id| *id == r.id) {
                Some(self.scores[i])
            } else {
                self.ids
                    .iter()
                    .position(|id| *id == r.id)
                    .map(|j| self.scores[j])
            };
            if before.is_some_and(|b| r.score > b) {
                rose += 1;
            }
        }
        let same_lanes = self.ids.len() == game.robots.len()
            && self.ids.iter().zip(&game.robots).all(|(a, b)| *a == b.id);
        if !same_lanes {
            self.ids = game.robots.iter().map(|r| r.id.to_string()).collect();
            self.me = self.ids.iter().position(|id| id == me);
        }
        self.scores.clear();
        self.scores.extend(game.robots.iter().map(|r| r.score));
        self.version = game.version;
        self.playing = game.state == "playing";
        Some(rose)
    }

    /// Applies a `scores` frame if newer; returns how many OTHER robots' scores rose, and
    /// whether its length matched the lanes.
    pub fn apply_scores(&mut self, version: u64, scores: &[u64]) -> Option<(u64, bool)> {
        if version <= self.version {
            return None;
        }
        let mut rose = 0;
        for (i, (old, new)) in self.scores.iter_mut().zip(scores).enumerate() {
            if Some(i) != self.me && *new > *old {
                rose += 1;
            }
            *old = *new;
        }
        self.version = version;
        Some((rose, scores.len() == self.scores.len()))
    }

    pub fn my_score(&self) -> u64 {
        self.me
            .and_then(|i| self.scores.get(i).copied())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn game(version: u64, robots: &[(&'static str, u64)]) -> GameMsg<'static> {
        GameMsg {
            version,
            state: "playing".into(),
            robots: robots
                .iter()
                .map(|(id, score)| RobotMsg {
                    id: (*id).into(),
                    score: *score,
                })
                .collect(),
        }
    }

    #[test]
    fn a_view_counts_other_robots_that_rose_and_drops_stale_updates() {
        let mut v = View::default();
        assert_eq!(
            v.apply_full(&game(3, &[("a", 0), ("b", 0), ("c", 0)]), "b"),
            Some(0)
        );
        assert_eq!(v.me, Some(1));
        // a and c rose (2 press deliveries); b is me.
        assert_eq!(
            v.apply_full(&game(5, &[("a", 1), ("b", 1), ("c", 2)]), "b"),
            Some(2)
        );
        assert_eq!(
            v.apply_full(&game(5, &[("a", 9), ("b", 9), ("c", 9)]), "b"),
            None
        );
        assert_eq!(v.apply_scores(4, &[7, 7, 7]), None);
        assert_eq!(v.apply_scores(6, &[1, 3, 3]), Some((1, true)));
        assert_eq!(v.my_score(), 3);
        assert_eq!(v.apply_scores(7, &[2, 3]), Some((1, false)));
        // A full view with a robot gone: compared by id, not by lane.
        assert_eq!(v.apply_full(&game(8, &[("b", 4), ("c", 4)]), "b"), Some(1));
        assert_eq!(v.me, Some(0));
        assert_eq!(v.my_score(), 4);
    }

    #[test]
    fn incoming_frames_parse() {
        let m: Incoming =
            serde_json::from_str(r#"{"type":"scores","version":9,"scores":[1,2]}"#).unwrap();
        assert_eq!(
            (m.kind.as_ref(), m.version, m.scores),
            ("scores", 9, vec![1, 2])
        );
        let m: Incoming = serde_json::from_str(
            r#"{"type":"welcome","robot_id":null,"admin":false,"game":{"id":"x","state":"setup","version":1,
               "robots":[{"id":"r","name":"n","score":0,"admin":true,"connected":true}],"leaderboard":[],"winner":null}}"#,
        )
        .unwrap();
        assert_eq!(m.robot_id, None);
        assert_eq!(m.game.unwrap().robots[0].id, "r");
        let m: Incoming =
            serde_json::from_str(r#"{"type":"error","error":"overloaded","message":"m"}"#).unwrap();
        assert_eq!(m.error.as_deref(), Some("overloaded"));
    }
}
