//! The finish of the pages, each checked in real Chromium at a desktop size (1280×800) and a
//! phone size (390×844, touch), with a screenshot of each moment in
//! `target/e2e/polish-<size>-<moment>.png` and a DOM or pixel check where one can tell: the race
//! page ([`race_page`]) and the lobby, join and stats pages ([`pages`]).
//!
//! Here: the two sizes, opening a browser and a race page at a size, and the geometry checks.

mod pages;
mod race_page;

use serde_json::{json, Value};

use crate::browser::client::Browser;
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
