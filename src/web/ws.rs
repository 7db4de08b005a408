//! The WebSocket upgrade: who may open a socket, and the start of its session.
//!
//! `GET /ws/<id>` passes the same checks as any request (a game id, this site's origin, a
//! player token for the game or `?watch=1`), answered with HTTP errors (400, 401, 403, 404,
//! 503) before anything is upgraded. An admitted request is upgraded by actix-ws; the session
//! is registered with its game (which sends `welcome` into the new socket's queue) before the
//! `101` answer goes out, and its task ([`super::session`]) starts.

use std::sync::Arc;

use actix_web::dev::RequestHead;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::session::{self, SessionCtx};
use super::socket::{ConnSocket, GameSink, Link};
use super::{pages, proxy, ApiError, AppState};
use crate::node::{valid_game_id, NodeError};

/// Frames larger than this end the connection (1009); frames between
/// [`crate::protocol::MAX_CLIENT_FRAME`] and this get a `bad_message` answer.
const MAX_WIRE_FRAME: usize = 64 * 1024;

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

/// `GET /ws/<id>`: checks, upgrades, and starts the session.
pub(super) async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let admitted = admit(req.head(), &state).await?;
    let (response, session, stream) = actix_ws::handle(&req, body).map_err(|e| {
        let why = e.to_string();
        not_an_upgrade(why)
    })?;
    let link = Arc::new(Link::default());
    let sink = Box::new(GameSink::new(session.clone(), link.clone()));
    let (game, id) = state
        .node
        .connect(&admitted.game_id, admitted.robot_id.as_deref(), sink)
        .await?;
    let client = proxy::client_addr(req.head(), &state);
    let who = match &admitted.robot_id {
        Some(robot_id) => format!("robot {robot_id}"),
        None => "a spectator".to_owned(),
    };
    log::info!(
        "game {}: {who} connected from {client} (session {id})",
        admitted.game_id
    );
    let ctx = SessionCtx {
        game,
        id,
        spectator: admitted.robot_id.is_none(),
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
