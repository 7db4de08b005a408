//! A player's WebSocket as a test drives it: connect, send, and read messages into the game
//! it draws (as the browser does), with bounded waits for a state, an error or the close.

use std::time::{Duration, Instant};

use awc::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

use super::api::Joined;
use super::process::SECS;
use super::server::Server;
use super::view::robot;

/// A player's WebSocket.
pub struct Player {
    framed: actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
    pub robot_id: String,
    pub admin: bool,
    /// The newest game drawn (updates not newer than it are dropped, as the browser does).
    pub game: Value,
    /// Every game message received, in order (welcome included).
    pub history: Vec<Value>,
    /// Every error message received.
    pub errors: Vec<Value>,
    pub terminated: bool,
    pub closed: Option<Option<awc::ws::CloseReason>>,
}

pub type WsError = awc::error::WsClientError;

pub async fn try_connect(url: &str, origin: Option<&str>) -> Result<Player, WsError> {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let mut req = client.ws(url).max_frame_size(1 << 20);
    if let Some(origin) = origin {
        req = req.origin(origin);
    }
    let (_res, framed) = req.connect().await?;
    Ok(Player::from_framed(framed).await)
}

impl Player {
    /// Wraps an upgraded connection and reads its `welcome`.
    pub async fn from_framed(
        framed: actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
    ) -> Player {
        let mut player = Player {
            framed,
            robot_id: String::new(),
            admin: false,
            game: Value::Null,
            history: Vec::new(),
            errors: Vec::new(),
            terminated: false,
            closed: None,
        };
        let welcome = player
            .next(Duration::from_secs(10))
            .await
            .expect("no welcome message");
        assert_eq!(welcome["type"], "welcome", "first message: {welcome}");
        // Empty for a spectator (`"robot_id": null`).
        player.robot_id = welcome["robot_id"].as_str().unwrap_or("").to_owned();
        assert!(
            welcome["robot_id"].is_string() || welcome["robot_id"].is_null(),
            "{welcome}"
        );
        player.admin = welcome["admin"].as_bool().unwrap();
        player
    }
}

/// Connects a player of `game_id` with its token to `server`.
pub async fn connect(server: &Server, joined: &Joined) -> Player {
    let url = server.ws_url(&format!("/ws/{}?token={}", joined.game_id, joined.token));
    try_connect(&url, None).await.expect("WebSocket connect")
}

impl Player {
    pub async fn send_text(&mut self, text: &str) {
        self.framed
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("send");
    }

    pub async fn send(&mut self, msg: Value) {
        self.send_text(&msg.to_string()).await;
    }

    pub async fn framed_send_binary(&mut self, bytes: Vec<u8>) {
        self.framed
            .send(Message::Binary(bytes.into()))
            .await
            .expect("send");
    }

    pub async fn press(&mut self) {
        self.send(json!({"type": "score_point"})).await;
    }

    /// The next JSON message (answering pings), or `None` on close/timeout.
    pub async fn next(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = actix_rt::time::timeout(left, self.framed.next())
                .await
                .ok()??;
            match frame {
                Ok(Frame::Text(bytes)) => {
                    let msg: Value = serde_json::from_slice(&bytes).expect("server sent bad JSON");
                    self.record(&msg);
                    return Some(msg);
                }
                Ok(Frame::Ping(p)) => {
                    let _ = self.framed.send(Message::Pong(p)).await;
                }
                Ok(Frame::Close(reason)) => {
                    self.closed = Some(reason);
                    return None;
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    fn record(&mut self, msg: &Value) {
        match msg["type"].as_str() {
            Some("welcome") => {
                self.game = msg["game"].clone();
                self.history.push(msg["game"].clone());
            }
            Some("game_update") => {
                self.history.push(msg["game"].clone());
                let newer = msg["game"]["version"].as_u64() > self.game["version"].as_u64();
                if newer {
                    self.game = msg["game"].clone();
                }
            }
            // Scores only, as the browser applies them: in the lanes of the last full view.
            Some("scores") => {
                let newer = msg["version"].as_u64() > self.game["version"].as_u64();
                let scores = msg["scores"].as_array().cloned().unwrap_or_default();
                let lanes = self.game["robots"].as_array().map_or(0, Vec::len);
                if newer && scores.len() == lanes {
                    let mut game = self.game.clone();
                    game["version"] = msg["version"].clone();
                    for (robot, score) in game["robots"]
                        .as_array_mut()
                        .unwrap()
                        .iter_mut()
                        .zip(scores)
                    {
                        robot["score"] = score;
                    }
                    self.history.push(game.clone());
                    self.game = game;
                }
            }
            Some("error") => self.errors.push(msg.clone()),
            Some("terminated") => self.terminated = true,
            _ => {}
        }
    }

    /// Presses `n` times, one press every `every`, reading updates in between (as a browser
    /// does), so the socket never backs up.
    pub async fn press_paced(&mut self, n: usize, every: Duration) {
        let mut next_press = Instant::now();
        let mut sent = 0;
        let deadline = Instant::now() + every * (n as u32) + SECS(30);
        while sent < n && Instant::now() < deadline {
            let now = Instant::now();
            if now >= next_press {
                self.press().await;
                sent += 1;
                next_press += every;
            } else if self.next(next_press - now).await.is_none() && self.closed.is_some() {
                panic!("the server closed the socket while pressing");
            }
        }
        assert_eq!(sent, n, "could not send every press in time");
    }

    /// Reads until the drawn game satisfies `pred`; panics with the last state on timeout.
    pub async fn wait_game(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        while !pred(&self.game) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.next(left).await.is_none() {
                break;
            }
        }
        assert!(
            pred(&self.game),
            "timed out waiting; last game seen: {}",
            self.game
        );
        self.game.clone()
    }

    /// Reads until an error message arrives; returns it.
    pub async fn wait_error(&mut self, timeout: Duration) -> Value {
        let seen = self.errors.len();
        let deadline = Instant::now() + timeout;
        while self.errors.len() == seen {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.next(left).await.is_none() {
                break;
            }
        }
        assert!(self.errors.len() > seen, "no error message arrived");
        self.errors.last().unwrap().clone()
    }

    /// Reads whatever arrives for `time` (keeps the connection serviced).
    pub async fn drain(&mut self, time: Duration) {
        let deadline = Instant::now() + time;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.next(left).await.is_none() {
                break;
            }
        }
    }

    /// Reads until the server closes the socket; returns the close reason.
    pub async fn wait_close(&mut self, timeout: Duration) -> Option<awc::ws::CloseReason> {
        let deadline = Instant::now() + timeout;
        while self.closed.is_none() && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.next(left).await.is_none() && self.closed.is_none() {
                break;
            }
        }
        self.closed.clone().flatten()
    }

    pub fn score_of(&self, robot_id: &str) -> u64 {
        robot(&self.game, robot_id)["score"].as_u64().unwrap()
    }
}
