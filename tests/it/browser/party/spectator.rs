//! The spectator page at TV size on a third server: the QR code and the invite link in setup,
//! the race live, the winner; keys and taps on it change nothing.

use std::time::Duration;

use serde_json::json;

use super::{
    assert_panel_clear, click_at, node, num, open, shown, tap_low, watch_page, watched, TV,
};
use crate::browser::driver::require_browser;
use crate::browser::flows::{assert_winner, wait_api};
use crate::browser::page::{api_score, page_score, page_state, text, visible};
use crate::helpers::*;

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

/// The big-screen view at TV size on a third server: the QR code and the invite link in setup,
/// the race live (the page follows the API), the winner and the leaderboard; keys and taps on it
/// send nothing and change nothing.
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
