//! The bus's events, routed to game tasks; and the upkeep: lease renewals in one batch, and
//! the heartbeats of the owners of the games our players are in.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::wire::{InboxMsg, Published, PublishedKind};
use super::{deliver, GameHandle, GameMsg, Shared};
use crate::bus::BusEvents;

/// The bus's events, routed to game tasks.
pub(super) struct Events {
    pub(super) shared: Arc<Shared>,
}

impl BusEvents for Events {
    fn relayed(&self, game_id: &str, payload: &[u8]) {
        // In pattern mode every server hears every game: decode only what we hold.
        let Some(handle) = self.shared.games.get(game_id) else {
            return;
        };
        let published = match serde_json::from_slice::<Published>(payload) {
            Ok(p) => p,
            Err(e) => {
                log::warn!("ignoring a malformed message on game:{game_id}: {e}");
                return;
            }
        };
        if published.origin == self.shared.node_id {
            return;
        }
        let Published {
            kind,
            origin,
            game,
            version,
            scores,
            applied,
            base,
        } = published;
        let msg = match (kind, game, applied) {
            (PublishedKind::GameUpdate, Some(game), _) if game.id == game_id => {
                GameMsg::Relayed { origin, game }
            }
            (PublishedKind::Scores, _, Some(applied)) => GameMsg::Scores {
                origin,
                version,
                scores,
                applied,
                base,
            },
            (PublishedKind::Terminated, _, _) => GameMsg::Terminated,
            _ => {
                log::warn!("ignoring an unexpected message on game:{game_id}");
                return;
            }
        };
        deliver(&handle, msg);
    }

    fn inbox(&self, payload: &[u8]) {
        let msg = match serde_json::from_slice::<InboxMsg>(payload) {
            Ok(msg) => msg,
            Err(e) => {
                log::warn!("ignoring a malformed inbox message: {e}");
                return;
            }
        };
        match self.shared.games.get(msg.game_id()) {
            Some(handle) => deliver(&handle, GameMsg::Inbox(msg)),
            // Sent here by a server that thinks we own a game we do not hold: say so.
            None => {
                if let InboxMsg::Command { game_id, command } = msg {
                    let answer = InboxMsg::Redirect {
                        game_id,
                        owner: None,
                    };
                    self.shared.bus.send_to(&command.from, answer.encode());
                }
            }
        }
    }

    fn saved(&self, game_id: &str, version: u64, result: crate::bus::SaveResult) {
        if let Some(handle) = self.shared.games.get(game_id) {
            deliver(&handle, GameMsg::Saved { version, result });
        }
    }

    fn subscribed(&self, game_id: &str) {
        if let Some(handle) = self.shared.games.get(game_id) {
            deliver(&handle, GameMsg::Subscribed);
        }
    }

    fn connection(&self, up: bool) {
        for handle in self.shared.games.all() {
            deliver(&handle, GameMsg::Bus { up });
        }
    }
}

/// Renews owned leases in one batch, and checks the owners of the games our players are in,
/// every third of a lease.
pub(super) async fn upkeep(shared: Arc<Shared>) {
    let every = (shared.bus.lease() / 3).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Leases are renewed while draining too (the drain can outlast a lease).
        if shared.games.released.load(Ordering::Relaxed) {
            return;
        }
        let games = shared.games.all();
        let owned: Vec<&GameHandle> = games
            .iter()
            .filter(|h| h.info.owned.load(Ordering::Relaxed))
            .collect();
        if !owned.is_empty() {
            let ids = owned.iter().map(|h| h.info.id.clone()).collect();
            let (sent_at, answers) = shared.bus.renew(ids).await;
            for (handle, renewal) in owned.iter().zip(answers) {
                deliver(handle, GameMsg::Renewed { sent_at, renewal });
            }
        }
        let watched: Vec<(&GameHandle, String)> = games
            .iter()
            .filter(|h| h.info.has_players.load(Ordering::Relaxed))
            .filter_map(|h| h.info.owner().map(|o| (h, o)))
            .collect();
        let mut owners: Vec<String> = watched.iter().map(|(_, o)| o.clone()).collect();
        owners.sort();
        owners.dedup();
        if owners.is_empty() {
            continue;
        }
        let alive = shared.bus.alive(owners.clone()).await;
        for (owner, alive) in owners.iter().zip(alive) {
            if alive {
                continue;
            }
            for (handle, o) in &watched {
                if o == owner {
                    deliver(handle, GameMsg::OwnerGone);
                }
            }
        }
    }
}
