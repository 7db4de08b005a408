//! End-to-end tests in a real browser: headless Chromium driven over WebDriver (`chromedriver`,
//! started by the test on a free loopback port), against the real `robot-race` binary and a
//! real `redis-server`. Each browser is its own Chromium with a fresh profile (its own cookies).
//! Key presses and taps are real input events (WebDriver actions); the canvas is read back
//! pixel by pixel to check that the lanes are drawn. Screenshots of key moments are saved under
//! `target/e2e/<scenario>-<moment>.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver` packages; without them these tests fail
//! (they never skip).
//!
//! The browser and its driver: [`driver`] and [`client`]; what the page shows, read by scripts
//! run in it: [`page`]; the steps the scenarios share (create, join, count down, race):
//! [`flows`]. The scenarios: [`race`], [`forms`], [`party`], [`polish`]; and every page
//! through Lighthouse's mobile audit: [`lighthouse`].

mod client;
mod driver;
mod flows;
mod forms;
mod lighthouse;
mod page;
mod party;
mod polish;
mod race;
