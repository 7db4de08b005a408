//! The Redis bus: one Redis shared by every server of a cluster (or the master that Redis
//! Sentinel names, followed through failovers: [`sentinel`]; or a Redis Cluster, with
//! hash-tagged keys and sharded pub/sub: [`cluster`]).
//!
//! Three tasks, started by [`RedisBus::start`]:
//! - the *supervisor* connects (PING, scripts, the shared token secret), subscribes to
//!   `game:*` (or, with [`Subscribe::PerGame`], to `game:<id>` for each game this server has
//!   players in, as [`Bus::interest`](super::Bus::interest) says) and this server's inbox,
//!   beats the heartbeat, hands every message to the [`BusEvents`], and when the connection
//!   breaks retries every [`RETRY`] — so the first reconnect comes within a fraction of a
//!   second of Redis being back;
//! - the *writer* ([`writer`]) sends queued saves as one pipelined round trip and reports each
//!   result;
//! - the *publisher* sends inbox messages in order, pipelined.
//!
//! The calls the game layer makes ([`Bus`](super::Bus) on Redis): [`calls`]. Keys, channels
//! and scripts: [`scripts`]. The address and the command connection (one Redis or a cluster):
//! [`conn`].

mod calls;
pub mod cluster;
mod conn;
mod heartbeat;
mod scripts;
pub mod sentinel;
mod supervisor;
mod writer;

pub use conn::redis_client;
pub(crate) use conn::Conn;
pub use scripts::{Names, Scripts, STATE_TTL_SECS};

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use redis::{Client, RedisResult};
use tokio::sync::Notify;

use self::cluster::ClusterNodes;
use self::sentinel::Sentinels;
use self::writer::{Outbox, Writes};
use super::{BusEvents, RESTORE_WINDOW};
use crate::token::Tokens;

/// Time allowed for connecting, and for any one Redis reply.
const REDIS_TIMEOUT: Duration = Duration::from_secs(3);
/// How often to try again while Redis is unreachable (a refused connect costs nothing).
const RETRY: Duration = Duration::from_millis(100);

/// How to reach Redis.
pub struct RedisConfig {
    pub node_id: String,
    pub target: Target,
    /// How game updates are heard: every game, or the games this server has players in.
    pub subscribe: Subscribe,
    pub lease: Duration,
    /// Adopts the cluster's shared secret on connect, so every server accepts every token.
    pub tokens: Arc<Tokens>,
    /// An operator-set secret wins over the one shared in Redis.
    pub explicit_secret: bool,
}

/// Which Redis to connect to.
pub enum Target {
    /// One Redis at a fixed address (`addr`: `host:port` for logs, never the password).
    Single { client: Box<Client>, addr: String },
    /// Whichever master the Sentinels name, asked again on every (re)connect.
    Sentinel(Arc<Sentinels>),
    /// A Redis Cluster, reached through a few of its nodes; always per-game subscriptions.
    Cluster(Arc<ClusterNodes>),
}

/// How a server hears game updates (`-subscribe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscribe {
    /// `PSUBSCRIBE game:*`: every game's updates, whoever plays it.
    Pattern,
    /// `SUBSCRIBE game:<id>` only for the games this server has players in.
    PerGame,
}

/// The Redis bus. Every method the game layer calls on the hot path returns at once.
pub struct RedisBus {
    inner: Arc<Inner>,
}

struct Inner {
    config: RedisConfig,
    /// The command connection while connected; multiplexed, so every task shares it.
    conn: Mutex<Option<Conn>>,
    /// Key and channel names (hash-tagged on a cluster).
    names: Names,
    connected: AtomicBool,
    /// A failed call asks the supervisor to drop the connection and start over.
    reconnect: Notify,
    /// Saves and ends waiting for the writer.
    writes: Writes,
    /// Inbox messages waiting for the publisher.
    outbox: Outbox,
    events: OnceLock<Arc<dyn BusEvents>>,
    scripts: Scripts,
    /// Set by `release`: nothing is written or renewed after it, no reconnect.
    stopped: AtomicBool,
    /// Saves and ends written, for `/metrics`.
    writes_done: AtomicU64,
    /// Commands sent to Redis, for `/metrics`.
    commands: AtomicU64,
    /// Pub/sub messages received on game channels and in the inbox, for `/metrics`.
    heard_game: AtomicU64,
    heard_inbox: AtomicU64,
    /// Latencies, fenced writes and lost leases, for `/metrics`.
    stats: super::stats::BusStats,
    /// The `host:port` connected to last (with Sentinel: the master), for logs and `/health`.
    current: Mutex<Option<String>>,
    /// Per-game mode: the games whose channel this server wants to hear.
    wanted: Mutex<HashSet<String>>,
    /// `wanted` changed: the supervisor subscribes or unsubscribes.
    interest_changed: Notify,
    /// When each kind of failed call was last logged (see [`Inner::failed`]).
    logged_failures: Mutex<HashMap<String, std::time::Instant>>,
}

/// A kind of failed call (`save` refused with OOM, say) is logged once in this long; the
/// repeats meanwhile go to the debug log. The game tasks log when a game's saves start and
/// stop failing, and `/metrics` counts every failure.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(30);

impl RedisBus {
    pub fn new(config: RedisConfig) -> RedisBus {
        let names = Names {
            tagged: matches!(config.target, Target::Cluster(_)),
        };
        RedisBus {
            inner: Arc::new(Inner {
                config,
                conn: Mutex::new(None),
                names,
                connected: AtomicBool::new(false),
                reconnect: Notify::new(),
                writes: Writes::default(),
                outbox: Outbox::default(),
                events: OnceLock::new(),
                scripts: Scripts::new(names),
                stopped: AtomicBool::new(false),
                writes_done: AtomicU64::new(0),
                commands: AtomicU64::new(0),
                heard_game: AtomicU64::new(0),
                heard_inbox: AtomicU64::new(0),
                stats: Default::default(),
                current: Mutex::new(None),
                wanted: Mutex::new(HashSet::new()),
                interest_changed: Notify::new(),
                logged_failures: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl Inner {
    fn conn(&self) -> Option<Conn> {
        lock(&self.conn).clone()
    }

    /// Whether game channels are subscribed one by one (`-subscribe per-game`, and always on
    /// a cluster, where there is no pattern subscription across shards).
    fn per_game(&self) -> bool {
        self.config.subscribe == Subscribe::PerGame
            || matches!(self.config.target, Target::Cluster(_))
    }

    fn node_id(&self) -> &str {
        &self.config.node_id
    }

    fn lease_ms(&self) -> u64 {
        self.config.lease.as_millis() as u64
    }

    /// Counts `n` commands sent to Redis.
    fn sent(&self, n: usize) {
        self.commands.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Where this bus connects, for logs: the address, or the Sentinels and the master name.
    fn target(&self) -> String {
        match &self.config.target {
            Target::Single { addr, .. } => addr.clone(),
            Target::Sentinel(sentinels) => sentinels.describe(),
            Target::Cluster(nodes) => nodes.describe(),
        }
    }

    /// Logs a failed Redis call; a broken connection makes the supervisor reconnect.
    fn failed(&self, what: &str, e: &redis::RedisError) {
        let kind = format!("{what}: {:?}", e.kind());
        let now = std::time::Instant::now();
        let fresh = {
            let mut logged = lock(&self.logged_failures);
            let fresh = logged
                .get(&kind)
                .is_none_or(|at| now.duration_since(*at) >= FAILURE_LOG_EVERY);
            if fresh {
                logged.insert(kind, now);
            }
            fresh
        };
        if fresh {
            log::warn!("Redis {what} failed: {e}");
        } else {
            log::debug!("Redis {what} failed: {e}");
        }
        let no_script = e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript);
        // A master demoted by a failover answers writes with READONLY: find the new one.
        let read_only = e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly);
        if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || no_script || read_only
        {
            self.reconnect.notify_one();
        }
    }

    async fn claim_once(
        &self,
        conn: &mut Conn,
        game_id: &str,
        (fallback, version): (&str, &str),
        dead_owner: &str,
        (floor, token): (u64, u64),
    ) -> RedisResult<(u8, String, u64)> {
        self.sent(1);
        self.scripts
            .claim
            .key(self.names.owner(game_id))
            .key(self.names.state(game_id))
            .key(self.names.epoch(game_id))
            .key(self.names.restore(game_id))
            .arg(self.node_id())
            .arg(self.lease_ms())
            .arg(fallback)
            .arg(STATE_TTL_SECS)
            .arg(dead_owner)
            .arg(floor.max(1))
            .arg(format!("{token:016x}"))
            .arg(version)
            .arg(RESTORE_WINDOW.as_millis() as u64)
            .invoke_async(conn)
            .await
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
