//! Ownership follows the players: a game whose players move to another server mid-race moves
//! with them, and through the move no press is lost or applied twice, one version is one state
//! on every screen, and every press is answered.

use std::cell::Cell;

use super::judge::{scores_that_went_down, versions_with_two_states};
use super::{agreement, node, notable_logs, presses_not_accounted_for, race_all_through};
use super::{report, start_all, PRESS_EVERY};
use crate::helpers::*;

/// Six players racing on server a, which created the game and owns it; four of them reconnect
/// to server b mid-race and press on: a second later a hands the game to b. Every player keeps
/// pressing through the move.
#[actix_rt::test]
async fn a_game_moves_to_its_players_mid_race_and_loses_no_press() {
    let redis = Redis::start();
    let servers = [node(&redis, "a", true), node(&redis, "b", true)];
    let refs: Vec<&Server> = servers.iter().collect();
    let admin = servers[0].api().create("p0", 1000, 0).await;
    let mut joined = vec![admin.clone()];
    for i in 1..6 {
        joined.push(
            servers[0]
                .api()
                .join(&admin.game_id, &format!("p{i}"))
                .await,
        );
    }
    let mut players = Vec::new();
    for (i, j) in joined.into_iter().enumerate() {
        let mut p = RacingPlayer::new(&format!("p{i}"), j, &refs, 0);
        assert!(p.connect().await && p.server == 0, "p{i}: {:?}", p.events);
        players.push(p);
    }
    start_all(&mut players).await;

    let pressing = Cell::new(true);
    let stop_soon = async {
        actix_rt::time::sleep(SECS(2)).await;
        pressing.set(false);
    };
    race_all_through(&mut players, PRESS_EVERY, &pressing, stop_soon).await;
    for p in &mut players[2..] {
        assert!(
            p.reconnect().await && p.server == 1,
            "{}: {:?}",
            p.name,
            p.events
        );
    }
    pressing.set(true);
    let moved = "handing it to node b, which holds more of its players";
    let control = async {
        for _ in 0..150 {
            if servers[0].logs.contains(moved) {
                break;
            }
            actix_rt::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        actix_rt::time::sleep(SECS(3)).await;
        pressing.set(false);
    };
    race_all_through(&mut players, PRESS_EVERY, &pressing, control).await;
    let agreed = settle(&mut players, SECS(20), SECS(3)).await;

    let moves = servers[0].metric("robot_race_game_moves_total").await;
    let here = servers[1]
        .metric("robot_race_presses_applied_here_total")
        .await;
    let mut waits: Vec<_> = players.iter().flat_map(|p| p.answered_in.clone()).collect();
    waits.sort();
    let p99 = waits.get(waits.len() * 99 / 100).copied();
    println!(
        "moved: {moves:?}; presses b applied for its own players: {here:?}; answers {} p99 {p99:?} max {:?}",
        waits.len(),
        waits.last()
    );
    let failures: Vec<String> = [
        (moves != Some(1.0)).then(|| format!("a made {moves:?} moves, not 1")),
        (!servers[1].logs.contains("node b owns it now")).then(|| "b never took it".into()),
        (here.unwrap_or(0.0) < 1.0).then(|| "b applied none of its players' presses".into()),
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
        "{}\n{}{}",
        failures.join("\n"),
        report(&players),
        notable_logs(&servers)
    );
}
