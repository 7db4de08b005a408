//! [`Bus`] on Redis: the calls the game layer makes. Saves, ends and inbox messages are queued
//! for the writer and the publisher (they return at once); ownership (claim, renew, release),
//! heartbeat checks and the shared counts are asked of Redis directly.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::{Cmd, RedisResult};
use tokio::time::Instant;

use super::scripts::{CREATED_KEY, STATE_TTL_SECS};
use super::{lock, writer, RedisBus, Target, REDIS_TIMEOUT};
use crate::bus::{
    BoxFuture, Bus, BusDown, BusEvents, BusStatus, Claim, Fallback, Fence, PubSubCounts, Renewal,
    Save, SaveOutcome, Topology,
};

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

    fn terminate(&self, game_id: &str, publish: String, fence: Fence) {
        if !self.inner.stopped.load(Ordering::Relaxed) {
            self.inner
                .writes
                .push(game_id, writer::Write::Terminate { publish, fence });
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

    fn claim(&self, game_id: &str, fallback: Option<Fallback>, floor: u64) -> BoxFuture<'_, Claim> {
        let game_id = game_id.to_owned();
        Box::pin(async move {
            let inner = &self.inner;
            let Some(mut conn) = inner.conn() else {
                return Claim::Failed;
            };
            let (fallback, version) = match fallback {
                None => (String::new(), String::new()),
                Some(Fallback::New(json)) => (json, String::new()),
                Some(Fallback::Copy { json, version }) => (json, version.to_string()),
            };
            let mut dead = String::new();
            let token: u64 = rand::random();
            // At most twice: once, and once more taking over an owner found dead.
            for _ in 0..2 {
                let answer = inner
                    .claim_once(
                        &mut conn,
                        &game_id,
                        (&fallback, &version),
                        &dead,
                        (floor, token),
                    )
                    .await;
                match answer {
                    Ok((1, stored, epoch)) => {
                        let fence = Fence { epoch, token };
                        return Claim::Claimed { stored, fence };
                    }
                    Ok((2, owner, _)) if owner != dead && dead.is_empty() => {
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
                    Ok((2, owner, _)) => return Claim::OwnedBy(owner),
                    Ok((3, _, _)) => return Claim::Ended,
                    Ok((4, _, _)) => return Claim::Restoring,
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

    fn hand_over(&self, game_id: &str, to: &str, fence: Fence) -> BoxFuture<'_, bool> {
        let (game_id, to) = (game_id.to_owned(), to.to_owned());
        Box::pin(async move {
            let inner = &self.inner;
            let Some(mut conn) = inner.conn() else {
                return false;
            };
            inner.sent(1);
            let done: RedisResult<u8> = inner
                .scripts
                .hand_over
                .key(inner.names.owner(&game_id))
                .key(inner.names.epoch(&game_id))
                .arg(inner.node_id())
                .arg(fence.wire())
                .arg(&to)
                .arg(inner.lease_ms())
                .invoke_async(&mut conn)
                .await;
            match done {
                Ok(done) => done == 1,
                Err(e) => {
                    inner.failed("hand-over", &e);
                    false
                }
            }
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
                        .arg(2)
                        .arg(inner.names.owner(id))
                        .arg(inner.names.epoch(id))
                        .arg(inner.node_id())
                        .arg(inner.lease_ms())
                        .arg(STATE_TTL_SECS);
                    cmd
                })
                .collect();
            inner.sent(game_ids.len());
            // Each game's answer on its own: one refused renewal fails that lease only.
            match conn.each::<i64>(cmds).await {
                Ok(answers) => {
                    let mut refused = None;
                    let answers = answers
                        .into_iter()
                        .map(|a| match a {
                            Ok(1) => Renewal::Held,
                            Ok(2) => Renewal::Unowned,
                            Ok(_) => Renewal::Taken,
                            Err(e) => {
                                refused.get_or_insert(e);
                                Renewal::Failed
                            }
                        })
                        .collect::<Vec<_>>();
                    if let Some(e) = refused {
                        inner.failed("renew", &e);
                    }
                    let lost = answers
                        .iter()
                        .filter(|a| matches!(a, Renewal::Unowned | Renewal::Taken))
                        .count();
                    inner.stats.lost_leases(lost);
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

    fn stats(&self) -> Option<&crate::bus::stats::BusStats> {
        Some(&self.inner.stats)
    }

    fn commands_sent(&self) -> u64 {
        self.inner.commands.load(Ordering::Relaxed)
    }
}
