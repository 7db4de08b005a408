//! Beyond one Redis: per-game subscriptions, Redis Sentinel and Redis Cluster, against real
//! `redis-server` processes (plain, replica, `--sentinel`, cluster-enabled) on free loopback
//! ports owned by each test.

mod cluster;
mod per_game;
mod sentinel;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::Value;

use crate::faults::{agreement, notable_logs, presses_not_accounted_for, report};
use crate::helpers::*;

/// Play resumes after a fault struck at `struck`: a press on every server moves its player's
/// robot within 10 s of it. Returns when each did, after the fault.
async fn play_resumes(
    players: &mut [RacingPlayer],
    servers: &[Server],
    struck: Instant,
) -> Vec<Option<Duration>> {
    let left = SECS(10).saturating_sub(struck.elapsed()).max(SECS(1));
    let moved = join_all(
        players
            .iter_mut()
            .map(|p| p.press_until_own_score_rises(Duration::from_millis(100), left)),
    )
    .await;
    let resumed: Vec<Option<Duration>> = moved
        .iter()
        .map(|at| at.map(|at| at.duration_since(struck)))
        .collect();
    assert!(
        resumed.iter().all(|t| t.is_some_and(|t| t <= SECS(10))),
        "play did not resume within 10 s of the fault: {resumed:?}\n{}{}",
        report(players),
        notable_logs(servers)
    );
    resumed
}

/// Every screen agrees once the presses settle, and every press is applied once or was
/// answered with an error.
async fn nothing_lost(players: &mut [RacingPlayer], servers: &[Server]) {
    let agreed = settle(players, SECS(20), SECS(5)).await;
    let failures: Vec<String> = [
        agreement(players, &agreed),
        presses_not_accounted_for(players, &agreed),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(
        failures.is_empty(),
        "{}\n{}{}",
        failures.join("\n"),
        report(players),
        notable_logs(servers)
    );
}

/// `/metrics` of a server, as text.
async fn metrics(server: &Server) -> String {
    let client = awc::Client::builder().timeout(SECS(10)).finish();
    let mut res = client
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    let body = res.body().await.expect("/metrics body");
    String::from_utf8_lossy(&body).into_owned()
}

/// One sample of `/metrics` (`name` with its labels, e.g. `x_total{channel="game"}`); 0 when
/// absent.
async fn sample(server: &Server, name: &str) -> u64 {
    let text = metrics(server).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

async fn health(server: &Server) -> Value {
    let (status, body) = server.api().get_json("/health").await;
    assert_eq!(status, 200, "/health: {body}");
    body
}
