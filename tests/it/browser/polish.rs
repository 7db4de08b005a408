//! What a new player noticed (issue 12, polish), each checked in real Chromium at a desktop
//! size (1280×800) and a phone size (390×844, touch), with a screenshot of the fix in
//! `target/e2e/polish-<size>-<moment>.png` and a DOM or pixel check where one can tell.

use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use serde_json::{json, Value};

use super::{page_state, require_browser, text, visible, Browser};
use crate::helpers::*;

/// The two screens every check runs on: (name, viewport, phone with touch).
const SIZES: [(&str, (u32, u32), bool); 2] =
    [("desktop", (1280, 800), false), ("phone", (390, 844), true)];

async fn open(size: &str, viewport: (u32, u32), phone: bool, who: &str) -> Browser {
    let b = Browser::launch_sized(&format!("polish-{size}"), who, phone, viewport).await;
    let inner = b.js("return [innerWidth, innerHeight];", vec![]).await;
    if !phone && inner[1] != viewport.1 {
        // The window's size includes what the browser draws around the page: grow it so the
        // page itself gets the size asked for.
        let extra = viewport
            .1
            .saturating_sub(inner[1].as_u64().unwrap_or(0) as u32);
        let _ = b
            .client
            .set_window_size(viewport.0, viewport.1 + extra)
            .await;
    }
    if !phone {
        // (A phone's blank page is laid out 980 wide: pages with a viewport tag get its width.)
        let inner = b.js("return [innerWidth, innerHeight];", vec![]).await;
        assert_eq!(inner, json!([viewport.0, viewport.1]), "{size}: viewport");
    }
    b
}

/// Opens the race page of `joined` with its token in the URL (no cookie in this fresh
/// browser) and waits until its socket is live as that robot.
async fn open_race(b: &Browser, server: &Server, joined: &Joined) {
    b.goto(&server.url(&format!("/game/{}?token={}", joined.game_id, joined.token)))
        .await;
    b.wait_page("/game/", "#track").await;
    let robot_id = joined.robot_id.clone();
    b.wait(
        "the race page's socket (token from the URL)",
        SECS(15),
        |s| s["connected"] == true && s["me"] == robot_id.as_str(),
    )
    .await;
}

/// Where the race page drew things (`RobotRace.scene`, CSS pixels), the HUD's and the toast's
/// boxes, and the canvas size.
const GEOMETRY: &str = r##"
var sc = window.RobotRace && window.RobotRace.scene;
function box(id) {
  var e = document.getElementById(id) || document.querySelector(id);
  if (!e || e.hidden) return null;
  var r = e.getBoundingClientRect();
  return { x: r.left, y: r.top, w: r.width, h: r.height };
}
var c = document.getElementById("track");
return { scene: sc || null, hud: box(".hud"), toast: box("message"),
  w: c.clientWidth, h: c.clientHeight, state: window.RobotRace.current().game.state };
"##;

/// Strong robot colours (cyan, magenta, yellow; not the faint glow or grid) in a rectangle of
/// the `#track` canvas given in CSS pixels: arguments[0..4] = x, y, w, h.
const STRONG_PIXELS: &str = r##"
var c = document.getElementById("track");
var k = c.width / c.clientWidth;
var x = Math.max(0, Math.floor(arguments[0] * k)), y = Math.max(0, Math.floor(arguments[1] * k));
var w = Math.min(c.width - x, Math.ceil(arguments[2] * k)), h = Math.min(c.height - y, Math.ceil(arguments[3] * k));
if (w <= 0 || h <= 0) return 0;
var d = c.getContext("2d").getImageData(x, y, w, h).data;
var n = 0;
for (var i = 0; i < d.length; i += 4) {
  var r = d[i], g = d[i + 1], b = d[i + 2];
  if ((r < 70 && g > 185 && b > 185) || (r > 185 && g < 70 && b > 185) || (r > 185 && g > 185 && b < 70)) n++;
}
return n;
"##;

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn boxes<'a>(scene: &'a Value, what: &str) -> &'a Vec<Value> {
    scene[what]
        .as_array()
        .unwrap_or_else(|| panic!("RobotRace.scene has no {what}: {scene}"))
}

/// Every robot and every name is drawn below the HUD, in the canvas pixels too.
async fn assert_clear_of_hud(b: &Browser, moment: &str) -> Value {
    let g = b.js(GEOMETRY, vec![]).await;
    let hud = &g["hud"];
    let hud_bottom = num(&hud["y"]) + num(&hud["h"]);
    assert!(hud_bottom > 20.0, "{moment}: no HUD? {g}");
    let scene = &g["scene"];
    assert!(
        (num(&scene["hudBottom"]) - hud_bottom).abs() <= 1.0,
        "{moment}: {g}"
    );
    for what in ["robots", "labels"] {
        for r in boxes(scene, what) {
            assert!(
                num(&r["y"]) >= hud_bottom,
                "{moment}: a robot or name reaches into the HUD (bottom {hud_bottom}): {r}\n{g}"
            );
        }
    }
    let strong = b
        .js(
            STRONG_PIXELS,
            vec![json!(0), json!(0), g["w"].clone(), json!(hud_bottom)],
        )
        .await;
    assert_eq!(
        strong, 0,
        "{moment}: robot-coloured pixels drawn under the HUD: {g}"
    );
    g
}

/// Items 1, 2, 4, 8, 9: a game created through the API and opened with `?token=` (no cookie);
/// "Start countdown" disabled with a hint until a second robot is connected; the game id
/// always in view and the Copy button working; the finish line at the same height in every
/// state, robots and names clear of the HUD, the winner at the line; the winner panel opaque,
/// and a tie listing this round's winner first.
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

/// Items 3 and 7: a game left idle ends; the toast that says so covers no robot and no name
/// (the players are at the start, at the bottom), then the lobby explains what happened.
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

/// Item 6: ten players with ten-character names: on the phone every name is drawn whole,
/// inside the screen, inside its own lane (under its own robot), none over another.
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

/// Items 5 and 10: the join page shows the lobby's animation and who is in (escaped); a full
/// game and a game in progress show the form disabled with the reason and a way out.
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

/// Item 11: `/_stats` in a browser is a page with the number large, and it follows new games
/// by itself (polling the JSON).
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
