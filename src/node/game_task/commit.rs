//! Committing what the owner applied: one save in flight through the bus, shown to local
//! players once Redis has taken it (at once in single-server mode, or for a game Redis has
//! never held). A failed save is tried again after a pause that grows (with jitter), and
//! nothing is shown meanwhile.

use std::time::Duration;

use bytestring::ByteString;
use tokio::time::Instant;

use super::GameTask;
use crate::bus::{BusStatus, Save, SaveOutcome, SaveResult};
use crate::node::role::{self, Action, Role};
use crate::node::wire::{scores_message, update_message, Cmd};
use crate::node::NodeError;
use crate::protocol::{error_frame, scores_frame, update_frame};

/// Where a session that fell behind gets the full state of the version shown.
pub(in crate::node) enum Full<'a> {
    /// The frame shown is a full update.
    This,
    /// The game as held is that version (committed): serialise it.
    Current,
    /// Made at save time (when a session was behind), if it was.
    Saved(Option<&'a ByteString>),
}

/// A save sent and not answered yet.
pub(super) struct InFlight {
    version: u64,
    /// When the presses it includes reached us (for `press_to_broadcast`).
    presses: Vec<Instant>,
    /// What players see once it is committed.
    frame: ByteString,
    /// The state it saves (what a welcome shows once it is committed).
    game: crate::game::Game,
    /// The same state in full, when a session is behind and will need it.
    full: Option<ByteString>,
    /// The last of our own commands it includes.
    own_seq: Option<u64>,
    /// How many of the commands applied since the last commit it includes.
    covers: usize,
}

impl GameTask {
    /// Commits what was applied: at once alone, else through the bus (one save in flight).
    pub(super) fn flush(&mut self) {
        if !self.dirty
            || !matches!(
                self.role,
                crate::node::role::Role::Owner(_) | crate::node::role::Role::Stopping
            )
        {
            return;
        }
        if self.stopping.is_some() && !self.stopping.as_ref().is_some_and(|s| s.2) {
            return;
        }
        if !self.replicated {
            self.dirty = false;
            self.show_current();
            if let Some(game) = &self.game {
                self.origin.acked_by(game);
            }
            self.settled();
            return;
        }
        if self.in_flight.is_some() || self.save_retry.is_some_and(|(at, _)| Instant::now() < at) {
            return;
        }
        let Some(game) = &self.game else {
            return;
        };
        if self.shared.bus.status() == BusStatus::Down {
            if self.alone {
                // Redis has never held this game: show now, save when Redis is back.
                self.show_current();
                self.settled();
            }
            return;
        }
        let scores_only = !self.layout_changed && game.state == crate::game::State::Playing;
        // Redis stores the whole game as held here; other servers hear only what changed when
        // that is the scores (`base`: the save they must hold to apply it).
        let stored = game.stored_json();
        let (frame, publish) = if scores_only {
            let frame = scores_frame(game.version, game.robots.iter().map(|r| r.score));
            let base = self.last_sent.filter(|_| !self.save_whole);
            (frame, scores_message(&self.shared.node_id, game, base))
        } else {
            let publish = update_message(&self.shared.node_id, &stored);
            (update_frame(game), publish)
        };
        // A session that fell behind catches up with a full view of what is committed.
        let full = match self.sessions.any_behind() {
            true if scores_only => Some(update_frame(game)),
            true => Some(frame.clone()),
            false => None,
        };
        let save = Save {
            version: game.version,
            publish,
            stored,
            fence: self.fence,
        };
        self.layout_changed = false;
        let version = game.version;
        let own_seq = game.applied.last(&self.origin.instance);
        let game = game.clone();
        self.dirty = false;
        match self.shared.bus.save(&self.id, save) {
            SaveOutcome::Pending => {
                self.last_sent = Some(version);
                self.save_whole = false;
                self.in_flight = Some(InFlight {
                    version,
                    presses: std::mem::take(&mut self.presses),
                    frame,
                    full,
                    own_seq,
                    game,
                    covers: self.uncommitted.len(),
                })
            }
            SaveOutcome::Down => {
                self.dirty = true;
                if self.alone {
                    self.show_current();
                    self.settled();
                }
            }
        }
    }

    /// Keeps the pause before the next save after a failure (growing from 100 ms to 2 s, with
    /// jitter), with one log line when saves start failing and one when they go through again.
    fn save_outcome(&mut self, result: SaveResult) {
        const FIRST: Duration = Duration::from_millis(100);
        const MOST: Duration = Duration::from_secs(2);
        match (result, self.save_retry) {
            (SaveResult::Failed | SaveResult::Refused, retry) => {
                let pause = retry.map_or(FIRST, |(_, p)| (p * 2).min(MOST));
                if retry.is_none() {
                    log::warn!(
                        "game {}: cannot save it to Redis; its commands wait, and saving is \
                         tried again",
                        self.id
                    );
                }
                self.shared
                    .metrics
                    .save_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let jitter = pause.mul_f64(rand::random::<f64>() * 0.5);
                self.save_retry = Some((Instant::now() + pause + jitter, pause));
            }
            (SaveResult::Saved, Some(_)) => {
                log::info!("game {}: saved to Redis again", self.id);
                self.save_retry = None;
            }
            (_, Some(_)) => self.save_retry = None,
            (_, None) => {}
        }
    }

    /// Shows the current state to local players, committed or not (single-server mode, or a
    /// game Redis has never held).
    pub(super) fn show_current(&mut self) {
        // What is shown unsaved (a layout change, say) is not in Redis: save it whole.
        self.save_whole = true;
        if let Some(game) = &self.game {
            self.origin.answer_joins(game);
            if game.version > self.shown {
                let frame = self.frame_of(game);
                self.layout_changed = false;
                self.show(game.version, &frame, Full::Current);
            }
        }
        let presses = std::mem::take(&mut self.presses);
        self.broadcast_timed(&presses);
    }

    /// Records how long the presses now shown took from reaching us (`press_to_broadcast`).
    pub(super) fn broadcast_timed(&self, presses: &[Instant]) {
        if presses.is_empty() {
            return;
        }
        let now = Instant::now();
        for at in presses {
            let took = now.saturating_duration_since(*at);
            self.shared.metrics.press_to_broadcast.observe(took);
        }
    }

    /// A `scores` frame when only scores changed during `playing`, else a full update.
    pub(super) fn frame_of(&self, game: &crate::game::Game) -> ByteString {
        if !self.layout_changed && game.state == crate::game::State::Playing {
            scores_frame(game.version, game.robots.iter().map(|r| r.score))
        } else {
            update_frame(game)
        }
    }

    pub(super) fn show(&mut self, version: u64, frame: &ByteString, full: Full<'_>) {
        if version > self.shown {
            self.shown = version;
            // Only when someone needs it: a full view costs a serialisation.
            let resync = if self.sessions.any_behind() {
                match full {
                    Full::This => Some(frame.clone()),
                    Full::Current => self
                        .game
                        .as_ref()
                        .filter(|g| g.version == version)
                        .map(update_frame),
                    Full::Saved(saved) => saved.cloned(),
                }
            } else {
                None
            };
            self.sessions.send_all(frame, resync.as_ref());
            self.info.stage.shown(version, frame);
        }
    }

    /// The last committed frame, for sessions being closed (so they end on the newest state
    /// that exists).
    pub(super) fn shown_frame(&self) -> Option<ByteString> {
        self.last_committed().map(update_frame)
    }

    /// The last committed state: the game held here when it is no further than what was shown
    /// (versions shown move only with commits), else the state of the last commit (or, after a
    /// takeover, the state the game was taken over from).
    pub(super) fn last_committed(&self) -> Option<&crate::game::Game> {
        let game = self.game.as_ref()?;
        if game.version <= self.shown {
            return Some(game);
        }
        Some(self.committed.as_ref().unwrap_or(game))
    }

    /// The game is ready for readers (created and committed, or loaded).
    pub(super) fn settled(&mut self) {
        if let Some(game) = &self.game {
            self.fresh = false;
            for reply in self.waiting.drain(..) {
                let _ = reply.send(Ok(game.clone()));
            }
        }
    }

    pub(super) fn saved(&mut self, version: u64, result: SaveResult) {
        let Some(in_flight) = self.in_flight.take_if(|f| f.version == version) else {
            return;
        };
        if let Some((_, _, true)) = &self.stopping {
            // The final save of a stopping owner: nothing more to show. Refused: another server
            // has the game, and our players' commands go there. Failed: tried again (after the
            // usual pause) until the stop's deadline, so the last presses are not given up.
            match (result, in_flight.own_seq, &self.game) {
                (SaveResult::Saved, Some(seq), Some(game)) => self.origin.ack_upto(seq, game),
                (SaveResult::Saved, _, _) => {}
                // Another server has the game now: our players' last commands go there.
                // (Nobody's claim: Redis lost the game; our copy is offered.)
                (SaveResult::Fenced | SaveResult::Unowned, _, _) => {
                    self.step_down();
                    if let Some(stopping) = &mut self.stopping {
                        stopping.2 = false;
                    }
                    self.set_role(Role::Resolving { claiming: true });
                    self.claim(result == SaveResult::Unowned);
                }
                (SaveResult::Failed | SaveResult::Refused, _, _) => {
                    self.save_outcome(result);
                    self.dirty = true;
                }
            }
            return;
        }
        match result {
            SaveResult::Saved => {
                self.unsure = false;
                let covered = in_flight.covers.min(self.uncommitted.len());
                self.uncommitted.drain(..covered);
            }
            SaveResult::Failed => self.unsure = true,
            _ => {}
        }
        let recovered = result == SaveResult::Saved && self.save_retry.is_some();
        self.save_outcome(result);
        let (role, actions) = role::on_saved(&self.role, result);
        self.set_role(role);
        if recovered {
            // Commands that waited for the storage, still ours to apply.
            if let Role::Owner(o) = &self.role {
                if Instant::now() < o.lease_until && !o.confirming {
                    self.apply_waiting();
                }
            }
        }
        if actions.contains(&Action::ShowCommitted) {
            self.committed = Some(in_flight.game);
            self.show(
                in_flight.version,
                &in_flight.frame,
                Full::Saved(in_flight.full.as_ref()),
            );
            self.broadcast_timed(&in_flight.presses);
            if let (Some(seq), Some(game)) = (in_flight.own_seq, &self.game) {
                self.origin.ack_upto(seq, game);
            }
            self.settled();
        }
        if result.failed() {
            self.dirty = true;
        }
        self.act(&actions);
    }

    /// When the commands applied since the last commit are to be taken back, if they are.
    pub(super) fn take_back_at(&self) -> Option<Instant> {
        let (_, oldest) = self.uncommitted.first()?;
        let stuck = !self.unsure
            && self.in_flight.is_none()
            && self.save_retry.is_some()
            && self.committed.is_some()
            && matches!(self.role, Role::Owner(_))
            && !self
                .uncommitted
                .iter()
                .any(|(c, _)| matches!(c.cmd, Cmd::Join { .. }));
        stuck.then_some(*oldest + super::timers::TAKEN_BACK_AFTER)
    }

    /// The commands applied into a save that Redis keeps refusing are not left unanswered:
    /// once the oldest has waited [`TAKEN_BACK_AFTER`](super::timers::TAKEN_BACK_AFTER), the
    /// game goes back to its last committed state (under a new version: the refused ones were
    /// never shown, and no number is reused) and each of them is answered `unavailable` and
    /// never applied: ours are sent again as nothing, other servers' are refused until their
    /// servers send them again as nothing. Not when a save's outcome is unknown (Redis did not
    /// answer: it may have carried it out), nor over a join (answered on its own).
    pub(super) fn take_back(&mut self, now: Instant) {
        if self.take_back_at().is_none_or(|at| at > now) {
            return;
        }
        let (Some(mut back), Some(ahead)) = (self.committed.clone(), self.game.as_ref()) else {
            return;
        };
        back.version = ahead.version + 1;
        self.game = Some(back);
        self.dirty = true;
        self.layout_changed = true;
        self.save_whole = true;
        self.presses.clear();
        let err = NodeError::Unavailable;
        for (command, _) in std::mem::take(&mut self.uncommitted) {
            if command.cmd == Cmd::Void {
                continue;
            }
            if command.origin == self.origin.instance {
                if self.origin.void(command.seq) && command.session != 0 {
                    let frame = error_frame(err.code(), &err.to_string());
                    self.sessions.send_to(command.session, frame);
                }
            } else if self.refused_at(&command.origin, command.seq).is_none() {
                self.refused.push((command.origin.clone(), command.seq));
                self.send_error(&command, &err, true);
            }
            self.shared
                .metrics
                .unavailable
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl GameTask {
    /// Shutdown: an owner first applies every command that reached it (confirming its lease
    /// if it must), then stops applying; what it applied is committed before it lets go.
    pub(super) fn stop_when_settled(&mut self) {
        match &self.role {
            Role::Owner(o) if o.confirming => {} // again when the lease is answered
            Role::Owner(_) => {
                self.apply_waiting();
                let (role, _) = role::on_stop(&self.role);
                self.set_role(role);
            }
            _ => {}
        }
    }
}
