//! An owner lost between applying presses and its write of them reaching Redis: killed while
//! Redis cannot take its writes, or frozen past its lease and then killed. Whatever the owner
//! had applied but not made durable was never shown to anyone; what any player was shown
//! survives on the server that takes the game over.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::judge::{
    acknowledged_presses_lost, agreement, notable_logs, presses_not_accounted_for, report,
    scores_that_went_down, versions_with_two_states,
};
use super::{cluster, race_all_through, six_players_racing, LEASE_MS, PRESS_EVERY};
use crate::helpers::*;

/// How the owner is lost.
#[derive(Clone, Copy, Debug)]
enum Loss {
    /// Redis frozen (the owner's saves wait in its socket), the owner killed, Redis thawed.
    KilledWhileRedisFrozen,
    /// The owner frozen for three leases (the others take the game over), then killed.
    FrozenThenKilled,
}

async fn lose_the_owner(loss: Loss) {
    let (redis, servers) = cluster(3, true);
    let mut players = six_players_racing(&servers).await;
    let owner = servers[0].pid();
    let pressing = Cell::new(true);
    let control = async {
        actix_rt::time::sleep(SECS(2)).await;
        match loss {
            Loss::KilledWhileRedisFrozen => {
                let frozen = Frozen::pid(redis.pid());
                // The owner applies the presses of the next 300 ms; their writes wait.
                actix_rt::time::sleep(Duration::from_millis(300)).await;
                signal_pid(owner, "KILL");
                actix_rt::time::sleep(Duration::from_millis(200)).await;
                frozen.thaw();
            }
            Loss::FrozenThenKilled => {
                let frozen = Frozen::pid(owner);
                actix_rt::time::sleep(Duration::from_millis(3 * LEASE_MS)).await;
                signal_pid(owner, "KILL");
                drop(frozen);
            }
        }
        actix_rt::time::sleep(SECS(4)).await;
        pressing.set(false);
    };
    race_all_through(&mut players, PRESS_EVERY, &pressing, control).await;
    let agreed = settle(&mut players, SECS(20), SECS(5)).await;
    // What Redis holds is what the players agree on.
    let game_id = players[0].joined.game_id.clone();
    let stored: Option<BTreeMap<String, u64>> = redis
        .get(&format!("game_state:{game_id}"))
        .and_then(|json| serde_json::from_str::<Value>(&json).ok())
        .map(|g| scores_of(&g));
    let in_redis = (stored != agreed)
        .then(|| format!("Redis holds {stored:?}, the players agree on {agreed:?}"));
    // p0 and p1 played on the owner: presses they sent just before it died got no answer.
    let failures: Vec<String> = [
        agreement(&players, &agreed),
        in_redis,
        scores_that_went_down(&players),
        versions_with_two_states(&players),
        acknowledged_presses_lost(&players, &agreed, &["p0", "p1"]),
        presses_not_accounted_for(&players[2..], &agreed),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(
        failures.is_empty(),
        "{loss:?} (lease {LEASE_MS} ms):\n{}\n{}{}",
        failures.join("\n"),
        report(&players),
        notable_logs(&servers[1..])
    );
}

/// Redis frozen, so the owner's writes of the presses it applies wait; the owner killed; Redis
/// thawed: no acknowledged press is lost, none is counted twice, one version is one state.
#[actix_rt::test]
async fn an_owner_killed_before_its_writes_reach_redis_loses_no_acknowledged_press() {
    lose_the_owner(Loss::KilledWhileRedisFrozen).await;
}

/// The owner frozen mid-race past its lease (the others take the game over), then killed:
/// the same.
#[actix_rt::test]
async fn an_owner_frozen_then_killed_loses_no_acknowledged_press() {
    lose_the_owner(Loss::FrozenThenKilled).await;
}
