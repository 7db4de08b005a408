//! The connection: connect (PING, scripts, the shared token secret, the heartbeat, the
//! subscriptions), hand every subscribed message to the events, beat the heartbeat, and when
//! the connection breaks, try again every [`RETRY`](super::RETRY).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult};

use super::scripts::{alive_key, inbox_channel, GAME_PATTERN, SECRET_KEY};
use super::{lock, Inner, REDIS_TIMEOUT, RETRY};
use crate::bus::heartbeat_ttl;

impl Inner {
    pub(super) async fn connect(&self) -> RedisResult<(MultiplexedConnection, redis::aio::PubSub)> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT));
        let client = &self.config.client;
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        for script in self.scripts.all() {
            script.load_async(&mut conn).await?;
        }
        if !self.config.explicit_secret {
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
                self.config.tokens.adopt(shared.as_bytes());
            }
        }
        self.beat(&mut conn).await?;
        let mut pubsub = tokio::time::timeout(REDIS_TIMEOUT, client.get_async_pubsub())
            .await
            .map_err(|_| {
                redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "timed out opening the pub/sub connection",
                ))
            })??;
        pubsub.psubscribe(GAME_PATTERN).await?;
        pubsub.subscribe(inbox_channel(self.node_id())).await?;
        Ok((conn, pubsub))
    }

    /// The heartbeat: this server is alive for the next TTL.
    pub(super) async fn beat(&self, conn: &mut MultiplexedConnection) -> RedisResult<()> {
        let ttl = heartbeat_ttl(self.config.lease);
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
        let addr = self.config.addr.clone();
        loop {
            if self.stopped.load(Ordering::Relaxed) {
                return;
            }
            match self.connect().await {
                Ok((conn, pubsub)) => {
                    *lock(&self.conn) = Some(conn.clone());
                    self.connected.store(true, Ordering::Relaxed);
                    log::info!("Connected to Redis at {addr} - multi-server mode enabled");
                    log::info!("Subscribed to Redis channels: [{GAME_PATTERN}]");
                    failures = 0;
                    self.writes.wake();
                    self.outbox.wake();
                    if let Some(events) = self.events.get() {
                        events.connection(true);
                    }
                    self.serve(conn, pubsub).await;
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
                        log::warn!("WARNING: Failed to connect to Redis at {addr}: {e}");
                    }
                    failures += 1;
                }
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Hands every subscribed message to the events and beats the heartbeat, until the
    /// connection ends (or a failed call asks for a new one).
    pub(super) async fn serve(&self, mut conn: MultiplexedConnection, pubsub: redis::aio::PubSub) {
        let Some(events) = self.events.get().cloned() else {
            return;
        };
        let inbox = inbox_channel(self.node_id());
        let mut stream = pubsub.into_on_message();
        let mut heartbeat = tokio::time::interval(heartbeat_ttl(self.config.lease) / 4);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else { return };
                    let channel = msg.get_channel_name();
                    if channel == inbox {
                        events.inbox(msg.get_payload_bytes());
                    } else if let Some(game_id) = channel.strip_prefix("game:") {
                        events.relayed(game_id, msg.get_payload_bytes());
                    }
                }
                _ = heartbeat.tick() => {
                    if self.stopped.load(Ordering::Relaxed) {
                        return;
                    }
                    if let Err(e) = self.beat(&mut conn).await {
                        self.failed("heartbeat", &e);
                        return;
                    }
                }
                () = self.reconnect.notified() => return,
            }
        }
    }
}
