//! The in-memory bus.
//!
//! [`LocalBus::single`] is single-server mode: nothing is shared, so game tasks commit at once
//! and never call the store. [`LocalCluster`] is a stand-in for one Redis shared by several
//! in-process servers, with the same rules as the Lua scripts (fenced saves, leases that
//! expire, heartbeats, claims, pub/sub, inboxes), plus switches a test needs: cut one server
//! off, take "Redis" down and bring it back empty or not. Its clock is tokio's, so tests can
//! run on paused time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use super::{
    heartbeat_ttl, BoxFuture, Bus, BusDown, BusEvents, BusStatus, Claim, Fallback, Fence, Renewal,
    Save, SaveOutcome, SaveResult, RESTORE_WINDOW,
};

mod cluster;

/// One process's bus: alone, or a member of a [`LocalCluster`].
pub struct LocalBus {
    node_id: String,
    lease: Duration,
    /// `None`: single-server mode.
    cluster: Option<LocalCluster>,
    events: OnceLock<Arc<dyn BusEvents>>,
    created: AtomicU64,
    writes: AtomicU64,
    stopped: AtomicBool,
}

impl LocalBus {
    /// Single-server mode.
    pub fn single(node_id: String) -> LocalBus {
        LocalBus {
            node_id,
            lease: Duration::from_secs(5),
            cluster: None,
            events: OnceLock::new(),
            created: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        }
    }

    /// A server of an in-process cluster.
    pub fn member(cluster: &LocalCluster, node_id: &str, lease: Duration) -> LocalBus {
        LocalBus {
            node_id: node_id.to_owned(),
            lease,
            cluster: Some(cluster.clone()),
            events: OnceLock::new(),
            created: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        }
    }

    /// The shared store, if this server can reach it now.
    fn store(&self) -> Option<MutexGuard<'_, Store>> {
        let cluster = self.cluster.as_ref()?;
        let store = cluster.lock();
        let reachable = store.up && !store.cut.get(&self.node_id).copied().unwrap_or(false);
        reachable.then_some(store)
    }

    fn emit(&self, f: impl FnOnce(&dyn BusEvents) + Send + 'static) {
        if let Some(events) = self.events.get().cloned() {
            // Asynchronously, as a reply from Redis would come.
            tokio::spawn(async move { f(events.as_ref()) });
        }
    }
}

/// The shared "Redis" of an in-process cluster. Cheap to clone.
#[derive(Clone, Default)]
pub struct LocalCluster {
    inner: Arc<Mutex<Store>>,
}

#[derive(Default)]
struct Store {
    /// False while "Redis" is down for everyone.
    up: bool,
    /// Servers cut off from "Redis" (a partition, or a server that is frozen).
    cut: HashMap<String, bool>,
    states: HashMap<String, String>,
    owners: HashMap<String, (String, Instant)>,
    /// Out of memory: saves fail (see [`LocalCluster::full`]).
    full: bool,
    /// Inbox messages to lose, per server: those containing the text, so many more of them
    /// (see [`LocalCluster::lose`]).
    lose: HashMap<String, (String, usize)>,
    /// Each game's claim, as `game_epoch:<id>` holds it: every claim takes a new one, every
    /// write checks it.
    epochs: HashMap<String, Claimed>,
    alive: HashMap<String, Instant>,
    /// Copies offered of games "Redis" lost, as `game_restore:<id>` holds them.
    offers: HashMap<String, Offer>,
    /// Who hears what is published: each server's events.
    members: HashMap<String, Arc<dyn BusEvents>>,
    created: u64,
}

/// The best copy offered of a lost game: its version and node, the first offer's time, the
/// highest floor offered.
struct Offer(u64, String, Instant, u64);

/// What "Redis" holds of a game's claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claimed {
    /// The fence of the last claim, and the version saved last under it.
    By(Fence, u64),
    /// The game ended: its tombstone.
    Ended,
}

impl Store {
    /// The live owner of a game (an expired lease is no owner).
    fn owner(&self, game_id: &str, now: Instant) -> Option<&str> {
        self.owners
            .get(game_id)
            .filter(|(_, until)| *until > now)
            .map(|(node, _)| node.as_str())
    }

    fn is_alive(&self, node: &str, now: Instant) -> bool {
        self.alive.get(node).is_some_and(|until| *until > now)
    }

    /// Everyone who hears a publication from `origin` (not the origin itself).
    fn listeners(&self, origin: &str) -> Vec<Arc<dyn BusEvents>> {
        self.members
            .iter()
            .filter(|(node, _)| {
                node.as_str() != origin && !self.cut.get(*node).copied().unwrap_or(false)
            })
            .map(|(_, events)| events.clone())
            .collect()
    }
}

impl Bus for LocalBus {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn status(&self) -> BusStatus {
        match &self.cluster {
            None => BusStatus::Local,
            Some(_) if self.store().is_some() => BusStatus::Connected,
            Some(_) => BusStatus::Down,
        }
    }

    fn replicated(&self) -> bool {
        self.cluster.is_some()
    }

    fn lease(&self) -> Duration {
        self.lease
    }

    fn start(&self, events: Arc<dyn BusEvents>) {
        let _ = self.events.set(events.clone());
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        cluster
            .lock()
            .members
            .insert(self.node_id.clone(), events.clone());
        // The heartbeat, as the Redis bus keeps it.
        let (node, ttl) = (self.node_id.clone(), heartbeat_ttl(self.lease));
        tokio::spawn(async move {
            loop {
                {
                    let mut store = cluster.lock();
                    if !store.members.contains_key(&node) {
                        return;
                    }
                    if store.up && !store.cut.get(&node).copied().unwrap_or(false) {
                        store.alive.insert(node.clone(), Instant::now() + ttl);
                    }
                }
                tokio::time::sleep(ttl / 4).await;
            }
        });
        events.connection(self.store().is_some());
    }

    fn save(&self, game_id: &str, save: Save) -> SaveOutcome {
        if self.stopped.load(Ordering::Relaxed) {
            return SaveOutcome::Down;
        }
        let Some(mut store) = self.store() else {
            return SaveOutcome::Down;
        };
        let result = match store.epochs.get(game_id).copied() {
            _ if store.full => SaveResult::Refused,
            // Already saved, or a newer version was: a late retry changes nothing.
            Some(Claimed::By(fence, saved)) if fence == save.fence && saved >= save.version => {
                SaveResult::Saved
            }
            Some(Claimed::By(fence, _)) if fence == save.fence => {
                store
                    .epochs
                    .insert(game_id.to_owned(), Claimed::By(fence, save.version));
                store.states.insert(game_id.to_owned(), save.stored);
                self.writes.fetch_add(1, Ordering::Relaxed);
                let listeners = store.listeners(&self.node_id);
                drop(store);
                for l in listeners {
                    l.relayed(game_id, save.publish.as_bytes());
                }
                SaveResult::Saved
            }
            Some(_) => SaveResult::Fenced,
            None => SaveResult::Unowned,
        };
        let (game_id, version) = (game_id.to_owned(), save.version);
        self.emit(move |e| e.saved(&game_id, version, result));
        SaveOutcome::Pending
    }

    fn terminate(&self, game_id: &str, publish: String, fence: Fence) {
        let Some(mut store) = self.store() else {
            return;
        };
        let now = Instant::now();
        if store.owner(game_id, now).is_some_and(|o| o != self.node_id)
            || store
                .epochs
                .get(game_id)
                .is_some_and(|e| !matches!(e, Claimed::By(f, _) if *f == fence))
        {
            return;
        }
        store.owners.remove(game_id);
        store.epochs.insert(game_id.to_owned(), Claimed::Ended);
        store.states.remove(game_id);
        let listeners = store.listeners(&self.node_id);
        drop(store);
        for l in listeners {
            l.relayed(game_id, publish.as_bytes());
        }
    }

    fn send_to(&self, node: &str, payload: String) -> bool {
        let Some(mut store) = self.store() else {
            return false;
        };
        if let Some((text, count)) = store.lose.get_mut(node) {
            if *count > 0 && payload.contains(text.as_str()) {
                *count -= 1;
                return true;
            }
        }
        let target = store
            .members
            .get(node)
            .filter(|_| !store.cut.get(node).copied().unwrap_or(false))
            .cloned();
        drop(store);
        // Like PUBLISH: sent is not received; a dead or cut-off server just never hears it.
        if let Some(target) = target {
            tokio::spawn(async move { target.inbox(payload.as_bytes()) });
        }
        true
    }

    fn claim(&self, game_id: &str, fallback: Option<Fallback>, floor: u64) -> BoxFuture<'_, Claim> {
        let game_id = game_id.to_owned();
        Box::pin(async move {
            let Some(mut store) = self.store() else {
                return Claim::Failed;
            };
            let before = match store.epochs.get(&game_id) {
                Some(Claimed::Ended) => return Claim::Ended,
                Some(Claimed::By(fence, _)) => fence.epoch,
                None => 0,
            };
            let now = Instant::now();
            if let Some(owner) = store.owner(&game_id, now) {
                if owner != self.node_id && store.is_alive(owner, now) {
                    return Claim::OwnedBy(owner.to_owned());
                }
            }
            let mut floor = floor;
            let stored = match (store.states.get(&game_id), fallback) {
                (Some(s), _) => s.clone(),
                (None, None) => return Claim::Gone,
                (None, Some(Fallback::New(json))) => json,
                (None, Some(Fallback::Copy { json, version })) => {
                    let me = &self.node_id;
                    let fresh = Offer(version, me.clone(), now, floor);
                    let best = store.offers.entry(game_id.clone()).or_insert(fresh);
                    if best.2 + RESTORE_WINDOW * 10 <= now {
                        *best = Offer(version, me.clone(), now, floor);
                    }
                    if version > best.0 {
                        (best.0, best.1) = (version, me.clone());
                    }
                    best.3 = best.3.max(floor);
                    if best.1 != *me || now < best.2 + RESTORE_WINDOW {
                        return Claim::Restoring;
                    }
                    floor = best.3;
                    store.offers.remove(&game_id);
                    json
                }
            };
            store.states.insert(game_id.clone(), stored.clone());
            let fence = Fence::drawn((before + 1).max(floor));
            store.epochs.insert(game_id.clone(), Claimed::By(fence, 0));
            store
                .owners
                .insert(game_id, (self.node_id.clone(), now + self.lease));
            Claim::Claimed { stored, fence }
        })
    }

    fn hand_over(&self, game_id: &str, to: &str, fence: Fence) -> BoxFuture<'_, bool> {
        let (game_id, to) = (game_id.to_owned(), to.to_owned());
        Box::pin(async move {
            let Some(mut store) = self.store() else {
                return false;
            };
            let now = Instant::now();
            let ours = store.owner(&game_id, now) == Some(self.node_id.as_str())
                && matches!(store.epochs.get(&game_id), Some(Claimed::By(f, _)) if *f == fence);
            if ours {
                store.owners.insert(game_id, (to, now + self.lease));
            }
            ours
        })
    }

    fn load(&self, game_id: &str) -> BoxFuture<'_, Result<Option<String>, BusDown>> {
        let game_id = game_id.to_owned();
        Box::pin(async move {
            let store = self.store().ok_or(BusDown)?;
            Ok(store.states.get(&game_id).cloned())
        })
    }

    fn renew(&self, game_ids: Vec<String>) -> BoxFuture<'_, (Instant, Vec<Renewal>)> {
        Box::pin(async move {
            let now = Instant::now();
            let Some(mut store) = self.store() else {
                return (now, vec![Renewal::Failed; game_ids.len()]);
            };
            let answers = game_ids
                .iter()
                .map(|id| match store.owner(id, now).map(|o| o == self.node_id) {
                    Some(true) => {
                        store
                            .owners
                            .insert(id.clone(), (self.node_id.clone(), now + self.lease));
                        Renewal::Held
                    }
                    Some(false) => Renewal::Taken,
                    None => Renewal::Unowned,
                })
                .collect();
            (now, answers)
        })
    }

    fn alive(&self, nodes: Vec<String>) -> BoxFuture<'_, Vec<bool>> {
        Box::pin(async move {
            let now = Instant::now();
            match self.store() {
                Some(store) => nodes.iter().map(|n| store.is_alive(n, now)).collect(),
                None => vec![true; nodes.len()],
            }
        })
    }

    fn release(&self, game_ids: Vec<String>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.stopped.store(true, Ordering::Relaxed);
            let Some(mut store) = self.store() else {
                return;
            };
            let now = Instant::now();
            for id in game_ids {
                if store.owner(&id, now) == Some(self.node_id.as_str()) {
                    store.owners.remove(&id);
                }
            }
            store.alive.remove(&self.node_id);
            store.members.remove(&self.node_id);
        })
    }

    fn count_created(&self) {
        self.created.fetch_add(1, Ordering::Relaxed);
        if let Some(mut store) = self.store() {
            store.created += 1;
        }
    }

    fn games_created(&self) -> BoxFuture<'_, Option<u64>> {
        Box::pin(async move { self.store().map(|s| s.created) })
    }

    fn describe(&self) -> String {
        match self.cluster {
            None => "local".to_owned(),
            Some(_) => format!("local cluster (node {})", self.node_id),
        }
    }

    fn writes_done(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}
