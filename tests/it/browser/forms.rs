//! What the forms answer in the browser: bad input (a full game, a game in progress, an unknown
//! game, bad names) and a cross-site form.

use serde_json::json;

use super::client::Browser;
use super::driver::require_browser;
use super::flows::{expect_error, submit_name};
use super::page::{assert_readable, text, visible};
use crate::helpers::*;

/// What a player sees for bad input: a full game, a game in progress, an unknown game, an
/// empty and a too-long name — each a readable message on the page, never a blank page.
#[actix_rt::test]
async fn browser_bad_input_messages() {
    require_browser();
    let server = Server::start(&[]);
    let api = server.api();
    let b = Browser::desktop("bad", "eve").await;

    // An unknown game: a readable 404 page with a way home.
    b.goto(&server.url("/join/NoSuchGame")).await;
    let snap = b.wait_page("/join/NoSuchGame", "#home").await;
    assert_readable(&snap, "404 page");
    assert!(snap["body"].as_str().unwrap().contains("404"), "{snap:#}");
    assert!(!text(&snap, "not_found").is_empty(), "{snap:#}");
    let home = b.find("#home").await.prop("href").await.unwrap();
    assert_eq!(home.as_deref(), Some(server.url("/").as_str()));
    b.screenshot("not-found").await;
    b.click("#home").await;
    b.wait_page("/", "#start-game").await;

    // The lobby: an empty name, then a too-long one (with markup, shown escaped).
    submit_name(&b, "#start-game", "").await;
    expect_error(&b, "/", "Name must be 1 to 10 characters", "empty-name").await;
    let long = "<i>robots</i>";
    submit_name(&b, "#start-game", long).await;
    let snap = expect_error(&b, "/", "Name must be 1 to 10 characters", "long-name").await;
    assert_eq!(snap["name"]["value"], long, "the typed name is kept");
    let markup = b
        .js("return document.querySelectorAll('main i').length;", vec![])
        .await;
    assert_eq!(markup, 0, "a name must never be rendered as HTML");

    // A full game: 10 robots through the API, then the join form.
    let full = api.create("p0", 25, 3).await;
    for i in 1..10 {
        api.join(&full.game_id, &format!("p{i}")).await;
    }
    let join_path = format!("/join/{}", full.game_id);
    b.goto(&server.url(&join_path)).await;
    let snap = b.wait_page(&join_path, "#join-game").await;
    assert_eq!(text(&snap, "player_count"), "Players 10/10");
    submit_name(&b, "#join-game", "eve").await;
    expect_error(&b, &join_path, "already has 10 players", "full").await;

    // A game in progress.
    let ann = api.create("ann", 25, 3).await;
    api.join(&ann.game_id, "bob").await;
    let mut admin = connect(&server, &ann).await;
    admin.send(json!({"type": "start_countdown"})).await;
    admin
        .wait_game(SECS(10), |g| state(g) == "counting_down")
        .await;
    let join_path = format!("/join/{}", ann.game_id);
    b.goto(&server.url(&join_path)).await;
    let snap = b.wait_page(&join_path, "#join-game").await;
    assert!(visible(&snap, "in_progress"), "{snap:#}");
    submit_name(&b, "#join-game", "eve").await;
    expect_error(&b, &join_path, "already started", "in-progress").await;

    // The join form of a joinable game, with an empty name.
    let open = api.create("cy", 25, 3).await;
    let join_path = format!("/join/{}", open.game_id);
    b.goto(&server.url(&join_path)).await;
    b.wait_page(&join_path, "#join-game").await;
    submit_name(&b, "#join-game", "   ").await;
    expect_error(
        &b,
        &join_path,
        "Name must be 1 to 10 characters",
        "join-empty-name",
    )
    .await;
    b.close().await;
}

/// A page on another site that auto-submits a join form to ours (cross-site request forgery):
/// real Chromium sends it with its own `Origin`, and the server refuses it; nobody joined.
#[actix_rt::test]
async fn browser_cross_site_form_is_refused() {
    require_browser();
    let server = Server::start(&[]);
    let game = server.api().create("ann", 25, 3).await;
    let b = Browser::desktop("csrf", "eve").await;
    let target = server.url(&format!("/join/{}", game.game_id));
    let attack = format!(
        "data:text/html,<form method=post action=\"{target}\"><input name=name value=pwned>\
         </form><script>document.forms[0].submit()</script>"
    );
    b.goto(&attack).await;
    let snap = b
        .wait("the refusal page", SECS(10), |s| {
            s["body"]
                .as_str()
                .unwrap_or("")
                .contains("Forms from other sites are not accepted")
        })
        .await;
    assert_readable(&snap, "csrf refused");
    assert!(snap["body"].as_str().unwrap().contains("403"), "{snap:#}");
    b.screenshot("csrf-refused").await;
    let now = server.api().game(&game.game_id).await;
    assert_eq!(
        now["robots"].as_array().unwrap().len(),
        1,
        "a forged join got in: {now}"
    );

    // The name field counts as the server does: four emoji (one with a skin tone, one a
    // family of joined emoji) are four in 34 bytes, and fit; eight are over 40 bytes and
    // eleven over 10 characters: neither does.
    b.goto(&server.url("/")).await;
    b.wait_page("/", "#start-game").await;
    let valid = |name: &str| {
        format!(
            "var f = document.getElementById('name'); f.value = {name:?}; \
             f.dispatchEvent(new Event('input')); return [f.value, f.validity.valid];"
        )
    };
    let four = "😀👍🏽👨‍👩‍👧🎉";
    let got = b.js(&valid(four), vec![]).await;
    assert_eq!(got, json!([four, true]), "four emoji should fit the field");
    let eight = "😀👍🏽👨‍👩‍👧🎉🚀🔥✨🤖";
    let got = b.js(&valid(eight), vec![]).await;
    assert_eq!(got[1], false, "eight emoji are over 40 bytes: {got}");
    let eleven = "😀😀😀😀😀😀😀😀😀😀😀";
    let got = b.js(&valid(eleven), vec![]).await;
    assert_eq!(got[1], false, "eleven emoji should not: {got}");
    b.close().await;
}
