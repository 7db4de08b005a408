//! A frozen owner: it never shows a state the cluster moved past, and a press forwarded to it
//! is applied exactly once.

use std::cell::Cell;
use std::time::{Duration, Instant};

use futures_util::future::join;
use serde_json::{json, Value};

use super::judge::{
    agreement, notable_logs, presses_not_accounted_for, report, scores_that_went_down,
    versions_with_two_states,
};
use super::{cluster, node, race_all_through, six_players_racing, LEASE_MS, PRESS_EVERY};
use crate::helpers::*;

/// An owner frozen (SIGSTOP) for three times its lease, while six players on three servers
/// keep pressing, must not, once thawed, show its players any state that the cluster has
/// moved past: no score ever goes down on a screen, one version number is one game on every
/// screen, and every press sent is applied exactly once or answered with an error.
#[actix_rt::test]
async fn a_frozen_owner_never_shows_a_refused_state() {
    let (_redis, servers) = cluster(3, true);
    let mut players = six_players_racing(&servers).await;

    let pressing = Cell::new(true);
    let control = async {
        actix_rt::time::sleep(SECS(2)).await;
        let frozen = Frozen::new(&servers[0]);
        actix_rt::time::sleep(Duration::from_millis(3 * LEASE_MS)).await;
        frozen.thaw();
        actix_rt::time::sleep(SECS(3)).await;
        pressing.set(false);
    };
    race_all_through(&mut players, PRESS_EVERY, &pressing, control).await;
    let agreed = settle(&mut players, SECS(20), SECS(5)).await;

    let failures: Vec<String> = [
        agreement(&players, &agreed),
        scores_that_went_down(&players),
        versions_with_two_states(&players),
        presses_not_accounted_for(&players, &agreed),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(
        failures.is_empty(),
        "server 0 (the owner) frozen for {} ms with a {LEASE_MS} ms lease:\n{}\n{}{}",
        3 * LEASE_MS,
        failures.join("\n"),
        report(&players),
        notable_logs(&servers)
    );
}

/// Presses a player makes on server B while the owner A is frozen are forwarded to A, which
/// cannot answer. B must take the game over once A's lease is gone and apply them, and A,
/// thawed, must not apply them a second time: the score is the number of presses, on the
/// player's screen and in Redis.
#[actix_rt::test]
async fn a_press_forwarded_to_a_frozen_owner_is_applied_exactly_once() {
    let redis = Redis::start();
    let a = node(&redis, "a", true);
    let b = node(&redis, "b", true);
    let ann_joined = a.api().create("ann", 100, 0).await;
    let game_id = ann_joined.game_id.clone();
    let bob_joined = b.api().join(&game_id, "bob").await;
    let mut ann = RacingPlayer::new("ann", ann_joined, &[&a, &b], 0);
    let mut bob = RacingPlayer::new("bob", bob_joined, &[&a, &b], 1);
    assert!(ann.connect().await && ann.server == 0, "{:?}", ann.events);
    assert!(bob.connect().await && bob.server == 1, "{:?}", bob.events);
    assert!(
        bob.wait_drawn(SECS(15), |g| g["robots"]
            .as_array()
            .is_some_and(|r| r.len() == 2))
            .await
    );
    assert!(ann.send(json!({"type": "start_countdown"})).await);
    assert!(
        bob.wait_drawn(SECS(15), |g| state(g) == "playing").await,
        "not playing: {}",
        bob.game
    );
    // Two presses through B, forwarded to A while it is well.
    for _ in 0..2 {
        assert!(bob.press().await);
        bob.read_until(Instant::now() + Duration::from_millis(100))
            .await;
    }
    let bob_id = bob.robot_id().to_owned();
    let score = |g: &Value| robot(g, &bob_id)["score"].as_u64().unwrap_or(0);
    assert!(
        bob.wait_drawn(SECS(10), |g| score(g) == 2).await,
        "the first two presses were not applied: {}",
        bob.game
    );

    let frozen = Frozen::new(&a);
    let frozen_at = Instant::now();
    for _ in 0..5 {
        assert!(bob.press().await, "{:?}", bob.events);
        bob.read_until(Instant::now() + Duration::from_millis(100))
            .await;
    }
    let expected = 7;
    let reached = bob.wait_drawn(SECS(15), |g| score(g) >= expected).await;
    let while_frozen = score(&bob.game);
    let waited = frozen_at.elapsed();
    frozen.thaw();
    // A is back: give it time to do whatever it still had queued.
    let back = Instant::now() + SECS(3);
    join(ann.read_until(back), bob.listen(SECS(3))).await;
    let stored = |redis: &Redis| {
        redis
            .get(&format!("game_state:{game_id}"))
            .and_then(|json| serde_json::from_str::<Value>(&json).ok())
            .map(|g| score(&g))
    };
    let in_redis = stored(&redis);
    let on_screen = score(&bob.game);
    assert!(
        reached && on_screen == expected && in_redis == Some(expected),
        "bob's 5 presses on B, forwarded to A while A was frozen (expected bob's score 2 + 5 = {expected}):\n  \
         with A frozen, bob's screen showed {while_frozen} after {:.1} s{}\n  \
         3 s after A was thawed: bob's screen {on_screen}, Redis {in_redis:?}\n  \
         bob: {}\n  bob's events: {:?}\n{}",
        waited.as_secs_f64(),
        if reached { "" } else { " (gave up waiting)" },
        bob.summary(),
        bob.events,
        notable_logs(&[a, b])
    );
}
