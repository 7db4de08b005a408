//! The game task's clock: countdown steps, idle expiry, acknowledgement timeouts, retries,
//! forgetting an unused replica, and shutdown deadlines. One deadline at a time: the earliest.

use std::time::Duration;

use tokio::time::Instant;

use super::GameTask;
use crate::game::Step;
use crate::node::role::Role;
use crate::node::wire::Cmd;

/// Forwarded commands remembered as answered `unavailable` (see `answer_held`) at most.
const MAX_REFUSED: usize = 4096;

/// One countdown step.
pub const COUNTDOWN_STEP: Duration = Duration::from_secs(1);
/// A player's command that could not be applied or sent for this long (the game's storage
/// cannot be written, or its owner cannot be reached) is answered `unavailable` instead, and
/// never applied: every command is answered within 2 s.
pub const UNAVAILABLE_AFTER: Duration = Duration::from_millis(1200);
/// A command forwarded from another server that its owner (here) held this long because the
/// game's storage cannot be written is answered `unavailable` to its server: less than
/// [`UNAVAILABLE_AFTER`], for the trips to the owner and back.
pub const FORWARDED_UNAVAILABLE_AFTER: Duration = Duration::from_millis(800);
/// Commands applied into a save that Redis keeps refusing (out of memory, read-only) are
/// taken back and answered `unavailable` after this long: within 2 s of reaching the owner,
/// with room for the answer's trip to a forwarding server.
pub const TAKEN_BACK_AFTER: Duration = Duration::from_millis(1300);

impl GameTask {
    pub(super) fn next_deadline(&self) -> Instant {
        let t = &self.shared.timing;
        let owner = matches!(self.role, Role::Owner(_));
        let mut next: Vec<Instant> = Vec::with_capacity(8);
        if owner {
            next.extend(self.next_tick);
            next.push(self.last_action + t.idle);
        } else if self.forgettable() {
            next.push(self.last_action + t.replica_keep);
        }
        if !owner {
            let patience = self.origin.patience(t.ack_timeout);
            next.extend(self.origin.oldest_sent().map(|at| at + patience));
        } else if !self.ctx().writable {
            let oldest = self.held.iter().map(|(_, at)| *at).min();
            next.extend(oldest.map(|at| at + FORWARDED_UNAVAILABLE_AFTER));
        }
        next.extend(self.take_back_at());
        next.extend(self.retry_at);
        // A save to try again (while Redis is unreachable, its return wakes the task).
        let writable = self.shared.bus.status() != crate::bus::BusStatus::Down;
        next.extend(
            self.save_retry
                .filter(|_| self.dirty && writable)
                .map(|(at, _)| at),
        );
        next.extend(
            self.origin
                .oldest_waiting(self.applied_here())
                .map(|at| at + UNAVAILABLE_AFTER),
        );
        next.extend(self.next_presence);
        if self.presence_check {
            next.push(Instant::now());
        }
        next.extend(self.missing_since.map(|at| at + t.missing_grace));
        next.extend(self.draining.as_ref().map(|d| d.1));
        next.extend(self.stopping.as_ref().map(|s| s.1));
        next.into_iter()
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
    }

    /// The last of this server's commands the game as held here has applied.
    fn applied_here(&self) -> Option<u64> {
        self.game
            .as_ref()
            .and_then(|g| g.applied.last(&self.origin.instance))
    }

    /// Answers `unavailable` to the players whose commands waited here too long, and makes
    /// sure those commands are never applied.
    fn answer_waiting(&mut self, now: Instant) {
        let Some(before) = now.checked_sub(UNAVAILABLE_AFTER) else {
            return;
        };
        if self
            .origin
            .oldest_waiting(self.applied_here())
            .is_none_or(|at| at > before)
        {
            return;
        }
        let sessions = self.origin.void_waiting(self.applied_here(), before);
        log::debug!(
            "game {}: {} commands waited over {UNAVAILABLE_AFTER:?} for the game's storage or \
             owner; answered unavailable",
            self.id,
            sessions.len()
        );
        let err = crate::node::NodeError::Unavailable;
        let frame = crate::protocol::error_frame(err.code(), &err.to_string());
        for session in sessions {
            self.shared
                .metrics
                .unavailable
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if session != 0 {
                self.sessions.send_to(session, frame.clone());
            }
        }
    }

    /// The owner cannot write the game: forwarded commands held too long are answered
    /// `unavailable` to their servers, and the number of each is kept: every later copy of it
    /// is answered the same, and none is applied until its server, told, sends it again as
    /// nothing (so a lost answer is answered again, and a number is never acknowledged before
    /// its player was told). Those already applied, or already nothing, are just dropped:
    /// their servers send them again while unacknowledged.
    fn answer_held(&mut self, now: Instant) {
        if !matches!(self.role, Role::Owner(_)) || self.ctx().writable {
            return;
        }
        let Some(before) = now.checked_sub(FORWARDED_UNAVAILABLE_AFTER) else {
            return;
        };
        if !self.held.iter().any(|(_, at)| *at <= before) {
            return;
        }
        let (late, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|(_, at)| *at <= before);
        self.held = keep;
        let err = crate::node::NodeError::Unavailable;
        for (command, _) in late {
            let applied = self
                .game
                .as_ref()
                .and_then(|g| g.applied.last(&command.origin))
                .unwrap_or(0)
                .max(command.after);
            let void = matches!(command.cmd, Cmd::Void | Cmd::Join { .. });
            if command.seq <= applied || void {
                continue;
            }
            if self.refused_at(&command.origin, command.seq).is_none() {
                if self.refused.len() >= MAX_REFUSED {
                    continue;
                }
                self.refused.push((command.origin.clone(), command.seq));
            }
            self.send_error(&command, &err, true);
        }
    }

    /// A replica nobody here uses: no players, nothing waiting.
    fn forgettable(&self) -> bool {
        !self.in_use()
            && self.origin.unacked.is_empty()
            && !self.origin.has_joins()
            && self.held.is_empty()
            && self.draining.is_none()
            && self.stopping.is_none()
    }

    pub(super) fn on_timer(&mut self, now: Instant) {
        let t = self.shared.timing.clone();
        if self.next_presence.is_some_and(|at| at <= now) {
            self.next_presence = None;
            self.presence_check = true;
        }
        if self.next_tick.is_some_and(|at| at <= now) {
            self.countdown_step(now);
        }
        self.answer_waiting(now);
        self.answer_held(now);
        self.take_back(now);
        match self.role {
            Role::Owner(_) if self.last_action + t.idle <= now => return self.terminate(),
            Role::Owner(_) => {}
            _ if self.forgettable() && self.last_action + t.replica_keep <= now => {
                self.done = true;
                return;
            }
            _ => {}
        }
        if !matches!(self.role, Role::Owner(_))
            && self
                .origin
                .oldest_sent()
                .is_some_and(|at| at + self.origin.patience(t.ack_timeout) <= now)
        {
            // Not acknowledged in time: is the owner still there? (Resent once it is known.)
            for pending in self.origin.unacked.iter_mut() {
                pending.sent = None;
            }
            self.doubt();
        }
        if self
            .missing_since
            .is_some_and(|at| at + t.missing_grace <= now)
        {
            log::warn!(
                "game {}: its owner did not save it again; restoring it from this server's copy",
                self.id
            );
            self.missing_since = None;
            self.retry_at = None;
            self.set_role(Role::Resolving { claiming: true });
            self.claim(true);
        } else if self.retry_at.is_some_and(|at| at <= now) {
            self.retry_at = None;
            if matches!(self.role, Role::Resolving { claiming: false }) {
                self.set_role(Role::Resolving { claiming: true });
                self.claim(false);
            }
        }
        self.check_shutdown(now);
    }

    fn countdown_step(&mut self, now: Instant) {
        self.next_tick = None;
        let Some(game) = self.game.as_mut() else {
            return;
        };
        if !matches!(self.role, Role::Owner(_)) {
            return;
        }
        match game.countdown_step() {
            Step::Counting => {
                self.next_tick = Some(now + COUNTDOWN_STEP);
                self.dirty = true;
            }
            Step::Started => self.dirty = true,
            Step::Ignored => return,
        }
        self.layout_changed = true;
    }

    /// Shutdown steps finish when their work is done or their deadline passes.
    pub(super) fn check_shutdown(&mut self, now: Instant) {
        if let Some((_, deadline)) = &self.draining {
            if self.sessions.is_empty() || *deadline <= now {
                if let Some((reply, _)) = self.draining.take() {
                    let _ = reply.send(());
                }
            }
        }
        if let Some((_, deadline, owned)) = &self.stopping {
            let committed = !*owned || (!self.dirty && self.in_flight.is_none());
            let acked = self.origin.unacked.is_empty();
            if (committed && acked) || *deadline <= now {
                if !(committed && acked) {
                    log::warn!(
                        "game {}: stopped before every command was committed ({} waiting)",
                        self.id,
                        self.origin.unacked.len()
                    );
                }
                if let Some((reply, _, owned)) = self.stopping.take() {
                    let _ = reply.send(owned);
                }
                self.done = true;
            }
        }
    }
}
