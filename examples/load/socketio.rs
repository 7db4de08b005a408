//! `--protocol socketio`: the load tool speaking Socket.IO v4 (Engine.IO v4) over the same raw
//! WebSocket, to drive the benchmark peer in `bench/socketio/` (Node.js Socket.IO 4 with the
//! Redis adapter) exactly as it drives Robot Race.
//!
//! The flow: connect to `/socket.io/?EIO=4&transport=websocket`; the server opens with the
//! Engine.IO packet `0{"sid",…}`; the client connects to the default namespace with its seat as
//! auth, `40{"game_id","token"}`; the server answers `40{"sid"}` (or `44{"message"}`: refused)
//! and then emits `welcome`. Engine.IO pings (`2`) are answered with pongs (`3`). Events are
//! `42["name",payload]` both ways:
//!
//! | Socket.IO event (server → client) | read as the Robot Race frame |
//! | --- | --- |
//! | `welcome` `{"robot_id","admin","game":GAME}` | `welcome` |
//! | `game` GAME | `game_update` (a delivery) |
//! | `scores` `{"version","scores":[…]}` | `scores` (a delivery) |
//! | `error` `{"error","message"}` | `error` |
//!
//! Client → server: `42["press",{}]` for `score_point`, `42["start",{}]` for `start_countdown`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::json;

use crate::frames::{GameMsg, Incoming};

/// The WebSocket path (after the server's base URL).
pub const WS_PATH: &str = "/socket.io/?EIO=4&transport=websocket";
/// A press (`{"type":"score_point"}`).
pub const PRESS: &str = r#"42["press",{}]"#;
/// The admin's start (`{"type":"start_countdown"}`).
pub const START: &str = r#"42["start",{}]"#;
/// The Engine.IO pong, the answer to a ping (`2`).
pub const PONG: &str = "3";

/// The namespace CONNECT packet carrying the seat (game and token) as auth.
pub fn connect_packet(game_id: &str, token: &str) -> String {
    format!("40{}", json!({"game_id": game_id, "token": token}))
}

/// One text frame from the server, decoded.
pub enum In<'a> {
    /// A game message, as the default protocol's frame would read.
    Msg(Incoming<'a>),
    /// The Engine.IO open packet: send the namespace CONNECT now.
    Open,
    /// An Engine.IO ping: answer with [`PONG`].
    Ping,
    /// The namespace refused us (`44`) or closed (`41`, Engine.IO `1`): why.
    Closed(String),
    /// Anything else (the namespace's `40` answer, an event the tool does not read).
    Skip,
}

#[derive(Deserialize)]
struct Scores {
    version: u64,
    scores: Vec<u64>,
}

#[derive(Deserialize)]
struct Welcome<'a> {
    robot_id: Option<String>,
    #[serde(borrow)]
    game: GameMsg<'a>,
}

#[derive(Deserialize)]
struct Error {
    error: String,
}

#[derive(Deserialize)]
struct ConnectError {
    #[serde(default)]
    message: String,
}

fn msg<'a>(kind: &'static str) -> Incoming<'a> {
    Incoming {
        kind: Cow::Borrowed(kind),
        version: 0,
        scores: Vec::new(),
        game: None,
        robot_id: None,
        error: None,
    }
}

pub fn decode(frame: &[u8]) -> In<'_> {
    match frame {
        [b'2'] => In::Ping,
        [b'0', b'{', ..] => In::Open,
        [b'1'] => In::Closed("engine.io close".into()),
        [b'4', b'1', ..] => In::Closed("namespace disconnect".into()),
        [b'4', b'4', rest @ ..] => In::Closed(
            serde_json::from_slice::<ConnectError>(rest)
                .map(|e| format!("connect refused: {}", e.message))
                .unwrap_or_else(|_| "connect refused".into()),
        ),
        [b'4', b'2', rest @ ..] => event(rest).unwrap_or(In::Skip),
        _ => In::Skip,
    }
}

/// `["name",payload]` (as JSON.stringify writes it: no spaces, names without escapes).
fn event(rest: &[u8]) -> Option<In<'_>> {
    let rest = rest.strip_prefix(b"[\"")?.strip_suffix(b"]")?;
    let quote = rest.iter().position(|b| *b == b'"')?;
    let (name, payload) = (&rest[..quote], rest[quote + 1..].strip_prefix(b",")?);
    Some(In::Msg(match name {
        b"scores" => {
            let s: Scores = serde_json::from_slice(payload).ok()?;
            Incoming {
                version: s.version,
                scores: s.scores,
                ..msg("scores")
            }
        }
        b"game" => Incoming {
            game: Some(serde_json::from_slice(payload).ok()?),
            ..msg("game_update")
        },
        b"welcome" => {
            let w: Welcome = serde_json::from_slice(payload).ok()?;
            Incoming {
                robot_id: w.robot_id,
                game: Some(w.game),
                ..msg("welcome")
            }
        }
        b"error" => {
            let e: Error = serde_json::from_slice(payload).ok()?;
            Incoming {
                error: Some(e.error),
                ..msg("error")
            }
        }
        _ => return Some(In::Skip),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg_of(frame: &str) -> Incoming<'_> {
        match decode(frame.as_bytes()) {
            In::Msg(m) => m,
            _ => panic!("not a message: {frame}"),
        }
    }

    #[test]
    fn engine_and_namespace_packets() {
        assert!(matches!(
            decode(br#"0{"sid":"x","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#),
            In::Open
        ));
        assert!(matches!(decode(b"2"), In::Ping));
        assert!(matches!(decode(br#"40{"sid":"y"}"#), In::Skip));
        assert!(
            matches!(decode(br#"44{"message":"unauthorized"}"#), In::Closed(m) if m == "connect refused: unauthorized")
        );
        assert!(matches!(decode(b"41"), In::Closed(_)));
        assert_eq!(
            connect_packet("g1", "t\"k"),
            r#"40{"game_id":"g1","token":"t\"k"}"#
        );
    }

    #[test]
    fn events_read_as_robot_race_frames() {
        let m = msg_of(r#"42["scores",{"version":9,"scores":[1,2]}]"#);
        assert_eq!(
            (m.kind.as_ref(), m.version, m.scores),
            ("scores", 9, vec![1, 2])
        );
        let game = r#"{"id":"x","state":"playing","countdown":0,"winning_score":25,"version":3,"robots":[{"id":"r","name":"n","score":4,"admin":true,"connected":true}],"leaderboard":[],"winner":null}"#;
        let frame = format!(r#"42["game",{game}]"#);
        let m = msg_of(&frame);
        assert_eq!(m.kind, "game_update");
        let g = m.game.unwrap();
        assert_eq!(
            (g.version, g.state.as_ref(), g.robots[0].score),
            (3, "playing", 4)
        );
        let frame = format!(r#"42["welcome",{{"robot_id":"r","admin":true,"game":{game}}}]"#);
        let m = msg_of(&frame);
        assert_eq!(
            (m.kind.as_ref(), m.robot_id.as_deref()),
            ("welcome", Some("r"))
        );
        let m = msg_of(r#"42["error",{"error":"not_enough_players","message":"m"}]"#);
        assert_eq!(m.error.as_deref(), Some("not_enough_players"));
        assert!(matches!(decode(br#"42["other",{}]"#), In::Skip));
        assert!(matches!(decode(br#"42["scores",{"version":"#), In::Skip));
    }
}
