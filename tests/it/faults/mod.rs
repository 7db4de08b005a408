//! Fault tests: an owner frozen past its lease, a press forwarded to a frozen owner, a rolling
//! restart of every server, Redis back empty. Real servers and a real Redis; players race as
//! browsers do ([`RacingPlayer`]: steady presses, reading between them, moving to the next
//! server when a socket closes), and the tests judge what every screen showed and what every
//! press became.
//!
//! Here: the servers and the six racing players the tests share (also the topology tests');
//! what the tests judge: [`judge`]; the tests: [`owner`] (a frozen owner), [`owner_lost`] (an
//! owner killed before its writes reach Redis), [`redis`] (a frozen Redis), [`sick`] (Redis cut
//! off, slow, out of memory), [`restart`] (a rolling restart, Redis back empty),
//! [`pubsub_liveness`] (one server's pub/sub connection silently dropped), [`moves`] (a game
//! handed to the server holding most of its players, mid-race).

mod judge;
mod moves;
mod nemesis;
mod owner;
mod owner_lost;
mod pubsub_liveness;
mod redis;
mod restart;
mod sick;

pub(crate) use judge::{agreement, notable_logs, presses_not_accounted_for, report};

use std::cell::Cell;
use std::time::Duration;

use futures_util::future::{join, join_all};
use serde_json::json;

use crate::helpers::*;

/// The ownership lease these tests run with (`-owner-lease-ms`).
const LEASE_MS: u64 = 1000;
/// Five presses a second per player: a human pace, far under the 30/s rate limit, also when a
/// frozen server reads three seconds of them at once.
pub(crate) const PRESS_EVERY: Duration = Duration::from_millis(200);

/// A server on `redis` named `name` (with the short lease when `lease`), once it says it is
/// connected.
fn node(redis: &Redis, name: &str, lease: bool) -> Server {
    node_at(&redis.addr(), name, lease)
}

/// A server on the Redis at `addr` (say, a proxy in front of it).
fn node_at(addr: &str, name: &str, lease: bool) -> Server {
    let addr = addr.to_owned();
    let lease_ms = LEASE_MS.to_string();
    let mut args = vec!["-redis", addr.as_str(), "-node-id", name];
    if lease {
        args.extend(["-owner-lease-ms", lease_ms.as_str()]);
    }
    let server = Server::start(&args);
    assert!(
        server
            .logs
            .wait_for(&format!("Connected to Redis at {addr}"), SECS(20)),
        "{name} did not connect to Redis:\n{}",
        server.logs.all()
    );
    server
}

fn cluster(n: usize, lease: bool) -> (Redis, Vec<Server>) {
    let redis = Redis::start();
    let servers = (0..n)
        .map(|i| node(&redis, &format!("node{i}"), lease))
        .collect();
    (redis, servers)
}

/// A game created on `servers[0]` (so it owns it), winning score 1000, countdown 0, with six
/// players, two connected to each server (p0, p1 on server 0, p2, p3 on server 1…), each
/// knowing every server. Started; every player sees `playing`.
pub(crate) async fn six_players_racing(servers: &[Server]) -> Vec<RacingPlayer> {
    let refs: Vec<&Server> = servers.iter().collect();
    let n = servers.len();
    let admin = servers[0].api().create("p0", 1000, 0).await;
    let mut joined = vec![admin.clone()];
    for i in 1..6 {
        let via = &servers[(i / 2) % n];
        joined.push(via.api().join(&admin.game_id, &format!("p{i}")).await);
    }
    let mut players = Vec::new();
    for (i, j) in joined.into_iter().enumerate() {
        let mut p = RacingPlayer::new(&format!("p{i}"), j, &refs, (i / 2) % n);
        assert!(p.connect().await, "p{i} could not connect: {:?}", p.events);
        assert_eq!(p.server, (i / 2) % n, "p{i}: {:?}", p.events);
        players.push(p);
    }
    start_all(&mut players).await;
    players
}

/// Once every player sees every robot joined, the first (the admin) starts the race; returns
/// when every player sees it playing.
pub(crate) async fn start_all(players: &mut [RacingPlayer]) {
    let everyone = players.len();
    let all_in = join_all(players.iter_mut().map(|p| {
        p.wait_drawn(SECS(15), |g| {
            g["robots"].as_array().is_some_and(|r| r.len() == everyone)
        })
    }))
    .await;
    assert!(all_in.iter().all(|ok| *ok), "{}", report(players));
    assert!(players[0].send(json!({"type": "start_countdown"})).await);
    let playing = join_all(
        players
            .iter_mut()
            .map(|p| p.wait_drawn(SECS(15), |g| state(g) == "playing")),
    )
    .await;
    assert!(playing.iter().all(|ok| *ok), "{}", report(players));
}

/// Every player presses every `every` (staggered over the interval) while `control` brings
/// the fault about; `control` ends the race by clearing `pressing`.
pub(crate) async fn race_all_through(
    players: &mut [RacingPlayer],
    every: Duration,
    pressing: &Cell<bool>,
    control: impl std::future::Future<Output = ()>,
) {
    let n = players.len().max(1) as u32;
    join(
        join_all(
            players
                .iter_mut()
                .enumerate()
                .map(|(i, p)| p.race(every, every * i as u32 / n, pressing)),
        ),
        control,
    )
    .await;
}
