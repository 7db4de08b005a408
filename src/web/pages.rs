//! The browser pages: lobby, join form, race page, and the player cookie that ties a browser
//! to its robot (any server of the cluster accepts it).

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use askama::Template;
use serde::Deserialize;

use super::{proxy, ApiError, AppState};
use crate::game::{Game, GameConfig, PlayerName, State, MAX_PLAYERS};
use crate::node::{valid_game_id, NodeError};

#[derive(Template)]
#[template(path = "lobby.html")]
struct LobbyPage {
    error: Option<String>,
    name: String,
    /// Why the player is back here (their game ended), shown above the form.
    notice: Option<String>,
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
    /// Who is in, in join order (escaped by the template like every value).
    names: Vec<String>,
}

impl JoinPage {
    /// The page for `game` (or for a game that could not be read: nobody in, not joinable).
    fn new(game_id: String, game: Option<&Game>, error: Option<String>, name: String) -> Self {
        let names: Vec<String> = game.map_or_else(Vec::new, |g| {
            g.robots.iter().map(|r| r.name.clone()).collect()
        });
        JoinPage {
            game_id,
            players: names.len(),
            max_players: MAX_PLAYERS,
            joinable: game.is_some_and(|g| g.state == State::Setup && names.len() < MAX_PLAYERS),
            error,
            name,
            names,
        }
    }
}

#[derive(Template)]
#[template(path = "game.html")]
struct GamePage {
    game_id: String,
    robot_id: String,
    admin: bool,
}

#[derive(Template)]
#[template(path = "watch.html")]
struct WatchPage {
    game_id: String,
    invite_url: String,
    /// The invite link as a QR code: an SVG made here (no text from players in it).
    qr_svg: String,
}

#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFoundPage {
    /// The status, shown large (404, 403, 503).
    code: u16,
    title: &'static str,
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
            code: 404,
            title: "Not found",
            message: message.to_owned(),
        },
    )
}

/// A form sent from another site (a forged request): refused, nothing changed.
fn cross_site_page() -> HttpResponse {
    html(
        StatusCode::FORBIDDEN,
        &NotFoundPage {
            code: 403,
            title: "Refused",
            message: "Forms from other sites are not accepted. Open Robot Race itself to play."
                .into(),
        },
    )
}

/// Past the address's quota of games looked up (see `super::may_look_up`).
fn limited_page() -> HttpResponse {
    html(
        StatusCode::TOO_MANY_REQUESTS,
        &NotFoundPage {
            code: 429,
            title: "Too many requests",
            message: ApiError::lookups_limited().message().to_owned(),
        },
    )
}

fn unavailable_page() -> HttpResponse {
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        &NotFoundPage {
            code: 503,
            title: "Busy",
            message: "The game server is busy or restarting. Try again in a moment.".into(),
        },
    )
}

#[derive(Deserialize)]
pub(super) struct NameForm {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
pub(super) struct LobbyQuery {
    /// Set by the race page when it sends the player back: `idle` (ended for lack of play) or
    /// `gone` (the game no longer exists).
    ended: Option<String>,
}

pub(super) async fn lobby(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    // A malformed query is no reason to refuse the lobby.
    let ended = web::Query::<LobbyQuery>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.into_inner().ended);
    let notice = match ended.as_deref() {
        Some("idle") => Some(format!(
            "That game ended after {} without play.",
            span(state.idle_timeout)
        )),
        Some("gone") => Some("That game has ended.".to_owned()),
        _ => None,
    };
    html(
        StatusCode::OK,
        &LobbyPage {
            error: None,
            name: String::new(),
            notice,
        },
    )
}

/// "10 minutes", "1 minute", "90 seconds": a duration as a person says it.
fn span(d: std::time::Duration) -> String {
    let secs = d.as_secs().max(1);
    let (n, unit) = if secs.is_multiple_of(60) {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

pub(super) async fn create_game_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<NameForm>,
) -> HttpResponse {
    if !proxy::same_site_form(&req, &state) {
        return cross_site_page();
    }
    let rerender = |status, error: String| {
        html(
            status,
            &LobbyPage {
                error: Some(error),
                name: form.name.chars().take(40).collect(),
                notice: None,
            },
        )
    };
    let name = match PlayerName::parse(&form.name) {
        Ok(name) => name,
        Err(e) => return rerender(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    };
    if !state
        .create_quota
        .allow(&proxy::client_addr(req.head(), &state))
    {
        return rerender(
            StatusCode::TOO_MANY_REQUESTS,
            ApiError::create_limited().message().to_owned(),
        );
    }
    match state.node.create(name, GameConfig::default()).await {
        Ok(created) => {
            let token = state.tokens.issue(&created.game_id, &created.robot_id);
            enter_game(&req, &state, &created.game_id, &token)
        }
        Err(e) => rerender(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Sets the player cookie and sends the browser to the race page.
pub(super) fn enter_game(
    req: &HttpRequest,
    state: &AppState,
    game_id: &str,
    token: &str,
) -> HttpResponse {
    let secure = proxy::base_url(req, state).starts_with("https://");
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

/// Sends a visitor who already has a robot in this game back to it (never a second robot).
fn to_race(game_id: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, format!("/game/{game_id}")))
        .finish()
}

/// Whether this visitor's cookie (or token) is for a robot still racing in `game`.
fn has_robot(req: &HttpRequest, state: &AppState, game: &crate::game::Game) -> bool {
    player(req, state, &game.id)
        .and_then(|robot_id| game.robot(&robot_id).map(|r| !r.left))
        .unwrap_or(false)
}

pub(super) async fn join_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    let game_id = path.into_inner();
    match game_or_page(&req, &state, &game_id).await {
        Ok(game) if has_robot(&req, &state, &game) => to_race(&game_id),
        Ok(game) => html(
            StatusCode::OK,
            &JoinPage::new(game_id, Some(&game), None, String::new()),
        ),
        Err(page) => page,
    }
}

/// The game at `game_id`, or the page to show instead (a bad link, a game that ended, a
/// busy server).
async fn game_or_page(
    req: &HttpRequest,
    state: &AppState,
    game_id: &str,
) -> Result<crate::game::Game, HttpResponse> {
    if !valid_game_id(game_id) {
        return Err(not_found_page("There is no game at this link."));
    }
    if !super::may_look_up(state, &proxy::client_addr(req.head(), state), game_id) {
        return Err(limited_page());
    }
    state.node.game(game_id).await.map_err(|e| match e {
        NodeError::Unavailable | NodeError::Overloaded => unavailable_page(),
        _ => not_found_page("There is no game at this link. It may have ended."),
    })
}

pub(super) async fn join_game_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<NameForm>,
) -> HttpResponse {
    if !proxy::same_site_form(&req, &state) {
        return cross_site_page();
    }
    let game_id = path.into_inner();
    if !valid_game_id(&game_id) {
        return not_found_page("There is no game at this link.");
    }
    if !super::may_look_up(&state, &proxy::client_addr(req.head(), &state), &game_id) {
        return limited_page();
    }
    // Sent again (Back, reload): the robot this browser already has, not a second one.
    if player(&req, &state, &game_id).is_some() {
        if let Ok(game) = state.node.game(&game_id).await {
            if has_robot(&req, &state, &game) {
                return to_race(&game_id);
            }
        }
    }
    let result = match PlayerName::parse(&form.name) {
        Ok(name) => state.node.join(&game_id, name).await,
        Err(e) => Err(e.into()),
    };
    let robot_id = match result {
        Ok(robot_id) => robot_id,
        Err(NodeError::NotFound) => {
            return not_found_page("There is no game at this link. It may have ended.")
        }
        Err(e) => {
            let status = ApiError::from(e.clone()).status;
            let game = state.node.game(&game_id).await.ok();
            return html(
                status,
                &JoinPage::new(
                    game_id,
                    game.as_ref(),
                    Some(e.to_string()),
                    form.name.chars().take(40).collect(),
                ),
            );
        }
    };
    let token = state.tokens.issue(&game_id, &robot_id);
    enter_game(&req, &state, &game_id, &token)
}

/// The player's robot id from the cookie (or `?token=`), if the token is valid for this game.
pub(super) fn player(req: &HttpRequest, state: &AppState, game_id: &str) -> Option<String> {
    player_of(req.head(), state, game_id)
}

/// [`player`] from a request's head (the WebSocket upgrade has no `HttpRequest`).
pub(super) fn player_of(
    head: &actix_web::dev::RequestHead,
    state: &AppState,
    game_id: &str,
) -> Option<String> {
    let from_query = web::Query::<TokenQuery>::from_query(head.uri.query().unwrap_or(""))
        .ok()
        .and_then(|q| q.into_inner().token);
    let name = cookie_name(game_id);
    let token = from_query.or_else(|| {
        head.headers
            .get_all(header::COOKIE)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| actix_web::cookie::Cookie::parse_encoded(c.trim()).ok())
            .find(|c| c.name() == name)
            .map(|c| c.value().to_owned())
    })?;
    state.tokens.verify(game_id, &token)
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

pub(super) async fn game_page(
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
    match state.node.robot(&game_id, &robot_id).await {
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
        Err(NodeError::NotFound) => not_found_page("This game has ended."),
        Err(NodeError::Unavailable | NodeError::Overloaded) => unavailable_page(),
        Err(_) => to_join(),
    }
}

/// The big-screen view: the race, read only, for any number of viewers.
pub(super) async fn watch_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    let game_id = path.into_inner();
    if let Err(page) = game_or_page(&req, &state, &game_id).await {
        return page;
    }
    let invite_url = format!("{}/join/{game_id}", proxy::base_url(&req, &state));
    html(
        StatusCode::OK,
        &WatchPage {
            qr_svg: qr_svg(&invite_url),
            invite_url,
            game_id,
        },
    )
}

/// An inline SVG QR code of `text` (dark modules on white, with the quiet zone).
fn qr_svg(text: &str) -> String {
    use qrcode::render::svg;
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => {
            let svg = code
                .render::<svg::Color<'_>>()
                .min_dimensions(240, 240)
                .dark_color(svg::Color("#07070d"))
                .light_color(svg::Color("#ffffff"))
                .build();
            // Inline in HTML: without the XML declaration.
            match svg.find("<svg") {
                Some(start) => svg[start..].to_owned(),
                None => String::new(),
            }
        }
        Err(e) => {
            log::warn!("no QR code for {text}: {e}");
            String::new()
        }
    }
}

pub(super) async fn not_found(req: HttpRequest) -> HttpResponse {
    if req.path().starts_with("/api/") {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such resource").error_response()
    } else {
        not_found_page("There is nothing at this address.")
    }
}
