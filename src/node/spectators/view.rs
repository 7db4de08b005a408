//! The `GAME` object spectators are shown, kept by a game's feed from the frames its players
//! were shown: the last full view, with the newest `scores` frame patched in.

use serde::{Deserialize, Serialize};

use super::Frames;
use crate::protocol::spectator_frames;

/// The `GAME` object as spectators are shown it: the fields a `scores` frame changes, and
/// the rest as it came.
#[derive(Deserialize, Serialize)]
pub(super) struct View {
    version: u64,
    robots: Vec<RobotScore>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize, Serialize)]
struct RobotScore {
    score: u32,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

impl View {
    pub(super) fn of_update(frame: &str) -> Option<View> {
        #[derive(Deserialize)]
        struct Update {
            game: View,
        }
        serde_json::from_str::<Update>(frame).ok().map(|u| u.game)
    }

    /// Takes a `scores` frame's version and scores (in lane order); false if it does not fit.
    pub(super) fn apply_scores(&mut self, frame: &str) -> bool {
        #[derive(Deserialize)]
        struct Scores {
            version: u64,
            scores: Vec<u32>,
        }
        let Ok(s) = serde_json::from_str::<Scores>(frame) else {
            return false;
        };
        if s.version <= self.version || s.scores.len() != self.robots.len() {
            return false;
        }
        self.version = s.version;
        for (robot, score) in self.robots.iter_mut().zip(s.scores) {
            robot.score = score;
        }
        true
    }

    pub(super) fn frames(&self) -> Option<Frames> {
        let json = serde_json::to_string(self).ok()?;
        let (update, welcome) = spectator_frames(&json);
        Some(Frames {
            version: self.version,
            update,
            welcome,
        })
    }
}
