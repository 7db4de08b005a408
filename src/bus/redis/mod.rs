//! The Redis bus: one Redis shared by every server of a cluster (or the master that Redis
//! Sentinel names, followed through failovers: [`sentinel`]; or a Redis Cluster, with
//! hash-tagged keys and sharded pub/sub: [`cluster`]).
//!
//! Three tasks, started by [`RedisBus::start`]:
//! - the *supervisor* connects (PING, scripts, the shared token secret), subscribes to
//!   `game:*` (or, with [`Subscribe::PerGame`], to `game:<id>` for each game this server has
//!   players in, as [`Bus::interest`] says) and this server's inbox, beats the heartbeat, hands
//!   every message to the [`BusEvents`], and when the connection breaks retries every
//!   [`RETRY`] — so the first reconnect comes within a fraction of a second of Redis being
//!   back;
//! - the *writer* ([`writer`]) sends queued saves as one pipelined round trip and reports each
//!   result;
//! - the *publisher* sends inbox messages in order, pipelined.
//!
//! Keys, channels and scripts: [`scripts`]. The address and the command connection (one Redis
//! or a cluster): [`conn`].

pub mod cluster;
mod conn;
mod scripts;
pub mod sentinel;
mod supervisor;
mod writer;

pub use conn::redis_client;
pub(crate) use conn::Conn;
pub use scripts::{Names, Scripts, STATE_TTL_SECS};

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use redis::{Client, Cmd, RedisResult};
use tokio::sync::Notify;
use tokio::time::Instant;

use self::cluster::ClusterNodes;
use self::scripts::CREATED_KEY;
use self::sentinel::Sentinels;
use self::writer::{Outbox, Writes};
use super::{
    BoxFuture, Bus, BusDown, BusEvents, BusStatus, Claim, PubSubCounts, Renewal, Save, SaveOutcome,
    Topology,
};
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
    /// The `host:port` connected to last (with Sentinel: the master), for logs and `/health`.
    current: Mutex<Option<String>>,
    /// Per-game mode: the games whose channel this server wants to hear.
    wanted: Mutex<HashSet<String>>,
    /// `wanted` changed: the supervisor subscribes or unsubscribes.
    interest_changed: Notify,
}

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
                current: Mutex::new(None),
                wanted: Mutex::new(HashSet::new()),
                interest_changed: Notify::new(),
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
        log::warn!("Redis {what} failed: {e}");
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
        fallback: &str,
        dead_owner: &str,
    ) -> RedisResult<(u8, String)> {
        self.sent(1);
        self.scripts
            .claim
            .key(self.names.owner(game_id))
            .key(self.names.state(game_id))
            .arg(self.node_id())
            .arg(self.lease_ms())
            .arg(fallback)
            .arg(STATE_TTL_SECS)
            .arg(dead_owner)
            .invoke_async(conn)
            .await
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Bus for RedisBus {
    fn node_id(&self) -> &str {
        self.inner.node_id()
    }

    fn status(&self) -> BusStatus {
        if self.inner.connected.load(Ordering::Relaxed) {
            BusStatus::Connected
        } else {
            BusStatus::Down
        }
    }

    fn replicated(&self) -> bool {
        true
    }

    fn lease(&self) -> Duration {
        self.inner.config.lease
    }

    fn start(&self, events: Arc<dyn BusEvents>) {
        let _ = self.inner.events.set(events);
        tokio::spawn(self.inner.clone().supervise());
        tokio::spawn(writer::write_loop(self.inner.clone()));
        tokio::spawn(writer::publish_loop(self.inner.clone()));
    }

    fn save(&self, game_id: &str, save: Save) -> SaveOutcome {
        if self.inner.stopped.load(Ordering::Relaxed) || self.status() != BusStatus::Connected {
            return SaveOutcome::Down;
        }
        self.inner.writes.push(game_id, writer::Write::Save(save));
        SaveOutcome::Pending
    }

    fn terminate(&self, game_id: &str, publish: String) {
        if !self.inner.stopped.load(Ordering::Relaxed) {
            self.inner
                .writes
                .push(game_id, writer::Write::Terminate { publish });
        }
    }

    fn send_to(&self, node: &str, payload: String) -> bool {
        if self.status() != BusStatus::Connected {
            return false;
        }
        let inbox = self.inner.names.inbox(node);
        self.inner.outbox.push(inbox, payload);
        true
    }

    fn claim(&self, game_id: &str, fallback: Option<String>) -> BoxFuture<'_, Claim> {
        let game_id = game_id.to_owned();
        Box::pin(async move {
            let inner = &self.inner;
            let Some(mut conn) = inner.conn() else {
                return Claim::Failed;
            };
            let fallback = fallback.unwrap_or_default();
            let mut dead = String::new();
            // At most twice: once, and once more taking over an owner found dead.
            for _ in 0..2 {
                let answer = inner
                    .claim_once(&mut conn, &game_id, &fallback, &dead)
                    .await;
                match answer {
                    Ok((1, stored)) => return Claim::Claimed { stored },
                    Ok((2, owner)) if owner != dead && dead.is_empty() => {
                        inner.sent(1);
                        let alive: RedisResult<bool> = redis::cmd("EXISTS")
                            .arg(inner.names.alive(&owner))
                            .query_async(&mut conn)
                            .await;
                        match alive {
                            Ok(true) => return Claim::OwnedBy(owner),
                            Ok(false) => {
                                log::info!(
                                    "game {game_id}: owner {owner} has no heartbeat; taking over"
                                );
                                dead = owner;
                            }
                            Err(e) => {
                                inner.failed("heartbeat check", &e);
                                return Claim::Failed;
                            }
                        }
                    }
                    Ok((2, owner)) => return Claim::OwnedBy(owner),
                    Ok(_) => return Claim::Gone,
                    Err(e) => {
                        inner.failed("claim", &e);
                        return Claim::Failed;
                    }
                }
            }
            Claim::Failed
        })
    }

    fn load(&self, game_id: &str) -> BoxFuture<'_, Result<Option<String>, BusDown>> {
        let game_id = game_id.to_owned();
        Box::pin(async move {
            let mut conn = self.inner.conn().ok_or(BusDown)?;
            self.inner.sent(1);
            redis::cmd("GET")
                .arg(self.inner.names.state(&game_id))
                .query_async(&mut conn)
                .await
                .map_err(|e| {
                    self.inner.failed("GET", &e);
                    BusDown
                })
        })
    }

    fn renew(&self, game_ids: Vec<String>) -> BoxFuture<'_, (Instant, Vec<Renewal>)> {
        Box::pin(async move {
            let inner = &self.inner;
            let sent_at = Instant::now();
            let failed = vec![Renewal::Failed; game_ids.len()];
            let conn = inner.conn().filter(|_| !game_ids.is_empty());
            let Some(conn) = conn.filter(|_| !inner.stopped.load(Ordering::Relaxed)) else {
                return (sent_at, failed);
            };
            // One script call per game: each touches one game's slot only.
            let cmds = game_ids
                .iter()
                .map(|id| {
                    let mut cmd = redis::cmd("EVALSHA");
                    cmd.arg(inner.scripts.renew.get_hash())
                        .arg(1)
                        .arg(inner.names.owner(id))
                        .arg(inner.node_id())
                        .arg(inner.lease_ms());
                    cmd
                })
                .collect();
            inner.sent(game_ids.len());
            match conn.all::<i64>(cmds).await {
                Ok(answers) => {
                    let answers = answers
                        .into_iter()
                        .map(|a| match a {
                            1 => Renewal::Held,
                            2 => Renewal::Unowned,
                            _ => Renewal::Taken,
                        })
                        .collect();
                    (sent_at, answers)
                }
                Err(e) => {
                    inner.failed("renew", &e);
                    (sent_at, failed)
                }
            }
        })
    }

    fn alive(&self, nodes: Vec<String>) -> BoxFuture<'_, Vec<bool>> {
        Box::pin(async move {
            let all_alive = vec![true; nodes.len()];
            let Some(conn) = self.inner.conn().filter(|_| !nodes.is_empty()) else {
                return all_alive;
            };
            let cmds = nodes
                .iter()
                .map(|node| {
                    let mut cmd = redis::cmd("EXISTS");
                    cmd.arg(self.inner.names.alive(node));
                    cmd
                })
                .collect();
            self.inner.sent(nodes.len());
            match conn.all::<bool>(cmds).await {
                Ok(alive) => alive,
                Err(e) => {
                    self.inner.failed("heartbeat check", &e);
                    all_alive
                }
            }
        })
    }

    fn release(&self, game_ids: Vec<String>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let inner = &self.inner;
            inner.stopped.store(true, Ordering::Relaxed);
            // Whatever was queued before goes out first (a final save, an end).
            inner.writes.flushed(REDIS_TIMEOUT).await;
            let Some(conn) = inner.conn() else {
                log::warn!(
                    "node {}: could not release games on shutdown",
                    inner.node_id()
                );
                return;
            };
            let mut cmds: Vec<Cmd> = game_ids
                .iter()
                .map(|id| {
                    let mut cmd = redis::cmd("EVALSHA");
                    cmd.arg(inner.scripts.release.get_hash())
                        .arg(1)
                        .arg(inner.names.owner(id))
                        .arg(inner.node_id());
                    cmd
                })
                .collect();
            let mut beat = redis::cmd("DEL");
            beat.arg(inner.names.alive(inner.node_id()));
            cmds.push(beat);
            inner.sent(game_ids.len() + 1);
            let released = tokio::time::timeout(REDIS_TIMEOUT, conn.all::<i64>(cmds)).await;
            match released {
                Ok(Ok(_)) => log::info!(
                    "node {}: released {} game(s) to the cluster",
                    inner.node_id(),
                    game_ids.len()
                ),
                _ => log::warn!(
                    "node {}: could not release games on shutdown",
                    inner.node_id()
                ),
            }
            inner.reconnect.notify_one();
        })
    }

    fn count_created(&self) {
        self.inner.writes.count_created();
    }

    fn games_created(&self) -> BoxFuture<'_, Option<u64>> {
        Box::pin(async move {
            let mut conn = self.inner.conn()?;
            self.inner.sent(1);
            let n: Option<u64> = tokio::time::timeout(
                REDIS_TIMEOUT,
                redis::cmd("GET").arg(CREATED_KEY).query_async(&mut conn),
            )
            .await
            .ok()?
            .ok()?;
            Some(n.unwrap_or(0))
        })
    }

    fn describe(&self) -> String {
        match &self.inner.config.target {
            Target::Single { addr, .. } => addr.clone(),
            Target::Sentinel(_) => lock(&self.inner.current)
                .clone()
                .unwrap_or_else(|| self.inner.target()),
            Target::Cluster(nodes) => nodes.describe(),
        }
    }

    fn writes_done(&self) -> u64 {
        self.inner.writes_done.load(Ordering::Relaxed)
    }

    fn interest(&self, game_id: &str, wanted: bool) {
        if !self.inner.per_game() {
            return;
        }
        let mut games = lock(&self.inner.wanted);
        let changed = if wanted {
            games.insert(game_id.to_owned())
        } else {
            games.remove(game_id)
        };
        drop(games);
        if changed {
            self.inner.interest_changed.notify_one();
        }
    }

    fn hears_every_game(&self) -> bool {
        !self.inner.per_game()
    }

    fn topology(&self) -> Option<Topology> {
        Some(match &self.inner.config.target {
            Target::Single { .. } => Topology {
                kind: "single-redis",
                master: None,
            },
            Target::Sentinel(_) => Topology {
                kind: "sentinel",
                master: lock(&self.inner.current).clone(),
            },
            Target::Cluster(_) => Topology {
                kind: "cluster",
                master: None,
            },
        })
    }

    fn pubsub_received(&self) -> PubSubCounts {
        PubSubCounts {
            game: self.inner.heard_game.load(Ordering::Relaxed),
            inbox: self.inner.heard_inbox.load(Ordering::Relaxed),
        }
    }

    fn commands_sent(&self) -> u64 {
        self.inner.commands.load(Ordering::Relaxed)
    }
}
