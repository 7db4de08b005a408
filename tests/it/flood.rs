//! A client flooding the server with frames of every kind costs the other players nothing:
//! while one socket sends as fast as it can (non-press commands it may not give, invalid JSON,
//! presses), ten games on three servers keep their press-to-screen time, and none of their
//! presses is refused.

use std::io::Write;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::Value;

use crate::helpers::*;
use crate::websocket::{Raw, OP_TEXT};

const GAMES: usize = 10;
const PLAYERS: usize = 4;
/// Each bystander presses this often (a human pace).
const EVERY: Duration = Duration::from_millis(200);
const PRESSES: usize = 30;

/// Presses until `PRESSES` are sent, one every `EVERY` from `offset`, each timed from its
/// send to the first update showing it on the presser's own screen.
async fn press_and_time(player: &mut Player, offset: Duration) -> Vec<Duration> {
    actix_rt::time::sleep(offset).await;
    let mut took = Vec::new();
    let robot = player.robot_id.clone();
    let first = scores_of(&player.game).get(&robot).copied().unwrap_or(0);
    for score in first + 1..=first + PRESSES as u64 {
        let sent = Instant::now();
        player.press().await;
        player
            .wait_game(SECS(10), |g| {
                scores_of(g).get(&robot).copied().unwrap_or(0) >= score
            })
            .await;
        took.push(sent.elapsed());
        actix_rt::time::sleep(EVERY.saturating_sub(sent.elapsed())).await;
    }
    took
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// What the bystanders measured with one socket flooding server 0 at `frame_rate` frames a
/// second allowed (the `-ws-frame-rate` budget).
async fn bystanders_while_flooding(frame_rate: &str) -> (Vec<Duration>, Vec<Value>, u64) {
    let redis = Redis::start();
    let flags = ["-ws-frame-rate", frame_rate];
    let servers: Vec<Server> = (0..3)
        .map(|i| cluster_node(&redis, &format!("node{i}"), &flags))
        .collect();
    let mut players = Vec::new();
    for g in 0..GAMES {
        let admin = servers[g % 3].api().create(&format!("a{g}"), 1000, 0).await;
        players.push(connect(&servers[g % 3], &admin).await);
        for j in 1..PLAYERS {
            let server = &servers[(g + j) % 3];
            let joined = server
                .api()
                .join(&admin.game_id, &format!("p{g}_{j}"))
                .await;
            players.push(connect(server, &joined).await);
        }
    }
    for p in players.iter_mut().filter(|p| p.admin) {
        p.send(serde_json::json!({"type": "start_countdown"})).await;
    }
    for p in players.iter_mut() {
        p.wait_game(SECS(15), |g| state(g) == "playing").await;
    }
    // The flooder: a player of one more game on server 0, which never reads.
    let host = servers[0].api().create("host", 1000, 0).await;
    let cat = servers[0].api().join(&host.game_id, "cat").await;
    let flooder = Raw::open(&servers[0], &cat);
    let frames: Vec<u8> = [
        &br#"{"type":"start_countdown"}"#[..],
        b"{not json",
        br#"{"type":"score_point"}"#,
    ]
    .iter()
    .flat_map(|text| Raw::frame(OP_TEXT, text, true))
    .collect();
    let batch: Vec<u8> = frames
        .iter()
        .copied()
        .cycle()
        .take(frames.len() * 100)
        .collect();
    let mut writer = flooder.tcp.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let flood_for = EVERY * PRESSES as u32 + SECS(2);
    let flood = std::thread::spawn(move || {
        let started = Instant::now();
        let mut sent = 0u64;
        while started.elapsed() < flood_for {
            match writer.write_all(&batch) {
                Ok(()) => sent += 300,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => break,
            }
        }
        sent
    });
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let n = players.len() as u32;
    let took: Vec<Duration> = join_all(
        players
            .iter_mut()
            .enumerate()
            .map(|(i, p)| press_and_time(p, EVERY * i as u32 / n)),
    )
    .await
    .into_iter()
    .flatten()
    .collect();
    let flooded = flood.join().unwrap();
    let errors = players.iter().flat_map(|p| p.errors.clone()).collect();
    drop(flooder);
    (took, errors, flooded)
}

/// One socket floods server 0 with every kind of frame while ten games of four players on
/// three servers play: the bystanders' press-to-screen p95 stays under 50 ms and none of
/// their presses is refused.
#[actix_rt::test]
async fn a_flooding_client_costs_other_players_nothing() {
    let (mut took, errors, flooded) = bystanders_while_flooding("40").await;
    took.sort();
    let (p50, p95, max) = (
        percentile(&took, 0.5),
        percentile(&took, 0.95),
        *took.last().unwrap(),
    );
    eprintln!(
        "flooder sent {flooded} frames; bystanders' press-to-screen over {} presses: \
         p50 {p50:?}, p95 {p95:?}, max {max:?}",
        took.len()
    );
    assert!(flooded > 10_000, "the flood sent only {flooded} frames");
    assert!(errors.is_empty(), "bystanders' presses refused: {errors:?}");
    assert!(
        p95 < Duration::from_millis(50),
        "bystanders' press-to-screen p50 {p50:?}, p95 {p95:?}, max {max:?} while one socket \
         sent {flooded} frames"
    );
}
