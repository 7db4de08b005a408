//! What servers say to each other through the bus: commands forwarded to a game's owner, its
//! answers, and what owners publish on `game:<id>`. Decoded once per server, with typed structs.

use serde::{Deserialize, Serialize};

use crate::game::{Applied, Game};

/// A player's command, numbered by the server the player is connected to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The sending process (`node_id/boot-nonce`): numbers are per origin and game.
    pub origin: String,
    /// The sending server's node id: where errors and redirects go.
    pub from: String,
    /// 1, 2, 3… per origin and game; repeats are applied once (see `game::Applied`).
    pub seq: u64,
    /// Every number of this origin up to here was acknowledged by a committed state: an owner
    /// that has no record of the origin (a state restored from an older copy) starts after
    /// it, and waits for anything between.
    #[serde(default)]
    pub after: u64,
    pub robot_id: String,
    /// The player's session on the sending server (where an error is shown).
    pub session: u64,
    pub cmd: Cmd,
}

/// What a player asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cmd {
    ScorePoint,
    StartCountdown,
    PlayAgain,
    /// The player leaves (PROTOCOL.md, "leave").
    Leave,
    /// Add this robot (its id chosen by the sender, so a repeat cannot add two).
    Join {
        name: String,
    },
    /// A command whose player was told it could not be applied (`unavailable`): applied as
    /// nothing, so that the numbers after it still follow on.
    Void,
}

/// A message to one server's inbox (`node:<node_id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InboxMsg {
    /// For the owner to apply.
    Command { game_id: String, command: Command },
    /// The owner refused a command: tell the player.
    CommandError {
        game_id: String,
        seq: u64,
        session: u64,
        error: String,
        message: String,
        /// The owner did not apply it, and will apply that number only as nothing: the sender
        /// sends it again as [`Cmd::Void`], so that the numbers after it follow on.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        unapplied: bool,
    },
    /// "I do not own this game" (with the owner, when known): send your commands there.
    Redirect {
        game_id: String,
        owner: Option<String>,
    },
    /// For the owner: the robots with a socket on the sending server (a snapshot; see
    /// `presence`). `counter` rises with each report from one process.
    Presence {
        game_id: String,
        origin: String,
        counter: u64,
        robots: Vec<String>,
        /// The robots whose socket opened on the sending server since its previous report,
        /// open or closed again by now (absent from older servers' reports).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        arrived: Vec<String>,
    },
    /// The owner handed the game to this server (its lease is ours now): claim it.
    Take { game_id: String, from: String },
}

impl InboxMsg {
    pub fn game_id(&self) -> &str {
        match self {
            InboxMsg::Command { game_id, .. }
            | InboxMsg::CommandError { game_id, .. }
            | InboxMsg::Redirect { game_id, .. }
            | InboxMsg::Presence { game_id, .. }
            | InboxMsg::Take { game_id, .. } => game_id,
        }
    }

    pub fn encode(&self) -> String {
        // unwrap: plain structs of strings and numbers always serialise.
        serde_json::to_string(self).unwrap()
    }
}

/// What an owner publishes on `game:<id>`. A plain struct, not a tagged enum: it decodes in
/// one pass (serde buffers a tagged enum's whole content first), once per server.
#[derive(Debug, Deserialize)]
pub struct Published {
    #[serde(rename = "type")]
    pub kind: PublishedKind,
    pub origin: String,
    /// `game_update`: the whole stored game.
    #[serde(default)]
    pub game: Option<Box<Game>>,
    /// `scores`: the version it makes, every robot's score in lane order, and what has been
    /// applied (so the senders of the commands know).
    #[serde(default)]
    pub version: u64,
    #[serde(default)]
    pub scores: Vec<u32>,
    #[serde(default)]
    pub applied: Option<Applied>,
    /// `scores`: the version of the owner's previous save, which these scores follow (a save
    /// may apply several presses, so `version` can move by more than one). Absent from
    /// older servers' messages and from an owner's first save.
    #[serde(default)]
    pub base: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PublishedKind {
    /// A committed change: `game` holds the whole stored game.
    GameUpdate,
    /// A committed change of scores only, during `playing`.
    Scores,
    /// The game was ended.
    Terminated,
}

/// `{"type":"scores","origin":NODE,"version":V,"scores":[…],"applied":[…],"base":B}`: `base`
/// is the version of the save before (omitted when there was none).
pub fn scores_message(origin: &str, game: &Game, base: Option<u64>) -> String {
    #[derive(Serialize)]
    struct Scores<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        origin: &'a str,
        version: u64,
        scores: Vec<u32>,
        applied: &'a Applied,
        #[serde(skip_serializing_if = "Option::is_none")]
        base: Option<u64>,
    }
    // unwrap: plain structs of strings and numbers always serialise.
    serde_json::to_string(&Scores {
        kind: "scores",
        origin,
        version: game.version,
        scores: game.robots.iter().map(|r| r.score).collect(),
        applied: &game.applied,
        base,
    })
    .unwrap()
}

/// `{"type":"game_update","origin":NODE,"game":STORED}` around an already serialised game.
pub fn update_message(origin: &str, stored: &str) -> String {
    format!(
        r#"{{"type":"game_update","origin":{},"game":{stored}}}"#,
        json_string(origin)
    )
}

pub fn terminated_message(origin: &str, game_id: &str) -> String {
    serde_json::json!({"type": "terminated", "origin": origin, "game_id": game_id}).to_string()
}

fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::game::{GameConfig, PlayerName};

    #[test]
    fn messages_round_trip() {
        let msg = InboxMsg::Command {
            game_id: "g".into(),
            command: Command {
                origin: "n1/x".into(),
                from: "n1".into(),
                seq: 7,
                after: 5,
                robot_id: "r".into(),
                session: 3,
                cmd: Cmd::Join { name: "ann".into() },
            },
        };
        let back: InboxMsg = serde_json::from_str(&msg.encode()).unwrap();
        assert_eq!(back, msg);
        // A presence report names the sockets that opened since the last one; an older
        // server's report, without them, reads as none.
        let report = InboxMsg::Presence {
            game_id: "g".into(),
            origin: "n2/y".into(),
            counter: 4,
            robots: vec!["r1".into()],
            arrived: vec!["r2".into()],
        };
        let back: InboxMsg = serde_json::from_str(&report.encode()).unwrap();
        assert_eq!(back, report);
        let old = r#"{"type":"presence","game_id":"g","origin":"n2/y","counter":4,"robots":[]}"#;
        let back: InboxMsg = serde_json::from_str(old).unwrap();
        assert!(matches!(back, InboxMsg::Presence { arrived, .. } if arrived.is_empty()));
        let game = Game::new(
            "g1".into(),
            GameConfig::default(),
            "r1".into(),
            PlayerName::parse("ann").unwrap(),
        );
        let published = update_message("n2", &game.stored_json());
        let p: Published = serde_json::from_str(&published).unwrap();
        assert_eq!(
            (p.kind, p.origin.as_str()),
            (PublishedKind::GameUpdate, "n2")
        );
        assert_eq!(p.game.map(|g| *g), Some(game.clone()));
        let p: Published = serde_json::from_str(&scores_message("n2", &game, None)).unwrap();
        assert_eq!(
            (p.kind, p.version, p.scores, p.base),
            (PublishedKind::Scores, 1, vec![0], None)
        );
        let p: Published = serde_json::from_str(&scores_message("n2", &game, Some(0))).unwrap();
        assert_eq!(p.base, Some(0));
        assert_eq!(p.applied, Some(game.applied.clone()));
        let ended = terminated_message("n2", "g1");
        let p: Published = serde_json::from_str(&ended).unwrap();
        assert_eq!(p.kind, PublishedKind::Terminated);
    }
}
