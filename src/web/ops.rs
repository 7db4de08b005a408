//! Operations: `/health`, `/metrics` (Prometheus text), `/_stats` (a live page, or JSON).

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, Responder};
use askama::Template;

use super::AppState;
use crate::bus::BusStatus;

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

pub(super) async fn metrics(state: web::Data<AppState>) -> impl Responder {
    let m = state.node.metrics();
    let stats = state.node.stats();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP robot_race_{name} {help}");
        let _ = writeln!(out, "# TYPE robot_race_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "robot_race_{name}{labels} {value}");
        }
    };
    metric(
        "connections",
        "gauge",
        "Open WebSocket connections on this server.",
        &[("", m.connections.load(Relaxed))],
    );
    metric(
        "spectators",
        "gauge",
        "Spectator WebSockets on this server (at most -max-spectators).",
        &[("", m.spectators.load(Relaxed))],
    );
    let by_state: Vec<(String, u64)> = crate::game::State::ALL
        .iter()
        .zip(stats.by_state)
        .map(|(s, n)| (format!("{{state=\"{}\"}}", s.as_str()), n as u64))
        .collect();
    let by_state: Vec<(&str, u64)> = by_state.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    metric(
        "games",
        "gauge",
        "Games this server holds (owned or relayed), by state.",
        &by_state,
    );
    metric(
        "games_owned",
        "gauge",
        "Games this server owns (applies commands for).",
        &[("", stats.owned as u64)],
    );
    let counters: [(&str, &str, u64); 14] = [
        (
            "games_created_total",
            "Games created on this server.",
            m.games_created.load(Relaxed),
        ),
        (
            "updates_sent_total",
            "WebSocket frames queued to players by game tasks.",
            m.updates_sent.load(Relaxed),
        ),
        (
            "presses_total",
            "Presses received from local players (after rate limiting).",
            m.presses.load(Relaxed),
        ),
        (
            "sessions_dropped_slow_total",
            "Sessions closed because they did not read their updates (a write that did not finish in time, or no pong for 30 s).",
            m.sessions_dropped_slow.load(Relaxed),
        ),
        (
            "sessions_behind_total",
            "Times a session fell behind: skipped, then sent the newest full state.",
            m.sessions_behind.load(Relaxed),
        ),
        (
            "frames_skipped_total",
            "Frames not queued to a session that was behind (it got a newer state instead).",
            m.frames_skipped.load(Relaxed),
        ),
        (
            "relayed_updates_total",
            "Committed updates from other servers shown here.",
            m.relayed_in.load(Relaxed),
        ),
        (
            "forwarded_commands_total",
            "Player commands sent to the owning server (resends included).",
            m.forwarded_out.load(Relaxed),
        ),
        (
            "overloaded_total",
            "Presses answered `overloaded`: their game's queue was full or they waited in it over 250 ms.",
            m.overloaded.load(Relaxed),
        ),
        (
            "save_failures_total",
            "Game saves Redis did not take (unreachable, out of memory, read-only, timed out); each is tried again after a pause.",
            m.save_failures.load(Relaxed),
        ),
        (
            "unavailable_total",
            "Commands answered `unavailable`: they waited too long for their game's storage to be writable.",
            m.unavailable.load(Relaxed),
        ),
        (
            "spectators_refused_total",
            "Spectator upgrades refused with 503 room_full: this server had -max-spectators.",
            m.spectators_refused.load(Relaxed),
        ),
        (
            "spectator_frames_total",
            "Frames queued to spectator sockets (the newest state, at most -spectator-hz a second per game).",
            m.spectator_frames.load(Relaxed),
        ),
        (
            "redis_writes_total",
            "Game saves and ends written to Redis.",
            state.node.bus().writes_done(),
        ),
    ];
    for (name, help, value) in counters {
        metric(name, "counter", help, &[("", value)]);
    }
    let bus = state.node.bus();
    metric(
        "redis_commands_total",
        "counter",
        "Commands sent to Redis (each command of a pipeline counted).",
        &[("", bus.commands_sent())],
    );
    let heard = bus.pubsub_received();
    metric(
        "pubsub_messages_received_total",
        "counter",
        "Pub/sub messages received from Redis, used or not: on game channels, and in this server's inbox.",
        &[
            ("{channel=\"game\"}", heard.game),
            ("{channel=\"inbox\"}", heard.inbox),
        ],
    );
    let status = bus.status();
    if status != BusStatus::Local {
        metric(
            "redis_up",
            "gauge",
            "1 when connected to Redis.",
            &[("", u64::from(status == BusStatus::Connected))],
        );
    }
    let (buckets, sum, count) = m.press_to_broadcast.snapshot();
    {
        let name = "robot_race_press_to_broadcast_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} From a press reaching its owner to its update queued to the owner's local players."
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (bound, n) in buckets {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out)
}
