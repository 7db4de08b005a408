//! Ownership follows the players: an owner whose game has more of its players on another
//! server hands the game to that server, so that their presses are applied where they arrive
//! instead of forwarded (PROTOCOL.md, "Ownership follows the players").
//!
//! The owner counts the robots with a socket on each server: its own, and each other server's
//! presence report. When one server holds at least [`LEAD`] more of them than the owner, for
//! [`LEAD_FOR`], and the game last changed owner at least [`MOVE_GAP`] ago, the owner waits
//! for a moment with everything it applied committed, stops applying, and hands the game over
//! ([`Bus::hand_over`]: the lease becomes the other server's, under the claim that is still
//! ours), then tells that server (`take`, in its inbox), which claims the game at once under a
//! new epoch and carries on from what is stored. Commands that reach the old owner meanwhile
//! wait, then go to the new one. Every guarantee of a claim holds through a move: nothing
//! committed is lost (everything applied was committed first), nothing is applied twice (each
//! origin's numbers are in the stored game), and no version is given twice (the new epoch). A
//! lost `take` costs a detour: the new owner's players' commands are redirected back to it,
//! and it claims.
//!
//! [`Bus::hand_over`]: crate::bus::Bus::hand_over

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::{GameMsg, GameTask};
use crate::node::role::Role;
use crate::node::wire::InboxMsg;

/// How many more of a game's players another server must hold than its owner.
pub(super) const LEAD: usize = 2;
/// For how long, before the game moves.
pub(super) const LEAD_FOR: Duration = Duration::from_secs(1);
/// At most one move per game this often (any claim but the game's first counts as a move).
pub(super) const MOVE_GAP: Duration = Duration::from_secs(10);
/// Waiting for a moment with nothing uncommitted: look again this soon.
const IDLE_RETRY: Duration = Duration::from_millis(20);

/// The owner's view of where the players are.
#[derive(Debug, Default)]
pub(super) struct Mover {
    /// The server holding at least [`LEAD`] more players than we do, and since when.
    leader: Option<(String, Instant)>,
    /// When the game last changed owner (taken here, or handed away).
    last_move: Option<Instant>,
}

impl Mover {
    pub(super) fn moved(&mut self, now: Instant) {
        self.leader = None;
        self.last_move = Some(now);
    }

    /// Where the game should go now, given its players here and on each other server; else
    /// when to look again (none: nothing to wait for until the players move).
    fn due(
        &mut self,
        here: usize,
        others: HashMap<String, usize>,
        now: Instant,
    ) -> Result<String, Option<Instant>> {
        // The most players; among equals, the lowest node id (every owner picks the same).
        let best = others
            .into_iter()
            .max_by(|(n1, c1), (n2, c2)| c1.cmp(c2).then_with(|| n2.cmp(n1)));
        let Some((node, _)) = best.filter(|(_, count)| *count >= here + LEAD) else {
            self.leader = None;
            return Err(None);
        };
        let since = match &self.leader {
            Some((leader, since)) if *leader == node => *since,
            _ => now,
        };
        let at = (since + LEAD_FOR).max(self.last_move.map_or(now, |at| at + MOVE_GAP));
        self.leader = Some((node.clone(), since));
        if at <= now {
            Ok(node)
        } else {
            Err(Some(at))
        }
    }
}

impl GameTask {
    /// The owner's presence check: hands the game over when its players are elsewhere.
    /// Returns when to look again.
    pub(super) fn consider_move(&mut self, here: usize, now: Instant) -> Option<Instant> {
        let settled = self.replicated
            && !self.alone
            && !self.fresh
            && self.stopping.is_none()
            && self.draining.is_none();
        if !settled {
            return None;
        }
        let mut others = self.tracker.players_by_server();
        others.remove(&self.shared.node_id);
        let to = match self.mover.due(here, others, now) {
            Ok(to) => to,
            Err(later) => return later,
        };
        let committed = !self.dirty
            && self.in_flight.is_none()
            && self.save_retry.is_none()
            && self.held.is_empty()
            && self.uncommitted.is_empty()
            && !self.unsure
            && self.ctx().writable;
        if !committed {
            return Some(now + IDLE_RETRY);
        }
        self.hand_over(to);
        None
    }

    /// Stops applying (commands wait) and asks the bus to hand the game to `to`.
    fn hand_over(&mut self, to: String) {
        let Some(tx) = self.tx.upgrade() else {
            return;
        };
        log::info!(
            "game {}: handing it to node {to}, which holds more of its players",
            self.id
        );
        self.set_role(Role::Resolving { claiming: true });
        let (bus, id, fence) = (self.shared.bus.clone(), self.id.clone(), self.fence);
        tokio::spawn(async move {
            let done = bus.hand_over(&id, &to, fence).await;
            let _ = tx.send(GameMsg::HandedOver { to, done }).await;
        });
    }

    /// The hand-over came back: `to` owns the game now (and is told so), or it was not ours to
    /// give any more (or Redis could not be asked), and a claim finds out who owns it.
    pub(super) fn handed_over(&mut self, to: String, done: bool) {
        // `to` is told either way: if the hand-over went through but its answer was lost, its
        // claim takes the game; if not, its claim finds the game owned, and changes nothing.
        let take = InboxMsg::Take {
            game_id: self.id.clone(),
            from: self.shared.node_id.clone(),
        };
        self.shared.bus.send_to(&to, take.encode());
        if !done {
            self.claim(false);
            return;
        }
        self.mover.moved(Instant::now());
        self.shared.metrics.moves.fetch_add(1, Ordering::Relaxed);
        self.next_tick = None;
        self.last_sent = None;
        self.set_role(Role::Replica { owner: to });
        self.resend();
        self.presence_check = true;
    }

    /// Another server handed us the game: claim it at once (its lease is ours already).
    pub(super) fn take(&mut self) {
        if matches!(self.role, Role::Owner(_) | Role::Stopping) || self.stopping.is_some() {
            return;
        }
        self.set_role(Role::Resolving { claiming: true });
        self.claim(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(servers: &[(&str, usize)]) -> HashMap<String, usize> {
        servers.iter().map(|(n, c)| (n.to_string(), *c)).collect()
    }

    #[test]
    fn a_game_moves_to_a_server_with_two_more_players_for_a_second_at_most_every_ten() {
        let start = Instant::now();
        let mut mover = Mover::default();
        let at = |ms: u64| start + Duration::from_millis(ms);
        // One more is not enough.
        assert_eq!(mover.due(3, on(&[("b", 4)]), at(0)), Err(None));
        // Two more: after a second of it.
        assert_eq!(mover.due(3, on(&[("b", 5)]), at(0)), Err(Some(at(1000))));
        assert_eq!(mover.due(3, on(&[("b", 5)]), at(600)), Err(Some(at(1000))));
        assert_eq!(mover.due(3, on(&[("b", 5)]), at(1000)), Ok("b".into()));
        // The lead gone meanwhile starts the second again.
        let mut mover = Mover::default();
        mover.due(0, on(&[("b", 2)]), at(0)).unwrap_err();
        assert_eq!(mover.due(1, on(&[("b", 2)]), at(500)), Err(None));
        assert_eq!(mover.due(0, on(&[("b", 2)]), at(900)), Err(Some(at(1900))));
        // Among equals, the lowest node id; after a move, ten seconds before the next.
        mover.moved(at(2000));
        let both = on(&[("c", 4), ("b", 4)]);
        assert_eq!(mover.due(0, both.clone(), at(2500)), Err(Some(at(12_000))));
        assert_eq!(mover.due(0, both, at(12_000)), Ok("b".into()));
    }
}
