//! The pages around a race: the toast of a game left idle and the lobby's explanation, the join
//! page, and the live stats page.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{boxes, num, open, open_race, GEOMETRY, SIZES, STRONG_PIXELS};
use crate::browser::driver::require_browser;
use crate::browser::page::{text, visible};
use crate::helpers::*;

/// A game left idle ends; the toast that says so covers no robot and no name (the players are at
/// the start, at the bottom), then the lobby explains what happened.
#[actix_rt::test]
async fn idle_game_toast_covers_no_robot_and_the_lobby_explains() {
    require_browser();
    let server = Server::start(&["-idle-timeout-secs", "8"]);
    let api = server.api();
    for (size, viewport, phone) in SIZES {
        let b = open(size, viewport, phone, "ann").await;
        let ann = api.create("Ann", 25, 3).await;
        api.join(&ann.game_id, "Bob").await;
        open_race(&b, &server, &ann).await;
        b.record().await;
        let snap = b
            .wait("the idle game's end", SECS(20), |s| {
                visible(s, "message") && text(s, "message") == "This game has ended"
            })
            .await;
        assert_eq!(snap["path"], format!("/game/{}", ann.game_id));
        let g = b.js(GEOMETRY, vec![]).await;
        b.screenshot("toast").await;
        let toast = &g["toast"];
        let toast_top = num(&toast["y"]);
        let scene = &g["scene"];
        for what in ["robots", "labels"] {
            for r in boxes(scene, what) {
                assert!(
                    num(&r["y"]) + num(&r["h"]) <= toast_top,
                    "{size}: the toast covers a robot or name: {r}\n{g}"
                );
            }
        }
        let strong = b
            .js(
                STRONG_PIXELS,
                vec![
                    toast["x"].clone(),
                    toast["y"].clone(),
                    toast["w"].clone(),
                    toast["h"].clone(),
                ],
            )
            .await;
        assert_eq!(strong, 0, "{size}: robot pixels under the toast: {g}");

        b.wait_page("/", "#ended").await;
        let ended = b
            .js(
                "return document.getElementById('ended').textContent.trim();",
                vec![],
            )
            .await;
        assert_eq!(
            ended,
            "That game ended after 8 seconds without play. Start a new game below."
        );
        let url = b.js("return location.search;", vec![]).await;
        assert_eq!(url, "?ended=idle");
        b.screenshot("ended-idle").await;
        b.close().await;
    }
}

/// The join page shows the lobby's animation and who is in (escaped); a full game and a game in
/// progress show the form disabled with the reason and a way out.
#[actix_rt::test]
async fn join_page_animation_players_and_disabled_form() {
    require_browser();
    let server = Server::start(&[]);
    let api = server.api();
    for (size, viewport, phone) in SIZES {
        let b = open(size, viewport, phone, "eve").await;
        let open_game = api.create("<i>Ann</i>", 25, 3).await;
        api.join(&open_game.game_id, "Bob").await;
        let path = format!("/join/{}", open_game.game_id);
        b.goto(&server.url(&path)).await;
        b.wait_page(&path, "#join-game").await;
        actix_rt::time::sleep(Duration::from_millis(500)).await;
        let page = b
            .js(
                "var c = document.getElementById('demo'); \
                 var d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; var lit = 0; \
                 for (var i = 0; i < d.length; i += 16) if (d[i] + d[i + 1] + d[i + 2] > 300) lit++; \
                 var names = []; document.querySelectorAll('#player-list li').forEach(function (li) { \
                   names.push(li.textContent); }); \
                 return { lit: lit, names: names, markup: document.querySelectorAll('#player-list i').length, \
                   disabled: document.getElementById('join-game').matches(':disabled') };",
                vec![],
            )
            .await;
        assert!(
            page["lit"].as_u64() > Some(50),
            "{size}: no animation: {page}"
        );
        assert_eq!(page["names"], json!(["<i>Ann</i>", "Bob"]), "{size}");
        assert_eq!(page["markup"], 0, "a name rendered as HTML");
        assert_eq!(page["disabled"], false);
        b.screenshot("join-open").await;

        let full = api.create("p0", 25, 3).await;
        for i in 1..10 {
            api.join(&full.game_id, &format!("p{i}")).await;
        }
        let busy = api.create("ann", 25, 3).await;
        api.join(&busy.game_id, "bob").await;
        let mut admin = connect(&server, &busy).await;
        admin.send(json!({"type": "start_countdown"})).await;
        admin
            .wait_game(SECS(10), |g| state(g) == "counting_down")
            .await;
        for (game, notice, says, shot) in [
            (&full, "#game-full", "This race is full", "join-full"),
            (&busy, "#in-progress", "already started", "join-in-progress"),
        ] {
            let path = format!("/join/{}", game.game_id);
            b.goto(&server.url(&path)).await;
            b.wait_page(&path, notice).await;
            let form = b
                .js(
                    "var n = document.querySelector(arguments[0]); var a = n.querySelector('a'); \
                     var r = n.getBoundingClientRect(); \
                     return { text: n.textContent, link: a ? a.getAttribute('href') : null, \
                       button: document.getElementById('join-game').matches(':disabled'), \
                       field: document.getElementById('name').matches(':disabled'), \
                       opacity: getComputedStyle(document.getElementById('join-fields')).opacity, \
                       inView: r.top >= 0 && r.bottom <= innerHeight && r.right <= innerWidth };",
                    vec![json!(notice)],
                )
                .await;
            assert!(
                form["text"].as_str().unwrap_or("").contains(says),
                "{size}: {form}"
            );
            assert_eq!(
                form["link"], "/",
                "{size}: a way to start a new game: {form}"
            );
            assert_eq!(form["button"], true, "{size}: {form}");
            assert_eq!(form["field"], true, "{size}: {form}");
            assert!(
                form["opacity"].as_str().unwrap().parse::<f64>().unwrap() < 0.6,
                "{size}: {form}"
            );
            assert_eq!(form["inView"], true, "{size}: {form}");
            b.screenshot(shot).await;
        }
        b.close().await;
    }
}

/// `/_stats` in a browser is a page with the number large, and it follows new games by itself
/// (polling the JSON).
#[actix_rt::test]
async fn stats_page_shows_a_big_live_number() {
    require_browser();
    let server = Server::start(&[]);
    let api = server.api();
    for (size, viewport, phone) in SIZES {
        let b = open(size, viewport, phone, "ops").await;
        let before = api.get_json("/_stats").await.1["games_created"]
            .as_u64()
            .unwrap();
        b.goto(&server.url("/_stats")).await;
        b.wait_page("/_stats", "#games-created").await;
        let big = b
            .js(
                "var e = document.getElementById('games-created'); var r = e.getBoundingClientRect(); \
                 return { text: e.textContent, font: parseFloat(getComputedStyle(e).fontSize), \
                   inView: r.left >= 0 && r.right <= innerWidth && r.bottom <= innerHeight };",
                vec![],
            )
            .await;
        assert_eq!(big["text"], before.to_string(), "{size}: {big}");
        assert!(num(&big["font"]) >= 44.0, "{size}: not big: {big}");
        assert_eq!(big["inView"], true, "{size}: {big}");
        api.create("new", 25, 3).await;
        let want = (before + 1).to_string();
        let deadline = Instant::now() + SECS(10);
        loop {
            let now = b
                .js(
                    "return document.getElementById('games-created').textContent;",
                    vec![],
                )
                .await;
            if now == want.as_str() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{size}: the page did not follow the new game: {now}"
            );
            actix_rt::time::sleep(Duration::from_millis(200)).await;
        }
        b.screenshot("stats").await;
        b.close().await;
    }
}
