//! Setting a run up: the games created and their players joined over the JSON API (seats), the
//! sockets opened over client threads, and what the players share with the coordinator.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::args::{Args, Creators, Placement};
use crate::nodelay;
use crate::protocol::Seat;

pub type Socket = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// What the coordinator (main thread) tells every player.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Phase {
    /// Sockets are being opened.
    Connecting,
    /// Every socket is open: admins start their races.
    Start,
    /// Press from `start` until `end`.
    Window { start: Instant, end: Instant },
    /// Stop now (idle mode, or giving up).
    Stop,
}

/// Counters the players bump and the coordinator watches.
#[derive(Default)]
pub struct Shared {
    pub connected: AtomicUsize,
    pub failed: AtomicUsize,
    pub playing: AtomicUsize,
    pub closed: AtomicUsize,
}

#[derive(Default)]
pub struct PlayerStats {
    pub latencies_us: Vec<u32>,
    /// Each counted press: when it was sent, its latency, and the version that first showed it
    /// (spectators' press-to-screen, the latency while idle sockets were opening).
    pub timed: Vec<(Instant, u32, u64)>,
    pub send_lag_us: Vec<u32>,
    pub sent: u64,
    pub counted: u64,
    pub press_errors: u64,
    pub errors: HashMap<String, u64>,
    /// Every `game_update` and `scores` frame received.
    pub deliveries: u64,
    pub game_updates: u64,
    pub scores_frames: u64,
    /// Received but not newer than the last drawn (dropped, as a browser would).
    pub stale: u64,
    /// `scores` frames whose length did not match the last full view.
    pub scores_mismatch: u64,
    pub press_deliveries: u64,
    pub window_deliveries: u64,
    pub window_press_deliveries: u64,
    pub welcomed: bool,
    pub saw_playing: bool,
    /// The server closed (or the socket failed) before this player was done.
    pub closed_early: bool,
}

/// The server game `g` is created through (`POST /api/games`).
fn create_server(args: &Args, g: usize) -> usize {
    let n = args.url.len();
    match (args.placement, args.creators) {
        (Placement::ByGame, _) | (Placement::Spread, Creators::Spread) => g % n,
        (Placement::Spread, Creators::First) => 0,
    }
}

/// The server of player `p` of game `g` (its WebSocket, and its join for `p >= 1`). `spread`:
/// the creator (`p = 0`) on the server its game was created through, the others on
/// `(g + p) % servers`, or over `--spread` servers from the creator's. `by-game`: every player
/// on `(g + 1) % servers`, the server after the one the game was created through.
fn seat_server(args: &Args, g: usize, p: usize) -> usize {
    let n = args.url.len();
    if args.placement == Placement::ByGame {
        return (g + 1) % n;
    }
    let home = create_server(args, g);
    if p == 0 {
        return home;
    }
    match args.spread {
        Some(k) if k >= 1 => (home + p % k) % n,
        _ => (g + p) % n,
    }
}

/// Creates `sizes.len()` games and joins `sizes[g]` players to game g (the creator included),
/// at most `--concurrency` requests at a time. Seats come back in (game, player) order.
pub fn create_seats(args: &Args, sizes: &[usize]) -> Vec<Seat> {
    let conc = args.concurrency.max(1);
    actix_rt::System::new().block_on(async {
        let http = awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .connector(awc::Connector::new().limit(0))
            .finish();
        let http = &http;
        let mut games: Vec<(usize, String, String)> = stream::iter(0..sizes.len())
            .map(|g| async move {
                let url = &args.url[create_server(args, g)];
                let created = post_retrying(
                    http,
                    &format!("{url}/api/games"),
                    json!({"name": format!("g{g}p0"), "winning_score": 1000, "countdown": 0}),
                )
                .await;
                let id = created["game_id"].as_str().expect("game_id").to_owned();
                (g, id, token(&created))
            })
            .buffer_unordered(conc)
            .collect()
            .await;
        games.sort_by_key(|(g, _, _)| *g);
        let joins: Vec<(usize, usize)> = (0..sizes.len())
            .flat_map(|g| (1..sizes[g]).map(move |p| (g, p)))
            .collect();
        let games_ref = &games;
        let mut joined: Vec<(usize, usize, String)> = stream::iter(joins)
            .map(|(g, p)| async move {
                let url = &args.url[seat_server(args, g, p)];
                let id = &games_ref[g].1;
                let body = post_retrying(
                    http,
                    &format!("{url}/api/games/{id}/players"),
                    json!({"name": format!("g{g}p{p}")}),
                )
                .await;
                (g, p, token(&body))
            })
            .buffer_unordered(conc)
            .collect()
            .await;
        joined.sort_by_key(|(g, p, _)| (*g, *p));
        let mut seats = Vec::with_capacity(joined.len() + games.len());
        let mut joined = joined.into_iter().peekable();
        for (g, id, tok) in &games {
            let server = seat_server(args, *g, 0);
            seats.push(Seat {
                server,
                url: args.url[server].clone(),
                game_id: id.clone(),
                token: tok.clone(),
                admin: true,
            });
            while let Some((_, p, tok)) = joined.next_if(|(jg, _, _)| jg == g) {
                let server = seat_server(args, *g, p);
                seats.push(Seat {
                    server,
                    url: args.url[server].clone(),
                    game_id: id.clone(),
                    token: tok,
                    admin: false,
                });
            }
        }
        seats
    })
}

/// POSTs JSON; retries a few times on `429` (game creation is rate limited per address) and
/// `503`; panics on any other failure.
async fn post_retrying(http: &awc::Client, url: &str, body: Value) -> Value {
    let mut tries = 0;
    loop {
        tries += 1;
        let mut res = match http.post(url).send_json(&body).await {
            Ok(res) => res,
            Err(e) if tries < 5 => {
                eprintln!("{url}: {e}; retrying");
                actix_rt::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => panic!("{url}: {e}"),
        };
        let json: Value = res.json().await.unwrap_or(Value::Null);
        let status = res.status().as_u16();
        if (status == 429 || status == 503) && tries < 120 {
            if tries == 1 {
                eprintln!("{url}: {status} {json}; retrying (raise the server's creation rate limit for big runs)");
            }
            actix_rt::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        assert!(res.status().is_success(), "{url}: {status} {json}");
        return json;
    }
}

fn token(v: &Value) -> String {
    v["token"].as_str().expect("token").to_owned()
}

/// Splits the seats over `--client-threads` threads, each with its own actix System: opens the
/// sockets (at most `--concurrency` handshakes at a time in all), then runs `player` for each.
pub fn spawn_clients<F, Fut>(
    args: &Args,
    seats: Vec<Seat>,
    shared: &Arc<Shared>,
    phase: &watch::Receiver<Phase>,
    player: F,
) -> Vec<std::thread::JoinHandle<Vec<PlayerStats>>>
where
    F: Fn(Socket, &Seat, watch::Receiver<Phase>, Arc<Shared>) -> Fut + Send + Copy + 'static,
    Fut: std::future::Future<Output = PlayerStats> + 'static,
{
    let threads = args.client_threads.max(1);
    let conc = (args.concurrency / threads).max(1);
    let protocol = args.protocol;
    let mut parts: Vec<Vec<Seat>> = vec![Vec::new(); threads];
    for (i, seat) in seats.into_iter().enumerate() {
        parts[i % threads].push(seat);
    }
    parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let shared = shared.clone();
            let phase = phase.clone();
            std::thread::Builder::new()
                .name(format!("load-client-{i}"))
                .spawn(move || {
                    actix_rt::System::new().block_on(async move {
                        let client = awc::Client::builder()
                            .timeout(Duration::from_secs(30))
                            .connector(
                                awc::Connector::new()
                                    .connector(nodelay::NoDelay::default())
                                    .limit(0),
                            )
                            .finish();
                        let client = &client;
                        let shared_ref = &shared;
                        let sockets: Vec<(Seat, Option<Socket>)> = stream::iter(part)
                            .map(|seat| async move {
                                let url = protocol.ws_url(&seat);
                                match client.ws(url).max_frame_size(1 << 20).connect().await {
                                    Ok((_, framed)) => {
                                        shared_ref.connected.fetch_add(1, Ordering::Relaxed);
                                        (seat, Some(framed))
                                    }
                                    Err(e) => {
                                        eprintln!("WebSocket connect to {}: {e}", seat.url);
                                        shared_ref.failed.fetch_add(1, Ordering::Relaxed);
                                        (seat, None)
                                    }
                                }
                            })
                            .buffer_unordered(conc)
                            .collect()
                            .await;
                        let handles: Vec<_> = sockets
                            .into_iter()
                            .filter_map(|(seat, framed)| {
                                let framed = framed?;
                                Some(actix_rt::spawn(player(
                                    framed,
                                    &seat,
                                    phase.clone(),
                                    shared.clone(),
                                )))
                            })
                            .collect();
                        let mut out = Vec::with_capacity(handles.len());
                        for h in handles {
                            if let Ok(stats) = h.await {
                                out.push(stats);
                            }
                        }
                        out
                    })
                })
                .expect("spawn client thread")
        })
        .collect()
}

pub fn join_clients(threads: Vec<std::thread::JoinHandle<Vec<PlayerStats>>>) -> Vec<PlayerStats> {
    threads
        .into_iter()
        .flat_map(|t| t.join().expect("client thread"))
        .collect()
}

/// Waits until every socket has opened or failed; returns how many opened.
pub fn wait_connected(shared: &Shared, total: usize) -> usize {
    loop {
        let ok = shared.connected.load(Ordering::Relaxed);
        if ok + shared.failed.load(Ordering::Relaxed) >= total {
            return ok;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
