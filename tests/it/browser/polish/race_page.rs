//! The race page: start, invite, the finish line, the winner panel, and long names in their
//! lanes.

use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use serde_json::json;

use super::{assert_clear_of_hud, boxes, num, open, open_race, GEOMETRY, SIZES};
use crate::browser::driver::require_browser;
use crate::browser::page::{page_state, text, visible};
use crate::helpers::*;

/// A game created through the API and opened with `?token=` (no cookie); "Start countdown" disabled
/// with a hint until a second robot is connected; the game id always in view and the Copy button
/// working; the finish line at the same height in every state, robots and names clear of the HUD,
/// the winner at the line; the winner panel opaque, and a tie listing this round's winner first.
#[actix_rt::test]
async fn race_page_token_start_invite_finish_line_and_winner_panel() {
    require_browser();
    let server = Server::start(&[]);
    let api = server.api();
    for (size, viewport, phone) in SIZES {
        let mut b = open(size, viewport, phone, "ann").await;
        let ann = api.create("Ann", 5, 1).await;
        open_race(&b, &server, &ann).await;

        // 9: the page's socket used the token from the URL; no link or field shows it.
        let leak = b
            .js(
                "var t = arguments[0]; var hits = []; \
                 document.querySelectorAll('a, input, [href], [value]').forEach(function (e) { \
                   var v = (e.href || '') + ' ' + (e.value || '') + ' ' + (e.getAttribute('href') || ''); \
                   if (v.indexOf(t) >= 0) hits.push(e.outerHTML); }); \
                 if (document.body.innerText.indexOf(t) >= 0) hits.push('body text'); return hits;",
                vec![json!(ann.token)],
            )
            .await;
        assert_eq!(leak, json!([]), "{size}: the token shows in the page");

        // 4: one robot: the button is there but disabled, dimmed, with the reason beside it.
        let start = b
            .wait("Start countdown, disabled with a hint", SECS(10), |s| {
                visible(s, "start") && visible(s, "invite")
            })
            .await;
        assert_eq!(text(&start, "players"), "Players 1/10");
        let look = b
            .js(
                "var s = document.getElementById('start-countdown'); \
                 var h = document.getElementById('start-hint'); \
                 return { disabled: s.disabled, opacity: getComputedStyle(s).opacity, \
                   hint: h.hidden ? null : h.textContent, described: s.getAttribute('aria-describedby') };",
                vec![],
            )
            .await;
        assert_eq!(look["disabled"], true, "{size}: {look}");
        assert!(
            look["opacity"].as_str().unwrap().parse::<f64>().unwrap() < 0.6,
            "{size}: a disabled button should look it: {look}"
        );
        assert!(
            look["hint"]
                .as_str()
                .unwrap_or("")
                .contains("at least 2 players"),
            "{size}: {look}"
        );
        assert_eq!(look["described"], "start-hint");
        // Robots counted as the server will (a `connected` flag per robot), or all of them
        // while the server does not send it yet.
        let counted = b
            .js(
                "var f = window.RobotRace.enoughHere; \
                 return [f([{}, {}]), f([{connected: true}, {connected: false}]), \
                   f([{connected: true}, {connected: true}, {connected: false}]), f([{}])];",
                vec![],
            )
            .await;
        assert_eq!(counted, json!([true, false, true, false]));

        // 2: the game id large and whole inside the screen and the panel; the field shows the
        // end of the link (the id); Copy puts the whole link on the clipboard.
        let invite = b
            .js(
                "function r(e) { var b = e.getBoundingClientRect(); \
                   return {l: b.left, t: b.top, r: b.right, b: b.bottom}; } \
                 var id = document.getElementById('invite-id'); \
                 var f = document.getElementById('invite-link'); \
                 return { id: id.textContent, box: r(id), panel: r(document.getElementById('setup-panel')), \
                   vw: innerWidth, vh: innerHeight, font: parseFloat(getComputedStyle(id).fontSize), \
                   scrolled: f.scrollLeft, end: f.scrollLeft + f.clientWidth >= f.scrollWidth - 1, \
                   field: f.value, overflows: f.scrollWidth > f.clientWidth, \
                   clipped: id.scrollWidth > id.clientWidth + 1 };",
                vec![],
            )
            .await;
        assert_eq!(invite["id"], ann.game_id.as_str(), "{size}: {invite}");
        let (bx, panel) = (&invite["box"], &invite["panel"]);
        assert!(
            num(&bx["l"]) >= num(&panel["l"])
                && num(&bx["r"]) <= num(&panel["r"])
                && num(&bx["t"]) >= 0.0
                && num(&bx["b"]) <= num(&invite["vh"])
                && num(&bx["r"]) <= num(&invite["vw"])
                && invite["clipped"] == false,
            "{size}: the game id is not wholly in view: {invite}"
        );
        assert!(num(&invite["font"]) >= 18.0, "{size}: {invite}");
        assert!(
            invite["end"] == true,
            "{size}: the invite field should show the end of the link (the id): {invite}"
        );
        let link = format!("{}/join/{}", server.url(""), ann.game_id);
        assert_eq!(invite["field"], link.as_str());
        b.screenshot("invite").await;
        b.click("#copy-invite").await;
        b.wait("Copied!", SECS(5), |s| {
            s["body"].as_str().unwrap_or("").contains("Copied!")
        })
        .await;
        // What the clipboard holds, pasted into a field with real keys.
        b.js(
            "var t = document.createElement('textarea'); t.id = 'paste-here'; \
             t.style.cssText = 'position:fixed;left:0;top:0;width:10px;height:10px;opacity:0'; \
             document.body.appendChild(t); t.focus(); return true;",
            vec![],
        )
        .await;
        let paste = KeyActions::new("keyboard".to_owned())
            .then(KeyAction::Down {
                value: Key::Control.into(),
            })
            .then(KeyAction::Down { value: 'v' })
            .then(KeyAction::Up { value: 'v' })
            .then(KeyAction::Up {
                value: Key::Control.into(),
            });
        b.client.perform_actions(paste).await.expect("paste");
        let pasted = b
            .js(
                "var t = document.getElementById('paste-here'); var v = t.value; t.remove(); \
                 return v;",
                vec![],
            )
            .await;
        assert_eq!(
            pasted,
            link.as_str(),
            "{size}: Copy put this on the clipboard"
        );

        // A second robot, connected: the button comes alive and the hint goes.
        let bot = api.join(&ann.game_id, "Bot").await;
        let mut bot_ws = connect(&server, &bot).await;
        b.wait("Start countdown enabled", SECS(10), |s| {
            text(s, "players") == "Players 2/10"
        })
        .await;
        let enabled = b
            .js(
                "return [document.getElementById('start-countdown').disabled, \
                 document.getElementById('start-hint').hidden];",
                vec![],
            )
            .await;
        assert_eq!(enabled, json!([false, true]), "{size}");
        b.screenshot("start-enabled").await;

        // 1: the finish line stays put from setup through the countdown to the race.
        let setup = assert_clear_of_hud(&b, "setup").await;
        let finish = num(&setup["scene"]["finishY"]);
        if phone {
            b.tap("#start-countdown", 0.0).await;
        } else {
            b.click("#start-countdown").await;
        }
        let mut seen = Vec::new();
        let deadline = Instant::now() + SECS(15);
        while !seen.iter().any(|s: &String| s == "playing") {
            let g = b.js(GEOMETRY, vec![]).await;
            let state = g["state"].as_str().unwrap_or("").to_owned();
            assert_eq!(
                num(&g["scene"]["finishY"]),
                finish,
                "{size}: the finish line moved in {state}: {g}"
            );
            if !seen.contains(&state) {
                seen.push(state);
            }
            assert!(
                Instant::now() < deadline,
                "{size}: no race; states {seen:?}"
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(seen.iter().any(|s| s == "counting_down"), "{seen:?}");
        b.screenshot("race-started").await;

        // Ann wins round 1 (space bar, or taps on the phone).
        for _ in 0..5 {
            if phone {
                b.tap_track().await;
            } else {
                b.press_space().await;
            }
        }
        b.wait("Ann's win", SECS(10), |s| page_state(s) == "finished")
            .await;
        bot_ws.drain(Duration::from_millis(50)).await;
        actix_rt::time::sleep(Duration::from_millis(600)).await; // the robot eases to the line
        let g = assert_clear_of_hud(&b, "Ann at the finish").await;
        assert_eq!(num(&g["scene"]["finishY"]), finish, "{size}: {g}");
        b.screenshot("winner-round1").await;

        // Round 2: the bot wins. Both have one win: the bot, this round's winner, first.
        b.click("#play-again").await;
        b.wait("setup again", SECS(10), |s| page_state(s) == "setup")
            .await;
        b.click("#start-countdown").await;
        // The bot's socket has round 1 queued: read through it to round 2's race.
        for step in ["finished", "setup", "playing"] {
            bot_ws.wait_game(SECS(10), |g| state(g) == step).await;
        }
        bot_ws.press_paced(5, Duration::from_millis(60)).await;
        let snap = b
            .wait("the bot's win", SECS(10), |s| {
                page_state(s) == "finished" && visible(s, "winner")
            })
            .await;
        assert_eq!(text(&snap, "winner_name"), "Bot wins!");
        assert_eq!(
            snap["leaderboard"],
            json!(["Bot \u{2014} 1 win", "Ann \u{2014} 1 win"]),
            "{size}: this round's winner first among equal wins"
        );
        // 8: the winner panel is opaque.
        let bg = b
            .js(
                "return getComputedStyle(document.getElementById('winner')).backgroundColor;",
                vec![],
            )
            .await;
        assert_eq!(
            bg, "rgb(7, 7, 13)",
            "{size}: the winner panel must be opaque"
        );
        actix_rt::time::sleep(Duration::from_millis(600)).await;
        let g = assert_clear_of_hud(&b, "the bot at the finish").await;
        assert_eq!(num(&g["scene"]["finishY"]), finish, "{size}: {g}");
        b.screenshot("winner-tie").await;
        b.close().await;
    }
}

/// Ten players with ten-character names: on the phone every name is drawn whole, inside the screen,
/// inside its own lane (under its own robot), none over another.
#[actix_rt::test]
async fn ten_long_names_are_whole_and_in_their_lanes() {
    require_browser();
    let server = Server::start(&[]);
    let api = server.api();
    for (size, viewport, phone) in SIZES {
        let b = open(size, viewport, phone, "w9").await;
        let names: Vec<String> = (0..10).map(|i| format!("WWWWWWWWW{i}")).collect();
        let first = api.create(&names[0], 25, 3).await;
        let mut last = first.clone();
        for name in &names[1..] {
            last = api.join(&first.game_id, name).await;
        }
        // The last lane is the one that was clipped: this browser is its player.
        open_race(&b, &server, &last).await;
        b.wait("ten lanes", SECS(10), |s| {
            text(s, "players") == "Players 10/10"
        })
        .await;
        actix_rt::time::sleep(Duration::from_millis(300)).await;
        let g = b.js(GEOMETRY, vec![]).await;
        let scene = &g["scene"];
        let labels = boxes(scene, "labels");
        assert_eq!(labels.len(), 10, "{g}");
        let (w, h) = (num(&g["w"]), num(&g["h"]));
        let lane_w = w / 10.0;
        for (i, l) in labels.iter().enumerate() {
            assert_eq!(l["text"], names[i].as_str(), "{size}: name {i} cut: {g}");
            let (x, y, lw, lh) = (num(&l["x"]), num(&l["y"]), num(&l["w"]), num(&l["h"]));
            assert!(
                x >= i as f64 * lane_w && x + lw <= (i + 1) as f64 * lane_w,
                "{size}: name {i} leaves its lane: {l}"
            );
            assert!(y >= 0.0 && y + lh <= h, "{size}: name {i} is clipped: {l}");
            assert!(lh >= 6.0 && lw >= 6.0, "{size}: name {i} too small: {l}");
        }
        if phone {
            assert_eq!(scene["rotated"], true, "{size}: {g}");
        }
        b.screenshot("ten-names").await;
        b.close().await;
    }
}
