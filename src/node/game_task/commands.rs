//! Players' commands: numbering, routing, applying (committing them is in `commit`).

use std::sync::atomic::Ordering;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{GameTask, MAX_HELD};
use crate::game::{Admit, Left, PlayerName, RuleError, Step};
use crate::node::role::{self, Route};
use crate::node::sessions::SessionId;
use crate::node::wire::{Cmd, Command, InboxMsg};
use crate::node::{NodeError, OVERLOAD_AGE};
use crate::protocol::{error_frame, ClientMsg, ServerMsg};

/// Presses timed per save for `press_to_broadcast` (a bound, not a limit on presses).
const MAX_TIMED_PRESSES: usize = 1024;

impl GameTask {
    pub(super) fn connect(
        &mut self,
        session: SessionId,
        robot_id: String,
        mut sink: Box<dyn crate::node::FrameSink>,
    ) -> Result<(), NodeError> {
        if self.stopping.is_some() || self.draining.is_some() {
            return Err(NodeError::Unavailable);
        }
        // The last committed state: never one still being saved (a fenced save would leave
        // this socket with a state that never existed).
        let game = self.last_committed().ok_or(NodeError::Unavailable)?;
        let robot = game.robot(&robot_id).ok_or(RuleError::UnknownRobot)?;
        let welcome = ServerMsg::Welcome {
            robot_id: Some(robot.id.as_str()),
            admin: robot.admin,
            game: game.view(),
        }
        .to_frame();
        sink.try_frame(welcome)
            .map_err(|_| NodeError::Unavailable)?;
        self.sessions.make_room_for(&robot_id);
        self.presence_check = true;
        self.sessions.add(session, robot_id, sink);
        Ok(())
    }

    pub(super) fn client(&mut self, session: SessionId, msg: ClientMsg, at: Instant) {
        let Some(robot_id) = self.sessions.robot_of(session).map(str::to_owned) else {
            return;
        };
        if msg == ClientMsg::ScorePoint {
            let metrics = &self.shared.metrics;
            metrics.presses.fetch_add(1, Ordering::Relaxed);
            // Waited too long in our queue: the game cannot keep up. Say so, never apply it
            // seconds late.
            if at.elapsed() > OVERLOAD_AGE {
                metrics.overloaded.fetch_add(1, Ordering::Relaxed);
                let err = NodeError::Overloaded;
                self.sessions
                    .send_to(session, error_frame(err.code(), &err.to_string()));
                return;
            }
        }
        let cmd = match msg {
            ClientMsg::ScorePoint => Cmd::ScorePoint,
            ClientMsg::StartCountdown => Cmd::StartCountdown,
            ClientMsg::PlayAgain => Cmd::PlayAgain,
            ClientMsg::Leave => Cmd::Leave,
        };
        if self.origin.is_full() {
            let err = NodeError::Unavailable;
            self.sessions
                .send_to(session, error_frame(err.code(), &err.to_string()));
            return;
        }
        let arrived = (cmd == Cmd::ScorePoint).then_some(at);
        let command = self
            .origin
            .number(&robot_id, session, cmd, self.replicated, arrived);
        self.arrival = Some(at);
        self.route(command, true);
        self.arrival = None;
    }

    pub(super) fn join(
        &mut self,
        robot_id: String,
        name: PlayerName,
        reply: oneshot::Sender<Result<(), NodeError>>,
    ) {
        if self.origin.is_full() || self.stopping.is_some() {
            let _ = reply.send(Err(NodeError::Unavailable));
            return;
        }
        let cmd = Cmd::Join {
            name: name.as_str().to_owned(),
        };
        let command = self.origin.number(&robot_id, 0, cmd, self.replicated, None);
        self.origin.wait_join(command.seq, robot_id, reply);
        self.route(command, true);
    }

    pub(super) fn inbox(&mut self, msg: InboxMsg) {
        match msg {
            InboxMsg::Command { command, .. } => self.route(command, false),
            InboxMsg::CommandError {
                seq,
                session,
                error,
                message,
                unapplied,
                ..
            } => {
                // An `unapplied` answer may come for every copy sent: the player hears it once,
                // when its command is turned into nothing.
                let first = !unapplied || self.origin.void(seq);
                if first {
                    self.sessions
                        .send_to(session, error_frame(&error, &message));
                }
                if unapplied && first {
                    self.shared
                        .metrics
                        .unavailable
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                self.origin.refused(seq, NodeError::from_code(&error));
            }
            InboxMsg::Presence {
                origin,
                counter,
                robots,
                arrived,
                ..
            } => {
                if matches!(self.role, crate::node::role::Role::Owner(_)) {
                    self.tracker
                        .report(&origin, counter, robots, &arrived, Instant::now());
                    self.presence_check = true;
                }
            }
            InboxMsg::Take { .. } => self.take(),
            InboxMsg::Redirect { owner, .. } => {
                let (role, actions) =
                    role::on_redirect(&self.role, owner.as_deref(), &self.shared.node_id);
                self.set_role(role);
                self.act(&actions);
            }
        }
    }

    /// Sends a command where it is applied. A local one is already kept in `origin` (in a
    /// replicated game) and is sent again whenever the owner changes.
    pub(super) fn route(&mut self, command: Command, local: bool) {
        self.last_action = Instant::now();
        let (role, route) = role::route(&self.role, self.ctx());
        self.set_role(role);
        match route {
            Route::Apply => self.apply(command),
            Route::Hold(actions) => {
                if !local {
                    if self.held.len() < MAX_HELD {
                        self.held.push((command, Instant::now()));
                    } else {
                        self.redirect(&command.from, None);
                    }
                }
                self.act(&actions);
            }
            Route::Forward(owner) if local => self.send_unacked(&owner),
            Route::Forward(owner) => self.redirect(&command.from, Some(owner)),
            Route::Refuse if local => self.answer_error(&command, NodeError::Unavailable),
            Route::Refuse => self.redirect(&command.from, None),
        }
    }

    pub(super) fn redirect(&self, node: &str, owner: Option<String>) {
        let msg = InboxMsg::Redirect {
            game_id: self.id.clone(),
            owner,
        };
        self.shared.bus.send_to(node, msg.encode());
    }

    /// Sends every local command not yet acknowledged to `owner`, in order.
    pub(super) fn send_unacked(&mut self, owner: &str) {
        let now = Instant::now();
        let after = self.origin.acknowledged();
        let gap = self.origin.patience(self.shared.timing.resend_gap);
        for pending in self.origin.unacked.iter_mut() {
            if pending.sent.is_some_and(|at| now - at < gap) {
                continue;
            }
            let mut command = pending.command.clone();
            command.after = after;
            let msg = InboxMsg::Command {
                game_id: self.id.clone(),
                command,
            };
            if !self.shared.bus.send_to(owner, msg.encode()) {
                return;
            }
            pending.sent = Some(now);
            pending.ever_sent = true;
            self.shared
                .metrics
                .forwarded_out
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Applies a command to the game we own: each numbered command once, in order.
    pub(super) fn apply(&mut self, mut command: Command) {
        let refused = self.refused_at(&command.origin, command.seq);
        let Some(game) = self.game.as_mut() else {
            return;
        };
        if refused.is_some() && command.cmd != Cmd::Void {
            if command.origin != self.origin.instance {
                // Answered `unavailable` and never applied: until its server, told, sends it
                // again as nothing, every copy is answered again (the answer may have been
                // lost) and its number stays unacknowledged.
                self.send_error(&command, &NodeError::Unavailable, true);
                return;
            }
            command.cmd = Cmd::Void;
        }
        match game
            .applied
            .admit(&command.origin, command.seq, command.after)
        {
            Admit::Apply => {
                if let Some(i) = refused {
                    self.refused.swap_remove(i);
                }
            }
            // A repeat, or an earlier one is missing: the sender resends, in order.
            Admit::Repeat | Admit::OutOfOrder => return,
        }
        if self.replicated && matches!(self.role, crate::node::role::Role::Owner(_)) {
            self.uncommitted.push((command.clone(), Instant::now()));
        }
        // Recording the number changes what is stored even when the rules change nothing.
        self.dirty = true;
        if matches!(command.cmd, Cmd::StartCountdown) && self.presence_check {
            // A socket that just opened here counts for `start`.
            self.presence_check = false;
            self.presence(Instant::now());
        }
        let Some(game) = self.game.as_mut() else {
            return;
        };
        let robot = command.robot_id.as_str();
        let mut ended = false;
        let result = match &command.cmd {
            Cmd::ScorePoint => {
                let m = &self.shared.metrics;
                match command.from == self.shared.node_id {
                    true => m.applied_here.fetch_add(1, Ordering::Relaxed),
                    false => m.applied_forwarded.fetch_add(1, Ordering::Relaxed),
                };
                if game.score_point(robot) && self.presses.len() < MAX_TIMED_PRESSES {
                    self.presses.push(self.arrival.unwrap_or_else(Instant::now));
                }
                Ok(())
            }
            Cmd::StartCountdown => game.start_countdown(robot).map(|step| {
                if step == Step::Counting {
                    self.next_tick = Some(Instant::now() + super::timers::COUNTDOWN_STEP);
                }
            }),
            Cmd::PlayAgain => game.play_again(robot),
            Cmd::Leave => game.leave(robot).map(|left| {
                log::info!("game {}: robot {robot} left", self.id);
                ended = left == Left::Empty;
            }),
            Cmd::Void => Ok(()),
            Cmd::Join { name } => {
                let before = game.robots.len();
                let joined =
                    PlayerName::parse(name).and_then(|n| game.join(command.robot_id.clone(), n));
                if joined.is_ok() && game.robots.len() > before {
                    log::info!("game {}: robot {robot} joined", self.id);
                    let t = &self.shared.timing.presence;
                    self.tracker.joined(robot, Instant::now(), t);
                }
                joined
            }
        };
        self.presence_check |= matches!(command.cmd, Cmd::Leave | Cmd::Join { .. });
        let scores_only = matches!(command.cmd, Cmd::ScorePoint | Cmd::Void);
        if !scores_only || game.state != crate::game::State::Playing {
            self.layout_changed = true;
        }
        if let Some(winner) = game.winner.as_deref().and_then(|w| game.robot(w)) {
            if matches!(command.cmd, Cmd::ScorePoint) && winner.score == game.winning_score {
                log::info!("game {}: {} wins", self.id, winner.name);
            }
        }
        if let Err(e) = result {
            self.answer_error(&command, e.into());
        }
        if ended {
            // The last player left: nobody is in the game any more.
            self.terminate();
        }
    }

    /// Tells a command's player it was refused (here, or on the server it came from).
    pub(super) fn answer_error(&mut self, command: &Command, error: NodeError) {
        if command.origin == self.origin.instance {
            if command.session != 0 {
                let frame = error_frame(error.code(), &error.to_string());
                self.sessions.send_to(command.session, frame);
            }
            self.origin.refused(command.seq, error);
        } else {
            self.send_error(command, &error, false);
        }
    }

    /// Tells the server a forwarded command came from that it was refused (`unapplied`: not
    /// applied, and its number is to be sent again as nothing).
    pub(super) fn send_error(&self, command: &Command, error: &NodeError, unapplied: bool) {
        let msg = InboxMsg::CommandError {
            game_id: self.id.clone(),
            seq: command.seq,
            session: command.session,
            error: error.code().to_owned(),
            message: error.to_string(),
            unapplied,
        };
        self.shared.bus.send_to(&command.from, msg.encode());
    }

    /// Where `(origin, seq)` is among the forwarded commands answered `unavailable` here.
    pub(super) fn refused_at(&self, origin: &str, seq: u64) -> Option<usize> {
        self.refused
            .iter()
            .position(|(o, s)| o == origin && *s == seq)
    }
}
