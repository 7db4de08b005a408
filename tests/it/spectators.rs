//! Spectators (`/ws/<id>?watch=1`) off the players' path: a stalled spectator does not delay
//! a player's frame; spectators get the newest state at most `-spectator-hz` times a second
//! and end on the exact final state; past `-max-spectators` an upgrade is refused with `503`
//! and `Retry-After`, and `/metrics` counts it; with `-spectator-addr` they are served apart, by
//! workers of a lower priority.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{connect, try_connect, Player, Server};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A GET of `/ws/<id>?watch=1` by hand: with `upgrade`, a WebSocket handshake; returns the
/// socket and the answer's head and body (as much as came).
fn watch_request(
    server: &Server,
    game_id: &str,
    upgrade: bool,
    recv_buffer: Option<usize>,
) -> (std::net::TcpStream, String) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    socket.connect(&server.addr.into()).unwrap();
    let mut tcp: std::net::TcpStream = socket.into();
    tcp.set_read_timeout(Some(SECS(10))).unwrap();
    let handshake = if upgrade {
        "Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    } else {
        ""
    };
    write!(
        tcp,
        "GET /ws/{game_id}?watch=1 HTTP/1.1\r\nHost: {}\r\n{handshake}\r\n",
        server.addr
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        if tcp.read_exact(&mut byte).is_err() {
            break;
        }
        head.push(byte[0]);
    }
    let mut text = String::from_utf8_lossy(&head).into_owned();
    if !text.starts_with("HTTP/1.1 101") {
        let mut body = vec![0u8; 4096];
        tcp.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        if let Ok(n) = tcp.read(&mut body) {
            text.push_str(&String::from_utf8_lossy(&body[..n]));
        }
    }
    (tcp, text)
}

async fn metric(server: &Server, name: &str) -> u64 {
    let value = server.metric(name).await;
    value.unwrap_or_else(|| panic!("no {name} in /metrics")) as u64
}

fn score(game: &Value, robot_id: &str) -> u64 {
    game["robots"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["id"] == robot_id))
        .and_then(|r| r["score"].as_u64())
        .unwrap_or(0)
}

async fn start_race(server: &Server, names: &[&str], winning: u32) -> Vec<Player> {
    let api = server.api();
    let host = api.create(names[0], winning, 0).await;
    let mut joined = vec![host.clone()];
    for name in &names[1..] {
        joined.push(api.join(&host.game_id, name).await);
    }
    let mut players = Vec::new();
    for j in &joined {
        players.push(connect(server, j).await);
    }
    players[0]
        .send(serde_json::json!({"type": "start_countdown"}))
        .await;
    for p in &mut players {
        p.wait_game(SECS(10), |g| g["state"] == "playing").await;
    }
    players
}

/// A spectator whose socket never reads (a receive buffer of a few KiB, full at once) while
/// the game changes a hundred times a second: the players' own presses still come back at
/// once, and the stalled socket is cut, not waited for.
#[actix_rt::test]
async fn a_stalled_spectator_does_not_delay_a_players_frame() {
    let server = Server::start(&["-spectator-hz", "1000"]);
    let mut players = start_race(&server, &["ann", "bob", "cy", "dee"], 1000).await;
    let game_id = players[0].game["id"].as_str().unwrap().to_owned();
    let (stalled, head) = watch_request(&server, &game_id, true, Some(2048));
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut measured = players.remove(0);
    let me = measured.robot_id.clone();
    // Three players press 25 times a second each in the background.
    let background: Vec<_> = players
        .into_iter()
        .map(|mut p| {
            actix_rt::spawn(async move {
                p.press_paced(200, Duration::from_millis(40)).await;
                p
            })
        })
        .collect();
    let mut worst = Duration::ZERO;
    let started = Instant::now();
    let mut presses = 0;
    while started.elapsed() < SECS(8) {
        let sent = Instant::now();
        measured.press().await;
        presses += 1;
        measured
            .wait_game(SECS(5), |g| score(g, &me) >= presses)
            .await;
        worst = worst.max(sent.elapsed());
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    // No press was refused either (`overloaded`, `unavailable`).
    assert!(measured.errors.is_empty(), "{:?}", measured.errors);
    for task in background {
        let p = task.await.unwrap();
        assert!(p.errors.is_empty(), "{:?}", p.errors);
    }
    assert!(
        server
            .logs
            .wait_for_async("it does not read its updates", SECS(10))
            .await,
        "the stalled spectator was never cut: {}",
        server.logs.all()
    );
    assert!(worst < Duration::from_millis(300), "a press took {worst:?}");
    drop(stalled);
}

/// Spectators get the newest state at most `-spectator-hz` times a second, never a version
/// twice or backwards, and the exact final state.
#[actix_rt::test]
async fn spectators_get_at_most_hz_frames_and_the_exact_final_state() {
    let server = Server::start(&["-spectator-hz", "5"]);
    let mut players = start_race(&server, &["ann", "bob"], 60).await;
    let game_id = players[0].game["id"].as_str().unwrap().to_owned();
    let url = server.ws_url(&format!("/ws/{game_id}?watch=1"));
    let mut watch = try_connect(&url, None).await.expect("spectator socket");
    let mut bob = players.pop().unwrap();
    let mut ann = players.pop().unwrap();
    let started = Instant::now();
    // 40 versions a second for about three seconds, ann winning.
    let bob_task = actix_rt::spawn(async move {
        bob.press_paced(55, Duration::from_millis(50)).await;
        bob
    });
    ann.press_paced(60, Duration::from_millis(50)).await;
    let final_game = ann.wait_game(SECS(10), |g| g["state"] == "finished").await;
    let _bob = bob_task.await.unwrap();
    let seen = watch.wait_game(SECS(5), |g| g["state"] == "finished").await;
    let took = started.elapsed().as_secs_f64();
    // The exact final state.
    assert_eq!(seen, final_game);
    let versions: Vec<u64> = watch.history[1..]
        .iter()
        .filter_map(|g| g["version"].as_u64())
        .collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    let cap = (took * 5.0).ceil() as usize + 2;
    assert!(
        versions.len() <= cap,
        "{} frames in {took:.1}s at 5 a second: {versions:?}",
        versions.len()
    );
    assert!(versions.len() >= 5, "too few frames: {versions:?}");
    // Nothing more comes once the game stays still.
    assert!(watch.next(Duration::from_millis(600)).await.is_none());
}

/// Past `-max-spectators` the upgrade is refused with `503 room_full` and `Retry-After`; the
/// page's plain GET learns the same; `/metrics` counts the refusal and the spectators; a seat
/// freed is taken again.
#[actix_rt::test]
async fn past_max_spectators_an_upgrade_gets_503_with_retry_after() {
    let server = Server::start(&["-max-spectators", "1"]);
    let ann = server.api().create("ann", 5, 0).await;
    let url = server.ws_url(&format!("/ws/{}?watch=1", ann.game_id));
    let first = try_connect(&url, None).await.expect("first spectator");
    let (_tcp, refused) = watch_request(&server, &ann.game_id, true, None);
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    let lower = refused.to_ascii_lowercase();
    assert!(lower.contains("\r\nretry-after: 5\r\n"), "{refused}");
    assert!(refused.contains(r#""error":"room_full""#), "{refused}");
    // A page cannot see a WebSocket's status: its plain GET gets the same answer, uncounted.
    let (_tcp, probe) = watch_request(&server, &ann.game_id, false, None);
    assert!(probe.starts_with("HTTP/1.1 503"), "{probe}");
    assert_eq!(
        metric(&server, "robot_race_spectators_refused_total").await,
        1
    );
    assert_eq!(metric(&server, "robot_race_spectators").await, 1);
    assert_eq!(
        metric(&server, "robot_race_ws_refused_total{code=\"room_full\"}").await,
        1,
        "the page's plain GET was counted as a refused upgrade"
    );
    // A player is no spectator: still admitted.
    let _ann_ws = connect(&server, &ann).await;
    drop(first);
    let deadline = Instant::now() + SECS(10);
    while metric(&server, "robot_race_spectators").await > 0 && Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let (_tcp, probe) = watch_request(&server, &ann.game_id, false, None);
    assert!(probe.starts_with("HTTP/1.1 400"), "{probe}");
    try_connect(&url, None).await.expect("a freed seat");
}

/// Each thread of a process: its name and its niceness (`/proc/<pid>/task/*/stat`).
fn thread_niceness(pid: u32) -> Vec<(String, i64)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/<pid>/task");
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
        .filter_map(|stat| {
            let (head, tail) = stat.rsplit_once(')')?;
            let name = head.split_once('(')?.1.to_owned();
            // After the name: state (field 3) ... nice (field 19).
            let nice = tail.split_whitespace().nth(16)?.parse().ok()?;
            Some((name, nice))
        })
        .collect()
}

/// With `-spectator-addr`, spectators watch through a listener of their own whose workers run
/// at the niceness asked for, and see the race and its exact final state there; the players'
/// workers and the game threads keep the usual priority.
#[actix_rt::test]
async fn spectators_apart_watch_from_workers_of_lower_priority() {
    let server = Server::start(&["-spectator-addr", "127.0.0.1:0", "-spectator-nice", "7"]);
    let addr = server.spectator_addr();
    let mut players = start_race(&server, &["ann", "bob"], 20).await;
    let game_id = players[0].game["id"].as_str().unwrap().to_owned();
    let url = format!("ws://{addr}/ws/{game_id}?watch=1");
    let mut watch = try_connect(&url, None).await.expect("spectator socket");
    let mut ann = players.remove(0);
    ann.press_paced(20, Duration::from_millis(20)).await;
    let final_game = ann.wait_game(SECS(10), |g| g["state"] == "finished").await;
    let seen = watch.wait_game(SECS(5), |g| g["state"] == "finished").await;
    assert_eq!(seen, final_game);

    let threads = thread_niceness(server.pid());
    let niced = threads.iter().filter(|(_, nice)| *nice == 7).count();
    assert!(niced >= 2, "no spectator workers at nice 7: {threads:?}");
    let game_threads: Vec<_> = threads.iter().filter(|(n, _)| n == "game").collect();
    assert!(
        !game_threads.is_empty() && game_threads.iter().all(|(_, nice)| *nice == 0),
        "game threads not at nice 0: {threads:?}"
    );
    assert!(
        threads.iter().filter(|(_, nice)| *nice == 0).count() > game_threads.len(),
        "the players' workers not at nice 0: {threads:?}"
    );
}
