//! The connection: find Redis (with Sentinel: the master now), connect (PING, scripts, the
//! shared token secret, the heartbeat, the subscriptions), hand every subscribed message to
//! the events, beat the heartbeat, follow this server's per-game interest, and when the
//! connection breaks, try again every [`RETRY`](super::RETRY).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, Client, RedisResult};

use super::scripts::{alive_key, game_channel, inbox_channel, GAME_PATTERN, SECRET_KEY};
use super::{lock, sentinel, Inner, Subscribe, Target, REDIS_TIMEOUT, RETRY};
use crate::bus::{heartbeat_ttl, BusEvents};

/// Channels named in one SUBSCRIBE or UNSUBSCRIBE.
const SUBSCRIBE_BATCH: usize = 256;

/// A live connection: commands, pub/sub, and what it is subscribed to.
pub(super) struct Connected {
    conn: MultiplexedConnection,
    sink: PubSubSink,
    stream: PubSubStream,
    /// `host:port` of the Redis connected to.
    addr: String,
    /// Per-game mode: the games whose channel is subscribed on this connection.
    games: HashSet<String>,
}

fn io_error(what: String) -> redis::RedisError {
    std::io::Error::other(what).into()
}

impl Inner {
    /// Which Redis to connect to now: the configured one, or the master the Sentinels name.
    async fn resolve(&self) -> RedisResult<(Client, String)> {
        match &self.config.target {
            Target::Single { client, addr } => Ok((Client::clone(client), addr.clone())),
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
        let (client, addr) = self.resolve().await?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        self.sent(1);
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        if let Target::Sentinel(_) = &self.config.target {
            // A Sentinel may name a master that has just been demoted: wait for the new one.
            self.sent(1);
            if !sentinel::is_master(&mut conn).await? {
                return Err(io_error(format!("{addr} is not the master (yet)")));
            }
        }
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
        let pubsub = tokio::time::timeout(REDIS_TIMEOUT, client.get_async_pubsub())
            .await
            .map_err(|_| io_error("timed out opening the pub/sub connection".to_owned()))??;
        let (mut sink, stream) = pubsub.split();
        if self.config.subscribe == Subscribe::Pattern {
            self.sent(1);
            sink.psubscribe(GAME_PATTERN).await?;
        }
        self.sent(1);
        sink.subscribe(inbox_channel(self.node_id())).await?;
        let mut connected = Connected {
            conn,
            sink,
            stream,
            addr,
            games: HashSet::new(),
        };
        // Per game: every game wanted now, before the connection is reported up (whose
        // reloads then see everything published after these subscriptions).
        self.follow_interest(&mut connected, None).await?;
        Ok(connected)
    }

    /// Per-game mode: subscribes to the games wanted and not subscribed, unsubscribes the
    /// others; tells `events` of each new subscription.
    async fn follow_interest(
        &self,
        connected: &mut Connected,
        events: Option<&Arc<dyn BusEvents>>,
    ) -> RedisResult<()> {
        if self.config.subscribe != Subscribe::PerGame {
            return Ok(());
        }
        let wanted = lock(&self.wanted).clone();
        let games = &mut connected.games;
        let add: Vec<String> = wanted.difference(games).cloned().collect();
        let drop: Vec<String> = games.difference(&wanted).cloned().collect();
        for chunk in add.chunks(SUBSCRIBE_BATCH) {
            let channels: Vec<String> = chunk.iter().map(|g| game_channel(g)).collect();
            self.sent(1);
            connected.sink.subscribe(channels).await?;
            for game_id in chunk {
                games.insert(game_id.clone());
                if let Some(events) = events {
                    events.subscribed(game_id);
                }
            }
        }
        for chunk in drop.chunks(SUBSCRIBE_BATCH) {
            let channels: Vec<String> = chunk.iter().map(|g| game_channel(g)).collect();
            self.sent(1);
            connected.sink.unsubscribe(channels).await?;
            for game_id in chunk {
                games.remove(game_id);
            }
        }
        Ok(())
    }

    /// The heartbeat: this server is alive for the next TTL.
    pub(super) async fn beat(&self, conn: &mut MultiplexedConnection) -> RedisResult<()> {
        let ttl = heartbeat_ttl(self.config.lease);
        self.sent(1);
        redis::cmd("SET")
            .arg(alive_key(self.node_id()))
            .arg(1)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(conn)
            .await
    }

    /// Connects, subscribes, relays and beats until the connection drops; then again.
    pub(super) async fn supervise(self: Arc<Self>) {
        let mut failures = 0u32;
        loop {
            if self.stopped.load(Ordering::Relaxed) {
                return;
            }
            match self.connect().await {
                Ok(connected) => {
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
                        Target::Single { .. } => None,
                    };
                    *lock(&self.conn) = Some(connected.conn.clone());
                    self.connected.store(true, Ordering::Relaxed);
                    log::info!("Connected to Redis at {addr} - multi-server mode enabled");
                    match self.config.subscribe {
                        Subscribe::Pattern => {
                            log::info!("Subscribed to Redis channels: [{GAME_PATTERN}]")
                        }
                        Subscribe::PerGame => log::info!(
                            "Subscribed to Redis channels: [{}] and game:<id> for each game this server has players in ({} now)",
                            inbox_channel(self.node_id()),
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
                        "WARNING: Lost the connection to Redis at {addr}; running on this server's games alone and reconnecting"
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

    /// Hands every subscribed message to the events, beats the heartbeat and follows the
    /// per-game interest, until the connection ends (or a failed call asks for a new one).
    async fn serve(&self, mut connected: Connected) {
        let Some(events) = self.events.get().cloned() else {
            return;
        };
        let inbox = inbox_channel(self.node_id());
        let per_game = self.config.subscribe == Subscribe::PerGame;
        let mut heartbeat = tokio::time::interval(heartbeat_ttl(self.config.lease) / 4);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = connected.stream.next() => {
                    let Some(msg) = msg else { return };
                    let channel = msg.get_channel_name();
                    if channel == inbox {
                        self.heard_inbox.fetch_add(1, Ordering::Relaxed);
                        events.inbox(msg.get_payload_bytes());
                    } else if let Some(game_id) = channel.strip_prefix("game:") {
                        self.heard_game.fetch_add(1, Ordering::Relaxed);
                        events.relayed(game_id, msg.get_payload_bytes());
                    }
                }
                _ = heartbeat.tick() => {
                    if self.stopped.load(Ordering::Relaxed) {
                        return;
                    }
                    if let Err(e) = self.beat(&mut connected.conn).await {
                        self.failed("heartbeat", &e);
                        return;
                    }
                }
                () = self.interest_changed.notified(), if per_game => {
                    if let Err(e) = self.follow_interest(&mut connected, Some(&events)).await {
                        self.failed("subscribe", &e);
                        return;
                    }
                }
                () = self.reconnect.notified() => return,
            }
        }
    }
}
