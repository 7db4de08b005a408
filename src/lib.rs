//! Robot Race: a real-time multiplayer browser race game server.
//!
//! # Layout
//!
//! | module | owns |
//! | --- | --- |
//! | [`config`] | the command line and environment (clap, single-dash spelling) |
//! | [`game`] | the rules: pure data and functions, no I/O, no clock |
//! | [`protocol`] | WebSocket messages, the contract with the browser |
//! | [`node`] | this server's games: the registry, one task per game, the ownership state machine ([`node::role`]), presence across servers ([`node::presence`]), spectators fed apart from players ([`node::spectators`]) |
//! | [`bus`] | the only link to other servers: the [`bus::Bus`] trait, Redis ([`bus::redis`]) and in-memory ([`bus::local`]) |
//! | [`web`] | pages, JSON API, WebSocket upgrade and sessions, health and metrics |
//! | [`token`] | player tokens that every server of a cluster accepts |
//! | [`measure`] | lock-free histograms and error counts that `node`, `bus` and `web` record into and `/metrics` reads |
//! | [`logs`] | the log line formats: env_logger's text, or one JSON object a line (`-log-format`) |
//! | [`static_files`] | `static/`, compiled in |
//! | [`open_files`] | the open-files limit (one descriptor per socket), raised at start |
//! | [`threads`] | a thread's OS priority (the spectators' workers run at a lower one) |
//!
//! Data flow: browser ⇄ [`web`] session task ⇄ its game's task ([`node`]) ⇄ [`game`] rules. An
//! owning game task saves each change through the [`bus`] (fenced, published on `game:<id>`)
//! and shows it to its players once committed; the bus relays other servers' updates back to
//! the registry, which hands them to the game's task here. Imports go one way: web → node →
//! bus; the bus never imports the game layer.
//!
//! The per-game state lives in one task per game (the actorless hub of actix-ws's examples,
//! one hub per game so games run in parallel). Game and bus tasks run on a multi-thread tokio
//! runtime; HTTP and WebSocket I/O (actix-ws) on actix-web's workers.

pub mod bus;
pub mod config;
pub mod game;
pub mod logs;
pub mod measure;
pub mod node;
pub mod open_files;
pub mod protocol;
pub mod static_files;
pub mod threads;
pub mod token;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::{DefaultHeaders, Logger};
use actix_web::{web as aweb, App, HttpServer};

use crate::bus::local::LocalBus;
use crate::bus::redis::cluster::ClusterNodes;
use crate::bus::redis::sentinel::Sentinels;
use crate::bus::redis::{redis_client, RedisBus, RedisConfig, Subscribe, Target};
use crate::bus::Bus;
use crate::config::Config;
use crate::node::{Metrics, Node, Timing};
use crate::token::Tokens;
use crate::web::AppState;

/// A built server: bound, not yet running.
pub struct Application {
    server: Server,
    addr: SocketAddr,
    node: Node,
    /// The spectators' server (`-spectator-addr`): its address, and its handle.
    spectators: Option<(SocketAddr, ServerHandle)>,
}

/// What every worker serves, players' and spectators' alike.
macro_rules! app {
    ($state:expr) => {{
        let state = $state;
        let log_state = state.clone();
        App::new()
            .app_data(state)
            .wrap(
                // The client's address: from a trusted proxy's headers, else the peer.
                Logger::new(r#"%{client}xi "%{request}xi" %s %b %Dms"#)
                    .custom_request_replace("client", move |req| {
                        web::proxy::client_addr(req.request().head(), &log_state)
                    })
                    .custom_request_replace("request", web::proxy::logged_request),
            )
            .wrap(security_headers())
            .configure(web::configure)
    }};
}

/// The socket settings of both servers.
macro_rules! tuned {
    ($server:expr) => {
        $server
            .keep_alive(web::KEEP_ALIVE)
            // Game updates are small frames that must leave at once, not wait for an ACK
            // (Nagle's algorithm with delayed ACKs held them ~40 ms).
            .tcp_nodelay(true)
            // Each accepted socket: a modest send buffer, and a handle a WebSocket whose
            // client stopped reading is cut through (`web::ConnSocket`).
            .on_connect(|conn, data| {
                if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
                    web::ConnSocket::on_connect(tcp, data);
                }
            })
            .shutdown_timeout(3)
            .disable_signals()
    };
}

/// Serves spectators apart (`-spectator-addr`): a second server whose workers run on threads
/// at niceness `nice`, so that when the machine is busy the players' workers, the game tasks
/// and the bus come first. Its threads are started from a thread of its own whose niceness was
/// raised first (a thread's niceness is its own on Linux, and new threads inherit it).
fn serve_spectators(
    at: SocketAddr,
    nice: i32,
    workers: usize,
    state: aweb::Data<AppState>,
) -> Result<(SocketAddr, ServerHandle), StartError> {
    let listener = std::net::TcpListener::bind(at)?;
    let addr = listener.local_addr()?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("spectators".into())
        .spawn(move || {
            threads::lower_priority(nice);
            actix_web::rt::System::new().block_on(async move {
                let server = tuned!(HttpServer::new(move || app!(state.clone())))
                    .workers(workers)
                    .listen(listener);
                match server {
                    Ok(server) => {
                        let server = server.run();
                        let _ = tx.send(Ok(server.handle()));
                        let _ = server.await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
        })?;
    let handle = rx
        .recv()
        .map_err(|_| std::io::Error::other("the spectators' server did not start"))??;
    log::info!("Spectators on http://{addr} (workers at nice {nice})");
    Ok((addr, handle))
}

impl Application {
    /// Binds the listener and starts the node (and its bus) on `games`, the multi-thread
    /// runtime game tasks run on. Must be called inside an actix runtime.
    /// `games`: `None` in same-thread mode (game tasks then run on the one HTTP worker).
    pub fn build(
        config: Config,
        games: Option<tokio::runtime::Handle>,
    ) -> Result<Application, StartError> {
        let listen = config.listen_addr()?;
        let node_id = config
            .node_id
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| nanoid::nanoid!(10));
        let secret = config
            .secret()
            .map_or_else(|| nanoid::nanoid!(43), str::to_owned);
        let tokens = Arc::new(Tokens::new(secret.as_bytes()));
        let bus: Arc<dyn Bus> = match redis_target(&config)? {
            None => {
                log::info!("Redis pub/sub disabled - running in single-server mode");
                Arc::new(LocalBus::single(node_id))
            }
            Some(target) => Arc::new(RedisBus::new(RedisConfig {
                node_id,
                target,
                subscribe: match config.subscribe {
                    config::Subscribe::Pattern => Subscribe::Pattern,
                    config::Subscribe::PerGame => Subscribe::PerGame,
                },
                lease: config.owner_lease(),
                tokens: tokens.clone(),
                explicit_secret: config.secret().is_some(),
            })),
        };
        let mut timing = Timing::new(config.idle_timeout(), config.owner_lease());
        timing.presence.handover = config.host_handover();
        timing.presence.remove = config.away_remove();
        timing.spectator_period = Timing::spectator_period(config.spectator_hz);
        let node = Node::new(bus, Arc::new(Metrics::default()), timing, games.clone());
        if let Some(games) = &games {
            let _games = games.enter();
            node.start();
        }
        let same_thread = games.is_none();
        let start_node = node.clone();
        let state = aweb::Data::new(AppState {
            node: node.clone(),
            tokens,
            allowed_origins: config.allowed_origins(),
            trust_proxy: config.trust_proxy,
            idle_timeout: config.idle_timeout(),
            create_quota: web::quota::AddressQuota::new(config.create_limit),
            lookup_quota: web::quota::AddressQuota::lookups(config.create_limit),
            ws_frame_rate: config.ws_frame_rate,
            ws_timeout: config.ws_timeout(),
            max_spectators: config.max_spectators,
            settings: config.settings(),
        });
        let workers = if config.same_thread {
            1
        } else {
            Config::threads(config.http_workers)
        };
        let spectators = match config.spectator_listen_addr()? {
            Some(at) => Some(serve_spectators(
                at,
                config.spectator_nice,
                workers,
                state.clone(),
            )?),
            None => None,
        };
        let server = tuned!(HttpServer::new(move || {
            if same_thread {
                // This worker's thread runs the games too (same-thread mode: one worker).
                start_node.start_on(tokio::runtime::Handle::current());
            }
            app!(state.clone())
        }))
        .workers(workers)
        .bind(listen)?;
        let addr = server.addrs()[0];
        let server = server.run();
        Ok(Application {
            server,
            addr,
            node,
            spectators,
        })
    }

    /// The address actually bound (the port is known even when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Where spectators are served apart, if they are.
    pub fn spectator_addr(&self) -> Option<SocketAddr> {
        self.spectators.as_ref().map(|(addr, _)| *addr)
    }

    /// Serves until SIGTERM or SIGINT (caught since `signals` was made), then stops taking
    /// connections, closes WebSockets with "going away", commits and hands over owned games,
    /// and stops.
    pub async fn run_until_stopped(self, signals: StopSignals) -> std::io::Result<()> {
        let handle = self.server.handle();
        let node = self.node.clone();
        let spectators = self.spectators.map(|(_, handle)| handle);
        actix_web::rt::spawn(async move {
            signals.recv().await;
            stop(node, handle, spectators).await;
        });
        self.server.await
    }
}

/// SIGTERM and SIGINT, caught from the moment this is made: made before the server starts, a
/// signal during start-up (a deploy that stops a server at once) still shuts it down cleanly
/// instead of killing it. Needs a tokio runtime with I/O enabled (actix's has it).
pub struct StopSignals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl StopSignals {
    pub fn listen() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let streams = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(term), Ok(int)) => Some((term, int)),
                _ => None,
            };
            StopSignals { streams }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    async fn recv(self) {
        #[cfg(unix)]
        if let Some((mut term, mut int)) = self.streams {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Which Redis the configuration names: a Redis Cluster, the Sentinels' master, one Redis, or
/// none.
fn redis_target(config: &Config) -> Result<Option<Target>, config::ConfigError> {
    let nodes = config.cluster_nodes();
    if !nodes.is_empty() {
        let cluster = ClusterNodes::new(
            &nodes,
            config.redis_password.as_deref(),
            config.redis_tls_insecure,
        )
        .map_err(|e| config::ConfigError::Redis(nodes.join(","), e))?;
        return Ok(Some(Target::Cluster(Arc::new(cluster))));
    }
    let sentinels = config.sentinels();
    if !sentinels.is_empty() {
        let sentinels = Sentinels::new(
            &sentinels,
            &config.redis_sentinel_master,
            config.redis_password.as_deref(),
            config.redis_sentinel_password.as_deref(),
            config.redis_tls_insecure,
        )
        .map_err(|e| config::ConfigError::Redis(sentinels.join(","), e))?;
        return Ok(Some(Target::Sentinel(Arc::new(sentinels))));
    }
    let Some(raw) = config.redis_addr() else {
        return Ok(None);
    };
    let (client, addr) = redis_client(
        raw,
        config.redis_password.as_deref(),
        config.redis_tls_insecure,
    )
    .map_err(|e| config::ConfigError::Redis(raw.to_owned(), e))?;
    Ok(Some(Target::Single {
        client: Box::new(client),
        addr,
    }))
}

/// Pages load only our own scripts, styles, fonts and images (and `data:` images), connect only
/// to this site and to WebSockets (`ws:`, `wss:`), and may not be framed by other sites.
fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((
            "Content-Security-Policy",
            "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; \
             object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("Referrer-Policy", "same-origin"))
        .add(("X-Frame-Options", "DENY"))
}

async fn stop(node: Node, server: ServerHandle, spectators: Option<ServerHandle>) {
    log::info!("Shutting down: closing connections and handing over games");
    // New connections go to the other servers from here on.
    server.pause().await;
    if let Some(spectators) = &spectators {
        spectators.pause().await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(6), node.shutdown()).await;
    if let Some(spectators) = spectators {
        spectators.stop(true).await;
    }
    server.stop(true).await;
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
}
