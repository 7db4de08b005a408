//! What an attacker may try: forged cross-site forms, tokens in access logs, and HTTP methods:
//! each refused or answered as PROTOCOL.md says.

use serde_json::Value;

use crate::helpers::*;

fn http() -> awc::Client {
    awc::Client::builder().disable_redirects().finish()
}

/// A page on another site auto-submitting a form to ours: refused, nothing created or joined.
#[actix_rt::test]
async fn cross_site_form_posts_are_refused() {
    let server = Server::start(&[]);
    let host = server.addr.to_string();
    let game = server.api().create("ann", 5, 0).await;
    for (path, name) in [
        ("/", "pwned"),
        (&*format!("/join/{}", game.game_id), "pwned"),
    ] {
        // A browser says where the form came from: another origin, or cross-site.
        let forged = http()
            .post(server.url(path))
            .insert_header(("Origin", "http://evil.example"))
            .send_form(&[("name", name)])
            .await
            .unwrap();
        assert_eq!(forged.status(), 403, "{path} with a foreign Origin");
        let forged = http()
            .post(server.url(path))
            .insert_header(("Sec-Fetch-Site", "cross-site"))
            .send_form(&[("name", name)])
            .await
            .unwrap();
        assert_eq!(
            forged.status(),
            403,
            "{path} with Sec-Fetch-Site: cross-site"
        );
        assert!(forged.headers().get("set-cookie").is_none());
        // The site's own page posting to itself works.
        let own = http()
            .post(server.url(path))
            .insert_header(("Origin", format!("http://{host}")))
            .insert_header(("Sec-Fetch-Site", "same-origin"))
            .send_form(&[("name", "real")])
            .await
            .unwrap();
        assert_eq!(own.status(), 303, "{path} from our own page");
    }
    let game_now = server.api().game(&game.game_id).await;
    let names: Vec<&str> = game_now["robots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ann", "real"], "a forged join got in");
    let (_, stats) = server.api().get_json("/_stats").await;
    assert_eq!(stats["games_created"], 2, "a forged create got in");
}

/// The access log never holds a working token: `?token=` is written as `token=…`.
#[actix_rt::test]
async fn tokens_are_not_written_to_the_access_log() {
    let server = Server::start_with_env(&[], &[("RUST_LOG", "info")]);
    let ann = server.api().create("ann", 5, 0).await;
    let player = connect(&server, &ann).await;
    drop(player);
    let _ = http()
        .get(server.url(&format!("/game/{}?token={}", ann.game_id, ann.token)))
        .send()
        .await
        .unwrap();
    let (_, _) = server.api().get_json("/health").await;
    assert!(
        server.logs.wait_for("GET /health", SECS(5)),
        "no access log lines:\n{}",
        server.logs.all()
    );
    assert!(
        server.logs.wait_for("token=…", SECS(5)),
        "{}",
        server.logs.all()
    );
    let mac = ann.token.split('.').nth(1).unwrap();
    assert!(
        !server.logs.all().contains(mac),
        "a token was logged:\n{}",
        server.logs.all()
    );
}

/// Every GET route answers HEAD; a known path with the wrong method gets 405 and `Allow`.
#[actix_rt::test]
async fn head_works_and_wrong_methods_get_405_with_allow() {
    let server = Server::start(&[]);
    let ann = server.api().create("ann", 5, 0).await;
    for path in [
        "/".to_owned(),
        format!("/join/{}", ann.game_id),
        "/health".to_owned(),
        "/metrics".to_owned(),
        "/_stats".to_owned(),
        format!("/api/games/{}", ann.game_id),
        "/static/app.css".to_owned(),
    ] {
        let res = http().head(server.url(&path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "HEAD {path}");
    }
    for (method, path, allow) in [
        ("DELETE", "/".to_owned(), "GET, HEAD, POST"),
        ("PUT", format!("/join/{}", ann.game_id), "GET, HEAD, POST"),
        ("POST", "/health".to_owned(), "GET, HEAD"),
        ("GET", "/api/games".to_owned(), "POST"),
        ("DELETE", format!("/api/games/{}", ann.game_id), "GET, HEAD"),
    ] {
        let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
        let mut res = http()
            .request(method.clone(), server.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 405, "{method} {path}");
        assert_eq!(
            res.headers().get("allow").and_then(|v| v.to_str().ok()),
            Some(allow),
            "{method} {path}"
        );
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "method_not_allowed");
    }
    // Unknown paths stay 404.
    let res = http().get(server.url("/nope")).send().await.unwrap();
    assert_eq!(res.status(), 404);
}

/// Writes one raw request and reads the answer's head (status line and headers), bounded.
fn raw_request(server: &Server, request: &str) -> String {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    tcp.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.len() < 16_384 {
        match tcp.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// The WebSocket endpoint answers over HTTP like every route: what it refuses gets a status
/// and a reason, before anything is upgraded.
#[actix_rt::test]
async fn websocket_requests_that_are_not_upgrades_or_not_gets_get_http_errors() {
    let server = Server::start(&[]);
    let ann = server.api().create("ann", 5, 0).await;
    let upgrade = |method: &str, path: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            server.addr
        )
    };
    let path = format!("/ws/{}?token={}", ann.game_id, ann.token);
    let ok = raw_request(&server, &upgrade("GET", &path));
    assert!(ok.starts_with("HTTP/1.1 101"), "{ok}");
    assert!(ok.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{ok}");
    let post = raw_request(&server, &upgrade("POST", &path));
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    assert!(post.to_ascii_lowercase().contains("allow: get"), "{post}");
    let unknown = raw_request(&server, &upgrade("GET", "/ws/NoSuchGame?watch=1"));
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");
    // Other routes ignore the upgrade headers and answer as usual.
    let elsewhere = raw_request(&server, &upgrade("GET", "/health"));
    assert!(elsewhere.starts_with("HTTP/1.1 200"), "{elsewhere}");
    let no_key = raw_request(
        &server,
        &upgrade("GET", &path).replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
    );
    assert!(no_key.starts_with("HTTP/1.1 400"), "{no_key}");
    // Without the upgrade headers it is a plain request: the same checks, then 400.
    let plain = http().get(server.url(&path)).send().await.unwrap();
    assert_eq!(plain.status(), 400);
    let forged = http()
        .get(server.url(&format!("/ws/{}?token=forged", ann.game_id)))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
}

/// Game creation is limited per client address: the API answers 429 `rate_limited`, the form
/// a readable page; other addresses are not affected.
#[actix_rt::test]
async fn game_creation_is_rate_limited_per_address() {
    let server = Server::start(&["-create-limit", "3"]);
    let api = server.api();
    for i in 0..3 {
        api.create(&format!("p{i}"), 5, 0).await;
    }
    let (status, body) = api
        .post_json("/api/games", serde_json::json!({"name": "p3"}))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("rate_limited"))
    );
    let mut page = http()
        .post(server.url("/"))
        .send_form(&[("name", "form")])
        .await
        .unwrap();
    assert_eq!(page.status(), 429);
    let html = String::from_utf8(page.body().await.unwrap().to_vec()).unwrap();
    assert!(html.contains("Too many games"), "{html}");
    // Another address (a trusted proxy's X-Real-IP) has its own quota.
    let other = http()
        .post(server.url("/api/games"))
        .insert_header(("X-Real-IP", "192.0.2.7"))
        .send_json(&serde_json::json!({"name": "other"}))
        .await
        .unwrap();
    assert_eq!(other.status(), 201);
}

/// Looking up games this server does not hold (each a task and a claim) is limited per
/// client address, at twenty times the creation limit a minute: random game ids answer 404
/// until the quota is spent, then 429 `rate_limited` (API and pages); a game the server holds
/// is always found.
#[actix_rt::test]
async fn looking_up_unknown_games_is_rate_limited_per_address() {
    let server = Server::start(&["-create-limit", "1"]);
    let api = server.api();
    let held = api.create("held", 5, 0).await;
    let mut answers = Vec::new();
    for i in 0..21 {
        let (status, _) = api.get_json(&format!("/api/games/zzzz{i:04}")).await;
        answers.push(status);
    }
    assert_eq!(answers[..20], [404; 20], "{answers:?}");
    assert_eq!(answers[20], 429, "{answers:?}");
    let (status, body) = api
        .post_json(
            "/api/games/zzzz9999/players",
            serde_json::json!({"name": "x"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("rate_limited"))
    );
    let page = http()
        .get(server.url("/join/zzzz9998"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 429);
    let (status, game) = api.get_json(&format!("/api/games/{}", held.game_id)).await;
    assert_eq!(
        (status, game["id"].as_str()),
        (200, Some(held.game_id.as_str()))
    );
}

/// Names: bidi overrides and zero-width characters refused; length counted in graphemes and
/// bytes; no stacked marks; the refusal says which rule.
#[actix_rt::test]
async fn names_refuse_hidden_characters_and_count_graphemes() {
    let server = Server::start(&[]);
    let api = server.api();
    for bad in ["\u{202E}evil", "zero\u{200B}width", "\u{2066}x\u{2069}"] {
        let (status, body) = api
            .post_json("/api/games", serde_json::json!({"name": bad}))
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (422, Some("invalid_name")),
            "{bad:?}"
        );
    }
    // Ten as a person counts (an emoji with a skin tone is two code points), in 27 bytes.
    let ten = "👍🏽🎉abcdef✨🤖";
    let game = api.create(ten, 5, 0).await;
    assert_eq!(api.game(&game.game_id).await["robots"][0]["name"], ten);
    // Refused, each with the rule it broke: too many characters, too many bytes (ten emoji
    // of four bytes and more), marks stacked on one letter.
    for (bad, rule) in [
        ("elevenchars", "1 to 10 characters"),
        ("😀👍🏽🎉🚀🔥✨🤖🎈🌟🍕", "40 bytes"),
        (&*format!("a{}", "\u{301}".repeat(60)), "accents or marks"),
    ] {
        let (status, body) = api
            .post_json("/api/games", serde_json::json!({"name": bad}))
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (422, Some("invalid_name"))
        );
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(rule), "{bad:?}: {message}");
    }
}

/// One robot may have a few tabs open on a server; another closes its oldest with 1008.
#[actix_rt::test]
async fn a_robot_has_at_most_four_sockets_on_a_server() {
    let server = Server::start(&[]);
    let ann = server.api().create("ann", 5, 0).await;
    let mut tabs = Vec::new();
    for _ in 0..5 {
        tabs.push(connect(&server, &ann).await);
    }
    let closed = tabs[0].wait_close(SECS(10)).await;
    assert_eq!(closed.map(|r| r.code), Some(awc::ws::CloseCode::Policy));
    // The four newest stay open and keep getting updates.
    let bob = server.api().join(&ann.game_id, "bob").await;
    for tab in tabs.iter_mut().skip(1) {
        tab.wait_game(SECS(10), |g| g["robots"].as_array().unwrap().len() == 2)
            .await;
    }
    let _ = bob;
}
