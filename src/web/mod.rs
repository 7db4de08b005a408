//! The web edge: routes, pages, the JSON API, the WebSocket upgrade and sessions, operations.
//!
//! [`configure`] registers everything on an actix-web `App`. Handlers talk to this server's
//! games through [`Node`] only; nothing here knows Redis. Errors a client can cause become
//! [`ApiError`] (JSON) or an HTML page with the message, never a panic or a dropped connection.
//!
//! | module | what |
//! | --- | --- |
//! | [`pages`] | lobby, join and race pages (askama templates in `templates/`), the player cookie |
//! | [`api`] | the JSON API for bots, tests and load tools |
//! | [`ws`] | the WebSocket upgrade (actix-ws) and who may open a socket |
//! | [`session`] | one task per WebSocket: reads the browser's frames, heartbeat, close |
//! | [`socket`] | the game task's writing end of a WebSocket, and the TCP socket under it |
//! | [`limits`] | what a WebSocket may send: a frame budget, a human rate of presses |
//! | [`ops`] | `/health`, `/metrics`, `/_stats` (a live page for browsers, else JSON) |
//! | [`proxy`] | who the client is behind nginx/Heroku, and which origins may connect |

mod api;
mod limits;
mod metrics;
mod ops;
mod pages;
pub mod proxy;
pub mod quota;
mod session;
mod socket;
mod ws;

pub use socket::ConnSocket;

use std::sync::Arc;
use std::time::Duration;

use actix_web::error::{JsonPayloadError, UrlencodedError};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, Resource, ResponseError};

use crate::game::RuleError;
use crate::node::{Node, NodeError};
use crate::token::Tokens;

/// Largest request body we read (JSON or form).
pub const MAX_BODY: usize = 4 * 1024;
/// How long HTTP keeps a connection with no request open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(75);

/// Whether `client` may have this server look `game_id` up: a game held here always; one it
/// does not hold (a task and a Redis claim to find it) within the address's lookup quota.
pub(crate) fn may_look_up(state: &AppState, client: &str, game_id: &str) -> bool {
    state.node.holds(game_id) || state.lookup_quota.allow(client)
}

/// What every handler shares.
pub struct AppState {
    pub node: Node,
    pub tokens: Arc<Tokens>,
    /// Origins allowed to open WebSockets besides the page's own.
    pub allowed_origins: Vec<String>,
    /// Trust X-Forwarded-* from any peer (else only from loopback and private addresses).
    pub trust_proxy: bool,
    /// How long a game may go without play before it is ended (the lobby tells players).
    pub idle_timeout: Duration,
    /// Games a client address may create per minute.
    pub create_quota: quota::AddressQuota,
    /// Games a client address may have this server look up, when it does not hold them.
    pub lookup_quota: quota::AddressQuota,
    /// Frames a second one WebSocket may send (bursts of twice as many).
    pub ws_frame_rate: u32,
    /// Silence after which a WebSocket is closed as gone.
    pub ws_timeout: Duration,
    /// Spectator sockets this server takes (`-max-spectators`; 0: no limit).
    pub max_spectators: u64,
    /// The settings in force, as `/health` shows them (no secrets).
    pub settings: serde_json::Value,
}

/// A route whose other methods get `405 Method Not Allowed` with `Allow: <allow>`.
fn page(path: &str, allow: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move || async move {
        let body = serde_json::json!({
            "error": "method_not_allowed",
            "message": format!("Use {allow}"),
        });
        HttpResponse::MethodNotAllowed()
            .insert_header((actix_web::http::header::ALLOW, allow))
            .json(body)
    }))
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
    .service(
        page("/", "GET, HEAD, POST")
            .get(pages::lobby)
            .head(pages::lobby)
            .post(pages::create_game_form),
    )
    .service(
        page("/join/{id}", "GET, HEAD, POST")
            .get(pages::join_page)
            .head(pages::join_page)
            .post(pages::join_game_form),
    )
    .service(
        page("/watch/{id}", "GET, HEAD")
            .get(pages::watch_page)
            .head(pages::watch_page),
    )
    .service(
        page("/game/{id}", "GET, HEAD")
            .get(pages::game_page)
            .head(pages::game_page),
    )
    .service(page("/ws/{id}", "GET").get(ops::upgrade_counted))
    .service(
        page("/_stats", "GET, HEAD")
            .get(ops::stats)
            .head(ops::stats),
    )
    .service(
        page("/health", "GET, HEAD")
            .get(ops::health)
            .head(ops::health),
    )
    .service(
        page("/metrics", "GET, HEAD")
            .get(ops::metrics)
            .head(ops::metrics),
    )
    .service(page("/api/games", "POST").post(api::create))
    .service(
        page("/api/games/{id}", "GET, HEAD")
            .get(api::game)
            .head(api::game),
    )
    .service(page("/api/games/{id}/players", "POST").post(api::join))
    .service(
        page("/static/{path:.*}", "GET, HEAD")
            .get(crate::static_files::serve)
            .head(crate::static_files::serve),
    )
    .service(
        page("/favicon.ico", "GET, HEAD")
            .get(crate::static_files::favicon)
            .head(crate::static_files::favicon),
    )
    .default_service(web::to(pages::not_found));
}

/// A JSON API error: `{"error": CODE, "message": TEXT}` with a fitting status.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds to wait before trying again (`Retry-After`), when the refusal says.
    retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Adds `Retry-After: secs` to the answer.
    pub(crate) fn retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after = Some(secs);
        self
    }
}

impl ApiError {
    /// The error code the body carries.
    pub(crate) fn code(&self) -> &'static str {
        self.code
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
        crate::measure::ERRORS.count(crate::measure::Via::Http, self.code);
        let mut answer = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            answer.insert_header((actix_web::http::header::RETRY_AFTER, secs.to_string()));
        }
        answer.json(serde_json::json!({
            "error": self.code,
            "message": self.message,
        }))
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> ApiError {
        let status = match &e {
            NodeError::NotFound => StatusCode::NOT_FOUND,
            NodeError::Rule(RuleError::InvalidName(_) | RuleError::InvalidConfig) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            NodeError::Rule(RuleError::GameInProgress | RuleError::GameFull) => {
                StatusCode::CONFLICT
            }
            NodeError::Rule(RuleError::UnknownRobot) => StatusCode::UNAUTHORIZED,
            NodeError::Rule(_) => StatusCode::UNPROCESSABLE_ENTITY,
            NodeError::Unavailable | NodeError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl ApiError {
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// `429 rate_limited`: too many games this server does not hold looked up from one address.
    pub(crate) fn lookups_limited() -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many games looked up from your address: try again in a minute",
        )
    }

    /// `429 rate_limited`: too many games created from one address.
    pub(crate) fn create_limited() -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many games created from your address: try again in a minute",
        )
    }
}

impl From<RuleError> for ApiError {
    fn from(e: RuleError) -> ApiError {
        NodeError::from(e).into()
    }
}

pub(crate) fn json_error(err: JsonPayloadError) -> ApiError {
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

pub(crate) fn form_error(err: UrlencodedError) -> ApiError {
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
