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
//! # every game's players on one server (not the one the game was created through)
//! cargo run --release --example load -- --url http://127.0.0.1:8080,http://127.0.0.1:8081 \
//!     --placement by-game
//! ```
//!
//! How a race run goes: the games are created and their players joined over the JSON API (at
//! most `--concurrency` requests at a time). Where the players sit, `--placement`:
//! - `spread` (the default): player `p` of game `g` on server `(g + p) % servers` (the creator,
//!   `p = 0`, on the server its game was created through: the first unless `--creators spread`);
//! - `by-game`: every player of game `g`, the creator's socket included, on one server,
//!   `(g + 1) % servers`, while the game is created through server `g % servers` (as a balancer
//!   hashing the game id places a game whose creation request landed elsewhere); the joins go
//!   to the players' server. With one server, everything is on it.
//!
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
//! - with `--spectators N`: N spectators of the racing games (opened `--open-rate` a second
//!   before the races start): their press-to-screen latency (a press sent until a spectator
//!   sees a version that shows it), frames a second, memory per spectator, and server CPU per
//!   1000 frames delivered to players and spectators;
//! - with `--idle-sockets N`: N idle sockets opened while the races play (`--open-rate` a
//!   second): memory per idle socket, and the players' latency while they open and otherwise;
//! - a final `RESULT {json}` line with every figure, for scripts.
//!
//! A `scores` frame is applied as the browser does: only when its version is higher than the last
//! drawn, scores in the `robots` order of the last full view.
//!
//! `--protocol socketio` drives the benchmark peer in `bench/socketio/` (Node.js Socket.IO 4 with
//! the Redis adapter) instead, with the same API calls, seats, pacing and measurements: Socket.IO
//! v4 framing over the same WebSocket client, its events read as the frames above (see
//! `load/socketio.rs`).

#[path = "load/args.rs"]
mod args;
#[path = "load/audience.rs"]
mod audience;
#[path = "load/clients.rs"]
mod clients;
#[path = "load/crowd.rs"]
mod crowd;
#[path = "load/frames.rs"]
mod frames;
#[path = "load/idle.rs"]
mod idle;
#[path = "load/measure.rs"]
mod measure;
#[path = "load/nodelay.rs"]
mod nodelay;
#[path = "load/player.rs"]
mod player;
#[path = "load/protocol.rs"]
mod protocol;
#[path = "load/race.rs"]
mod race;
#[path = "load/socketio.rs"]
mod socketio;

use clap::Parser;

use crate::args::Args;
use crate::idle::run_idle;
use crate::race::run_race;

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
