//! One task per WebSocket: it reads the browser's frames, keeps the heartbeat, and closes.
//!
//! A player's frames *to* the browser do not pass through here: the game task offers them
//! straight to the actix-ws [`Session`] (see [`super::socket`]). A spectator's do: this task
//! writes the newest state its [`Watcher`] publishes (at most `-spectator-hz` a second),
//! waiting for room in its own socket's queue, so a slow spectator only delays itself. This task reads the [`MessageStream`]
//! (the frames are checked against the connection's budget before they are parsed, then
//! parsed into [`ClientMsg`] and sent to the game's task), answers what needs an answer
//! (errors, pongs, the close handshake), pings, and closes the socket when the browser or the
//! game asks, when the browser goes silent, or when it stops reading.
//!
//! When the server stops, the game asks us to close: we say `going_away` and keep reading
//! until the browser closes (bounded), so every press it sent before seeing that still
//! reaches the game.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use bytestring::ByteString;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::limits::{self, Bucket, FrameBudget, Verdict};
use super::socket::{ConnSocket, Link, Signal};
use crate::node::Watcher;
use crate::node::{CloseWhy, Cue, Curtain, GameHandle, GameMsg, Metrics, NodeError, SessionId};
use crate::protocol::{error_frame, rate_limited_frame, ClientMsg, ServerMsg, MAX_CLIENT_FRAME};

/// How long a session told to go waits for the browser to close, still taking its presses.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// A frame of the session's own that cannot be queued within this long: the client stopped
/// reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Invalid frames in a row before the client is disconnected.
const MAX_BAD_FRAMES: u32 = 50;

/// What a session needs besides its socket.
pub struct SessionCtx {
    pub game: GameHandle,
    pub id: SessionId,
    /// A spectator's view of the game (its commands are refused).
    pub watcher: Option<Watcher>,
    pub metrics: Arc<Metrics>,
    /// Frames a second the connection may send (see [`FrameBudget`]).
    pub frame_rate: u32,
    /// Silence after which the client is gone; pings every third of it.
    pub timeout: Duration,
    pub link: Arc<Link>,
    /// The socket under the connection: cut when the client stops reading.
    pub socket: Option<ConnSocket>,
}

/// How the session ends.
enum Ending {
    /// Say this in a close frame (and wait for the browser's).
    Close(CloseReason),
    /// The browser closed: answer with this (its own code).
    Answer(CloseReason),
    /// The socket is gone already.
    Gone,
    /// The client stopped reading: nothing can reach it; cut the connection.
    Stalled,
}

fn reason(code: CloseCode, description: &str) -> CloseReason {
    CloseReason {
        code,
        description: Some(description.to_owned()),
    }
}

/// What to do after a message from the browser.
enum Next {
    Go,
    Answer(ByteString),
    Pong(actix_web::web::Bytes),
    End(Ending),
}

/// What the browser's frames mean for the session.
struct Reader {
    game: GameHandle,
    id: SessionId,
    spectator: bool,
    metrics: Arc<Metrics>,
    budget: FrameBudget,
    presses: Bucket,
    told_rate_limited: bool,
    /// Presses, and frames over the budget, dropped since the last `rate_limited` answer.
    presses_untold: u32,
    frames_untold: u32,
    bad_frames: u32,
}

impl Reader {
    fn read(&mut self, msg: AggregatedMessage, now: Instant) -> Next {
        match self.budget.check(now) {
            Verdict::Take => {}
            Verdict::Drop => {
                self.frames_untold += 1;
                return Next::Go;
            }
            Verdict::DropAndTell => {
                let dropped = std::mem::take(&mut self.frames_untold) + 1;
                return Next::Answer(rate_limited_frame("messages", dropped));
            }
            Verdict::Close => {
                return Next::End(Ending::Close(reason(
                    CloseCode::Policy,
                    "too many messages",
                )))
            }
        }
        // Frames dropped since the last answer, told once the flood is over (the budget
        // refilled to half: at most one answer a second).
        if self.frames_untold > 0 && self.budget.calm() {
            let dropped = std::mem::take(&mut self.frames_untold);
            let then = self.read_taken(msg, now);
            return match then {
                Next::Go => Next::Answer(rate_limited_frame("messages", dropped)),
                other => {
                    self.frames_untold = dropped;
                    other
                }
            };
        }
        self.read_taken(msg, now)
    }

    /// A frame within the budget.
    fn read_taken(&mut self, msg: AggregatedMessage, now: Instant) -> Next {
        match msg {
            AggregatedMessage::Text(text) => self.command(&text, now),
            AggregatedMessage::Binary(bytes) => self.bad(bytes.len()),
            AggregatedMessage::Ping(bytes) => Next::Pong(bytes),
            AggregatedMessage::Pong(_) => Next::Go,
            AggregatedMessage::Close(why) => Next::End(Ending::Answer(
                why.unwrap_or_else(|| CloseCode::Normal.into()),
            )),
        }
    }

    fn command(&mut self, text: &str, now: Instant) -> Next {
        let Some(msg) = ClientMsg::parse(text) else {
            return self.bad(text.len());
        };
        self.bad_frames = 0;
        if self.spectator {
            return Next::Answer(error_frame(
                "permission_denied",
                "Spectators can watch but not play",
            ));
        }
        if msg == ClientMsg::ScorePoint && !self.presses.allow(now) {
            // Said at the first press dropped of a burst, and how many more were dropped once
            // a press goes through again: never once per dropped press.
            return if std::mem::replace(&mut self.told_rate_limited, true) {
                self.presses_untold += 1;
                Next::Go
            } else {
                Next::Answer(rate_limited_frame("presses", 1))
            };
        }
        self.told_rate_limited = false;
        match self.game.tx.try_send(GameMsg::Client(self.id, msg, now)) {
            Ok(()) if self.presses_untold > 0 => {
                let dropped = std::mem::take(&mut self.presses_untold);
                Next::Answer(rate_limited_frame("presses", dropped))
            }
            Ok(()) => Next::Go,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.overloaded.fetch_add(1, Ordering::Relaxed);
                let e = NodeError::Overloaded;
                Next::Answer(error_frame(e.code(), &e.to_string()))
            }
            // The game ended; its end message is on the way.
            Err(mpsc::error::TrySendError::Closed(_)) => Next::Go,
        }
    }

    fn bad(&mut self, len: usize) -> Next {
        self.bad_frames += 1;
        if self.bad_frames > MAX_BAD_FRAMES {
            return Next::End(Ending::Close(reason(
                CloseCode::Policy,
                "too many bad messages",
            )));
        }
        Next::Answer(if len > MAX_CLIENT_FRAME {
            error_frame("bad_message", "Message too large (1 KiB at most)")
        } else {
            error_frame(
                "bad_message",
                "Expected a JSON text message: score_point, start_countdown, play_again or leave",
            )
        })
    }
}

/// The close a protocol error earns (RFC 6455 section 7.4.1): 1009 for a message over the size
/// cap, 1007 for text that is not UTF-8, else 1002 (reserved bits set, an unmasked frame, a bad
/// opcode or control frame, a continuation out of place).
fn protocol_close(e: &actix_ws::ProtocolError) -> CloseReason {
    use actix_ws::ProtocolError as P;
    match e {
        P::Overflow => reason(CloseCode::Size, "message too big"),
        P::Io(io) if io.to_string().contains("continuation size") => {
            reason(CloseCode::Size, "message too big")
        }
        P::Io(io) if not_utf8(io) => reason(CloseCode::Invalid, "text is not UTF-8"),
        _ => reason(CloseCode::Protocol, "protocol error"),
    }
}

/// actix-ws reports text that is not UTF-8 as `InvalidData` carrying the `Utf8Error` (or its
/// text, for a fragmented message); actix-http reports reserved bits with the same kind.
fn not_utf8(io: &std::io::Error) -> bool {
    io.kind() == std::io::ErrorKind::InvalidData
        && (io
            .get_ref()
            .is_some_and(|inner| inner.is::<std::str::Utf8Error>())
            || io.to_string().contains("utf-8"))
}

/// Queues a frame of the session's own; the client stopped reading if it cannot be queued
/// in time.
async fn say(session: &mut Session, frame: ByteString) -> Result<(), Ending> {
    match tokio::time::timeout(WRITE_TIMEOUT, session.text(frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Ending::Gone),
        Err(_) => Err(Ending::Stalled),
    }
}

/// Runs the session until either side closes; always tells the game it is gone.
pub async fn run(ctx: SessionCtx, mut stream: AggregatedMessageStream, mut session: Session) {
    let SessionCtx {
        game,
        id,
        mut watcher,
        metrics,
        frame_rate,
        timeout,
        link,
        socket,
    } = ctx;
    let spectator = watcher.is_some();
    metrics.connections.fetch_add(1, Ordering::Relaxed);
    let now = Instant::now();
    let mut reader = Reader {
        game: game.clone(),
        id,
        spectator,
        metrics: metrics.clone(),
        budget: FrameBudget::new(frame_rate, now),
        presses: limits::presses(now),
        told_rate_limited: false,
        presses_untold: 0,
        frames_untold: 0,
        bad_frames: 0,
    };
    // Each socket's pings at its own phase: thousands of sockets opened in the same few
    // seconds would otherwise all ping at once, every period, in front of the players' frames.
    let every = timeout / 3;
    let phase = every.mul_f64(rand::random::<f64>());
    let mut heartbeat = tokio::time::interval_at(now + phase, every);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = now;
    // Set once told to go: when we close the socket ourselves.
    let mut leaving: Option<Instant> = None;
    let far = now + Duration::from_secs(86_400 * 365);
    let ending = loop {
        tokio::select! {
            signal = link.next() => match signal {
                Signal::Close(CloseWhy::Terminated) => {
                    break Ending::Close(reason(CloseCode::Normal, "game ended"));
                }
                Signal::Close(CloseWhy::Replaced) => {
                    break Ending::Close(reason(CloseCode::Policy, "opened in too many tabs"));
                }
                Signal::Close(CloseWhy::GoingAway) => {
                    if leaving.is_none() {
                        leaving = Some(Instant::now() + CLOSE_WAIT);
                        if let Err(end) = say(&mut session, ServerMsg::GoingAway.to_frame()).await {
                            break end;
                        }
                    }
                }
                // The game task let go of us (it ended, or dropped a session it could not
                // write to).
                Signal::Released => break Ending::Close(reason(CloseCode::Away, "game gone")),
            },
            msg = stream.recv() => {
                let msg = match msg {
                    None => break Ending::Gone,
                    Some(Err(e)) => {
                        log::debug!("session {id}: protocol error: {e}");
                        break Ending::Close(protocol_close(&e));
                    }
                    Some(Ok(msg)) => msg,
                };
                let now = Instant::now();
                last_heard = now;
                let sent = match reader.read(msg, now) {
                    Next::Go => Ok(()),
                    Next::Answer(frame) => say(&mut session, frame).await,
                    Next::Pong(bytes) => {
                        match tokio::time::timeout(WRITE_TIMEOUT, session.pong(&bytes)).await {
                            Ok(Ok(())) => Ok(()),
                            Ok(Err(_)) => Err(Ending::Gone),
                            Err(_) => Err(Ending::Stalled),
                        }
                    }
                    Next::End(end) => Err(end),
                };
                if let Err(end) = sent {
                    break end;
                }
            },
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > timeout {
                    log::info!("session {id}: closed, silent for {timeout:?}");
                    break Ending::Close(reason(CloseCode::Normal, "timed out"));
                }
                match tokio::time::timeout(WRITE_TIMEOUT, session.ping(b"")).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break Ending::Gone,
                    Err(_) => break Ending::Stalled,
                }
            },
            cue = next_cue(&mut watcher), if watcher.is_some() => match cue {
                Cue::Frame(frame) => {
                    if let Err(end) = say(&mut session, frame).await {
                        break end;
                    }
                    metrics.spectator_frames.fetch_add(1, Ordering::Relaxed);
                }
                Cue::Close(curtain) => {
                    watcher = None;
                    match curtain {
                        Curtain::Ended => {
                            let end = reason(CloseCode::Normal, "game ended");
                            break match say(&mut session, ServerMsg::Terminated.to_frame()).await {
                                Ok(()) => Ending::Close(end),
                                Err(end) => end,
                            };
                        }
                        Curtain::Gone => break Ending::Close(reason(CloseCode::Away, "game gone")),
                        Curtain::GoingAway if leaving.is_none() => {
                            leaving = Some(Instant::now() + CLOSE_WAIT);
                            if let Err(end) = say(&mut session, ServerMsg::GoingAway.to_frame()).await {
                                break end;
                            }
                        }
                        Curtain::GoingAway => {}
                    }
                }
            },
            () = tokio::time::sleep_until(leaving.unwrap_or(far)), if leaving.is_some() => {
                break Ending::Close(reason(CloseCode::Away, "server going away"));
            }
        }
    };
    // The game hears of it first: nothing more is sent to this socket. (A spectator's game
    // never knew of it: dropping its watcher is all.)
    drop(watcher);
    if !spectator && game.tx.try_send(GameMsg::Disconnect(id)).is_err() {
        let tx = game.tx.clone();
        actix_web::rt::spawn(async move {
            let _ = tx.send(GameMsg::Disconnect(id)).await;
        });
    }
    close(ending, id, &metrics, socket.as_ref(), &mut stream, session).await;
    metrics.connections.fetch_sub(1, Ordering::Relaxed);
}

/// The next frame or curtain for a spectator (never, for a player).
async fn next_cue(watcher: &mut Option<Watcher>) -> Cue {
    match watcher {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

/// Ends the connection as `ending` says: the close handshake when the client still reads,
/// a cut when it does not.
async fn close(
    ending: Ending,
    id: SessionId,
    metrics: &Metrics,
    socket: Option<&ConnSocket>,
    stream: &mut AggregatedMessageStream,
    session: Session,
) {
    let (why, wait_for_peer) = match ending {
        Ending::Gone => return,
        Ending::Answer(why) => (why, false),
        Ending::Close(why) => (why, true),
        Ending::Stalled => {
            return cut(id, metrics, socket);
        }
    };
    if tokio::time::timeout(WRITE_TIMEOUT, session.close(Some(why)))
        .await
        .is_err()
    {
        // Not even the close frame fits: the client stopped reading.
        return cut(id, metrics, socket);
    }
    if wait_for_peer {
        // Give the browser a moment to answer the close, so the connection ends cleanly
        // rather than with a reset over its unread bytes.
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(msg)) = stream.recv().await {
                if matches!(msg, AggregatedMessage::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// A client that stopped reading: nothing can reach it, so its connection is reset.
fn cut(id: SessionId, metrics: &Metrics, socket: Option<&ConnSocket>) {
    log::info!("session {id}: closed, it does not read its updates");
    metrics
        .sessions_dropped_slow
        .fetch_add(1, Ordering::Relaxed);
    if let Some(socket) = socket {
        socket.abort();
    }
}
