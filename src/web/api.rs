//! The JSON API (bots, tests, load tools): create, join, read a game.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::{proxy, ApiError, AppState};
use crate::game::{GameConfig, PlayerName};
use crate::node::{valid_game_id, NodeError};

#[derive(Deserialize)]
pub(super) struct CreateRequest {
    name: String,
    winning_score: Option<i64>,
    countdown: Option<i64>,
}

#[derive(Serialize)]
struct CreateResponse {
    game_id: String,
    robot_id: String,
    token: String,
    join_url: String,
}

pub(super) async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<CreateRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let name = PlayerName::parse(&body.name)?;
    let config = GameConfig::parse(body.winning_score, body.countdown)?;
    if !state
        .create_quota
        .allow(&proxy::client_addr(req.head(), &state))
    {
        return Err(ApiError::create_limited());
    }
    let created = state.node.create(name, config).await?;
    let token = state.tokens.issue(&created.game_id, &created.robot_id);
    Ok(HttpResponse::Created().json(CreateResponse {
        join_url: format!("{}/join/{}", proxy::base_url(&req, &state), created.game_id),
        game_id: created.game_id,
        robot_id: created.robot_id,
        token,
    }))
}

#[derive(Deserialize)]
pub(super) struct JoinRequest {
    name: String,
}

#[derive(Serialize)]
struct JoinResponse {
    game_id: String,
    robot_id: String,
    token: String,
}

pub(super) async fn join(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<JoinRequest>,
) -> Result<HttpResponse, ApiError> {
    let game_id = path.into_inner();
    if !valid_game_id(&game_id) {
        return Err(NodeError::NotFound.into());
    }
    if !super::may_look_up(&state, &proxy::client_addr(req.head(), &state), &game_id) {
        return Err(ApiError::lookups_limited());
    }
    let name = PlayerName::parse(&body.name)?;
    let robot_id = state.node.join(&game_id, name).await?;
    let token = state.tokens.issue(&game_id, &robot_id);
    Ok(HttpResponse::Created().json(JoinResponse {
        game_id,
        robot_id,
        token,
    }))
}

pub(super) async fn game(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let game_id = path.into_inner();
    if !valid_game_id(&game_id) {
        return Err(NodeError::NotFound.into());
    }
    if !super::may_look_up(&state, &proxy::client_addr(req.head(), &state), &game_id) {
        return Err(ApiError::lookups_limited());
    }
    let game = state.node.game(&game_id).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(game.view()))
}
