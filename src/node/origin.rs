//! The sending side of players' commands: numbering, and keeping each command until the owner
//! has committed it.
//!
//! Every command of a local player gets the next number of this process for this game and
//! waits here until a committed state shows it applied (`game.applied`): the owner's save, or
//! the update it published. Until then it is sent again, in order, whenever the owner changes
//! or does not answer in time — repeats are harmless, the owner applies each number once. A
//! command is thus applied exactly once, or its player is told it could not be.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::wire::{Cmd, Command};
use super::{Metrics, NodeError};
use crate::game::Game;

/// Commands kept for one game before new ones are refused (`unavailable`).
pub const MAX_UNACKED: usize = 4096;

pub struct Pending {
    pub command: Command,
    /// When it was last sent to another server (`None`: not sent yet, or to be sent again).
    pub sent: Option<Instant>,
    /// It was sent to another server at least once: an owner may have applied it, so it is
    /// never answered `unavailable` here (only its owner can say it was not applied).
    pub ever_sent: bool,
    /// When its player sent it.
    pub at: Instant,
    /// A press: when it reached this server (for `press_to_ack`).
    pub arrived: Option<Instant>,
}

type JoinReply = oneshot::Sender<Result<(), NodeError>>;

pub struct Origin {
    /// This process: `node_id/nonce`.
    pub instance: String,
    node_id: String,
    last_seq: u64,
    pub unacked: VecDeque<Pending>,
    /// Joins waiting for their robot to be committed: (number, robot id, reply).
    joins: Vec<(u64, String, JoinReply)>,
    /// Where an acknowledged press's wait is recorded (`press_to_ack`).
    metrics: Arc<Metrics>,
    /// How long the owner takes to acknowledge a command we send (a moving average): resends
    /// and doubts about the owner wait a few of these, so that a slow Redis is not sent the
    /// same commands again and again.
    round_trip: Duration,
}

/// Patience with the owner is at most this many times the usual (`ack_timeout`, `resend_gap`).
const MOST_PATIENCE: u32 = 6;

impl Origin {
    pub fn new(instance: String, node_id: String, metrics: Arc<Metrics>) -> Origin {
        Origin {
            instance,
            node_id,
            last_seq: 0,
            unacked: VecDeque::new(),
            joins: Vec::new(),
            metrics,
            round_trip: Duration::ZERO,
        }
    }

    /// How long to wait for the owner where `usual` is the wait on a quick Redis: three
    /// measured round trips, at least `usual`, at most six times it.
    pub fn patience(&self, usual: Duration) -> Duration {
        (self.round_trip * 3).clamp(usual, usual * MOST_PATIENCE)
    }

    /// Numbers continue after whatever the game already applied from us (a replica forgotten
    /// and loaded again must not reuse numbers).
    pub fn continue_after(&mut self, game: &Game) {
        if let Some(last) = game.applied.last(&self.instance) {
            self.last_seq = self.last_seq.max(last);
        }
    }

    /// Up to which number our commands are acknowledged (all but those kept here).
    pub fn acknowledged(&self) -> u64 {
        self.unacked
            .front()
            .map_or(self.last_seq, |p| p.command.seq - 1)
    }

    pub fn is_full(&self) -> bool {
        self.unacked.len() >= MAX_UNACKED
    }

    /// The next command; kept until acknowledged when `keep` (a replicated game). `arrived`:
    /// a press, and when it reached this server.
    pub fn number(
        &mut self,
        robot_id: &str,
        session: u64,
        cmd: Cmd,
        keep: bool,
        arrived: Option<Instant>,
    ) -> Command {
        let after = self.acknowledged();
        self.last_seq += 1;
        let command = Command {
            origin: self.instance.clone(),
            from: self.node_id.clone(),
            seq: self.last_seq,
            after,
            robot_id: robot_id.to_owned(),
            session,
            cmd,
        };
        if keep {
            self.unacked.push_back(Pending {
                command: command.clone(),
                sent: None,
                ever_sent: false,
                at: Instant::now(),
                arrived,
            });
        }
        command
    }

    /// Players' commands that waited here since `before` or longer, never sent anywhere and not
    /// applied (numbers above `applied`): each becomes [`Cmd::Void`], so it is never applied,
    /// and its session is returned to be told. Joins keep their own answer.
    pub fn void_waiting(&mut self, applied: Option<u64>, before: Instant) -> Vec<u64> {
        let mut told = Vec::new();
        for pending in self.unacked.iter_mut() {
            let command = &mut pending.command;
            let waiting = !pending.ever_sent && Some(command.seq) > applied;
            if waiting
                && pending.at <= before
                && !matches!(command.cmd, Cmd::Void | Cmd::Join { .. })
            {
                command.cmd = Cmd::Void;
                told.push(command.session);
            }
        }
        told
    }

    /// The owner answered command `seq` `unavailable` without applying it: it is sent again
    /// as nothing. True when it was still waiting (not already voided or acknowledged).
    pub fn void(&mut self, seq: u64) -> bool {
        let Some(pending) = self.unacked.iter_mut().find(|p| p.command.seq == seq) else {
            return false;
        };
        if matches!(pending.command.cmd, Cmd::Void | Cmd::Join { .. }) {
            return false;
        }
        pending.command.cmd = Cmd::Void;
        pending.sent = None;
        true
    }

    /// When the oldest command still waiting here (never sent, not applied, not voided) was
    /// sent by its player.
    pub fn oldest_waiting(&self, applied: Option<u64>) -> Option<Instant> {
        self.unacked
            .iter()
            .filter(|p| !p.ever_sent && Some(p.command.seq) > applied)
            .filter(|p| !matches!(p.command.cmd, Cmd::Void | Cmd::Join { .. }))
            .map(|p| p.at)
            .min()
    }

    pub fn wait_join(&mut self, seq: u64, robot_id: String, reply: JoinReply) {
        self.joins.push((seq, robot_id, reply));
    }

    /// `game` is committed: forget what it shows applied; answer joins it covers.
    pub fn acked_by(&mut self, game: &Game) {
        if let Some(upto) = game.applied.last(&self.instance) {
            self.ack_upto(upto, game);
        }
    }

    /// Running alone (Redis down): answer the joins `game` shows applied, keeping their
    /// commands until Redis takes them.
    pub fn answer_joins(&mut self, game: &Game) {
        let Some(upto) = game.applied.last(&self.instance) else {
            return;
        };
        let (done, waiting): (Vec<_>, Vec<_>) =
            self.joins.drain(..).partition(|(seq, _, _)| *seq <= upto);
        self.joins = waiting;
        for (_, robot_id, reply) in done {
            let result = match game.robot(&robot_id) {
                Some(_) => Ok(()),
                None => Err(NodeError::join_refused(game)),
            };
            let _ = reply.send(result);
        }
    }

    /// Our commands up to `upto` are committed; `game` tells whether joins among them worked.
    pub fn ack_upto(&mut self, upto: u64, game: &Game) {
        let now = Instant::now();
        while self.unacked.front().is_some_and(|p| p.command.seq <= upto) {
            let Some(pending) = self.unacked.pop_front() else {
                break;
            };
            if let Some(arrived) = pending.arrived {
                self.metrics.press_to_ack.observe(now - arrived);
            }
            if let Some(sent) = pending.sent {
                self.round_trip = (self.round_trip * 7 + (now - sent)) / 8;
            }
        }
        let (done, waiting): (Vec<_>, Vec<_>) =
            self.joins.drain(..).partition(|(seq, _, _)| *seq <= upto);
        self.joins = waiting;
        for (_, robot_id, reply) in done {
            let result = if game.robot(&robot_id).is_some() {
                Ok(())
            } else {
                // Refused, and its answer did not reach us: say why as the game shows it.
                Err(NodeError::join_refused(game))
            };
            let _ = reply.send(result);
        }
    }

    /// The owner refused command `seq`: answer its join, if it was one.
    pub fn refused(&mut self, seq: u64, error: NodeError) {
        if let Some(i) = self.joins.iter().position(|(s, _, _)| *s == seq) {
            let (_, _, reply) = self.joins.remove(i);
            let _ = reply.send(Err(error));
        }
    }

    /// The oldest command sent and not acknowledged: when it was sent.
    pub fn oldest_sent(&self) -> Option<Instant> {
        self.unacked.iter().filter_map(|p| p.sent).min()
    }

    pub fn has_joins(&self) -> bool {
        !self.joins.is_empty()
    }

    /// The game is gone: every waiting join fails.
    pub fn fail_all(&mut self, error: NodeError) {
        for (_, _, reply) in self.joins.drain(..) {
            let _ = reply.send(Err(error.clone()));
        }
        self.unacked.clear();
    }
}
