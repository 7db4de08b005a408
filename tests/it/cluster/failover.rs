//! Servers that die, stop or freeze, and games Redis lost: another server takes over, hands
//! over on SIGTERM, ends idle games everywhere, waits for a frozen owner, restores a lost game
//! from its copy, and catches up after a late reconnect.

use std::time::Duration;

use serde_json::{json, Value};

use super::{node, node_with, stored};
use crate::helpers::*;

/// The owning server dies (SIGKILL): another takes the game over and the race goes on.
#[actix_rt::test]
async fn a_killed_owner_is_replaced_and_the_race_goes_on() {
    let redis = Redis::start();
    let mut owner = node(&redis, "owner");
    let other = node(&redis, "other");
    let ann = owner.api().create("ann", 30, 0).await;
    let bob = other.api().join(&ann.game_id, "bob").await;
    let ann_again = ann.clone();
    let mut bob_ws = connect(&other, &bob).await;
    {
        let mut ann_ws = connect(&owner, &ann).await;
        ann_ws.send(json!({"type": "start_countdown"})).await;
        bob_ws.wait_game(SECS(15), |g| state(g) == "playing").await;
        bob_ws.press_paced(10, Duration::from_millis(40)).await;
        ann_ws.press_paced(3, Duration::from_millis(40)).await;
        bob_ws
            .wait_game(SECS(15), |g| {
                g["robots"][1]["score"] == 10 && g["robots"][0]["score"] == 3
            })
            .await;
    }
    owner.kill();
    // Bob keeps pressing: the other server finds the owner gone, takes over, counts them all.
    bob_ws.press_paced(20, Duration::from_millis(40)).await;
    let game = bob_ws.wait_game(SECS(15), |g| state(g) == "finished").await;
    assert_eq!(game["winner"], bob.robot_id.as_str());
    assert_eq!(game["robots"][0]["score"], 3);
    assert_eq!(
        redis.get(&format!("game_owner:{}", ann.game_id)).as_deref(),
        Some("other")
    );
    // Ann reconnects to the surviving server with her old token.
    let ann_ws = connect(&other, &ann_again).await;
    assert_eq!(ann_ws.game["winner"], bob.robot_id.as_str());
}

/// SIGTERM on the owner hands its games over at once.
#[actix_rt::test]
async fn sigterm_on_the_owner_hands_the_game_over() {
    sigterm_hands_over(&[]).await;
}

/// The same with same-thread servers: shutdown drains before the one worker stops.
#[actix_rt::test]
async fn sigterm_on_a_same_thread_owner_hands_the_game_over() {
    sigterm_hands_over(&["-same-thread"]).await;
}

async fn sigterm_hands_over(extra: &[&str]) {
    let redis = Redis::start();
    let mut owner = node_with(&redis, "leaving", extra);
    let other = node_with(&redis, "staying", extra);
    let ann = owner.api().create("ann", 5, 0).await;
    let bob = other.api().join(&ann.game_id, "bob").await;
    let mut ann_ws = connect(&owner, &ann).await;
    for name in ["cy", "dan", "eve"] {
        owner.api().create(name, 5, 0).await;
    }
    // Let lease renewals run first: a renewal must never take back a released lease.
    actix_rt::time::sleep(SECS(3)).await;
    assert_eq!(redis.keys("game_owner:*").len(), 4);
    let status = owner.terminate().expect("no exit after SIGTERM");
    assert!(status.success());
    assert_eq!(
        ann_ws.wait_close(SECS(15)).await.map(|r| r.code),
        Some(awc::ws::CloseCode::Away)
    );
    assert!(owner.logs.contains("released 4 game(s) to the cluster"));
    // A server that owns nothing stops cleanly too.
    let mut idle = node_with(&redis, "idle", extra);
    assert!(idle.terminate().expect("no exit after SIGTERM").success());
    assert!(
        !idle.logs.contains("could not release"),
        "{}",
        idle.logs.all()
    );
    assert_eq!(
        redis.keys("game_owner:*"),
        Vec::<String>::new(),
        "leases not released"
    );
    // Both players continue on the remaining server.
    let mut ann_ws = connect(&other, &ann).await;
    let mut bob_ws = connect(&other, &bob).await;
    ann_ws.send(json!({"type": "start_countdown"})).await;
    bob_ws.wait_game(SECS(15), |g| state(g) == "playing").await;
    bob_ws.press_paced(5, Duration::from_millis(40)).await;
    let game = ann_ws.wait_game(SECS(15), |g| state(g) == "finished").await;
    assert_eq!(game["winner"], bob.robot_id.as_str());
    assert_eq!(
        redis.get(&format!("game_owner:{}", ann.game_id)).as_deref(),
        Some("staying")
    );
}

/// An idle game ends on every server: players on the owner and elsewhere are told, and
/// its keys are gone.
#[actix_rt::test]
async fn an_idle_game_ends_on_every_server() {
    let redis = Redis::start();
    let args = |name: &str| {
        vec![
            "-redis".to_owned(),
            redis.addr(),
            "-node-id".to_owned(),
            name.to_owned(),
            "-idle-timeout-secs".to_owned(),
            "2".to_owned(),
        ]
    };
    let start = |name: &str| {
        let a = args(name);
        let s = Server::start(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(s.logs.wait_for("multi-server mode enabled", SECS(20)));
        s
    };
    let (owner, other) = (start("owner"), start("other"));
    let ann = owner.api().create("ann", 5, 0).await;
    let bob = other.api().join(&ann.game_id, "bob").await;
    let mut ann_ws = connect(&owner, &ann).await;
    let mut bob_ws = connect(&other, &bob).await;
    for p in [&mut ann_ws, &mut bob_ws] {
        p.wait_close(SECS(15)).await;
        assert!(p.terminated, "no terminated message");
    }
    assert!(redis.get(&format!("game_state:{}", ann.game_id)).is_none());
    assert!(redis.get(&format!("game_owner:{}", ann.game_id)).is_none());
    let (status, _) = other
        .api()
        .get_json(&format!("/api/games/{}", ann.game_id))
        .await;
    assert_eq!(status, 404);
}

/// Redis restarts empty while the owner is frozen (SIGSTOP): the other server reconnects
/// first and finds the game missing. It must not end the game; the owner, once back, saves
/// it again and the race goes on with the owner's scores.
#[actix_rt::test]
async fn a_replica_waits_for_the_owner_when_redis_comes_back_empty() {
    let mut redis = Redis::start();
    let owner = node(&redis, "owner");
    let other = node(&redis, "other");
    let ann = owner.api().create("ann", 20, 0).await;
    let bob = other.api().join(&ann.game_id, "bob").await;
    let mut ann_ws = connect(&owner, &ann).await;
    let mut bob_ws = connect(&other, &bob).await;
    ann_ws.send(json!({"type": "start_countdown"})).await;
    bob_ws.wait_game(SECS(15), |g| state(g) == "playing").await;
    ann_ws.press_paced(4, Duration::from_millis(40)).await;
    bob_ws
        .wait_game(SECS(15), |g| g["robots"][0]["score"] == 4)
        .await;

    signal(&owner, "STOP");
    redis.restart_empty();
    assert!(
        other
            .logs
            .wait_for_async("waiting for its owner to save it", SECS(15))
            .await,
        "{}",
        other.logs.all()
    );
    signal(&owner, "CONT");
    // The owner reconnects and saves; bob's presses reach it; nobody was sent away.
    bob_ws.press_paced(20, Duration::from_millis(40)).await;
    let game = bob_ws.wait_game(SECS(20), |g| state(g) == "finished").await;
    assert_eq!(game["winner"], bob.robot_id.as_str());
    assert_eq!(game["robots"][0]["score"], 4);
    assert!(!bob_ws.terminated);
    assert_eq!(stored(&redis, &ann.game_id)["state"], "finished");
}

/// Redis comes back empty and the owner is dead: the other server restores the game from
/// its own copy after the grace period, and its players race on.
#[actix_rt::test]
async fn a_lost_game_is_restored_from_a_replica_when_its_owner_is_dead() {
    let mut redis = Redis::start();
    let lease = ["-owner-lease-ms", "1000"];
    let start = |name: &str, redis: &Redis| {
        let s = Server::start(&[
            "-redis",
            &redis.addr(),
            "-node-id",
            name,
            lease[0],
            lease[1],
        ]);
        assert!(s.logs.wait_for("multi-server mode enabled", SECS(20)));
        s
    };
    let mut owner = start("owner", &redis);
    let other = start("other", &redis);
    let ann = owner.api().create("ann", 10, 0).await;
    let bob = other.api().join(&ann.game_id, "bob").await;
    let mut bob_ws = connect(&other, &bob).await;
    let mut ann_ws = connect(&owner, &ann).await;
    ann_ws.send(json!({"type": "start_countdown"})).await;
    bob_ws.wait_game(SECS(15), |g| state(g) == "playing").await;
    ann_ws.press_paced(3, Duration::from_millis(40)).await;
    bob_ws
        .wait_game(SECS(15), |g| g["robots"][0]["score"] == 3)
        .await;
    owner.kill();
    redis.restart_empty();
    // Bob presses on; while the game has no owner that can save it, a press may be answered
    // `unavailable` (never applied), so he presses until he wins, as a player would.
    let deadline = std::time::Instant::now() + SECS(30);
    while state(&bob_ws.game) != "finished" && std::time::Instant::now() < deadline {
        bob_ws.press().await;
        bob_ws.drain(Duration::from_millis(100)).await;
    }
    let game = bob_ws.wait_game(SECS(5), |g| state(g) == "finished").await;
    assert_eq!(game["winner"], bob.robot_id.as_str());
    assert_eq!(game["robots"][0]["score"], 3);
    assert_eq!(
        redis.get(&format!("game_owner:{}", ann.game_id)).as_deref(),
        Some("other")
    );
}

fn signal(server: &Server, sig: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(server.pid().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} failed");
}

/// A replica that reconnects after the owner has already saved and published again (it was
/// frozen meanwhile) reads the game again: its players see what they missed without waiting
/// for another change.
#[actix_rt::test]
async fn a_replica_that_reconnects_late_catches_up() {
    let mut redis = Redis::start();
    let owner = node(&redis, "owner");
    let other = node(&redis, "other");
    let ann = owner.api().create("ann", 50, 0).await;
    let bob = other.api().join(&ann.game_id, "bob").await;
    let mut ann_ws = connect(&owner, &ann).await;
    let mut bob_ws = connect(&other, &bob).await;
    ann_ws.send(json!({"type": "start_countdown"})).await;
    bob_ws.wait_game(SECS(15), |g| state(g) == "playing").await;

    redis.kill();
    assert!(
        owner
            .logs
            .wait_for_async("Lost the connection to Redis", SECS(20))
            .await
    );
    signal(&other, "STOP");
    ann_ws.press_paced(7, Duration::from_millis(40)).await;
    redis.restart_empty();
    // The owner is back and has saved (and published) the game before the replica listens.
    let deadline = std::time::Instant::now() + SECS(20);
    while stored_score(&redis, &ann.game_id) != Some(7) && std::time::Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored_score(&redis, &ann.game_id), Some(7));
    signal(&other, "CONT");
    // No further change happens: the replica must catch up by itself.
    let game = bob_ws
        .wait_game(SECS(20), |g| g["robots"][0]["score"] == 7)
        .await;
    assert_eq!(state(&game), "playing");
}

fn stored_score(redis: &Redis, game_id: &str) -> Option<u64> {
    let json = redis.get(&format!("game_state:{game_id}"))?;
    serde_json::from_str::<Value>(&json).ok()?["robots"][0]["score"].as_u64()
}
