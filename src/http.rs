//! Routes: the browser pages, the JSON API, the WebSocket upgrade, health and metrics.
//!
//! [`configure`] registers everything on an actix-web `App`; handlers talk to the hub through
//! [`HubHandle`] only. Errors a client can cause become [`ApiError`] (JSON) or an HTML page with
//! the message, never a panic or a dropped connection.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::ConnectionInfo;
use actix_web::error::{JsonPayloadError, UrlencodedError};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, Responder, ResponseError};
use askama::Template;
use serde::{Deserialize, Serialize};

use crate::cluster::RedisStatus;
use crate::game::{GameConfig, PlayerName, RuleError, MAX_PLAYERS};
use crate::hub::{valid_game_id, HubError, HubHandle, Outbound, SESSION_QUEUE};
use crate::token::Tokens;
use crate::{static_files, ws};

/// Largest request body we read (JSON or form).
pub const MAX_BODY: usize = 4 * 1024;

/// What every handler shares.
pub struct AppState {
    pub hub: HubHandle,
    pub tokens: Arc<Tokens>,
    pub node_id: String,
    /// Origins allowed to open WebSockets besides the page's own.
    pub allowed_origins: Vec<String>,
    /// Trust X-Forwarded-* from any peer (else only from loopback).
    pub trust_proxy: bool,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(MAX_BODY)
            .error_handler(|err, _req| json_error(err).into()),
    )
    .app_data(
        web::FormConfig::default()
            .limit(MAX_BODY)
            .error_handler(|err, _req| form_error(err).into()),
    )
    .route("/", web::get().to(lobby))
    .route("/", web::post().to(create_game_form))
    .route("/join/{id}", web::get().to(join_page))
    .route("/join/{id}", web::post().to(join_game_form))
    .route("/game/{id}", web::get().to(game_page))
    .route("/ws/{id}", web::get().to(websocket))
    .route("/_stats", web::get().to(stats))
    .route("/health", web::get().to(health))
    .route("/metrics", web::get().to(metrics))
    .route("/api/games", web::post().to(api_create))
    .route("/api/games/{id}", web::get().to(api_game))
    .route("/api/games/{id}/players", web::post().to(api_join))
    .route("/static/{path:.*}", web::get().to(static_files::serve))
    .route("/favicon.ico", web::get().to(static_files::favicon))
    .default_service(web::to(not_found));
}

// ---------------------------------------------------------------------------------------------
// Errors

/// A JSON API error: `{"error": CODE, "message": TEXT}` with a fitting status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(serde_json::json!({
            "error": self.code,
            "message": self.message,
        }))
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> ApiError {
        let status = match &e {
            HubError::NotFound => StatusCode::NOT_FOUND,
            HubError::Rule(RuleError::InvalidName | RuleError::InvalidConfig) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            HubError::Rule(RuleError::GameInProgress | RuleError::GameFull) => StatusCode::CONFLICT,
            HubError::Rule(RuleError::UnknownRobot) => StatusCode::UNAUTHORIZED,
            HubError::Rule(_) => StatusCode::UNPROCESSABLE_ENTITY,
            HubError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<RuleError> for ApiError {
    fn from(e: RuleError) -> ApiError {
        HubError::from(e).into()
    }
}

fn json_error(err: JsonPayloadError) -> ApiError {
    match err {
        JsonPayloadError::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send a JSON body with Content-Type: application/json",
        ),
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "The body is larger than 4 KiB",
            )
        }
        JsonPayloadError::Deserialize(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("Malformed JSON: {e}"),
        ),
        _ => ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Unreadable request body",
        ),
    }
}

fn form_error(err: UrlencodedError) -> ApiError {
    match err {
        UrlencodedError::Overflow { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "The form is larger than 4 KiB",
        ),
        UrlencodedError::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send the form as application/x-www-form-urlencoded",
        ),
        _ => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "Unreadable form"),
    }
}

// ---------------------------------------------------------------------------------------------
// Pages

#[derive(Template)]
#[template(path = "lobby.html")]
struct LobbyPage {
    error: Option<String>,
    name: String,
}

#[derive(Template)]
#[template(path = "join.html")]
struct JoinPage {
    game_id: String,
    players: usize,
    max_players: usize,
    joinable: bool,
    error: Option<String>,
    name: String,
}

#[derive(Template)]
#[template(path = "game.html")]
struct GamePage {
    game_id: String,
    robot_id: String,
    admin: bool,
}

#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFoundPage {
    message: String,
}

fn html(status: StatusCode, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(body) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(body),
        Err(e) => {
            log::error!("template error: {e}");
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("Something went wrong rendering this page")
        }
    }
}

fn not_found_page(message: &str) -> HttpResponse {
    html(
        StatusCode::NOT_FOUND,
        &NotFoundPage {
            message: message.to_owned(),
        },
    )
}

fn unavailable_page() -> HttpResponse {
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        &NotFoundPage {
            message: "The game server is busy or restarting. Try again in a moment.".into(),
        },
    )
}

#[derive(Deserialize)]
struct NameForm {
    #[serde(default)]
    name: String,
}

async fn lobby() -> HttpResponse {
    html(
        StatusCode::OK,
        &LobbyPage {
            error: None,
            name: String::new(),
        },
    )
}

async fn create_game_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<NameForm>,
) -> HttpResponse {
    let rerender = |status, error: String| {
        html(
            status,
            &LobbyPage {
                error: Some(error),
                name: form.name.chars().take(40).collect(),
            },
        )
    };
    let name = match PlayerName::parse(&form.name) {
        Ok(name) => name,
        Err(e) => return rerender(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    };
    match state.hub.create(name, GameConfig::default()).await {
        Ok(created) => {
            wait_flushed(&state).await;
            let token = state.tokens.issue(&created.game_id, &created.robot_id);
            enter_game(&req, &state, &created.game_id, &token)
        }
        Err(e) => rerender(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// After creating a game: make sure it is in Redis before the player can take the link to
/// another server.
async fn wait_flushed(state: &AppState) {
    if let Some(cluster) = state.hub.cluster() {
        cluster.wait_flushed().await;
    }
}

/// Sets the player cookie and sends the browser to the race page.
fn enter_game(req: &HttpRequest, state: &AppState, game_id: &str, token: &str) -> HttpResponse {
    let secure = base_url(req, state).starts_with("https://");
    let cookie = Cookie::build(cookie_name(game_id), token.to_owned())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(actix_web::cookie::time::Duration::days(1))
        .finish();
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, format!("/game/{game_id}")))
        .cookie(cookie)
        .finish()
}

fn cookie_name(game_id: &str) -> String {
    format!("rr_{game_id}")
}

async fn join_page(state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let game_id = path.into_inner();
    if !valid_game_id(&game_id) {
        return not_found_page("There is no game at this link.");
    }
    match state.hub.game(&game_id).await {
        Ok(game) => html(
            StatusCode::OK,
            &JoinPage {
                players: game.robots.len(),
                max_players: MAX_PLAYERS,
                joinable: game.state == crate::game::State::Setup
                    && game.robots.len() < MAX_PLAYERS,
                game_id,
                error: None,
                name: String::new(),
            },
        ),
        Err(HubError::Unavailable) => unavailable_page(),
        Err(_) => not_found_page("There is no game at this link. It may have ended."),
    }
}

async fn join_game_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<NameForm>,
) -> HttpResponse {
    let game_id = path.into_inner();
    if !valid_game_id(&game_id) {
        return not_found_page("There is no game at this link.");
    }
    let result = match PlayerName::parse(&form.name) {
        Ok(name) => state.hub.join(&game_id, name).await,
        Err(e) => Err(e.into()),
    };
    let robot_id = match result {
        Ok(robot_id) => robot_id,
        Err(HubError::NotFound) => {
            return not_found_page("There is no game at this link. It may have ended.")
        }
        Err(e) => {
            let status = ApiError::from(e.clone()).status;
            let game = state.hub.game(&game_id).await.ok();
            let players = game.as_ref().map_or(0, |g| g.robots.len());
            let joinable = game.as_ref().is_some_and(|g| {
                g.state == crate::game::State::Setup && g.robots.len() < MAX_PLAYERS
            });
            return html(
                status,
                &JoinPage {
                    game_id,
                    players,
                    max_players: MAX_PLAYERS,
                    joinable,
                    error: Some(e.to_string()),
                    name: form.name.chars().take(40).collect(),
                },
            );
        }
    };
    let token = state.tokens.issue(&game_id, &robot_id);
    enter_game(&req, &state, &game_id, &token)
}

/// The player's robot id from the cookie (or `?token=`), if the token is valid for this game.
fn player(req: &HttpRequest, state: &AppState, game_id: &str) -> Option<String> {
    let from_query = web::Query::<TokenQuery>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.into_inner().token);
    let token = from_query.or_else(|| {
        req.cookie(&cookie_name(game_id))
            .map(|c| c.value().to_owned())
    })?;
    state.tokens.verify(game_id, &token)
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn game_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    let game_id = path.into_inner();
    if !valid_game_id(&game_id) {
        return not_found_page("There is no game at this link.");
    }
    let to_join = || {
        HttpResponse::SeeOther()
            .insert_header((header::LOCATION, format!("/join/{game_id}")))
            .finish()
    };
    let Some(robot_id) = player(&req, &state, &game_id) else {
        return to_join();
    };
    match state.hub.robot(&game_id, &robot_id).await {
        Ok(game) => {
            let admin = game.robot(&robot_id).is_some_and(|r| r.admin);
            html(
                StatusCode::OK,
                &GamePage {
                    game_id,
                    robot_id,
                    admin,
                },
            )
        }
        Err(HubError::NotFound) => not_found_page("This game has ended."),
        Err(HubError::Unavailable) => unavailable_page(),
        Err(_) => to_join(),
    }
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    if req.path().starts_with("/api/") {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such resource").error_response()
    } else {
        not_found_page("There is nothing at this address.")
    }
}

// ---------------------------------------------------------------------------------------------
// WebSocket

async fn websocket(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let game_id = path.into_inner();
    if !valid_game_id(&game_id) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "No such game",
        ));
    }
    if !origin_allowed(&req, &state) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "WebSocket connections from other sites are not allowed",
        ));
    }
    let robot_id = player(&req, &state, &game_id).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "A valid player token for this game is required",
        )
    })?;
    state.hub.robot(&game_id, &robot_id).await?;
    let (response, session, stream) = actix_ws::handle(&req, body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Outbound>(SESSION_QUEUE);
    let id = state.hub.connect(&game_id, &robot_id, tx).await?;
    log::info!(
        "game {game_id}: robot {robot_id} connected from {} (session {id})",
        client_addr(&req, &state)
    );
    actix_web::rt::spawn(ws::run(state.hub.clone(), id, session, stream, rx));
    Ok(response)
}

/// A browser's `Origin` must be this site (or one configured); clients that send none (bots,
/// tests) are not browsers and are let through.
fn origin_allowed(req: &HttpRequest, state: &AppState) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if state.allowed_origins.iter().any(|o| o == origin) {
        return true;
    }
    let origin_host = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .trim_end_matches('/');
    let mut hosts = vec![req.connection_info().host().to_owned()];
    if let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    {
        hosts.push(host.to_owned());
    }
    hosts.iter().any(|h| h.eq_ignore_ascii_case(origin_host))
}

fn peer_trusted(req: &HttpRequest, state: &AppState) -> bool {
    state.trust_proxy
        || req
            .peer_addr()
            .is_some_and(|a| a.ip().is_loopback() || is_unique_local(a.ip()))
}

fn is_unique_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private(),
        IpAddr::V6(_) => false,
    }
}

/// The client's address for logs: what a trusted proxy says (X-Real-IP, else the last hop of
/// X-Forwarded-For, the one the proxy itself added: earlier hops are the client's word), else
/// the peer.
pub fn client_addr(req: &HttpRequest, state: &AppState) -> String {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if peer_trusted(req, state) {
        if let Some(ip) = header("x-real-ip") {
            return ip.to_owned();
        }
        if let Some(last) = header("x-forwarded-for").and_then(|v| v.rsplit(',').next()) {
            return last.trim().to_owned();
        }
    }
    req.peer_addr()
        .map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string())
}

/// `http(s)://host` as the player reached us (through a trusted proxy's headers if any).
fn base_url(req: &HttpRequest, state: &AppState) -> String {
    let info: ConnectionInfo = req.connection_info().clone();
    if peer_trusted(req, state) {
        format!("{}://{}", info.scheme(), info.host())
    } else {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{host}")
    }
}

// ---------------------------------------------------------------------------------------------
// JSON API

#[derive(Deserialize)]
struct CreateRequest {
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

async fn api_create(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<CreateRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let name = PlayerName::parse(&body.name)?;
    let config = GameConfig::parse(body.winning_score, body.countdown)?;
    let created = state.hub.create(name, config).await?;
    wait_flushed(&state).await;
    let token = state.tokens.issue(&created.game_id, &created.robot_id);
    Ok(HttpResponse::Created().json(CreateResponse {
        join_url: format!("{}/join/{}", base_url(&req, &state), created.game_id),
        game_id: created.game_id,
        robot_id: created.robot_id,
        token,
    }))
}

#[derive(Deserialize)]
struct JoinRequest {
    name: String,
}

#[derive(Serialize)]
struct JoinResponse {
    game_id: String,
    robot_id: String,
    token: String,
}

async fn api_join(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<JoinRequest>,
) -> Result<HttpResponse, ApiError> {
    let game_id = path.into_inner();
    if !valid_game_id(&game_id) {
        return Err(HubError::NotFound.into());
    }
    let name = PlayerName::parse(&body.name)?;
    let robot_id = state.hub.join(&game_id, name).await?;
    let token = state.tokens.issue(&game_id, &robot_id);
    Ok(HttpResponse::Created().json(JoinResponse {
        game_id,
        robot_id,
        token,
    }))
}

async fn api_game(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let game_id = path.into_inner();
    if !valid_game_id(&game_id) {
        return Err(HubError::NotFound.into());
    }
    let game = state.hub.game(&game_id).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(game.view()))
}

// ---------------------------------------------------------------------------------------------
// Operations

fn mode_and_redis(state: &AppState) -> (&'static str, &'static str) {
    match state.hub.cluster() {
        None => ("single", "disabled"),
        Some(c) => (
            "cluster",
            match c.status() {
                RedisStatus::Connected => "connected",
                RedisStatus::Down => "down",
            },
        ),
    }
}

async fn health(state: web::Data<AppState>) -> impl Responder {
    let (mode, redis) = mode_and_redis(&state);
    let stats = state.hub.stats().await;
    let m = &state.hub.metrics;
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "status": "ok",
            "mode": mode,
            "redis": redis,
            "node_id": state.node_id,
            "connections": m.connections.load(std::sync::atomic::Ordering::Relaxed),
            "games": stats.owned + stats.replicas,
        }))
}

async fn stats(state: web::Data<AppState>) -> impl Responder {
    let local = state
        .hub
        .metrics
        .games_created
        .load(std::sync::atomic::Ordering::Relaxed);
    let (created, scope) = match state.hub.cluster() {
        Some(cluster) => match cluster.games_created().await {
            Some(n) => (n, "cluster"),
            None => (local, "node"),
        },
        None => (local, "node"),
    };
    let active = state.hub.stats().await;
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "games_created": created,
            "scope": scope,
            "games_active": active.owned,
        }))
}

async fn metrics(state: web::Data<AppState>) -> impl Responder {
    use std::sync::atomic::Ordering::Relaxed;
    let m = &state.hub.metrics;
    let stats = state.hub.stats().await;
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
    metric(
        "games_created_total",
        "counter",
        "Games created on this server.",
        &[("", m.games_created.load(Relaxed))],
    );
    metric(
        "updates_sent_total",
        "counter",
        "WebSocket frames queued to players by the hub.",
        &[("", m.updates_sent.load(Relaxed))],
    );
    metric(
        "presses_total",
        "counter",
        "Presses received from local players (after rate limiting).",
        &[("", m.presses.load(Relaxed))],
    );
    metric(
        "sessions_dropped_slow_total",
        "counter",
        "Sessions dropped because they did not read their updates.",
        &[("", m.sessions_dropped_slow.load(Relaxed))],
    );
    metric(
        "relayed_updates_total",
        "counter",
        "Updates received from other servers through Redis.",
        &[("", m.relayed_in.load(Relaxed))],
    );
    metric(
        "forwarded_commands_total",
        "counter",
        "Player commands forwarded to the owning server.",
        &[("", m.forwarded_out.load(Relaxed))],
    );
    if let Some(cluster) = state.hub.cluster() {
        metric(
            "redis_up",
            "gauge",
            "1 when connected to Redis.",
            &[("", u64::from(cluster.status() == RedisStatus::Connected))],
        );
        metric(
            "redis_writes_total",
            "counter",
            "Game saves and ends written to Redis.",
            &[("", cluster.saves_done())],
        );
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out)
}

/// How long HTTP keeps a connection with no request open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(75);
