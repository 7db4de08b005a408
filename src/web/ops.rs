//! Operations: `/health`, `/metrics` (OpenMetrics text, see [`super::metrics`]), `/_stats` (a
//! live page, or JSON).

use std::sync::atomic::Ordering::Relaxed;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, Responder};
use askama::Template;

use super::AppState;
use crate::bus::BusStatus;
use crate::measure::{Via, ERRORS};

fn mode_and_redis(state: &AppState) -> (&'static str, &'static str) {
    match state.node.bus().status() {
        BusStatus::Local => ("single", "disabled"),
        BusStatus::Connected => ("cluster", "connected"),
        BusStatus::Down => ("cluster", "down"),
    }
}

pub(super) async fn health(state: web::Data<AppState>) -> impl Responder {
    let (mode, redis) = mode_and_redis(&state);
    let stats = state.node.stats();
    let mut body = serde_json::json!({
        "status": "ok",
        "mode": mode,
        "redis": redis,
        "node_id": state.node.node_id(),
        "connections": state.node.metrics().connections.load(Relaxed),
        "games": stats.owned + stats.replicas,
        "settings": state.settings,
    });
    if let Some(topology) = state.node.bus().topology() {
        body["topology"] = topology.kind.into();
        if topology.kind == "sentinel" {
            body["redis_master"] = topology.master.into();
        }
    }
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// The live `/_stats` page: the number large, kept current by `static/stats.js`, which polls
/// the JSON form of this same route.
#[derive(Template)]
#[template(path = "stats.html")]
struct StatsPage {
    games_created: u64,
    games_active: usize,
    /// "cluster" or "node": what the number counts.
    scope: &'static str,
}

/// A browser asking for a page (`Accept: text/html…`) gets the live page; everyone else, and
/// anyone naming `application/json`, gets the JSON (scripts and existing tools keep working).
fn wants_page(req: &HttpRequest) -> bool {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    accept.contains("text/html") && !accept.contains("application/json")
}

pub(super) async fn stats(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let local = state.node.metrics().games_created.load(Relaxed);
    let (created, scope) = match state.node.bus().games_created().await {
        Some(n) if state.node.bus().replicated() => (n, "cluster"),
        _ => (local, "node"),
    };
    let active = state.node.stats().owned;
    if wants_page(&req) {
        let page = StatsPage {
            games_created: created,
            games_active: active,
            scope,
        };
        return match page.render() {
            Ok(body) => HttpResponse::Ok()
                .content_type("text/html; charset=utf-8")
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .insert_header((header::VARY, "Accept"))
                .body(body),
            Err(e) => {
                log::error!("template error: {e}");
                HttpResponse::InternalServerError().finish()
            }
        };
    }
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::VARY, "Accept"))
        .json(serde_json::json!({
            "games_created": created,
            "scope": scope,
            "games_active": active,
        }))
}

pub(super) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    match super::metrics::encode(super::metrics::Figures::read(&state)) {
        Ok(body) => HttpResponse::Ok()
            .content_type(super::metrics::CONTENT_TYPE)
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(body),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

/// `GET /ws/<id>`, counting the upgrades refused (`robot_race_ws_refused_total`, by code).
pub(super) async fn upgrade_counted(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, super::ApiError> {
    let answer = super::ws::upgrade(req, body, state).await;
    if let Err(e) = &answer {
        ERRORS.count(Via::Refused, e.code());
    }
    answer
}
