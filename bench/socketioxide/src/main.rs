//! The Rust benchmark peer: Robot Race's press -> scores path on socketioxide (Socket.IO 5
//! protocol, as Socket.IO 4 speaks it) with socketioxide-redis, axum for HTTP, the twin of
//! `bench/socketio/server.js`: the same JSON API, Socket.IO events and payloads, Redis keys and
//! Lua scripts, so the project's load tool (`examples/load.rs --protocol socketio`) drives it
//! the same way.
//!
//! ```sh
//! cargo build --release --manifest-path bench/socketioxide/Cargo.toml
//! bench/socketioxide/target/release/robot-race-socketioxide-peer --port 19080 \
//!     --redis 127.0.0.1:6379 [--host 127.0.0.1]
//! # (or PORT, REDIS_URL / REDIS_ADDR, HOST in the environment)
//! ```
//!
//! Every game lives in Redis ([`game`]), so any instance serves any game. A press in `playing`
//! is one `EVALSHA` (state check, `HINCRBY` of the presser's score and of the version, every
//! score read back) and its scores are broadcast to the game's room through the adapter
//! ([`sockets`]): the adapter publishes the broadcast on one Redis channel that every instance
//! subscribes to, and each delivers it to its own sockets in the room. HTTP in [`http`].
//!
//! Rules kept: join only in setup, 10 robots at most, start by the admin with 2 robots or more,
//! a press in playing adds 1 to the presser's score, the first to the winning score wins
//! (state finished). Left out: countdown (always 0), play again, presence, leaving, idle end,
//! rate limits, the HTML pages.
//!
//! Tuned as a fair peer: a multi-threaded tokio runtime (one worker per core), `TCP_NODELAY` on
//! every connection (as Node's HTTP server sets it), no logging, Node's defaults where
//! socketioxide's differ (1 MB payloads), and buffers deep enough that nothing is dropped under
//! load (Node buffers without a bound): 4096 packets per socket, 65536 adapter messages.

mod game;
mod http;
mod sockets;

use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use socketioxide::handler::ConnectHandler;
use socketioxide::SocketIo;
use socketioxide_redis::{RedisAdapterConfig, RedisAdapterCtr};

use crate::game::Store;
use crate::sockets::{authorize, on_connect, Adapter};

/// `--name value`, `--name=value`, the first set variable of `env`, or `default`.
fn arg(name: &str, env: &[&str], default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    let flag = format!("--{name}");
    if let Some(i) = args.iter().position(|a| *a == flag) {
        if let Some(v) = args.get(i + 1) {
            return v.clone();
        }
    }
    let prefix = format!("--{name}=");
    if let Some(v) = args.iter().find_map(|a| a.strip_prefix(&prefix)) {
        return v.to_owned();
    }
    env.iter()
        .find_map(|e| std::env::var(e).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("cannot start: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = arg("port", &["PORT"], "8080").parse()?;
    let host = arg("host", &["HOST"], "127.0.0.1");
    let mut redis_url = arg("redis", &["REDIS_URL", "REDIS_ADDR"], "127.0.0.1:6379");
    if !redis_url.contains("://") {
        redis_url = format!("redis://{redis_url}");
    }

    // Commands on one multiplexed connection; the adapter's publish and subscribe on another,
    // in RESP3 (its driver receives subscribed messages as RESP3 pushes).
    let commands = redis::Client::open(redis_url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let sep = if redis_url.contains('?') { '&' } else { '?' };
    let pubsub = redis::Client::open(format!("{redis_url}{sep}protocol=resp3"))?;
    let config = RedisAdapterConfig::new().with_stream_buffer(1 << 16);
    let adapter = RedisAdapterCtr::new_with_redis_config(&pubsub, config).await?;
    let store = Arc::new(Store::new(commands));

    let (layer, io) = SocketIo::builder()
        .with_state(store.clone())
        .max_payload(1_000_000)
        .max_buffer_size(4096)
        .with_adapter::<Adapter>(adapter)
        .build_layer();
    io.ns("/", on_connect.with(authorize))
        .await
        .map_err(|e| format!("socket.io namespace: {e}"))?;

    let app = http::router(http::Http {
        store,
        io: io.clone(),
    })
    .layer(layer);
    let listener = tokio::net::TcpListener::bind((host.as_str(), port))
        .await?
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    println!("socketioxide peer listening on {host}:{port}, redis {redis_url}");
    tokio::select! {
        r = axum::serve(listener, app) => r?,
        _ = stopped() => {}
    }
    // Close every socket (at most 2 s), then leave.
    let _ = tokio::time::timeout(Duration::from_secs(2), io.close()).await;
    std::process::exit(0);
}

/// SIGTERM or SIGINT.
async fn stopped() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
