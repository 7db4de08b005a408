//! The in-process cluster's controls: what a test does to its "Redis" (down, back empty, out
//! of memory, a server cut off or killed, an inbox message lost) and what it reads of it.

use tokio::time::Instant;

use std::sync::{Arc, MutexGuard};

use super::{LocalCluster, Store};
use crate::bus::BusEvents;

impl LocalCluster {
    pub fn new() -> LocalCluster {
        let cluster = LocalCluster::default();
        cluster.lock().up = true;
        cluster
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Store> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn members_of(&self, nodes: impl Fn(&str) -> bool) -> Vec<Arc<dyn BusEvents>> {
        let store = self.lock();
        store
            .members
            .iter()
            .filter(|(n, _)| nodes(n))
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// "Redis" goes down for everyone.
    pub fn down(&self) {
        self.lock().up = false;
        for events in self.members_of(|_| true) {
            events.connection(false);
        }
    }

    /// "Redis" comes back, with its data (`empty` false) or without.
    pub fn back(&self, empty: bool) {
        {
            let mut store = self.lock();
            store.up = true;
            if empty {
                store.states.clear();
                store.owners.clear();
                store.epochs.clear();
                store.alive.clear();
                store.created = 0;
            }
        }
        for events in self.members_of(|_| true) {
            events.connection(true);
        }
    }

    /// "Redis" out of memory (`full`) or not: saves are refused, everything else works.
    pub fn full(&self, full: bool) {
        self.lock().full = full;
    }

    /// The next `count` messages to `node`'s inbox that contain `text` are lost on the way
    /// (pub/sub delivers at most once: a publisher's batch dropped, a subscription cut).
    pub fn lose(&self, node: &str, text: &str, count: usize) {
        self.lock()
            .lose
            .insert(node.to_owned(), (text.to_owned(), count));
    }

    /// Cuts one server off (it sees "Redis" down) or lets it back.
    pub fn cut(&self, node: &str, cut: bool) {
        self.lock().cut.insert(node.to_owned(), cut);
        let node = node.to_owned();
        for events in self.members_of(|n| n == node) {
            events.connection(!cut);
        }
    }

    /// A server dies: it stops beating and hears nothing more. Its leases run out.
    pub fn kill(&self, node: &str) {
        let mut store = self.lock();
        store.members.remove(node);
        store.alive.remove(node);
        store.cut.insert(node.to_owned(), true);
    }

    /// The stored JSON of a game (for assertions).
    pub fn stored(&self, game_id: &str) -> Option<String> {
        self.lock().states.get(game_id).cloned()
    }

    /// Replaces (`None`: deletes) a game's stored JSON behind its owner's back.
    pub fn put_stored(&self, game_id: &str, json: Option<String>) {
        let mut store = self.lock();
        match json {
            Some(json) => store.states.insert(game_id.to_owned(), json),
            None => store.states.remove(game_id),
        };
    }

    /// The live owner of a game (for assertions).
    pub fn owner(&self, game_id: &str) -> Option<String> {
        self.lock()
            .owner(game_id, Instant::now())
            .map(str::to_owned)
    }
}
