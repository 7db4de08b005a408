//! Robot Race: a real-time multiplayer browser race game server.
//!
//! # Layout
//!
//! | module | owns |
//! | --- | --- |
//! | [`config`] | the command line and environment (clap, single-dash spelling) |
//! | [`game`] | the rules: pure data and functions, no I/O, no clock |
//! | [`protocol`] | WebSocket messages, the contract with the browser |
//! | [`hub`] | the actor that owns this server's games and sessions; [`hub::HubHandle`] talks to it |
//! | [`ws`] | one task per WebSocket: parse, rate limit, forward to the hub, write updates |
//! | [`http`] | routes, pages (askama templates in `templates/`), JSON API, health, metrics |
//! | [`cluster`] | Redis: fenced saves, pub/sub relay, forwarding to owners, reconnects |
//! | [`token`] | player tokens that every server of a cluster accepts |
//! | [`static_files`] | `static/`, compiled in |
//!
//! Data flow: browser ⇄ [`ws`] session ⇄ hub ⇄ [`game`] rules; the hub hands saves to the
//! [`cluster`] writer, which publishes on `game:<id>`; the cluster's relay hands other servers'
//! updates back to the hub, which fans them out to local sessions.

pub mod cluster;
pub mod config;
pub mod game;
pub mod http;
pub mod hub;
pub mod protocol;
pub mod static_files;
pub mod token;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::{DefaultHeaders, Logger};
use actix_web::{web, App, HttpServer};

use crate::cluster::Cluster;
use crate::config::Config;
use crate::http::AppState;
use crate::hub::{Hub, HubHandle, Metrics};
use crate::token::Tokens;

/// A built server: bound, not yet running.
pub struct Application {
    server: Server,
    addr: SocketAddr,
    hub: HubHandle,
}

impl Application {
    /// Binds the listener, starts the hub (and the cluster link when a Redis address is set).
    /// Must be called inside an actix/tokio runtime.
    pub fn build(config: Config) -> Result<Application, StartError> {
        let listen = config.listen_addr()?;
        let node_id = config
            .node_id
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| nanoid::nanoid!(10));
        let secret = config
            .secret
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| nanoid::nanoid!(43));
        let tokens = Arc::new(Tokens::new(secret.as_bytes()));
        let cluster = match config.redis_addr() {
            None => {
                log::info!("Redis pub/sub disabled - running in single-server mode");
                None
            }
            Some(raw) => {
                let (client, addr) = cluster::redis_client(
                    raw,
                    config.redis_password.as_deref(),
                    config.redis_tls_insecure,
                )
                .map_err(|e| config::ConfigError::Redis(raw.to_owned(), e))?;
                Some(Cluster::new(
                    node_id.clone(),
                    client,
                    addr,
                    config.owner_lease(),
                    tokens.clone(),
                    config.secret.is_some(),
                ))
            }
        };
        let metrics = Arc::new(Metrics::default());
        let (hub, handle) = Hub::new(
            node_id.clone(),
            cluster.clone(),
            metrics,
            config.idle_timeout(),
            config.owner_lease(),
        );
        tokio::spawn(hub.run());
        if let Some(cluster) = &cluster {
            cluster.start(handle.sender());
        }
        let state = web::Data::new(AppState {
            hub: handle.clone(),
            tokens,
            node_id,
            allowed_origins: config.allowed_origins.clone(),
            trust_proxy: config.trust_proxy,
        });
        let server = HttpServer::new(move || {
            let log_state = state.clone();
            App::new()
                .app_data(state.clone())
                .wrap(
                    // The client's address: from a trusted proxy's headers, else the peer.
                    Logger::new(r#"%{client}xi "%r" %s %b %Dms"#)
                        .custom_request_replace("client", move |req| {
                            http::client_addr(req.request(), &log_state)
                        }),
                )
                .wrap(security_headers())
                .configure(http::configure)
        })
        .keep_alive(http::KEEP_ALIVE)
        // Game updates are small frames that must leave at once, not wait for an ACK (Nagle's
        // algorithm with delayed ACKs held them ~40 ms: p90 press latency 43 ms → see README).
        .tcp_nodelay(true)
        .shutdown_timeout(3)
        .disable_signals()
        .bind(listen)?;
        let addr = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| std::io::Error::other("bound to no address"))?;
        Ok(Application {
            server: server.run(),
            addr,
            hub: handle,
        })
    }

    /// The address actually bound (the port is known even when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn hub(&self) -> &HubHandle {
        &self.hub
    }

    /// Serves until SIGTERM or SIGINT, then closes WebSockets with "going away", saves and
    /// hands over owned games, and stops.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let hub = self.hub.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            stop(hub, handle).await;
        });
        self.server.await
    }
}

/// Pages load only our own scripts, styles and fonts, talk only to our own WebSocket, and may
/// not be framed by other sites.
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

async fn stop(hub: HubHandle, server: ServerHandle) {
    log::info!("Shutting down: closing connections and handing over games");
    let _ = tokio::time::timeout(Duration::from_secs(4), hub.shutdown()).await;
    server.stop(true).await;
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
}
