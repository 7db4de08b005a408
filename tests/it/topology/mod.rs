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

/// The test helpers' own check: a `redis-server` start that finds a port taken (another test
/// took it after it was picked) is tried again on new ports instead of failing the test.
#[test]
fn a_redis_start_that_finds_its_port_taken_tries_new_ports() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("cannot bind 127.0.0.1:0");
    let taken_port = taken.local_addr().unwrap().port().to_string();
    let tries = std::cell::Cell::new(0);
    let redis = Redis::start_retrying(|| {
        tries.set(tries.get() + 1);
        // The last `--port` wins: the first try is sent to the taken one.
        match tries.get() {
            1 => vec!["--port".into(), taken_port.clone()],
            _ => Vec::new(),
        }
    });
    assert_eq!(
        tries.get(),
        2,
        "the taken port was not tried first, or not left"
    );
    assert_ne!(redis.port.to_string(), taken_port);
    let pong: String = redis::cmd("PING")
        .query(&mut redis.client().get_connection().unwrap())
        .unwrap();
    assert_eq!(pong, "PONG");
}
