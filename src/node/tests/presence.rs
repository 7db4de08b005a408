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
