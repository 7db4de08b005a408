//! The WebSocket messages: the only contract with the browser (PROTOCOL.md, "WebSocket").
//!
//! Client frames are parsed here into [`ClientMsg`]; server frames are built here, serialised
//! once, and the bytes shared by every session that receives them.

use bytestring::ByteString;
use serde::{Deserialize, Serialize};

use crate::game::{Game, GameView};

/// Largest client text frame we read; bigger ones are answered with `bad_message`.
pub const MAX_CLIENT_FRAME: usize = 1024;

/// What a player's browser may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// A press of the space bar or a tap.
    ScorePoint,
    /// Admin: start the countdown.
    StartCountdown,
    /// Admin: reset a finished round.
    PlayAgain,
    /// The player leaves the game (in `setup` the robot goes; otherwise it stays away).
    Leave,
}

impl ClientMsg {
    /// Parses one text frame; `None` for anything that is not exactly one known message.
    pub fn parse(text: &str) -> Option<ClientMsg> {
        if text.len() > MAX_CLIENT_FRAME {
            return None;
        }
        serde_json::from_str(text).ok()
    }
}

/// What the server sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg<'a> {
    /// First message after the upgrade: who you are and the game as it is.
    Welcome {
        /// `null` for a spectator.
        robot_id: Option<&'a str>,
        admin: bool,
        game: GameView<'a>,
    },
    /// The game changed.
    GameUpdate { game: GameView<'a> },
    /// A refused command; the connection stays open.
    Error { error: &'a str, message: &'a str },
    /// The game was ended (idle, or its last player left in `setup`); the server closes next.
    Terminated,
    /// This server is stopping: close the socket and reconnect (to another server). Presses
    /// sent before the close are still applied; the server closes by itself a second later.
    GoingAway,
}

impl ServerMsg<'_> {
    pub fn to_frame(&self) -> ByteString {
        // unwrap: these are plain structs of strings and numbers, which always serialise.
        ByteString::from(serde_json::to_string(self).unwrap())
    }
}

pub fn update_frame(game: &Game) -> ByteString {
    ServerMsg::GameUpdate { game: game.view() }.to_frame()
}

/// `{"type":"scores","version":V,"scores":[…]}`: only the scores changed (during `playing`),
/// in the lane order of the last full view.
pub fn scores_frame(version: u64, scores: impl Iterator<Item = u32>) -> ByteString {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(48);
    let _ = write!(out, r#"{{"type":"scores","version":{version},"scores":["#);
    for (i, score) in scores.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{score}");
    }
    out.push_str("]}");
    ByteString::from(out)
}

/// What a frame made here is, told from its first bytes (the game task hands spectators the
/// frames it shows its players, without saying which kind each is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// `{"type":"game_update",…}`
    Update,
    /// `{"type":"scores",…}`
    Scores,
    Other,
}

impl FrameKind {
    pub fn of(frame: &str) -> FrameKind {
        if frame.starts_with(r#"{"type":"game_update","#) {
            FrameKind::Update
        } else if frame.starts_with(r#"{"type":"scores","#) {
            FrameKind::Scores
        } else {
            FrameKind::Other
        }
    }
}

/// A spectator's `game_update` and `welcome` around one serialised `GAME` object: the game is
/// serialised once for every spectator of a server.
pub fn spectator_frames(game_json: &str) -> (ByteString, ByteString) {
    let update = format!(r#"{{"type":"game_update","game":{game_json}}}"#);
    let welcome =
        format!(r#"{{"type":"welcome","robot_id":null,"admin":false,"game":{game_json}}}"#);
    (ByteString::from(update), ByteString::from(welcome))
}

/// `rate_limited`, with how many of the player's messages were dropped since the last such
/// answer (`"dropped":N`): a player whose presses were read in a burst (a server that paused)
/// knows how many counted.
pub fn rate_limited_frame(what: &str, dropped: u32) -> ByteString {
    crate::measure::ERRORS.count(crate::measure::Via::Ws, "rate_limited");
    let message = format!("Too many {what}: slow down ({dropped} dropped)");
    ByteString::from(
        serde_json::json!({
            "type": "error",
            "error": "rate_limited",
            "message": message,
            "dropped": dropped,
        })
        .to_string(),
    )
}

pub fn error_frame(code: &str, message: &str) -> ByteString {
    crate::measure::ERRORS.count(crate::measure::Via::Ws, code);
    ServerMsg::Error {
        error: code,
        message,
    }
    .to_frame()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_messages_only() {
        assert_eq!(
            ClientMsg::parse(r#"{"type":"score_point"}"#),
            Some(ClientMsg::ScorePoint)
        );
        assert_eq!(
            ClientMsg::parse(r#"{"type":"start_countdown","extra":1}"#),
            Some(ClientMsg::StartCountdown)
        );
        for bad in [
            "",
            "null",
            "{}",
            "[]",
            r#"{"type":"hack"}"#,
            r#"{"type":7}"#,
            "{\"type\":\"score_point\"",
        ] {
            assert_eq!(ClientMsg::parse(bad), None, "{bad}");
        }
        let big = format!(r#"{{"type":"score_point","pad":"{}"}}"#, "x".repeat(1100));
        assert_eq!(ClientMsg::parse(&big), None);
    }

    #[test]
    fn scores_frames_have_the_contract_shape() {
        let v: serde_json::Value =
            serde_json::from_str(&scores_frame(57, [12, 9, 0].into_iter())).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"scores","version":57,"scores":[12,9,0]})
        );
    }

    #[test]
    fn frame_kinds_and_spectator_frames_match_what_is_serialised() {
        let game = crate::game::Game::new(
            "Ab3dE9xY".into(),
            crate::game::GameConfig::default(),
            "r1".into(),
            crate::game::PlayerName::parse("ann").unwrap(),
        );
        let update = update_frame(&game);
        assert_eq!(FrameKind::of(&update), FrameKind::Update);
        assert_eq!(
            FrameKind::of(&scores_frame(3, [1].into_iter())),
            FrameKind::Scores
        );
        assert_eq!(FrameKind::of(&error_frame("x", "y")), FrameKind::Other);
        let json = serde_json::to_string(&game.view()).unwrap();
        let (spectator_update, welcome) = spectator_frames(&json);
        assert_eq!(spectator_update, update);
        let expected = ServerMsg::Welcome {
            robot_id: None,
            admin: false,
            game: game.view(),
        }
        .to_frame();
        assert_eq!(welcome, expected);
    }

    #[test]
    fn error_frames_have_the_contract_shape() {
        let frame = error_frame("rate_limited", "Slow down");
        let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"error","error":"rate_limited","message":"Slow down"})
        );
        let t: serde_json::Value = serde_json::from_str(&ServerMsg::Terminated.to_frame()).unwrap();
        assert_eq!(t, serde_json::json!({"type":"terminated"}));
    }
}
