//! Reading a game view (the JSON the server sends): a robot, the state, every score, and one
//! update as a player saw it.

use std::collections::BTreeMap;

use serde_json::Value;

pub fn robot<'a>(game: &'a Value, robot_id: &str) -> &'a Value {
    game["robots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == robot_id)
        .unwrap_or_else(|| panic!("robot {robot_id} not in {game}"))
}

pub fn state(game: &Value) -> &str {
    game["state"].as_str().unwrap_or("")
}

/// One update as a player saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub version: u64,
    pub state: String,
    /// Robot id → score.
    pub scores: BTreeMap<String, u64>,
    /// The server (index in the player's list) whose socket brought it.
    pub via: usize,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl Shown {
    pub(super) fn of(game: &Value, via: usize) -> Shown {
        Shown {
            version: game["version"].as_u64().unwrap_or(0),
            state: state(game).to_owned(),
            scores: scores_of(game),
            via,
            at: std::time::Instant::now(),
        }
    }

    /// Same state and scores (whichever server it came through).
    pub fn same_as(&self, other: &Shown) -> bool {
        self.state == other.state && self.scores == other.scores
    }

    /// `v57 playing [ann=3 bob=5] via server 1`, with robots named by `names` (id → name).
    pub fn describe(&self, names: &BTreeMap<String, String>) -> String {
        let scores: Vec<String> = self
            .scores
            .iter()
            .map(|(id, s)| format!("{}={s}", names.get(id).unwrap_or(id)))
            .collect();
        format!(
            "v{} {} [{}] via server {}",
            self.version,
            self.state,
            scores.join(" "),
            self.via
        )
    }
}

/// Every robot's score in a game view: robot id → score.
pub fn scores_of(game: &Value) -> BTreeMap<String, u64> {
    game["robots"]
        .as_array()
        .map(|robots| {
            robots
                .iter()
                .map(|r| {
                    (
                        r["id"].as_str().unwrap_or("").to_owned(),
                        r["score"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
