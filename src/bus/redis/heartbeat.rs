//! This server's heartbeat (`node_alive:<node_id>`, with a TTL it renews), beaten on a task
//! of its own beside the pub/sub reader, so a slow Redis answering it never holds up the relay
//! of other servers' updates.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use redis::RedisResult;

use super::{Conn, Inner};
use crate::bus::heartbeat_ttl;

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
}
