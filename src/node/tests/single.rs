//! One server's game task: a lone server commits at once, the countdown steps once a second,
//! an idle game ends, a session that falls behind is skipped then resynced, and a press that
//! waited too long is answered `overloaded`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use super::{name, node, race, scores, seat, Player, LEASE};
use crate::bus::local::{LocalBus, LocalCluster};
use crate::game::GameConfig;
use crate::node::{GameMsg, Metrics, Node, Outbound, Timing};
use crate::protocol::ClientMsg;

#[tokio::test(start_paused = true)]
async fn single_server_mode_commits_at_once() {
    let node = Node::new(
        Arc::new(LocalBus::single("solo".into())),
        Arc::new(Metrics::default()),
        Timing::new(Duration::from_secs(600), LEASE),
        tokio::runtime::Handle::current(),
    );
    node.start();
    let (_, mut ann, bob) = race(&node, &node).await;
    for _ in 0..3 {
        bob.send(ClientMsg::ScorePoint);
    }
    ann.wait(|g| scores(g) == [0, 3]).await;
    assert!(node.game("nope").await.is_err());
    assert_eq!(node.stats().owned, 1);
}

fn single(idle: Duration) -> Node {
    let node = Node::new(
        Arc::new(LocalBus::single("solo".into())),
        Arc::new(Metrics::default()),
        Timing::new(idle, LEASE),
        tokio::runtime::Handle::current(),
    );
    node.start();
    node
}

#[tokio::test(start_paused = true)]
async fn the_countdown_steps_once_a_second_then_the_race_starts() {
    let node = single(Duration::from_secs(600));
    let config = GameConfig {
        winning_score: 5,
        countdown: 3,
    };
    let created = node.create(name("ann"), config).await.unwrap();
    let bob = node.join(&created.game_id, name("bob")).await.unwrap();
    let ann = seat(&node, &created.game_id, &created.robot_id).await;
    let mut bob = seat(&node, &created.game_id, &bob).await;
    let started = tokio::time::Instant::now();
    ann.send(ClientMsg::StartCountdown);
    let mut steps = Vec::new();
    while steps.len() < 4 {
        let Some(Outbound::Frame(frame)) = bob.rx.recv().await else {
            panic!("bob's session ended");
        };
        let msg: Value = serde_json::from_str(&frame).unwrap();
        let game = &msg["game"];
        steps.push((
            game["state"].as_str().unwrap().to_owned(),
            game["countdown"].as_u64().unwrap(),
            started.elapsed().as_secs(),
        ));
    }
    let expected = [
        ("counting_down", 3, 0),
        ("counting_down", 2, 1),
        ("counting_down", 1, 2),
        ("playing", 0, 3),
    ]
    .map(|(s, c, t)| (s.to_owned(), c, t));
    assert_eq!(steps, expected);
}

#[tokio::test(start_paused = true)]
async fn an_idle_game_is_ended_and_its_players_told() {
    let node = single(Duration::from_secs(10));
    let started = tokio::time::Instant::now();
    let created = node
        .create(name("ann"), GameConfig::default())
        .await
        .unwrap();
    let mut ann = seat(&node, &created.game_id, &created.robot_id).await;
    let mut told = false;
    while let Some(out) = ann.rx.recv().await {
        match out {
            Outbound::Frame(f) if f.contains("terminated") => told = true,
            Outbound::Close(crate::node::CloseWhy::Terminated) => break,
            _ => {}
        }
    }
    assert!(told, "no terminated message");
    let idle = started.elapsed();
    assert!(
        idle >= Duration::from_secs(10) && idle <= Duration::from_secs(11),
        "{idle:?}"
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(node.game(&created.game_id).await.is_err());
    assert_eq!(node.stats().owned, 0);
}

#[tokio::test(start_paused = true)]
async fn a_session_that_falls_behind_is_skipped_then_gets_the_newest_state() {
    let node = single(Duration::from_secs(600));
    let (id, ann, mut bob) = race(&node, &node).await;
    // The race has started: a join is refused. A second socket of ann's that stops reading,
    // with room for 4 frames.
    assert!(node.join(&id, name("cy")).await.is_err());
    let (tx, mut stalled) = mpsc::channel(4);
    let (game, _) = node
        .connect(&id, &ann_robot(&ann), Box::new(tx))
        .await
        .unwrap();
    for _ in 0..10 {
        bob.send(ClientMsg::ScorePoint);
        bob.read(Duration::from_millis(20)).await;
    }
    bob.wait(|g| scores(g) == [0, 10]).await;
    let metrics = node.metrics();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(load(&metrics.sessions_behind), 1);
    assert!(load(&metrics.frames_skipped) >= 6);
    // Its queue never held more than its room: no pile of stale frames.
    let mut queued = Vec::new();
    while let Ok(Outbound::Frame(f)) = stalled.try_recv() {
        queued.push(serde_json::from_str::<Value>(&f).unwrap());
    }
    assert_eq!(queued.len(), 4, "{queued:?}");
    // It reads again: the next change brings the newest full state, then it carries on.
    bob.send(ClientMsg::ScorePoint);
    bob.wait(|g| scores(g) == [0, 11]).await;
    let Some(Outbound::Frame(next)) = stalled.recv().await else {
        panic!("no frame after catching up")
    };
    let next: Value = serde_json::from_str(&next).unwrap();
    assert_eq!(next["type"], "game_update", "{next}");
    assert_eq!(scores(&next["game"]), [0, 11]);
    bob.send(ClientMsg::ScorePoint);
    let Some(Outbound::Frame(after)) = stalled.recv().await else {
        panic!("no frame after the resync")
    };
    let after: Value = serde_json::from_str(&after).unwrap();
    assert_eq!(
        (after["type"].clone(), after["scores"].clone()),
        ("scores".into(), serde_json::json!([0, 12]))
    );
    assert_eq!(load(&metrics.sessions_dropped_slow), 0);
    drop(game);
}

fn ann_robot(p: &Player) -> String {
    p.drawn["robots"][0]["id"].as_str().unwrap().to_owned()
}

#[tokio::test(start_paused = true)]
async fn a_press_that_waited_too_long_is_answered_overloaded_not_applied() {
    let cluster = LocalCluster::new();
    let (a, b) = (node(&cluster, "a"), node(&cluster, "b"));
    let (_id, mut ann, mut bob) = race(&a, &b).await;
    // A press that reached the server 300 ms ago and only now reaches its game.
    let late = tokio::time::Instant::now() - Duration::from_millis(300);
    bob.game
        .tx
        .try_send(GameMsg::Client(bob.session, ClientMsg::ScorePoint, late))
        .unwrap();
    let mut answered = None;
    while let Ok(Some(Outbound::Frame(f))) =
        tokio::time::timeout(Duration::from_millis(200), bob.rx.recv()).await
    {
        let msg: Value = serde_json::from_str(&f).unwrap();
        if msg["type"] == "error" {
            answered = Some(msg);
        }
    }
    assert_eq!(
        answered.map(|m| m["error"].clone()),
        Some("overloaded".into())
    );
    assert_eq!(
        b.metrics()
            .overloaded
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // A fresh press still counts; the late one never does.
    bob.send(ClientMsg::ScorePoint);
    ann.wait(|g| scores(g) == [0, 1]).await;
    ann.read(Duration::from_millis(500)).await;
    assert_eq!(scores(&ann.drawn), [0, 1]);
    // The owner timed the press from its arrival to its broadcast.
    let count = a.metrics().press_to_broadcast.read().count;
    assert_eq!(count, 1);
}
