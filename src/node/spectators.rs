//! A game's spectators on this server, off its players' path.
//!
//! Players get a frame for every committed change, from their game's task. Spectators (the
//! big screen, any number of them) get the newest committed state at most `-spectator-hz`
//! times a second, and nothing they do reaches the game task's queue or its time:
//!
//! - the game task hands its [`Stage`] each frame it shows its players (an `Arc` clone into
//!   a slot, [`Stage::shown`]); it never writes to a spectator's socket;
//! - a feed task per watched game (`feed`, on the game runtime) wakes on a change, at most
//!   once per period, turns the newest frames into one full `game_update` (and the `welcome`
//!   a newcomer gets), serialised once for every spectator here (`view`), and publishes
//!   them on `watch` channels (one per group of spectators; a big audience is woken a group
//!   at a time);
//! - each spectator's session task ([`Watcher`]) writes the newest published frame to its
//!   own socket when it has room. A spectator that is slow or stalled only falls behind
//!   itself: it skips versions, never goes backwards, and ends on the newest one.
//!
//! Spectators connect and leave without a message to the game task (only the first arriving
//! and the last leaving tell it, so that it keeps following the game for them). How many
//! there are on this server is counted by [`Seat`], which also refuses one past
//! `-max-spectators`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytestring::ByteString;
use tokio::sync::{watch, Notify};

use super::{GameHandle, GameMsg, Metrics};
use crate::protocol::FrameKind;
use view::View;

/// Spectator frames a second per game when not configured (`-spectator-hz`).
pub const DEFAULT_SPECTATOR_HZ: u32 = 20;

/// Why a game's spectators are let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curtain {
    /// The game ended: spectators are told `terminated`.
    Ended,
    /// This server is stopping: spectators are told `going_away` and reconnect elsewhere.
    GoingAway,
    /// The game's task here stopped (the game moved on without this server).
    Gone,
}

/// The newest frames for spectators, serialised once.
#[derive(Debug)]
pub struct Frames {
    pub version: u64,
    /// `{"type":"game_update",…}`: what a watching socket is sent.
    pub update: ByteString,
    /// `{"type":"welcome","robot_id":null,…}`: the first frame of a new spectator.
    pub welcome: ByteString,
}

/// What the feed publishes to every spectator of the game here.
#[derive(Debug, Clone, Default)]
pub struct Screen {
    pub frames: Option<Arc<Frames>>,
    pub curtain: Option<Curtain>,
}

/// What the game task last showed its players, for the feed to pick up.
#[derive(Default)]
struct Shown {
    /// The newest full `game_update` shown, and its version.
    full: Option<(u64, ByteString)>,
    /// The newest `scores` frame shown after it, and its version.
    scores: Option<(u64, ByteString)>,
    curtain: Option<Curtain>,
}

/// One game's spectators on this server; shared by the game task (which shows), the feed
/// (which publishes) and the spectators' sessions (which watch).
pub struct Stage {
    shown: Mutex<Shown>,
    /// Something new in `shown` for the feed.
    wake: Notify,
    /// What spectators are shown, one channel per group of them (see [`GROUPS`]).
    screens: Box<[watch::Sender<Screen>]>,
    /// Spectators that joined, ever: which group the next one joins.
    joined: AtomicUsize,
    /// Spectators of this game here.
    watchers: AtomicUsize,
    /// The feed task was started (on the first spectator).
    feeding: AtomicBool,
    /// The game task has shown a full state (or seeded one).
    seeded: AtomicBool,
}

impl std::fmt::Debug for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stage")
            .field("watchers", &self.watchers)
            .finish_non_exhaustive()
    }
}

impl Default for Stage {
    fn default() -> Self {
        Stage {
            shown: Mutex::default(),
            wake: Notify::new(),
            screens: (0..GROUPS)
                .map(|_| watch::Sender::new(Screen::default()))
                .collect(),
            joined: AtomicUsize::new(0),
            watchers: AtomicUsize::new(0),
            feeding: AtomicBool::new(false),
            seeded: AtomicBool::new(false),
        }
    }
}

impl Stage {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shown> {
        self.shown.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The game task showed its players `frame` (a `game_update` or a `scores` frame) at
    /// `version`. Cheap: the bytes are shared, and the feed does the rest on its own time.
    pub fn shown(&self, version: u64, frame: &ByteString) {
        {
            let mut shown = self.lock();
            match FrameKind::of(frame) {
                FrameKind::Update => {
                    let seen = |v: &Option<(u64, ByteString)>| {
                        v.as_ref().is_some_and(|(seen, _)| *seen >= version)
                    };
                    if seen(&shown.full) || seen(&shown.scores) {
                        return;
                    }
                    shown.full = Some((version, frame.clone()));
                    shown.scores = None;
                    self.seeded.store(true, Ordering::Relaxed);
                }
                FrameKind::Scores => {
                    let newer = |v: &Option<(u64, ByteString)>| {
                        v.as_ref().is_none_or(|(seen, _)| *seen < version)
                    };
                    if !newer(&shown.full) || !newer(&shown.scores) {
                        return;
                    }
                    shown.scores = Some((version, frame.clone()));
                }
                FrameKind::Other => return,
            }
        }
        if self.feeding.load(Ordering::Relaxed) {
            self.wake.notify_one();
        }
    }

    /// Whether the feed waits for a first full state that the game task has not shown yet
    /// (it then seeds one from the committed game).
    pub fn wants_seed(&self) -> bool {
        self.feeding.load(Ordering::Relaxed) && !self.seeded.load(Ordering::Relaxed)
    }

    /// Lets the spectators go (the first reason given stands).
    pub fn close(&self, curtain: Curtain) {
        {
            let mut shown = self.lock();
            if shown.curtain.is_some() {
                return;
            }
            shown.curtain = Some(curtain);
        }
        if self.feeding.load(Ordering::Relaxed) {
            self.wake.notify_one();
        } else {
            for screen in &self.screens {
                screen.send_modify(|s| s.curtain = Some(curtain));
            }
        }
    }

    /// Whether anyone watches the game here (the game task keeps following it for them).
    pub fn watched(&self) -> bool {
        self.watchers.load(Ordering::Relaxed) > 0
    }
}

/// Spectators of a game here are split into this many groups, each on a channel of its own.
const GROUPS: usize = 16;
/// Above this many spectators of a game here, the groups are woken one after the other over
/// half a period rather than all at once.
const PACE_ABOVE: usize = 256;

/// The game's spectators' cadence: publishes the newest state at most once per `period`,
/// until the game lets them go.
///
/// Each spectator woken costs its HTTP worker a task poll and a socket write, and a player's
/// frame on that worker waits behind the writes woken before it. So a big audience is woken
/// a group at a time, spread over half a period: a player's frame waits for one group's
/// writes at most, and a spectator sees the state at most half a period later.
async fn feed(stage: Arc<Stage>, period: Duration) {
    let mut view: Option<View> = None;
    // The versions of the full frame and of the scores frame the view was made from.
    let mut from = (0u64, 0u64);
    loop {
        stage.wake.notified().await;
        let tick = tokio::time::Instant::now();
        let (full, scores, curtain) = {
            let shown = stage.lock();
            (shown.full.clone(), shown.scores.clone(), shown.curtain)
        };
        if stage.watchers.load(Ordering::Relaxed) == 0 && curtain.is_none() {
            // Nobody to show it to: the first spectator to come wakes the feed again.
            continue;
        }
        let mut changed = false;
        if let Some((version, frame)) = full.filter(|(v, _)| *v != from.0) {
            if let Some(v) = View::of_update(&frame) {
                view = Some(v);
                from = (version, 0);
                changed = true;
            }
        }
        if let (Some(v), Some((version, frame))) = (view.as_mut(), scores) {
            if version != from.1 && v.apply_scores(&frame) {
                from.1 = version;
                changed = true;
            }
        }
        if let Some(frames) = view.as_ref().filter(|_| changed).and_then(View::frames) {
            let frames = Arc::new(frames);
            let paced = stage.watchers.load(Ordering::Relaxed) > PACE_ABOVE;
            for (i, screen) in stage.screens.iter().enumerate() {
                if paced && i > 0 {
                    tokio::time::sleep_until(tick + period * i as u32 / (2 * GROUPS as u32)).await;
                }
                screen.send_modify(|s| s.frames = Some(frames.clone()));
            }
        }
        if let Some(curtain) = curtain {
            for screen in &stage.screens {
                screen.send_modify(|s| s.curtain = Some(curtain));
            }
            return;
        }
        tokio::time::sleep_until(tick + period).await;
    }
}

/// One spectator's place on this server, counted in `robot_race_spectators` while held.
pub struct Seat {
    metrics: Arc<Metrics>,
}

impl Seat {
    /// A seat, unless `max` (more than 0) are taken.
    pub fn take(metrics: &Arc<Metrics>, max: u64) -> Option<Seat> {
        let before = metrics.spectators.fetch_add(1, Ordering::Relaxed);
        if max > 0 && before >= max {
            metrics.spectators.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Seat {
            metrics: metrics.clone(),
        })
    }

    /// Counts a refused upgrade.
    pub fn refused(metrics: &Metrics) {
        metrics.spectators_refused.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.metrics.spectators.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Tells the game task that its first spectator came or its last left (so that it follows
/// the game, or may let it go). A full queue means the task is busy: it looks again after
/// that batch anyway.
fn tell(game: &GameHandle) {
    let _ = game.tx.try_send(GameMsg::Spectators);
}

/// What a spectator's socket is sent next.
pub enum Cue {
    Frame(ByteString),
    Close(Curtain),
}

/// One spectator's view of its game: the newest frame when it can take one.
pub struct Watcher {
    game: GameHandle,
    rx: watch::Receiver<Screen>,
    /// The version last sent to the socket.
    sent: u64,
    /// The curtain, seen with a frame still to send.
    closing: Option<Curtain>,
    _seat: Seat,
}

impl Watcher {
    /// Starts watching `game` (starting its feed if nobody watched it here).
    pub(super) fn new(
        game: GameHandle,
        seat: Seat,
        period: Duration,
        rt: &tokio::runtime::Handle,
    ) -> Watcher {
        let stage = &game.info.stage;
        let group = stage.joined.fetch_add(1, Ordering::Relaxed) % GROUPS;
        let rx = stage.screens[group].subscribe();
        // The feed first: the game task, told of its first spectator below, seeds the feed if
        // nothing was shown yet, which it does only once the feed runs.
        if !stage.feeding.swap(true, Ordering::Relaxed) {
            rt.spawn(feed(stage.clone(), period));
        }
        if stage.watchers.fetch_add(1, Ordering::Relaxed) == 0 {
            tell(&game);
            // The feed skips work while nobody watches: bring it up to date.
            stage.wake.notify_one();
        }
        Watcher {
            game,
            rx,
            sent: 0,
            closing: None,
            _seat: seat,
        }
    }

    /// Waits (up to `timeout`) for the first state; `None` if the game went first.
    pub(super) async fn first(&mut self, timeout: Duration) -> Result<(), Option<Curtain>> {
        let ready = self
            .rx
            .wait_for(|s| s.frames.is_some() || s.curtain.is_some());
        match tokio::time::timeout(timeout, ready).await {
            Ok(Ok(s)) if s.frames.is_some() && s.curtain.is_none() => Ok(()),
            Ok(Ok(s)) => Err(s.curtain),
            Ok(Err(_)) => Err(Some(Curtain::Gone)),
            Err(_) => Err(None),
        }
    }

    /// The game watched (a spectator's commands are refused by its session, never sent).
    pub fn game(&self) -> GameHandle {
        self.game.clone()
    }

    /// The `welcome` for this spectator's socket: the newest state, taken as sent.
    pub fn welcome(&mut self) -> Option<ByteString> {
        let screen = self.rx.borrow_and_update();
        let frames = screen.frames.as_ref()?;
        self.sent = frames.version;
        Some(frames.welcome.clone())
    }

    /// The next frame to send: the newest state once it is newer than the last sent, or the
    /// curtain. Cancel safe.
    pub async fn next(&mut self) -> Cue {
        loop {
            if let Some(curtain) = self.closing {
                return Cue::Close(curtain);
            }
            if self.rx.changed().await.is_err() {
                return Cue::Close(Curtain::Gone);
            }
            let screen = self.rx.borrow_and_update().clone();
            self.closing = screen.curtain;
            if let Some(frames) = screen.frames.filter(|f| f.version > self.sent) {
                self.sent = frames.version;
                return Cue::Frame(frames.update.clone());
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if self
            .game
            .info
            .stage
            .watchers
            .fetch_sub(1, Ordering::Relaxed)
            == 1
        {
            tell(&self.game);
        }
    }
}

#[cfg(test)]
mod tests;
mod view;
