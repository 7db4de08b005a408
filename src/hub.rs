//! The hub: one task per server that owns every game this server knows and every local session.
//!
//! Everything reaches it as a [`Command`] on one bounded channel: HTTP handlers and sessions
//! through [`HubHandle`], timers (countdown steps, the sweep), and the cluster tasks (updates
//! relayed from other servers, commands forwarded to games this server owns, replies). Handlers
//! are synchronous: they call the pure rules in `game`, serialise each update once and share the
//! bytes with every local session (`try_send`: a session whose queue is full is dropped, never
//! waited for), and hand saves to the cluster writer without waiting on Redis.
//!
//! A game here is either **owned** (this server applies its commands, runs its countdown and saves
//! it) or a **replica** (another server owns it; this server keeps the last state it published,
//! shows it to local players and forwards their commands to the owner). Single-server mode owns
//! every game. See `cluster` for how ownership is taken, fenced and handed over.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytestring::ByteString;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::cluster::{self, Cluster, InboxMsg, Relayed};
use crate::game::{Game, GameConfig, PlayerName, RuleError, State, Step};
use crate::protocol::{error_frame, update_frame, ClientMsg, ServerMsg};

/// Commands queued for the hub before senders wait.
const HUB_QUEUE: usize = 8192;
/// Frames queued for one session before it counts as too slow and is dropped.
pub const SESSION_QUEUE: usize = 256;
/// Commands held for a game while its owner is being found, before more are refused.
const MAX_PENDING: usize = 4096;
/// How long a replica with no local players is kept (it may be wanted again soon).
const REPLICA_KEEP: Duration = Duration::from_secs(60);
/// How long a join forwarded to another server may wait for its answer.
pub const REMOTE_TIMEOUT: Duration = Duration::from_secs(4);

pub type SessionId = u64;

/// Frames and instructions for one WebSocket session.
#[derive(Debug, Clone)]
pub enum Outbound {
    Frame(ByteString),
    /// Close the socket: the game ended, the server is stopping, or the session fell behind.
    Close(CloseWhy),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseWhy {
    Terminated,
    GoingAway,
}

/// Why the hub refused a request from HTTP or a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("No such game")]
    NotFound,
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("The game server is busy or unreachable, try again")]
    Unavailable,
}

impl HubError {
    pub fn code(&self) -> &'static str {
        match self {
            HubError::NotFound => "not_found",
            HubError::Rule(e) => e.code(),
            HubError::Unavailable => "unavailable",
        }
    }
}

/// A freshly created game.
#[derive(Debug, Clone)]
pub struct Created {
    pub game_id: String,
    pub robot_id: String,
}

/// Counters read by `/metrics` and `/health` without asking the hub.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open WebSocket sessions on this server.
    pub connections: AtomicU64,
    /// Games created here (the cluster-wide count lives in Redis).
    pub games_created: AtomicU64,
    /// Frames queued to sessions: the fan-out volume.
    pub updates_sent: AtomicU64,
    /// Presses from local players that passed the rate limit.
    pub presses: AtomicU64,
    /// Sessions dropped for not reading their updates.
    pub sessions_dropped_slow: AtomicU64,
    /// Updates from other servers applied to replicas here.
    pub relayed_in: AtomicU64,
    /// Commands sent on to the owning server.
    pub forwarded_out: AtomicU64,
}

/// Which server applies a game's commands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    Owner,
    /// Another server owns it (`None`: not known yet, being resolved).
    Replica {
        owner: Option<String>,
    },
}

struct Entry {
    /// `None` only while a replica is being loaded.
    game: Option<Game>,
    role: Role,
    sessions: HashSet<SessionId>,
    /// Last player action (owner: drives idle expiry; replica: drives forgetting it).
    last_action: Instant,
    /// Player commands waiting for the owner to be found, in arrival order.
    pending: Vec<InboxMsg>,
    /// A claim/probe for this game is under way.
    resolving: bool,
    /// Since when Redis has not had this replica's game (it restarted empty, or the game
    /// ended while we were cut off). After `missing_grace` we restore it from our copy.
    missing_since: Option<Instant>,
}

impl Entry {
    fn new(game: Option<Game>, role: Role) -> Entry {
        Entry {
            game,
            role,
            sessions: HashSet::new(),
            last_action: Instant::now(),
            pending: Vec::new(),
            resolving: false,
            missing_since: None,
        }
    }
}

struct Session {
    game_id: String,
    robot_id: String,
    outbox: mpsc::Sender<Outbound>,
}

/// Everything the hub handles, from every source.
pub enum Command {
    Create {
        name: PlayerName,
        config: GameConfig,
        reply: oneshot::Sender<Result<Created, HubError>>,
    },
    Join {
        game_id: String,
        robot_id: String,
        name: PlayerName,
        reply: oneshot::Sender<Result<(), HubError>>,
    },
    /// The game as this server has it, if it has it.
    Get {
        game_id: String,
        reply: oneshot::Sender<Option<Game>>,
    },
    /// Start collecting relayed updates for a game about to be loaded (subscribe before read).
    Watch {
        game_id: String,
    },
    /// Nothing could be loaded: forget a watched entry that has no state.
    Unwatch {
        game_id: String,
    },
    /// A game loaded from Redis: owned (we claimed it, `owner` is `None`) or a replica.
    Adopt {
        game: Game,
        owner: Option<String>,
        reply: oneshot::Sender<()>,
    },
    /// A fresher copy of a replica's game, read from Redis.
    Merge {
        game: Game,
    },
    Connect {
        game_id: String,
        robot_id: String,
        outbox: mpsc::Sender<Outbound>,
        reply: oneshot::Sender<Result<SessionId, HubError>>,
    },
    Disconnect {
        session: SessionId,
    },
    Client {
        session: SessionId,
        msg: ClientMsg,
    },
    CountdownTick {
        game_id: String,
        version: u64,
    },
    Sweep,
    Stats {
        reply: oneshot::Sender<HubStats>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    /// A message published on `game:<id>` (decoded only if we hold that game).
    Relay {
        game_id: String,
        payload: Vec<u8>,
    },
    /// A message from another server's hub (or our own reply path).
    Inbox(InboxMsg),
    /// A forwarded command found no one listening at the owner: find the owner again and
    /// re-route the command.
    OwnerUnreachable {
        game_id: String,
        msg: InboxMsg,
    },
    /// A claim/probe finished.
    Resolved {
        game_id: String,
        outcome: Resolution,
    },
    /// A save was refused because another server owns the game now.
    Fenced {
        game_id: String,
    },
    /// Redis is back (maybe empty): save every owned game again.
    RedisUp,
}

/// The answer of a claim: we own the game now (with its stored state), another server does,
/// it does not exist, or Redis could not be asked.
#[derive(Debug)]
pub enum Resolution {
    Claimed(Box<Game>),
    OwnedBy(String),
    Gone,
    Failed,
}

/// A snapshot for `/metrics`.
#[derive(Debug, Default, Clone)]
pub struct HubStats {
    pub owned: usize,
    pub replicas: usize,
    pub by_state: [usize; 4],
}

/// A cloneable handle with typed async methods; hides the channel and oneshots.
#[derive(Clone)]
pub struct HubHandle {
    tx: mpsc::Sender<Command>,
    pub metrics: Arc<Metrics>,
    cluster: Option<Cluster>,
}

impl HubHandle {
    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.ok()?;
        rx.await.ok()
    }

    async fn send(&self, cmd: Command) {
        let _ = self.tx.send(cmd).await;
    }

    pub fn sender(&self) -> mpsc::Sender<Command> {
        self.tx.clone()
    }

    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    pub async fn create(&self, name: PlayerName, config: GameConfig) -> Result<Created, HubError> {
        self.call(|reply| Command::Create {
            name,
            config,
            reply,
        })
        .await
        .unwrap_or(Err(HubError::Unavailable))
    }

    async fn local(&self, game_id: &str) -> Option<Game> {
        let game_id = game_id.to_owned();
        self.call(|reply| Command::Get { game_id, reply })
            .await
            .flatten()
    }

    /// The game as this server knows it, or as stored in Redis; takes nothing over.
    pub async fn game(&self, game_id: &str) -> Result<Game, HubError> {
        if let Some(game) = self.local(game_id).await {
            return Ok(game);
        }
        match &self.cluster {
            None => Err(HubError::NotFound),
            Some(cluster) => match cluster.load_state(game_id).await {
                Ok(Some(game)) => Ok(game),
                Ok(None) => Err(HubError::NotFound),
                Err(()) => Err(HubError::Unavailable),
            },
        }
    }

    /// Makes sure this server holds the game (owned or as a replica): loads it from Redis, and
    /// takes it over when its owner is gone.
    pub async fn ensure(&self, game_id: &str) -> Result<Game, HubError> {
        if let Some(game) = self.local(game_id).await {
            return Ok(game);
        }
        let cluster = self.cluster.as_ref().ok_or(HubError::NotFound)?;
        // Subscribe before reading: updates relayed while we load are kept, newest wins.
        self.send(Command::Watch {
            game_id: game_id.to_owned(),
        })
        .await;
        let loaded = match cluster.claim(game_id, None).await {
            Resolution::Claimed(game) => Ok((*game, None)),
            Resolution::OwnedBy(owner) => match cluster.load_state(game_id).await {
                Ok(Some(game)) => Ok((game, Some(owner))),
                Ok(None) => Err(HubError::NotFound),
                Err(()) => Err(HubError::Unavailable),
            },
            Resolution::Gone => Err(HubError::NotFound),
            Resolution::Failed => Err(HubError::Unavailable),
        };
        match loaded {
            Ok((game, owner)) => {
                self.call(|reply| Command::Adopt { game, owner, reply })
                    .await;
                self.local(game_id).await.ok_or(HubError::Unavailable)
            }
            Err(e) => {
                self.send(Command::Unwatch {
                    game_id: game_id.to_owned(),
                })
                .await;
                Err(e)
            }
        }
    }

    /// Adds a robot named `name` to the game, wherever it is owned; returns the robot's id.
    pub async fn join(&self, game_id: &str, name: PlayerName) -> Result<String, HubError> {
        self.ensure(game_id).await?;
        let robot_id = new_robot_id();
        let (id, game_id) = (robot_id.clone(), game_id.to_owned());
        let answer = tokio::time::timeout(
            REMOTE_TIMEOUT,
            self.call(|reply| Command::Join {
                game_id,
                robot_id: id,
                name,
                reply,
            }),
        )
        .await;
        match answer {
            Ok(Some(result)) => result.map(|()| robot_id),
            _ => Err(HubError::Unavailable),
        }
    }

    /// The game and the robot `robot_id` in it. A replica may lag the owner by a moment
    /// (the robot joined through another server): then read Redis once more.
    pub async fn robot(&self, game_id: &str, robot_id: &str) -> Result<Game, HubError> {
        let game = self.ensure(game_id).await?;
        if game.robot(robot_id).is_some() {
            return Ok(game);
        }
        let cluster = self.cluster.as_ref().ok_or(RuleError::UnknownRobot)?;
        match cluster.load_state(game_id).await {
            Ok(Some(fresh)) if fresh.robot(robot_id).is_some() => {
                self.send(Command::Merge {
                    game: fresh.clone(),
                })
                .await;
                Ok(fresh)
            }
            Ok(_) => Err(RuleError::UnknownRobot.into()),
            Err(()) => Err(HubError::Unavailable),
        }
    }

    pub async fn connect(
        &self,
        game_id: &str,
        robot_id: &str,
        outbox: mpsc::Sender<Outbound>,
    ) -> Result<SessionId, HubError> {
        let (game_id, robot_id) = (game_id.to_owned(), robot_id.to_owned());
        self.call(|reply| Command::Connect {
            game_id,
            robot_id,
            outbox,
            reply,
        })
        .await
        .unwrap_or(Err(HubError::Unavailable))
    }

    pub async fn disconnect(&self, session: SessionId) {
        self.send(Command::Disconnect { session }).await;
    }

    pub async fn client(&self, session: SessionId, msg: ClientMsg) {
        self.send(Command::Client { session, msg }).await;
    }

    pub async fn stats(&self) -> HubStats {
        self.call(|reply| Command::Stats { reply })
            .await
            .unwrap_or_default()
    }

    /// Closes every session with "going away", saves owned games and gives up their ownership.
    pub async fn shutdown(&self) {
        self.call(|reply| Command::Shutdown { reply }).await;
    }
}

fn new_robot_id() -> String {
    nanoid::nanoid!(12)
}

/// The hub's state; runs in its own task ([`Hub::run`]).
pub struct Hub {
    rx: mpsc::Receiver<Command>,
    tx: mpsc::Sender<Command>,
    /// This server's node id: the `from` of commands that started here.
    me: String,
    games: HashMap<String, Entry>,
    sessions: HashMap<SessionId, Session>,
    next_session: SessionId,
    next_req: u64,
    /// Joins started here, waiting for the owner's answer (local or remote).
    join_waiters: HashMap<u64, (oneshot::Sender<Result<(), HubError>>, Instant)>,
    metrics: Arc<Metrics>,
    cluster: Option<Cluster>,
    idle_timeout: Duration,
    /// How often to expire idle games, renew leases and check on other owners.
    sweep_every: Duration,
    /// How long a replica waits for the owner to save a game Redis lost before restoring it
    /// from its own copy (an owner that is alive reconnects and saves well within this).
    missing_grace: Duration,
    stopping: bool,
}

impl Hub {
    pub fn new(
        node_id: String,
        cluster: Option<Cluster>,
        metrics: Arc<Metrics>,
        idle_timeout: Duration,
        lease: Duration,
    ) -> (Hub, HubHandle) {
        let (tx, rx) = mpsc::channel(HUB_QUEUE);
        let handle = HubHandle {
            tx: tx.clone(),
            metrics: metrics.clone(),
            cluster: cluster.clone(),
        };
        let hub = Hub {
            rx,
            tx,
            me: node_id,
            games: HashMap::new(),
            sessions: HashMap::new(),
            next_session: 1,
            next_req: 1,
            join_waiters: HashMap::new(),
            metrics,
            cluster,
            idle_timeout,
            sweep_every: (idle_timeout / 4)
                .min(lease / 3)
                .clamp(Duration::from_millis(100), Duration::from_secs(2)),
            missing_grace: lease * 3,
            stopping: false,
        };
        (hub, handle)
    }

    /// Handles commands until every handle is gone. Runs the sweep timer alongside.
    pub async fn run(mut self) {
        let sweep_every = self.sweep_every;
        let tx = self.tx.clone();
        let sweeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(sweep_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if tx.send(Command::Sweep).await.is_err() {
                    break;
                }
            }
        });
        while let Some(cmd) = self.rx.recv().await {
            self.handle(cmd);
            self.metrics
                .connections
                .store(self.sessions.len() as u64, Ordering::Relaxed);
        }
        sweeper.abort();
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Create {
                name,
                config,
                reply,
            } => {
                let _ = reply.send(self.create(name, config));
            }
            Command::Join {
                game_id,
                robot_id,
                name,
                reply,
            } => {
                if !self.games.contains_key(&game_id) {
                    let _ = reply.send(Err(HubError::NotFound));
                    return;
                }
                let req = self.next_req;
                self.next_req += 1;
                self.join_waiters.insert(req, (reply, Instant::now()));
                let msg = InboxMsg::Join {
                    game_id: game_id.clone(),
                    robot_id,
                    name: name.as_str().to_owned(),
                    from: self.me.clone(),
                    req,
                };
                self.route(&game_id, msg);
            }
            Command::Get { game_id, reply } => {
                let game = self.games.get(&game_id).and_then(|e| e.game.clone());
                let _ = reply.send(game);
            }
            Command::Watch { game_id } => {
                self.games
                    .entry(game_id)
                    .or_insert_with(|| Entry::new(None, Role::Replica { owner: None }));
            }
            Command::Unwatch { game_id } => {
                let empty = self
                    .games
                    .get(&game_id)
                    .is_some_and(|e| e.game.is_none() && e.sessions.is_empty());
                if empty {
                    self.games.remove(&game_id);
                }
            }
            Command::Adopt { game, owner, reply } => {
                self.adopt(game, owner);
                let _ = reply.send(());
            }
            Command::Merge { game } => {
                let game_id = game.id.clone();
                let newer = self.games.get(&game_id).is_some_and(|e| {
                    e.role != Role::Owner
                        && e.game.as_ref().is_none_or(|g| g.version < game.version)
                });
                if newer {
                    self.commit(&game_id, game);
                }
            }
            Command::Connect {
                game_id,
                robot_id,
                outbox,
                reply,
            } => {
                let _ = reply.send(self.connect(game_id, robot_id, outbox));
            }
            Command::Disconnect { session } => self.disconnect(session),
            Command::Client { session, msg } => {
                let Some(s) = self.sessions.get(&session) else {
                    return;
                };
                if msg == ClientMsg::ScorePoint {
                    self.metrics.presses.fetch_add(1, Ordering::Relaxed);
                }
                let game_id = s.game_id.clone();
                let cmd = InboxMsg::Command {
                    game_id: game_id.clone(),
                    robot_id: s.robot_id.clone(),
                    command: msg,
                    from: self.me.clone(),
                    session,
                };
                self.route(&game_id, cmd);
            }
            Command::CountdownTick { game_id, version } => self.countdown_tick(&game_id, version),
            Command::Sweep => self.sweep(),
            Command::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
            Command::Shutdown { reply } => self.shutdown(reply),
            Command::Relay { game_id, payload } => {
                if self.games.contains_key(&game_id) {
                    if let Some(relayed) = cluster::decode_published(&game_id, &payload, &self.me) {
                        self.relay(&game_id, relayed);
                    }
                }
            }
            Command::Inbox(msg) => self.inbox(msg),
            Command::OwnerUnreachable { game_id, msg } => {
                let Some(entry) = self.games.get_mut(&game_id) else {
                    return;
                };
                if let Role::Replica { owner } = &mut entry.role {
                    *owner = None;
                }
                entry.pending.insert(0, msg);
                self.resolve(&game_id);
            }
            Command::Resolved { game_id, outcome } => self.resolved(&game_id, outcome),
            Command::Fenced { game_id } => {
                if let Some(entry) = self.games.get_mut(&game_id) {
                    if entry.role == Role::Owner {
                        log::warn!("game {game_id}: another server owns it now; stepping down");
                        entry.role = Role::Replica { owner: None };
                        self.resolve(&game_id);
                    }
                }
            }
            Command::RedisUp => self.resync(),
        }
    }

    /// Redis is back (maybe empty, maybe after missing updates): owners save their games
    /// again; replicas read theirs again, since what the owner published while we were
    /// away, or before we re-subscribed, never reached us. The subscription is already up,
    /// so nothing newer can slip between the read and the relay (newest version wins).
    fn resync(&mut self) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let mut replicas = Vec::new();
        for (id, entry) in &self.games {
            match (&entry.role, &entry.game) {
                (Role::Owner, Some(game)) => cluster.save(id, game),
                (Role::Replica { .. }, Some(_)) => replicas.push(id.clone()),
                _ => {}
            }
        }
        if replicas.is_empty() {
            return;
        }
        let tx = self.tx.clone();
        tokio::spawn(async move {
            for id in replicas {
                if let Ok(Some(game)) = cluster.load_state(&id).await {
                    let _ = tx.send(Command::Merge { game }).await;
                }
            }
        });
    }

    fn create(&mut self, name: PlayerName, config: GameConfig) -> Result<Created, HubError> {
        if self.stopping {
            return Err(HubError::Unavailable);
        }
        let game_id = loop {
            let id = nanoid::nanoid!(8, &GAME_ID_ALPHABET);
            if !self.games.contains_key(&id) {
                break id;
            }
        };
        let robot_id = new_robot_id();
        let game = Game::new(game_id.clone(), config, robot_id.clone(), name);
        log::info!("game {game_id}: created on node {}", self.me);
        self.metrics.games_created.fetch_add(1, Ordering::Relaxed);
        if let Some(cluster) = &self.cluster {
            cluster.count_game_created();
        }
        self.games
            .insert(game_id.clone(), Entry::new(None, Role::Owner));
        self.commit(&game_id, game);
        Ok(Created { game_id, robot_id })
    }

    /// Stores a changed game, sends it to local players and, when owned, saves and publishes it.
    fn commit(&mut self, game_id: &str, game: Game) {
        let Some(entry) = self.games.get_mut(game_id) else {
            return;
        };
        if entry.role == Role::Owner {
            if let Some(cluster) = &self.cluster {
                cluster.save(game_id, &game);
            }
        }
        let frame = update_frame(&game);
        entry.game = Some(game);
        let sessions: Vec<SessionId> = entry.sessions.iter().copied().collect();
        self.fan_out(&sessions, &frame);
    }

    /// Sends one shared frame to these sessions; drops any that cannot keep up.
    fn fan_out(&mut self, sessions: &[SessionId], frame: &ByteString) {
        let mut slow = Vec::new();
        for id in sessions {
            if let Some(session) = self.sessions.get(id) {
                match session.outbox.try_send(Outbound::Frame(frame.clone())) {
                    Ok(()) => {
                        self.metrics.updates_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => slow.push(*id),
                }
            }
        }
        for id in slow {
            log::info!("session {id}: dropped, it does not keep up with updates");
            self.metrics
                .sessions_dropped_slow
                .fetch_add(1, Ordering::Relaxed);
            // Dropping its outbox ends the session task, which closes the socket.
            self.disconnect(id);
        }
    }

    /// Sends a player's command to where it is applied: here when we own the game, else its
    /// owner; while the owner is unknown, holds it (in order) until found.
    fn route(&mut self, game_id: &str, msg: InboxMsg) {
        let Some(entry) = self.games.get_mut(game_id) else {
            self.refuse(msg, HubError::NotFound);
            return;
        };
        entry.last_action = Instant::now();
        match (&entry.role, &self.cluster) {
            (Role::Owner, _) => self.apply(game_id, msg),
            (Role::Replica { owner: Some(owner) }, Some(cluster)) if entry.pending.is_empty() => {
                self.metrics.forwarded_out.fetch_add(1, Ordering::Relaxed);
                cluster.forward(owner, game_id, msg);
            }
            _ => {
                if entry.pending.len() < MAX_PENDING {
                    entry.pending.push(msg);
                    self.resolve(game_id);
                } else {
                    self.refuse(msg, HubError::Unavailable);
                }
            }
        }
    }

    /// Applies a player's command to a game we own, and answers whoever sent it.
    fn apply(&mut self, game_id: &str, msg: InboxMsg) {
        // Taken out and put back, not cloned: this runs for every press.
        let Some(mut game) = self.games.get_mut(game_id).and_then(|e| e.game.take()) else {
            self.refuse(msg, HubError::NotFound);
            return;
        };
        let before = game.version;
        let (answer, counting) = apply_command(game_id, &mut game, msg);
        let version = game.version;
        if version != before {
            self.commit(game_id, game);
        } else if let Some(entry) = self.games.get_mut(game_id) {
            entry.game = Some(game);
        }
        if counting {
            self.schedule_tick(game_id, version);
        }
        match answer {
            Answer::Nothing => {}
            Answer::Now(node, msg) => self.reply(&node, msg),
            Answer::WhenSaved(node, msg) => self.reply_when_saved(node, msg),
        }
    }

    /// Answers the server a command came from (ourselves included).
    fn reply(&mut self, node: &str, msg: InboxMsg) {
        if node == self.me {
            self.inbox(msg);
        } else if let Some(cluster) = &self.cluster {
            cluster.reply(node, msg);
        }
    }

    /// Answers once what was just committed is in Redis, so that whichever server the player
    /// goes to next (the race page may load from another) already sees the new robot.
    fn reply_when_saved(&mut self, node: String, msg: InboxMsg) {
        let Some(cluster) = self.cluster.clone() else {
            self.reply(&node, msg);
            return;
        };
        let (tx, me) = (self.tx.clone(), self.me.clone());
        tokio::spawn(async move {
            cluster.wait_flushed().await;
            if node == me {
                let _ = tx.send(Command::Inbox(msg)).await;
            } else {
                cluster.reply(&node, msg);
            }
        });
    }

    /// Answers a command that cannot be applied at all.
    fn refuse(&mut self, msg: InboxMsg, err: HubError) {
        match msg {
            InboxMsg::Command { from, session, .. } => {
                let msg = InboxMsg::CommandError {
                    session,
                    error: err.code().to_owned(),
                    message: err.to_string(),
                };
                self.reply(&from, msg);
            }
            InboxMsg::Join { from, req, .. } => {
                let msg = InboxMsg::JoinReply {
                    req,
                    error: Some(err.code().to_owned()),
                };
                self.reply(&from, msg);
            }
            _ => {}
        }
    }

    /// Messages from other servers' hubs, and our own answers to ourselves.
    fn inbox(&mut self, msg: InboxMsg) {
        match msg {
            InboxMsg::Command { ref game_id, .. } | InboxMsg::Join { ref game_id, .. } => {
                let game_id = game_id.clone();
                // Sent here because the sender thinks we own it. If we do not know the game,
                // find out who does (or take it over) rather than drop the command.
                self.games
                    .entry(game_id.clone())
                    .or_insert_with(|| Entry::new(None, Role::Replica { owner: None }));
                self.route(&game_id, msg);
            }
            InboxMsg::CommandError {
                session,
                error,
                message,
            } => {
                self.fan_out(&[session], &error_frame(&error, &message));
            }
            InboxMsg::JoinReply { req, error } => {
                if let Some((waiter, _)) = self.join_waiters.remove(&req) {
                    let result = match error.as_deref() {
                        None => Ok(()),
                        Some(code) => Err(HubError::from_code(code)),
                    };
                    let _ = waiter.send(result);
                }
            }
        }
    }

    fn schedule_tick(&self, game_id: &str, version: u64) {
        let tx = self.tx.clone();
        let game_id = game_id.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = tx.send(Command::CountdownTick { game_id, version }).await;
        });
    }

    fn countdown_tick(&mut self, game_id: &str, version: u64) {
        let Some(entry) = self.games.get(game_id) else {
            return;
        };
        let Some(mut game) = entry.game.clone() else {
            return;
        };
        // A tick from an earlier round, or for a game we no longer own, changes nothing.
        if entry.role != Role::Owner || game.version != version {
            return;
        }
        if game.countdown_step() == Step::Counting {
            self.schedule_tick(game_id, game.version);
        }
        self.commit(game_id, game);
    }

    fn connect(
        &mut self,
        game_id: String,
        robot_id: String,
        outbox: mpsc::Sender<Outbound>,
    ) -> Result<SessionId, HubError> {
        if self.stopping {
            return Err(HubError::Unavailable);
        }
        let entry = self.games.get_mut(&game_id).ok_or(HubError::NotFound)?;
        let game = entry.game.as_ref().ok_or(HubError::NotFound)?;
        let robot = game.robot(&robot_id).ok_or(RuleError::UnknownRobot)?;
        let welcome = ServerMsg::Welcome {
            robot_id: &robot.id,
            admin: robot.admin,
            game: game.view(),
        }
        .to_frame();
        outbox
            .try_send(Outbound::Frame(welcome))
            .map_err(|_| HubError::Unavailable)?;
        let id = self.next_session;
        self.next_session += 1;
        entry.sessions.insert(id);
        self.sessions.insert(
            id,
            Session {
                game_id,
                robot_id,
                outbox,
            },
        );
        Ok(id)
    }

    fn disconnect(&mut self, session: SessionId) {
        if let Some(s) = self.sessions.remove(&session) {
            if let Some(entry) = self.games.get_mut(&s.game_id) {
                entry.sessions.remove(&session);
            }
        }
    }

    /// A game loaded from Redis: we claimed it (`owner` None), or a replica of `owner`.
    fn adopt(&mut self, game: Game, owner: Option<String>) {
        let game_id = game.id.clone();
        let entry = self
            .games
            .entry(game_id.clone())
            .or_insert_with(|| Entry::new(None, Role::Replica { owner: None }));
        match owner {
            None => {
                self.take_over(&game_id, game);
            }
            Some(owner) => {
                if entry.role != Role::Owner {
                    entry.role = Role::Replica { owner: Some(owner) };
                    // Keep whatever is newer: the loaded state or an update relayed meanwhile.
                    if entry.game.as_ref().is_none_or(|g| g.version < game.version) {
                        entry.game = Some(game);
                    }
                }
                self.flush_pending(&game_id);
            }
        }
    }

    /// We own this game now (created elsewhere, or its owner went away): carry on from `game`.
    fn take_over(&mut self, game_id: &str, mut game: Game) {
        let Some(entry) = self.games.get_mut(game_id) else {
            return;
        };
        let was_owner = entry.role == Role::Owner;
        entry.role = Role::Owner;
        if let Some(known) = &entry.game {
            if known.version > game.version {
                game = known.clone();
            }
        }
        if !was_owner {
            log::info!("game {game_id}: node {} owns it now", self.me);
        }
        // A new version tells every server who the owner is and resumes a countdown.
        game.version += 1;
        let counting = game.state == State::CountingDown;
        let version = game.version;
        self.commit(game_id, game);
        if counting {
            self.schedule_tick(game_id, version);
        }
        self.flush_pending(game_id);
    }

    fn flush_pending(&mut self, game_id: &str) {
        let Some(entry) = self.games.get_mut(game_id) else {
            return;
        };
        let pending = std::mem::take(&mut entry.pending);
        for msg in pending {
            self.route(game_id, msg);
        }
    }

    /// Asks Redis who owns the game, taking it over when its owner is gone.
    fn resolve(&mut self, game_id: &str) {
        let (Some(cluster), Some(entry)) = (&self.cluster, self.games.get_mut(game_id)) else {
            return;
        };
        if entry.resolving {
            return;
        }
        entry.resolving = true;
        let fallback = match (&entry.game, entry.missing_since) {
            (Some(game), Some(since)) if since.elapsed() >= self.missing_grace => {
                Some(game.clone())
            }
            _ => None,
        };
        let (cluster, tx, game_id) = (cluster.clone(), self.tx.clone(), game_id.to_owned());
        tokio::spawn(async move {
            let outcome = cluster.claim(&game_id, fallback.as_ref()).await;
            let _ = tx.send(Command::Resolved { game_id, outcome }).await;
        });
    }

    fn resolved(&mut self, game_id: &str, outcome: Resolution) {
        let Some(entry) = self.games.get_mut(game_id) else {
            return;
        };
        entry.resolving = false;
        if !matches!(outcome, Resolution::Gone | Resolution::Failed) {
            entry.missing_since = None;
        }
        match outcome {
            Resolution::Claimed(game) => self.take_over(game_id, *game),
            Resolution::OwnedBy(owner) => {
                if entry.role != Role::Owner {
                    entry.role = Role::Replica { owner: Some(owner) };
                    self.flush_pending(game_id);
                }
            }
            // Redis does not have it. With a copy here, do not end a game players are in:
            // its owner may be about to save it again (Redis restarted empty); the sweep
            // asks again, and after a grace period restores it from our copy.
            Resolution::Gone if entry.game.is_some() && entry.role != Role::Owner => {
                if entry.missing_since.is_none() {
                    log::warn!(
                        "game {game_id}: missing from Redis; waiting for its owner to save it"
                    );
                    entry.missing_since = Some(Instant::now());
                }
            }
            Resolution::Gone => {
                if entry.role != Role::Owner {
                    log::info!("game {game_id}: not stored in Redis; ending it here");
                    self.end(game_id);
                }
            }
            // Redis unreachable: keep what is pending; the sweep tries again.
            Resolution::Failed => {}
        }
    }

    fn relay(&mut self, game_id: &str, relayed: Relayed) {
        self.metrics.relayed_in.fetch_add(1, Ordering::Relaxed);
        match relayed {
            Relayed::Update { origin, game } => {
                let Some(entry) = self.games.get_mut(game_id) else {
                    return;
                };
                let newer = entry.game.as_ref().is_none_or(|g| game.version > g.version);
                if !newer {
                    return;
                }
                if entry.role == Role::Owner {
                    log::warn!("game {game_id}: node {origin} published a newer version; it owns the game now");
                }
                entry.role = Role::Replica {
                    owner: Some(origin),
                };
                self.commit(game_id, *game);
                self.flush_pending(game_id);
            }
            Relayed::Terminated => self.end(game_id),
        }
    }

    /// Tells local players the game is over, closes their sockets and forgets the game.
    fn end(&mut self, game_id: &str) {
        let Some(entry) = self.games.remove(game_id) else {
            return;
        };
        let frame = ServerMsg::Terminated.to_frame();
        for id in entry.sessions {
            if let Some(s) = self.sessions.remove(&id) {
                let _ = s.outbox.try_send(Outbound::Frame(frame.clone()));
                let _ = s.outbox.try_send(Outbound::Close(CloseWhy::Terminated));
            }
        }
        for msg in entry.pending {
            self.refuse(msg, HubError::NotFound);
        }
    }

    fn sweep(&mut self) {
        // Stopping: our games were handed back; renewing or claiming would take them again.
        if self.stopping {
            return;
        }
        let now = Instant::now();
        let mut idle = Vec::new();
        let mut forget = Vec::new();
        let mut probe = Vec::new();
        for (id, entry) in &self.games {
            let quiet = now.saturating_duration_since(entry.last_action);
            match entry.role {
                Role::Owner if quiet >= self.idle_timeout => idle.push(id.clone()),
                Role::Owner => {}
                Role::Replica { .. } if entry.sessions.is_empty() && quiet >= REPLICA_KEEP => {
                    forget.push(id.clone())
                }
                // Players here are waiting on another server: make sure it is still there
                // (a countdown must not stall because its owner died).
                Role::Replica { .. } if !entry.sessions.is_empty() || !entry.pending.is_empty() => {
                    probe.push(id.clone())
                }
                Role::Replica { .. } => {}
            }
        }
        for id in idle {
            log::info!("game {id}: idle for {:?}; ending it", self.idle_timeout);
            if let Some(cluster) = &self.cluster {
                cluster.terminate(&id);
            }
            self.end(&id);
        }
        for id in forget {
            self.games.remove(&id);
        }
        for id in probe {
            self.resolve(&id);
        }
        if let Some(cluster) = &self.cluster {
            let owned = self
                .games
                .iter()
                .filter(|(_, e)| e.role == Role::Owner)
                .map(|(id, _)| id.clone())
                .collect();
            cluster.renew(owned);
        }
        self.join_waiters
            .retain(|_, (_, since)| now.saturating_duration_since(*since) < REMOTE_TIMEOUT * 2);
    }

    fn stats(&self) -> HubStats {
        let mut stats = HubStats::default();
        for entry in self.games.values() {
            match entry.role {
                Role::Owner => stats.owned += 1,
                Role::Replica { .. } => stats.replicas += 1,
            }
            if let Some(game) = &entry.game {
                if let Some(i) = State::ALL.iter().position(|s| *s == game.state) {
                    stats.by_state[i] += 1;
                }
            }
        }
        stats
    }

    fn shutdown(&mut self, reply: oneshot::Sender<()>) {
        self.stopping = true;
        for (_, s) in self.sessions.drain() {
            let _ = s.outbox.try_send(Outbound::Close(CloseWhy::GoingAway));
        }
        for entry in self.games.values_mut() {
            entry.sessions.clear();
        }
        let owned: Vec<String> = self
            .games
            .iter()
            .filter(|(_, e)| e.role == Role::Owner)
            .map(|(id, _)| id.clone())
            .collect();
        match self.cluster.clone() {
            Some(cluster) => {
                tokio::spawn(async move {
                    cluster.release(owned).await;
                    let _ = reply.send(());
                });
            }
            None => {
                let _ = reply.send(());
            }
        }
    }
}

impl HubError {
    fn from_code(code: &str) -> HubError {
        match code {
            "not_found" => HubError::NotFound,
            "invalid_name" => HubError::Rule(RuleError::InvalidName),
            "game_in_progress" => HubError::Rule(RuleError::GameInProgress),
            "game_full" => HubError::Rule(RuleError::GameFull),
            _ => HubError::Unavailable,
        }
    }
}

/// What to tell the server a command came from, once it is applied.
enum Answer {
    Nothing,
    Now(String, InboxMsg),
    /// After the change is in Redis (a join: the player's next page may come from elsewhere).
    WhenSaved(String, InboxMsg),
}

/// Applies one player command to a game this server owns. Returns the answer for the sender
/// and whether a countdown has just started (the caller runs its timer).
fn apply_command(game_id: &str, game: &mut Game, msg: InboxMsg) -> (Answer, bool) {
    let before = game.version;
    match msg {
        InboxMsg::Command {
            robot_id,
            command,
            from,
            session,
            ..
        } => {
            let mut counting = false;
            let result = match command {
                ClientMsg::ScorePoint => {
                    game.score_point(&robot_id);
                    Ok(())
                }
                ClientMsg::StartCountdown => game
                    .start_countdown(&robot_id)
                    .map(|step| counting = step == Step::Counting),
                ClientMsg::PlayAgain => game.play_again(&robot_id),
            };
            if game.state == State::Finished && before != game.version {
                if let Some(winner) = game.winner.as_deref().and_then(|w| game.robot(w)) {
                    log::info!("game {game_id}: {} wins", winner.name);
                }
            }
            let answer = match result {
                Ok(()) => Answer::Nothing,
                Err(e) => Answer::Now(
                    from,
                    InboxMsg::CommandError {
                        session,
                        error: e.code().to_owned(),
                        message: e.to_string(),
                    },
                ),
            };
            (answer, counting)
        }
        InboxMsg::Join {
            robot_id,
            name,
            from,
            req,
            ..
        } => {
            let result =
                PlayerName::parse(&name).and_then(|name| game.join(robot_id.clone(), name));
            if result.is_ok() && game.version != before {
                log::info!("game {game_id}: robot {robot_id} joined");
            }
            let reply = InboxMsg::JoinReply {
                req,
                error: result.err().map(|e| e.code().to_owned()),
            };
            (Answer::WhenSaved(from, reply), false)
        }
        other => {
            log::warn!("game {game_id}: not a player command: {other:?}");
            (Answer::Nothing, false)
        }
    }
}

/// Game ids: 8 letters and digits (no `-`/`_`, so they read well in links).
pub const GAME_ID_ALPHABET: [char; 62] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i',
    'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'A', 'B',
    'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', 'P', 'Q', 'R', 'S', 'T', 'U',
    'V', 'W', 'X', 'Y', 'Z',
];

/// Whether `id` could be a game id (checked before any lookup; odd characters are a 404).
pub fn valid_game_id(id: &str) -> bool {
    (4..=32).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::game::PlayerName;
    use serde_json::Value;

    struct Seat {
        session: SessionId,
        rx: mpsc::Receiver<Outbound>,
    }

    fn start(idle: Duration) -> HubHandle {
        let metrics = Arc::new(Metrics::default());
        let (hub, handle) = Hub::new("n1".into(), None, metrics, idle, Duration::from_secs(5));
        tokio::spawn(hub.run());
        handle
    }

    async fn seat(hub: &HubHandle, game_id: &str, robot_id: String, queue: usize) -> Seat {
        let (tx, rx) = mpsc::channel(queue);
        let session = hub.connect(game_id, &robot_id, tx).await.unwrap();
        Seat { session, rx }
    }

    /// The next frame as JSON, with the (paused) time it arrived.
    async fn frame(seat: &mut Seat) -> (Value, Instant) {
        match seat.rx.recv().await {
            Some(Outbound::Frame(f)) => (serde_json::from_str(&f).unwrap(), Instant::now()),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    async fn two_player_game(hub: &HubHandle, countdown: u32) -> (String, Seat, Seat) {
        let config = GameConfig {
            winning_score: 5,
            countdown,
        };
        let created = hub
            .create(PlayerName::parse("ann").unwrap(), config)
            .await
            .unwrap();
        let bob = hub
            .join(&created.game_id, PlayerName::parse("bob").unwrap())
            .await
            .unwrap();
        let mut ann = seat(hub, &created.game_id, created.robot_id, 64).await;
        let mut bob = seat(hub, &created.game_id, bob, 64).await;
        assert_eq!(frame(&mut ann).await.0["type"], "welcome");
        assert_eq!(frame(&mut bob).await.0["type"], "welcome");
        (created.game_id, ann, bob)
    }

    #[tokio::test(start_paused = true)]
    async fn the_countdown_steps_once_a_second_then_the_race_starts() {
        let hub = start(Duration::from_secs(600));
        let (_, ann, mut bob) = two_player_game(&hub, 3).await;
        let started = Instant::now();
        hub.client(ann.session, ClientMsg::StartCountdown).await;
        let mut steps = Vec::new();
        for _ in 0..4 {
            let (msg, at) = frame(&mut bob).await;
            let game = &msg["game"];
            steps.push((
                game["state"].as_str().unwrap().to_owned(),
                game["countdown"].as_u64().unwrap(),
                (at - started).as_secs(),
            ));
        }
        let expected = [
            ("counting_down", 3, 0),
            ("counting_down", 2, 1),
            ("counting_down", 1, 2),
            ("playing", 0, 3),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(s, c, t)| (s.to_string(), *c, *t))
            .collect();
        assert_eq!(steps, expected);
        // A press during the race reaches everyone; nothing else was queued.
        hub.client(bob.session, ClientMsg::ScorePoint).await;
        let (msg, _) = frame(&mut bob).await;
        assert_eq!(msg["game"]["robots"][1]["score"], 1);
        assert!(bob.rx.try_recv().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_game_is_ended_and_its_players_told() {
        let hub = start(Duration::from_secs(10));
        let (game_id, mut ann, _bob) = two_player_game(&hub, 0).await;
        let started = Instant::now();
        let (msg, at) = frame(&mut ann).await;
        assert_eq!(msg, serde_json::json!({"type": "terminated"}));
        let idle = at - started;
        assert!(
            idle >= Duration::from_secs(10) && idle <= Duration::from_secs(13),
            "{idle:?}"
        );
        assert!(matches!(
            ann.rx.recv().await,
            Some(Outbound::Close(CloseWhy::Terminated))
        ));
        assert_eq!(hub.game(&game_id).await.unwrap_err(), HubError::NotFound);
        assert_eq!(hub.stats().await.owned, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_that_does_not_read_is_dropped_and_others_go_on() {
        let hub = start(Duration::from_secs(600));
        let (game_id, ann, mut bob) = two_player_game(&hub, 0).await;
        // A third player whose queue holds two frames and who never reads.
        let cy = hub
            .join(&game_id, PlayerName::parse("cy").unwrap())
            .await
            .unwrap();
        frame(&mut bob).await; // cy joined
        let stalled = seat(&hub, &game_id, cy, 2).await;
        hub.client(ann.session, ClientMsg::StartCountdown).await;
        frame(&mut bob).await; // playing
        for _ in 0..4 {
            hub.client(bob.session, ClientMsg::ScorePoint).await;
            frame(&mut bob).await;
        }
        assert_eq!(hub.stats().await.owned, 1);
        assert_eq!(
            hub.metrics.sessions_dropped_slow.load(Ordering::Relaxed),
            1,
            "the stalled session was not dropped"
        );
        assert_eq!(hub.metrics.connections.load(Ordering::Relaxed), 2);
        // Its outbox was let go: the session task would see the end and close the socket.
        let mut stalled = stalled;
        while let Ok(Outbound::Frame(_)) = stalled.rx.try_recv() {}
        assert!(stalled.rx.recv().await.is_none());
    }
}
