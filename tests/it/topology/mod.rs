//! Beyond one Redis: per-game subscriptions, Redis Sentinel and Redis Cluster, against real
//! `redis-server` processes (plain, replica, `--sentinel`, cluster-enabled) on free loopback
//! ports owned by each test.

mod cluster;
mod per_game;
mod sentinel;

use serde_json::Value;

use crate::helpers::*;

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
