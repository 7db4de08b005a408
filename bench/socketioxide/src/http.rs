//! HTTP, as the JSON API in docs/PROTOCOL.md and as server.js answers it:
//!
//! - `POST /api/games` `{"name","winning_score"?,"countdown"?}` -> 201
//!   `{game_id,robot_id,token,join_url}`
//! - `POST /api/games/<id>/players` `{"name"}` -> 201 `{game_id,robot_id,token}` (and the game
//!   to its room)
//! - `GET /api/games/<id>` -> 200 GAME
//! - `GET /health` -> `{"status":"ok","mode":"cluster","redis":"connected"|"down"}`
//!
//! Errors are `{"error","message"}`: 400 malformed JSON, 413 a body over 4 KiB, 422 an invalid
//! name or configuration, 404 no such game or route, 409 a join refused, 503 Redis failed.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;

use crate::game::{room, valid_name, Store};
use crate::sockets::Io;

#[derive(Clone)]
pub struct Http {
    pub store: Arc<Store>,
    pub io: Io,
}

pub fn router(state: Http) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/api/games", post(create))
        .route("/api/games/{id}", get(show))
        .route("/api/games/{id}/players", post(join))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .with_state(state)
}

/// A seat handed out; `join_url` for the creator only.
#[derive(Serialize)]
struct Seated<'a> {
    game_id: &'a str,
    robot_id: &'a str,
    token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    join_url: Option<String>,
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    mode: &'static str,
    redis: &'static str,
}

#[derive(Serialize)]
struct Failure<'a> {
    error: &'a str,
    message: &'a str,
}

fn send(status: StatusCode, body: impl Serialize) -> Response {
    (status, Json(body)).into_response()
}

fn fail(status: StatusCode, error: &str, message: &str) -> Response {
    send(status, Failure { error, message })
}

fn unavailable(e: redis::RedisError) -> Response {
    fail(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        &e.to_string(),
    )
}

async fn not_found() -> Response {
    fail(StatusCode::NOT_FOUND, "not_found", "not_found")
}

async fn health(State(h): State<Http>) -> Response {
    let redis = if h.store.ping().await {
        "connected"
    } else {
        "down"
    };
    let health = Health {
        status: "ok",
        mode: "cluster",
        redis,
    };
    send(StatusCode::OK, health)
}

/// The body as JSON: at most 4 KiB, an object (or an array, as `typeof` says "object").
async fn read_json(body: Body) -> Result<Value, Response> {
    let bytes = axum::body::to_bytes(body, 4096).await.map_err(|_| {
        fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "body over 4 KiB",
        )
    })?;
    match serde_json::from_slice(&bytes) {
        Ok(v @ (Value::Object(_) | Value::Array(_))) => Ok(v),
        Ok(_) => Err(fail(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "a JSON object",
        )),
        Err(_) => Err(fail(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "malformed JSON",
        )),
    }
}

/// An integer setting in `lo..=hi` (`null` or absent: `default`), as `Number.isInteger` sees it.
fn setting(v: &Value, default: i64, lo: i64, hi: i64) -> Option<i64> {
    let n = match v {
        Value::Null => return Some(default),
        Value::Number(n) => n.as_f64()?,
        _ => return None,
    };
    (n.fract() == 0.0 && n >= lo as f64 && n <= hi as f64).then_some(n as i64)
}

async fn create(State(h): State<Http>, body: Body) -> Response {
    let body = match read_json(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(name) = valid_name(&body["name"]) else {
        return fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_name",
            "invalid_name",
        );
    };
    let (Some(ws), Some(_countdown)) = (
        setting(&body["winning_score"], 25, 5, 1000),
        setting(&body["countdown"], 3, 0, 10),
    ) else {
        return fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_config",
            "invalid_config",
        );
    };
    match h.store.create(&name, ws).await {
        Ok((id, seat)) => send(
            StatusCode::CREATED,
            Seated {
                game_id: &id,
                robot_id: &seat.robot_id,
                token: &seat.token,
                join_url: Some(format!("/join/{id}")),
            },
        ),
        Err(e) => unavailable(e),
    }
}

async fn join(State(h): State<Http>, Path(id): Path<String>, body: Body) -> Response {
    let body = match read_json(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(name) = valid_name(&body["name"]) else {
        return fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_name",
            "invalid_name",
        );
    };
    let seat = match h.store.join(&id, &name).await {
        Ok(Ok(seat)) => seat,
        Ok(Err(code)) if code == "not_found" => return fail(StatusCode::NOT_FOUND, &code, &code),
        Ok(Err(code)) => return fail(StatusCode::CONFLICT, &code, &code),
        Err(e) => return unavailable(e),
    };
    match h.store.load(&id).await {
        Ok(Some(game)) => {
            let _ = h.io.to(room(&id)).emit("game", &game).await;
        }
        Ok(None) => {}
        Err(e) => return unavailable(e),
    }
    send(
        StatusCode::CREATED,
        Seated {
            game_id: &id,
            robot_id: &seat.robot_id,
            token: &seat.token,
            join_url: None,
        },
    )
}

async fn show(State(h): State<Http>, Path(id): Path<String>) -> Response {
    match h.store.load(&id).await {
        Ok(Some(game)) => send(StatusCode::OK, game),
        Ok(None) => fail(StatusCode::NOT_FOUND, "not_found", "not_found"),
        Err(e) => unavailable(e),
    }
}
