//! Who the client is and where it came from: a trusted proxy's headers (nginx, Heroku's
//! router), the origins allowed to open WebSockets, the base URL for invite links.

use std::net::IpAddr;

use actix_web::dev::{ConnectionInfo, RequestHead};
use actix_web::http::header;
use actix_web::HttpRequest;

use super::AppState;

/// A browser's `Origin` must be this site (or one configured); clients that send none (bots,
/// tests) are not browsers and are let through.
pub(super) fn origin_allowed(req: &RequestHead, state: &AppState) -> bool {
    let Some(origin) = req.headers.get(header::ORIGIN) else {
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
    hosts(req).any(|h| h.eq_ignore_ascii_case(origin_host))
}

/// The names this request calls us by: what a proxy forwarded (`Forwarded: host=`,
/// `X-Forwarded-Host`), the `Host` header, the request line's authority.
fn hosts(req: &RequestHead) -> impl Iterator<Item = &str> {
    let header = |name| req.headers.get(name).and_then(|h| h.to_str().ok());
    let forwarded = header(header::FORWARDED).and_then(|v| {
        v.split([';', ','])
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.trim().trim_matches('"'))
    });
    let x_forwarded = header(header::HeaderName::from_static("x-forwarded-host"))
        .and_then(|v| v.split(',').next())
        .map(str::trim);
    [
        forwarded,
        x_forwarded,
        header(header::HOST),
        req.uri.authority().map(|a| a.as_str()),
    ]
    .into_iter()
    .flatten()
}

/// A form POST from this site (not a cross-site request forgery): the browser's
/// `Sec-Fetch-Site` is not `cross-site`, and its `Origin`, when sent, is this site. A client
/// that sends neither is not a browser on another site.
pub(super) fn same_site_form(req: &HttpRequest, state: &AppState) -> bool {
    let fetch_site = req
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok());
    if fetch_site.is_some_and(|v| v.eq_ignore_ascii_case("cross-site")) {
        return false;
    }
    origin_allowed(req.head(), state)
}

/// The request line for the access log, with any player token replaced by `…` (a token in
/// a log file is a working credential).
pub fn logged_request(req: &actix_web::dev::ServiceRequest) -> String {
    format!(
        "{} {} {:?}",
        req.method(),
        redact_tokens(&req.uri().to_string()),
        req.version()
    )
}

pub(super) fn redact_tokens(uri: &str) -> String {
    let Some((path, query)) = uri.split_once('?') else {
        return uri.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("token") => format!("{key}=…"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

fn peer_trusted(req: &RequestHead, state: &AppState) -> bool {
    state.trust_proxy
        || req
            .peer_addr
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
pub fn client_addr(req: &RequestHead, state: &AppState) -> String {
    let header = |name: &str| {
        req.headers
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
    req.peer_addr
        .map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string())
}

/// `http(s)://host` as the player reached us (through a trusted proxy's headers if any).
pub(super) fn base_url(req: &HttpRequest, state: &AppState) -> String {
    let info: ConnectionInfo = req.connection_info().clone();
    if peer_trusted(req.head(), state) {
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

#[cfg(test)]
mod tests {
    use super::redact_tokens;

    #[test]
    fn tokens_never_reach_the_log() {
        assert_eq!(
            redact_tokens("/ws/AbC12345?token=r1.abcdef0123"),
            "/ws/AbC12345?token=…"
        );
        assert_eq!(
            redact_tokens("/game/x?a=1&TOKEN=secret&b=2"),
            "/game/x?a=1&TOKEN=…&b=2"
        );
        assert_eq!(redact_tokens("/join/x"), "/join/x");
    }
}
