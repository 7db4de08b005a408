//! Processes and the machine: free ports, a child's output lines, the tools a test needs,
//! signals, temporary directories, blocking steps off the test thread, and a seconds shorthand.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (the OS picks; we release it for the child to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind 127.0.0.1:0")
}

/// Collects a child's output lines and lets a test wait for one.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    pub fn follow(
        &self,
        stream: impl std::io::Read + Send + 'static,
        tx: Option<mpsc::Sender<String>>,
    ) {
        let lines = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(tx) = &tx {
                    let _ = tx.send(line.clone());
                }
                lines.0.lock().unwrap().push(line);
            }
        });
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.0.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    pub fn count(&self, needle: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    pub fn all(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }

    /// Waits until a line contains `needle`; false after `timeout`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.contains(needle)
    }

    /// As `wait_for`, without blocking the async runtime.
    pub async fn wait_for_async(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.contains(needle) {
                return true;
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        self.contains(needle)
    }
}

pub fn require(binary: &str, package: &str) {
    let found = Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "`{binary}` is not installed: these tests need it. Install it with \
         `sudo apt-get install -y {package}` (or run .ci/run, which does)."
    );
}

pub const SECS: fn(u64) -> Duration = Duration::from_secs;

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("robot-race-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a blocking step (stopping or starting a process) on another thread, so the players
/// on this thread keep reading and pressing meanwhile.
pub async fn off_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    actix_rt::task::spawn_blocking(f)
        .await
        .expect("a blocking test step panicked")
}

/// Sends `sig` (`STOP`, `CONT`, `TERM`…) to a process.
pub fn signal_pid(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{sig} {pid} failed");
}
