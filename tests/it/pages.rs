//! The pages a new player meets, over plain HTTP: the live `/_stats` page and its JSON, the join
//! page (who is in, a game that cannot be joined), the lobby's notice after an idle game. What
//! they look like in a real browser: `browser::polish`.

use serde_json::Value;

use crate::helpers::*;

fn http() -> awc::Client {
    awc::Client::builder()
        .disable_redirects()
        .timeout(SECS(10))
        .finish()
}

/// GETs `path` with this `Accept` (none if empty): status, content type, body.
async fn get(server: &Server, path: &str, accept: &str) -> (u16, String, String) {
    let mut req = http().get(server.url(path));
    if !accept.is_empty() {
        req = req.insert_header(("Accept", accept));
    }
    let mut res = req.send().await.expect("request");
    let kind = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = res.body().limit(1 << 20).await.expect("body");
    (
        res.status().as_u16(),
        kind,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

const BROWSER_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

/// `/_stats`: a browser gets a page with the number large and a script (our own) that keeps
/// it live; `Accept: application/json`, or no preference at all, gets the JSON as before.
#[actix_rt::test]
async fn stats_is_a_live_page_for_browsers_and_json_for_tools() {
    let server = Server::start(&[]);
    let api = server.api();
    for name in ["ann", "bob", "cy"] {
        api.create(name, 5, 0).await;
    }

    let (status, kind, body) = get(&server, "/_stats", BROWSER_ACCEPT).await;
    assert_eq!(status, 200, "{body}");
    assert!(kind.starts_with("text/html"), "{kind}");
    assert!(
        body.contains(
            r#"<p id="games-created" class="stats-number neon-yellow" aria-live="polite">3</p>"#
        ),
        "the page shows the number of games created: {body}"
    );
    assert!(body.contains(r#"<script src="/static/stats.js" defer></script>"#));
    assert!(
        !body.contains("http://") && !body.contains("https://"),
        "nothing from another host: {body}"
    );
    let (status, kind, script) = get(&server, "/static/stats.js", "").await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/javascript"), "{kind}");
    assert!(
        script.contains(r#"fetch("/_stats", { headers: { Accept: "application/json" }"#),
        "the page polls the JSON: {script}"
    );

    for accept in ["application/json", "", "*/*", "application/json, text/html"] {
        let (status, kind, body) = get(&server, "/_stats", accept).await;
        assert_eq!(status, 200, "Accept {accept:?}: {body}");
        assert!(
            kind.starts_with("application/json"),
            "Accept {accept:?}: {kind}"
        );
        let json: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(json["games_created"], 3, "{json}");
        assert_eq!(json["scope"], "node", "{json}");
        assert_eq!(json["games_active"], 3, "{json}");
    }

    // HEAD answers for both forms.
    for accept in [BROWSER_ACCEPT, "application/json"] {
        let res = http()
            .head(server.url("/_stats"))
            .insert_header(("Accept", accept))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "HEAD with {accept}");
    }
}

/// The join page lists who is in (escaped) with the count; a full game and a game in progress
/// show the form disabled with a message and a link to start a new game, and a POST to them
/// still gets 409 with the message.
#[actix_rt::test]
async fn join_page_lists_players_and_disables_the_form_when_it_cannot_be_joined() {
    let server = Server::start(&[]);
    let api = server.api();

    let open = api.create("<b>ann</b>", 5, 0).await;
    api.join(&open.game_id, "bob & co").await;
    let (status, _, body) = get(&server, &format!("/join/{}", open.game_id), "").await;
    assert_eq!(status, 200);
    assert!(body.contains("Players 2/10"), "{body}");
    assert!(
        body.contains("<li>&#60;b&#62;ann&#60;/b&#62;</li>")
            || body.contains("<li>&lt;b&gt;ann&lt;/b&gt;</li>"),
        "names are listed, escaped: {body}"
    );
    assert!(
        !body.contains("<b>ann</b>"),
        "a name rendered as HTML: {body}"
    );
    assert!(
        body.contains("bob &#38; co") || body.contains("bob &amp; co"),
        "{body}"
    );
    assert!(
        !body.contains("<fieldset id=\"join-fields\" class=\"fields\" disabled>"),
        "{body}"
    );
    assert!(
        body.contains(r#"<canvas id="demo" class="backdrop""#),
        "the lobby animation: {body}"
    );
    assert!(body.contains(r#"<script src="/static/lobby.js" defer></script>"#));

    // Full: ten robots.
    let full = api.create("p0", 5, 0).await;
    for i in 1..10 {
        api.join(&full.game_id, &format!("p{i}")).await;
    }
    let path = format!("/join/{}", full.game_id);
    let (status, _, body) = get(&server, &path, "").await;
    assert_eq!(status, 200);
    assert!(body.contains("Players 10/10"), "{body}");
    assert!(
        body.contains(r#"<p id="game-full" class="notice" role="status">"#),
        "{body}"
    );
    assert!(
        body.contains(r#"<a href="/">Start a new game</a>"#),
        "{body}"
    );
    assert!(
        body.contains(r#"<fieldset id="join-fields" class="fields" disabled>"#),
        "the form is disabled: {body}"
    );
    assert!(body.contains("<li>p9</li>"), "{body}");
    let refused = http()
        .post(server.url(&path))
        .send_form(&[("name", "eve")])
        .await
        .unwrap();
    assert_eq!(refused.status(), 409);

    // In progress.
    let busy = api.create("ann", 5, 3).await;
    api.join(&busy.game_id, "bob").await;
    let mut admin = connect(&server, &busy).await;
    admin
        .send(serde_json::json!({"type": "start_countdown"}))
        .await;
    admin
        .wait_game(SECS(10), |g| state(g) == "counting_down")
        .await;
    let path = format!("/join/{}", busy.game_id);
    let (status, _, body) = get(&server, &path, "").await;
    assert_eq!(status, 200);
    assert!(
        body.contains(r#"<p id="in-progress" class="notice" role="status">"#),
        "{body}"
    );
    assert!(
        body.contains(r#"<fieldset id="join-fields" class="fields" disabled>"#),
        "{body}"
    );
    let mut refused = http()
        .post(server.url(&path))
        .send_form(&[("name", "eve")])
        .await
        .unwrap();
    assert_eq!(refused.status(), 409);
    let body = refused.body().await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("This race has already started"));
}

/// After an idle game the race page sends players to `/?ended=idle`; the lobby says why, with
/// the server's own idle time. Anything else in the query is ignored.
#[actix_rt::test]
async fn lobby_explains_an_ended_game() {
    let server = Server::start(&["-idle-timeout-secs", "600"]);
    let (status, _, body) = get(&server, "/?ended=idle", "").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("That game ended after 10 minutes without play."),
        "{body}"
    );
    let (_, _, body) = get(&server, "/?ended=gone", "").await;
    assert!(body.contains("That game has ended."), "{body}");
    for query in [
        "/",
        "/?ended=%3Cscript%3E",
        "/?ended=%ZZ&&=",
        "/?x=1",
        "/?ended=idle&ended=gone",
    ] {
        let (status, _, body) = get(&server, query, "").await;
        assert_eq!(status, 200, "{query}");
        assert!(!body.contains(r#"id="ended""#), "{query}: {body}");
    }
}
