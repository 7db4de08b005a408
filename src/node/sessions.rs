//! The players of one game connected to this server, and the frames sent to them (its
//! spectators are fed apart: see `spectators`).
//!
//! A frame is serialised once and its bytes shared; each session's [`FrameSink`] takes it
//! without waiting (the WebSocket writes it at once, or keeps it behind what is pending). A
//! session whose sink is full has fallen behind: it is skipped (no queue of stale frames
//! builds up), and once its sink has room again it gets the newest full state and carries
//! on from there. A socket that stops draining altogether is closed by its session task (a
//! write that does not finish in time).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytestring::ByteString;
#[cfg(test)]
use tokio::sync::mpsc;

use super::Metrics;

/// A WebSocket session's id, unique on this server.
pub type SessionId = u64;

/// What a channel [`FrameSink`] carries to its reader (the node's tests use one).
#[cfg(test)]
#[derive(Debug, Clone)]
pub enum Outbound {
    Frame(ByteString),
    /// Close the socket: the game ended, or the server is stopping.
    Close(CloseWhy),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseWhy {
    Terminated,
    GoingAway,
    /// The robot opened more sockets on this server than a player has tabs.
    Replaced,
}

/// Sockets one robot may have open on one server (tabs); another closes the oldest.
pub const MAX_SOCKETS_PER_ROBOT: usize = 4;

/// Where a session's frames go, without waiting: the WebSocket's queue (the web layer
/// implements this on actix-ws's `Session`), or a channel in tests. Dropping it tells the
/// session the game let go of it.
pub trait FrameSink: Send + 'static {
    fn try_frame(&mut self, frame: ByteString) -> Result<(), SinkError>;
    /// Whether a sink that refused frames (full) may be offered the newest full state again
    /// (`true` when the sink cannot tell: the offer then finds out).
    fn has_room(&self) -> bool;
    /// Asks the session to close its socket, after the frames already taken.
    fn close(&mut self, why: CloseWhy);
}

/// Why a frame was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkError {
    /// The client is not keeping up.
    Full,
    /// The session has ended.
    Closed,
}

#[cfg(test)]
impl FrameSink for mpsc::Sender<Outbound> {
    fn try_frame(&mut self, frame: ByteString) -> Result<(), SinkError> {
        self.try_send(Outbound::Frame(frame)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SinkError::Full,
            mpsc::error::TrySendError::Closed(_) => SinkError::Closed,
        })
    }

    fn has_room(&self) -> bool {
        self.capacity() * 2 >= self.max_capacity()
    }

    fn close(&mut self, why: CloseWhy) {
        let _ = self.try_send(Outbound::Close(why));
    }
}

struct Local {
    id: SessionId,
    /// The robot this socket plays.
    robot_id: String,
    /// Frames, straight to the socket, and the request to close it.
    sink: Box<dyn FrameSink>,
    /// Frames were skipped: the next it gets is the newest full state.
    behind: bool,
}

/// One game's local sessions.
pub struct Sessions {
    list: Vec<Local>,
    /// Robots whose socket opened here, not yet taken by presence: an opening counts even
    /// when the socket closed before presence looked at the sockets.
    arrived: Vec<String>,
    /// A session was let go of without its disconnect (its socket already gone).
    dropped: bool,
    metrics: Arc<Metrics>,
}

impl Sessions {
    pub fn new(metrics: Arc<Metrics>) -> Sessions {
        Sessions {
            list: Vec::new(),
            arrived: Vec::new(),
            dropped: false,
            metrics,
        }
    }

    pub fn add(&mut self, id: SessionId, robot_id: String, sink: Box<dyn FrameSink>) {
        if !self.arrived.contains(&robot_id) {
            self.arrived.push(robot_id.clone());
        }
        self.list.push(Local {
            id,
            robot_id,
            sink,
            behind: false,
        });
    }

    pub fn remove(&mut self, id: SessionId) {
        self.list.retain(|s| s.id != id);
    }

    /// The robots whose socket opened here since the last call (open or not now).
    pub fn take_arrived(&mut self) -> Vec<String> {
        std::mem::take(&mut self.arrived)
    }

    /// Whether a session was dropped since the last call because its socket was gone (its
    /// robot's presence is to be worked out again).
    pub fn take_dropped(&mut self) -> bool {
        std::mem::take(&mut self.dropped)
    }

    /// Makes room for one more socket of `robot_id`: closes its oldest beyond the cap.
    pub fn make_room_for(&mut self, robot_id: &str) {
        let of_robot = |s: &Local| s.robot_id == robot_id;
        let mine = self.list.iter().filter(|s| of_robot(s)).count();
        if mine < MAX_SOCKETS_PER_ROBOT {
            return;
        }
        if let Some(i) = self.list.iter().position(of_robot) {
            let mut oldest = self.list.remove(i);
            log::info!(
                "session {}: closed, robot {robot_id} opened more than {MAX_SOCKETS_PER_ROBOT} sockets",
                oldest.id
            );
            oldest.sink.close(CloseWhy::Replaced);
        }
    }

    /// The robot a session plays (`None` for an unknown session).
    pub fn robot_of(&self, id: SessionId) -> Option<&str> {
        self.list
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.robot_id.as_str())
    }

    /// The robots with at least one socket here (each once).
    pub fn robots_present(&self) -> Vec<&str> {
        let mut robots: Vec<&str> = self.list.iter().map(|s| s.robot_id.as_str()).collect();
        robots.sort_unstable();
        robots.dedup();
        robots
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether some session is behind (then the caller offers the newest full state).
    pub fn any_behind(&self) -> bool {
        self.list.iter().any(|s| s.behind)
    }

    /// Sends a frame to every session. One whose queue is full is skipped from then on;
    /// when its queue is half empty again it gets `resync`, the newest full state (when the
    /// caller has one; else it waits for the next).
    pub fn send_all(&mut self, frame: &ByteString, resync: Option<&ByteString>) {
        let metrics = &self.metrics;
        let dropped = &mut self.dropped;
        self.list.retain_mut(|s| {
            let frame = if s.behind {
                match resync.filter(|_| s.sink.has_room()) {
                    Some(full) => full,
                    None => {
                        metrics.frames_skipped.fetch_add(1, Ordering::Relaxed);
                        return true;
                    }
                }
            } else {
                frame
            };
            match s.sink.try_frame(frame.clone()) {
                Ok(()) => {
                    metrics.updates_sent.fetch_add(1, Ordering::Relaxed);
                    s.behind = false;
                    true
                }
                Err(SinkError::Full) => {
                    if !s.behind {
                        log::debug!("session {}: behind; skipping to the newest state", s.id);
                        metrics.sessions_behind.fetch_add(1, Ordering::Relaxed);
                    }
                    metrics.frames_skipped.fetch_add(1, Ordering::Relaxed);
                    s.behind = true;
                    true
                }
                // The socket is gone (its disconnect is on the way, if it has a session task).
                Err(SinkError::Closed) => {
                    *dropped = true;
                    false
                }
            }
        });
    }

    /// Sends a frame to one session (an error, a welcome).
    pub fn send_to(&mut self, id: SessionId, frame: ByteString) {
        if let Some(s) = self.list.iter_mut().find(|s| s.id == id) {
            let _ = s.sink.try_frame(frame);
        }
    }

    /// Asks every session to close (they stay listed until they disconnect).
    pub fn close_all(&mut self, why: CloseWhy, last_frame: Option<&ByteString>) {
        for s in &mut self.list {
            if let Some(frame) = last_frame {
                let _ = s.sink.try_frame(frame.clone());
            }
            s.sink.close(why);
        }
    }
}
