//! What an attacker tried (issue 12): forged cross-site forms, tokens in access logs, and
//! HTTP methods: each refused or answered as PROTOCOL.md says.

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
