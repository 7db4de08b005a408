//! One task per game: its state, its local players, its countdown and idle timers, its role.
//!
//! Everything for a game reaches its task as a [`GameMsg`] on one bounded channel: sessions
//! (presses, connects), HTTP handlers (joins, reads), the registry (bus events, renewals,
//! shutdown). Handlers are synchronous; I/O is handed to the bus and answers come back as
//! messages. Games share nothing, so their tasks run in parallel on every core.
//!
//! Owner: applies commands (each numbered command once, see `game::Applied`), runs the
//! countdown, saves through the bus with at most one save in flight, and shows its players a
//! change only once the save is committed — so a state a fenced save refuses is never shown.
//! Replica: shows what the owner publishes and sends its players' commands there, keeping each
//! until a committed state shows it applied (`origin`). The role changes only through the pure
//! functions in `role`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::origin::Origin;
use super::presence::{Reporter, Tracker};
use super::role::{self, Ctx, Role};
use super::sessions::{CloseWhy, SessionId, Sessions};
use super::spectators::Curtain;
use super::wire::{Command, InboxMsg};
use super::{GameInfo, NodeError, Shared};
use crate::bus::{BusStatus, Claim, Fence, Renewal, SaveResult};
use crate::game::{Game, PlayerName};
use crate::protocol::ClientMsg;
use commit::InFlight;

/// Messages queued for one game before senders are told it is overloaded.
pub const GAME_QUEUE: usize = 1024;
/// Forwarded commands held while ownership is being settled.
const MAX_HELD: usize = 4096;

/// Everything a game task handles.
pub enum GameMsg {
    /// The game, once loaded.
    Get(oneshot::Sender<Result<Game, NodeError>>),
    /// A player's socket (spectators watch the game's stage instead).
    Connect {
        session: SessionId,
        robot_id: String,
        sink: Box<dyn super::FrameSink>,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    Disconnect(SessionId),
    /// A local player's command, and when it reached this server.
    Client(SessionId, ClientMsg, Instant),
    /// Add a robot; answered once the robot is committed.
    Join {
        robot_id: String,
        name: PlayerName,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    /// From another server's inbox.
    Inbox(InboxMsg),
    /// Published by another server: committed scores (during `playing`).
    Scores {
        origin: String,
        version: u64,
        scores: Vec<u32>,
        applied: crate::game::Applied,
        /// The version these scores follow, when the owner said.
        base: Option<u64>,
    },
    /// Published by another server: a committed state, or the end.
    Relayed {
        origin: String,
        game: Box<Game>,
    },
    Terminated,
    Saved {
        version: u64,
        result: SaveResult,
    },
    Claimed {
        claim: Claim,
        sent_at: Instant,
    },
    Loaded(Result<Option<String>, crate::bus::BusDown>),
    /// The bus handed the game to `to` (`done`), or could not.
    HandedOver {
        to: String,
        done: bool,
    },
    Renewed {
        sent_at: Instant,
        renewal: Renewal,
    },
    Bus {
        up: bool,
    },
    /// The bus now relays this game's channel (per-game subscriptions): read the state again,
    /// for what was published before.
    Subscribed,
    /// The owner's heartbeat is gone.
    OwnerGone,
    /// The first spectator here came, or the last left: follow the game for them, or not.
    Spectators,
    /// Shutdown, step 1: close local sessions; answer when they are gone.
    Drain(oneshot::Sender<()>),
    /// Shutdown, step 2: stop applying, commit what was applied; answer whether we owned it.
    Stop(oneshot::Sender<bool>),
}

/// How the task starts.
pub enum Start {
    /// A game just created here.
    New(Game),
    /// A game that exists somewhere: find its owner, or take it over.
    Find,
}

/// Messages handled in one turn before the timers, the save and the rest get their turn.
const MAX_PER_TURN: usize = 256;

pub struct GameTask {
    id: String,
    shared: Arc<Shared>,
    info: Arc<GameInfo>,
    rx: mpsc::Receiver<GameMsg>,
    tx: mpsc::WeakSender<GameMsg>,
    game: Option<Game>,
    role: Role,
    /// Replicated through a bus (false: single-server mode, changes commit at once).
    replicated: bool,
    sessions: Sessions,
    /// What the bus was last told of this server's interest in the game ([`Bus::interest`]):
    /// local players, or commands of ours not yet acknowledged.
    ///
    /// [`Bus::interest`]: crate::bus::Bus::interest
    interested: bool,
    origin: Origin,
    /// Forwarded commands waiting for ownership to settle.
    held: Vec<(Command, Instant)>,
    /// Forwarded commands answered `unavailable` here without being applied (origin, number):
    /// a late copy of one is applied as nothing.
    refused: Vec<(String, u64)>,
    /// Applied and not yet sent to the bus.
    dirty: bool,
    /// When the presses applied since the last save reached us.
    presses: Vec<Instant>,
    /// When the command being routed reached this server (a local player's).
    arrival: Option<Instant>,
    in_flight: Option<InFlight>,
    /// The version of the last save sent since this server became owner: the `base` of the
    /// next `scores` message, which other servers holding that version apply as it is.
    last_sent: Option<u64>,
    /// A change was shown unsaved: the next `scores` message names no base, so other servers
    /// read the whole game.
    save_whole: bool,
    /// The newest version shown to local players (it moves only with commits).
    shown: u64,
    /// The last committed state, while the game held here may be ahead of it (applied, not yet
    /// saved): what a welcome and a drain's last frame show.
    committed: Option<Game>,
    /// The commands applied here since the last commit, and when (a replicated game's owner):
    /// answered `unavailable` and taken back if their save is refused for too long.
    uncommitted: Vec<(Command, Instant)>,
    /// A save since the last commit may or may not have been carried out (no answer from
    /// Redis): what it holds cannot be taken back.
    unsure: bool,
    /// Something besides scores changed since the last frame was made: the next frame is a
    /// full `game_update`, not a `scores` frame.
    layout_changed: bool,
    /// Created here and not yet committed (no version bump on the first claim).
    fresh: bool,
    /// Created while Redis was unreachable, and never held by Redis since: it runs alone,
    /// shown uncommitted, until Redis is back (no other server can know it).
    alone: bool,
    /// A save failed: when to try again, and the pause after the next failure. Commands wait
    /// meanwhile.
    save_retry: Option<(Instant, Duration)>,
    /// The fence of our claim (epoch 0: never claimed): every save and end is fenced on it.
    fence: Fence,
    /// Waiting for the game to be loaded or created.
    waiting: Vec<oneshot::Sender<Result<Game, NodeError>>>,
    next_tick: Option<Instant>,
    last_action: Instant,
    retry_at: Option<Instant>,
    /// Where the players are: the game moves to them.
    mover: moving::Mover,
    /// Our copy was offered to restore a game Redis lost: the retry offers it again.
    restoring: bool,
    missing_since: Option<Instant>,
    draining: Option<(oneshot::Sender<()>, Instant)>,
    stopping: Option<(oneshot::Sender<bool>, Instant, bool)>,
    done: bool,
    /// Owner: presence reports and since when robots are away.
    tracker: Tracker,
    /// Not owner: what we last told the owner about our players' sockets.
    reporter: Reporter,
    /// Sockets, reports or the role changed: work presence out again.
    presence_check: bool,
    /// When presence must be worked out again by itself.
    next_presence: Option<Instant>,
}

impl GameTask {
    pub fn new(
        id: String,
        shared: Arc<Shared>,
        info: Arc<GameInfo>,
        rx: mpsc::Receiver<GameMsg>,
        tx: mpsc::WeakSender<GameMsg>,
    ) -> GameTask {
        let replicated = shared.bus.replicated();
        GameTask {
            sessions: Sessions::new(shared.metrics.clone()),
            origin: Origin::new(
                shared.instance.clone(),
                shared.node_id.clone(),
                shared.metrics.clone(),
            ),
            id,
            info,
            rx,
            tx,
            game: None,
            role: Role::Resolving { claiming: false },
            replicated,
            interested: false,
            held: Vec::new(),
            refused: Vec::new(),
            dirty: false,
            presses: Vec::new(),
            arrival: None,
            in_flight: None,
            last_sent: None,
            save_whole: false,
            shown: 0,
            committed: None,
            uncommitted: Vec::new(),
            unsure: false,
            layout_changed: true,
            fresh: false,
            alone: false,
            save_retry: None,
            fence: Fence::default(),
            waiting: Vec::new(),
            next_tick: None,
            last_action: Instant::now(),
            retry_at: None,
            mover: Default::default(),
            restoring: false,
            missing_since: None,
            draining: None,
            stopping: None,
            done: false,
            tracker: Tracker::default(),
            reporter: Reporter::default(),
            presence_check: true,
            next_presence: None,
            shared,
        }
    }

    pub async fn run(mut self, start: Start) {
        self.start(start);
        let sleep = tokio::time::sleep_until(self.next_deadline());
        tokio::pin!(sleep);
        while !self.done {
            tokio::select! {
                msg = self.rx.recv() => {
                    let Some(msg) = msg else { break };
                    self.handle(msg);
                    // Whatever else is queued, before committing once for all of it; at
                    // most a turn's worth, so a stream of messages never starves the timers.
                    for _ in 0..MAX_PER_TURN {
                        if self.done {
                            break;
                        }
                        match self.rx.try_recv() {
                            Ok(msg) => self.handle(msg),
                            Err(_) => break,
                        }
                    }
                }
                () = &mut sleep => self.on_timer(Instant::now()),
            }
            if std::mem::take(&mut self.presence_check) {
                self.presence(Instant::now());
            }
            self.flush();
            // Sessions whose socket was found gone: presence again, at once (see the
            // deadline).
            self.presence_check |= self.sessions.take_dropped();
            self.seed_spectators();
            self.check_shutdown(Instant::now());
            self.info
                .sync(self.game.as_ref().map(|g| g.state), self.in_use());
            self.tell_interest();
            let deadline = self.next_deadline();
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
        }
        if self.interested {
            self.shared.bus.interest(&self.id, false);
        }
        self.info.stage.close(Curtain::Gone);
        self.shared.forget(&self.id, &self.info);
    }

    /// Someone here plays or watches the game.
    fn in_use(&self) -> bool {
        !self.sessions.is_empty() || self.info.stage.watched()
    }

    /// Spectators wait for a first state that no frame shown to players gave them (the game
    /// was loaded, nothing changed since): the game as committed, once it is.
    fn seed_spectators(&mut self) {
        if !self.info.stage.wants_seed() || self.fresh || self.dirty || self.in_flight.is_some() {
            return;
        }
        if let Some(game) = &self.game {
            self.info
                .stage
                .shown(game.version, &crate::protocol::update_frame(game));
        }
    }

    /// Tells the bus when this server starts or stops needing the game's updates: while it
    /// has players here, or commands of ours wait for a committed state to show them, and it
    /// does not own the game (an owner's players see its commits; a server that took the game
    /// from it fences its next save, and then it listens again).
    fn tell_interest(&mut self) {
        let wanted = self.replicated
            && !self.done
            && !matches!(self.role, Role::Owner(_))
            && (self.in_use() || !self.origin.unacked.is_empty() || self.origin.has_joins());
        if wanted != self.interested {
            self.interested = wanted;
            self.shared.bus.interest(&self.id, wanted);
        }
    }

    /// A copy of a game nobody here plays, on a bus that relays only the games we play: it
    /// may be behind, so a reader gets it read again first.
    fn may_be_stale(&self) -> bool {
        matches!(self.role, Role::Replica { .. })
            && !self.interested
            && !self.shared.bus.hears_every_game()
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            now: Instant::now(),
            lease: self.shared.bus.lease(),
            bus_up: self.shared.bus.status() != BusStatus::Down,
            writable: self.shared.bus.status() != BusStatus::Down && self.save_retry.is_none(),
            alone: self.alone,
        }
    }

    fn start(&mut self, start: Start) {
        match start {
            Start::New(game) => {
                self.origin.continue_after(&game);
                for robot in &game.robots {
                    let t = &self.shared.timing.presence;
                    self.tracker.joined(&robot.id, Instant::now(), t);
                }
                self.game = Some(game);
                self.fresh = true;
                if self.replicated {
                    self.set_role(Role::Resolving { claiming: true });
                    self.claim(true);
                } else {
                    let forever = Instant::now() + Duration::from_secs(86_400 * 365);
                    self.set_role(Role::Owner(role::Owner {
                        lease_until: forever,
                        confirming: false,
                    }));
                    self.dirty = true;
                }
            }
            Start::Find => {
                self.set_role(Role::Resolving { claiming: true });
                self.claim(false);
            }
        }
    }

    /// Every command passes through here: the registry's copy (a lock, a clone) is touched
    /// only when who owns the game changes, not when a lease is extended.
    fn set_role(&mut self, role: Role) {
        let changed = match (&self.role, &role) {
            (Role::Owner(_), Role::Owner(_)) => false,
            (a, b) => a != b,
        };
        if changed {
            let owned = matches!(role, Role::Owner(_));
            let owner = match &role {
                Role::Replica { owner } => Some(owner.clone()),
                _ => None,
            };
            self.info.set_role(owned, owner);
            self.presence_check = true;
        }
        self.role = role;
    }

    fn handle(&mut self, msg: GameMsg) {
        match msg {
            GameMsg::Get(reply) => match &self.game {
                Some(_) if self.may_be_stale() => {
                    self.waiting.push(reply);
                    if self.waiting.len() == 1 {
                        self.reload();
                    }
                }
                Some(game) if !self.fresh || self.shown > 0 => {
                    let _ = reply.send(Ok(game.clone()));
                }
                _ => self.waiting.push(reply),
            },
            GameMsg::Connect {
                session,
                robot_id,
                sink,
                reply,
            } => {
                let connected = self.connect(session, robot_id, sink);
                if reply.send(connected).is_err() {
                    // Its request gave up waiting (timed out, or its client went): no session
                    // task will ever say this socket closed.
                    self.sessions.remove(session);
                }
            }
            GameMsg::Disconnect(session) => {
                self.sessions.remove(session);
                self.presence_check = true;
            }
            GameMsg::Client(session, msg, at) => self.client(session, msg, at),
            GameMsg::Join {
                robot_id,
                name,
                reply,
            } => self.join(robot_id, name, reply),
            GameMsg::Inbox(msg) => self.inbox(msg),
            GameMsg::Relayed { origin, game } => self.relayed(&origin, *game),
            GameMsg::Scores {
                origin,
                version,
                scores,
                applied,
                base,
            } => self.relayed_scores(&origin, version, scores, applied, base),
            GameMsg::Terminated => self.end(NodeError::NotFound, true),
            GameMsg::Saved { version, result } => self.saved(version, result),
            GameMsg::Claimed { claim, sent_at } => self.claimed(claim, sent_at),
            GameMsg::Loaded(result) => self.loaded(result),
            GameMsg::HandedOver { to, done } => self.handed_over(to, done),
            GameMsg::Renewed { sent_at, renewal } => {
                let (role, actions) = role::on_renewed(&self.role, renewal, sent_at, self.ctx());
                self.set_role(role);
                self.act(&actions);
                if self.stopping.is_some() {
                    self.stop_when_settled();
                }
            }
            GameMsg::Bus { up } => {
                let (role, actions) = role::on_bus(&self.role, up);
                self.set_role(role);
                self.act(&actions);
            }
            GameMsg::Subscribed => {
                if matches!(self.role, Role::Replica { .. }) {
                    self.reload();
                }
            }
            GameMsg::OwnerGone => self.doubt(),
            GameMsg::Spectators => {}
            GameMsg::Drain(reply) => {
                let last = self.shown_frame();
                self.sessions.close_all(CloseWhy::GoingAway, last.as_ref());
                self.info.stage.close(Curtain::GoingAway);
                self.draining = Some((reply, Instant::now() + self.shared.timing.drain));
            }
            GameMsg::Stop(reply) => {
                let owned = matches!(self.role, Role::Owner(_));
                self.stopping = Some((reply, Instant::now() + self.shared.timing.drain, owned));
                self.stop_when_settled();
            }
        }
    }
}

mod commands;
mod commit;
mod moving;
mod ownership;
mod presence;
mod timers;
