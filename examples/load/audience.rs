//! The race run's audience: spectators of the racing games (`--spectators`, the `watch`
//! scenario) and idle sockets opened while the races play (`--idle-sockets`, the `crowd`
//! scenario). Opened with [`crate::crowd`]; measured here: spectators' press-to-screen
//! latency and frames, memory per spectator and per idle socket, the players' latency while
//! the idle sockets open.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::args::Args;
use crate::clients::{create_seats, PlayerStats};
use crate::crowd::{press_to_screen, server_addr, Crowd, Target};
use crate::measure::{round, rss_kib, Percentiles};

/// Spectators, open before the races start.
pub struct Spectators {
    pub crowd: Crowd,
    pub opened: usize,
    pub refused: usize,
    pub kib_per_socket: f64,
}

fn rss(args: &Args) -> u64 {
    args.pid.iter().map(|p| rss_kib(*p)).sum()
}

/// Opens `--spectators` sockets on `games` (server index, game id), spectator `i` watching
/// game `i % games` on server `i % servers`; waits for them and measures their memory.
pub fn open_spectators(args: &Args, games: &[(usize, String)]) -> Option<Spectators> {
    if args.spectators == 0 || games.is_empty() {
        return None;
    }
    let n = args.spectators;
    let every = (n / args.spectator_sample.max(1)).max(1);
    let urls = match args.spectator_url.is_empty() {
        true => &args.url,
        false => &args.spectator_url,
    };
    let targets = (0..n)
        .map(|i| Target {
            server: server_addr(&urls[i % urls.len()]),
            game_id: games[i % games.len()].1.clone(),
            record: i % every == 0,
        })
        .collect();
    let before = rss(args);
    eprintln!("{n} spectators connecting…");
    // Paced like the idle sockets: a burst of thousands of handshakes at once would overflow
    // the server's accept backlog and measure SYN retries instead.
    let crowd = Crowd::open(
        targets,
        (args.client_threads, args.audience_nice),
        args.open_rate,
        args.source_addrs,
    );
    let opened = crowd.wait_open(Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs_f64(args.settle.max(0.0)));
    let grown = rss(args).saturating_sub(before);
    let failed = n - opened;
    Some(Spectators {
        crowd,
        opened,
        refused: failed,
        kib_per_socket: grown as f64 / opened.max(1) as f64,
    })
}

/// Idle sockets, to open during the window: targets on games created for them (one per 1000
/// sockets), on the servers in turn.
pub fn idle_targets(args: &Args) -> Vec<Target> {
    if args.idle_sockets == 0 {
        return Vec::new();
    }
    let games = create_seats(args, &vec![1; args.idle_sockets.div_ceil(1000)]);
    (0..args.idle_sockets)
        .map(|i| {
            let seat = &games[i % games.len()];
            Target {
                server: server_addr(&seat.url),
                game_id: seat.game_id.clone(),
                record: false,
            }
        })
        .collect()
}

/// The idle sockets opened during the window.
pub struct Idle {
    pub crowd: Crowd,
    pub opened: usize,
    /// From the first socket's connect to the last one's answer.
    pub phase: (Instant, Instant),
    pub kib_per_socket: f64,
}

/// Opens the idle sockets at `--open-rate`, waits for them (up to `until`), then lets the
/// servers settle and measures their memory.
pub fn open_idle(args: &Args, targets: Vec<Target>, until: Instant) -> Option<Idle> {
    if targets.is_empty() {
        return None;
    }
    let before = rss(args);
    let crowd = Crowd::open(
        targets,
        (args.client_threads, args.audience_nice),
        args.open_rate,
        args.source_addrs,
    );
    let opened = crowd.wait_open(until.saturating_duration_since(Instant::now()));
    let start = crowd.started;
    let end = crowd
        .counts
        .done_at
        .lock()
        .ok()
        .and_then(|d| *d)
        .unwrap_or(start);
    std::thread::sleep(Duration::from_secs_f64(args.settle.max(0.0)));
    let grown = rss(args).saturating_sub(before);
    Some(Idle {
        crowd,
        opened,
        phase: (start, end),
        kib_per_socket: grown as f64 / opened.max(1) as f64,
    })
}

/// Players' latency for presses sent inside `phase`, and outside it.
fn split_latency(results: &[PlayerStats], phase: (Instant, Instant)) -> (Percentiles, Percentiles) {
    let (mut inside, mut outside): (Vec<u32>, Vec<u32>) = (Vec::new(), Vec::new());
    for (sent, us, _) in results.iter().flat_map(|r| &r.timed) {
        if *sent >= phase.0 && *sent <= phase.1 {
            inside.push(*us);
        } else {
            outside.push(*us);
        }
    }
    inside.sort_unstable();
    outside.sort_unstable();
    (Percentiles::of(&inside), Percentiles::of(&outside))
}

/// Closes the audience, prints its lines of the report, and returns its figures for the
/// `RESULT` line. `frames_in_window`: spectator and idle frames received in the window;
/// `cpu_total`: the servers' CPU seconds in the window; `player_frames`: the players'.
pub fn report(
    (spectators, spectators_nice, apart): (Option<Spectators>, i32, bool),
    idle: Option<Idle>,
    results: &[PlayerStats],
    frames_in_window: u64,
    player_frames: u64,
    cpu_total: Option<f64>,
    window: f64,
) -> Value {
    let mut out = json!({});
    if let Some(s) = spectators {
        let watched = s.crowd.close();
        let mut presses: Vec<(Instant, u64)> = results
            .iter()
            .flat_map(|r| r.timed.iter().map(|(sent, _, v)| (*sent, *v)))
            .collect();
        let lat = Percentiles::of(&press_to_screen(&watched, &mut presses));
        let frames: u64 = watched.iter().map(|w| w.frames).sum();
        let closed = watched.iter().filter(|w| w.closed_early).count();
        // The least any spectator got, over its whole watch (opened before the window).
        let fewest = watched.iter().map(|w| w.frames).min().unwrap_or(0);
        println!(
            "spectator clients  at nice {}; {}; the fewest frames one spectator got: {fewest}",
            spectators_nice,
            if apart {
                "on the servers' spectator listeners"
            } else {
                "on the players' listeners"
            }
        );
        println!(
            "spectators         {} open ({} refused or failed, {closed} closed early): {frames} frames in all, {:.0}/s in the window ({:.1}/s per spectator)",
            s.opened,
            s.refused,
            frames_in_window as f64 / window,
            frames_in_window as f64 / window / s.opened.max(1) as f64
        );
        println!(
            "spectator latency  press sent to a spectator seeing it, ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            lat.p50, lat.p90, lat.p99, lat.p999, lat.max
        );
        println!(
            "spectator memory   {:.1} KiB per spectator (server RSS growth)",
            s.kib_per_socket
        );
        out["spectators"] = json!({
            "opened": s.opened,
            "refused_or_failed": s.refused,
            "closed_early": closed,
            "frames_per_s": round(frames_in_window as f64 / window, 1),
            "press_to_screen_ms": lat.json(),
            "kib_per_spectator": round(s.kib_per_socket, 2),
            "fewest_frames": fewest,
            "clients_nice": spectators_nice,
            "apart": apart,
        });
    }
    if let Some(i) = idle {
        let (during, rest) = split_latency(results, i.phase);
        let took = i.phase.1.duration_since(i.phase.0).as_secs_f64();
        let watched = i.crowd.close();
        let refused = watched.iter().filter(|w| w.refused).count();
        println!(
            "idle sockets       {} open of {} ({refused} refused 503) in {took:.2} s ({:.0}/s); {:.1} KiB per idle socket",
            i.opened,
            watched.len(),
            i.opened as f64 / took.max(1e-3),
            i.kib_per_socket
        );
        println!(
            "players while opening  p50 {:.2}  p99 {:.2}  max {:.2} ms; otherwise p50 {:.2}  p99 {:.2}  max {:.2} ms",
            during.p50, during.p99, during.max, rest.p50, rest.p99, rest.max
        );
        out["idle"] = json!({
            "opened": i.opened,
            "refused": refused,
            "open_s": round(took, 3),
            "open_per_s": round(i.opened as f64 / took.max(1e-3), 0),
            "kib_per_idle_socket": round(i.kib_per_socket, 2),
            "latency_ms_while_opening": during.json(),
            "latency_ms_otherwise": rest.json(),
        });
    }
    if let Some(cpu) = cpu_total {
        let delivered = player_frames + frames_in_window;
        let per_1000 = cpu * 1e6 / delivered.max(1) as f64;
        println!(
            "server CPU, all    {per_1000:.2} ms per 1000 frames delivered to players and spectators ({delivered} in the window)"
        );
        out["cpu_ms_per_1000_frames_all"] = json!(round(per_1000, 3));
    }
    out
}
