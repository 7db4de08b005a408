//! The connection: find Redis (with Sentinel: the master now), connect (PING, scripts, the
//! shared token secret, the heartbeat, the subscriptions), hand every subscribed message to
//! the events, beat the heartbeat, PING the pub/sub connections (one that stops answering is
//! taken for lost), follow this server's per-game interest, and when the connection breaks,
//! try again every [`RETRY`](super::RETRY). On a Redis Cluster the subscriptions are shard
//! channels ([`cluster::Shards`]), each followed to its slot's master when a failover or a
//! migration moves it.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::{FutureExt, StreamExt};
use redis::aio::{PubSubSink, PubSubStream};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, RedisResult};

use super::cluster::{self, ClusterNodes, Heard, Shards};
use super::conn::{bounded, io_error};
use super::heartbeat::{pubsub_ping, AbortOnDrop};
use super::scripts::{GAME_PATTERN, SECRET_KEY};
use super::{lock, sentinel, Conn, Inner, Subscribe, Target, REDIS_TIMEOUT, RETRY};
use crate::bus::BusEvents;

/// Channels named in one SUBSCRIBE or UNSUBSCRIBE.
const SUBSCRIBE_BATCH: usize = 256;

/// A live connection: commands, pub/sub, and what it is subscribed to.
pub(super) struct Connected {
    conn: Conn,
    pubsub: PubSub,
    /// `host:port` of the Redis connected to.
    addr: String,
    /// Per-game mode: the games whose channel is subscribed on this connection.
    games: HashSet<String>,
}

/// How subscribed messages arrive.
enum PubSub {
    /// One Redis: one pub/sub connection.
    One {
        sink: PubSubSink,
        stream: PubSubStream,
    },
    /// A cluster: shard channels on each slot's master, and the cluster connection that
    /// reads the slot map.
    Shards {
        shards: Box<Shards>,
        nodes: Arc<ClusterNodes>,
        conn: ClusterConnection,
        /// This server's inbox must be subscribed again (its slot moved).
        inbox_lost: bool,
    },
}

impl Inner {
    /// Which Redis to connect to now: the configured one, or the master the Sentinels name.
    async fn resolve(&self) -> RedisResult<(Client, String)> {
        match &self.config.target {
            Target::Single { client, addr } => Ok((Client::clone(client), addr.clone())),
            Target::Cluster(_) => Err(io_error("a cluster has no one address".to_owned())),
            Target::Sentinel(sentinels) => {
                let (host, port) = sentinels.ask_master().await?;
                Ok((
                    sentinels.master_client(&host, port)?,
                    format!("{host}:{port}"),
                ))
            }
        }
    }

    pub(super) async fn connect(&self) -> RedisResult<Connected> {
        let (mut conn, client, addr) = match &self.config.target {
            Target::Cluster(nodes) => {
                let conn = nodes.connect().await?;
                (Conn::Cluster(conn), None, nodes.describe())
            }
            _ => {
                let (client, addr) = self.resolve().await?;
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(REDIS_TIMEOUT))
                    .set_response_timeout(Some(REDIS_TIMEOUT));
                let mut conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                if let Target::Sentinel(_) = &self.config.target {
                    // A Sentinel may name a master that has just been demoted: wait for the
                    // new one.
                    self.sent(1);
                    if !sentinel::is_master(&mut conn).await? {
                        return Err(io_error(format!("{addr} is not the master (yet)")));
                    }
                }
                (Conn::One(conn), Some(client), addr)
            }
        };
        self.sent(1);
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        // On a cluster SCRIPT LOAD goes to every master.
        for script in self.scripts.all() {
            self.sent(1);
            script.load_async(&mut conn).await?;
        }
        if !self.config.explicit_secret {
            let fresh = nanoid::nanoid!(43);
            self.sent(2);
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
                self.config.tokens.adopt(shared.as_bytes());
            }
        }
        self.beat(&mut conn).await?;
        let inbox = self.names.inbox(self.node_id());
        let pubsub = match (client, &self.config.target, &conn) {
            (None, Target::Cluster(nodes), Conn::Cluster(cluster)) => {
                let mut cluster = cluster.clone();
                let mut shards = Box::new(Shards::new());
                self.sent(2);
                shards.refresh(&mut cluster).await?;
                shards.subscribe(nodes, &inbox).await?;
                PubSub::Shards {
                    shards,
                    nodes: nodes.clone(),
                    conn: cluster,
                    inbox_lost: false,
                }
            }
            (Some(client), _, _) => {
                let pubsub = tokio::time::timeout(REDIS_TIMEOUT, client.get_async_pubsub())
                    .await
                    .map_err(|_| {
                        io_error("timed out opening the pub/sub connection".to_owned())
                    })??;
                let (mut sink, stream) = pubsub.split();
                if !self.per_game() {
                    self.sent(1);
                    sink.psubscribe(GAME_PATTERN).await?;
                }
                self.sent(1);
                sink.subscribe(&inbox).await?;
                PubSub::One { sink, stream }
            }
            _ => return Err(io_error("no pub/sub for this target".to_owned())),
        };
        let mut connected = Connected {
            conn,
            pubsub,
            addr,
            games: HashSet::new(),
        };
        // Per game: every game wanted now, before the connection is reported up (whose
        // reloads then see everything published after these subscriptions).
        if !self.follow_interest(&mut connected, None).await? {
            return Err(io_error("could not subscribe to every game".to_owned()));
        }
        Ok(connected)
    }

    /// Per-game mode: subscribes to the games wanted and not subscribed, unsubscribes the
    /// others; tells `events` of each new subscription. On a cluster a game whose shard
    /// cannot be subscribed now (its slot is moving) is left for the next try: false.
    async fn follow_interest(
        &self,
        connected: &mut Connected,
        events: Option<&Arc<dyn BusEvents>>,
    ) -> RedisResult<bool> {
        if !self.per_game() {
            return Ok(true);
        }
        let wanted = lock(&self.wanted).clone();
        let games = &mut connected.games;
        let add: Vec<String> = wanted.difference(games).cloned().collect();
        let drop: Vec<String> = games.difference(&wanted).cloned().collect();
        let names = self.names;
        let mut complete = true;
        match &mut connected.pubsub {
            PubSub::One { sink, .. } => {
                for chunk in add.chunks(SUBSCRIBE_BATCH) {
                    let channels: Vec<String> =
                        chunk.iter().map(|g| names.game_channel(g)).collect();
                    self.sent(1);
                    bounded("SUBSCRIBE", sink.subscribe(channels)).await?;
                    for game_id in chunk {
                        games.insert(game_id.clone());
                        if let Some(events) = events {
                            events.subscribed(game_id);
                        }
                    }
                }
                for chunk in drop.chunks(SUBSCRIBE_BATCH) {
                    let channels: Vec<String> =
                        chunk.iter().map(|g| names.game_channel(g)).collect();
                    self.sent(1);
                    bounded("UNSUBSCRIBE", sink.unsubscribe(channels)).await?;
                    for game_id in chunk {
                        games.remove(game_id);
                    }
                }
            }
            PubSub::Shards {
                shards,
                nodes,
                conn,
                inbox_lost,
            } => {
                // A shard channel per SSUBSCRIBE: channels of different slots cannot share one.
                let mut refreshed = false;
                if *inbox_lost {
                    self.sent(2);
                    refreshed = shards.refresh(conn).await.is_ok();
                    let inbox = names.inbox(self.node_id());
                    match shards.subscribe(nodes, &inbox).await {
                        Ok(()) => {
                            *inbox_lost = false;
                            log::info!("Subscribed to {inbox} again (its slot moved)");
                        }
                        Err(e) => {
                            log::debug!("SSUBSCRIBE {inbox}: {e}");
                            complete = false;
                        }
                    }
                }
                for game_id in &add {
                    if !refreshed {
                        self.sent(1);
                        refreshed = shards.refresh(conn).await.is_ok();
                    }
                    self.sent(1);
                    match shards.subscribe(nodes, &names.game_channel(game_id)).await {
                        Ok(()) => {
                            games.insert(game_id.clone());
                            if let Some(events) = events {
                                events.subscribed(game_id);
                            }
                        }
                        Err(e) => {
                            log::debug!("game {game_id}: SSUBSCRIBE failed: {e}");
                            complete = false;
                        }
                    }
                }
                for game_id in &drop {
                    self.sent(1);
                    shards.unsubscribe(&names.game_channel(game_id)).await?;
                    games.remove(game_id);
                }
            }
        }
        Ok(complete)
    }

    /// Connects, subscribes, relays and beats until the connection drops; then again.
    pub(super) async fn supervise(self: Arc<Self>) {
        let mut failures = 0u32;
        loop {
            if self.stopped.load(Ordering::Relaxed) {
                return;
            }
            // Bounded as a whole: a cut connection answers nothing, ever.
            let connect = tokio::time::timeout(CONNECT_TIMEOUT, self.connect());
            let connected = connect.await.unwrap_or_else(|_| {
                Err(io_error(format!(
                    "no answer within {CONNECT_TIMEOUT:?} while connecting"
                )))
            });
            match connected {
                Ok(connected) => {
                    // A request to reconnect still pending was made for the connection left
                    // (a failed call and its task can both ask): this one answers it.
                    let _ = self.reconnect.notified().now_or_never();
                    if self.stopped.load(Ordering::Relaxed) {
                        return;
                    }
                    let addr = connected.addr.clone();
                    let previous = lock(&self.current).replace(addr.clone());
                    let watcher = match &self.config.target {
                        Target::Sentinel(sentinels) => {
                            match previous {
                                Some(old) if old != addr => {
                                    log::info!("Redis master is now {addr} (Sentinel failover)")
                                }
                                Some(_) => {}
                                None => log::info!(
                                    "Sentinel names {addr} as master {}",
                                    sentinels.master_name
                                ),
                            }
                            let watch = sentinel::watch_failover(
                                self.clone(),
                                sentinels.clone(),
                                addr.clone(),
                            );
                            Some(tokio::spawn(watch))
                        }
                        Target::Single { .. } | Target::Cluster(_) => None,
                    };
                    *lock(&self.conn) = Some(connected.conn.clone());
                    self.connected.store(true, Ordering::Relaxed);
                    log::info!("Connected to Redis at {addr} - multi-server mode enabled");
                    match (&connected.pubsub, self.config.subscribe) {
                        (PubSub::One { .. }, Subscribe::Pattern) => {
                            log::info!("Subscribed to Redis channels: [{GAME_PATTERN}]")
                        }
                        (PubSub::One { .. }, Subscribe::PerGame) => log::info!(
                            "Subscribed to Redis channels: [{}] and game:<id> for each game this server has players in ({} now)",
                            self.names.inbox(self.node_id()),
                            connected.games.len()
                        ),
                        (PubSub::Shards { .. }, _) => log::info!(
                            "Subscribed to Redis shard channels: [{}] and game:{{<id>}} for each game this server has players in ({} now)",
                            self.names.inbox(self.node_id()),
                            connected.games.len()
                        ),
                    }
                    failures = 0;
                    self.writes.wake();
                    self.outbox.wake();
                    if let Some(events) = self.events.get() {
                        events.connection(true);
                    }
                    self.serve(connected).await;
                    if let Some(watcher) = watcher {
                        watcher.abort();
                    }
                    *lock(&self.conn) = None;
                    self.connected.store(false, Ordering::Relaxed);
                    if self.stopped.load(Ordering::Relaxed) {
                        return;
                    }
                    log::warn!(
                        "WARNING: Lost the connection to Redis at {addr}; reconnecting, and games wait until it is back"
                    );
                    if let Some(events) = self.events.get() {
                        events.connection(false);
                    }
                }
                Err(e) => {
                    // Say it on the first failure, then now and then, not every retry.
                    if failures.is_multiple_of(50) {
                        let target = self.target();
                        log::warn!("WARNING: Failed to connect to Redis at {target}: {e}");
                    }
                    failures += 1;
                }
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Hands every subscribed message to the events and follows the per-game interest, until
    /// the connection ends (or a failed call asks for a new one). The heartbeat beats on a
    /// task of its own meanwhile: a slow Redis answering it never holds up a relayed update.
    async fn serve(self: &Arc<Self>, mut connected: Connected) {
        let Some(events) = self.events.get().cloned() else {
            return;
        };
        let inbox = self.names.inbox(self.node_id());
        let per_game = self.per_game();
        let heart = tokio::spawn(self.clone().heartbeat(connected.conn.clone()));
        let _stop_heart = AbortOnDrop(heart);
        // One Redis: the pub/sub connection is PINGed on a task of its own too.
        let _stop_probe = match &connected.pubsub {
            PubSub::One { sink, .. } => Some(AbortOnDrop(tokio::spawn(
                self.clone().probe_pubsub(sink.clone()),
            ))),
            PubSub::Shards { .. } => None,
        };
        // Cluster: subscriptions to try again (a slot moving), and the slot map check.
        let mut incomplete = false;
        let mut retry = tokio::time::interval(RETRY);
        let mut audit = tokio::time::interval(cluster::AUDIT);
        audit.reset();
        let cluster = matches!(connected.pubsub, PubSub::Shards { .. });
        loop {
            tokio::select! {
                heard = next_message(&mut connected.pubsub) => {
                    let Some(heard) = heard else { return };
                    match heard {
                        Heard::Message(channel, payload) => {
                            if channel == inbox {
                                self.heard_inbox.fetch_add(1, Ordering::Relaxed);
                                events.inbox(&payload);
                            } else if let Some(game_id) = self.names.game_of(&channel) {
                                self.heard_game.fetch_add(1, Ordering::Relaxed);
                                self.stats.heard(&payload);
                                events.relayed(game_id, &payload);
                            }
                        }
                        Heard::Lost(channels) => {
                            self.lost(&mut connected, channels);
                            incomplete = true;
                        }
                        Heard::Nothing => {}
                    }
                }
                _ = retry.tick(), if incomplete => {
                    match self.follow_interest(&mut connected, Some(&events)).await {
                        Ok(done) => incomplete = !done,
                        Err(e) => {
                            self.failed("subscribe", &e);
                            return;
                        }
                    }
                }
                _ = audit.tick(), if cluster => {
                    if let PubSub::Shards { shards, conn, .. } = &mut connected.pubsub {
                        self.sent(1 + shards.nodes());
                        let mut lost = shards.probe(pubsub_ping(self.config.lease).1).await;
                        match shards.audit(conn).await {
                            Ok(moved) => lost.extend(moved),
                            Err(e) => log::debug!("CLUSTER SLOTS: {e}"),
                        }
                        if !lost.is_empty() {
                            self.lost(&mut connected, lost);
                            incomplete = true;
                        }
                    }
                }
                () = self.interest_changed.notified(), if per_game => {
                    match self.follow_interest(&mut connected, Some(&events)).await {
                        Ok(done) => incomplete = !done,
                        Err(e) => {
                            self.failed("subscribe", &e);
                            return;
                        }
                    }
                }
                () = self.reconnect.notified() => return,
            }
        }
    }
}

/// The longest a whole connect (resolve, connect, load scripts, subscribe) may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Inner {
    /// Shard channels no longer subscribed (their slot moved, or their node went away): they
    /// are subscribed again on the next try, and their games read again then.
    fn lost(&self, connected: &mut Connected, channels: Vec<String>) {
        let inbox = self.names.inbox(self.node_id());
        for channel in channels {
            log::info!("Redis Cluster: {channel} is no longer subscribed (its slot moved); subscribing again");
            if channel == inbox {
                if let PubSub::Shards { inbox_lost, .. } = &mut connected.pubsub {
                    *inbox_lost = true;
                }
            } else if let Some(game_id) = self.names.game_of(&channel) {
                connected.games.remove(game_id);
            }
        }
    }
}

/// The next subscribed message, or news of lost subscriptions; `None` when the connection ended.
async fn next_message(pubsub: &mut PubSub) -> Option<Heard> {
    match pubsub {
        PubSub::One { stream, .. } => {
            let msg = stream.next().await?;
            Some(Heard::Message(
                msg.get_channel_name().to_owned(),
                msg.get_payload_bytes().to_vec(),
            ))
        }
        PubSub::Shards { shards, .. } => {
            let (addr, push) = shards.pushes.recv().await?;
            Some(shards.heard(&addr, push))
        }
    }
}
