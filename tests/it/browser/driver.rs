//! The `chromedriver` process each browser runs under (with the Chromium it starts), the check
//! that both are installed, and where screenshots go.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;

pub(super) const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "chromedriver";
const INSTALL: &str = "apt-get install -y chromium chromium-driver";

/// Fails (never skips) when the browser or its driver is missing.
pub(super) fn require_browser() {
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

pub(super) fn e2e_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("e2e");
    std::fs::create_dir_all(&dir).expect("create target/e2e");
    dir
}

/// A `chromedriver` process in its own process group, with the Chromium it launches: the whole
/// group is killed on drop, so no browser outlives its test.
pub(super) struct Driver {
    child: Child,
    port: u16,
    pub(super) profile: PathBuf,
    log: PathBuf,
}

impl Driver {
    pub(super) fn start(name: &str) -> Driver {
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

    pub(super) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The last lines of chromedriver's log (for failure messages).
    pub(super) fn log(&self) -> String {
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
