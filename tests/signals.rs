//! A SIGTERM that lands just after start-up (a deploy or an orchestrator stopping a server it
//! has only just started) stops the server cleanly, with exit status 0, instead of killing it
//! through the signal's default action.
//!
//! Start-up is slowest on a loaded machine, which is when such a signal lands inside it, so
//! this test keeps every core busy on purpose while it starts and stops the server. It is a
//! test binary of its own because cargo runs test binaries one at a time: nothing else runs
//! beside that load. Its time is bounded: a fixed number of rounds, each with deadlines.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const ROUNDS: usize = 30;

/// Threads spinning on every core until dropped.
struct Busy {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Busy {
    fn start() -> Busy {
        let stop = Arc::new(AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..cores)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        Busy { stop, threads }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The server process, killed if the test leaves it running.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

impl Server {
    /// Starts one on a free loopback port; returns once it has logged that it listens.
    fn start() -> Result<Server, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_robot-race"))
            .args(["-addr", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start robot-race: {e}"))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let server = Server(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Listening on http://") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(20))
            .map_err(|_| "no \"Listening on\" within 20 s".to_owned())?;
        Ok(server)
    }

    fn terminate(&mut self) -> Result<ExitStatus, String> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .map_err(|e| format!("cannot run kill: {e}"))?;
        if !sent.success() {
            return Err(format!("kill -TERM failed: {sent}"));
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait().map_err(|e| e.to_string())? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err("still running 15 s after SIGTERM".to_owned())
    }
}

#[test]
fn sigterm_right_after_start_up_stops_the_server_cleanly() {
    let busy = Busy::start();
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        let outcome = Server::start().and_then(|mut server| server.terminate());
        match outcome {
            Ok(status) if status.success() => {}
            Ok(status) => failures.push(format!("round {round}: exited with {status}")),
            Err(e) => failures.push(format!("round {round}: {e}")),
        }
    }
    drop(busy);
    assert!(
        failures.is_empty(),
        "{} of {ROUNDS} servers did not stop cleanly on a SIGTERM just after start-up \
         (\"signal: 15\" means the signal killed it before its handler was installed):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
