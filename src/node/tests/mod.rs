//! Three "servers" in one process on a shared in-memory "Redis" (`LocalCluster`): every
//! ownership transition, on paused time, in seconds. The same scenarios run against real
//! processes and a real Redis in `tests/it/cluster/` and `tests/it/faults/`.
//!
//! Here: the servers and a local player (its session and what it drew); the scenarios:
//! [`ownership`] (owners taken over, fenced, draining; Redis lost), [`single`] (one server's game
//! task: countdown, idle end, slow sessions, overload) and [`presence`] (who is here, the host,
//! leaving, spectators).

mod moves;
mod ownership;
mod presence;
mod single;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use super::{GameHandle, GameMsg, Metrics, Node, Outbound, SessionId, Timing};
use crate::bus::local::{LocalBus, LocalCluster};
use crate::game::{GameConfig, PlayerName};
use crate::protocol::ClientMsg;

const LEASE: Duration = Duration::from_secs(1);

fn node(cluster: &LocalCluster, name: &str) -> Node {
    let bus = Arc::new(LocalBus::member(cluster, name, LEASE));
    let timing = Timing::new(Duration::from_secs(600), LEASE);
    let node = Node::new(
        bus,
        Arc::new(Metrics::default()),
        timing,
        tokio::runtime::Handle::current(),
    );
    node.start();
    node
}

fn name(s: &str) -> PlayerName {
    PlayerName::parse(s).unwrap()
}

/// A local player: its session and what it has drawn (newest version only, as the browser).
struct Player {
    game: GameHandle,
    session: SessionId,
    rx: mpsc::Receiver<Outbound>,
    drawn: Value,
    /// Every version drawn, with the scores it showed.
    seen: Vec<(u64, Vec<u64>)>,
    /// The type of every frame received.
    kinds: Vec<String>,
    /// The code of every error received.
    errors: Vec<String>,
}

async fn seat(node: &Node, game_id: &str, robot_id: &str) -> Player {
    let (tx, rx) = mpsc::channel(1024);
    let (game, session) = node.connect(game_id, robot_id, Box::new(tx)).await.unwrap();
    let mut p = Player {
        game,
        session,
        rx,
        drawn: Value::Null,
        seen: Vec::new(),
        kinds: Vec::new(),
        errors: Vec::new(),
    };
    p.read(Duration::from_millis(10)).await;
    p
}

impl Player {
    fn send(&self, msg: ClientMsg) {
        self.game
            .tx
            .try_send(GameMsg::Client(
                self.session,
                msg,
                tokio::time::Instant::now(),
            ))
            .unwrap();
    }

    /// Reads frames for up to `time`.
    async fn read(&mut self, time: Duration) {
        let deadline = tokio::time::Instant::now() + time;
        while let Ok(Some(out)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            let Outbound::Frame(frame) = out else { break };
            let msg: Value = serde_json::from_str(&frame).unwrap();
            self.kinds.extend(msg["type"].as_str().map(str::to_owned));
            if msg["type"] == "error" {
                self.errors.extend(msg["error"].as_str().map(str::to_owned));
            }
            let mut game = msg["game"].clone();
            if msg["type"] == "scores" {
                // As the browser: the scores, in the lanes of the last full view.
                game = self.drawn.clone();
                game["version"] = msg["version"].clone();
                let scores = msg["scores"].as_array().unwrap();
                let robots = game["robots"].as_array_mut().unwrap();
                assert_eq!(robots.len(), scores.len(), "scores for other lanes");
                for (robot, score) in robots.iter_mut().zip(scores) {
                    robot["score"] = score.clone();
                }
            }
            let game = &game;
            if game.is_null() {
                continue;
            }
            let version = game["version"].as_u64().unwrap();
            if version > self.drawn["version"].as_u64().unwrap_or(0) {
                let scores = scores(game);
                if let Some((_, last)) = self.seen.last() {
                    let down =
                        last.iter().zip(&scores).any(|(a, b)| b < a) && scores.len() == last.len();
                    assert!(!down, "a score went down: {last:?} -> {scores:?}");
                }
                self.seen.push((version, scores));
                self.drawn = game.clone();
            }
        }
    }

    /// Reads until the drawn game satisfies `pred` (bounded).
    async fn wait(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..400 {
            if pred(&self.drawn) {
                return self.drawn.clone();
            }
            self.read(Duration::from_millis(50)).await;
        }
        if pred(&self.drawn) {
            return self.drawn.clone();
        }
        panic!("timed out; last drawn: {}", self.drawn);
    }
}

fn scores(game: &Value) -> Vec<u64> {
    game["robots"]
        .as_array()
        .map(|rs| rs.iter().map(|r| r["score"].as_u64().unwrap()).collect())
        .unwrap_or_default()
}

fn playing(g: &Value) -> bool {
    g["state"] == "playing"
}

/// One version means one state on every screen.
fn same_versions(players: &[&Player]) {
    let mut by_version = std::collections::HashMap::new();
    for p in players {
        for (v, s) in &p.seen {
            if let Some(other) = by_version.insert(*v, s.clone()) {
                assert_eq!(&other, s, "version {v} showed two states");
            }
        }
    }
}

/// Creates a game on `a` (winning score 50, no countdown), joins bob through `b`, seats both,
/// starts the race.
async fn race(a: &Node, b: &Node) -> (String, Player, Player) {
    let config = GameConfig {
        winning_score: 50,
        countdown: 0,
    };
    let created = a.create(name("ann"), config).await.unwrap();
    let id = created.game_id.clone();
    let bob = b.join(&id, name("bob")).await.unwrap();
    let mut ann = seat(a, &id, &created.robot_id).await;
    let mut bob = seat(b, &id, &bob).await;
    ann.send(ClientMsg::StartCountdown);
    ann.wait(playing).await;
    bob.wait(playing).await;
    (id, ann, bob)
}

fn owned(node: &Node) -> usize {
    node.stats().owned
}
