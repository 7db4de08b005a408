//! Several servers on one real Redis: cross-server play, no lost press, one countdown, one
//! winner ([`play`]); password and TLS connections, Redis absent, killed and restarted
//! ([`connection`]); a server killed, stopped or frozen, and games Redis lost ([`failover`]).
//!
//! Here: the servers of a cluster, and reading what they stored.

mod connection;
mod failover;
mod play;

use serde_json::Value;

use crate::helpers::*;

fn node(redis: &Redis, name: &str) -> Server {
    node_with(redis, name, &[])
}

fn node_with(redis: &Redis, name: &str, extra: &[&str]) -> Server {
    let server = cluster_node(redis, name, extra);
    assert!(server
        .logs
        .contains("Subscribed to Redis channels: [game:*]"));
    server
}

fn cluster(n: usize) -> (Redis, Vec<Server>) {
    cluster_with(n, &[])
}

fn cluster_with(n: usize, extra: &[&str]) -> (Redis, Vec<Server>) {
    let redis = Redis::start();
    let servers = (1..=n)
        .map(|i| node_with(&redis, &format!("node{i}"), extra))
        .collect();
    (redis, servers)
}

fn stored(redis: &Redis, game_id: &str) -> Value {
    let json = redis
        .get(&format!("game_state:{game_id}"))
        .unwrap_or_else(|| panic!("game_state:{game_id} is missing"));
    serde_json::from_str(&json).unwrap()
}

/// The countdown values a player saw, from the start of the countdown to the first `playing`.
fn countdown_seen(player: &Player) -> Vec<u64> {
    let mut seen = Vec::new();
    for game in &player.history {
        match state(game) {
            "counting_down" => seen.push(game["countdown"].as_u64().unwrap()),
            "playing" => {
                seen.push(game["countdown"].as_u64().unwrap());
                break;
            }
            _ => {}
        }
    }
    seen
}
