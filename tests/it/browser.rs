//! End-to-end tests in a real browser: headless Chromium driven over WebDriver (`chromedriver`,
//! started by the test on a free loopback port), against the real `robot-race` binary and a
//! real `redis-server`. Each browser is its own Chromium with a fresh profile (its own cookies).
//! Key presses and taps are real input events (WebDriver actions); the canvas is read back
//! pixel by pixel to check that the lanes are drawn. Screenshots of key moments are saved under
//! `target/e2e/<scenario>-<moment>.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver` packages; without them these tests fail
//! (they never skip).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions, PointerAction, TouchActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::helpers::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "chromedriver";
const INSTALL: &str = "apt-get install -y chromium chromium-driver";

/// The default winning score (games created through the lobby form use it).
const WIN: u64 = 25;

/// Fails (never skips) when the browser or its driver is missing.
fn require_browser() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the browser tests need Debian's Chromium. Install it with \
         `{INSTALL}` (or run scripts/test, which does)."
    );
    let driver = Command::new(CHROMEDRIVER)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        driver.is_ok_and(|s| s.success()),
        "`{CHROMEDRIVER}` is missing: the browser tests need it. Install it with `{INSTALL}` \
         (or run scripts/test, which does)."
    );
}

fn e2e_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("e2e");
    std::fs::create_dir_all(&dir).expect("create target/e2e");
    dir
}

/// A `chromedriver` process in its own process group, with the Chromium it launches: the whole
/// group is killed on drop, so no browser outlives its test.
struct Driver {
    child: Child,
    port: u16,
    profile: PathBuf,
    log: PathBuf,
}

impl Driver {
    fn start(name: &str) -> Driver {
        require_browser();
        let port = free_port();
        let profile = temp_dir(&format!("chrome-{name}-{port}"));
        let log = profile.with_extension("chromedriver.log");
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER} ({e}); `{INSTALL}`"));
        let mut driver = Driver {
            child,
            port,
            profile,
            log,
        };
        let deadline = Instant::now() + SECS(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = driver.child.try_wait() {
                panic!(
                    "{CHROMEDRIVER} exited at start ({status}):\n{}",
                    driver.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{CHROMEDRIVER} did not listen within 10 s:\n{}",
                driver.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        driver
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The last lines of chromedriver's log (for failure messages).
    fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group id is chromedriver's pid (process_group(0)); Chromium inherits it. (Its
        // crashpad handlers run in their own sessions and exit by themselves once it is gone.)
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// How often a wait looks at the page again. Short-lived states (a countdown step, a quick
/// reconnect) are caught by the in-page recorder, not by polling fast.
const POLL: Duration = Duration::from_millis(100);

/// Phone-sized viewport with touch (Chrome's mobile emulation).
const PHONE: (u32, u32) = (375, 667);

/// One browser: its own chromedriver, Chromium and profile.
struct Browser {
    client: Client,
    /// Scenario name, for screenshot files.
    scenario: String,
    /// Who this is in messages ("ann", "bob").
    who: String,
    /// When this browser last pressed (presses are paced under the server's rate limit).
    last_press: Instant,
    /// When it was launched (for the timeline printed with a failure).
    started: Instant,
    driver: Driver,
}

impl Browser {
    async fn desktop(scenario: &str, who: &str) -> Browser {
        Self::launch(scenario, who, false).await
    }

    async fn phone(scenario: &str, who: &str) -> Browser {
        Self::launch(scenario, who, true).await
    }

    async fn launch(scenario: &str, who: &str, phone: bool) -> Browser {
        let size = if phone { PHONE } else { (1024, 768) };
        Self::launch_sized(scenario, who, phone, size).await
    }

    /// A browser with this viewport (CSS pixels); `phone`: touch and a pixel ratio of 2.
    async fn launch_sized(scenario: &str, who: &str, phone: bool, size: (u32, u32)) -> Browser {
        let started = Instant::now();
        let driver = Driver::start(&format!("{scenario}-{who}"));
        let mut args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-extensions".to_owned(),
            "--disable-client-side-phishing-detection".to_owned(),
            "--disable-domain-reliability".to_owned(),
            "--no-pings".to_owned(),
            "--password-store=basic".to_owned(),
            // Traffic stays on loopback: Chromium still tries Google hosts (accounts, update,
            // optimization hints) despite the flags above; no name resolves, so no DNS query
            // leaves the machine. The pages are on 127.0.0.1, which needs no resolving.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1".to_owned(),
            // Two browsers race side by side: neither may be throttled as a background page.
            "--disable-background-timer-throttling".to_owned(),
            "--disable-renderer-backgrounding".to_owned(),
            "--disable-backgrounding-occluded-windows".to_owned(),
            format!("--user-data-dir={}", driver.profile.display()),
        ];
        let mut options = json!({ "binary": CHROMIUM });
        args.push(format!("--window-size={},{}", size.0, size.1));
        if phone {
            options["mobileEmulation"] = json!({
                "deviceMetrics": {"width": size.0, "height": size.1, "pixelRatio": 2.0, "touch": true},
            });
        }
        options["args"] = json!(args);
        let caps = json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": options,
        });
        let caps = match caps {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let deadline = Instant::now() + SECS(30);
        let client = loop {
            let attempt = ClientBuilder::new(connector.clone())
                .capabilities(caps.clone())
                .connect(&driver.url())
                .await;
            match attempt {
                Ok(client) => break client,
                Err(e) if Instant::now() >= deadline => panic!(
                    "cannot start Chromium through chromedriver: {e}\n{}",
                    driver.log()
                ),
                Err(_) => actix_rt::time::sleep(Duration::from_millis(200)).await,
            }
        };
        Browser {
            client,
            scenario: scenario.to_owned(),
            who: who.to_owned(),
            last_press: Instant::now(),
            started,
            driver,
        }
        .log("browser up")
    }

    /// A line of the test's timeline (shown by the test harness when the test fails).
    fn log(self, what: &str) -> Self {
        self.note(what);
        self
    }

    fn note(&self, what: &str) {
        eprintln!(
            "[{} {} +{:.1}s] {what}",
            self.scenario,
            self.who,
            self.started.elapsed().as_secs_f64()
        );
    }

    /// Ends the WebDriver session (Chromium quits); the driver's group is killed on drop.
    async fn close(self) {
        self.note("closing");
        let Browser { client, driver, .. } = self;
        let _ = actix_rt::time::timeout(SECS(10), client.close()).await;
        drop(driver);
    }

    async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("{}: goto {url}: {e}", self.who));
    }

    /// Runs a script (a function body; `arguments[i]` are `args`).
    async fn try_js(&self, script: &str, args: Vec<Value>) -> Result<Value, String> {
        self.client
            .execute(script, args)
            .await
            .map_err(|e| e.to_string())
    }

    async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.try_js(script, args)
            .await
            .unwrap_or_else(|e| panic!("{}: script failed: {e}\n{script}", self.who))
    }

    /// Saves `target/e2e/<scenario>-<moment>.png`.
    async fn screenshot(&self, moment: &str) -> PathBuf {
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("{}: screenshot: {e}", self.who));
        assert!(png.starts_with(b"\x89PNG"), "a screenshot is not a PNG");
        let path = e2e_dir().join(format!("{}-{moment}.png", self.scenario));
        std::fs::write(&path, png).expect("write screenshot");
        self.note(&format!("screenshot {}", path.display()));
        path
    }

    /// What the player sees, as JSON (see `SNAPSHOT`).
    async fn snapshot(&self) -> Result<Value, String> {
        self.try_js(&format!("{SNAPSHOT_FN} return snapshot();"), vec![])
            .await
    }

    /// Polls the page until `pred` holds (bounded); on timeout saves a screenshot and panics
    /// with what the page showed last.
    async fn wait(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        self.note(&format!("waiting for {what}"));
        let deadline = Instant::now() + timeout;
        let mut last: Value;
        loop {
            match self.snapshot().await {
                Ok(snap) if pred(&snap) => return snap,
                Ok(snap) => last = snap,
                // e.g. the page is navigating: try again
                Err(e) => last = json!({ "script_error": e }),
            }
            if Instant::now() >= deadline {
                let shot = self.screenshot(&format!("FAILED-{}", self.who)).await;
                panic!(
                    "{}: timed out after {timeout:?} waiting for {what}.\nLast seen: {last:#}\n\
                     Screenshot: {}",
                    self.who,
                    shot.display()
                );
            }
            actix_rt::time::sleep(POLL).await;
        }
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{}: no element {css} on the page: {e}", self.who))
    }

    async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("{}: click {css}: {e}", self.who));
    }

    /// Types into a field with real key events (after clearing it).
    async fn type_into(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("clear field");
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("{}: type into {css}: {e}", self.who));
    }

    /// Waits until the page is `path_prefix…` and loaded.
    async fn wait_page(&self, path_prefix: &str, selector: &str) -> Value {
        let (prefix, sel) = (path_prefix.to_owned(), selector.to_owned());
        let check = format!(
            "{SNAPSHOT_FN} var s = snapshot(); s.found = !!document.querySelector({sel:?}); return s;"
        );
        let deadline = Instant::now() + SECS(15);
        let mut last: Value;
        loop {
            match self.try_js(&check, vec![]).await {
                Ok(s)
                    if s["path"].as_str().unwrap_or("").starts_with(&prefix)
                        && s["ready"] == "complete"
                        && s["found"] == true =>
                {
                    return s
                }
                Ok(s) => last = s,
                Err(e) => last = json!({ "script_error": e }),
            }
            if Instant::now() >= deadline {
                let shot = self.screenshot(&format!("FAILED-{}", self.who)).await;
                panic!(
                    "{}: page {prefix}… with {sel} did not load in 15 s. Last seen: {last:#}\n\
                     Screenshot: {}",
                    self.who,
                    shot.display()
                );
            }
            actix_rt::time::sleep(POLL).await;
        }
    }

    /// Starts recording every change of `#status`, `#countdown` and `#connection` in the page.
    async fn record(&self) {
        self.js(RECORDER, vec![]).await;
    }

    async fn recorded(&self) -> Value {
        self.js("return window.__e2e || null;", vec![]).await
    }

    /// Keeps presses of one player under the server's limit (30 a second).
    async fn pace(&mut self) {
        let gap = Duration::from_millis(60);
        let since = self.last_press.elapsed();
        if since < gap {
            actix_rt::time::sleep(gap - since).await;
        }
        self.last_press = Instant::now();
    }

    /// One press of the space bar: real key down and key up events on the page.
    async fn press_space(&mut self) {
        self.pace().await;
        let keys = KeyActions::new("keyboard".to_owned())
            .then(KeyAction::Down {
                value: Key::Space.into(),
            })
            .then(KeyAction::Up {
                value: Key::Space.into(),
            });
        self.client
            .perform_actions(keys)
            .await
            .unwrap_or_else(|e| panic!("{}: press space: {e}", self.who));
    }

    /// One tap of a finger on the race track (a touch pointer: touchstart, touchend), below
    /// the middle of the screen, where no panel covers it during the race.
    async fn tap_track(&mut self) {
        self.pace().await;
        self.tap("#track", 120.0).await;
    }

    /// A finger tap on an element (`dy` CSS pixels below its centre).
    async fn tap(&self, css: &str, dy: f64) {
        let target = self.find(css).await;
        let finger = TouchActions::new("finger".to_owned())
            .then(PointerAction::MoveToElement {
                element: target,
                duration: None,
                x: 0.0,
                y: dy,
            })
            .then(PointerAction::Down { button: 0 })
            .then(PointerAction::Up { button: 0 });
        self.client
            .perform_actions(finger)
            .await
            .unwrap_or_else(|e| panic!("{}: tap {css}: {e}", self.who));
    }

    /// Robot colours counted in each lane of the `#track` canvas (read back with getImageData).
    async fn lane_colors(&self) -> Vec<Value> {
        let v = self.js(CANVAS_COLORS, vec![]).await;
        v.as_array()
            .unwrap_or_else(|| panic!("canvas read: {v}"))
            .clone()
    }

    /// Asserts that lane i shows the robot colour of lane i (cyan, magenta, yellow…), in the
    /// canvas pixels, not just in the DOM. The page redraws on the next animation frame after
    /// an update, so this polls (bounded) until the drawing has caught up.
    async fn assert_lanes_drawn(&self, lanes: usize, moment: &str) {
        let deadline = Instant::now() + SECS(5);
        loop {
            let counts = self.lane_colors().await;
            let drawn = counts.len() == lanes
                && counts.iter().enumerate().all(|(i, lane)| {
                    let colour = ["cyan", "magenta", "yellow"][i % 3];
                    lane[colour].as_u64().unwrap_or(0) >= 100
                });
            if drawn {
                return;
            }
            if Instant::now() >= deadline {
                let shot = self.screenshot(&format!("FAILED-{}", self.who)).await;
                panic!(
                    "{}: at {moment}, lane i should show robot colour i (cyan, magenta, \
                     yellow) for {lanes} lanes; pixels counted per lane: {counts:?}\n\
                     Screenshot: {}",
                    self.who,
                    shot.display()
                );
            }
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Defines `snapshot()`: what the page shows, for the waits and assertions.
const SNAPSHOT_FN: &str = r##"
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
const RECORDER: &str = r##"
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
const CANVAS_COLORS: &str = r##"
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

// ---------------------------------------------------------------------------------------------
// Reading snapshots

fn text<'a>(snap: &'a Value, id: &str) -> &'a str {
    snap[id]["text"].as_str().unwrap_or("")
}

fn visible(snap: &Value, id: &str) -> bool {
    snap[id].is_object() && snap[id]["hidden"] == false
}

fn page_state(snap: &Value) -> &str {
    snap["state"].as_str().unwrap_or("")
}

/// The score of robot `id` as the page knows it.
fn page_score(snap: &Value, id: &str) -> Option<u64> {
    snap["robots"].as_array()?.iter().find(|r| r["id"] == id)?["score"].as_u64()
}

fn api_score(game: &Value, id: &str) -> u64 {
    robot(game, id)["score"].as_u64().unwrap()
}

/// A page that shows something readable: a title and some text, never a blank page.
fn assert_readable(snap: &Value, what: &str) {
    assert!(
        !snap["title"].as_str().unwrap_or("").is_empty()
            && snap["body"].as_str().unwrap_or("").len() > 20,
        "{what}: blank or unreadable page: {snap:#}"
    );
}

// ---------------------------------------------------------------------------------------------
// Flows shared by the scenarios

/// Opens the lobby, types `name`, clicks "Start new game"; returns the new game's id once the
/// race page is connected.
async fn create_game(b: &Browser, server: &Server, name: &str) -> String {
    b.goto(&server.url("/")).await;
    let lobby = b.wait_page("/", "#start-game").await;
    assert_eq!(lobby["path"], "/");
    b.screenshot("lobby").await;
    b.type_into("#name", name).await;
    b.click("#start-game").await;
    let page = b.wait_page("/game/", "#track").await;
    let game_id = page["game_id"].as_str().unwrap().to_owned();
    assert_eq!(page["path"], format!("/game/{game_id}"));
    b.wait("the admin's race page to connect", SECS(15), |s| {
        s["connected"] == true && text(s, "status") == "Invite players" && visible(s, "start")
    })
    .await;
    game_id
}

/// Opens an invite link, types `name`, clicks "Join"; waits for the connected race page.
async fn join_game(b: &Browser, invite: &str, name: &str, players_before: usize) {
    b.goto(invite).await;
    let join = b.wait_page("/join/", "#join-game").await;
    assert_eq!(
        text(&join, "player_count"),
        format!("Players {players_before}/10"),
        "join page: {join:#}"
    );
    b.type_into("#name", name).await;
    b.click("#join-game").await;
    b.wait_page("/game/", "#track").await;
    b.wait("the guest's race page to connect", SECS(15), |s| {
        s["connected"] == true && text(s, "status") == "Get ready" && visible(s, "waiting_start")
    })
    .await;
}

/// The same link on another server of the cluster.
fn on_server(link: &str, server: &Server) -> String {
    let path = &link[link.find("/join/").expect("an invite link")..];
    server.url(path)
}

/// The invite link the admin's page shows, checked against the address it was served from.
async fn invite_link(b: &Browser, server: &Server, game_id: &str) -> String {
    let snap = b
        .wait("the invite link", SECS(10), |s| visible(s, "invite"))
        .await;
    let link = snap["invite_link"]["value"].as_str().unwrap().to_owned();
    assert_eq!(
        link,
        format!("http://127.0.0.1:{}/join/{game_id}", server.port())
    );
    link
}

/// The admin (`pages[0]`) starts the race (a click, or a finger tap on a phone); every page must
/// show a falling digit countdown and then the race. Saves the countdown screenshot. Returns
/// when every page is `playing`.
async fn countdown(pages: &[&Browser], tap: bool) {
    let admin = pages[0];
    for p in pages {
        p.record().await;
    }
    if tap {
        admin.tap("#start-countdown", 0.0).await;
    } else {
        admin.click("#start-countdown").await;
    }
    let deadline = Instant::now() + SECS(15);
    let mut shot = false;
    loop {
        let mut snaps = Vec::new();
        for p in pages {
            snaps.push(p.snapshot().await.unwrap_or(Value::Null));
        }
        let sa = &snaps[0];
        if !shot && visible(sa, "countdown") && text(sa, "countdown").parse::<u32>().is_ok() {
            admin.screenshot("countdown").await;
            shot = true;
        }
        if snaps.iter().all(|s| page_state(s) == "playing") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the race did not start within 15 s; the pages show: {snaps:#?}"
        );
        actix_rt::time::sleep(POLL).await;
    }
    for p in pages {
        let log = p.recorded().await;
        let status: Vec<&str> = log["status"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let digits: Vec<u32> = status.iter().filter_map(|t| t.parse().ok()).collect();
        assert!(
            !digits.is_empty() && digits.windows(2).all(|w| w[0] > w[1]),
            "{}: #status should count down (3, 2, 1); it showed {status:?}",
            p.who
        );
        let first_digit = status
            .iter()
            .position(|t| t.parse::<u32>().is_ok())
            .unwrap();
        assert!(
            status[first_digit..]
                .iter()
                .any(|t| *t == "Go!" || *t == "Race!"),
            "{}: #status never showed Go!/Race! after the countdown: {status:?}",
            p.who
        );
        let overlay = log["countdown"].as_array().unwrap();
        assert!(
            overlay
                .iter()
                .any(|t| t.as_str().is_some_and(|t| t.parse::<u32>().is_ok())),
            "{}: the #countdown overlay never showed a digit: {overlay:?}",
            p.who
        );
    }
    assert!(shot, "no screenshot of the countdown was taken");
}

/// Both players race with the space bar: `winner` presses to the top, `loser` presses once for
/// every three of the winner's. Returns the loser's presses. Saves race and winner screenshots.
async fn space_race(winner: &mut Browser, loser: &mut Browser) -> u64 {
    for p in [&*winner, &*loser] {
        // the keys go to the focused element: the page itself, not a field or a button
        let focus = p
            .js("return document.activeElement === document.body;", vec![])
            .await;
        assert_eq!(
            focus, true,
            "{}: something other than the page has the focus",
            p.who
        );
    }
    let mut loser_presses = 0;
    for i in 0..WIN {
        // the loser first: its presses all land before the winner's last one ends the race
        if i % 3 == 0 {
            loser.press_space().await;
            loser_presses += 1;
        }
        winner.press_space().await;
        if i == WIN / 2 {
            // the robots have left the start: trails and robots mid-track
            for p in [&*winner, &*loser] {
                p.wait("scores mid-race", SECS(10), |s| {
                    page_state(s) == "playing" && s["robots"][0]["score"].as_u64() > Some(0)
                })
                .await;
            }
            winner.screenshot("race").await;
            winner.assert_lanes_drawn(2, "mid-race").await;
            loser.assert_lanes_drawn(2, "mid-race").await;
        }
    }
    loser_presses
}

/// Both pages show "<winner> wins!", the winner panel and a leaderboard listing every name.
async fn assert_winner(pages: &[&Browser], winner: &str, names: &[&str]) {
    let line = format!("{winner} wins!");
    for p in pages {
        let snap = p
            .wait(&format!("\"{line}\""), SECS(15), |s| {
                page_state(s) == "finished"
                    && text(s, "status") == line
                    && visible(s, "winner")
                    && text(s, "winner_name") == line
            })
            .await;
        let board = snap["leaderboard"].as_array().unwrap();
        assert_eq!(board.len(), names.len(), "leaderboard: {board:?}");
        assert!(
            board[0].as_str().unwrap().starts_with(winner),
            "the winner should lead the leaderboard: {board:?}"
        );
        for name in names {
            assert!(
                board.iter().any(|e| e.as_str().unwrap().starts_with(name)),
                "{name} missing from the leaderboard: {board:?}"
            );
        }
        p.assert_lanes_drawn(names.len(), "the finish").await;
        assert_eq!(
            snap["recorded"]["errors"],
            json!([]),
            "{}: script errors on the race page",
            p.who
        );
    }
}

/// The admin clicks "Play again": both pages are back to setup.
async fn play_again(admin: &Browser, guest: &Browser) {
    admin
        .wait("the Play again button", SECS(5), |s| {
            visible(s, "play_again")
        })
        .await;
    let guest_view = guest.snapshot().await.unwrap();
    assert!(
        visible(&guest_view, "waiting_again") && !visible(&guest_view, "play_again"),
        "the guest must wait for the host: {guest_view:#}"
    );
    admin.click("#play-again").await;
    admin
        .wait("the admin back to setup", SECS(10), |s| {
            page_state(s) == "setup"
                && text(s, "status") == "Invite players"
                && visible(s, "start")
                && !visible(s, "winner")
        })
        .await;
    guest
        .wait("the guest back to setup", SECS(10), |s| {
            page_state(s) == "setup"
                && text(s, "status") == "Get ready"
                && visible(s, "waiting_start")
                && !visible(s, "winner")
        })
        .await;
    admin.screenshot("again").await;
}

/// The whole two-player round in the browser: the creator on `home`, the guest on `away`
/// (which may be the same server). `guest_wins` picks who presses to the top.
async fn two_player_round(scenario: &str, home: &Server, away: &Server, guest_wins: bool) {
    let mut ann = Browser::desktop(scenario, "ann").await;
    let mut bob = Browser::desktop(scenario, "bob").await;
    let game_id = create_game(&ann, home, "Ann").await;
    let link = invite_link(&ann, home, &game_id).await;
    join_game(&bob, &on_server(&link, away), "Bob", 1).await;
    assert_eq!(bob.snapshot().await.unwrap()["origin"], away.url(""));
    for p in [&ann, &bob] {
        p.wait("both lanes", SECS(10), |s| {
            text(s, "players") == "Players 2/10"
        })
        .await;
        p.assert_lanes_drawn(2, "setup").await;
    }
    ann.screenshot("setup").await;
    let ann_id = ann.snapshot().await.unwrap()["robot_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob_id = bob.snapshot().await.unwrap()["robot_id"]
        .as_str()
        .unwrap()
        .to_owned();

    countdown(&[&ann, &bob], false).await;
    let (loser_presses, winner_id, loser_id, winner_name) = if guest_wins {
        (
            space_race(&mut bob, &mut ann).await,
            &bob_id,
            &ann_id,
            "Bob",
        )
    } else {
        (
            space_race(&mut ann, &mut bob).await,
            &ann_id,
            &bob_id,
            "Ann",
        )
    };
    assert_winner(&[&ann, &bob], winner_name, &["Ann", "Bob"]).await;
    ann.screenshot("winner").await;
    bob.screenshot("winner-guest").await;

    // Both servers agree with what the pages show.
    for server in [home, away] {
        let game = server.api().game(&game_id).await;
        assert_eq!(game["state"], "finished", "{game}");
        assert_eq!(game["winner"], winner_id.as_str());
        assert_eq!(api_score(&game, winner_id), WIN);
        assert_eq!(api_score(&game, loser_id), loser_presses, "{game}");
    }
    play_again(&ann, &bob).await;
    let game = home.api().game(&game_id).await;
    assert_eq!(game["state"], "setup");
    assert!(game["robots"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["score"] == 0));
    ann.close().await;
    bob.close().await;
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// One server: create, invite, join, countdown, a space-bar race to 25, winner, play again.
#[actix_rt::test]
async fn browser_single_server_race() {
    require_browser();
    let server = Server::start(&[]);
    two_player_round("single", &server, &server, false).await;
}

/// Two servers and one Redis: the creator on server 1, the guest on server 2 through the
/// invite link rewritten to server 2's port.
#[actix_rt::test]
async fn browser_cluster_race() {
    require_browser();
    let redis = Redis::start();
    let one = Server::start(&["-redis", &redis.addr()]);
    let two = Server::start(&["-redis", &redis.addr()]);
    two_player_round("cluster", &one, &two, true).await;
}

/// Polls the JSON API (bounded) until the game satisfies `pred`.
async fn wait_api(server: &Server, game_id: &str, what: &str, pred: impl Fn(&Value) -> bool) {
    let api = server.api();
    let deadline = Instant::now() + SECS(10);
    loop {
        let game = api.game(game_id).await;
        if pred(&game) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; GET /api/games/{game_id}: {game}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// During a race (two servers, the guest on server 2), server 2 goes down and comes back on the
/// same address: the guest's page shows the connection banner, reconnects by itself as the
/// same robot with its score kept, and the race finishes with the right scores.
#[actix_rt::test]
async fn browser_reconnect_after_server_restart() {
    require_browser();
    let redis = Redis::start();
    let one = Server::start(&["-redis", &redis.addr()]);
    let mut two = Server::start(&["-redis", &redis.addr()]);
    let mut ann = Browser::desktop("reconnect", "ann").await;
    let mut bob = Browser::desktop("reconnect", "bob").await;
    let game_id = create_game(&ann, &one, "Ann").await;
    let link = on_server(&invite_link(&ann, &one, &game_id).await, &two);
    join_game(&bob, &link, "Bob", 1).await;
    let ann_id = ann.snapshot().await.unwrap()["robot_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob_id = bob.snapshot().await.unwrap()["robot_id"]
        .as_str()
        .unwrap()
        .to_owned();
    countdown(&[&ann, &bob], false).await;

    let (mut ann_presses, mut bob_presses) = (0, 0);
    for i in 0..6 {
        bob.press_space().await;
        bob_presses += 1;
        if i % 2 == 0 {
            ann.press_space().await;
            ann_presses += 1;
        }
    }
    // Everything pressed so far has reached the game before server 2 goes down.
    wait_api(&one, &game_id, "the first presses", |g| {
        api_score(g, &bob_id) == bob_presses && api_score(g, &ann_id) == ann_presses
    })
    .await;
    bob.wait("the guest's page to show its score", SECS(10), |s| {
        page_score(s, &bob_id) == Some(bob_presses)
    })
    .await;
    bob.screenshot("race").await;

    two.kill();
    bob.wait("the connection-lost banner", SECS(10), |s| {
        visible(s, "connection") && s["connected"] == false
    })
    .await;
    bob.screenshot("reconnecting").await;
    two.restart();
    assert_eq!(two.url(""), link.split("/join/").next().unwrap());
    let back = bob
        .wait("the guest to reconnect", SECS(20), |s| {
            s["connected"] == true
                && !visible(s, "connection")
                && s["recorded"]["connection"].as_array().is_some_and(|log| {
                    log.iter().any(|v| v == "shown") && log.last().is_some_and(|v| v == "hidden")
                })
        })
        .await;
    // The same robot (the server's welcome agrees with the page), its score kept.
    assert_eq!(back["robot_id"], bob_id.as_str());
    assert_eq!(back["me"], bob_id.as_str());
    assert_eq!(page_state(&back), "playing");
    assert_eq!(page_score(&back, &bob_id), Some(bob_presses), "{back:#}");
    assert_eq!(page_score(&back, &ann_id), Some(ann_presses), "{back:#}");
    bob.screenshot("reconnected").await;

    // The race goes on and finishes: Bob presses to the top, Ann a couple more times.
    for _ in 0..2 {
        ann.press_space().await;
        ann_presses += 1;
    }
    wait_api(&two, &game_id, "Ann's presses after the restart", |g| {
        api_score(g, &ann_id) == ann_presses
    })
    .await;
    while bob_presses < WIN {
        bob.press_space().await;
        bob_presses += 1;
    }
    assert_winner(&[&ann, &bob], "Bob", &["Ann", "Bob"]).await;
    bob.screenshot("winner").await;
    for server in [&one, &two] {
        let game = server.api().game(&game_id).await;
        assert_eq!(game["state"], "finished", "{game}");
        assert_eq!(game["winner"], bob_id.as_str());
        assert_eq!(api_score(&game, &bob_id), WIN, "{game}");
        assert_eq!(api_score(&game, &ann_id), ann_presses, "{game}");
        for page in [&ann, &bob] {
            let snap = page.snapshot().await.unwrap();
            for id in [&ann_id, &bob_id] {
                assert_eq!(
                    page_score(&snap, id),
                    Some(api_score(&game, id)),
                    "{}'s page and the API disagree: {snap:#}\n{game}",
                    page.who
                );
            }
        }
    }
    ann.close().await;
    bob.close().await;
}

/// A phone: a 375x667 touch screen (Chrome's mobile emulation). Finger taps start the race and
/// score on the track.
#[actix_rt::test]
async fn browser_phone_taps() {
    require_browser();
    let server = Server::start(&[]);
    let mut pia = Browser::phone("phone", "pia").await;
    let game_id = create_game(&pia, &server, "Pia").await;
    let screen = pia
        .js(
            "return {w: innerWidth, h: innerHeight, dpr: devicePixelRatio, \
             touch: 'ontouchstart' in window, points: navigator.maxTouchPoints};",
            vec![],
        )
        .await;
    assert_eq!(screen["w"], PHONE.0, "{screen}");
    assert_eq!(screen["touch"], true, "{screen}");
    assert!(screen["points"].as_u64() > Some(0), "{screen}");

    // A second player (a bot through the API, no browser) joins.
    let api = server.api();
    let bot = api.join(&game_id, "Bot").await;
    pia.wait("the bot's lane", SECS(10), |s| {
        text(s, "players") == "Players 2/10"
    })
    .await;
    pia.assert_lanes_drawn(2, "setup").await;
    pia.screenshot("setup").await;
    let pia_id = pia.snapshot().await.unwrap()["robot_id"]
        .as_str()
        .unwrap()
        .to_owned();

    countdown(&[&pia], true).await;
    for taps in 1..=WIN {
        pia.tap_track().await;
        if taps == 5 {
            wait_api(&server, &game_id, "the first taps to score", |g| {
                api_score(g, &pia_id) == 5
            })
            .await;
            pia.screenshot("race").await;
            pia.assert_lanes_drawn(2, "mid-race").await;
        }
    }
    assert_winner(&[&pia], "Pia", &["Pia", "Bot"]).await;
    pia.screenshot("winner").await;
    let game = api.game(&game_id).await;
    assert_eq!(game["winner"], pia_id.as_str());
    assert_eq!(api_score(&game, &pia_id), WIN);
    assert_eq!(api_score(&game, &bot.robot_id), 0);
    pia.close().await;
}

/// Submits the form on the current page with `name` (typed with real keys, after removing the
/// `required` and `maxlength` attributes, and enabling a form the page shows disabled (a full
/// game), so the server's own check is what answers).
async fn submit_name(b: &Browser, button: &str, name: &str) {
    b.js(
        "var f = document.getElementById('name'); f.removeAttribute('required'); \
         f.removeAttribute('maxlength'); f.form.noValidate = true; \
         f.form.querySelectorAll(':disabled').forEach(function (e) { e.disabled = false; }); \
         return true;",
        vec![],
    )
    .await;
    b.type_into("#name", name).await;
    b.click(button).await;
}

/// Waits for the re-rendered form with an error message in `#error` containing `expect`.
async fn expect_error(b: &Browser, path: &str, expect: &str, shot: &str) -> Value {
    let snap = b
        .wait(&format!("the message \"{expect}\""), SECS(10), |s| {
            s["ready"] == "complete" && s["path"] == path && visible(s, "error")
        })
        .await;
    assert!(
        text(&snap, "error").contains(expect),
        "#error should say \"{expect}\": {snap:#}"
    );
    assert_readable(&snap, shot);
    assert!(
        snap["name"].is_object(),
        "the form is shown again: {snap:#}"
    );
    b.screenshot(shot).await;
    snap
}

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

    // The name field counts as the server does: eight emoji (one with a skin tone, one a
    // family of joined emoji) are eight, and fit; eleven do not.
    b.goto(&server.url("/")).await;
    b.wait_page("/", "#start-game").await;
    let valid = |name: &str| {
        format!(
            "var f = document.getElementById('name'); f.value = {name:?}; \
             f.dispatchEvent(new Event('input')); return [f.value, f.validity.valid];"
        )
    };
    let eight = "😀👍🏽👨‍👩‍👧🎉🚀🔥✨🤖";
    let got = b.js(&valid(eight), vec![]).await;
    assert_eq!(
        got,
        json!([eight, true]),
        "eight emoji should fit the field"
    );
    let eleven = "😀😀😀😀😀😀😀😀😀😀😀";
    let got = b.js(&valid(eleven), vec![]).await;
    assert_eq!(got[1], false, "eleven emoji should not: {got}");
    b.close().await;
}

mod party;
mod polish;
