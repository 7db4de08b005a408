//! One browser (its own chromedriver, Chromium and profile) as the scenarios drive it: open a
//! page, wait for what it shows, click, type, press keys, tap, take screenshots, and read the
//! canvas back.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions, PointerAction, TouchActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use super::driver::{e2e_dir, Driver, CHROMIUM};
use super::page::{CANVAS_COLORS, RECORDER, SNAPSHOT_FN};
use crate::helpers::*;

/// How often a wait looks at the page again. Short-lived states (a countdown step, a quick
/// reconnect) are caught by the in-page recorder, not by polling fast.
pub(super) const POLL: Duration = Duration::from_millis(100);

/// Phone-sized viewport with touch (Chrome's mobile emulation).
pub(super) const PHONE: (u32, u32) = (375, 667);

/// One browser: its own chromedriver, Chromium and profile.
pub(super) struct Browser {
    pub(super) client: Client,
    /// Scenario name, for screenshot files.
    scenario: String,
    /// Who this is in messages ("ann", "bob").
    pub(super) who: String,
    /// When this browser last pressed (presses are paced under the server's rate limit).
    last_press: Instant,
    /// When it was launched (for the timeline printed with a failure).
    started: Instant,
    driver: Driver,
}

impl Browser {
    pub(super) async fn desktop(scenario: &str, who: &str) -> Browser {
        Self::launch(scenario, who, false).await
    }

    pub(super) async fn phone(scenario: &str, who: &str) -> Browser {
        Self::launch(scenario, who, true).await
    }

    async fn launch(scenario: &str, who: &str, phone: bool) -> Browser {
        let size = if phone { PHONE } else { (1024, 768) };
        Self::launch_sized(scenario, who, phone, size).await
    }

    /// A browser with this viewport (CSS pixels); `phone`: touch and a pixel ratio of 2.
    pub(super) async fn launch_sized(
        scenario: &str,
        who: &str,
        phone: bool,
        size: (u32, u32),
    ) -> Browser {
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
    pub(super) fn log(self, what: &str) -> Self {
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
    pub(super) async fn close(self) {
        self.note("closing");
        let Browser { client, driver, .. } = self;
        let _ = actix_rt::time::timeout(SECS(10), client.close()).await;
        drop(driver);
    }

    pub(super) async fn goto(&self, url: &str) {
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

    pub(super) async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.try_js(script, args)
            .await
            .unwrap_or_else(|e| panic!("{}: script failed: {e}\n{script}", self.who))
    }

    /// Saves `target/e2e/<scenario>-<moment>.png`.
    pub(super) async fn screenshot(&self, moment: &str) -> PathBuf {
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
    pub(super) async fn snapshot(&self) -> Result<Value, String> {
        self.try_js(&format!("{SNAPSHOT_FN} return snapshot();"), vec![])
            .await
    }

    /// Polls the page until `pred` holds (bounded); on timeout saves a screenshot and panics
    /// with what the page showed last.
    pub(super) async fn wait(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
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

    pub(super) async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{}: no element {css} on the page: {e}", self.who))
    }

    pub(super) async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("{}: click {css}: {e}", self.who));
    }

    /// Types into a field with real key events (after clearing it).
    pub(super) async fn type_into(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("clear field");
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("{}: type into {css}: {e}", self.who));
    }

    /// Waits until the page is `path_prefix…` and loaded.
    pub(super) async fn wait_page(&self, path_prefix: &str, selector: &str) -> Value {
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
    pub(super) async fn record(&self) {
        self.js(RECORDER, vec![]).await;
    }

    pub(super) async fn recorded(&self) -> Value {
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
    pub(super) async fn press_space(&mut self) {
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
    pub(super) async fn tap_track(&mut self) {
        self.pace().await;
        self.tap("#track", 120.0).await;
    }

    /// A finger tap on an element (`dy` CSS pixels below its centre).
    pub(super) async fn tap(&self, css: &str, dy: f64) {
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
    pub(super) async fn lane_colors(&self) -> Vec<Value> {
        let v = self.js(CANVAS_COLORS, vec![]).await;
        v.as_array()
            .unwrap_or_else(|| panic!("canvas read: {v}"))
            .clone()
    }

    /// Asserts that lane i shows the robot colour of lane i (cyan, magenta, yellow…), in the
    /// canvas pixels, not just in the DOM. The page redraws on the next animation frame after
    /// an update, so this polls (bounded) until the drawing has caught up.
    pub(super) async fn assert_lanes_drawn(&self, lanes: usize, moment: &str) {
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
