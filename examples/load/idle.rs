//! An idle run: many sockets that only answer pings, and the servers' memory per idle
//! connection.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use awc::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::watch;

use crate::args::Args;
use crate::clients::{
    create_seats, join_clients, spawn_clients, wait_connected, Phase, PlayerStats, Shared, Socket,
};
use crate::measure::{round, rss_kib};
use crate::protocol::{hello, Control, Protocol};

pub fn run_idle(args: &Args, n: usize) {
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
        "idle sockets       {n} in {} games (placement {}): {connected} opened, {welcomed} welcomed, {open} open after {:.1} s",
        sizes.len(),
        args.placement.name(),
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
        "placement": args.placement.name(),
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

/// One idle socket: answers pings until told to stop.
pub async fn idle(
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
