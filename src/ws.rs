//! One WebSocket session: a task per connected player.
//!
//! Authentication happens before the upgrade (in `http`); this task owns the socket afterwards.
//! One `select!` over three sources: frames from the browser (parsed into [`ClientMsg`], checked
//! and rate limited, then handed to the hub), frames from the hub (the outbox: shared bytes,
//! written as they are), and the heartbeat. The hub never waits for us: if our outbox fills up
//! because the browser stops reading, the hub drops the outbox and we close the socket.

use std::time::Duration;

use actix_ws::{AggregatedMessage, CloseCode, CloseReason, MessageStream, Session};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::hub::{CloseWhy, HubHandle, Outbound, SessionId};
use crate::protocol::{error_frame, ClientMsg, MAX_CLIENT_FRAME};

/// Ping this often; a client silent for [`CLIENT_TIMEOUT`] is gone.
const HEARTBEAT: Duration = Duration::from_secs(10);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Frames larger than this end the connection at the protocol level; frames between
/// [`MAX_CLIENT_FRAME`] and this get a `bad_message` answer.
const MAX_WIRE_FRAME: usize = 64 * 1024;
/// Presses a player may make per second (a sane human rate), with a burst of the same size.
pub const PRESSES_PER_SECOND: f64 = 30.0;
/// Invalid frames in a row before the client is disconnected.
const MAX_BAD_FRAMES: u32 = 50;

/// A token bucket: `PRESSES_PER_SECOND` tokens a second, holding at most that many.
struct RateLimit {
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    fn new() -> RateLimit {
        RateLimit {
            tokens: PRESSES_PER_SECOND,
            last: Instant::now(),
        }
    }

    fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * PRESSES_PER_SECOND).min(PRESSES_PER_SECOND);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Runs the session until either side closes; always tells the hub it is gone.
pub async fn run(
    hub: HubHandle,
    id: SessionId,
    mut session: Session,
    stream: MessageStream,
    mut outbox: mpsc::Receiver<Outbound>,
) {
    let mut stream = stream
        .max_frame_size(MAX_WIRE_FRAME)
        .aggregate_continuations()
        .max_continuation_size(MAX_WIRE_FRAME);
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let mut limit = RateLimit::new();
    let mut told_rate_limited = false;
    let mut bad_frames = 0u32;

    let close: Option<CloseReason> = loop {
        tokio::select! {
            out = outbox.recv() => match out {
                Some(Outbound::Frame(frame)) => {
                    if session.text(frame).await.is_err() {
                        break None;
                    }
                }
                Some(Outbound::Close(CloseWhy::Terminated)) => {
                    break Some(reason(CloseCode::Normal, "game ended"));
                }
                Some(Outbound::Close(CloseWhy::GoingAway)) => {
                    break Some(reason(CloseCode::Away, "server going away"));
                }
                // The hub let go of us: we were too slow to read updates.
                None => break Some(reason(CloseCode::Policy, "too slow")),
            },
            msg = stream.recv() => {
                let now = Instant::now();
                last_heard = now;
                let answer = match msg {
                    Some(Ok(AggregatedMessage::Text(text))) => match ClientMsg::parse(&text) {
                        Some(ClientMsg::ScorePoint) if !limit.allow(now) => {
                            bad_frames = 0;
                            // Say it once per burst, not once per dropped press.
                            (!std::mem::replace(&mut told_rate_limited, true)).then(|| {
                                error_frame("rate_limited", "Too many presses: slow down")
                            })
                        }
                        Some(msg) => {
                            bad_frames = 0;
                            told_rate_limited = false;
                            hub.client(id, msg).await;
                            None
                        }
                        None => {
                            bad_frames += 1;
                            Some(bad_message(text.len()))
                        }
                    },
                    Some(Ok(AggregatedMessage::Binary(bytes))) => {
                        bad_frames += 1;
                        Some(bad_message(bytes.len()))
                    }
                    Some(Ok(AggregatedMessage::Ping(bytes))) => {
                        if session.pong(&bytes).await.is_err() {
                            break None;
                        }
                        None
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => None,
                    Some(Ok(AggregatedMessage::Close(_))) | None => break None,
                    Some(Err(e)) => {
                        log::debug!("session {id}: protocol error: {e}");
                        break Some(reason(CloseCode::Protocol, "protocol error"));
                    }
                };
                if bad_frames > MAX_BAD_FRAMES {
                    break Some(reason(CloseCode::Policy, "too many bad messages"));
                }
                if let Some(frame) = answer {
                    if session.text(frame).await.is_err() {
                        break None;
                    }
                }
            },
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > CLIENT_TIMEOUT {
                    break Some(reason(CloseCode::Normal, "timed out"));
                }
                if session.ping(b"").await.is_err() {
                    break None;
                }
            },
        }
    };
    hub.disconnect(id).await;
    let _ = session.close(close).await;
}

fn reason(code: CloseCode, description: &str) -> CloseReason {
    CloseReason {
        code,
        description: Some(description.to_owned()),
    }
}

fn bad_message(len: usize) -> bytestring::ByteString {
    if len > MAX_CLIENT_FRAME {
        error_frame("bad_message", "Message too large (1 KiB at most)")
    } else {
        error_frame(
            "bad_message",
            "Expected a JSON text message: score_point, start_countdown or play_again",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_allows_a_human_rate_and_drops_a_flood() {
        let start = Instant::now();
        let mut limit = RateLimit::new();
        // A flood within one instant: the burst passes, the rest does not.
        let passed = (0..100).filter(|_| limit.allow(start)).count();
        assert_eq!(passed, 30);
        // 20 presses a second for 10 seconds: never limited.
        let mut steady = RateLimit::new();
        let all = (0..200).all(|i| steady.allow(start + Duration::from_millis(50 * i)));
        assert!(all);
    }
}
