//! Lighthouse (the npm package, pinned in `tests/lighthouse/package.json`), with its default
//! mobile settings, in headless Chromium against every page a player or a room sees: each
//! scores at least 0.95 for performance, accessibility, best practices and SEO, and passes
//! the legible-text (`font-size`) and meta-description audits. `tests/lighthouse/audit.js`
//! runs Lighthouse page by page (one Chromium at a time) and says what failed.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::helpers::Server;

#[actix_rt::test]
async fn every_page_passes_lighthouse_on_a_phone() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lighthouse");
    assert!(
        root.join("node_modules/.bin/lighthouse").exists(),
        "Lighthouse is not installed: run `cd tests/lighthouse && npm ci` (scripts/test does)"
    );
    // The race page needs its player's cookie, and its robot must still be in the game when
    // its turn comes: nobody is removed for being away while the audits run.
    let server = Server::start(&["-away-remove-ms", "600000"]);
    let ann = server.api().create("ann", 25, 3).await;
    server.api().join(&ann.game_id, "bob").await;
    let id = &ann.game_id;
    let urls: Vec<String> = [
        "/",
        &format!("/join/{id}"),
        &format!("/game/{id}"),
        &format!("/watch/{id}"),
        "/_stats",
    ]
    .iter()
    .map(|path| server.url(path))
    .collect();
    let started = Instant::now();
    let out = Command::new("node")
        .arg(root.join("audit.js"))
        .args(["--cookie", &format!("rr_{id}={}", ann.token)])
        .args(&urls)
        .output()
        .expect("cannot run node: install Node.js (Debian: nodejs npm)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("lighthouse, {:?}:\n{report}", started.elapsed());
    assert!(out.status.success(), "Lighthouse: {report}");
    assert_eq!(
        report.lines().filter(|l| l.starts_with("ok ")).count(),
        urls.len(),
        "{report}"
    );
}
