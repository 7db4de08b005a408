//! Write-behind: saves and inbox messages go out in pipelined batches, one round trip per
//! batch, so game tasks never wait on Redis. A game task keeps at most one save in flight,
//! so a batch holds at most one save per game.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::scripts::{CREATED_KEY, STATE_TTL_SECS};
use super::{lock, Inner};
use crate::bus::stats::BusStats;
use crate::bus::{Fence, Save, SaveResult};

/// How long the writer gathers saves (and the publisher forwarded commands) after being woken
/// from idle, so that those of many games share one round trip to Redis.
const GROUP_TICK: Duration = Duration::from_millis(1);

pub enum Write {
    Save(Save),
    Terminate { publish: String, fence: Fence },
}

/// The writer's queue.
#[derive(Default)]
pub struct Writes {
    queue: Mutex<Queued>,
    ready: Notify,
    /// The generation the writer has finished (see [`Writes::flushed`]).
    done: watch::Sender<u64>,
}

#[derive(Default)]
struct Queued {
    items: Vec<(String, Write)>,
    created: u64,
    /// Bumped with every push.
    generation: u64,
}

impl Writes {
    pub fn push(&self, game_id: &str, write: Write) {
        let mut q = lock(&self.queue);
        q.items.push((game_id.to_owned(), write));
        q.generation += 1;
        drop(q);
        self.ready.notify_one();
    }

    pub fn count_created(&self) {
        let mut q = lock(&self.queue);
        q.created += 1;
        q.generation += 1;
        drop(q);
        self.ready.notify_one();
    }

    pub fn wake(&self) {
        self.ready.notify_one();
    }

    /// Waits (bounded) until everything queued so far has been written.
    pub async fn flushed(&self, timeout: Duration) {
        let target = lock(&self.queue).generation;
        let mut done = self.done.subscribe();
        let _ = tokio::time::timeout(timeout, done.wait_for(|g| *g >= target)).await;
    }
}

/// The publisher's queue: inbox messages, in order.
#[derive(Default)]
pub struct Outbox {
    queue: Mutex<VecDeque<(String, String)>>,
    ready: Notify,
}

/// Inbox messages held before the oldest are dropped (their senders time out and resend).
const OUTBOX_MAX: usize = 65_536;

impl Outbox {
    pub fn push(&self, channel: String, payload: String) {
        let mut q = lock(&self.queue);
        if q.len() >= OUTBOX_MAX {
            q.pop_front();
        }
        q.push_back((channel, payload));
        drop(q);
        self.ready.notify_one();
    }

    pub fn wake(&self) {
        self.ready.notify_one();
    }
}

/// Takes everything queued, writes it in one pipelined round trip, reports, repeats.
pub async fn write_loop(inner: Arc<Inner>) {
    loop {
        let (batch, created, generation) = {
            let mut q = lock(&inner.writes.queue);
            (
                std::mem::take(&mut q.items),
                std::mem::take(&mut q.created),
                q.generation,
            )
        };
        if batch.is_empty() && created == 0 {
            inner.writes.done.send_replace(generation);
            inner.writes.ready.notified().await;
            // Woken from idle: what other games save within a tick shares the round trip
            // (group commit: fewer reads and writes for Redis and for us, a tick of latency).
            tokio::time::sleep(GROUP_TICK).await;
            continue;
        }
        let results = write(&inner, &batch, created).await;
        if let Some(events) = inner.events.get() {
            for ((game_id, write), result) in batch.iter().zip(results) {
                if let Write::Save(save) = write {
                    events.saved(game_id, save.version, result);
                }
            }
        }
        inner.writes.done.send_replace(generation);
    }
}

async fn write(inner: &Inner, batch: &[(String, Write)], created: u64) -> Vec<SaveResult> {
    let failed = vec![SaveResult::Failed; batch.len()];
    let Some(conn) = inner.conn() else {
        return failed;
    };
    let node = inner.node_id();
    let names = inner.names;
    let mut cmds: Vec<redis::Cmd> = batch
        .iter()
        .map(|(id, write)| {
            let mut cmd = redis::cmd("EVALSHA");
            match write {
                Write::Save(save) => cmd
                    .arg(inner.scripts.save.get_hash())
                    .arg(2)
                    .arg(names.epoch(id))
                    .arg(names.state(id))
                    .arg(save.fence.wire())
                    .arg(&save.stored)
                    .arg(names.game_channel(id))
                    .arg(BusStats::stamp(&save.publish))
                    .arg(STATE_TTL_SECS)
                    .arg(save.version),
                Write::Terminate { publish, fence } => cmd
                    .arg(inner.scripts.terminate.get_hash())
                    .arg(3)
                    .arg(names.owner(id))
                    .arg(names.state(id))
                    .arg(names.epoch(id))
                    .arg(node)
                    .arg(names.game_channel(id))
                    .arg(publish)
                    .arg(fence.wire())
                    .arg(STATE_TTL_SECS),
            };
            cmd
        })
        .collect();
    if created > 0 {
        let mut incr = redis::cmd("INCRBY");
        incr.arg(CREATED_KEY).arg(created);
        cmds.push(incr);
    }
    inner.sent(cmds.len());
    let sent_at = std::time::Instant::now();
    // Each save's answer on its own: a refused one (out of memory, read-only) fails that
    // save only, never one that Redis carried out.
    match conn.each::<i64>(cmds).await {
        Ok(mut answers) => {
            inner.stats.save_latency.observe(sent_at.elapsed());
            answers.truncate(batch.len());
            let mut refused = None;
            let results: Vec<_> = answers
                .into_iter()
                .map(|a| match a {
                    Ok(1) => SaveResult::Saved,
                    Ok(2) => SaveResult::Unowned,
                    Ok(_) => SaveResult::Fenced,
                    // Redis answered with an error: the script stopped at its first write.
                    Err(e) => {
                        refused.get_or_insert(e);
                        SaveResult::Refused
                    }
                })
                .collect();
            if let Some(e) = refused {
                inner.failed("save", &e);
            }
            let count = |r: SaveResult| results.iter().filter(|x| **x == r).count();
            inner.writes_done.fetch_add(
                (results.len() - count(SaveResult::Refused)) as u64,
                Ordering::Relaxed,
            );
            let fenced = count(SaveResult::Fenced);
            inner
                .stats
                .fenced
                .fetch_add(fenced as u64, Ordering::Relaxed);
            inner.stats.lost_leases(fenced + count(SaveResult::Unowned));
            results
        }
        Err(e) => {
            inner.failed("save", &e);
            failed
        }
    }
}

/// Sends inbox messages in order, a pipelined batch at a time. One that fails is not retried
/// here: forwarded commands are resent by their senders until the owner acknowledges them.
pub async fn publish_loop(inner: Arc<Inner>) {
    loop {
        let batch: Vec<(String, String)> = lock(&inner.outbox.queue).drain(..).collect();
        if batch.is_empty() {
            inner.outbox.ready.notified().await;
            // As for saves: forwarded commands of a tick go in one round trip.
            tokio::time::sleep(GROUP_TICK).await;
            continue;
        }
        let Some(conn) = inner.conn() else {
            continue;
        };
        let cmds = batch
            .iter()
            .map(|(channel, payload)| {
                let mut cmd = redis::cmd(inner.names.publish());
                cmd.arg(channel).arg(payload);
                cmd
            })
            .collect();
        inner.sent(batch.len());
        if let Err(e) = conn.all::<i64>(cmds).await {
            inner.failed("publish", &e);
        }
    }
}
