//! Command line and environment: clap derive, env fallbacks, and the single-dash spelling
//! (`robot-race -addr :8080 -redis localhost:6379`) that the Go server this replaces used.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};

mod env;
pub mod table;

use crate::logs::LogFormat;

/// Robot Race: a real-time multiplayer browser race game server.
///
/// Without a Redis address it runs alone (single-server mode). With `-redis` it joins every other
/// server on that Redis into one cluster: any server serves any game and any player.
///
/// The doc comment of each field is its line in `--help` and its meaning in the flag tables of
/// README.md and docs/PROTOCOL.md, which are generated from these definitions ([`table`]).
#[derive(Debug, Clone, Parser)]
#[command(name = "robot-race", version, about, long_about = None)]
pub struct Config {
    /// Listen address: `:8080` (all interfaces), `127.0.0.1:8080`, `8080`, `127.0.0.1:0` (a free
    /// port). Default `:$PORT` when PORT is set, else `:8080`.
    #[arg(long, env = "ADDR", value_name = "ADDR")]
    pub addr: Option<String>,

    /// Port on all interfaces when -addr is not given (Heroku sets PORT).
    #[arg(long, env = "PORT", value_name = "PORT", hide_env_values = true)]
    pub port: Option<u16>,

    /// Redis: `host:port`, `redis://[user:pass@]host:port[/db]`, or `rediss://…` for TLS
    /// (`#insecure` at the end accepts a self-signed certificate). None or empty: single-server
    /// mode.
    #[arg(long, env = "REDIS_URL", value_name = "URL", hide_env_values = true)]
    pub redis: Option<String>,

    /// Redis password when it is not in the URL (with Sentinel, the master's).
    #[arg(
        long,
        env = "REDIS_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub redis_password: Option<String>,

    /// Accept a self-signed certificate on `rediss://` (Heroku Redis), as `#insecure` does:
    /// Heroku sets REDIS_URL itself, so this switch stands in for the fragment.
    #[arg(long, env = "REDIS_TLS_INSECURE", value_parser = BoolishValueParser::new())]
    pub redis_tls_insecure: bool,

    /// Redis Sentinels, comma separated (`host:port`, or `rediss://host:port` for TLS to the
    /// Sentinels and the master): ask them for the master and follow every failover. Takes the
    /// place of -redis.
    #[arg(
        long,
        env = "REDIS_SENTINELS",
        value_name = "HOST:PORT,…",
        value_delimiter = ','
    )]
    pub redis_sentinel: Vec<String>,

    /// The name the Sentinels monitor the master under.
    #[arg(
        long,
        env = "REDIS_SENTINEL_MASTER",
        value_name = "NAME",
        default_value = "mymaster"
    )]
    pub redis_sentinel_master: String,

    /// The Sentinels' own password (their `requirepass`), when they have one.
    #[arg(
        long,
        env = "REDIS_SENTINEL_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub redis_sentinel_password: Option<String>,

    /// Redis Cluster nodes to start from, comma separated (any few; `rediss://host:port` for
    /// TLS): hash-tagged keys, sharded pub/sub per game. Takes the place of -redis;
    /// -redis-password applies.
    #[arg(
        long,
        env = "REDIS_CLUSTER_NODES",
        value_name = "HOST:PORT,…",
        value_delimiter = ','
    )]
    pub redis_cluster: Vec<String>,

    /// How to hear other servers' game updates: `pattern` (`PSUBSCRIBE game:*`, every game) or
    /// `per-game` (`SUBSCRIBE game:<id>` only while this server has players or spectators in
    /// the game, so its pub/sub traffic follows its own games, not the whole cluster's). Redis
    /// Cluster is always per game.
    #[arg(long, env = "REDIS_SUBSCRIBE", value_enum, default_value_t = Subscribe::Pattern)]
    pub subscribe: Subscribe,

    /// This server's id in the cluster (logs, /health, ownership, its inbox). Random when not
    /// set or empty.
    #[arg(long, env = "NODE_ID", value_name = "ID")]
    pub node_id: Option<String>,

    /// Secret that signs player tokens: set it on every server or on none. When not set (or
    /// empty) the servers share one kept in Redis (`robot_race:secret`); alone, a random one.
    #[arg(
        long,
        env = "ROBOT_RACE_SECRET",
        value_name = "SECRET",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub secret: Option<String>,

    /// Seconds without any player action after which a game ends (at least 1).
    #[arg(long, env = "IDLE_TIMEOUT_SECS", value_name = "SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_secs: u64,

    /// Milliseconds a server's ownership of a game lasts unrenewed (500 to 600000): past it, an
    /// owner that could not renew answers presses `unavailable`. Its heartbeat lasts a quarter
    /// of it: a server that crashed, froze or was cut off loses its games once its heartbeat
    /// lapses and another server checks, 1.3 to 3 s with the default lease.
    #[arg(long, env = "OWNER_LEASE_MS", value_name = "MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(500..=600_000))]
    pub owner_lease_ms: u64,

    /// The admin away this many milliseconds passes the role to the next connected robot (100
    /// to 3600000).
    #[arg(long, env = "HOST_HANDOVER_MS", value_name = "MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub host_handover_ms: u64,

    /// A robot away this many milliseconds before the race is removed (100 to 3600000).
    #[arg(long, env = "AWAY_REMOVE_MS", value_name = "MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub away_remove_ms: u64,

    /// Extra origins allowed to open WebSockets and post forms, comma separated, each
    /// `scheme://host[:port]` (e.g. `https://example.com,http://localhost:3000`); the page's own
    /// origin is always allowed.
    #[arg(
        long,
        env = "ALLOWED_ORIGINS",
        value_name = "ORIGIN,…",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// Games one client address may create per minute (0: no limit); it may have this server
    /// look up twenty times as many games that the server does not hold.
    #[arg(long, env = "CREATE_LIMIT", value_name = "N", default_value_t = 30)]
    pub create_limit: u32,

    /// Threads serving HTTP and WebSockets (0: one per core).
    #[arg(long, env = "HTTP_WORKERS", value_name = "N", default_value_t = 0)]
    pub http_workers: usize,

    /// Threads running game tasks and the Redis link (0: one per core). Several servers on one
    /// small machine do better with fewer of each.
    #[arg(long, env = "GAME_THREADS", value_name = "N", default_value_t = 0)]
    pub game_threads: usize,

    /// Run HTTP, WebSockets, game tasks and the Redis link on one thread (no wake-ups between
    /// threads): for several servers sharing a small machine (more servers than cores).
    #[arg(long, env = "SAME_THREAD", value_parser = BoolishValueParser::new())]
    pub same_thread: bool,

    /// Frames a second one WebSocket may send, of any kind (presses, other commands, pings, bad
    /// frames alike), with bursts of twice as many (0: no limit); past it frames are dropped,
    /// and a connection over it for 5 s is closed with 1008.
    #[arg(long, env = "WS_FRAME_RATE", value_name = "N", default_value_t = 40)]
    pub ws_frame_rate: u32,

    /// Seconds a WebSocket may stay silent (not even answering pings) before it is closed as
    /// gone (3 to 3600); pings go out every third of it, so a silent socket closes between
    /// this and a third more after its last frame.
    #[arg(long, env = "WS_TIMEOUT_SECS", value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub ws_timeout_secs: u64,

    /// Frames a second each game's spectators (the big screen) get at most (1 to 1000): the
    /// newest state, serialised once per game and shared by every spectator here. Players get
    /// every change.
    #[arg(long, env = "SPECTATOR_HZ", value_name = "N", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub spectator_hz: u32,

    /// Also listen here, for spectators (`/ws/<id>?watch=1`, and the watch page), on worker
    /// threads of their own at a lower OS priority (`-spectator-nice`): however many watch,
    /// their sockets take only the CPU the players leave. Route spectators here (nginx-redis.conf
    /// does). Same forms as -addr; empty: spectators share the players' workers.
    #[arg(long, env = "SPECTATOR_ADDR", value_name = "ADDR")]
    pub spectator_addr: Option<String>,

    /// The spectator workers' niceness (0 to 19): how much less CPU they get than the
    /// players' when the machine is busy (10: about a tenth).
    #[arg(long, env = "SPECTATOR_NICE", value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(i32).range(0..=19))]
    pub spectator_nice: i32,

    /// Spectator sockets this server takes (0: no limit); past it an upgrade is refused with
    /// 503 and Retry-After, and the watch page says the room is full and retries.
    #[arg(
        long,
        env = "MAX_SPECTATORS",
        value_name = "N",
        default_value_t = 10_000
    )]
    pub max_spectators: u64,

    /// Trust X-Forwarded-For, X-Real-IP, X-Forwarded-Proto and X-Forwarded-Host (the client's
    /// address in logs and limits, the invite link's scheme and host) from any peer (behind
    /// nginx or Heroku's router). Without it they are trusted from loopback and private IPv4
    /// addresses (10/8, 172.16/12, 192.168/16) only. The same-origin check reads
    /// X-Forwarded-Host and Forwarded from any peer (a browser cannot set them).
    #[arg(long, env = "TRUST_PROXY", value_parser = BoolishValueParser::new())]
    pub trust_proxy: bool,

    /// Log lines as `text` (`[time LEVEL module] message`) or `json` (one JSON object a line:
    /// time, level, target, message, node_id, and game_id when the line is about one game) for
    /// a log collector. Levels follow RUST_LOG (default `info`).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `-subscribe`: how a server hears other servers' game updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Subscribe {
    /// `PSUBSCRIBE game:*`: every game's updates.
    Pattern,
    /// `SUBSCRIBE game:<id>` while this server has players or spectators in the game, or
    /// commands of its players waiting for the owner.
    PerGame,
}

/// A start-up configuration error.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid listen address {0:?}: expected `:PORT`, `HOST:PORT` or `PORT`")]
    Addr(String),
    #[error("invalid Redis address {0:?}: {1}")]
    Redis(String, String),
}

impl Config {
    /// Parses the process arguments, accepting `-flag` as well as `--flag`.
    /// Exits with clap's message (status 2) when they do not parse.
    pub fn from_args() -> Config {
        Config::try_from_args(std::env::args()).unwrap_or_else(|e| e.exit())
    }

    /// For tests and embedding: parses the given arguments (first one is the program name) and
    /// the environment, where an empty variable counts as unset.
    pub fn try_from_args<I: IntoIterator<Item = String>>(args: I) -> Result<Config, clap::Error> {
        let args = normalize_args(args);
        let mut command = env::ignoring_empty_variables(Config::command());
        command
            .try_get_matches_from_mut(&args)
            .and_then(|matches| Config::from_arg_matches(&matches))
            .map_err(|e| env::name_the_variable(e, &command, &args))
    }

    /// The settings in force, for `/health`: every flag's effective value but the addresses
    /// and secrets (which may carry passwords).
    pub fn settings(&self) -> serde_json::Value {
        serde_json::json!({
            "redis_tls_insecure": self.redis_tls_insecure,
            "subscribe": self.subscribe.to_possible_value().map(|v| v.get_name().to_owned()),
            "secret": if self.secret().is_some() { "set" } else { "shared or random" },
            "idle_timeout_secs": self.idle_timeout().as_secs(),
            "owner_lease_ms": self.owner_lease().as_millis() as u64,
            "host_handover_ms": self.host_handover().as_millis() as u64,
            "away_remove_ms": self.away_remove().as_millis() as u64,
            "allowed_origins": self.allowed_origins(),
            "create_limit": self.create_limit,
            "http_workers": if self.same_thread { 1 } else { Config::threads(self.http_workers) },
            "game_threads": if self.same_thread { 0 } else { Config::threads(self.game_threads) },
            "same_thread": self.same_thread,
            "ws_frame_rate": self.ws_frame_rate,
            "ws_timeout_secs": self.ws_timeout().as_secs(),
            "spectator_hz": self.spectator_hz,
            "max_spectators": self.max_spectators,
            "spectator_addr": self.spectator_listen_addr().ok().flatten().map(|a| a.to_string()),
            "spectator_nice": self.spectator_nice,
            "trust_proxy": self.trust_proxy,
            "log_format": self.log_format.to_possible_value().map(|v| v.get_name().to_owned()),
        })
    }

    /// The extra origins given, trimmed (empty entries ignored).
    pub fn allowed_origins(&self) -> Vec<String> {
        self.allowed_origins
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The token secret, when one is set (an empty one is not).
    pub fn secret(&self) -> Option<&str> {
        self.secret.as_deref().filter(|s| !s.trim().is_empty())
    }

    /// The address to bind.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        match (&self.addr, self.port) {
            (Some(addr), _) => parse_listen_addr(addr),
            (None, Some(port)) => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)),
            (None, None) => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080)),
        }
    }

    /// Where spectators are served apart, if anywhere.
    pub fn spectator_listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        (self.spectator_addr.as_deref().map(str::trim))
            .filter(|a| !a.is_empty())
            .map(parse_listen_addr)
            .transpose()
    }

    /// The Redis address, if any was given (empty means none).
    pub fn redis_addr(&self) -> Option<&str> {
        self.redis
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// The Sentinels given, if any (empty entries ignored).
    pub fn sentinels(&self) -> Vec<&str> {
        self.redis_sentinel
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The Redis Cluster seed nodes given, if any (empty entries ignored).
    pub fn cluster_nodes(&self) -> Vec<&str> {
        self.redis_cluster
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect()
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.max(1))
    }

    /// `n`, or the number of cores when 0.
    pub fn threads(n: usize) -> usize {
        if n > 0 {
            n
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    pub fn host_handover(&self) -> Duration {
        Duration::from_millis(self.host_handover_ms.clamp(100, 3_600_000))
    }

    pub fn away_remove(&self) -> Duration {
        Duration::from_millis(self.away_remove_ms.clamp(100, 3_600_000))
    }

    /// How long a WebSocket may be silent before it is closed (at least 3 s).
    pub fn ws_timeout(&self) -> Duration {
        Duration::from_secs(self.ws_timeout_secs.clamp(3, 3600))
    }

    pub fn owner_lease(&self) -> Duration {
        Duration::from_millis(self.owner_lease_ms.clamp(500, 600_000))
    }
}

/// `:8080` → all interfaces; `8080` → all interfaces; `host:port` as given.
pub fn parse_listen_addr(raw: &str) -> Result<SocketAddr, ConfigError> {
    let raw = raw.trim();
    let err = || ConfigError::Addr(raw.to_owned());
    if let Some(port) = raw.strip_prefix(':') {
        let port = port.parse().map_err(|_| err())?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    if let Ok(port) = raw.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    raw.to_socket_addrs()
        .map_err(|_| err())?
        .next()
        .ok_or_else(err)
}

/// Rewrites `-addr` / `-addr=x` into `--addr` / `--addr=x` for every long flag we know, so the
/// Go-style single dash works; anything else (values, `-h`, `-V`) is left alone.
fn normalize_args<I: IntoIterator<Item = String>>(args: I) -> Vec<String> {
    let command = Config::command();
    // Each long name, and whether it takes a value (a switch such as `-same-thread` does not,
    // so the argument after it is a flag again).
    let longs: Vec<(&str, bool)> = command
        .get_arguments()
        .filter_map(|a| Some((a.get_long()?, a.get_action().takes_values())))
        .chain([("help", false), ("version", false)])
        .collect();
    let mut out = Vec::new();
    let mut expect_value = false;
    for (i, arg) in args.into_iter().enumerate() {
        if i == 0 || expect_value {
            expect_value = false;
            out.push(arg);
            continue;
        }
        let rewritten = match arg.strip_prefix('-') {
            Some(rest) if !rest.starts_with('-') => {
                let name = rest.split('=').next().unwrap_or(rest);
                match longs.iter().find(|(long, _)| *long == name) {
                    Some((_, takes_value)) => {
                        expect_value = *takes_value && !rest.contains('=');
                        Some(format!("-{arg}"))
                    }
                    None => None,
                }
            }
            Some(rest) => {
                expect_value = !rest.contains('=');
                None
            }
            None => None,
        };
        out.push(rewritten.unwrap_or(arg));
    }
    out
}

#[cfg(test)]
mod tests;
