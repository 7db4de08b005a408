//! The project's load tool: many games, many players, real WebSockets, presses at a human rate.
//!
//! ```sh
//! cargo run --release --example load -- --url http://127.0.0.1:8080 --games 20 --players 5
//! # a cluster: players spread over the servers, server pids for CPU and memory figures
//! cargo run --release --example load -- --url http://127.0.0.1:8080,http://127.0.0.1:8081 \
//!     --pid 1234,1235 --games 40 --players 5 --rate 10 --seconds 20
//! ```
//!
//! Reports: press-to-update latency percentiles (time from sending a press until the
//! presser's own robot shows it), updates delivered per second, presses lost (sent minus
//! counted: must be 0), and with `--pid`: server CPU per delivered update and memory per
//! connection (RSS growth over the connected players).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use awc::ws::{Frame, Message};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(about = "Robot Race load tool")]
struct Args {
    /// Server base URLs, comma separated; games are created on the first, players spread over all.
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
    /// How long to press.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Server process ids (comma separated) for CPU and memory figures (Linux /proc).
    #[arg(long, value_delimiter = ',')]
    pid: Vec<u32>,
}

struct PlayerStats {
    latencies: Vec<Duration>,
    sent: u64,
    counted: u64,
    deliveries: u64,
}

#[actix_rt::main]
async fn main() {
    let args = Args::parse();
    let players = args.players.clamp(2, 10);
    let http = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let rss_before: u64 = args.pid.iter().map(|p| rss_kib(*p)).sum();

    // Create the games and join their players (round-robin over the servers).
    let mut seats = Vec::new();
    for g in 0..args.games {
        let created = post(
            &http,
            &format!("{}/api/games", args.url[0]),
            json!({"name": format!("g{g}p0"), "winning_score": 1000, "countdown": 0}),
        )
        .await;
        let game_id = created["game_id"].as_str().expect("game_id").to_owned();
        seats.push((args.url[0].clone(), game_id.clone(), token(&created), true));
        for p in 1..players {
            let url = &args.url[(g + p) % args.url.len()];
            let joined = post(
                &http,
                &format!("{url}/api/games/{game_id}/players"),
                json!({"name": format!("g{g}p{p}")}),
            )
            .await;
            seats.push((url.clone(), game_id.clone(), token(&joined), false));
        }
    }
    let connections = seats.len();
    eprintln!("{} games, {connections} players connecting…", args.games);
    let mut sockets = Vec::new();
    for (url, game_id, token, admin) in &seats {
        let ws = url.replacen("http", "ws", 1);
        let (_, framed) = awc::Client::new()
            .ws(format!("{ws}/ws/{game_id}?token={token}"))
            .max_frame_size(1 << 20)
            .connect()
            .await
            .expect("WebSocket connect");
        sockets.push((framed, *admin));
    }
    let rss_connected: u64 = args.pid.iter().map(|p| rss_kib(*p)).sum();
    let cpu_before: f64 = args.pid.iter().map(|p| cpu_secs(*p)).sum();
    let started = Instant::now();
    let run = Duration::from_secs(args.seconds);
    let every = Duration::from_secs_f64(1.0 / args.rate.max(0.1));
    let results = futures_util::future::join_all(
        sockets
            .into_iter()
            .map(|(framed, admin)| play(framed, admin, every, run)),
    )
    .await;
    let elapsed = started.elapsed();
    let cpu_used: f64 = args.pid.iter().map(|p| cpu_secs(*p)).sum::<f64>() - cpu_before;

    let mut latencies: Vec<Duration> = results.iter().flat_map(|r| r.latencies.clone()).collect();
    latencies.sort();
    let sent: u64 = results.iter().map(|r| r.sent).sum();
    let counted: u64 = results.iter().map(|r| r.counted).sum();
    let deliveries: u64 = results.iter().map(|r| r.deliveries).sum();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!("servers            {}", args.url.join(" "));
    println!(
        "games x players    {} x {players} = {connections} connections",
        args.games
    );
    println!(
        "presses sent       {sent} ({:.0}/s)",
        sent as f64 / elapsed.as_secs_f64()
    );
    println!(
        "presses counted    {counted} (lost: {})",
        sent.saturating_sub(counted)
    );
    println!(
        "updates delivered  {deliveries} ({:.0}/s)",
        deliveries as f64 / elapsed.as_secs_f64()
    );
    println!(
        "press latency ms   p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
    if !args.pid.is_empty() {
        println!(
            "server CPU         {:.2} s over {:.1} s ({:.1} us per delivered update)",
            cpu_used,
            elapsed.as_secs_f64(),
            cpu_used * 1e6 / deliveries.max(1) as f64
        );
        println!(
            "server memory      {} KiB before, {} KiB connected ({:.1} KiB per connection)",
            rss_before,
            rss_connected,
            rss_connected.saturating_sub(rss_before) as f64 / connections as f64
        );
    }
}

async fn post(http: &awc::Client, url: &str, body: Value) -> Value {
    let mut res = http.post(url).send_json(&body).await.expect("request");
    let json: Value = res.json().await.expect("JSON body");
    assert!(res.status().is_success(), "{url}: {} {json}", res.status());
    json
}

fn token(v: &Value) -> String {
    v["token"].as_str().expect("token").to_owned()
}

/// One player: waits for the race, presses every `every` for `run`, then reads until its own
/// score stops moving; measures each press until its robot shows it.
async fn play(
    mut framed: actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
    admin: bool,
    every: Duration,
    run: Duration,
) -> PlayerStats {
    let mut stats = PlayerStats {
        latencies: Vec::new(),
        sent: 0,
        counted: 0,
        deliveries: 0,
    };
    let mut me = String::new();
    let mut pending: VecDeque<Instant> = VecDeque::new();
    let mut playing = false;
    let mut started_at: Option<Instant> = None;
    let mut next_press = Instant::now();
    let mut last_version = 0u64;
    let mut quiet_since = Instant::now();
    loop {
        let now = Instant::now();
        let pressing = started_at.is_some_and(|s| now < s + run);
        if playing && pressing && now >= next_press {
            let _ = framed
                .send(Message::Text(r#"{"type":"score_point"}"#.into()))
                .await;
            pending.push_back(Instant::now());
            stats.sent += 1;
            next_press += every;
            continue;
        }
        if started_at.is_some_and(|s| now >= s + run)
            && (pending.is_empty() || now.duration_since(quiet_since) > Duration::from_secs(5))
        {
            break;
        }
        let wait = if playing && pressing {
            next_press.saturating_duration_since(now)
        } else {
            Duration::from_millis(200)
        };
        let frame = match actix_rt::time::timeout(wait, framed.next()).await {
            Err(_) => continue,
            Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(frame))) => frame,
        };
        let text = match frame {
            Frame::Text(t) => t,
            Frame::Ping(p) => {
                let _ = framed.send(Message::Pong(p)).await;
                continue;
            }
            Frame::Close(_) => break,
            _ => continue,
        };
        let Ok(msg) = serde_json::from_slice::<Value>(&text) else {
            continue;
        };
        let game = &msg["game"];
        match msg["type"].as_str() {
            Some("welcome") => {
                me = msg["robot_id"].as_str().unwrap_or_default().to_owned();
                if admin {
                    let start = r#"{"type":"start_countdown"}"#;
                    let _ = framed.send(Message::Text(start.into())).await;
                }
            }
            Some("game_update") => stats.deliveries += 1,
            _ => continue,
        }
        let version = game["version"].as_u64().unwrap_or(0);
        if version <= last_version {
            continue;
        }
        last_version = version;
        if game["state"] == "playing" && !playing {
            playing = true;
            started_at = Some(Instant::now());
            next_press = Instant::now();
        }
        let score = game["robots"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["id"] == me.as_str()))
            .and_then(|r| r["score"].as_u64())
            .unwrap_or(0);
        let arrived = Instant::now();
        while stats.counted < score {
            stats.counted += 1;
            quiet_since = arrived;
            if let Some(sent_at) = pending.pop_front() {
                stats.latencies.push(arrived - sent_at);
            }
        }
    }
    stats
}

/// Resident memory of a process, KiB (0 if unknown).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU seconds a process has used (0 if unknown).
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
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
    // utime and stime are fields 14 and 15 of /proc/PID/stat (11 and 12 after the name).
    (ticks(11) + ticks(12)) / 100.0
}
