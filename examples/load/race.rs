//! A race run: every game racing, presses at `--rate` inside the window; the report of what the
//! servers delivered, how fast, and at what cost (CPU, memory, Redis).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::args::Args;
use crate::audience;
use crate::clients::{
    create_seats, join_clients, spawn_clients, wait_connected, Phase, PlayerStats, Shared,
};
use crate::measure::{
    context_switches, cpu_secs, cpu_secs_self, pubsub_received, redis_info, round, rss_kib,
    Percentiles, RedisDelta,
};
use crate::player::{play, PlayCfg};
use crate::protocol::hello;

pub fn run_race(args: &Args) {
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
    let games: Vec<(usize, String)> = seats
        .iter()
        .filter(|s| s.admin)
        .map(|s| (s.server, s.game_id.clone()))
        .collect();
    let idle_targets = audience::idle_targets(args);
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
    let spectators = audience::open_spectators(args, &games);
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
    let audience_frames = || spectators.as_ref().map_or(0, |s| s.crowd.frames());
    let frames_before = audience_frames();
    let start = Instant::now();
    let end = start + Duration::from_secs(args.seconds);
    let _ = phase_tx.send(Phase::Window { start, end });
    eprintln!("pressing for {} s…", args.seconds);
    let idle = (!idle_targets.is_empty()).then(|| {
        std::thread::sleep(Duration::from_secs_f64(args.open_after.max(0.0)));
        eprintln!("opening {} idle sockets…", idle_targets.len());
        audience::open_idle(args, idle_targets, end)
    });
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    let frames_in_window = audience_frames() - frames_before;
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
        "games x players    {} x {players} = {connections} connections ({connected} open, placement {}, creators {}, {} client threads)",
        args.games,
        args.placement.name(),
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
        let usec: Vec<String> = r
            .top(6)
            .iter()
            .map(|(c, _)| format!("{c} {:.1}", r.calls[c].1 as f64 / presses))
            .collect();
        println!(
            "redis CPU          {:.2} s over the window: {:.1} µs per press (in commands, µs per press: {})",
            r.cpu_s,
            r.cpu_s * 1e6 / presses,
            usec.join(", ")
        );
        if !args.pid.is_empty() {
            println!(
                "servers + redis    {:.2} ms CPU per 1000 press deliveries",
                (cpu_total + r.cpu_s) * 1e6 / t.window_press_deliveries.max(1) as f64
            );
        }
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

    let redis_json = redis.as_ref().map(|r| {
        let presses = t.sent.max(1) as f64;
        let calls: BTreeMap<&str, u64> = r.calls.iter().map(|(k, v)| (k.as_str(), v.0)).collect();
        let usec: BTreeMap<&str, u64> = r.calls.iter().map(|(k, v)| (k.as_str(), v.1)).collect();
        json!({
            "commands_per_press": round(r.commands as f64 / presses, 3),
            "bytes_in_per_press": round(r.bytes_in as f64 / presses, 1),
            "bytes_out_per_press": round(r.bytes_out as f64 / presses, 1),
            "commands": r.commands,
            "calls": calls,
            "usec": usec,
            "cpu_s": round(r.cpu_s, 3),
            "cpu_us_per_press": round(r.cpu_s * 1e6 / presses, 2),
        })
    });
    // Servers and the Redis they share, per 1000 press deliveries: what the system spends.
    let total_per_1000 = redis.as_ref().filter(|_| !args.pid.is_empty()).map(|r| {
        round(
            (cpu_total + r.cpu_s) * 1e6 / t.window_press_deliveries.max(1) as f64,
            3,
        )
    });
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
        "placement": args.placement.name(),
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
        "redis": redis_json,
        "total_cpu_ms_per_1000_press_deliveries": total_per_1000,
        "client_cpu_pct": round(client_pct, 1),
        "spread": args.spread,
        "pubsub_game_messages_per_server": heard,
        "send_lag_ms": lag.json(),
        "closed_early": closed_early,
    });
    let mut result = result;
    let extra = audience::report(
        (
            spectators,
            args.audience_nice,
            !args.spectator_url.is_empty(),
        ),
        idle.flatten(),
        &results,
        frames_in_window,
        t.window_deliveries,
        (!args.pid.is_empty()).then_some(cpu_total),
        window,
    );
    if let (Some(r), Value::Object(extra)) = (result.as_object_mut(), extra) {
        r.extend(extra);
    }
    println!("RESULT {result}");
}
