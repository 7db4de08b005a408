//! The WebSocket upgrade: who may open a socket, and the start of its session.
//!
//! `GET /ws/<id>` passes the same checks as any request (a game id, this site's origin, a
//! player token for the game or `?watch=1`), answered with HTTP errors (400, 401, 403, 404,
//! 503) before anything is upgraded. A spectator also needs a seat (`-max-spectators`): past
//! it, `503 room_full` with `Retry-After`; and, for a game this server does not hold, its
//! address within the lookup quota (else `429 rate_limited`). An admitted request is upgraded
//! by actix-ws; a player's session is registered with its game (which sends `welcome` into the
//! new socket's queue), a spectator's watches the game's stage (its `welcome` queued here),
//! before the `101` answer goes out, and its task ([`super::session`]) starts.

use std::sync::Arc;

use actix_web::dev::RequestHead;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::session::{self, SessionCtx};
use super::socket::{self, ConnSocket, GameSink, Link};
use super::{pages, proxy, ApiError, AppState};
use crate::node::{valid_game_id, NodeError, Seat, Watcher};

/// Frames larger than this end the connection (1009); frames between
/// [`crate::protocol::MAX_CLIENT_FRAME`] and this get a `bad_message` answer.
const MAX_WIRE_FRAME: usize = 64 * 1024;

/// Who may open the socket.
enum Admitted {
    Player {
        game_id: String,
        robot_id: String,
    },
    /// Seated, and watching the game already (its `welcome` ready).
    Spectator {
        game_id: String,
        watcher: Watcher,
    },
}

/// Seconds a spectator refused for a full server is asked to wait (`Retry-After`).
pub const ROOM_FULL_RETRY_SECS: u64 = 5;

/// This server has `-max-spectators` already.
fn room_full() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "room_full",
        "This room is full: too many spectators on this server. Try again shortly",
    )
    .retry_after(ROOM_FULL_RETRY_SECS)
}

/// Whether the request asks for a WebSocket (a plain `GET` is a page checking for room).
fn asks_upgrade(head: &RequestHead) -> bool {
    head.headers
        .get(actix_web::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
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
    if watching(head) {
        let metrics = state.node.metrics_handle();
        let Some(seat) = Seat::take(&metrics, state.max_spectators) else {
            if asks_upgrade(head) {
                Seat::refused(&metrics);
            }
            return Err(room_full());
        };
        if !asks_upgrade(head) {
            // A page asking whether there is room (it cannot see why a socket was refused):
            // there is.
            return Err(not_an_upgrade("no Upgrade: websocket header"));
        }
        if !super::may_look_up(state, &proxy::client_addr(head, state), &game_id) {
            return Err(ApiError::lookups_limited());
        }
        let watcher = state.node.watch(&game_id, seat).await?;
        return Ok(Admitted::Spectator { game_id, watcher });
    }
    let robot_id = pages::player_of(head, state, &game_id).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "A valid player token for this game is required",
        )
    })?;
    state.node.robot(&game_id, &robot_id).await?;
    Ok(Admitted::Player { game_id, robot_id })
}

fn not_an_upgrade(why: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_request",
        format!("Expected a WebSocket upgrade: {why}"),
    )
}

/// `GET /ws/<id>`: checks, upgrades, and starts the session. A refused upgrade is the error
/// (`ops::upgrade_counted` counts it in `robot_race_ws_refused_total`). A plain `GET` without
/// `Upgrade: websocket` (the watch page asking whether there is room) gets the same answer,
/// but as a response: it is no refused upgrade, and is not counted as one.
pub(super) async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let asks = asks_upgrade(req.head());
    match open(req, body, state).await {
        // `error_response` counts it in `robot_race_errors_total{via="http"}`, as before.
        Err(refused) if !asks => Ok(actix_web::ResponseError::error_response(&refused)),
        answer => answer,
    }
}

/// Admits the request and upgrades it, or says why not.
async fn open(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let admitted = admit(req.head(), &state).await?;
    let (response, mut session, stream) = actix_ws::handle(&req, body).map_err(|e| {
        let why = e.to_string();
        not_an_upgrade(why)
    })?;
    let link = Arc::new(Link::default());
    let (game_id, who, game, id, watcher) = match admitted {
        Admitted::Player { game_id, robot_id } => {
            let sink = Box::new(GameSink::new(session.clone(), link.clone()));
            let (game, id) = state.node.connect(&game_id, &robot_id, sink).await?;
            (game_id, format!("robot {robot_id}"), game, id, None)
        }
        Admitted::Spectator {
            game_id,
            mut watcher,
        } => {
            // The socket's queue is empty: the welcome is its first frame.
            if let Some(welcome) = watcher.welcome() {
                let _ = socket::offer(&mut session, actix_ws::Message::Text(welcome));
            }
            let (game, id) = (watcher.game(), state.node.new_session_id());
            (game_id, "a spectator".to_owned(), game, id, Some(watcher))
        }
    };
    let client = proxy::client_addr(req.head(), &state);
    log::info!("game {game_id}: {who} connected from {client} (session {id})");
    let ctx = SessionCtx {
        game,
        id,
        watcher,
        metrics: state.node.metrics_handle(),
        frame_rate: state.ws_frame_rate,
        timeout: state.ws_timeout,
        link,
        socket: req.conn_data::<ConnSocket>().copied(),
    };
    let stream = stream
        .max_frame_size(MAX_WIRE_FRAME)
        .aggregate_continuations()
        .max_continuation_size(MAX_WIRE_FRAME);
    actix_web::rt::spawn(session::run(ctx, stream, session));
    Ok(response)
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
