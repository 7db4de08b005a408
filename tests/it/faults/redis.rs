//! A sick Redis: frozen mid-race. Nothing the servers could not save is ever shown, so no
//! version means two states and no score goes back; presses made meanwhile are answered
//! `unavailable` (never applied), and play resumes once Redis is back.

use std::cell::Cell;
use std::time::Duration;

use super::judge::{
    agreement, notable_logs, presses_not_accounted_for, report, scores_that_went_down,
    versions_with_two_states,
};
use super::{cluster, race_all_through, six_players_racing, LEASE_MS, PRESS_EVERY};
use crate::helpers::*;

/// Redis frozen (SIGSTOP) for four leases while six players on three servers keep pressing:
/// every lease lapses inside Redis while its owner cannot reach it. Once Redis is thawed, one
/// version number is one game on every screen, no score ever went down on a screen, and every
/// press sent was applied exactly once or answered with an error.
#[actix_rt::test]
async fn a_frozen_redis_forks_no_version_and_rolls_nothing_back() {
    let (redis, servers) = cluster(3, true);
    let mut players = six_players_racing(&servers).await;
    let pressing = Cell::new(true);
    let control = async {
        actix_rt::time::sleep(SECS(2)).await;
        let frozen = Frozen::pid(redis.pid());
        actix_rt::time::sleep(Duration::from_millis(4 * LEASE_MS)).await;
        frozen.thaw();
        actix_rt::time::sleep(SECS(4)).await;
        pressing.set(false);
    };
    race_all_through(&mut players, PRESS_EVERY, &pressing, control).await;
    let agreed = settle(&mut players, SECS(20), SECS(5)).await;
    let unavailable: u64 = players
        .iter()
        .map(|p| p.errors.get("unavailable").copied().unwrap_or(0))
        .sum();
    let failures: Vec<String> = [
        agreement(&players, &agreed),
        scores_that_went_down(&players),
        versions_with_two_states(&players),
        presses_not_accounted_for(&players, &agreed),
        (unavailable == 0).then(|| "no press was answered `unavailable`".to_owned()),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(
        failures.is_empty(),
        "Redis frozen for {} ms with a {LEASE_MS} ms lease:\n{}\n{}{}",
        4 * LEASE_MS,
        failures.join("\n"),
        report(&players),
        notable_logs(&servers)
    );
}
