//! The WebSocket upgrade, and one task per connected player.
//!
//! actix-http hands every `Connection: Upgrade` request to [`upgrade_service`] together with
//! its socket. The path, origin and token are checked there, as for any request, and the
//! session is registered with its game before the `101` answer goes out, so a refused upgrade
//! still gets an HTTP error. From then on the connection is ours ([`super::wsconn`]): the game
//! task writes frames straight into the socket, and the session task reads the browser's
//! frames (parsed into [`ClientMsg`], checked and rate limited, then sent straight to the
//! game's task), finishes writes the socket could not take at once, and keeps the heartbeat.
//! A `GET /ws/<id>` without the upgrade headers reaches [`upgrade`], which checks the same
//! and answers `400`.
//!
//! When the server stops, the game task asks us to close: we say `going_away` and keep
//! reading until the browser closes (bounded), so every press it sent before seeing that
//! still reaches the game.

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_codec::Framed;
use actix_http::h1;
use actix_http::ws::{CloseCode, CloseReason};
use actix_http::Request;
use actix_web::dev::{fn_service, RequestHead, ServiceFactory};
use actix_web::http::{header, Method, StatusCode};
use actix_web::rt::net::TcpStream;
use actix_web::{web, HttpRequest, HttpResponse};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::wsconn::{reason, Conn, Incoming, Read, Reader, Signal};
use super::{pages, proxy, ApiError, AppState};
use crate::node::{
    valid_game_id, CloseWhy, GameHandle, GameMsg, Node, NodeError, SessionId, SinkError,
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
/// Pending bytes the socket does not take within this long: the client stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Who may open the socket: the game, and the robot (`None`: a spectator).
struct Admitted {
    game_id: String,
    robot_id: Option<String>,
}

/// The checks every WebSocket request passes: a game id, this site's origin, and a valid
/// player token for the game (or `?watch=1`), for a game and robot that exist.
async fn admit(head: &RequestHead, state: &AppState) -> Result<Admitted, ApiError> {
    let game_id = head
        .uri
        .path()
        .strip_prefix("/ws/")
        .filter(|id| valid_game_id(id))
        .ok_or(NodeError::NotFound)?
        .to_owned();
    if !proxy::origin_allowed(head, state) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "WebSocket connections from other sites are not allowed",
        ));
    }
    let robot_id = if watching(head) {
        state.node.game(&game_id).await?;
        None
    } else {
        let robot_id = pages::player_of(head, state, &game_id).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "A valid player token for this game is required",
            )
        })?;
        state.node.robot(&game_id, &robot_id).await?;
        Some(robot_id)
    };
    Ok(Admitted { game_id, robot_id })
}

fn not_an_upgrade(why: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_request",
        format!("Expected a WebSocket upgrade: {why}"),
    )
}

/// `GET /ws/<id>` without `Connection: Upgrade` (upgrades go to [`upgrade_service`]).
pub(super) async fn upgrade(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    admit(req.head(), &state).await?;
    Err(not_an_upgrade("no \"Connection: Upgrade\" header"))
}

/// Takes every `Connection: Upgrade` request actix-http hands over with its socket.
pub fn upgrade_service(
    state: web::Data<AppState>,
) -> impl ServiceFactory<
    (Request, Framed<TcpStream, h1::Codec>),
    Config = (),
    Response = (),
    Error = actix_web::Error,
    InitError = (),
> {
    fn_service(
        move |(req, framed): (Request, Framed<TcpStream, h1::Codec>)| {
            let state = state.clone();
            async move {
                upgraded(state, req, framed).await;
                Ok(())
            }
        },
    )
}

async fn upgraded(state: web::Data<AppState>, req: Request, framed: Framed<TcpStream, h1::Codec>) {
    let head = req.head();
    let parts = framed.into_parts();
    let conn = Conn::new(parts.io);
    let client = proxy::client_addr(head, &state);
    let request = format!(
        "{} {} {:?}",
        head.method,
        proxy::redact_tokens(&head.uri.to_string()),
        head.version
    );
    let admitted = match head.method {
        Method::GET => match admit(head, &state).await {
            Ok(a) => actix_http::ws::verify_handshake(head)
                .map(|()| a)
                .map_err(not_an_upgrade),
            Err(e) => Err(e),
        },
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Use GET",
        )),
    };
    let connected = match admitted {
        Ok(a) => state
            .node
            .connect(&a.game_id, a.robot_id.as_deref(), conn.sink())
            .await
            .map(|(game, id)| (a, game, id))
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    let (admitted, game, id) = match connected {
        Ok(c) => c,
        Err(e) => {
            log::info!("{client} \"{request}\" {}", e.status.as_u16());
            conn.refuse(&error_response(&e));
            let _ = tokio::time::timeout(WRITE_TIMEOUT, conn.flush()).await;
            return;
        }
    };
    let key = head
        .headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map_or(&[][..], |k| k.as_bytes());
    conn.accept(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
             sec-websocket-accept: {}\r\n\r\n",
            String::from_utf8_lossy(&actix_http::ws::hash_key(key))
        )
        .as_bytes(),
    );
    log::info!("{client} \"{request}\" 101");
    let who = match &admitted.robot_id {
        Some(robot_id) => format!("robot {robot_id}"),
        None => "a spectator".to_owned(),
    };
    log::info!(
        "game {}: {who} connected from {client} (session {id})",
        admitted.game_id
    );
    let reader = Reader::new(MAX_WIRE_FRAME, &parts.read_buf);
    let spectator = admitted.robot_id.is_none();
    actix_web::rt::spawn(run(state.node.clone(), game, id, spectator, conn, reader));
}

/// An HTTP error answer on a connection that then closes.
fn error_response(e: &ApiError) -> Vec<u8> {
    let body = serde_json::json!({"error": e.code, "message": e.message}).to_string();
    let allow = if e.status == StatusCode::METHOD_NOT_ALLOWED {
        "allow: GET\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         {allow}connection: close\r\n\r\n{body}",
        e.status.as_u16(),
        e.status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
}

/// `?watch=1`: a spectator (PROTOCOL.md), who needs no token and may change nothing.
fn watching(head: &RequestHead) -> bool {
    #[derive(serde::Deserialize)]
    struct Watch {
        watch: Option<String>,
    }
    web::Query::<Watch>::from_query(head.uri.query().unwrap_or(""))
        .ok()
        .and_then(|q| q.into_inner().watch)
        .is_some_and(|w| w == "1" || w == "true")
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
struct Player {
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

/// What to do after a message from the browser.
enum Next {
    Go,
    Answer(bytestring::ByteString),
    Pong(actix_web::web::Bytes),
    Close(Option<CloseReason>),
}

impl Player {
    fn read(&mut self, msg: Incoming) -> Next {
        let now = Instant::now();
        match msg {
            Incoming::Text(bytes) => {
                match std::str::from_utf8(&bytes).ok().and_then(ClientMsg::parse) {
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
                        Next::Answer(bad_message(bytes.len()))
                    }
                }
            }
            Incoming::Binary(bytes) => {
                self.bad_frames += 1;
                Next::Answer(bad_message(bytes.len()))
            }
            Incoming::Ping(bytes) => Next::Pong(bytes),
            Incoming::Pong => Next::Go,
            Incoming::Close(why) => {
                Next::Close(Some(why.unwrap_or_else(|| CloseCode::Normal.into())))
            }
        }
    }
}

/// Why the session ends: a close frame to send (none when the socket is gone already).
type Ending = Option<CloseReason>;

/// Runs the session until either side closes; always tells the game it is gone.
async fn run(
    node: Node,
    game: GameHandle,
    id: SessionId,
    spectator: bool,
    conn: Conn,
    mut reader: Reader,
) {
    node.metrics().connections.fetch_add(1, Ordering::Relaxed);
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let mut player = Player {
        game: game.clone(),
        id,
        spectator,
        metrics: node.metrics_handle(),
        limit: RateLimit::new(),
        told_rate_limited: false,
        bad_frames: 0,
    };
    let too_slow = || {
        log::info!("session {id}: closed, it does not read its updates");
        node.metrics()
            .sessions_dropped_slow
            .fetch_add(1, Ordering::Relaxed);
        Some(reason(CloseCode::Policy, "too slow"))
    };
    // A frame of our own: `Err` ends the session.
    let say = |sent: Result<(), SinkError>| match sent {
        Ok(()) => Ok(()),
        Err(SinkError::Full) => Err(too_slow()),
        Err(SinkError::Closed) => Err(None),
    };
    // Set once told to go: when we close the socket ourselves.
    let mut leaving: Option<Instant> = None;
    // The browser closed (or the socket is gone): no answer to wait for.
    let mut peer_done = false;
    let far = || Instant::now() + Duration::from_secs(86_400);
    let close: Ending = 'session: loop {
        let leave_at = leaving.unwrap_or_else(far);
        tokio::select! {
            () = conn.wants_flush() => {
                match tokio::time::timeout(WRITE_TIMEOUT, conn.flush()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break None,
                    Err(_) => break too_slow(),
                }
                // What the game asked for, after the frames it sent before.
                match conn.signal() {
                    None => {}
                    Some(Signal::Close(CloseWhy::Terminated)) => {
                        break Some(reason(CloseCode::Normal, "game ended"));
                    }
                    Some(Signal::Close(CloseWhy::Replaced)) => {
                        break Some(reason(CloseCode::Policy, "opened in too many tabs"));
                    }
                    Some(Signal::Close(CloseWhy::GoingAway)) if leaving.is_none() => {
                        leaving = Some(Instant::now() + CLOSE_WAIT);
                        if let Err(end) = say(conn.text(ServerMsg::GoingAway.to_frame().as_bytes())) {
                            break end;
                        }
                    }
                    Some(Signal::Close(CloseWhy::GoingAway)) => {}
                    // The game task let go of us.
                    Some(Signal::Released) => break too_slow(),
                }
            },
            ready = conn.readable() => {
                if ready.is_err() {
                    break None;
                }
                let peer_closed = match conn.read_into(&mut reader) {
                    Read::Some => false,
                    Read::Nothing => continue,
                    Read::Closed => true,
                };
                last_heard = Instant::now();
                loop {
                    let msg = match reader.next() {
                        Ok(Some(msg)) => msg,
                        Ok(None) => break,
                        Err(e) => {
                            log::debug!("session {id}: protocol error: {e}");
                            break 'session Some(reason(CloseCode::Protocol, "protocol error"));
                        }
                    };
                    let sent = match player.read(msg) {
                        Next::Go => Ok(()),
                        Next::Answer(frame) => say(conn.text(frame.as_bytes())),
                        Next::Pong(bytes) => say(conn.pong(&bytes)),
                        Next::Close(why) => {
                            peer_done = true;
                            break 'session why;
                        }
                    };
                    if let Err(end) = sent {
                        break 'session end;
                    }
                    if player.bad_frames > MAX_BAD_FRAMES {
                        break 'session Some(reason(CloseCode::Policy, "too many bad messages"));
                    }
                }
                if peer_closed {
                    break None;
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
                if let Err(end) = say(conn.ping()) {
                    break end;
                }
            },
            () = tokio::time::sleep_until(leave_at), if leaving.is_some() => {
                break Some(reason(CloseCode::Away, "server going away"));
            }
        }
    };
    // The game hears of it first: nothing more is sent to this socket.
    conn.shut();
    if game.tx.try_send(GameMsg::Disconnect(id)).is_err() {
        let tx = game.tx.clone();
        actix_web::rt::spawn(async move {
            let _ = tx.send(GameMsg::Disconnect(id)).await;
        });
    }
    if let Some(why) = close {
        // A client that stopped reading cannot take a close frame either: do not wait on it.
        conn.close(Some(why));
        let _ = tokio::time::timeout(WRITE_TIMEOUT, conn.flush()).await;
        // Give the browser a moment to answer the close, so the connection ends cleanly
        // rather than with a reset over its unread bytes.
        if !peer_done {
            let _ = tokio::time::timeout(CLOSE_WAIT, until_closed(&conn, &mut reader)).await;
        }
    }
    node.metrics().connections.fetch_sub(1, Ordering::Relaxed);
}

/// Reads (and drops) what the browser still sends until its close frame or the end.
async fn until_closed(conn: &Conn, reader: &mut Reader) {
    loop {
        loop {
            match reader.next() {
                Ok(Some(Incoming::Close(_))) | Err(_) => return,
                Ok(Some(_)) => {}
                Ok(None) => break,
            }
        }
        if conn.readable().await.is_err() {
            return;
        }
        if conn.read_into(reader) == Read::Closed {
            return;
        }
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
