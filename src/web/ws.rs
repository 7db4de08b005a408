//! The WebSocket upgrade, and one task per connected player.
//!
//! The token is checked before the upgrade; the session task then owns the socket. One
//! `select!` over frames from the browser (parsed into [`ClientMsg`], checked and rate limited,
//! then sent straight to the game's task), frames from the game task (shared bytes, written as
//! they are), and the heartbeat. The game task never waits for us: if our queue fills because
//! the browser stops reading, it drops us and we close the socket.
//!
//! When the server stops, the game task asks us to close: we send the close frame and keep
//! reading until the browser's answer (bounded), so every press it sent before seeing our close
//! still reaches the game.

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{pages, proxy, ApiError, AppState};
use crate::node::{
    valid_game_id, CloseWhy, FrameSink, GameHandle, GameMsg, Node, NodeError, Outbound, SessionId,
    SinkError, SESSION_QUEUE,
};
use crate::protocol::{error_frame, ClientMsg, ServerMsg, MAX_CLIENT_FRAME};

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
/// How long a session told to go waits for the browser to close, still taking its presses.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// A frame the socket does not take within this long: the client stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let game_id = path.into_inner();
    if !valid_game_id(&game_id) {
        return Err(NodeError::NotFound.into());
    }
    if !proxy::origin_allowed(&req, &state) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "WebSocket connections from other sites are not allowed",
        ));
    }
    let robot_id = if watching(&req) {
        state.node.game(&game_id).await?;
        None
    } else {
        let robot_id = pages::player(&req, &state, &game_id).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "A valid player token for this game is required",
            )
        })?;
        state.node.robot(&game_id, &robot_id).await?;
        Some(robot_id)
    };
    let (response, session, stream) = actix_ws::handle(&req, body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?;
    let (tx, rx) = mpsc::channel::<Outbound>(SESSION_QUEUE);
    let sink = Box::new(WsSink(session.clone()));
    let (game, id) = state
        .node
        .connect(&game_id, robot_id.as_deref(), sink, tx)
        .await?;
    let who = match &robot_id {
        Some(robot_id) => format!("robot {robot_id}"),
        None => "a spectator".to_owned(),
    };
    log::info!(
        "game {game_id}: {who} connected from {} (session {id})",
        proxy::client_addr(&req, &state)
    );
    let stream = stream
        .max_frame_size(MAX_WIRE_FRAME)
        .aggregate_continuations()
        .max_continuation_size(MAX_WIRE_FRAME);
    let spectator = robot_id.is_none();
    actix_web::rt::spawn(run(
        state.node.clone(),
        game,
        id,
        spectator,
        session,
        stream,
        rx,
    ));
    Ok(response)
}

/// `?watch=1`: a spectator (PROTOCOL.md), who needs no token and may change nothing.
fn watching(req: &HttpRequest) -> bool {
    #[derive(serde::Deserialize)]
    struct Watch {
        watch: Option<String>,
    }
    web::Query::<Watch>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.into_inner().watch)
        .is_some_and(|w| w == "1" || w == "true")
}

/// Frames from the game task go straight into the socket's queue (actix-ws's, a few dozen
/// frames), without waking this session's task. A full queue means the client stopped reading.
struct WsSink(Session);

impl FrameSink for WsSink {
    fn try_frame(&mut self, frame: bytestring::ByteString) -> Result<(), SinkError> {
        match self.0.text(frame).now_or_never() {
            Some(Ok(())) => Ok(()),
            Some(Err(_)) => Err(SinkError::Closed),
            None => Err(SinkError::Full),
        }
    }
}

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

/// What the browser's frames mean for the session.
struct Reader {
    game: GameHandle,
    id: SessionId,
    /// A spectator's commands are refused here.
    spectator: bool,
    /// For `robot_race_overloaded_total`.
    metrics: std::sync::Arc<crate::node::Metrics>,
    limit: RateLimit,
    told_rate_limited: bool,
    bad_frames: u32,
}

/// What to do after a frame from the browser.
enum Next {
    Go,
    Answer(bytestring::ByteString),
    Pong(actix_web::web::Bytes),
    Close(Option<CloseReason>),
}

impl Reader {
    fn read(&mut self, msg: Option<Result<AggregatedMessage, actix_ws::ProtocolError>>) -> Next {
        let now = Instant::now();
        match msg {
            Some(Ok(AggregatedMessage::Text(text))) => match ClientMsg::parse(&text) {
                Some(ClientMsg::ScorePoint) if !self.limit.allow(now) => {
                    self.bad_frames = 0;
                    // Say it once per burst, not once per dropped press.
                    if std::mem::replace(&mut self.told_rate_limited, true) {
                        Next::Go
                    } else {
                        Next::Answer(error_frame("rate_limited", "Too many presses: slow down"))
                    }
                }
                Some(_) if self.spectator => {
                    self.bad_frames = 0;
                    Next::Answer(error_frame(
                        "permission_denied",
                        "Spectators can watch but not play",
                    ))
                }
                Some(msg) => {
                    self.bad_frames = 0;
                    self.told_rate_limited = false;
                    match self.game.tx.try_send(GameMsg::Client(self.id, msg, now)) {
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
                None => {
                    self.bad_frames += 1;
                    Next::Answer(bad_message(text.len()))
                }
            },
            Some(Ok(AggregatedMessage::Binary(bytes))) => {
                self.bad_frames += 1;
                Next::Answer(bad_message(bytes.len()))
            }
            Some(Ok(AggregatedMessage::Ping(bytes))) => Next::Pong(bytes),
            Some(Ok(AggregatedMessage::Pong(_))) => Next::Go,
            Some(Ok(AggregatedMessage::Close(_))) | None => Next::Close(None),
            Some(Err(e)) => {
                log::debug!("session {}: protocol error: {e}", self.id);
                Next::Close(Some(reason(CloseCode::Protocol, "protocol error")))
            }
        }
    }
}

/// Runs the session until either side closes; always tells the game it is gone.
async fn run(
    node: Node,
    game: GameHandle,
    id: SessionId,
    spectator: bool,
    mut session: Session,
    mut stream: AggregatedMessageStream,
    mut outbox: mpsc::Receiver<Outbound>,
) {
    node.metrics().connections.fetch_add(1, Ordering::Relaxed);
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let mut reader = Reader {
        game: game.clone(),
        id,
        spectator,
        metrics: node.metrics_handle(),
        limit: RateLimit::new(),
        told_rate_limited: false,
        bad_frames: 0,
    };
    // Set once told to go: when we close the socket ourselves.
    let mut leaving: Option<Instant> = None;
    let far = || Instant::now() + Duration::from_secs(86_400);
    let close = loop {
        let leave_at = leaving.unwrap_or_else(far);
        tokio::select! {
            out = outbox.recv() => match out {
                Some(Outbound::Frame(frame)) => {
                    match tokio::time::timeout(WRITE_TIMEOUT, session.text(frame)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break None,
                        Err(_) => {
                            log::info!("session {id}: closed, it does not read its updates");
                            node.metrics()
                                .sessions_dropped_slow
                                .fetch_add(1, Ordering::Relaxed);
                            break Some(reason(CloseCode::Policy, "too slow"));
                        }
                    }
                }
                Some(Outbound::Close(CloseWhy::Terminated)) => {
                    break Some(reason(CloseCode::Normal, "game ended"));
                }
                Some(Outbound::Close(CloseWhy::Replaced)) => {
                    break Some(reason(CloseCode::Policy, "opened in too many tabs"));
                }
                Some(Outbound::Close(CloseWhy::GoingAway)) => {
                    if leaving.is_none() {
                        leaving = Some(Instant::now() + CLOSE_WAIT);
                        if session.text(ServerMsg::GoingAway.to_frame()).await.is_err() {
                            break None;
                        }
                    }
                }
                // The game task let go of us: we were too slow to read updates.
                None => break Some(reason(CloseCode::Policy, "too slow")),
            },
            msg = stream.next() => {
                last_heard = Instant::now();
                match reader.read(msg) {
                    Next::Go => {}
                    Next::Answer(frame) => {
                        if session.text(frame).await.is_err() {
                            break None;
                        }
                    }
                    Next::Pong(bytes) => {
                        if session.pong(&bytes).await.is_err() {
                            break None;
                        }
                    }
                    Next::Close(why) => break why,
                }
                if reader.bad_frames > MAX_BAD_FRAMES {
                    break Some(reason(CloseCode::Policy, "too many bad messages"));
                }
            },
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > CLIENT_TIMEOUT {
                    // Not even a pong: a client that stopped reading, or is gone.
                    log::info!("session {id}: closed, silent for {CLIENT_TIMEOUT:?}");
                    node.metrics()
                        .sessions_dropped_slow
                        .fetch_add(1, Ordering::Relaxed);
                    break Some(reason(CloseCode::Normal, "timed out"));
                }
                if session.ping(b"").await.is_err() {
                    break None;
                }
            },
            () = tokio::time::sleep_until(leave_at), if leaving.is_some() => {
                break Some(reason(CloseCode::Away, "server going away"));
            }
        }
    };
    // A client that stopped reading cannot take a close frame either: do not wait on it.
    let _ = tokio::time::timeout(WRITE_TIMEOUT, session.close(close)).await;
    if game.tx.try_send(GameMsg::Disconnect(id)).is_err() {
        let tx = game.tx.clone();
        actix_web::rt::spawn(async move {
            let _ = tx.send(GameMsg::Disconnect(id)).await;
        });
    }
    node.metrics().connections.fetch_sub(1, Ordering::Relaxed);
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
            "Expected a JSON text message: score_point, start_countdown, play_again or leave",
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
