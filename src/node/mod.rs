//! This server's games: the registry and one task per game (the "hub" of the design, made
//! parallel: the registry maps game ids to game tasks, each task is the actor for one game).
//!
//! [`Node`] is the handle the web layer uses (create, join, read, connect, stats, shutdown).
//! Sessions talk to their game's task directly through a [`GameHandle`]. The registry
//! ([`registry`]) also receives the bus's events and routes them to game tasks, renews every
//! owned game's lease in one batch, and checks that the owners of the games our players are
//! in are alive.

mod events;
mod game_task;
mod origin;
pub mod presence;
mod registry;
pub mod role;
mod sessions;
pub mod spectators;
pub mod wire;

#[cfg(test)]
mod tests;

pub use game_task::{GameMsg, GAME_QUEUE};
pub use registry::Node;
#[cfg(test)]
pub use sessions::Outbound;
pub use sessions::{CloseWhy, FrameSink, SessionId, SinkError};
pub use spectators::{Cue, Curtain, Seat, Watcher};

pub use crate::measure::Histogram;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::bus::Bus;
use crate::game::{Game, RuleError, State, MAX_PLAYERS};

/// Why a request about a game was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    #[error("No such game")]
    NotFound,
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("The game server is busy or unreachable, try again")]
    Unavailable,
    #[error("The server is overloaded: that press was dropped")]
    Overloaded,
}

impl NodeError {
    pub fn code(&self) -> &'static str {
        match self {
            NodeError::NotFound => "not_found",
            NodeError::Rule(e) => e.code(),
            NodeError::Unavailable => "unavailable",
            NodeError::Overloaded => "overloaded",
        }
    }

    pub fn from_code(code: &str) -> NodeError {
        match code {
            "not_found" => NodeError::NotFound,
            "invalid_name" => RuleError::InvalidName(crate::game::NameRule::Invalid).into(),
            "game_in_progress" => RuleError::GameInProgress.into(),
            "game_full" => RuleError::GameFull.into(),
            "permission_denied" => RuleError::PermissionDenied.into(),
            "not_enough_players" => RuleError::NotEnoughPlayers.into(),
            "invalid_state" => RuleError::InvalidState.into(),
            "overloaded" => NodeError::Overloaded,
            _ => NodeError::Unavailable,
        }
    }

    /// Why a join was refused, as the game shows it (when the owner's answer was lost).
    pub fn join_refused(game: &Game) -> NodeError {
        if game.state != State::Setup {
            RuleError::GameInProgress.into()
        } else if game.robots.len() >= MAX_PLAYERS {
            RuleError::GameFull.into()
        } else {
            NodeError::Unavailable
        }
    }
}

/// Counters read by `/metrics` and `/health`.
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
    /// Sessions cut for not reading (a frame of their own that could not be queued in time).
    pub sessions_dropped_slow: AtomicU64,
    /// Times a session fell behind (its queue full): it is skipped, then resynced.
    pub sessions_behind: AtomicU64,
    /// Frames not queued to a session that was behind (it got a newer state instead).
    pub frames_skipped: AtomicU64,
    /// Committed updates from other servers shown here.
    pub relayed_in: AtomicU64,
    /// Commands sent to the owning server (resends included).
    pub forwarded_out: AtomicU64,
    /// Games this server handed to the server holding more of their players.
    pub moves: AtomicU64,
    /// Presses this server applied as a game's owner: its own players' ...
    pub applied_here: AtomicU64,
    /// ... and those forwarded by other servers.
    pub applied_forwarded: AtomicU64,
    /// Presses answered `overloaded`: the game's queue was full, or the press waited in it
    /// longer than [`OVERLOAD_AGE`].
    pub overloaded: AtomicU64,
    /// Saves Redis did not take (unreachable, out of memory, read-only, timed out).
    pub save_failures: AtomicU64,
    /// Commands answered `unavailable`: they waited too long for the game's storage.
    pub unavailable: AtomicU64,
    /// From a press reaching its owner to its update queued to the owner's local players.
    pub press_to_broadcast: Histogram,
    /// Spectator sockets on this server (admitted, open or opening).
    pub spectators: AtomicU64,
    /// Spectator upgrades refused: this server had `-max-spectators` already.
    pub spectators_refused: AtomicU64,
    /// Frames queued to spectator sockets.
    pub spectator_frames: AtomicU64,
    /// From a local player's press reaching this server to a committed state showing it
    /// applied (the owner's save, or its published update): what the presser waits for.
    pub press_to_ack: Histogram,
}

/// A press not applied within this long after it reached the server is dropped and answered
/// `overloaded` (PROTOCOL.md): never queued for seconds.
pub const OVERLOAD_AGE: Duration = Duration::from_millis(250);

/// Timings, from the configuration (shortened in tests).
#[derive(Debug, Clone)]
pub struct Timing {
    /// A game with no player action for this long is ended.
    pub idle: Duration,
    /// A command not acknowledged for this long makes its sender check on the owner.
    pub ack_timeout: Duration,
    /// An unacknowledged command is not sent again sooner than this.
    pub resend_gap: Duration,
    /// How long a replica with no local players is kept.
    pub replica_keep: Duration,
    /// How long a replica waits for the owner to save a game Redis lost before restoring it
    /// from its own copy.
    pub missing_grace: Duration,
    /// Retry a claim Redis could not answer.
    pub retry: Duration,
    /// Each shutdown step's bound.
    pub drain: Duration,
    /// Presence: reports, host hand-over, removal of away robots.
    pub presence: presence::PresenceTiming,
    /// The shortest time between two frames to a game's spectators (`-spectator-hz`).
    pub spectator_period: Duration,
}

impl Timing {
    pub fn new(idle: Duration, lease: Duration) -> Timing {
        Timing {
            idle,
            ack_timeout: Duration::from_millis(500),
            resend_gap: Duration::from_millis(200),
            replica_keep: Duration::from_secs(60),
            missing_grace: lease * 3,
            retry: Duration::from_millis(250),
            drain: Duration::from_millis(1500),
            presence: presence::PresenceTiming::new(
                Duration::from_secs(10),
                Duration::from_secs(30),
            ),
            spectator_period: Timing::spectator_period(spectators::DEFAULT_SPECTATOR_HZ),
        }
    }

    /// The period of `hz` spectator frames a second (1 to 1000).
    pub fn spectator_period(hz: u32) -> Duration {
        Duration::from_secs(1) / hz.clamp(1, 1000)
    }
}

/// What every game task shares.
pub struct Shared {
    pub node_id: String,
    /// This process: numbers commands (`node_id/nonce`, new at every start).
    pub instance: String,
    pub bus: Arc<dyn Bus>,
    pub metrics: Arc<Metrics>,
    pub timing: Timing,
    /// Where game tasks run: the game runtime, or (same-thread mode) the HTTP worker's,
    /// known once that worker starts.
    rt: std::sync::OnceLock<tokio::runtime::Handle>,
    games: registry::Games,
}

/// A game's task, as sessions and the registry see it.
#[derive(Clone)]
pub struct GameHandle {
    pub tx: mpsc::Sender<GameMsg>,
    info: Arc<GameInfo>,
}

/// Delivers to a game's task without waiting; a full queue gets it a moment later rather than
/// never.
fn deliver(handle: &GameHandle, msg: GameMsg) {
    if let Err(mpsc::error::TrySendError::Full(msg)) = handle.tx.try_send(msg) {
        let tx = handle.tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(msg).await;
        });
    }
}

/// What the registry reads about a game without asking its task.
#[derive(Debug, Default)]
pub struct GameInfo {
    owned: AtomicBool,
    /// `State` as a number; `u8::MAX` until known.
    state: AtomicU8,
    /// The owner, while a replica (for liveness checks).
    owner: Mutex<Option<String>>,
    /// Local players or spectators connected (set by the task).
    has_players: AtomicBool,
    /// Distinguishes a task from the next one for the same game.
    serial: u64,
    /// The game's spectators here, fed apart from its players.
    stage: Arc<spectators::Stage>,
    id: String,
}

impl GameInfo {
    fn set_role(&self, owned: bool, owner: Option<String>) {
        self.owned.store(owned, Ordering::Relaxed);
        *self.owner.lock().unwrap_or_else(|e| e.into_inner()) = owner;
    }

    /// What the task tells the registry after each round of messages.
    fn sync(&self, state: Option<State>, has_players: bool) {
        let state = state.map_or(u8::MAX, registry::state_index);
        self.state.store(state, Ordering::Relaxed);
        self.has_players.store(has_players, Ordering::Relaxed);
    }

    fn owner(&self) -> Option<String> {
        self.owner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Counts for `/health` and `/metrics`.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub owned: usize,
    pub replicas: usize,
    pub by_state: [usize; 4],
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
