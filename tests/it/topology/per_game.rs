//! `-subscribe per-game`: a server hears only the games it has players in and does not own.

use std::cell::Cell;

use futures_util::future::{join, join_all};
use serde_json::json;

use super::{health, sample};
use crate::faults::{presses_not_accounted_for, report};
use crate::helpers::*;

/// Servers with players; one more server has none.
const PLAYING: usize = 4;
/// Each game is played on two servers: every pair of the four, so each server is in three
/// games of six, half of them.
const PAIRS: [(usize, usize); 6] = [(0, 1), (2, 3), (0, 2), (1, 3), (0, 3), (1, 2)];
const GAME_MESSAGES: &str = "robot_race_pubsub_messages_received_total{channel=\"game\"}";
const INBOX_MESSAGES: &str = "robot_race_pubsub_messages_received_total{channel=\"inbox\"}";

/// Five servers on `redis` in `mode`; six games, each with one player on each of two of the
/// first four servers, raced to a known score. Returns each server's game-channel and inbox
/// message counts.
async fn race_six_games(redis: &Redis, mode: &str) -> Vec<(u64, u64)> {
    let addr = redis.addr();
    let servers: Vec<Server> = (0..=PLAYING)
        .map(|i| {
            let name = format!("{mode}{i}");
            let server = Server::start(&["-redis", &addr, "-node-id", &name, "-subscribe", mode]);
            assert!(
                server
                    .logs
                    .wait_for(&format!("Connected to Redis at {addr}"), SECS(20)),
                "{name} did not connect:\n{}",
                server.logs.all()
            );
            server
        })
        .collect();
    let refs: Vec<&Server> = servers.iter().collect();
    let mut games = Vec::new();
    for (a, b) in PAIRS {
        let first = servers[a].api().create("a", 1000, 0).await;
        let second = servers[b].api().join(&first.game_id, "b").await;
        let mut pa = RacingPlayer::new(&format!("a{a}"), first, &refs, a);
        let mut pb = RacingPlayer::new(&format!("b{b}"), second, &refs, b);
        assert!(pa.connect().await && pa.server == a, "{:?}", pa.events);
        assert!(pb.connect().await && pb.server == b, "{:?}", pb.events);
        games.push(vec![pa, pb]);
    }
    for players in &mut games {
        let both = |g: &serde_json::Value| g["robots"].as_array().is_some_and(|r| r.len() == 2);
        for p in players.iter_mut() {
            assert!(p.wait_drawn(SECS(15), both).await, "{}", report(players));
        }
        assert!(players[0].send(json!({"type": "start_countdown"})).await);
        for p in players.iter_mut() {
            assert!(
                p.wait_drawn(SECS(15), |g| state(g) == "playing").await,
                "{}",
                report(players)
            );
        }
    }
    // Every player presses 5 times a second for 3 seconds.
    let pressing = Cell::new(true);
    let every = crate::faults::PRESS_EVERY;
    join(
        join_all(games.iter_mut().flatten().enumerate().map(|(i, p)| {
            let offset = every * (i as u32 % 12) / 12;
            p.race(every, offset, &pressing)
        })),
        async {
            actix_rt::time::sleep(SECS(3)).await;
            pressing.set(false);
        },
    )
    .await;
    for players in &mut games {
        let agreed = settle(players, SECS(15), SECS(3)).await;
        let lost = presses_not_accounted_for(players, &agreed);
        assert!(
            agreed.is_some() && lost.is_none(),
            "{mode}: {lost:?}\n{}",
            report(players)
        );
    }
    let topology = health(&servers[0]).await;
    assert_eq!(topology["topology"], "single-redis", "{topology}");
    let mut counts = Vec::new();
    for s in &servers {
        counts.push((
            sample(s, GAME_MESSAGES).await,
            sample(s, INBOX_MESSAGES).await,
        ));
    }
    counts
}

/// Four servers, six games, each game with players on two of them, created (and owned) by
/// the first: with per-game subscriptions each server receives the game messages of the
/// games it follows without owning them, and none of the others (an owner needs no relay of
/// its own changes), so its share of what pattern mode gives it is the share of the six games
/// it follows (server 0, the owner of all three of its games: none); a fifth server with no
/// players receives none at all, where pattern mode gives it every game's.
#[actix_rt::test]
async fn per_game_subscriptions_bring_each_server_only_the_games_it_follows() {
    let redis = Redis::start();
    let pattern = race_six_games(&redis, "pattern").await;
    let per_game = race_six_games(&redis, "per-game").await;
    println!("messages received (game channels, inbox) per server: pattern {pattern:?}, per-game {per_game:?}");
    for i in 0..PLAYING {
        let follows = PAIRS.iter().filter(|(_, b)| *b == i).count();
        let expected = follows as f64 / PAIRS.len() as f64;
        let (all, own) = (pattern[i].0, per_game[i].0);
        let ratio = own as f64 / all.max(1) as f64;
        assert!(
            all > 0 && (ratio - expected).abs() <= 0.1,
            "server {i} received {own} game messages per game vs {all} by pattern (ratio {ratio:.2}, \
             expected {expected:.2}: it follows {follows} of the six games without owning them): \
             pattern {pattern:?}, per-game {per_game:?}"
        );
    }
    let idle = PLAYING;
    assert!(pattern[idle].0 > 0, "pattern mode: {pattern:?}");
    assert_eq!(
        per_game[idle],
        (0, 0),
        "a server with no players received pub/sub messages in per-game mode: {per_game:?}"
    );
}
