//! Everything Redis: the store, the bus, ownership, and connection health.
//!
//! # Keys and channels
//!
//! | key / channel | what |
//! | --- | --- |
//! | `game_state:<id>` | the game's JSON (`Game::stored_json`), TTL 24 h renewed on every save |
//! | `game:<id>` (channel) | every change: `{"type":"game_update","origin":NODE,"game":{…}}`, and `{"type":"terminated","origin":NODE,"game_id":ID}` when it ends |
//! | `game_owner:<id>` | the node that owns the game, with a lease (`-owner-lease-ms`) it renews |
//! | `node:<node_id>` (channel) | that node's inbox: players' commands and joins forwarded to it, and replies |
//! | `robot_race:secret` | the shared secret that signs player tokens (unless `-secret` is set) |
//! | `robot_race:games_created` | counter behind `/_stats` |
//!
//! # Consistency
//!
//! One owner per game. Only the owner applies commands, runs the countdown and writes; every
//! write is a Lua script that first checks `game_owner:<id>` is still this node (a fence), then
//! saves and publishes in one step. Other servers forward their players' commands to the owner's
//! inbox and relay what it publishes. When nobody listens on the owner's inbox any more (it died
//! or shut down) the next server that needs the game claims it, loads its state and carries on.
//!
//! # Tasks
//!
//! [`Cluster::start`] spawns three: the *supervisor* (connects, subscribes to `game:*` and the
//! inbox, hands what arrives to the hub, reconnects with backoff), the *writer* (coalesced
//! write-behind of saves: one pipelined round trip per batch, never awaited by the hub), and the
//! *publisher* (forwards and replies, in order).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisResult, Script};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, Notify};

use crate::game::Game;
use crate::hub::{Command, Resolution};
use crate::protocol::ClientMsg;
use crate::token::Tokens;

/// How long a saved game lives in Redis without being saved again.
const STATE_TTL_SECS: u64 = 24 * 60 * 60;
/// Time allowed for connecting, and for any one Redis reply.
const REDIS_TIMEOUT: Duration = Duration::from_secs(3);
/// Queued forwards and replies before new ones are dropped (and their commands re-routed).
const OUT_QUEUE: usize = 16_384;
const SECRET_KEY: &str = "robot_race:secret";
const CREATED_KEY: &str = "robot_race:games_created";

pub fn state_key(game_id: &str) -> String {
    format!("game_state:{game_id}")
}
pub fn owner_key(game_id: &str) -> String {
    format!("game_owner:{game_id}")
}
pub fn game_channel(game_id: &str) -> String {
    format!("game:{game_id}")
}
pub fn inbox_channel(node_id: &str) -> String {
    format!("node:{node_id}")
}

/// Save and publish, only while this node owns the game (or nobody does).
const SAVE_LUA: &str = r"
local o = redis.call('GET', KEYS[1])
if o and o ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[6])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1";

/// End a game: delete it and tell every server, only while this node owns it.
const TERMINATE_LUA: &str = r"
local o = redis.call('GET', KEYS[1])
if o and o ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1";

/// Keep a lease alive; 0 when another node owns the game. A missing lease is not re-taken
/// here (the owner's next save takes it, and after a Redis restart every owner saves at
/// once): renewing must never undo a release.
const RENEW_LUA: &str = r"
local o = redis.call('GET', KEYS[1])
if o == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not o then return 1 end
return 0";

/// Who owns the game? Claims it when nobody does or its owner's inbox has no listener.
/// A missing state is restored from ARGV[3] when one is given (a replica's copy, after Redis
/// lost the game and its owner did not save it again in time).
/// Returns {0, ''} (no such game), {1, state} (claimed, or already ours), {2, owner}.
const CLAIM_LUA: &str = r"
local o = redis.call('GET', KEYS[1])
if o and o ~= ARGV[1] then
  local subs = redis.call('PUBSUB', 'NUMSUB', 'node:' .. o)
  if tonumber(subs[2]) > 0 then return {2, o} end
end
local state = redis.call('GET', KEYS[2])
if not state then
  if ARGV[3] == '' then return {0, ''} end
  state = ARGV[3]
  redis.call('SET', KEYS[2], state, 'EX', ARGV[4])
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, state}";

/// Give a game up (shutdown), only if it is still ours.
const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0";

/// A message between hubs, on `node:<id>` channels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InboxMsg {
    /// A player's command, for the owner to apply.
    Command {
        game_id: String,
        robot_id: String,
        command: ClientMsg,
        /// The node the player is connected to (where errors go back).
        from: String,
        session: u64,
    },
    /// The owner refused a command: show this to the player's session.
    CommandError {
        session: u64,
        error: String,
        message: String,
    },
    /// Add a robot (the requesting node chose its id, so a retry cannot add two).
    Join {
        game_id: String,
        robot_id: String,
        name: String,
        from: String,
        req: u64,
    },
    JoinReply {
        req: u64,
        error: Option<String>,
    },
}

/// What another server published on `game:<id>`.
#[derive(Debug)]
pub enum Relayed {
    Update { origin: String, game: Box<Game> },
    Terminated,
}

/// Decodes a message published on `game:<id>`; `None` for our own messages (the hub already
/// sent those to its players) and for anything unreadable.
pub fn decode_published(game_id: &str, payload: &[u8], me: &str) -> Option<Relayed> {
    match serde_json::from_slice::<Published>(payload) {
        Ok(Published::GameUpdate { origin, .. } | Published::Terminated { origin, .. })
            if origin == me =>
        {
            None
        }
        Ok(Published::GameUpdate { origin, game }) if game.id == game_id => {
            Some(Relayed::Update { origin, game })
        }
        Ok(Published::Terminated { .. }) => Some(Relayed::Terminated),
        Ok(Published::GameUpdate { .. }) => {
            log::warn!("ignoring an update for another game on game:{game_id}");
            None
        }
        Err(e) => {
            log::warn!("ignoring a malformed message on game:{game_id}: {e}");
            None
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Published {
    GameUpdate { origin: String, game: Box<Game> },
    Terminated { origin: String },
}

/// Redis connection health, for `/health` and the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisStatus {
    Connected,
    Down,
}

/// A pending write for one game; a newer one replaces an older one (only the latest state
/// matters, and clients skip versions they never saw).
enum Write {
    Save { stored: String, publish: String },
    Terminate { publish: String },
}

#[derive(Default)]
struct Writes {
    games: HashMap<String, Write>,
    created: u64,
    /// Bumped with every queued write; the writer reports the generation it has flushed.
    generation: u64,
}

struct Outgoing {
    channel: String,
    payload: String,
    /// For a forwarded command: what to re-route if nobody is listening.
    forward: Option<(String, InboxMsg)>,
}

struct Scripts {
    save: Script,
    terminate: Script,
    renew: Script,
    claim: Script,
    release: Script,
}

struct Inner {
    /// Who we are: the owner value we write, our inbox's name, the `origin` we publish.
    node_id: String,
    /// Makes new connections (the supervisor reconnects with it).
    client: Client,
    /// `host:port` for logs (never the password).
    addr: String,
    /// How long ownership lasts unrenewed: the time a dead owner holds a game up.
    lease: Duration,
    /// Adopts the cluster's shared secret on connect, so every server accepts every token.
    tokens: Arc<Tokens>,
    /// An operator-set secret wins over the one shared in Redis.
    explicit_secret: bool,
    /// The command connection while connected (`None` while Redis is down); multiplexed, so
    /// the writer, publisher and handlers share it.
    conn: Mutex<Option<MultiplexedConnection>>,
    /// For `/health` and for callers that should not wait while Redis is down.
    connected: AtomicBool,
    /// A failed call asks the supervisor to drop the connection and start over.
    reconnect: Notify,
    /// Write-behind queue: the newest pending write per game.
    writes: Mutex<Writes>,
    /// Wakes the writer.
    write_ready: Notify,
    /// The write generation the writer has flushed (see [`Cluster::wait_flushed`]).
    flushed: watch::Sender<u64>,
    /// Forwards and replies, in order, to the publisher task.
    out_tx: mpsc::Sender<Outgoing>,
    /// The publisher's end, taken by [`Cluster::start`].
    out_rx: Mutex<Option<mpsc::Receiver<Outgoing>>>,
    /// Where relayed updates, inbox messages and write results go.
    hub: OnceLock<mpsc::Sender<Command>>,
    /// The Lua scripts, loaded on every connect so pipelines can use EVALSHA.
    scripts: Scripts,
    /// Set on shutdown: no more reconnects.
    stopped: AtomicBool,
    /// Writes done, for `/metrics`.
    saves_done: AtomicU64,
}

/// The cluster link: cheap to clone; every method that the hub calls returns at once.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

/// Turns `-redis`/`REDIS_URL` (+ `-redis-password`) into a client; the error is for humans.
pub fn redis_client(
    raw: &str,
    password: Option<&str>,
    tls_insecure: bool,
) -> Result<(Client, String), String> {
    use redis::IntoConnectionInfo;
    let mut url = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("redis://{raw}")
    };
    if tls_insecure && url.starts_with("rediss://") && !url.contains('#') {
        if !url["rediss://".len()..].contains('/') {
            url.push('/');
        }
        url.push_str("#insecure");
    }
    let mut info = url
        .as_str()
        .into_connection_info()
        .map_err(|e| e.to_string())?;
    if let Some(password) = password.filter(|p| !p.is_empty()) {
        if info.redis_settings().password().is_none() {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
    }
    let addr = info.addr().to_string();
    let client = Client::open(info).map_err(|e| e.to_string())?;
    Ok((client, addr))
}

impl Cluster {
    pub fn new(
        node_id: String,
        client: Client,
        addr: String,
        lease: Duration,
        tokens: Arc<Tokens>,
        explicit_secret: bool,
    ) -> Cluster {
        let (out_tx, out_rx) = mpsc::channel(OUT_QUEUE);
        Cluster {
            inner: Arc::new(Inner {
                node_id,
                client,
                addr,
                lease,
                tokens,
                explicit_secret,
                conn: Mutex::new(None),
                connected: AtomicBool::new(false),
                reconnect: Notify::new(),
                writes: Mutex::new(Writes::default()),
                write_ready: Notify::new(),
                flushed: watch::channel(0).0,
                out_tx,
                out_rx: Mutex::new(Some(out_rx)),
                hub: OnceLock::new(),
                scripts: Scripts {
                    save: Script::new(SAVE_LUA),
                    terminate: Script::new(TERMINATE_LUA),
                    renew: Script::new(RENEW_LUA),
                    claim: Script::new(CLAIM_LUA),
                    release: Script::new(RELEASE_LUA),
                },
                stopped: AtomicBool::new(false),
                saves_done: AtomicU64::new(0),
            }),
        }
    }

    /// Spawns the supervisor, writer and publisher; they deliver to `hub`.
    pub fn start(&self, hub: mpsc::Sender<Command>) {
        let _ = self.inner.hub.set(hub);
        tokio::spawn(self.clone().supervise());
        tokio::spawn(self.clone().write_loop());
        let rx = self.lock_out_rx();
        if let Some(rx) = rx {
            tokio::spawn(self.clone().publish_loop(rx));
        }
    }

    fn lock_out_rx(&self) -> Option<mpsc::Receiver<Outgoing>> {
        self.inner
            .out_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    pub fn status(&self) -> RedisStatus {
        if self.inner.connected.load(Ordering::Relaxed) {
            RedisStatus::Connected
        } else {
            RedisStatus::Down
        }
    }

    pub fn saves_done(&self) -> u64 {
        self.inner.saves_done.load(Ordering::Relaxed)
    }

    fn conn(&self) -> Option<MultiplexedConnection> {
        self.inner
            .conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn to_hub(&self, cmd: Command) {
        if let Some(hub) = self.inner.hub.get() {
            // The hub never waits on us, so waiting on it here cannot deadlock; spawn to keep
            // callers (some synchronous) from blocking.
            let hub = hub.clone();
            tokio::spawn(async move {
                let _ = hub.send(cmd).await;
            });
        }
    }

    fn queue(&self, game_id: &str, write: Write) -> u64 {
        let mut writes = self.inner.writes.lock().unwrap_or_else(|e| e.into_inner());
        // After shutdown has released our games, a write would take ownership back.
        if self.inner.stopped.load(Ordering::Relaxed) {
            return writes.generation;
        }
        writes.games.insert(game_id.to_owned(), write);
        writes.generation += 1;
        let generation = writes.generation;
        drop(writes);
        self.inner.write_ready.notify_one();
        generation
    }

    /// Queues a save + publish of the game (write-behind; returns at once).
    pub fn save(&self, game_id: &str, game: &Game) {
        let stored = game.stored_json();
        let publish = format!(
            r#"{{"type":"game_update","origin":{},"game":{stored}}}"#,
            json_string(&self.inner.node_id)
        );
        self.queue(game_id, Write::Save { stored, publish });
    }

    /// Queues the end of a game: delete its keys, tell every server.
    pub fn terminate(&self, game_id: &str) {
        let publish = serde_json::json!({
            "type": "terminated",
            "origin": self.inner.node_id,
            "game_id": game_id,
        })
        .to_string();
        self.queue(game_id, Write::Terminate { publish });
    }

    pub fn count_game_created(&self) {
        let mut writes = self.inner.writes.lock().unwrap_or_else(|e| e.into_inner());
        writes.created += 1;
        drop(writes);
        self.inner.write_ready.notify_one();
    }

    /// Waits (bounded) until everything queued so far is in Redis, so that another server
    /// asked next sees it. Returns at once while Redis is down.
    pub async fn wait_flushed(&self) {
        if self.status() != RedisStatus::Connected {
            return;
        }
        let target = self
            .inner
            .writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .generation;
        let mut flushed = self.inner.flushed.subscribe();
        let _ = tokio::time::timeout(REDIS_TIMEOUT, flushed.wait_for(|g| *g >= target)).await;
    }

    /// Sends a player's command to the game's owner. If nobody listens there, the hub gets it
    /// back (`OwnerUnreachable`) to find the owner again.
    pub fn forward(&self, owner: &str, game_id: &str, msg: InboxMsg) {
        self.send_out(
            inbox_channel(owner),
            &msg,
            Some((game_id.to_owned(), msg.clone())),
        );
    }

    /// Sends a reply to another node's inbox (best effort).
    pub fn reply(&self, node: &str, msg: InboxMsg) {
        self.send_out(inbox_channel(node), &msg, None);
    }

    fn send_out(&self, channel: String, msg: &InboxMsg, forward: Option<(String, InboxMsg)>) {
        let payload = serde_json::to_string(msg).unwrap_or_default();
        let out = Outgoing {
            channel,
            payload,
            forward,
        };
        if let Err(mpsc::error::TrySendError::Full(out) | mpsc::error::TrySendError::Closed(out)) =
            self.inner.out_tx.try_send(out)
        {
            if let Some((game_id, msg)) = out.forward {
                self.to_hub(Command::OwnerUnreachable { game_id, msg });
            }
        }
    }

    /// The stored game, if any (`Err` when Redis cannot be asked).
    pub async fn load_state(&self, game_id: &str) -> Result<Option<Game>, ()> {
        let mut conn = self.conn().ok_or(())?;
        let json: Option<String> = redis::cmd("GET")
            .arg(state_key(game_id))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed("GET", &e))?;
        Ok(json.and_then(|j| parse_stored(game_id, &j)))
    }

    /// Finds the game's owner, taking the game over when nobody (alive) owns it. With a
    /// `fallback`, a game Redis lost is restored from it.
    pub async fn claim(&self, game_id: &str, fallback: Option<&Game>) -> Resolution {
        let Some(mut conn) = self.conn() else {
            return Resolution::Failed;
        };
        let result: RedisResult<(u8, String)> = self
            .inner
            .scripts
            .claim
            .key(owner_key(game_id))
            .key(state_key(game_id))
            .arg(&self.inner.node_id)
            .arg(self.lease_ms())
            .arg(fallback.map(Game::stored_json).unwrap_or_default())
            .arg(STATE_TTL_SECS)
            .invoke_async(&mut conn)
            .await;
        match result {
            Ok((1, json)) => match parse_stored(game_id, &json) {
                Some(game) => Resolution::Claimed(Box::new(game)),
                None => Resolution::Gone,
            },
            Ok((2, owner)) => Resolution::OwnedBy(owner),
            Ok(_) => Resolution::Gone,
            Err(e) => {
                self.failed("claim", &e);
                Resolution::Failed
            }
        }
    }

    /// Renews this node's leases; tells the hub about games another node owns now.
    pub fn renew(&self, game_ids: Vec<String>) {
        if game_ids.is_empty() || self.inner.stopped.load(Ordering::Relaxed) {
            return;
        }
        let Some(mut conn) = self.conn() else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let mut pipe = redis::pipe();
            for id in &game_ids {
                pipe.cmd("EVALSHA")
                    .arg(this.inner.scripts.renew.get_hash())
                    .arg(1)
                    .arg(owner_key(id))
                    .arg(&this.inner.node_id)
                    .arg(this.lease_ms());
            }
            match pipe.query_async::<Vec<i64>>(&mut conn).await {
                Ok(results) => {
                    for (id, ok) in game_ids.into_iter().zip(results) {
                        if ok == 0 {
                            this.to_hub(Command::Fenced { game_id: id });
                        }
                    }
                }
                Err(e) => {
                    this.failed("renew", &e);
                }
            }
        });
    }

    /// Shutdown: flush pending saves, then give up ownership so others take over at once.
    pub async fn release(&self, game_ids: Vec<String>) {
        // From here on nothing new is queued; what was queued before is flushed first.
        self.inner.stopped.store(true, Ordering::Relaxed);
        self.inner.write_ready.notify_one();
        self.wait_flushed().await;
        // (An empty pipeline is an error in redis-rs, not a no-op.)
        let Some(mut conn) = self.conn().filter(|_| !game_ids.is_empty()) else {
            return;
        };
        let mut pipe = redis::pipe();
        for id in &game_ids {
            pipe.cmd("EVALSHA")
                .arg(self.inner.scripts.release.get_hash())
                .arg(1)
                .arg(owner_key(id))
                .arg(&self.inner.node_id)
                .ignore();
        }
        let released = tokio::time::timeout(REDIS_TIMEOUT, pipe.query_async::<()>(&mut conn)).await;
        match released {
            Ok(Ok(())) => log::info!(
                "node {}: released {} game(s) to the cluster",
                self.inner.node_id,
                game_ids.len()
            ),
            _ => log::warn!(
                "node {}: could not release games on shutdown",
                self.inner.node_id
            ),
        }
    }

    /// Games created across the cluster (`None` when Redis cannot be asked).
    pub async fn games_created(&self) -> Option<u64> {
        let mut conn = self.conn()?;
        let n: Option<u64> = tokio::time::timeout(
            REDIS_TIMEOUT,
            redis::cmd("GET").arg(CREATED_KEY).query_async(&mut conn),
        )
        .await
        .ok()?
        .ok()?;
        Some(n.unwrap_or(0))
    }

    fn lease_ms(&self) -> u64 {
        self.inner.lease.as_millis() as u64
    }

    /// Logs a failed Redis call; a broken connection makes the supervisor reconnect.
    fn failed(&self, what: &str, e: &redis::RedisError) {
        log::warn!("Redis {what} failed: {e}");
        if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
            self.inner.reconnect.notify_one();
        }
    }

    async fn connect(&self) -> RedisResult<(MultiplexedConnection, redis::aio::PubSub)> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT));
        let mut conn = self
            .inner
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        let scripts = &self.inner.scripts;
        for script in [
            &scripts.save,
            &scripts.terminate,
            &scripts.renew,
            &scripts.claim,
            &scripts.release,
        ] {
            script.load_async(&mut conn).await?;
        }
        if !self.inner.explicit_secret {
            let fresh = nanoid::nanoid!(43);
            let _: () = redis::cmd("SET")
                .arg(SECRET_KEY)
                .arg(&fresh)
                .arg("NX")
                .query_async(&mut conn)
                .await?;
            let shared: Option<String> = redis::cmd("GET")
                .arg(SECRET_KEY)
                .query_async(&mut conn)
                .await?;
            if let Some(shared) = shared {
                self.inner.tokens.adopt(shared.as_bytes());
            }
        }
        let pubsub = tokio::time::timeout(REDIS_TIMEOUT, self.inner.client.get_async_pubsub())
            .await
            .map_err(|_| {
                redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "timed out opening the pub/sub connection",
                ))
            })??;
        Ok((conn, pubsub))
    }

    /// Connects, subscribes and relays until the connection drops; then again, with backoff.
    async fn supervise(self) {
        let mut backoff = Duration::from_millis(250);
        let mut failures = 0u32;
        loop {
            if self.inner.stopped.load(Ordering::Relaxed) {
                return;
            }
            match self.connect().await {
                Ok((conn, mut pubsub)) => {
                    let subscribed = async {
                        pubsub.psubscribe("game:*").await?;
                        pubsub.subscribe(inbox_channel(&self.inner.node_id)).await
                    };
                    if let Err(e) = subscribed.await {
                        log::warn!(
                            "WARNING: Failed to connect to Redis at {}: {e}",
                            self.inner.addr
                        );
                    } else {
                        *self.inner.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
                        self.inner.connected.store(true, Ordering::Relaxed);
                        log::info!(
                            "Connected to Redis at {} - multi-server mode enabled",
                            self.inner.addr
                        );
                        log::info!("Subscribed to Redis channels: [game:*]");
                        backoff = Duration::from_millis(250);
                        failures = 0;
                        self.inner.write_ready.notify_one();
                        self.to_hub(Command::RedisUp);
                        self.relay(pubsub).await;
                        *self.inner.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
                        self.inner.connected.store(false, Ordering::Relaxed);
                        if self.inner.stopped.load(Ordering::Relaxed) {
                            return;
                        }
                        log::warn!(
                            "WARNING: Lost the connection to Redis at {}; running on this server's games alone and reconnecting",
                            self.inner.addr
                        );
                    }
                }
                Err(e) => {
                    // Say it on the first failure, then now and then, not every retry.
                    if failures.is_multiple_of(20) {
                        log::warn!(
                            "WARNING: Failed to connect to Redis at {}: {e}",
                            self.inner.addr
                        );
                    }
                    failures += 1;
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Hands every message of the subscription to the hub until the connection ends.
    async fn relay(&self, pubsub: redis::aio::PubSub) {
        let Some(hub) = self.inner.hub.get().cloned() else {
            return;
        };
        let inbox = inbox_channel(&self.inner.node_id);
        let mut stream = pubsub.into_on_message();
        loop {
            let msg = tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => msg,
                    None => return,
                },
                () = self.inner.reconnect.notified() => return,
            };
            let payload = msg.get_payload_bytes();
            let cmd = if msg.get_channel_name() == inbox {
                match serde_json::from_slice::<InboxMsg>(payload) {
                    Ok(m) => Command::Inbox(m),
                    Err(e) => {
                        log::warn!("ignoring a malformed inbox message: {e}");
                        continue;
                    }
                }
            } else {
                // Decoded by the hub, and only for games it holds: most servers hold few of
                // a cluster's games, and every update of every game arrives here.
                let Some(game_id) = msg.get_channel_name().strip_prefix("game:") else {
                    continue;
                };
                Command::Relay {
                    game_id: game_id.to_owned(),
                    payload: payload.to_vec(),
                }
            };
            if hub.send(cmd).await.is_err() {
                return;
            }
        }
    }

    /// Write-behind: takes everything queued, writes it in one pipelined round trip, repeats.
    async fn write_loop(self) {
        loop {
            let (batch, created, generation) = {
                let mut writes = self.inner.writes.lock().unwrap_or_else(|e| e.into_inner());
                let batch = std::mem::take(&mut writes.games);
                let created = std::mem::take(&mut writes.created);
                (batch, created, writes.generation)
            };
            if batch.is_empty() && created == 0 {
                self.inner.flushed.send_replace(generation);
                self.inner.write_ready.notified().await;
                continue;
            }
            let Some(mut conn) = self.conn() else {
                // Redis is down: keep the writes (newer ones win) until it is back.
                self.requeue(batch, created);
                self.inner.write_ready.notified().await;
                continue;
            };
            let ids: Vec<&String> = batch.keys().collect();
            let mut pipe = redis::pipe();
            for (id, write) in &batch {
                match write {
                    Write::Save { stored, publish } => pipe
                        .cmd("EVALSHA")
                        .arg(self.inner.scripts.save.get_hash())
                        .arg(2)
                        .arg(owner_key(id))
                        .arg(state_key(id))
                        .arg(&self.inner.node_id)
                        .arg(self.lease_ms())
                        .arg(stored)
                        .arg(game_channel(id))
                        .arg(publish)
                        .arg(STATE_TTL_SECS),
                    Write::Terminate { publish } => pipe
                        .cmd("EVALSHA")
                        .arg(self.inner.scripts.terminate.get_hash())
                        .arg(2)
                        .arg(owner_key(id))
                        .arg(state_key(id))
                        .arg(&self.inner.node_id)
                        .arg(game_channel(id))
                        .arg(publish),
                };
            }
            if created > 0 {
                pipe.cmd("INCRBY").arg(CREATED_KEY).arg(created).ignore();
            }
            match pipe.query_async::<Vec<i64>>(&mut conn).await {
                Ok(results) => {
                    for (id, ok) in ids.iter().zip(&results) {
                        if *ok == 0 {
                            self.to_hub(Command::Fenced {
                                game_id: (*id).clone(),
                            });
                        }
                    }
                    self.inner
                        .saves_done
                        .fetch_add(results.len() as u64, Ordering::Relaxed);
                    self.inner.flushed.send_replace(generation);
                }
                Err(e) => {
                    self.failed("save", &e);
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) {
                        self.inner.reconnect.notify_one();
                    }
                    self.requeue(batch, created);
                    // Do not spin while the connection is being replaced.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Puts back writes that failed, unless a newer write for the same game arrived meanwhile.
    fn requeue(&self, batch: HashMap<String, Write>, created: u64) {
        let mut writes = self.inner.writes.lock().unwrap_or_else(|e| e.into_inner());
        for (id, write) in batch {
            writes.games.entry(id).or_insert(write);
        }
        writes.created += created;
    }

    /// Sends forwards and replies in order; a forward nobody received goes back to the hub.
    async fn publish_loop(self, mut rx: mpsc::Receiver<Outgoing>) {
        while let Some(out) = rx.recv().await {
            let delivered = match self.conn() {
                Some(mut conn) => redis::cmd("PUBLISH")
                    .arg(&out.channel)
                    .arg(&out.payload)
                    .query_async::<i64>(&mut conn)
                    .await
                    .map_err(|e| self.failed("publish", &e))
                    .unwrap_or(0),
                None => 0,
            };
            if delivered == 0 {
                if let Some((game_id, msg)) = out.forward {
                    self.to_hub(Command::OwnerUnreachable { game_id, msg });
                }
            }
        }
    }
}

fn parse_stored(game_id: &str, json: &str) -> Option<Game> {
    match serde_json::from_str::<Game>(json) {
        Ok(game) => Some(game),
        Err(e) => {
            log::warn!("game {game_id}: stored state is unreadable, ignoring it: {e}");
            None
        }
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_addresses_parse_with_and_without_scheme() {
        let (_, addr) = redis_client("localhost:6379", None, false).unwrap();
        assert_eq!(addr, "localhost:6379");
        let (client, addr) = redis_client("redis://u:p@10.0.0.1:6380/2", None, false).unwrap();
        assert_eq!(addr, "10.0.0.1:6380");
        assert_eq!(
            client.get_connection_info().redis_settings().password(),
            Some("p")
        );
        let (client, _) = redis_client("127.0.0.1:6379", Some("pw"), false).unwrap();
        assert_eq!(
            client.get_connection_info().redis_settings().password(),
            Some("pw")
        );
        let (_, addr) = redis_client("rediss://h.example:6380/#insecure", None, false).unwrap();
        assert_eq!(addr, "h.example:6380");
        assert!(redis_client("http://nope", None, false).is_err());
        assert!(redis_client("redis://host:notaport", None, false).is_err());
        // Heroku's REDIS_URL with the switch on: certificate checks off.
        let insecure = |url: &str, on: bool| {
            let (client, _) = redis_client(url, None, on).unwrap();
            matches!(
                client.get_connection_info().addr(),
                redis::ConnectionAddr::TcpTls { insecure: true, .. }
            )
        };
        assert!(insecure("rediss://:pw@ec2.example:21290", true));
        assert!(insecure("rediss://:pw@ec2.example:21290/0", true));
        assert!(!insecure("rediss://:pw@ec2.example:21290", false));
    }

    #[test]
    fn published_messages_decode_for_others_only() {
        use crate::game::{GameConfig, PlayerName};
        let game = Game::new(
            "g1".into(),
            GameConfig::default(),
            "r1".into(),
            PlayerName::parse("ann").unwrap(),
        );
        let update = |origin: &str| {
            format!(
                r#"{{"type":"game_update","origin":"{origin}","game":{}}}"#,
                game.stored_json()
            )
        };
        assert!(matches!(
            decode_published("g1", update("n2").as_bytes(), "n1"),
            Some(Relayed::Update { ref origin, ref game }) if origin == "n2" && game.id == "g1"
        ));
        // Our own update, an update on the wrong channel, junk: ignored.
        assert!(decode_published("g1", update("n1").as_bytes(), "n1").is_none());
        assert!(decode_published("g2", update("n2").as_bytes(), "n1").is_none());
        assert!(decode_published("g1", b"{nope", "n1").is_none());
        let ended = br#"{"type":"terminated","origin":"n2","game_id":"g1"}"#;
        assert!(matches!(
            decode_published("g1", ended, "n1"),
            Some(Relayed::Terminated)
        ));
    }

    #[test]
    fn inbox_messages_round_trip() {
        let msg = InboxMsg::Command {
            game_id: "g".into(),
            robot_id: "r".into(),
            command: ClientMsg::ScorePoint,
            from: "n1".into(),
            session: 7,
        };
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(serde_json::from_str::<InboxMsg>(&json).unwrap(), msg);
    }
}
