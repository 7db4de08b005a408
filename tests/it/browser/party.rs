//! The party game in real Chromium (issue 11, "Done when", the browser half): two servers on
//! one Redis, players on both. The host closes the tab and a guest on the other server becomes
//! host and starts the race; a player reopens the invite link (and goes Back, Forward, reload)
//! and is back as the same robot; Leave in setup; a spectator page at TV size (1920×1080) on a
//! third server shows the QR code in setup, the race live and the winner, and changes nothing.
//! Screenshots in `target/e2e/party-<moment>.png`.

use std::time::{Duration, Instant};

use fantoccini::actions::{
    InputSource, MouseActions, PointerAction, TouchActions, MOUSE_BUTTON_LEFT,
};
use serde_json::{json, Value};

use super::{
    api_score, assert_winner, countdown, create_game, invite_link, join_game, on_server,
    page_score, page_state, play_again, require_browser, text, visible, wait_api, Browser,
};
use crate::helpers::*;

const DESKTOP: (u32, u32) = (1280, 800);
const PHONE: (u32, u32) = (390, 844);
const TV: (u32, u32) = (1920, 1080);

/// The shortened host hand-over time of these tests' servers.
const HANDOVER_MS: u64 = 1500;

/// A server of the cluster on `redis`, with a short hand-over and a long removal time (robots
/// away in setup stay, so the test can look at them).
fn node(redis: &Redis, name: &str) -> Server {
    let handover = HANDOVER_MS.to_string();
    let flags = ["-host-handover-ms", &handover, "-away-remove-ms", "60000"];
    cluster_node(redis, name, &flags)
}

/// A browser whose page (not window) has this size; `phone`: touch, pixel ratio 2.
async fn open(who: &str, viewport: (u32, u32), phone: bool) -> Browser {
    let b = Browser::launch_sized("party", who, phone, viewport).await;
    if !phone {
        let inner = b.js("return [innerWidth, innerHeight];", vec![]).await;
        let extra = viewport
            .1
            .saturating_sub(inner[1].as_u64().unwrap_or(0) as u32);
        if extra > 0 {
            let _ = b
                .client
                .set_window_size(viewport.0, viewport.1 + extra)
                .await;
        }
        let inner = b.js("return [innerWidth, innerHeight];", vec![]).await;
        assert_eq!(inner, json!([viewport.0, viewport.1]), "{who}: viewport");
    }
    b
}

/// Records every text the toast (`#message`) shows, and every frame the page's sockets send.
const WATCH_PAGE: &str = r##"
if (window.__party) return true;
var log = window.__party = { messages: [], sent: [] };
var m = document.getElementById("message");
function seen() {
  var t = (m.textContent || "").trim();
  if (!m.hidden && t && log.messages[log.messages.length - 1] !== t) log.messages.push(t);
}
seen();
new MutationObserver(seen).observe(m, { childList: true, characterData: true, subtree: true,
  attributes: true });
var send = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) { log.sent.push(String(data)); return send.call(this, data); };
return true;
"##;

async fn watch_page(b: &Browser) {
    b.js(WATCH_PAGE, vec![]).await;
}

async fn watched(b: &Browser) -> Value {
    b.js("return window.__party || null;", vec![]).await
}

fn messages(log: &Value) -> Vec<String> {
    log["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn robot_ids(snap: &Value) -> Vec<String> {
    snap["robots"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter_map(|r| r["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn flags(robots: &Value, key: &str) -> Vec<bool> {
    robots
        .as_array()
        .map(|rs| rs.iter().map(|r| r[key] == true).collect())
        .unwrap_or_default()
}

/// The robot this page plays (the page's attribute and the server's welcome agree).
async fn my_robot(b: &Browser) -> String {
    let snap = b.snapshot().await.unwrap();
    assert_eq!(snap["robot_id"], snap["me"], "{}: {snap:#}", b.who);
    snap["me"].as_str().unwrap().to_owned()
}

/// The Start button as the page has it: shown, enabled.
async fn start_button(b: &Browser) -> Value {
    b.js(
        "var s = document.getElementById('start-countdown'); \
         return { shown: !s.hidden && s.offsetWidth > 0, disabled: s.disabled };",
        vec![],
    )
    .await
}

/// A finger tap at the middle of the screen's lower half (on the track, under no panel).
async fn tap_low(b: &Browser) {
    let finger = TouchActions::new("finger".to_owned())
        .then(PointerAction::MoveTo {
            duration: None,
            x: 40.0,
            y: 40.0,
        })
        .then(PointerAction::Down { button: 0 })
        .then(PointerAction::Up { button: 0 });
    let _ = b.client.perform_actions(finger).await;
}

/// 1. The host closes the tab: within the hand-over time the guest on the other server is told
/// and becomes host (Start enabled with 2 connected players), the host's robot is drawn away on
/// every screen; the new host starts the race and it runs.
#[actix_rt::test]
async fn the_host_closes_the_tab_and_a_guest_on_the_other_server_takes_over() {
    require_browser();
    let redis = Redis::start();
    let (one, two) = (node(&redis, "one"), node(&redis, "two"));
    let ann = open("ann", DESKTOP, false).await;
    let mut bob = open("bob", DESKTOP, false).await;
    let mut cat = open("cat", PHONE, true).await;

    let game_id = create_game(&ann, &one, "Ann").await;
    let link = invite_link(&ann, &one, &game_id).await;
    join_game(&bob, &on_server(&link, &two), "Bob", 1).await;
    join_game(&cat, &link, "Cat", 2).await;
    let ids = [
        my_robot(&ann).await,
        my_robot(&bob).await,
        my_robot(&cat).await,
    ];
    for p in [&ann, &bob, &cat] {
        let snap = p
            .wait("three connected players", SECS(10), |s| {
                text(s, "players") == "Players 3/10"
                    && flags(&s["robots"], "connected") == [true, true, true]
            })
            .await;
        assert_eq!(robot_ids(&snap), ids, "{}: lanes in join order", p.who);
    }
    for p in [&bob, &cat] {
        watch_page(p).await;
        p.record().await;
    }

    // The host closes the tab (another tab stays open, as in a real browser).
    let game_tab = ann.client.window().await.expect("window");
    let new_tab = ann.client.new_window(true).await.expect("new tab");
    ann.client.close_window().await.expect("close the tab");
    ann.client
        .switch_to_window(new_tab.handle)
        .await
        .expect("switch tab");
    let closed = Instant::now();
    assert!(!ann.client.windows().await.unwrap().contains(&game_tab));

    // Bob (server 2, next in join order) is told, and is the host: Start appears, enabled,
    // since Bob and Cat are two connected players.
    let snap = bob
        .wait("the hand-over on the guest's page", SECS(15), |s| {
            s["robots"][1]["admin"] == true
                && s["robots"][0]["admin"] == false
                && s["robots"][0]["connected"] == false
                && visible(s, "start")
                && !visible(s, "waiting_start")
                && text(s, "status") == "Invite players"
        })
        .await;
    let took = closed.elapsed();
    assert!(
        took >= Duration::from_millis(HANDOVER_MS - 200) && took <= SECS(8),
        "the hand-over came after {took:?} (hand-over time {HANDOVER_MS} ms)"
    );
    assert_eq!(
        flags(&snap["robots"], "connected"),
        [false, true, true],
        "{snap:#}"
    );
    let cur = bob.js("return window.RobotRace.current();", vec![]).await;
    assert_eq!(cur["admin"], true, "{cur}");
    assert_eq!(
        start_button(&bob).await,
        json!({"shown": true, "disabled": false})
    );
    let log = watched(&bob).await;
    assert!(
        messages(&log).iter().any(|m| m == "You are the host now"),
        "bob: {log}"
    );
    assert!(
        visible(&snap, "invite"),
        "the new host gets the invite link"
    );
    // Cat (a phone, server 1) is told who the host is now, and still waits.
    let snap = cat
        .wait("the hand-over on the third player's page", SECS(10), |s| {
            flags(&s["robots"], "admin") == [false, true, false]
                && flags(&s["robots"], "connected") == [false, true, true]
                && visible(s, "waiting_start")
                && !visible(s, "start")
        })
        .await;
    assert_eq!(snap["me"], ids[2].as_str());
    let log = watched(&cat).await;
    assert!(
        messages(&log).iter().any(|m| m == "Bob is the host now"),
        "cat: {log}"
    );

    bob.screenshot("desktop-handover").await;
    cat.screenshot("phone-handover").await;
    assert_panel_clear(&bob, "the new host's invite panel").await;
    assert_panel_clear(&cat, "waiting for the host").await;
    // The away robot is drawn faded: no full-strength cyan in its lane, Bob's magenta and
    // Cat's yellow at full strength.
    for p in [&bob, &cat] {
        let deadline = Instant::now() + SECS(5);
        loop {
            let lanes = p.lane_colors().await;
            let faded = lanes.len() == 3
                && lanes[0]["cyan"].as_u64() < Some(20)
                && lanes[1]["magenta"].as_u64() >= Some(100)
                && lanes[2]["yellow"].as_u64() >= Some(100);
            if faded {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: Ann's lane should be faded: {lanes:?}",
                p.who
            );
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Both servers agree.
    for server in [&one, &two] {
        let game = server.api().game(&game_id).await;
        assert_eq!(
            flags(&game["robots"], "admin"),
            [false, true, false],
            "{game}"
        );
        assert_eq!(
            flags(&game["robots"], "connected"),
            [false, true, true],
            "{game}"
        );
    }

    // The new host starts the race, and it runs: presses on both servers count.
    countdown(&[&bob, &cat], false).await;
    for _ in 0..4 {
        bob.press_space().await;
    }
    for _ in 0..3 {
        cat.tap_track().await;
    }
    wait_api(&one, &game_id, "the first presses", |g| {
        api_score(g, &ids[1]) == 4 && api_score(g, &ids[2]) == 3 && api_score(g, &ids[0]) == 0
    })
    .await;
    for p in [&bob, &cat] {
        p.wait("the scores on the page", SECS(10), |s| {
            page_state(s) == "playing"
                && page_score(s, &ids[1]) == Some(4)
                && page_score(s, &ids[2]) == Some(3)
                && s["robots"][0]["connected"] == false
        })
        .await;
        let log = p.recorded().await;
        assert_eq!(log["errors"], json!([]), "{}: script errors", p.who);
    }
    actix_rt::time::sleep(Duration::from_millis(500)).await; // the robots ease up the track
    bob.screenshot("desktop-race").await;
    cat.screenshot("phone-race").await;
    ann.close().await;
    bob.close().await;
    cat.close().await;
}

/// Bob's race page, connected as his robot after `what`; the API shows Ann and one Bob.
async fn back_as(
    bob: &Browser,
    server: &Server,
    game_id: &str,
    [ann_id, bob_id]: [&str; 2],
    what: &str,
) -> Value {
    let game_path = format!("/game/{game_id}");
    let snap = bob
        .wait(&format!("Bob's race page after {what}"), SECS(15), |s| {
            s["path"] == game_path.as_str()
                && s["ready"] == "complete"
                && s["connected"] == true
                && s["me"].is_string()
        })
        .await;
    assert_eq!(snap["me"], bob_id, "{what}: another robot: {snap:#}");
    assert_eq!(snap["robot_id"], bob_id, "{what}: {snap:#}");
    assert!(
        !snap["body"]
            .as_str()
            .unwrap_or("")
            .contains("already started"),
        "{what}: {snap:#}"
    );
    assert_eq!(
        robot_ids(&snap),
        [ann_id, bob_id],
        "{what}: the page shows {snap:#}"
    );
    let game = server.api().game(game_id).await;
    let ids = game["robots"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter_map(|r| r["id"].as_str())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    assert_eq!(ids, [ann_id, bob_id], "{what}: a second robot? {game}");
    snap
}

/// The page was reached through a redirect (the join form's address, which leads a player
/// with a robot to the race page).
async fn assert_redirected(b: &Browser, what: &str) {
    let nav = b
        .js(
            "var n = performance.getEntriesByType('navigation')[0]; \
             return { type: n.type, redirects: n.redirectCount };",
            vec![],
        )
        .await;
    assert!(
        nav["redirects"].as_u64() >= Some(1),
        "{what}: not through the join form's redirect: {nav}"
    );
}

/// The setup panel covers no robot, name or tag (YOU, AWAY) drawn on the track: the boxes of
/// `RobotRace.scene` (a tag sits at most a label's height and a margin above its robot's box).
async fn assert_panel_clear(b: &Browser, moment: &str) {
    actix_rt::time::sleep(Duration::from_millis(300)).await; // the next frames are drawn
    let g = b
        .js(
            "var p = document.getElementById('setup-panel').getBoundingClientRect(); \
             var sc = window.RobotRace.scene; var tag = (sc.labelPx || 10) + 8; var hits = []; \
             sc.robots.concat(sc.labels).forEach(function (r, i) { \
               var top = i < sc.robots.length ? r.y - tag : r.y; \
               if (r.x < p.right && r.x + r.w > p.left && top < p.bottom && r.y + r.h > p.top) \
                 hits.push(r); }); \
             return { panel: { top: p.top, bottom: p.bottom, left: p.left, right: p.right }, \
               hits: hits, finishY: sc.finishY };",
            vec![],
        )
        .await;
    assert_eq!(
        g["hits"],
        json!([]),
        "{}: {moment}: the setup panel covers robots or names: {g}",
        b.who
    );
    assert!(
        num(&g["panel"]["top"]) >= num(&g["finishY"]),
        "{}: {moment}: the panel covers the finish line: {g}",
        b.who
    );
}

/// Whether the element with this id is shown (not hidden, with a size).
async fn shown(b: &Browser, id: &str) -> bool {
    b.js(
        "var e = document.getElementById(arguments[0]); \
         return !!e && !e.hidden && e.offsetWidth > 0 && e.offsetHeight > 0;",
        vec![json!(id)],
    )
    .await
        == true
}

/// A mouse click at this point of the page (CSS pixels).
async fn click_at(b: &Browser, x: f64, y: f64) {
    let mouse = MouseActions::new("mouse".to_owned())
        .then(PointerAction::MoveTo {
            duration: None,
            x,
            y,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    b.client.perform_actions(mouse).await.expect("click");
}

/// 2 and 4. A player reopens the invite link in the same browser (its cookie): back on the
/// race page as the same robot, on either server; Back, Forward and reload (in setup and
/// mid-race) never make a second robot. Then, in setup, Leave: the lobby, and the robot gone
/// from the other player's page.
#[actix_rt::test]
async fn the_invite_link_back_forward_and_reload_keep_one_robot_and_leave_removes_it() {
    require_browser();
    let redis = Redis::start();
    let (one, two) = (node(&redis, "one"), node(&redis, "two"));
    let mut ann = open("ann", DESKTOP, false).await;
    let mut bob = open("bob", DESKTOP, false).await;
    let game_id = create_game(&ann, &one, "Ann").await;
    let link = invite_link(&ann, &one, &game_id).await;
    let link_two = on_server(&link, &two);
    join_game(&bob, &link_two, "Bob", 1).await;
    let ann_id = my_robot(&ann).await;
    let bob_id = my_robot(&bob).await;

    let check = |what: &'static str| back_as(&bob, &one, &game_id, [&ann_id, &bob_id], what);

    // The invite link again, on the server he joined on and on the other one.
    bob.goto("about:blank").await;
    bob.goto(&link_two).await;
    let snap = check("the invite link (server 2)").await;
    assert_eq!(snap["origin"], two.url(""));
    bob.goto(&link).await;
    let snap = check("the invite link (server 1)").await;
    assert_eq!(snap["origin"], one.url(""));
    bob.screenshot("rejoined").await;

    // Back through the history (Bob's pages, a blank page, and the join form he filled in,
    // which now leads to the race page), Forward, reload.
    // History: /join (the form), /game, about:blank, /game (server 2), /game (server 1).
    for (step, blank) in [
        ("Back", false),
        ("Back", true),
        ("Back", false),
        ("Back to the join form", false),
        ("Forward", false),
        ("Forward", true),
        ("Forward", false),
        ("reload", false),
        ("Back", true),
        ("Back", false),
    ] {
        if step.starts_with("Back") {
            bob.client.back().await.expect("back");
        } else if step == "Forward" {
            bob.client.forward().await.expect("forward");
        } else {
            bob.client.refresh().await.expect("reload");
        }
        if blank {
            bob.wait(&format!("the blank page after {step}"), SECS(10), |s| {
                s["ready"] == "complete" && s["game_id"].is_null()
            })
            .await;
        } else {
            check(step).await;
        }
        if step == "Back to the join form" {
            assert_redirected(&bob, step).await;
        }
    }
    let game = two.api().game(&game_id).await;
    assert_eq!(game["robots"].as_array().unwrap().len(), 2, "{game}");

    // Mid-race: the invite link, Back and reload keep the racer in the race (never "This race
    // has already started").
    countdown(&[&ann, &bob], false).await;
    for _ in 0..3 {
        ann.press_space().await;
    }
    bob.goto(&link).await;
    let snap = check("the invite link mid-race").await;
    assert_redirected(&bob, "the invite link mid-race").await;
    assert_eq!(page_state(&snap), "playing");
    bob.client.back().await.expect("back mid-race");
    let snap = check("Back mid-race").await;
    assert_eq!(page_state(&snap), "playing");
    bob.client.refresh().await.expect("reload mid-race");
    let snap = check("reload mid-race").await;
    assert_eq!(page_state(&snap), "playing");
    assert_eq!(page_score(&snap, &ann_id), Some(3), "{snap:#}");
    bob.screenshot("back-mid-race").await;
    // The race goes on with Bob: he presses, it counts.
    bob.record().await;
    bob.press_space().await;
    wait_api(&two, &game_id, "Bob's press after Back", |g| {
        api_score(g, &bob_id) == 1
    })
    .await;
    while ann.snapshot().await.unwrap()["state"] == "playing" {
        ann.press_space().await;
    }
    assert_winner(&[&ann, &bob], "Ann", &["Ann", "Bob"]).await;
    play_again(&ann, &bob).await;

    // Leave, in setup: Bob lands in the lobby, and his lane goes from Ann's page.
    bob.click("#leave").await;
    bob.wait_page("/", "#start-game").await;
    let snap = ann
        .wait("Bob's robot gone from Ann's page", SECS(10), |s| {
            robot_ids(s) == [ann_id.as_str()] && text(s, "players") == "Players 1/10"
        })
        .await;
    assert_eq!(page_state(&snap), "setup");
    ann.assert_lanes_drawn(1, "after Bob left").await;
    let start = start_button(&ann).await;
    assert_eq!(
        start,
        json!({"shown": true, "disabled": true}),
        "one player"
    );
    ann.screenshot("after-leave").await;
    assert_panel_clear(&ann, "alone again, with the start hint").await;
    bob.screenshot("left").await;
    for server in [&one, &two] {
        let game = server.api().game(&game_id).await;
        assert_eq!(game["robots"].as_array().unwrap().len(), 1, "{game}");
    }
    // The invite link now shows the form again (he may join anew).
    bob.goto(&link_two).await;
    let join = bob.wait_page("/join/", "#join-game").await;
    assert_eq!(text(&join, "player_count"), "Players 1/10");
    bob.close().await;
    ann.close().await;
}

/// Where the QR code and the invite URL are on the spectator page, and what covers the QR.
const TV_SETUP: &str = r##"
function box(e) {
  if (!e) return null;
  var r = e.getBoundingClientRect();
  return { l: r.left, t: r.top, r: r.right, b: r.bottom, w: r.width, h: r.height };
}
var qr = document.getElementById("qr");
var svg = qr && qr.querySelector("svg");
var url = document.getElementById("watch-url");
var q = box(svg);
var hit = q ? document.elementFromPoint((q.l + q.r) / 2, (q.t + q.b) / 2) : null;
var panel = document.getElementById("setup-panel");
return {
  vw: innerWidth, vh: innerHeight,
  svg: q, url: box(url), panel: box(panel),
  panelScrolls: panel.scrollHeight > panel.clientHeight + 1,
  panelHidden: panel.hidden,
  onTop: !!(hit && qr.contains(hit)),
  display: svg ? getComputedStyle(svg).display : null,
  urlText: url ? url.textContent.trim() : null,
  urlFont: url ? parseFloat(getComputedStyle(url).fontSize) : 0,
  statusFont: parseFloat(getComputedStyle(document.getElementById("status")).fontSize),
  dark: svg ? svg.querySelectorAll("path, rect").length : 0
};
"##;

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// 3. The big-screen view at TV size on a third server: the QR code and the invite link in
/// setup, the race live (the page follows the API), the winner and the leaderboard; keys and
/// taps on it send nothing and change nothing.
#[actix_rt::test]
async fn a_spectator_tv_on_a_third_server_shows_the_qr_the_race_and_the_winner() {
    require_browser();
    let redis = Redis::start();
    let (one, two, three) = (
        node(&redis, "one"),
        node(&redis, "two"),
        node(&redis, "three"),
    );
    // Two players (through the API, on servers 1 and 2) race to 10.
    let ann = one.api().create("Ann", 10, 1).await;
    let bob = two.api().join(&ann.game_id, "Bob").await;
    let mut ann_ws = connect(&one, &ann).await;
    let mut bob_ws = connect(&two, &bob).await;
    let game_id = ann.game_id.clone();

    let mut tv = open("tv", TV, false).await;
    let watch_path = format!("/watch/{game_id}");
    tv.goto(&three.url(&watch_path)).await;
    tv.wait_page(&watch_path, "#qr svg").await;
    tv.record().await;
    watch_page(&tv).await;
    let snap = tv
        .wait("the spectator page live, in setup", SECS(15), |s| {
            s["connected"] == true
                && page_state(s) == "setup"
                && text(s, "players") == "Players 2/10"
        })
        .await;
    assert_eq!(snap["me"], "", "a spectator plays no robot: {snap:#}");
    let cur = tv.js("return window.RobotRace.current();", vec![]).await;
    assert_eq!(cur["spectator"], true, "{cur}");
    assert_eq!(cur["admin"], false, "{cur}");
    tv.assert_lanes_drawn(2, "TV setup").await;

    // The QR code: large, square, whole on the screen, not covered; the invite link readable.
    let g = tv.js(TV_SETUP, vec![]).await;
    let q = &g["svg"];
    assert_eq!(g["panelHidden"], false, "{g}");
    assert!(
        num(&q["w"]) >= 240.0 && num(&q["h"]) >= 240.0,
        "the QR code is too small to scan across a room: {g}"
    );
    assert!(
        (num(&q["w"]) - num(&q["h"])).abs() <= 1.0,
        "not square: {g}"
    );
    assert!(
        num(&q["l"]) >= 0.0
            && num(&q["t"]) >= 0.0
            && num(&q["r"]) <= num(&g["vw"])
            && num(&q["b"]) <= num(&g["vh"]),
        "the QR code is not whole on the screen: {g}"
    );
    assert_eq!(g["onTop"], true, "something covers the QR code: {g}");
    assert_eq!(
        g["panelScrolls"], false,
        "the invite panel needs scrolling: {g}"
    );
    assert!(num(&g["dark"]) >= 1.0, "an empty QR code: {g}");
    let invite = three.url(&format!("/join/{game_id}"));
    assert_eq!(g["urlText"], invite.as_str(), "{g}");
    let u = &g["url"];
    assert!(
        num(&u["l"]) >= 0.0 && num(&u["r"]) <= num(&g["vw"]) && num(&u["b"]) <= num(&g["vh"]),
        "the invite link is not whole on the screen: {g}"
    );
    assert!(
        num(&g["urlFont"]) >= 18.0,
        "the invite link is too small for a TV: {g}"
    );
    assert!(
        num(&g["statusFont"]) >= 28.0,
        "the status is too small for a TV: {g}"
    );
    // The QR code holds the invite link: the server made it from the same text (checked in the
    // integration tests); here, that it is drawn dark on light.
    tv.screenshot("tv-setup").await;
    assert_panel_clear(&tv, "the QR code").await;

    // The spectator presses and taps: nothing is sent, nothing changes.
    let before = one.api().game(&game_id).await;
    for _ in 0..3 {
        tv.press_space().await;
    }
    click_at(&tv, 60.0, 1000.0).await;
    tap_low(&tv).await;
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let log = watched(&tv).await;
    assert_eq!(log["sent"], json!([]), "the spectator page sent: {log}");
    let after = one.api().game(&game_id).await;
    assert_eq!(before["version"], after["version"], "{before}\n{after}");

    // The race, live on the TV: it follows the API as the players press.
    ann_ws.send(json!({"type": "start_countdown"})).await;
    tv.wait("the race on the TV", SECS(15), |s| {
        page_state(s) == "playing"
    })
    .await;
    assert!(
        !shown(&tv, "setup-panel").await,
        "the QR code stays over the race"
    );
    let (mut a, mut b) = (0u64, 0u64);
    for round in 0..3 {
        ann_ws.press_paced(1, Duration::from_millis(40)).await;
        bob_ws.press_paced(2, Duration::from_millis(40)).await;
        a += 1;
        b += 2;
        wait_api(&one, &game_id, "the presses", |g| {
            api_score(g, &ann.robot_id) == a && api_score(g, &bob.robot_id) == b
        })
        .await;
        tv.wait(&format!("the TV to follow, round {round}"), SECS(10), |s| {
            page_score(s, &ann.robot_id) == Some(a) && page_score(s, &bob.robot_id) == Some(b)
        })
        .await;
        let api = three.api().game(&game_id).await;
        let snap = tv.snapshot().await.unwrap();
        for id in [&ann.robot_id, &bob.robot_id] {
            assert_eq!(
                page_score(&snap, id),
                Some(api_score(&api, id)),
                "{snap:#}\n{api}"
            );
        }
    }
    // Keys and taps mid-race: nothing sent, no score moves.
    for _ in 0..3 {
        tv.press_space().await;
    }
    click_at(&tv, 960.0, 900.0).await;
    tap_low(&tv).await;
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let log = watched(&tv).await;
    assert_eq!(log["sent"], json!([]), "the spectator page sent: {log}");
    let game = one.api().game(&game_id).await;
    assert_eq!(
        (
            api_score(&game, &ann.robot_id),
            api_score(&game, &bob.robot_id)
        ),
        (a, b)
    );
    actix_rt::time::sleep(Duration::from_millis(400)).await; // the robots ease up the track
    tv.assert_lanes_drawn(2, "TV mid-race").await;
    tv.screenshot("tv-race").await;

    // Bob wins: the winner and the leaderboard on the TV.
    bob_ws
        .press_paced(10 - b as usize, Duration::from_millis(40))
        .await;
    tv.wait("the winner on the TV", SECS(10), |s| {
        page_state(s) == "finished" && visible(s, "winner") && text(s, "winner_name") == "Bob wins!"
    })
    .await;
    assert_winner(&[&tv], "Bob", &["Bob", "Ann"]).await;
    assert!(!shown(&tv, "play-again").await);
    assert!(!shown(&tv, "setup-panel").await);
    assert!(!shown(&tv, "leave-again").await);
    let panel = tv
        .js(
            "var w = document.getElementById('winner'); var r = w.getBoundingClientRect(); \
             return { w: r.width, h: r.height, inView: r.top >= 0 && r.bottom <= innerHeight, \
               font: parseFloat(getComputedStyle(document.getElementById('winner-name')).fontSize), \
               board: parseFloat(getComputedStyle(document.getElementById('leaderboard')).fontSize) };",
            vec![],
        )
        .await;
    assert_eq!(panel["inView"], true, "{panel}");
    assert!(
        num(&panel["font"]) >= 36.0 && num(&panel["board"]) >= 20.0,
        "the winner panel is too small for a TV: {panel}"
    );
    actix_rt::time::sleep(Duration::from_millis(600)).await;
    tv.screenshot("tv-winner").await;
    let log = watched(&tv).await;
    assert_eq!(log["sent"], json!([]), "the spectator page sent: {log}");
    let _ = ann_ws.drain(Duration::from_millis(10)).await;
    tv.close().await;
}
