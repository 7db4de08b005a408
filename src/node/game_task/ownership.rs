//! Carrying out the role's actions: claims, takeovers, saves coming back, relays, the end.

use std::sync::atomic::Ordering;

use tokio::time::Instant;

use super::commit::Full;
use super::GameTask;
use crate::bus::{Claim, Fallback, RESTORE_WINDOW};
use crate::game::{Game, State};
use crate::node::role::{self, Action, Role};
use crate::node::wire::terminated_message;
use crate::node::NodeError;
use crate::protocol::ServerMsg;

/// Versions an owner gives start above its claim's epoch times this: room for a billion
/// changes per ownership, and an operator reads `3000000057` as epoch 3, change 57.
const EPOCH_STRIDE: u64 = 1_000_000_000;

impl GameTask {
    pub(super) fn act(&mut self, actions: &[Action]) {
        for action in actions {
            match *action {
                Action::Claim { fallback } => self.claim(fallback),
                Action::TakeOver => {} // done by `claimed`, which holds the claimed state
                Action::StepDown => self.step_down(),
                Action::Renew => self.renew_now(),
                Action::ApplyHeld => self.apply_waiting(),
                Action::Resend => self.resend(),
                Action::Resave => self.dirty = true,
                Action::Reload => self.reload(),
                Action::ShowCommitted => {}
            }
        }
    }

    /// Asks the bus who owns the game (taking it if nobody alive does). `fallback`: offer our
    /// copy, as every claim does once it was offered, until the game is restored.
    pub(super) fn claim(&mut self, fallback: bool) {
        let Some(tx) = self.tx.upgrade() else {
            return;
        };
        let fallback = fallback || self.restoring;
        let fresh = self.fresh;
        let offer = self.game.as_ref().filter(|_| fallback).map(|g| {
            let json = g.stored_json();
            if fresh {
                Fallback::New(json)
            } else {
                Fallback::Copy {
                    json,
                    version: g.version,
                }
            }
        });
        // Above the epoch of every version we know: a claim made after Redis forgot the game
        // still numbers its versions above what our players were shown.
        let known = self.game.as_ref().map_or(0, |g| g.version).max(self.shown);
        let floor = known / EPOCH_STRIDE + 1;
        let (bus, id) = (self.shared.bus.clone(), self.id.clone());
        tokio::spawn(async move {
            let sent_at = Instant::now();
            let claim = bus.claim(&id, offer, floor).await;
            let _ = tx.send(super::GameMsg::Claimed { claim, sent_at }).await;
        });
    }

    pub(super) fn claimed(&mut self, claim: Claim, sent_at: Instant) {
        if matches!(self.role, Role::Owner(_))
            && matches!(claim, Claim::Gone | Claim::Restoring | Claim::Failed)
        {
            return; // the answer to an earlier claim, overtaken by one that took the game
        }
        let was = self.role.clone();
        if !matches!(claim, Claim::Gone | Claim::Failed | Claim::Restoring) {
            self.restoring = false; // settled
        }
        let (role, _) = role::on_claim(&self.role, &claim, sent_at, self.ctx());
        self.set_role(role);
        match claim {
            Claim::Claimed { stored, fence } => match serde_json::from_str::<Game>(&stored) {
                Ok(game) => {
                    self.fence = fence;
                    self.take_over(game, &was);
                }
                Err(e) => {
                    log::warn!("game {}: stored state is unreadable: {e}", self.id);
                    self.end(NodeError::NotFound, false);
                }
            },
            Claim::OwnedBy(_) => {
                if self.game.is_none() {
                    self.reload();
                } else {
                    self.resend();
                    self.redirect_held();
                }
            }
            // Ended everywhere (its tombstone stands): whatever this server missed of the end,
            // its copy is not brought back.
            Claim::Ended => {
                if self.game.is_some() {
                    log::info!("game {}: it ended; not restoring it", self.id);
                }
                self.end(NodeError::NotFound, true)
            }
            Claim::Gone if self.game.is_none() || self.fresh => {
                self.end(NodeError::NotFound, false)
            }
            // Redis does not have it, but we do: its owner may be about to save it again
            // (Redis came back empty). Wait; after a grace period, restore it from our copy.
            // Our copy is on offer (this answers a claim sent before it was).
            Claim::Gone if self.restoring => {
                self.retry_at.get_or_insert(Instant::now() + RESTORE_WINDOW);
            }
            Claim::Gone => {
                if self.missing_since.is_none() {
                    log::warn!(
                        "game {}: missing from Redis; waiting for its owner to save it",
                        self.id
                    );
                    self.missing_since = Some(Instant::now());
                }
                self.retry_at = Some(Instant::now() + self.shared.timing.retry);
            }
            // Redis lost the game and the copies offered are being weighed: offer ours again
            // after the window (the newest one's server restores it; we then find it owned).
            Claim::Restoring => {
                self.restoring = true;
                self.retry_at.get_or_insert(Instant::now() + RESTORE_WINDOW);
            }
            Claim::Failed if self.fresh => {
                // Created while Redis is down: run alone; saved and claimed when it is back.
                self.alone = true;
                self.set_role(Role::Owner(role::Owner {
                    lease_until: Instant::now(),
                    confirming: false,
                }));
                self.dirty = true;
                self.apply_waiting();
            }
            Claim::Failed if self.game.is_none() => self.end(NodeError::Unavailable, false),
            Claim::Failed => self.retry_at = Some(Instant::now() + self.shared.timing.retry),
        }
    }

    /// We own the game now: carry on from what Redis has — or from our own copy when it is
    /// newer (Redis restored from an older snapshot, or failed over to a replica that lagged:
    /// what we hold was committed, or is ours to commit, and players may have seen it). Our
    /// own commands it does not show applied are applied again on top (each once). The
    /// version passes anything our players were shown and starts above `epoch × 10⁹`, above
    /// every version an earlier owner (an earlier epoch) could have given, so one version
    /// number is one state on every screen.
    fn take_over(&mut self, stored: Game, was: &Role) {
        // Idle from now on, not since this server last routed a command of its own.
        self.last_action = Instant::now();
        if !self.fresh {
            self.mover.moved(Instant::now()); // (a game's creation is not a move)
        }
        self.missing_since = None;
        self.retry_at = None;
        self.alone = false;
        self.save_retry = None;
        let mut game = match self.game.take() {
            Some(mine) if mine.version > stored.version => {
                log::warn!(
                    "game {}: Redis holds version {}, this server {}; keeping this server's",
                    self.id,
                    stored.version,
                    mine.version
                );
                mine
            }
            _ => stored,
        };
        let floor = self.fence.epoch.saturating_mul(EPOCH_STRIDE);
        // What was committed before this owner's first save (Redis's state, or the copy our
        // players were shown).
        self.committed = Some(game.clone());
        self.uncommitted.clear();
        self.unsure = false;
        if self.fresh {
            game.version = game.version.max(floor);
        } else {
            game.version = game.version.max(self.shown).max(floor) + 1;
            if !matches!(was, Role::Owner(_)) {
                log::info!("game {}: node {} owns it now", self.id, self.shared.node_id);
            }
        }
        self.origin.continue_after(&game);
        self.next_tick = (game.state == State::CountingDown)
            .then(|| Instant::now() + super::timers::COUNTDOWN_STEP);
        self.game = Some(game);
        self.dirty = true;
        self.layout_changed = true;
        self.last_sent = None;
        if !self.fresh {
            // Before the waiting commands: `start` counts who is here.
            self.presence_taken_over(Instant::now());
            self.presence_check = false;
            self.presence(Instant::now());
        }
        self.apply_waiting();
        // Taken while stopping (our players' last commands needed an owner): commit them,
        // then stop like any owner.
        if let Some(stopping) = &mut self.stopping {
            stopping.2 = true;
            self.set_role(Role::Stopping);
        }
    }

    /// Applies what waited for ownership: forwarded commands held here, and our own players'
    /// commands not yet committed (those already applied are skipped by their numbers).
    pub(super) fn apply_waiting(&mut self) {
        if !matches!(self.role, Role::Owner(_)) {
            return;
        }
        for (command, _) in std::mem::take(&mut self.held) {
            self.apply(command);
        }
        let own: Vec<_> = self
            .origin
            .unacked
            .iter()
            .map(|p| p.command.clone())
            .collect();
        for command in own {
            self.apply(command);
        }
    }

    pub(super) fn step_down(&mut self) {
        log::warn!(
            "game {}: another server owns it now; stepping down",
            self.id
        );
        self.next_tick = None;
        self.in_flight = None;
        self.last_sent = None;
        self.dirty = false;
        self.uncommitted.clear();
        self.unsure = false;
    }

    /// Our commands go to the owner again; forwarded ones we hold go back to their senders.
    pub(super) fn resend(&mut self) {
        if let Role::Replica { owner } = &self.role {
            let owner = owner.clone();
            // Everything, whenever it was last sent: the owner changed or came back.
            for pending in self.origin.unacked.iter_mut() {
                pending.sent = None;
            }
            self.send_unacked(&owner);
            self.redirect_held();
        }
    }

    fn redirect_held(&mut self) {
        let owner = match &self.role {
            Role::Replica { owner } => Some(owner.clone()),
            _ => None,
        };
        for (command, _) in std::mem::take(&mut self.held) {
            self.redirect(&command.from, owner.clone());
        }
    }

    fn renew_now(&mut self) {
        let Some(tx) = self.tx.upgrade() else {
            return;
        };
        let (bus, id) = (self.shared.bus.clone(), self.id.clone());
        tokio::spawn(async move {
            let (sent_at, answers) = bus.renew(vec![id]).await;
            if let Some(renewal) = answers.first().copied() {
                let _ = tx.send(super::GameMsg::Renewed { sent_at, renewal }).await;
            }
        });
    }

    pub(super) fn reload(&mut self) {
        let Some(tx) = self.tx.upgrade() else {
            return;
        };
        let (bus, id) = (self.shared.bus.clone(), self.id.clone());
        tokio::spawn(async move {
            let loaded = bus.load(&id).await;
            let _ = tx.send(super::GameMsg::Loaded(loaded)).await;
        });
    }

    pub(super) fn loaded(&mut self, result: Result<Option<String>, crate::bus::BusDown>) {
        match result {
            Ok(Some(json)) => match serde_json::from_str::<Game>(&json) {
                Ok(game) => {
                    let newer = self.game.as_ref().is_none_or(|g| game.version > g.version);
                    if newer && !matches!(self.role, Role::Owner(_)) {
                        self.adopt(game);
                    }
                    self.missing_since = None;
                }
                Err(e) => log::warn!("game {}: stored state is unreadable: {e}", self.id),
            },
            Ok(None) if self.game.is_none() => self.end(NodeError::NotFound, false),
            Ok(None) => {
                if self.missing_since.is_none() && !matches!(self.role, Role::Owner(_)) {
                    log::warn!(
                        "game {}: missing from Redis; waiting for its owner to save it",
                        self.id
                    );
                    self.missing_since = Some(Instant::now());
                }
            }
            Err(_) if self.game.is_none() => self.end(NodeError::Unavailable, false),
            Err(_) => {}
        }
        // Readers waiting for a copy read again (see `may_be_stale`) get what we have now.
        if self.game.is_some() && !self.done && !matches!(self.role, Role::Owner(_)) {
            self.settled();
        }
    }

    /// A committed state from elsewhere: show it, and forget our commands it shows applied.
    fn adopt(&mut self, game: Game) {
        self.restoring = false; // the game is back
        self.origin.continue_after(&game);
        self.origin.acked_by(&game);
        let frame = crate::protocol::update_frame(&game);
        self.layout_changed = false;
        let version = game.version;
        self.game = Some(game);
        self.show(version, &frame, Full::This);
        self.settled();
    }

    pub(super) fn relayed(&mut self, origin: &str, game: Game) {
        if origin == self.shared.node_id {
            return;
        }
        self.shared
            .metrics
            .relayed_in
            .fetch_add(1, Ordering::Relaxed);
        let newer = self.game.as_ref().is_none_or(|g| game.version > g.version);
        let was_owner = matches!(self.role, Role::Owner(_));
        let (role, actions) = role::on_relay(&self.role, origin, newer);
        self.set_role(role);
        if was_owner && newer {
            log::warn!("game {}: node {origin} published a newer version", self.id);
        }
        if newer && !matches!(self.role, Role::Owner(_)) {
            self.missing_since = None;
            self.adopt(game);
        } else if !was_owner {
            // Not newer, but it still acknowledges our commands.
            self.origin.acked_by(&game);
        }
        self.act(&actions);
    }

    /// Committed scores from the owner: applied to our copy when they follow it (our copy is
    /// the save they were made on, `base`; without it, the version just before), else the
    /// stored game is read again (an update was missed).
    pub(super) fn relayed_scores(
        &mut self,
        origin: &str,
        version: u64,
        scores: Vec<u32>,
        applied: crate::game::Applied,
        base: Option<u64>,
    ) {
        if origin == self.shared.node_id || matches!(self.role, Role::Owner(_)) {
            return;
        }
        self.shared
            .metrics
            .relayed_in
            .fetch_add(1, Ordering::Relaxed);
        let (role, actions) = role::on_relay(&self.role, origin, true);
        self.set_role(role);
        let Some(game) = self.game.as_mut() else {
            return self.reload();
        };
        if version <= game.version {
            return;
        }
        let follows = base.unwrap_or(version - 1) == game.version
            && scores.len() == game.robots.len()
            && game.state == State::Playing;
        if !follows {
            self.act(&actions);
            return self.reload();
        }
        for (robot, score) in game.robots.iter_mut().zip(&scores) {
            robot.score = *score;
        }
        game.version = version;
        game.applied = applied;
        self.missing_since = None;
        let frame = crate::protocol::scores_frame(version, scores.into_iter());
        if let Some(game) = &self.game {
            self.origin.acked_by(game);
        }
        self.show(version, &frame, Full::Current);
        self.act(&actions);
    }

    pub(super) fn doubt(&mut self) {
        let (role, actions) = role::on_owner_doubt(&self.role);
        self.set_role(role);
        self.act(&actions);
    }

    /// The game is over here: players told, sessions closed, waiters answered, task ended.
    pub(super) fn end(&mut self, why: NodeError, tell_players: bool) {
        if tell_players {
            let frame = ServerMsg::Terminated.to_frame();
            self.sessions
                .close_all(crate::node::sessions::CloseWhy::Terminated, Some(&frame));
            self.info.stage.close(crate::node::Curtain::Ended);
        }
        for reply in self.waiting.drain(..) {
            let _ = reply.send(Err(why.clone()));
        }
        self.origin.fail_all(why);
        self.done = true;
    }

    /// Idle: end the game everywhere.
    pub(super) fn terminate(&mut self) {
        log::info!(
            "game {}: idle for {:?}; ending it",
            self.id,
            self.shared.timing.idle
        );
        if self.replicated {
            let publish = terminated_message(&self.shared.node_id, &self.id);
            self.shared.bus.terminate(&self.id, publish, self.fence);
        }
        self.end(NodeError::NotFound, true);
    }
}
