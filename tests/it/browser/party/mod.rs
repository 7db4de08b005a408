//! The party game in real Chromium: two servers on one Redis, players on both. The host closes
//! the tab and a guest on the other server becomes host and starts the race ([`host`]); a
//! player reopens the invite link (and goes Back, Forward, reload) and is back as the same
//! robot, and Leave in setup removes it ([`rejoin`]); a spectator page at TV size (1920×1080)
//! on a third server shows the QR code in setup, the race live and the winner, and changes
//! nothing ([`spectator`]); a TV refused by a full server says the room is full and comes in
//! once a seat frees up ([`full_room`]). Screenshots in `target/e2e/party-<moment>.png`.
//!
//! Here: what the three share (the servers, browsers at a size, the page watchers and readers).

mod full_room;
mod host;
mod rejoin;
mod spectator;

use std::time::Duration;

use fantoccini::actions::{
    InputSource, MouseActions, PointerAction, TouchActions, MOUSE_BUTTON_LEFT,
};
use serde_json::{json, Value};

use crate::browser::client::Browser;
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

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}
