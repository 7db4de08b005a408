//! The Bus: the only thing between the game layer and Redis.
//!
//! A game task hands the bus what to store and publish ([`Save`]), asks it who owns a game
//! ([`Bus::claim`]), sends other servers messages ([`Bus::send_to`]) and renews leases; the bus
//! reports what comes back through [`BusEvents`], a trait the registry implements. The bus deals
//! in game ids, node ids and bytes: it never imports the game layer (`node`), so there is no
//! import cycle, and the game layer never sees Redis.
//!
//! Implementations:
//! - [`local::LocalBus`]: in memory. Alone ([`local::LocalBus::single`]) it is single-server
//!   mode: every game is this server's, nothing is stored or published. Sharing a
//!   [`local::LocalCluster`], several "servers" in one process behave as if on one Redis (leases,
//!   heartbeats, pub/sub, Redis lost and back) — the ownership tests run on that.
//! - [`redis::RedisBus`]: Lua scripts fenced on the owner, write-behind saves, the pub/sub relay,
//!   heartbeats, reconnects.

pub mod local;
pub mod redis;
pub mod stats;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// A boxed future, so that [`Bus`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where the bus stands, for `/health` and for game tasks deciding whether to run alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusStatus {
    /// Single-server mode: no Redis at all.
    Local,
    /// Connected: saves are fenced and published.
    Connected,
    /// Configured but unreachable: games Redis holds wait until it is back; only a game
    /// created meanwhile (Redis never held it) runs alone.
    Down,
}

/// What an owner stores and publishes after a change.
#[derive(Debug, Clone)]
pub struct Save {
    /// The game's version (reported back with the result).
    pub version: u64,
    /// What `game_state:<id>` becomes: the whole game's JSON, as the owner holds it. Redis
    /// only checks the fence and stores it: no work on the text there.
    pub stored: String,
    /// The message published on `game:<id>`.
    pub publish: String,
    /// The fence of the claim that made this server the owner: the write is refused unless
    /// it is still the game's (no later claim, no end), and when Redis already holds a newer
    /// version under it (a late retry).
    pub fence: Fence,
}

/// What fences one claim's writes: its epoch, which numbers the versions the owner gives, and
/// a token drawn at random for the claim. Redis keeps both and a save must match them whole,
/// so no two claims share a fence even when Redis has forgotten every earlier claim
/// (restarted empty, or failed over to a replica that missed it) and hands out an epoch again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fence {
    pub epoch: u64,
    pub token: u64,
}

impl Fence {
    /// A fence for a claim that took `epoch`, with a fresh random token.
    pub fn drawn(epoch: u64) -> Fence {
        Fence {
            epoch,
            token: rand::random(),
        }
    }

    /// How Redis holds it (`<epoch>:<token in hex>`).
    pub fn wire(&self) -> String {
        format!("{}:{:016x}", self.epoch, self.token)
    }
}

/// What [`Bus::save`] did at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveOutcome {
    /// Queued: the result comes later as [`BusEvents::saved`].
    Pending,
    /// Not saved: the bus is down. The caller saves again when it is back; meanwhile only a
    /// game Redis has never held is shown unsaved (runs alone), others wait.
    Down,
}

/// The result of a save, reported through [`BusEvents::saved`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveResult {
    /// Stored and published (the lease is renewed apart from saves, in batches).
    Saved,
    /// Refused: another server owns the game now.
    Fenced,
    /// Refused: Redis holds no epoch for the game (it came back empty, or the game was ended).
    Unowned,
    /// Redis could not be asked; the save may or may not have happened.
    Failed,
    /// Redis answered with an error (out of memory, read-only, loading): the save did not
    /// happen.
    Refused,
}

impl SaveResult {
    /// Not saved, or not known to be: tried again.
    pub fn failed(self) -> bool {
        matches!(self, SaveResult::Failed | SaveResult::Refused)
    }
}

/// The answer to [`Bus::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// We own the game now (or already did); here is its stored JSON, and the fence this
    /// claim took: its epoch is higher than any earlier claim's Redis remembers and than the
    /// floor asked for, and its token is this claim's alone.
    Claimed { stored: String, fence: Fence },
    /// A live server owns it.
    OwnedBy(String),
    /// No such game (and no fallback was given).
    Gone,
    /// The game ended: its tombstone stands, and no copy of it may be restored.
    Ended,
    /// Redis lost the game, and the copies servers offer are being weighed: ours is not the
    /// one restored (a newer one was offered), or the window is still open. Ask again after
    /// [`RESTORE_WINDOW`].
    Restoring,
    /// Redis could not be asked.
    Failed,
}

/// What a claim may create when Redis has no state for the game.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// A game just created here: nobody else has it, so it is stored at once.
    New(String),
    /// This server's copy of a game Redis lost, and its version. Every server holding a copy
    /// offers it; the newest offered within [`RESTORE_WINDOW`] of the first offer is restored
    /// (the first offered among equals), under an epoch above every offer's floor, so that a
    /// server that was cut off while Redis lost the game cannot bring back its older copy
    /// over the one the latest owner holds.
    Copy { json: String, version: u64 },
}

/// How long the copies of a game Redis lost are collected before the newest is restored: a
/// few reconnect attempts of every server whose connection broke when Redis did.
pub const RESTORE_WINDOW: Duration = Duration::from_millis(300);

/// The answer to a lease renewal, per game.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Still ours, extended.
    Held,
    /// Nobody owns it any more (expired, or Redis came back empty): claim it again.
    Unowned,
    /// Another server owns it.
    Taken,
    /// Redis could not be asked.
    Failed,
}

/// Why a read failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Redis is unavailable")]
pub struct BusDown;

/// What the bus reports; the registry implements it and routes to game tasks. Every method
/// returns at once (it may only queue).
pub trait BusEvents: Send + Sync + 'static {
    /// Another server published on `game:<game_id>`.
    fn relayed(&self, game_id: &str, payload: &[u8]);
    /// A message arrived in this server's inbox (`node:<node_id>`).
    fn inbox(&self, payload: &[u8]);
    /// A save finished.
    fn saved(&self, game_id: &str, version: u64, result: SaveResult);
    /// The connection to Redis came up (subscriptions in place) or went down.
    fn connection(&self, up: bool);
    /// A per-game subscription asked for with [`Bus::interest`] is in place: whatever was
    /// published on `game:<game_id>` before it was not heard here, so read the state again.
    fn subscribed(&self, _game_id: &str) {}
}

/// Which Redis set-up the bus speaks to, for `/health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// `single-redis`, `sentinel` or `cluster`.
    pub kind: &'static str,
    /// Sentinel: the master's `host:port` now (none until the Sentinels have named one).
    pub master: Option<String>,
}

/// Pub/sub messages received from Redis, used or not, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PubSubCounts {
    /// On game channels (`game:<id>`).
    pub game: u64,
    /// In this server's inbox (`node:<node_id>`).
    pub inbox: u64,
}

/// The game layer's view of the cluster.
pub trait Bus: Send + Sync + 'static {
    /// This server's node id (the owner value, the inbox name, the `origin` published).
    fn node_id(&self) -> &str;

    fn status(&self) -> BusStatus;

    /// Whether games are shared with other servers at all (false: single-server mode, where a
    /// game task commits changes at once and never serialises them for a store).
    fn replicated(&self) -> bool;

    /// How long a lease lasts from the moment its renewal was sent.
    fn lease(&self) -> Duration;

    /// Starts the bus's own tasks; events go to `events`.
    fn start(&self, events: Arc<dyn BusEvents>);

    /// Saves and publishes, fenced on this server owning the game.
    fn save(&self, game_id: &str, save: Save) -> SaveOutcome;

    /// Ends a game everywhere: deletes its state, leaves a tombstone that refuses every later
    /// claim for as long as a state would have lived, and publishes `publish`, if still ours
    /// under `fence`.
    fn terminate(&self, game_id: &str, publish: String, fence: Fence);

    /// Sends a message to another server's inbox. False when it could not be sent (down).
    fn send_to(&self, node: &str, payload: String) -> bool;

    /// Who owns the game? Takes it when nobody alive does, under an epoch at least `floor`
    /// (above the epoch of every version the claimant knows). A missing game is created from
    /// `fallback` when one is given (a new game at once; a copy of one Redis lost once the
    /// copies are weighed, see [`Fallback::Copy`]); an ended one never is.
    fn claim(&self, game_id: &str, fallback: Option<Fallback>, floor: u64) -> BoxFuture<'_, Claim>;

    /// Hands a game we own under `fence` to server `to`: its lease becomes `to`'s, so that
    /// `to`'s claim (told by a message to its inbox) takes it at once under a new epoch. True
    /// when done; false when the game is not ours under `fence` any more, or Redis could not
    /// be asked.
    fn hand_over(&self, game_id: &str, to: &str, fence: Fence) -> BoxFuture<'_, bool>;

    /// The stored JSON of a game, if any.
    fn load(&self, game_id: &str) -> BoxFuture<'_, Result<Option<String>, BusDown>>;

    /// Renews these leases in one batch; returns when the request was sent and each answer.
    fn renew(&self, game_ids: Vec<String>) -> BoxFuture<'_, (Instant, Vec<Renewal>)>;

    /// Which of these servers are alive (their heartbeat key exists). Down: all assumed alive.
    fn alive(&self, nodes: Vec<String>) -> BoxFuture<'_, Vec<bool>>;

    /// Shutdown: gives these games up and stops the heartbeat, so others take over at once.
    /// Nothing is saved after this.
    fn release(&self, game_ids: Vec<String>) -> BoxFuture<'_, ()>;

    /// Counts a game created here (for `/_stats`).
    fn count_created(&self);

    /// Games created across the cluster; `None` when it cannot be asked.
    fn games_created(&self) -> BoxFuture<'_, Option<u64>>;

    /// Where it connects, for logs and `/health` (never a password).
    fn describe(&self) -> String;

    /// Writes done (saves and ends), for `/metrics`.
    fn writes_done(&self) -> u64;

    /// This server has (`wanted`) or no longer has local players or pending commands in a
    /// game. A bus that subscribes per game (`-subscribe per-game`) hears `game:<id>` only
    /// while wanted, and reports [`BusEvents::subscribed`] once it does; the others hear
    /// every game anyway.
    fn interest(&self, _game_id: &str, _wanted: bool) {}

    /// Whether every game's updates reach this server (pattern subscription, or one process),
    /// so a copy of a game nobody here plays is kept up to date.
    fn hears_every_game(&self) -> bool {
        true
    }

    /// The Redis set-up, for `/health` (`None`: no Redis).
    fn topology(&self) -> Option<Topology> {
        None
    }

    /// Pub/sub messages received from Redis, for `/metrics`.
    fn pubsub_received(&self) -> PubSubCounts {
        PubSubCounts::default()
    }

    /// Commands sent to Redis (each command of a pipeline counted), for `/metrics`.
    fn commands_sent(&self) -> u64 {
        0
    }

    /// Save latency, relay lag, fenced writes and lost leases, for `/metrics` (`None`: no
    /// Redis).
    fn stats(&self) -> Option<&stats::BusStats> {
        None
    }
}

/// How long a server's heartbeat key lives: a crashed server's games are taken over this long
/// after its last beat. Shorter than the lease (a lease also covers a server that is alive but
/// briefly cut off), long enough that a busy server never misses it.
pub fn heartbeat_ttl(lease: Duration) -> Duration {
    (lease / 4).clamp(Duration::from_millis(500), Duration::from_secs(2))
}
