//! A `robot-race` server process owned by the test: started on a free port, read through its
//! logs, stopped, restarted on the same address, or frozen with SIGSTOP.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::api::Api;
use super::process::{signal_pid, Lines};
use super::redis_server::Redis;

pub const BIN: &str = env!("CARGO_BIN_EXE_robot-race");

/// A running `robot-race` process.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub logs: Lines,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl Server {
    /// Starts the binary with these arguments on a free port (unless `-addr` is among them).
    pub fn start(args: &[&str]) -> Server {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], envs: &[(&str, &str)]) -> Server {
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let addr_given = |a: &String| ["-addr", "--addr"].iter().any(|f| a.starts_with(f));
        if !args.iter().any(addr_given) {
            args.splice(0..0, ["-addr".to_owned(), "127.0.0.1:0".to_owned()]);
        }
        let envs = envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::spawn(args, envs)
    }

    fn spawn(args: Vec<String>, envs: Vec<(String, String)>) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(&args)
            .env_remove("REDIS_URL")
            .env_remove("PORT")
            .env_remove("REDIS_PASSWORD")
            .env("RUST_LOG", "info,actix_web::middleware::logger=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("cannot start the robot-race binary");
        let logs = Lines::default();
        let (tx, rx) = mpsc::channel();
        logs.follow(child.stderr.take().unwrap(), Some(tx));
        logs.follow(child.stdout.take().unwrap(), None);
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("Listening on http://").nth(1) {
                        // A JSON log line (`-log-format json`) goes on after the address.
                        let addr = rest.split('"').next().unwrap_or(rest);
                        break addr.trim().parse::<SocketAddr>().expect("listen address");
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("robot-race did not start within 20 s:\n{}", logs.all());
                }
            }
        };
        Server {
            child,
            addr,
            logs,
            args,
            envs,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// One sample of this server's `/metrics` (`name` with its labels, if any), if it is there.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(10))
            .finish();
        let mut res = client.get(self.url("/metrics")).send().await.ok()?;
        let body = res.body().limit(1 << 20).await.ok()?;
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// The address of this server's spectators' listener (`-spectator-addr`), from its log.
    pub fn spectator_addr(&self) -> SocketAddr {
        let needle = "Spectators on http://";
        assert!(
            self.logs.wait_for(needle, Duration::from_secs(10)),
            "no spectators' listener:\n{}",
            self.logs.all()
        );
        let logs = self.logs.all();
        (logs.lines())
            .find_map(|l| {
                l.split_once(needle)?
                    .1
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .expect("the spectators' address")
    }

    pub fn api(&self) -> Api {
        Api {
            base: self.url(""),
            client: awc::Client::builder()
                .timeout(Duration::from_secs(15))
                .finish(),
        }
    }

    /// SIGTERM, then waits (bounded) for the exit.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.wait_exit(Duration::from_secs(10))
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the same binary again on the same address (after a kill or terminate).
    pub fn restart(&mut self) {
        self.kill();
        let mut args = self.args.clone();
        if let Some(i) = args.iter().position(|a| a == "-addr") {
            args[i + 1] = self.addr.to_string();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        // The port may linger a moment after the old process exits.
        while TcpListener::bind(self.addr).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let fresh = Self::spawn(args, self.envs.clone());
        *self = fresh;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A server of a cluster on `redis` named `name` (with `extra` flags), once it says it is
/// connected to Redis.
pub fn cluster_node(redis: &Redis, name: &str, extra: &[&str]) -> Server {
    let addr = redis.addr();
    let mut args = vec!["-redis", &addr, "-node-id", name];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    assert!(
        server.logs.wait_for(
            &format!("Connected to Redis at {addr} - multi-server mode enabled"),
            Duration::from_secs(20)
        ),
        "{name} did not connect:\n{}",
        server.logs.all()
    );
    server
}

/// A server frozen with SIGSTOP. Thawed (SIGCONT) by `thaw` or when dropped, so a test that
/// panics meanwhile never leaves a stopped process behind (its `Server` guard then kills it).
pub struct Frozen {
    pid: u32,
    thawed: bool,
}

impl Frozen {
    pub fn new(server: &Server) -> Frozen {
        Frozen::pid(server.pid())
    }

    /// Freezes any process of the test's (a redis-server, say).
    pub fn pid(pid: u32) -> Frozen {
        signal_pid(pid, "STOP");
        Frozen { pid, thawed: false }
    }

    pub fn thaw(mut self) {
        self.thawed = true;
        signal_pid(self.pid, "CONT");
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if !self.thawed {
            let _ = Command::new("kill")
                .args(["-CONT", &self.pid.to_string()])
                .status();
        }
    }
}
