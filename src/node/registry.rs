//! The registry: game id → game task. Creates and finds games, routes the bus's events to
//! their tasks, renews every owned lease in one batch, checks that the owners of games our
//! players are in are alive, and runs shutdown in order (close sessions, commit, release).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::game_task::{GameTask, Start};
use super::sessions::SessionId;
use super::spectators::{Curtain, Seat, Watcher};
use super::{deliver, GameHandle, GameInfo, GameMsg, Metrics, NodeError, Shared, Stats, Timing};
use super::{GAME_ID_ALPHABET, GAME_QUEUE};
use crate::bus::Bus;
use crate::game::{Game, GameConfig, PlayerName, State};

/// How long a request may wait for a game to be found or created.
const FIND_TIMEOUT: Duration = Duration::from_secs(6);
/// How long a join may wait for its robot to be committed.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(4);

#[derive(Default)]
pub(super) struct Games {
    map: Mutex<HashMap<String, GameHandle>>,
    serial: AtomicU64,
    sessions: AtomicU64,
    /// Numbers this process's presence reports, for all its games: a game's task started
    /// anew never numbers its reports below those the one before it sent.
    reports: AtomicU64,
    pub(super) stopping: AtomicBool,
    /// Set just before the leases are given up: no renewal after it.
    pub(super) released: AtomicBool,
}

impl Games {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, GameHandle>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn get(&self, game_id: &str) -> Option<GameHandle> {
        self.lock().get(game_id).cloned()
    }

    pub(super) fn all(&self) -> Vec<GameHandle> {
        self.lock().values().cloned().collect()
    }
}

impl Shared {
    /// A task ended: forget it (unless a newer task for the same game took its place).
    pub(super) fn forget(&self, game_id: &str, info: &GameInfo) {
        let mut map = self.games.lock();
        if map
            .get(game_id)
            .is_some_and(|h| h.info.serial == info.serial)
        {
            map.remove(game_id);
        }
    }

    /// The number of this process's next presence report.
    pub(super) fn next_report(&self) -> u64 {
        self.games.reports.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Starts a game task. `first` is queued before the task runs, so the task reads it before
    /// anything it hears later (see `hold`).
    fn spawn(self: &Arc<Self>, game_id: &str, start: Start, first: Option<GameMsg>) -> GameHandle {
        let (tx, rx) = mpsc::channel(GAME_QUEUE);
        if let Some(msg) = first {
            // The queue is empty and has room: this cannot fail.
            let _ = tx.try_send(msg);
        }
        let info = Arc::new(GameInfo {
            id: game_id.to_owned(),
            serial: self.games.serial.fetch_add(1, Ordering::Relaxed),
            state: u8::MAX.into(),
            ..GameInfo::default()
        });
        let handle = GameHandle {
            tx: tx.clone(),
            info: info.clone(),
        };
        let task = GameTask::new(game_id.to_owned(), self.clone(), info, rx, tx.downgrade());
        self.runtime().spawn(task.run(start));
        handle
    }

    /// The runtime game tasks run on (set at start; the caller's if not yet).
    pub(super) fn runtime(&self) -> tokio::runtime::Handle {
        self.rt
            .get()
            .cloned()
            .unwrap_or_else(tokio::runtime::Handle::current)
    }
}

/// This server's games. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    shared: Arc<Shared>,
}

/// A freshly created game.
#[derive(Debug, Clone)]
pub struct Created {
    pub game_id: String,
    pub robot_id: String,
}

impl Node {
    /// `rt`: the runtime game tasks run on (`None`: the one [`Node::start_on`] names).
    pub fn new(
        bus: Arc<dyn Bus>,
        metrics: Arc<Metrics>,
        timing: Timing,
        rt: impl Into<Option<tokio::runtime::Handle>>,
    ) -> Node {
        let node_id = bus.node_id().to_owned();
        let cell = std::sync::OnceLock::new();
        if let Some(rt) = rt.into() {
            let _ = cell.set(rt);
        }
        Node {
            shared: Arc::new(Shared {
                rt: cell,
                instance: format!("{node_id}/{}", nanoid::nanoid!(6)),
                node_id,
                bus,
                metrics,
                timing,
                games: Games::default(),
            }),
        }
    }

    /// Starts the bus (its events come here) and the lease and liveness upkeep.
    pub fn start(&self) {
        let events = Arc::new(super::events::Events {
            shared: self.shared.clone(),
        });
        let rt = self.shared.runtime();
        let _rt = rt.enter();
        self.shared.bus.start(events);
        if self.shared.bus.replicated() {
            rt.spawn(super::events::upkeep(self.shared.clone()));
        }
    }

    /// Same-thread mode: game tasks and the bus run on `rt` (the HTTP worker's runtime), and
    /// start now. Only the first call counts.
    pub fn start_on(&self, rt: tokio::runtime::Handle) {
        if self.shared.rt.set(rt).is_ok() {
            self.start();
        }
    }

    pub fn bus(&self) -> &dyn Bus {
        self.shared.bus.as_ref()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The counters, for a task that outlives a borrow (a session).
    pub fn metrics_handle(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    pub fn node_id(&self) -> &str {
        &self.shared.node_id
    }

    fn stopping(&self) -> bool {
        self.shared.games.stopping.load(Ordering::Relaxed)
    }

    pub async fn create(&self, name: PlayerName, config: GameConfig) -> Result<Created, NodeError> {
        if self.stopping() {
            return Err(NodeError::Unavailable);
        }
        let robot_id = new_robot_id();
        let (game_id, handle) = {
            let mut map = self.shared.games.lock();
            let game_id = loop {
                let id = nanoid::nanoid!(8, &GAME_ID_ALPHABET);
                if !map.contains_key(&id) {
                    break id;
                }
            };
            let game = Game::new(game_id.clone(), config, robot_id.clone(), name);
            let handle = self.shared.spawn(&game_id, Start::New(game), None);
            map.insert(game_id.clone(), handle.clone());
            (game_id, handle)
        };
        log::info!("game {game_id}: created on node {}", self.shared.node_id);
        self.shared
            .metrics
            .games_created
            .fetch_add(1, Ordering::Relaxed);
        self.shared.bus.count_created();
        // Answered once it is committed (or running alone), so any server can serve it next.
        get(&handle).await?;
        Ok(Created { game_id, robot_id })
    }

    /// The game as this server holds it, or as stored; takes nothing over.
    pub async fn game(&self, game_id: &str) -> Result<Game, NodeError> {
        if let Some(handle) = self.shared.games.get(game_id) {
            if let Ok(game) = get(&handle).await {
                return Ok(game);
            }
        }
        if !self.shared.bus.replicated() {
            return Err(NodeError::NotFound);
        }
        match self.shared.bus.load(game_id).await {
            Ok(Some(json)) => serde_json::from_str(&json).map_err(|_| NodeError::NotFound),
            Ok(None) => Err(NodeError::NotFound),
            Err(_) => Err(NodeError::Unavailable),
        }
    }

    /// Makes sure this server holds the game (as its owner or a replica).
    async fn hold(&self, game_id: &str) -> Result<(GameHandle, Game), NodeError> {
        if self.stopping() {
            return Err(NodeError::Unavailable);
        }
        for _ in 0..2 {
            let (handle, asked) = {
                let mut map = self.shared.games.lock();
                match map.get(game_id) {
                    Some(h) => (h.clone(), None),
                    None if !self.shared.bus.replicated() => return Err(NodeError::NotFound),
                    None => {
                        // Asked before the task runs: a task that finds the game gone ends at
                        // once, and asked after that it could no longer say so ("unavailable"
                        // instead of "not found" on a busy machine).
                        let (reply, answer) = oneshot::channel();
                        let h = self
                            .shared
                            .spawn(game_id, Start::Find, Some(GameMsg::Get(reply)));
                        map.insert(game_id.to_owned(), h.clone());
                        (h, Some(answer))
                    }
                }
            };
            let answer = match asked {
                Some(answer) => answered(answer, FIND_TIMEOUT).await.and_then(|r| r),
                None => get(&handle).await,
            };
            match answer {
                Ok(game) => return Ok((handle, game)),
                // The task ended as we asked (forgotten, or the game ended): look again.
                Err(NodeError::Unavailable) if handle.tx.is_closed() => {
                    self.shared.forget(game_id, &handle.info);
                }
                Err(e) => return Err(e),
            }
        }
        Err(NodeError::Unavailable)
    }

    /// Adds a robot named `name`, wherever the game is owned; returns the robot's id once the
    /// robot is committed (any server asked next knows it).
    pub async fn join(&self, game_id: &str, name: PlayerName) -> Result<String, NodeError> {
        let (handle, _) = self.hold(game_id).await?;
        let robot_id = new_robot_id();
        let id = robot_id.clone();
        let joined = ask(&handle, JOIN_TIMEOUT, |reply| GameMsg::Join {
            robot_id: id,
            name,
            reply,
        })
        .await?;
        joined.map(|()| robot_id)
    }

    /// The game and the robot `robot_id` in it.
    pub async fn robot(&self, game_id: &str, robot_id: &str) -> Result<Game, NodeError> {
        let (handle, game) = self.hold(game_id).await?;
        if game.robot(robot_id).is_some() {
            return Ok(game);
        }
        // Joined through another server a moment ago: Redis has it, the relay may lag.
        if !self.shared.bus.replicated() {
            return Err(crate::game::RuleError::UnknownRobot.into());
        }
        match self.shared.bus.load(game_id).await {
            Ok(Some(json)) => {
                let fresh: Game =
                    serde_json::from_str(&json).map_err(|_| NodeError::Unavailable)?;
                if fresh.robot(robot_id).is_none() {
                    return Err(crate::game::RuleError::UnknownRobot.into());
                }
                deliver(&handle, GameMsg::Loaded(Ok(Some(json))));
                Ok(fresh)
            }
            Ok(None) => Err(NodeError::NotFound),
            Err(_) => Err(NodeError::Unavailable),
        }
    }

    /// Connects a player's session to its game; the session then talks to the game task
    /// directly.
    pub async fn connect(
        &self,
        game_id: &str,
        robot_id: &str,
        sink: Box<dyn super::FrameSink>,
    ) -> Result<(GameHandle, SessionId), NodeError> {
        let (handle, _) = self.hold(game_id).await?;
        let session = self.new_session_id();
        let robot_id = robot_id.to_owned();
        ask(&handle, FIND_TIMEOUT, |reply| GameMsg::Connect {
            session,
            robot_id,
            sink,
            reply,
        })
        .await??;
        Ok((handle, session))
    }

    /// Watches a game as a spectator, once its state is known here. Nothing of it goes
    /// through the game's queue but the game's first spectator here (see `spectators`).
    pub async fn watch(&self, game_id: &str, seat: Seat) -> Result<Watcher, NodeError> {
        if self.stopping() {
            return Err(NodeError::Unavailable);
        }
        let held = self.shared.games.get(game_id).filter(|h| !h.tx.is_closed());
        let handle = match held {
            Some(handle) => handle,
            None => self.hold(game_id).await?.0,
        };
        let period = self.shared.timing.spectator_period;
        let mut watcher = Watcher::new(handle, seat, period, &self.shared.runtime());
        match watcher.first(FIND_TIMEOUT).await {
            Ok(()) => Ok(watcher),
            Err(Some(Curtain::Ended)) => Err(NodeError::NotFound),
            Err(_) => Err(NodeError::Unavailable),
        }
    }

    /// Whether this server has a task for the game now (owner or replica).
    pub fn holds(&self, game_id: &str) -> bool {
        self.shared.games.get(game_id).is_some()
    }

    /// A session id not used before on this server.
    pub fn new_session_id(&self) -> SessionId {
        self.shared.games.sessions.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        for handle in self.shared.games.all() {
            if handle.info.owned.load(Ordering::Relaxed) {
                stats.owned += 1;
            } else {
                stats.replicas += 1;
            }
            let state = handle.info.state.load(Ordering::Relaxed) as usize;
            if let Some(n) = stats.by_state.get_mut(state) {
                *n += 1;
            }
        }
        stats
    }

    /// Shutdown in order: close every session (commands they still send are applied), stop
    /// applying and commit what was applied, then give our games up so others take over.
    pub async fn shutdown(&self) {
        self.shared.games.stopping.store(true, Ordering::Relaxed);
        let games = self.shared.games.all();
        let bound = self.shared.timing.drain + Duration::from_millis(500);
        ask_all(&games, bound, GameMsg::Drain).await;
        // Owned until now: released below (the script releases only what is still ours).
        let owned: Vec<String> = games
            .iter()
            .filter(|h| h.info.owned.load(Ordering::Relaxed))
            .map(|h| h.info.id.clone())
            .collect();
        ask_all(&games, bound, GameMsg::Stop).await;
        self.shared.games.released.store(true, Ordering::Relaxed);
        if self.shared.bus.replicated() {
            self.shared.bus.release(owned).await;
        }
    }
}

/// Sends every game a request and waits (bounded) for all the answers.
async fn ask_all<T>(
    games: &[GameHandle],
    bound: Duration,
    request: impl Fn(oneshot::Sender<T>) -> GameMsg,
) {
    let asked = games.iter().map(|h| {
        let (reply, rx) = oneshot::channel();
        let (tx, msg) = (h.tx.clone(), request(reply));
        async move {
            if tx.send(msg).await.is_ok() {
                let _ = rx.await;
            }
        }
    });
    let _ = tokio::time::timeout(bound, futures_util::future::join_all(asked)).await;
}

fn new_robot_id() -> String {
    nanoid::nanoid!(12)
}

/// Asks a game task for its game (waiting until it is loaded or created).
async fn get(handle: &GameHandle) -> Result<Game, NodeError> {
    ask(handle, FIND_TIMEOUT, GameMsg::Get).await?
}

/// Sends a game task a request and waits (bounded) for its answer.
async fn ask<T>(
    handle: &GameHandle,
    timeout: Duration,
    request: impl FnOnce(oneshot::Sender<T>) -> GameMsg,
) -> Result<T, NodeError> {
    let (reply, rx) = oneshot::channel();
    handle
        .tx
        .send(request(reply))
        .await
        .map_err(|_| NodeError::Unavailable)?;
    answered(rx, timeout).await
}

/// A game task's answer; "unavailable" if it ended without one or took over `timeout`.
async fn answered<T>(rx: oneshot::Receiver<T>, timeout: Duration) -> Result<T, NodeError> {
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(answer)) => Ok(answer),
        _ => Err(NodeError::Unavailable),
    }
}

/// Which state a game is in, for the registry's counts.
pub(super) fn state_index(state: State) -> u8 {
    State::ALL.iter().position(|s| *s == state).unwrap_or(0) as u8
}
