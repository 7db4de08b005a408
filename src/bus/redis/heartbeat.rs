//! This server's heartbeat (`node_alive:<node_id>`, with a TTL it renews), beaten on a task
//! of its own beside the pub/sub reader, so a slow Redis answering it never holds up the relay
//! of other servers' updates; and the pub/sub connection's own liveness check, a PING on it
//! every heartbeat TTL.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::PubSubSink;
use redis::RedisResult;

use super::conn::io_error;
use super::{Conn, Inner, REDIS_TIMEOUT};
use crate::bus::heartbeat_ttl;

/// How often the pub/sub connection is PINGed, and how long its answer may take, for a lease:
/// every heartbeat TTL (0.5 to 2 s), answered within half the lease (1 to 3 s). A dead
/// subscription is found within 1.5 to 5 s of its last answer: 3.75 s with the default 5 s
/// lease, less than the lease itself.
pub(super) fn pubsub_ping(lease: Duration) -> (Duration, Duration) {
    let within = (lease / 2).clamp(Duration::from_secs(1), REDIS_TIMEOUT);
    (heartbeat_ttl(lease), within)
}

/// Ends a task when dropped (the heartbeat of a connection being left).
pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Inner {
    /// The heartbeat: this server is alive for the next TTL.
    pub(super) async fn beat(&self, conn: &mut Conn) -> RedisResult<()> {
        let ttl = heartbeat_ttl(self.config.lease);
        self.sent(1);
        redis::cmd("SET")
            .arg(self.names.alive(self.node_id()))
            .arg(1)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(conn)
            .await
    }

    /// Beats the heartbeat on `conn` a few times per TTL; a failed beat asks the supervisor
    /// for a new connection.
    pub(super) async fn heartbeat(self: Arc<Self>, mut conn: Conn) {
        let mut tick = tokio::time::interval(heartbeat_ttl(self.config.lease) / 4);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.stopped.load(Ordering::Relaxed) {
                return;
            }
            if let Err(e) = self.beat(&mut conn).await {
                self.failed("heartbeat", &e);
                self.reconnect.notify_one();
                return;
            }
        }
    }

    /// PINGs the pub/sub connection (RESP2 allows PING while subscribed) every so often
    /// ([`pubsub_ping`]). A connection that does not answer in time is taken for dead: a NAT or
    /// a load balancer may drop an idle one without a word, leaving this server deaf to its
    /// inbox and to game channels while its command connection, kept busy by the heartbeat,
    /// looks well. Then it asks the supervisor for a new connection, which subscribes again.
    pub(super) async fn probe_pubsub(self: Arc<Self>, mut sink: PubSubSink) {
        let (every, within) = pubsub_ping(self.config.lease);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is now: the connection has just answered SUBSCRIBE.
        tick.tick().await;
        loop {
            tick.tick().await;
            if self.stopped.load(Ordering::Relaxed) {
                return;
            }
            self.sent(1);
            let e = match tokio::time::timeout(within, sink.ping::<redis::Value>()).await {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => e,
                Err(_) => io_error(format!(
                    "no answer within {within:?}; taking the subscriptions for lost"
                )),
            };
            self.failed("pub/sub PING", &e);
            self.reconnect.notify_one();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pub_sub_ping_follows_the_lease() {
        let ms = Duration::from_millis;
        // The default lease: every 1.25 s, answered within 2.5 s.
        assert_eq!(pubsub_ping(ms(5000)), (ms(1250), ms(2500)));
        assert_eq!(pubsub_ping(ms(500)), (ms(500), ms(1000)));
        assert_eq!(pubsub_ping(ms(600_000)), (ms(2000), REDIS_TIMEOUT));
    }
}
