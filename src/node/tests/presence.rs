//! Presence across servers: who is connected, the host hand-over, a dead server's players,
//! leaving, spectators, and a Redis outage that marks nobody away.

use std::time::Duration;

use serde_json::Value;

use super::{name, node, race, scores, seat, Player};
use crate::bus::local::LocalCluster;
use crate::game::GameConfig;
use crate::node::{Cue, GameMsg, Node, Seat};
use crate::protocol::ClientMsg;

impl Player {
    /// Closes this player's socket.
    async fn close(self) {
        self.game
            .tx
            .send(GameMsg::Disconnect(self.session))
            .await
            .unwrap();
    }
}

fn connected(g: &Value) -> Vec<bool> {
    g["robots"]
        .as_array()
        .map(|rs| rs.iter().map(|r| r["connected"] == true).collect())
        .unwrap_or_default()
}

fn admins(g: &Value) -> Vec<bool> {
    g["robots"]
        .as_array()
        .map(|rs| rs.iter().map(|r| r["admin"] == true).collect())
        .unwrap_or_default()
}

/// ann (admin) on a, bob on b, cat on c, all seated, in setup.
async fn three_in_setup(a: &Node, b: &Node, c: &Node) -> (String, [Player; 3]) {
    let created = a.create(name("ann"), GameConfig::default()).await.unwrap();
    let id = created.game_id.clone();
    let bob = b.join(&id, name("bob")).await.unwrap();
    let cat = c.join(&id, name("cat")).await.unwrap();
    let ann = seat(a, &id, &created.robot_id).await;
    let bob = seat(b, &id, &bob).await;
    let mut cat = seat(c, &id, &cat).await;
    cat.wait(|g| connected(g) == [true, true, true]).await;
    (id, [ann, bob, cat])
}

#[tokio::test(start_paused = true)]
async fn presence_crosses_servers_and_the_host_hands_over() {
    let cluster = LocalCluster::new();
    let (a, b, c) = (
        node(&cluster, "a"),
        node(&cluster, "b"),
        node(&cluster, "c"),
    );
    let (_id, [ann, bob, mut cat]) = three_in_setup(&a, &b, &c).await;
    // Bob's tab closes on b: every screen shows him away at once.
    bob.close().await;
    cat.wait(|g| connected(g) == [true, false, true]).await;
    // Only two are connected... the admin's tab closes too: after 10 s, cat (the next
    // connected robot in join order) is the admin.
    ann.close().await;
    let start = tokio::time::Instant::now();
    cat.wait(|g| connected(g) == [false, false, true]).await;
    cat.wait(|g| admins(g) == [false, false, true]).await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took <= Duration::from_secs(12),
        "hand-over after {took:?}"
    );
    // Away for 30 s in setup: removed; cat alone cannot start.
    tokio::time::sleep(Duration::from_secs(10)).await;
    cat.wait(|g| g["robots"].as_array().unwrap().len() == 1)
        .await;
    cat.send(ClientMsg::StartCountdown);
    cat.read(Duration::from_millis(200)).await;
    assert_eq!(cat.drawn["state"], "setup");
}

#[tokio::test(start_paused = true)]
async fn a_dead_servers_players_go_away_and_start_counts_connected_robots() {
    let cluster = LocalCluster::new();
    let (a, b, c) = (
        node(&cluster, "a"),
        node(&cluster, "b"),
        node(&cluster, "c"),
    );
    let (_id, [mut ann, _bob, _cat]) = three_in_setup(&a, &b, &c).await;
    // b and c die without a word: their reports expire and their robots go away.
    cluster.kill("b");
    cluster.kill("c");
    drop((b, c));
    ann.wait(|g| connected(g) == [true, false, false]).await;
    ann.send(ClientMsg::StartCountdown);
    ann.read(Duration::from_millis(200)).await;
    assert_eq!(ann.drawn["state"], "setup", "started with absent robots");
}

#[tokio::test(start_paused = true)]
async fn leaving_in_setup_removes_and_mid_race_stays_away() {
    let cluster = LocalCluster::new();
    let (a, b, c) = (
        node(&cluster, "a"),
        node(&cluster, "b"),
        node(&cluster, "c"),
    );
    let (_id, [mut ann, bob, mut cat]) = three_in_setup(&a, &b, &c).await;
    bob.send(ClientMsg::Leave);
    ann.wait(|g| g["robots"].as_array().unwrap().len() == 2)
        .await;
    ann.send(ClientMsg::StartCountdown);
    cat.wait(|g| g["state"] == "playing").await;
    // The admin leaves mid-race: the lane stays, away; cat leads now.
    ann.send(ClientMsg::Leave);
    cat.wait(|g| connected(g) == [false, true] && admins(g) == [false, true])
        .await;
    ann.send(ClientMsg::ScorePoint);
    cat.send(ClientMsg::ScorePoint);
    cat.wait(|g| scores(g) == [0, 1]).await;
}

/// A spectator on a third server (which did not hold the game: it loads it for them) gets its
/// welcome at once, the newest state after a change, and is nobody's presence.
#[tokio::test(start_paused = true)]
async fn spectators_get_the_newest_state_and_are_not_players() {
    let cluster = LocalCluster::new();
    let (a, b, c) = (
        node(&cluster, "a"),
        node(&cluster, "b"),
        node(&cluster, "c"),
    );
    let (id, mut ann, mut bob) = race(&a, &b).await;
    let seat = Seat::take(&c.metrics_handle(), 0).unwrap();
    let asked = tokio::time::Instant::now();
    let mut watcher = c.watch(&id, seat).await.unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    let welcome: Value = serde_json::from_str(&watcher.welcome().unwrap()).unwrap();
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["robot_id"], Value::Null);
    assert_eq!(connected(&welcome["game"]), [true, true]);
    bob.send(ClientMsg::ScorePoint);
    ann.wait(|g| scores(g) == [0, 1]).await;
    let frame = match tokio::time::timeout(Duration::from_secs(2), watcher.next()).await {
        Ok(Cue::Frame(f)) => f,
        _ => panic!("no frame after the press"),
    };
    let last: Value = serde_json::from_str(&frame).unwrap();
    assert_eq!(last["type"], "game_update");
    assert_eq!(scores(&last["game"]), [0, 1], "{last}");
    // A spectator is nobody's presence: the players are still the two of them.
    bob.wait(|g| connected(g) == [true, true]).await;
}

#[tokio::test(start_paused = true)]
async fn a_redis_outage_marks_nobody_away_and_hands_nothing_over() {
    let cluster = LocalCluster::new();
    let (a, b) = (node(&cluster, "a"), node(&cluster, "b"));
    // Bob's robot is on b; b's reports cannot reach the owner while Redis is down.
    let created = a.create(name("ann"), GameConfig::default()).await.unwrap();
    let bob = b.join(&created.game_id, name("bob")).await.unwrap();
    let mut ann = seat(&a, &created.game_id, &created.robot_id).await;
    let _bob = seat(&b, &created.game_id, &bob).await;
    ann.wait(|g| connected(g) == [true, true]).await;
    cluster.down();
    ann.read(Duration::from_secs(45)).await;
    assert_eq!(connected(&ann.drawn), [true, true], "{}", ann.drawn);
    cluster.back(false);
    ann.read(Duration::from_secs(15)).await;
    assert_eq!(connected(&ann.drawn), [true, true], "{}", ann.drawn);
    assert_eq!(ann.drawn["robots"].as_array().unwrap().len(), 2);
}

fn connected_of(g: &Value, robot_id: &str) -> Option<bool> {
    g["robots"]
        .as_array()?
        .iter()
        .find(|r| r["id"] == robot_id)
        .map(|r| r["connected"] == true)
}

impl Player {
    /// Reads for up to `time` until the drawn game satisfies `pred`; whether it did.
    async fn shows(&mut self, time: Duration, pred: impl Fn(&Value) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + time;
        while !pred(&self.drawn) && tokio::time::Instant::now() < deadline {
            self.read(Duration::from_millis(20)).await;
        }
        pred(&self.drawn)
    }
}

/// Sockets that close right after their welcome, on the owner and on another server: every
/// screen shows their robots away within 2 s, whether the close reached the game in the same
/// turn as the open, just after it, or up to 200 ms later.
#[tokio::test(start_paused = true)]
async fn a_socket_closed_right_after_its_welcome_shows_away_at_once() {
    let cluster = LocalCluster::new();
    let (a, b) = (node(&cluster, "a"), node(&cluster, "b"));
    let created = a.create(name("ann"), GameConfig::default()).await.unwrap();
    let id = created.game_id.clone();
    let dan = b.join(&id, name("dan")).await.unwrap();
    let mut ann = seat(&a, &id, &created.robot_id).await;
    let mut dan = seat(&b, &id, &dan).await;
    ann.wait(|g| connected(g) == [true, true]).await;
    for i in 0..24u64 {
        if i % 8 == 7 {
            // The away robots are removed from setup: room for more.
            tokio::time::sleep(Duration::from_secs(31)).await;
        }
        let (server, handle) = match i % 2 {
            0 => (&a, ann.game.clone()),
            _ => (&b, dan.game.clone()),
        };
        let robot = server.join(&id, name("eve")).await.unwrap();
        let (tx, _rx) = tokio::sync::mpsc::channel(64);
        let session = server.new_session_id();
        match i % 3 {
            // The close queued right behind the open (its answer awaited by nobody yet).
            0 => {
                let (reply, _answer) = tokio::sync::oneshot::channel();
                let robot_id = robot.clone();
                let sink = Box::new(tx);
                let open = GameMsg::Connect {
                    session,
                    robot_id,
                    sink,
                    reply,
                };
                handle.tx.try_send(open).unwrap();
                handle.tx.try_send(GameMsg::Disconnect(session)).unwrap();
            }
            // The close right after the welcome, or up to 200 ms later.
            _ => {
                let (game, session) = server.connect(&id, &robot, Box::new(tx)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(i * 37 % 200)).await;
                game.tx.send(GameMsg::Disconnect(session)).await.unwrap();
            }
        }
        let away = |g: &Value| connected_of(g, &robot) == Some(false);
        for screen in [&mut ann, &mut dan] {
            let shown = screen.shows(Duration::from_secs(2), away).await;
            assert!(
                shown,
                "socket {i}: {robot} still connected: {}",
                screen.drawn
            );
        }
    }
}

/// A server that let go of a game (its last player gone, nothing played for a minute) and
/// holds it anew for a player coming back: the owner hears its first report at once (its
/// number follows the ones the server sent before, whichever game task sent them).
#[tokio::test(start_paused = true)]
async fn a_player_back_on_a_server_that_let_go_of_the_game_shows_connected_at_once() {
    let cluster = LocalCluster::new();
    let (a, b) = (node(&cluster, "a"), node(&cluster, "b"));
    let created = a.create(name("ann"), GameConfig::default()).await.unwrap();
    let id = created.game_id.clone();
    let bob = b.join(&id, name("bob")).await.unwrap();
    let mut ann = seat(&a, &id, &created.robot_id).await;
    let bob_ws = seat(&b, &id, &bob).await;
    ann.wait(|g| connected(g) == [true, true]).await;
    // A minute on, without a command: b's reports go on, and b keeps the game while bob is
    // there; once he is gone, b lets go of it.
    ann.read(Duration::from_secs(61)).await;
    bob_ws.close().await;
    ann.wait(|g| connected(g) == [true, false]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(b.stats().replicas, 0, "b still holds the game");
    let _bob_ws = seat(&b, &id, &bob).await;
    let back = |g: &Value| connected(g) == [true, true];
    assert!(
        ann.shows(Duration::from_secs(2), back).await,
        "{}",
        ann.drawn
    );
}
