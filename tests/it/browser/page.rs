//! What a page shows, read by scripts run in it (a snapshot of the DOM and the page's state, a
//! recorder of short-lived texts, the colours drawn in each lane), and the readers of a snapshot.

use serde_json::Value;

use crate::helpers::*;

/// Defines `snapshot()`: what the page shows, for the waits and assertions.
pub(super) const SNAPSHOT_FN: &str = r##"
function snapshot() {
  function el(id) {
    var e = document.getElementById(id);
    if (!e) return null;
    return { text: (e.textContent || "").trim(), hidden: !!e.hidden, value: e.value === undefined ? null : e.value };
  }
  var root = document.querySelector("[data-game-id]");
  var cur = (window.RobotRace && window.RobotRace.current) ? window.RobotRace.current() : null;
  var board = [];
  document.querySelectorAll("#leaderboard li").forEach(function (li) { board.push(li.textContent); });
  return {
    path: location.pathname,
    origin: location.origin,
    ready: document.readyState,
    title: document.title,
    body: document.body ? document.body.innerText.trim().slice(0, 600) : "",
    game_id: root ? root.getAttribute("data-game-id") : null,
    robot_id: root ? root.getAttribute("data-robot-id") : null,
    status: el("status"), players: el("players"), countdown: el("countdown"),
    connection: el("connection"), winner: el("winner"), winner_name: el("winner-name"),
    start: el("start-countdown"), waiting_start: el("waiting-start"),
    play_again: el("play-again"), waiting_again: el("waiting-again"),
    invite: el("invite"), invite_link: el("invite-link"), message: el("message"),
    error: el("error"), name: el("name"), player_count: el("player-count"),
    in_progress: el("in-progress"), not_found: el("not-found"),
    leaderboard: board,
    state: cur && cur.game ? cur.game.state : null,
    connected: cur ? cur.connected : null,
    me: cur ? cur.robotId : null,
    robots: cur && cur.game ? cur.game.robots : null,
    winner_id: cur && cur.game ? cur.game.winner : null,
    recorded: window.__e2e || null
  };
}
"##;

/// Records every text of `#status`, every visible text of `#countdown` and every show/hide of
/// `#connection`, so short-lived states (a 1 s countdown step, a quick reconnect) are not missed
/// between two polls; and any uncaught script error from then on.
pub(super) const RECORDER: &str = r##"
if (window.__e2e) return true;
var log = window.__e2e = { status: [], countdown: [], connection: [], errors: [] };
window.addEventListener("error", function (e) { log.errors.push(String(e.message)); });
window.addEventListener("unhandledrejection", function (e) { log.errors.push(String(e.reason)); });
function push(list, v) { if (list[list.length - 1] !== v) list.push(v); }
var status = document.getElementById("status");
var cd = document.getElementById("countdown");
var conn = document.getElementById("connection");
push(log.status, status.textContent.trim());
new MutationObserver(function () { push(log.status, status.textContent.trim()); })
  .observe(status, { childList: true, characterData: true, subtree: true });
new MutationObserver(function () { if (!cd.hidden) push(log.countdown, cd.textContent.trim()); })
  .observe(cd, { childList: true, characterData: true, subtree: true, attributes: true });
new MutationObserver(function () { push(log.connection, conn.hidden ? "hidden" : "shown"); })
  .observe(conn, { attributes: true, attributeFilter: ["hidden"] });
return true;
"##;

/// Counts the pixels close to each robot colour in each lane of the `#track` canvas, skipping
/// the band of the finish line (which glows magenta across every lane).
pub(super) const CANVAS_COLORS: &str = r##"
var c = document.getElementById("track");
var cur = window.RobotRace.current();
var lanes = cur && cur.game ? cur.game.robots.length : 0;
var ctx = c.getContext("2d");
var data = ctx.getImageData(0, 0, c.width, c.height).data;
var scale = c.height / (c.clientHeight || c.height);
var hud = document.querySelector(".hud");
var finishY = (window.RobotRace.scene ? window.RobotRace.scene.finishY
  : Math.max((hud ? hud.offsetHeight : 60) + 20, 48)) * scale;
var skipFrom = finishY - 24 * scale, skipTo = finishY + 10 * scale;
var out = [];
for (var i = 0; i < lanes; i++) out.push({ cyan: 0, magenta: 0, yellow: 0 });
var laneW = c.width / Math.max(1, lanes);
for (var y = 0; y < c.height; y++) {
  if (y >= skipFrom && y <= skipTo) continue;
  for (var x = 0; x < c.width; x++) {
    var k = (y * c.width + x) * 4;
    var r = data[k], g = data[k + 1], b = data[k + 2];
    var lane = Math.min(lanes - 1, Math.floor(x / laneW));
    if (lane < 0) continue;
    if (r < 70 && g > 185 && b > 185) out[lane].cyan++;
    else if (r > 185 && g < 70 && b > 185) out[lane].magenta++;
    else if (r > 185 && g > 185 && b < 70) out[lane].yellow++;
  }
}
return out;
"##;

pub(super) fn text<'a>(snap: &'a Value, id: &str) -> &'a str {
    snap[id]["text"].as_str().unwrap_or("")
}

pub(super) fn visible(snap: &Value, id: &str) -> bool {
    snap[id].is_object() && snap[id]["hidden"] == false
}

pub(super) fn page_state(snap: &Value) -> &str {
    snap["state"].as_str().unwrap_or("")
}

/// The score of robot `id` as the page knows it.
pub(super) fn page_score(snap: &Value, id: &str) -> Option<u64> {
    snap["robots"].as_array()?.iter().find(|r| r["id"] == id)?["score"].as_u64()
}

pub(super) fn api_score(game: &Value, id: &str) -> u64 {
    robot(game, id)["score"].as_u64().unwrap()
}

/// A page that shows something readable: a title and some text, never a blank page.
pub(super) fn assert_readable(snap: &Value, what: &str) {
    assert!(
        !snap["title"].as_str().unwrap_or("").is_empty()
            && snap["body"].as_str().unwrap_or("").len() > 20,
        "{what}: blank or unreadable page: {snap:#}"
    );
}
