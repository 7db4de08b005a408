//! The project's load tool: many games, many players, real WebSockets, presses at a human rate.
//!
//! ```sh
//! cargo run --release --example load -- --url http://127.0.0.1:8080 --games 20 --players 5
//! # a cluster: every game's players spread over the servers; server pids (in --url order) for
//! # CPU and memory figures; the Redis port for commands and bytes per press
//! cargo run --release --example load -- --url http://127.0.0.1:8080,http://127.0.0.1:8081 \
//!     --pid 1234,1235 --redis-port 6379 --games 100 --players 10 --rate 2 --seconds 20
//! # memory per idle WebSocket: 3000 sockets in games of 10, spread over the servers
//! cargo run --release --example load -- --url http://127.0.0.1:8080,http://127.0.0.1:8081 \
//!     --pid 1234,1235 --idle 3000
//! ```
//!
//! How a race run goes: the games are created and their players joined over the JSON API (at
//! most `--concurrency` requests at a time); player `p` of game `g` sits on server
//! `(g + p) % servers` (the creator, `p = 0`, on the first server unless `--creators spread`).
//! The players are split over `--client-threads` threads (one actix System each), connect
//! their WebSockets, and once every socket is open the admins start their races (countdown 0).
//! When every player sees its race playing, the measuring window opens: the servers' CPU time
//! (and Redis's counters) are read, every player presses `--rate` times a second (each at its
//! own random phase) for `--seconds`, and CPU and Redis are read again when pressing stops.
//! The players then read until each of their presses is shown (or 5 s pass without progress).
//!
//! Reports, per run:
//! - presses sent / counted / answered with an error / lost (`sent - counted - errors`: must be 0);
//! - deliveries: every `game_update` and `scores` frame a player received; press deliveries: for
//!   each received update newer than the last one drawn, how many OTHER robots' scores rose
//!   (a press seen by one other player). CPU figures use those received inside the window;
//! - press latency p50/p90/p99/p99.9/max: a press sent until the presser's own robot shows it;
//! - with `--pid`: server CPU ms per 1000 deliveries and per 1000 press deliveries, each server's
//!   CPU as % of one core, memory per connection;
//! - with `--redis-port`: Redis commands and bytes in/out per press;
//! - the load tool's own CPU and how late it sent presses (if it is the bottleneck, these say so);
//! - a final `RESULT {json}` line with every figure, for scripts.
//!
//! A `scores` frame is applied as the browser does: only when its version is higher than the last
//! drawn, scores in the `robots` order of the last full view.
//!
//! `--protocol socketio` drives the benchmark peer in `bench/socketio/` (Node.js Socket.IO 4 with
//! the Redis adapter) instead, with the same API calls, seats, pacing and measurements: Socket.IO
//! v4 framing over the same WebSocket client, its events read as the frames above (see
//! `load/socketio.rs`).

#[path = "load/nodelay.rs"]
mod nodelay;
#[path = "load/socketio.rs"]
mod socketio;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use awc::ws::{Frame, Message};
use clap::{Parser, ValueEnum};
use futures_util::{stream, SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;

#[derive(Parser, Debug)]
#[command(about = "Robot Race load tool", args_override_self = true)]
struct Args {
    /// Server base URLs, comma separated; every game's players are spread over all of them.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:8080")]
    url: Vec<String>,
    /// Concurrent games.
    #[arg(long, default_value_t = 20)]
    games: usize,
    /// Players per game (2-10).
    #[arg(long, default_value_t = 5)]
    players: usize,
    /// Presses per second per player (the server allows 30).
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// How long to press (the measuring window).
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Server process ids, comma separated, in the order of --url (Linux /proc): CPU and memory.
    #[arg(long, value_delimiter = ',')]
    pid: Vec<u32>,
    /// Threads running the players (one actix System each; players split evenly).
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// At most this many API requests, and this many WebSocket handshakes, at a time.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Where each game is created: `first` (every creator on the first server) or `spread`
    /// (game g's creator on server g % servers).
    #[arg(long, value_enum, default_value_t = Creators::First)]
    creators: Creators,
    /// Instead of racing: open this many idle WebSockets (games of 10, spread over the servers)
    /// and report server memory per idle connection.
    #[arg(long)]
    idle: Option<usize>,
    /// Idle mode: seconds to let the servers settle before reading their memory.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// A Redis on 127.0.0.1 to read `INFO stats` / `INFO commandstats` from, before and after
    /// the window: commands and bytes per press.
    #[arg(long)]
    redis_port: Option<u16>,
    /// Each game's players on this many servers (its creator's and the next ones), instead of
    /// all of them; with `--creators spread` the games spread over every server.
    #[arg(long)]
    spread: Option<usize>,
    /// What the servers speak: `robot-race` (this project's WebSocket frames) or `socketio`
    /// (Socket.IO v4, for the benchmark peer in bench/socketio/).
    #[arg(long, value_enum, default_value_t = Protocol::RobotRace)]
    protocol: Protocol,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Protocol {
    RobotRace,
    #[value(name = "socketio")]
    SocketIo,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::RobotRace => "robot-race",
            Protocol::SocketIo => "socketio",
        }
    }

    fn ws_url(self, seat: &Seat) -> String {
        let ws = seat.url.replacen("http", "ws", 1);
        match self {
            Protocol::RobotRace => format!("{ws}/ws/{}?token={}", seat.game_id, seat.token),
            Protocol::SocketIo => format!("{ws}{}", socketio::WS_PATH),
        }
    }

    fn press(self) -> &'static str {
        match self {
            Protocol::RobotRace => r#"{"type":"score_point"}"#,
            Protocol::SocketIo => socketio::PRESS,
        }
    }

    fn start(self) -> &'static str {
        match self {
            Protocol::RobotRace => r#"{"type":"start_countdown"}"#,
            Protocol::SocketIo => socketio::START,
        }
    }

    /// Decodes a text frame: `Ok(message)`, or `Err(what to do)` for protocol traffic.
    fn decode<'a>(self, bytes: &'a [u8]) -> Result<Incoming<'a>, Control> {
        match self {
            Protocol::RobotRace => serde_json::from_slice(bytes).map_err(|_| Control::Skip),
            Protocol::SocketIo => match socketio::decode(bytes) {
                socketio::In::Msg(m) => Ok(m),
                socketio::In::Open => Err(Control::Hello),
                socketio::In::Ping => Err(Control::Reply(socketio::PONG)),
                socketio::In::Closed(why) => Err(Control::Closed(why)),
                socketio::In::Skip => Err(Control::Skip),
            },
        }
    }
}

/// Protocol traffic that is not a game message.
enum Control {
    /// Send the seat's hello (Socket.IO: the namespace CONNECT with the seat as auth).
    Hello,
    /// Send this text frame.
    Reply(&'static str),
    /// The server refused or closed the session.
    Closed(String),
    /// Nothing to do.
    Skip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Creators {
    First,
    Spread,
}

impl Creators {
    fn name(self) -> &'static str {
        match self {
            Creators::First => "first",
            Creators::Spread => "spread",
        }
    }
}

/// Errors that answer a press that was dropped: such a press is not lost.
const PRESS_ERRORS: [&str; 3] = ["overloaded", "rate_limited", "unavailable"];
/// After pressing stops, a player waits this long without progress for its last presses.
const DRAIN_QUIET: Duration = Duration::from_secs(5);

type Socket = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

#[derive(Clone, Debug)]
struct Seat {
    server: usize,
    url: String,
    game_id: String,
    token: String,
    admin: bool,
}

/// What the coordinator (main thread) tells every player.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
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
struct Shared {
    connected: AtomicUsize,
    failed: AtomicUsize,
    playing: AtomicUsize,
    closed: AtomicUsize,
}

#[derive(Clone, Copy)]
struct PlayCfg {
    every: Duration,
    protocol: Protocol,
}

#[derive(Default)]
struct PlayerStats {
    latencies_us: Vec<u32>,
    send_lag_us: Vec<u32>,
    sent: u64,
    counted: u64,
    press_errors: u64,
    errors: HashMap<String, u64>,
    /// Every `game_update` and `scores` frame received.
    deliveries: u64,
    game_updates: u64,
    scores_frames: u64,
    /// Received but not newer than the last drawn (dropped, as a browser would).
    stale: u64,
    /// `scores` frames whose length did not match the last full view.
    scores_mismatch: u64,
    press_deliveries: u64,
    window_deliveries: u64,
    window_press_deliveries: u64,
    welcomed: bool,
    saw_playing: bool,
    /// The server closed (or the socket failed) before this player was done.
    closed_early: bool,
}

// Incoming frames, parsed into just what the tool needs (the rest is skipped).
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    version: u64,
    #[serde(default)]
    scores: Vec<u64>,
    #[serde(default, borrow)]
    game: Option<GameMsg<'a>>,
    #[serde(default)]
    robot_id: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct GameMsg<'a> {
    version: u64,
    #[serde(borrow)]
    state: Cow<'a, str>,
    #[serde(borrow)]
    robots: Vec<RobotMsg<'a>>,
}

#[derive(Deserialize)]
struct RobotMsg<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    score: u64,
}

/// What a player last drew: version, lanes (robot ids in `robots` order) and their scores.
#[derive(Default)]
struct View {
    version: u64,
    ids: Vec<String>,
    scores: Vec<u64>,
    me: Option<usize>,
    playing: bool,
}

impl View {
    /// Applies a full view if newer; returns how many OTHER robots' scores rose.
    fn apply_full(&mut self, game: &GameMsg, me: &str) -> Option<u64> {
        if game.version <= self.version {
            return None;
        }
        let mut rose = 0;
        for (i, r) in game.robots.iter().enumerate() {
            if r.id == me {
                continue;
            }
            let before = if self.ids.get(i).is_some_and(|id| *id == r.id) {
                Some(self.scores[i])
            } else {
                self.ids
                    .iter()
                    .position(|id| *id == r.id)
                    .map(|j| self.scores[j])
            };
            if before.is_some_and(|b| r.score > b) {
                rose += 1;
            }
        }
        let same_lanes = self.ids.len() == game.robots.len()
            && self.ids.iter().zip(&game.robots).all(|(a, b)| *a == b.id);
        if !same_lanes {
            self.ids = game.robots.iter().map(|r| r.id.to_string()).collect();
            self.me = self.ids.iter().position(|id| id == me);
        }
        self.scores.clear();
        self.scores.extend(game.robots.iter().map(|r| r.score));
        self.version = game.version;
        self.playing = game.state == "playing";
        Some(rose)
    }

    /// Applies a `scores` frame if newer; returns how many OTHER robots' scores rose, and
    /// whether its length matched the lanes.
    fn apply_scores(&mut self, version: u64, scores: &[u64]) -> Option<(u64, bool)> {
        if version <= self.version {
            return None;
        }
        let mut rose = 0;
        for (i, (old, new)) in self.scores.iter_mut().zip(scores).enumerate() {
            if Some(i) != self.me && *new > *old {
                rose += 1;
            }
            *old = *new;
        }
        self.version = version;
        Some((rose, scores.len() == self.scores.len()))
    }

    fn my_score(&self) -> u64 {
        self.me
            .and_then(|i| self.scores.get(i).copied())
            .unwrap_or(0)
    }
}

fn main() {
    let args = Args::parse();
    assert!(!args.url.is_empty(), "--url: at least one server");
    if !args.pid.is_empty() && args.pid.len() != args.url.len() {
        eprintln!(
            "note: {} pids for {} servers: per-server figures pair them in order",
            args.pid.len(),
            args.url.len()
        );
    }
    match args.idle {
        Some(n) => run_idle(&args, n),
        None => run_race(&args),
    }
}

fn run_race(args: &Args) {
    let players = args.players.clamp(2, 10);
    let rate = args.rate.max(0.1);
    if rate * args.seconds as f64 >= 1000.0 {
        eprintln!(
            "note: {rate}/s for {} s reaches the winning score (1000): races will finish early",
            args.seconds
        );
    }
    let rss_before: Vec<u64> = args.pid.iter().map(|p| rss_kib(*p)).collect();
    let seats = create_seats(args, &vec![players; args.games]);
    let connections = seats.len();
    eprintln!(
        "{} games, {connections} players connecting over {} client threads…",
        args.games, args.client_threads
    );

    let shared = Arc::new(Shared::default());
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let cfg = PlayCfg {
        every: Duration::from_secs_f64(1.0 / rate),
        protocol: args.protocol,
    };
    let threads = spawn_clients(
        args,
        seats,
        &shared,
        &phase_rx,
        move |framed, seat, phase, shared| {
            play(
                framed,
                seat.admin,
                hello(cfg.protocol, seat),
                cfg,
                phase,
                shared,
            )
        },
    );

    let connected = wait_connected(&shared, connections);
    let rss_connected: Vec<u64> = args.pid.iter().map(|p| rss_kib(*p)).collect();
    let _ = phase_tx.send(Phase::Start);

    // Wait until every connected player sees its race playing.
    let deadline = Instant::now() + Duration::from_secs(60);
    while shared.playing.load(Ordering::Relaxed) < connected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let playing = shared.playing.load(Ordering::Relaxed);
    if playing < connected {
        eprintln!(
            "warning: only {playing} of {connected} players saw their race start; pressing anyway"
        );
    }

    let redis_before = args.redis_port.map(redis_info);
    let heard_before: Vec<Option<u64>> = args
        .url
        .iter()
        .map(|u| pubsub_received(args.protocol, u))
        .collect();
    let self_before = cpu_secs_self();
    let cpu_before: Vec<f64> = args.pid.iter().map(|p| cpu_secs(*p)).collect();
    let switches_before = context_switches(&args.pid);
    let start = Instant::now();
    let end = start + Duration::from_secs(args.seconds);
    let _ = phase_tx.send(Phase::Window { start, end });
    eprintln!("pressing for {} s…", args.seconds);
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    let cpu_after: Vec<f64> = args.pid.iter().map(|p| cpu_secs(*p)).collect();
    let switches_after = context_switches(&args.pid);
    let window = start.elapsed().as_secs_f64();
    let self_after = cpu_secs_self();
    let redis_after = args.redis_port.map(redis_info);
    let heard: Vec<Option<u64>> = args
        .url
        .iter()
        .zip(&heard_before)
        .map(|(u, before)| Some(pubsub_received(args.protocol, u)?.saturating_sub((*before)?)))
        .collect();
    eprintln!("pressing stopped; waiting for the last presses…");

    let results = join_clients(threads);
    drop(phase_tx);

    // Merge.
    let mut latencies: Vec<u32> = Vec::new();
    let mut lags: Vec<u32> = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut t = PlayerStats::default();
    for r in &results {
        latencies.extend_from_slice(&r.latencies_us);
        lags.extend_from_slice(&r.send_lag_us);
        for (k, v) in &r.errors {
            *errors.entry(k.clone()).or_default() += v;
        }
        t.sent += r.sent;
        t.counted += r.counted;
        t.press_errors += r.press_errors;
        t.deliveries += r.deliveries;
        t.game_updates += r.game_updates;
        t.scores_frames += r.scores_frames;
        t.stale += r.stale;
        t.scores_mismatch += r.scores_mismatch;
        t.press_deliveries += r.press_deliveries;
        t.window_deliveries += r.window_deliveries;
        t.window_press_deliveries += r.window_press_deliveries;
    }
    let closed_early = results.iter().filter(|r| r.closed_early).count();
    latencies.sort_unstable();
    lags.sort_unstable();
    let lost = t.sent as i64 - t.counted as i64 - t.press_errors as i64;
    let lat = Percentiles::of(&latencies);
    let lag = Percentiles::of(&lags);

    println!(
        "servers            {} ({})",
        args.url.join(" "),
        args.protocol.name()
    );
    println!(
        "games x players    {} x {players} = {connections} connections ({connected} open, creators {}, {} client threads)",
        args.games,
        args.creators.name(),
        args.client_threads
    );
    println!("window             {window:.1} s of pressing at {rate}/s per player");
    println!(
        "presses sent       {} ({:.0}/s)",
        t.sent,
        t.sent as f64 / window
    );
    println!(
        "presses counted    {} (answered with an error: {}, lost: {lost})",
        t.counted, t.press_errors
    );
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("errors received    {}", list.join(", "));
        if errors.contains_key("rate_limited") {
            println!("                   (rate_limited is said once per burst: lost may include presses it dropped)");
        }
    }
    println!(
        "updates delivered  {} in the window ({:.0}/s); {} in all: {} game_update + {} scores ({} stale)",
        t.window_deliveries,
        t.window_deliveries as f64 / window,
        t.deliveries,
        t.game_updates,
        t.scores_frames,
        t.stale
    );
    println!(
        "press deliveries   {} in the window ({:.0}/s; a press seen by one other player)",
        t.window_press_deliveries,
        t.window_press_deliveries as f64 / window
    );
    println!(
        "press latency ms   p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        lat.p50, lat.p90, lat.p99, lat.p999, lat.max
    );
    let cpu_used: Vec<f64> = cpu_after
        .iter()
        .zip(&cpu_before)
        .map(|(a, b)| a - b)
        .collect();
    let cpu_total: f64 = cpu_used.iter().sum();
    let cpu_pct: Vec<f64> = cpu_used.iter().map(|c| c * 100.0 / window).collect();
    let per_1000 = |n: u64| cpu_total * 1e6 / n.max(1) as f64;
    let per_press =
        |after: u64, before: u64| after.saturating_sub(before) as f64 / t.sent.max(1) as f64;
    let sleeps_per_press = per_press(switches_after.0, switches_before.0);
    let preemptions_per_press = per_press(switches_after.1, switches_before.1);
    if !args.pid.is_empty() {
        println!(
            "server CPU         {cpu_total:.2} s over the window: {:.2} ms per 1000 deliveries, {:.2} ms per 1000 press deliveries",
            per_1000(t.window_deliveries),
            per_1000(t.window_press_deliveries)
        );
        let list: Vec<String> = cpu_pct.iter().map(|p| format!("{p:.1}%")).collect();
        println!(
            "                   per server (% of one core): {}",
            list.join("  ")
        );
        println!(
            "server wake-ups    {:.2} per press (a thread slept and was woken: voluntary context switches, every thread of every server), {:.2} preemptions per press",
            sleeps_per_press, preemptions_per_press
        );
        println!(
            "server memory      {} KiB before, {} KiB connected ({:.1} KiB per connection)",
            rss_before.iter().sum::<u64>(),
            rss_connected.iter().sum::<u64>(),
            rss_connected
                .iter()
                .sum::<u64>()
                .saturating_sub(rss_before.iter().sum()) as f64
                / connections.max(1) as f64
        );
    }
    let redis = match (redis_before, redis_after) {
        (Some(Ok(b)), Some(Ok(a))) => Some(RedisDelta::between(&b, &a)),
        (Some(Err(e)), _) | (_, Some(Err(e))) => {
            println!("redis              INFO failed: {e}");
            None
        }
        _ => None,
    };
    if let Some(r) = &redis {
        let presses = t.sent.max(1) as f64;
        let top: Vec<String> = r
            .top(6)
            .iter()
            .map(|(c, n)| format!("{c} {:.2}", *n as f64 / presses))
            .collect();
        println!(
            "redis per press    {:.2} commands, {:.0} bytes in, {:.0} bytes out ({})",
            r.commands as f64 / presses,
            r.bytes_in as f64 / presses,
            r.bytes_out as f64 / presses,
            top.join(", ")
        );
    }
    let client_pct = (self_after - self_before) * 100.0 / window;
    println!(
        "load tool          {client_pct:.0}% of one core in the window; press sent late by p99 {:.2} ms, max {:.2} ms",
        lag.p99, lag.max
    );
    if heard.iter().any(Option::is_some) {
        let list: Vec<String> = heard
            .iter()
            .map(|h| h.map_or("?".to_owned(), |n| n.to_string()))
            .collect();
        println!(
            "pub/sub received   per server, game channels: {}",
            list.join("  ")
        );
    }
    if closed_early > 0 || connected < connections || t.scores_mismatch > 0 {
        println!(
            "warnings           {} sockets failed to open, {closed_early} closed early, {} scores frames of the wrong length",
            connections - connected,
            t.scores_mismatch
        );
    }

    let result = json!({
        "mode": "race",
        "protocol": args.protocol.name(),
        "servers": args.url.len(),
        "games": args.games,
        "players": players,
        "connections": connections,
        "connected": connected,
        "rate": rate,
        "window_s": round(window, 3),
        "client_threads": args.client_threads,
        "creators": args.creators.name(),
        "presses_sent": t.sent,
        "presses_counted": t.counted,
        "presses_errored": t.press_errors,
        "presses_lost": lost,
        "errors": errors,
        "deliveries": t.window_deliveries,
        "deliveries_per_s": round(t.window_deliveries as f64 / window, 1),
        "press_deliveries": t.window_press_deliveries,
        "deliveries_total": t.deliveries,
        "game_updates_total": t.game_updates,
        "scores_frames_total": t.scores_frames,
        "stale_total": t.stale,
        "latency_ms": lat.json(),
        "cpu_s": (!args.pid.is_empty()).then(|| round(cpu_total, 3)),
        "cpu_ms_per_1000_deliveries": (!args.pid.is_empty()).then(|| round(per_1000(t.window_deliveries), 3)),
        "cpu_ms_per_1000_press_deliveries": (!args.pid.is_empty()).then(|| round(per_1000(t.window_press_deliveries), 3)),
        "cpu_pct_per_server": cpu_pct.iter().map(|p| round(*p, 1)).collect::<Vec<_>>(),
        "server_sleeps_per_press": (!args.pid.is_empty()).then(|| round(sleeps_per_press, 3)),
        "server_preemptions_per_press": (!args.pid.is_empty()).then(|| round(preemptions_per_press, 3)),
        "rss_kib_before": rss_before.iter().sum::<u64>(),
        "rss_kib_connected": rss_connected.iter().sum::<u64>(),
        "redis": redis.as_ref().map(|r| {
            let presses = t.sent.max(1) as f64;
            json!({
                "commands_per_press": round(r.commands as f64 / presses, 3),
                "bytes_in_per_press": round(r.bytes_in as f64 / presses, 1),
                "bytes_out_per_press": round(r.bytes_out as f64 / presses, 1),
                "commands": r.commands,
                "calls": r.calls,
            })
        }),
        "client_cpu_pct": round(client_pct, 1),
        "spread": args.spread,
        "pubsub_game_messages_per_server": heard,
        "send_lag_ms": lag.json(),
        "closed_early": closed_early,
    });
    println!("RESULT {result}");
}

fn run_idle(args: &Args, n: usize) {
    let sizes: Vec<usize> = (0..n.div_ceil(10)).map(|g| (n - 10 * g).min(10)).collect();
    let rss_start: Vec<u64> = args.pid.iter().map(|p| rss_kib(*p)).collect();
    let seats = create_seats(args, &sizes);
    let mut per_server = vec![0usize; args.url.len()];
    for s in &seats {
        per_server[s.server] += 1;
    }
    // Memory before the sockets: the games and robots exist already.
    let rss_before: Vec<u64> = args.pid.iter().map(|p| rss_kib(*p)).collect();
    eprintln!(
        "{} games, {n} idle sockets connecting over {} client threads…",
        sizes.len(),
        args.client_threads
    );
    let shared = Arc::new(Shared::default());
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let protocol = args.protocol;
    let threads = spawn_clients(
        args,
        seats,
        &shared,
        &phase_rx,
        move |framed, seat, phase, shared| {
            idle(framed, protocol, hello(protocol, seat), phase, shared)
        },
    );
    let connected = wait_connected(&shared, n);
    std::thread::sleep(Duration::from_secs_f64(args.settle.max(0.0)));
    let rss_after: Vec<u64> = args.pid.iter().map(|p| rss_kib(*p)).collect();
    let open = connected - shared.closed.load(Ordering::Relaxed);
    let _ = phase_tx.send(Phase::Stop);
    let results = join_clients(threads);
    let welcomed = results.iter().filter(|r| r.welcomed).count();

    let growth: Vec<i64> = rss_after
        .iter()
        .zip(&rss_before)
        .map(|(a, b)| *a as i64 - *b as i64)
        .collect();
    let total_growth: i64 = growth.iter().sum();
    let per_conn = total_growth as f64 / open.max(1) as f64;
    let per_server_kib: Vec<f64> = growth
        .iter()
        .zip(&per_server)
        .map(|(g, s)| *g as f64 / (*s).max(1) as f64)
        .collect();
    println!(
        "servers            {} ({})",
        args.url.join(" "),
        args.protocol.name()
    );
    println!(
        "idle sockets       {n} in {} games: {connected} opened, {welcomed} welcomed, {open} open after {:.1} s",
        sizes.len(),
        args.settle
    );
    if !args.pid.is_empty() {
        println!(
            "server memory      {} KiB at start, {} KiB with the games, {} KiB with the sockets",
            rss_start.iter().sum::<u64>(),
            rss_before.iter().sum::<u64>(),
            rss_after.iter().sum::<u64>()
        );
        let list: Vec<String> = per_server_kib.iter().map(|k| format!("{k:.1}")).collect();
        println!(
            "memory per socket  {per_conn:.1} KiB per idle connection (per server: {} KiB)",
            list.join("  ")
        );
    }
    let result = json!({
        "mode": "idle",
        "protocol": args.protocol.name(),
        "servers": args.url.len(),
        "games": sizes.len(),
        "idle": n,
        "connected": connected,
        "welcomed": welcomed,
        "open": open,
        "settle_s": args.settle,
        "rss_kib_start": rss_start.iter().sum::<u64>(),
        "rss_kib_before": rss_before.iter().sum::<u64>(),
        "rss_kib_after": rss_after.iter().sum::<u64>(),
        "kib_per_idle_connection": (!args.pid.is_empty()).then(|| round(per_conn, 2)),
        "kib_per_idle_connection_per_server": per_server_kib.iter().map(|k| round(*k, 2)).collect::<Vec<_>>(),
    });
    println!("RESULT {result}");
}

/// The server of player `p` of game `g`: its creator's (`p = 0`) and the next ones, over every
/// server or over `--spread` of them.
fn seat_server(args: &Args, g: usize, p: usize) -> usize {
    let n = args.url.len();
    let home = match args.creators {
        Creators::First => 0,
        Creators::Spread => g % n,
    };
    match args.spread {
        Some(k) if k >= 1 => (home + p % k) % n,
        _ => (g + p) % n,
    }
}

/// Pub/sub messages on game channels a server has received from Redis (its `/metrics`; the
/// Socket.IO peer has none).
fn pubsub_received(protocol: Protocol, url: &str) -> Option<u64> {
    use std::io::{Read, Write};
    if protocol != Protocol::RobotRace {
        return None;
    }
    let addr = url.strip_prefix("http://")?.trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    body.lines().find_map(|l| {
        l.strip_prefix("robot_race_pubsub_messages_received_total{channel=\"game\"} ")?
            .trim()
            .parse()
            .ok()
    })
}

/// Creates `sizes.len()` games and joins `sizes[g]` players to game g (the creator included),
/// at most `--concurrency` requests at a time. Seats come back in (game, player) order.
fn create_seats(args: &Args, sizes: &[usize]) -> Vec<Seat> {
    let n = args.url.len();
    let conc = args.concurrency.max(1);
    actix_rt::System::new().block_on(async {
        let http = awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .connector(awc::Connector::new().limit(0))
            .finish();
        let http = &http;
        let home = |g: usize| match args.creators {
            Creators::First => 0,
            Creators::Spread => g % n,
        };
        let mut games: Vec<(usize, String, String)> = stream::iter(0..sizes.len())
            .map(|g| async move {
                let url = &args.url[home(g)];
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
            seats.push(Seat {
                server: home(*g),
                url: args.url[home(*g)].clone(),
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
fn spawn_clients<F, Fut>(
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

fn join_clients(threads: Vec<std::thread::JoinHandle<Vec<PlayerStats>>>) -> Vec<PlayerStats> {
    threads
        .into_iter()
        .flat_map(|t| t.join().expect("client thread"))
        .collect()
}

/// Waits until every socket has opened or failed; returns how many opened.
fn wait_connected(shared: &Shared, total: usize) -> usize {
    loop {
        let ok = shared.connected.load(Ordering::Relaxed);
        if ok + shared.failed.load(Ordering::Relaxed) >= total {
            return ok;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One racing player: the admin starts its race once every socket is open; the player presses
/// every `every` (at its own random phase) inside the window, then reads until each press is
/// shown or errored (or `DRAIN_QUIET` passes without progress).
async fn play(
    mut framed: Socket,
    admin: bool,
    hello: Option<String>,
    cfg: PlayCfg,
    mut phase: watch::Receiver<Phase>,
    shared: Arc<Shared>,
) -> PlayerStats {
    let every = cfg.every;
    let mut st = PlayerStats::default();
    let mut view = View::default();
    let mut me = String::new();
    let mut pending: VecDeque<Instant> = VecDeque::new();
    let mut window: Option<(Instant, Instant)> = None;
    let mut next_press: Option<Instant> = None;
    let offset = every.mul_f64(rand::random::<f64>());
    let mut start_sent = false;
    let mut start_attempts = 0;
    let mut start_retry_at: Option<Instant> = None;
    let mut last_progress = Instant::now();
    let mut phase_open = true;
    let press = cfg.protocol.press();
    loop {
        let cur = *phase.borrow();
        if cur == Phase::Stop {
            break;
        }
        if let (None, Phase::Window { start, end }) = (window, cur) {
            window = Some((start, end));
            next_press = Some(start + offset);
        }
        let now = Instant::now();
        if admin
            && st.welcomed
            && !start_sent
            && !view.playing
            && cur != Phase::Connecting
            && start_retry_at.is_none_or(|t| now >= t)
        {
            let _ = framed
                .send(Message::Text(cfg.protocol.start().into()))
                .await;
            start_sent = true;
            start_attempts += 1;
        }
        if let (Some((_, end)), Some(at)) = (window, next_press) {
            if at >= end {
                next_press = None;
            } else if now >= at {
                if framed.send(Message::Text(press.into())).await.is_err() {
                    st.closed_early = true;
                    break;
                }
                pending.push_back(now);
                st.sent += 1;
                st.send_lag_us.push(micros(now - at));
                next_press = Some(at + every);
                continue;
            }
        }
        if let Some((_, end)) = window {
            if now >= end
                && next_press.is_none()
                && (pending.is_empty() || now.duration_since(last_progress.max(end)) > DRAIN_QUIET)
            {
                break;
            }
        }
        let mut wake = now + Duration::from_millis(200);
        if let Some(at) = next_press {
            wake = wake.min(at);
        }
        if let (Some(at), false) = (start_retry_at, start_sent) {
            wake = wake.min(at);
        }
        let frame = tokio::select! {
            biased;
            frame = framed.next() => frame,
            _ = actix_rt::time::sleep_until(wake.into()) => continue,
            changed = phase.changed(), if phase_open => {
                phase_open = changed.is_ok();
                continue;
            }
        };
        let bytes = match frame {
            Some(Ok(Frame::Text(bytes))) => bytes,
            Some(Ok(Frame::Ping(p))) => {
                let _ = framed.send(Message::Pong(p)).await;
                continue;
            }
            Some(Ok(Frame::Close(_))) | Some(Err(_)) | None => {
                st.closed_early = true;
                break;
            }
            Some(Ok(_)) => continue,
        };
        let arrived = Instant::now();
        let in_window = window.is_some_and(|(s, e)| arrived >= s && arrived <= e);
        let msg = match cfg.protocol.decode(&bytes) {
            Ok(msg) => msg,
            Err(Control::Hello) => {
                if let Some(hello) = &hello {
                    let _ = framed.send(Message::Text(hello.as_str().into())).await;
                }
                continue;
            }
            Err(Control::Reply(text)) => {
                let _ = framed.send(Message::Text(text.into())).await;
                continue;
            }
            Err(Control::Closed(why)) => {
                *st.errors.entry(why).or_default() += 1;
                st.closed_early = true;
                break;
            }
            Err(Control::Skip) => continue,
        };
        let rose = match msg.kind.as_ref() {
            "welcome" => {
                me = msg.robot_id.unwrap_or_default();
                st.welcomed = true;
                if let Some(game) = &msg.game {
                    if view.apply_full(game, &me).is_none() {
                        // An update arrived before the welcome (the Socket.IO peer can do
                        // that; Robot Race always welcomes first): find my lane in it.
                        view.me = view.ids.iter().position(|id| *id == me);
                    }
                }
                None
            }
            "game_update" | "scores" => {
                st.deliveries += 1;
                if in_window {
                    st.window_deliveries += 1;
                }
                let applied = if msg.kind == "scores" {
                    st.scores_frames += 1;
                    view.apply_scores(msg.version, &msg.scores)
                        .map(|(rose, fits)| {
                            if !fits {
                                st.scores_mismatch += 1;
                            }
                            rose
                        })
                } else {
                    st.game_updates += 1;
                    msg.game.as_ref().and_then(|g| view.apply_full(g, &me))
                };
                if applied.is_none() {
                    st.stale += 1;
                }
                applied
            }
            "error" => {
                let code = msg.error.unwrap_or_default();
                if PRESS_ERRORS.contains(&code.as_str()) && !pending.is_empty() {
                    // The server dropped a press: the oldest one waiting (presses are applied
                    // in order, and a dropped one is the one that waited too long).
                    pending.pop_front();
                    st.press_errors += 1;
                    last_progress = arrived;
                }
                if admin && code == "not_enough_players" && !view.playing && start_attempts < 50 {
                    start_sent = false;
                    start_retry_at = Some(arrived + Duration::from_millis(200));
                }
                *st.errors.entry(code).or_default() += 1;
                None
            }
            "terminated" => {
                st.closed_early = true;
                break;
            }
            _ => None,
        };
        if let Some(rose) = rose {
            st.press_deliveries += rose;
            if in_window {
                st.window_press_deliveries += rose;
            }
        }
        if view.playing && !st.saw_playing {
            st.saw_playing = true;
            shared.playing.fetch_add(1, Ordering::Relaxed);
        }
        let score = view.my_score();
        while st.counted < score {
            st.counted += 1;
            last_progress = arrived;
            if let Some(sent_at) = pending.pop_front() {
                st.latencies_us.push(micros(arrived - sent_at));
            }
        }
    }
    let _ = framed.send(Message::Close(None)).await;
    st
}

/// One idle socket: answers pings until told to stop.
async fn idle(
    mut framed: Socket,
    protocol: Protocol,
    hello: Option<String>,
    mut phase: watch::Receiver<Phase>,
    shared: Arc<Shared>,
) -> PlayerStats {
    let mut st = PlayerStats::default();
    loop {
        tokio::select! {
            frame = framed.next() => match frame {
                Some(Ok(Frame::Ping(p))) => {
                    let _ = framed.send(Message::Pong(p)).await;
                }
                Some(Ok(Frame::Text(bytes))) => match protocol.decode(&bytes) {
                    Ok(m) if m.kind == "welcome" => st.welcomed = true,
                    Err(Control::Hello) => {
                        if let Some(hello) = &hello {
                            let _ = framed.send(Message::Text(hello.as_str().into())).await;
                        }
                    }
                    Err(Control::Reply(text)) => {
                        let _ = framed.send(Message::Text(text.into())).await;
                    }
                    Err(Control::Closed(_)) => {
                        st.closed_early = true;
                        shared.closed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    _ => st.deliveries += 1,
                },
                Some(Ok(Frame::Close(_))) | Some(Err(_)) | None => {
                    st.closed_early = true;
                    shared.closed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Some(Ok(_)) => {}
            },
            changed = phase.changed() => {
                if changed.is_err() || *phase.borrow() == Phase::Stop {
                    break;
                }
            }
        }
    }
    let _ = framed.send(Message::Close(None)).await;
    st
}

/// What a player sends first once the server opens the session: nothing for Robot Race (the
/// token is in the URL), the namespace CONNECT with the seat for Socket.IO.
fn hello(protocol: Protocol, seat: &Seat) -> Option<String> {
    match protocol {
        Protocol::RobotRace => None,
        Protocol::SocketIo => Some(socketio::connect_packet(&seat.game_id, &seat.token)),
    }
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// Percentiles of sorted microsecond samples, in ms.
struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
    count: usize,
}

impl Percentiles {
    fn of(sorted: &[u32]) -> Self {
        let at = |p: f64| {
            if sorted.is_empty() {
                return 0.0;
            }
            // Nearest rank: the smallest sample with at least p of all samples at or below it.
            let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
            sorted[rank - 1] as f64 / 1000.0
        };
        Percentiles {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: at(1.0),
            count: sorted.len(),
        }
    }

    fn json(&self) -> Value {
        json!({
            "p50": round(self.p50, 3),
            "p90": round(self.p90, 3),
            "p99": round(self.p99, 3),
            "p99_9": round(self.p999, 3),
            "max": round(self.max, 3),
            "count": self.count,
        })
    }
}

/// Redis counters from `INFO stats` and `INFO commandstats`.
struct RedisInfo {
    commands: u64,
    bytes_in: u64,
    bytes_out: u64,
    calls: BTreeMap<String, u64>,
}

struct RedisDelta {
    commands: u64,
    bytes_in: u64,
    bytes_out: u64,
    calls: BTreeMap<String, u64>,
}

impl RedisDelta {
    fn between(before: &RedisInfo, after: &RedisInfo) -> Self {
        let calls = after
            .calls
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.saturating_sub(*before.calls.get(k).unwrap_or(&0)),
                )
            })
            .filter(|(_, v)| *v > 0)
            .collect();
        RedisDelta {
            commands: after.commands.saturating_sub(before.commands),
            bytes_in: after.bytes_in.saturating_sub(before.bytes_in),
            bytes_out: after.bytes_out.saturating_sub(before.bytes_out),
            calls,
        }
    }

    fn top(&self, n: usize) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self.calls.iter().map(|(k, v)| (k.clone(), *v)).collect();
        v.sort_by_key(|c| std::cmp::Reverse(c.1));
        v.truncate(n);
        v
    }
}

fn redis_info(port: u16) -> Result<RedisInfo, String> {
    let client =
        redis::Client::open(format!("redis://127.0.0.1:{port}/")).map_err(|e| e.to_string())?;
    let mut con = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    let stats: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut con)
        .map_err(|e| e.to_string())?;
    let commandstats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut con)
        .map_err(|e| e.to_string())?;
    let field = |name: &str| {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    // cmdstat_evalsha:calls=25325,usec=…,usec_per_call=…
    let calls = commandstats
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect();
    Ok(RedisInfo {
        commands: field("total_commands_processed"),
        bytes_in: field("total_net_input_bytes"),
        bytes_out: field("total_net_output_bytes"),
        calls,
    })
}

/// A number from a `/proc/.../status` text: the first word after `name` (`"VmRSS:"`, …), 0 if
/// absent.
fn status_field(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Resident memory of a process, KiB (0 if unknown).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status_field(&status, "VmRSS:")
}

/// Context switches so far of every thread of these processes: (voluntary, involuntary). A
/// voluntary one is a thread going to sleep (in `epoll_wait`, mostly) until something wakes it:
/// the wake-ups a server pays for on top of its work. Threads that exited are not counted.
fn context_switches(pids: &[u32]) -> (u64, u64) {
    let mut total = (0, 0);
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            total.0 += status_field(&status, "voluntary_ctxt_switches:");
            total.1 += status_field(&status, "nonvoluntary_ctxt_switches:");
        }
    }
    total
}

/// User + system CPU seconds a process has used (0 if unknown).
fn cpu_secs(pid: u32) -> f64 {
    cpu_secs_of(&format!("/proc/{pid}/stat"))
}

fn cpu_secs_self() -> f64 {
    cpu_secs_of("/proc/self/stat")
}

fn cpu_secs_of(path: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of /proc/PID/stat (11 and 12 after the name);
    // clock ticks are 1/100 s on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn game(version: u64, robots: &[(&'static str, u64)]) -> GameMsg<'static> {
        GameMsg {
            version,
            state: "playing".into(),
            robots: robots
                .iter()
                .map(|(id, score)| RobotMsg {
                    id: (*id).into(),
                    score: *score,
                })
                .collect(),
        }
    }

    #[test]
    fn a_view_counts_other_robots_that_rose_and_drops_stale_updates() {
        let mut v = View::default();
        assert_eq!(
            v.apply_full(&game(3, &[("a", 0), ("b", 0), ("c", 0)]), "b"),
            Some(0)
        );
        assert_eq!(v.me, Some(1));
        // a and c rose (2 press deliveries); b is me.
        assert_eq!(
            v.apply_full(&game(5, &[("a", 1), ("b", 1), ("c", 2)]), "b"),
            Some(2)
        );
        assert_eq!(
            v.apply_full(&game(5, &[("a", 9), ("b", 9), ("c", 9)]), "b"),
            None
        );
        assert_eq!(v.apply_scores(4, &[7, 7, 7]), None);
        assert_eq!(v.apply_scores(6, &[1, 3, 3]), Some((1, true)));
        assert_eq!(v.my_score(), 3);
        assert_eq!(v.apply_scores(7, &[2, 3]), Some((1, false)));
        // A full view with a robot gone: compared by id, not by lane.
        assert_eq!(v.apply_full(&game(8, &[("b", 4), ("c", 4)]), "b"), Some(1));
        assert_eq!(v.me, Some(0));
        assert_eq!(v.my_score(), 4);
    }

    #[test]
    fn incoming_frames_parse() {
        let m: Incoming =
            serde_json::from_str(r#"{"type":"scores","version":9,"scores":[1,2]}"#).unwrap();
        assert_eq!(
            (m.kind.as_ref(), m.version, m.scores),
            ("scores", 9, vec![1, 2])
        );
        let m: Incoming = serde_json::from_str(
            r#"{"type":"welcome","robot_id":null,"admin":false,"game":{"id":"x","state":"setup","version":1,
               "robots":[{"id":"r","name":"n","score":0,"admin":true,"connected":true}],"leaderboard":[],"winner":null}}"#,
        )
        .unwrap();
        assert_eq!(m.robot_id, None);
        assert_eq!(m.game.unwrap().robots[0].id, "r");
        let m: Incoming =
            serde_json::from_str(r#"{"type":"error","error":"overloaded","message":"m"}"#).unwrap();
        assert_eq!(m.error.as_deref(), Some("overloaded"));
    }

    #[test]
    fn context_switches_count_a_thread_that_slept() {
        let me = [std::process::id()];
        let (before, _) = context_switches(&me);
        std::thread::sleep(Duration::from_millis(5));
        let (after, _) = context_switches(&me);
        assert!(after > before, "{before} -> {after}");
        assert_eq!(context_switches(&[u32::MAX]), (0, 0), "no such process");
        assert!(rss_kib(std::process::id()) > 0);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<u32> = (1..=1000).map(|i| i * 1000).collect();
        let p = Percentiles::of(&v);
        assert_eq!((p.p50, p.p99, p.p999, p.max), (500.0, 990.0, 999.0, 1000.0));
        assert_eq!(Percentiles::of(&[]).max, 0.0);
    }
}
