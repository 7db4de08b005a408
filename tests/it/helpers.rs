//! Shared test helpers: the real `robot-race` binary and real `redis-server` processes on free
//! loopback ports (owned by the test, so it can kill and restart them), and real HTTP and
//! WebSocket clients. Every process is killed when its guard drops; every wait is bounded.

#![allow(dead_code)]

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use awc::ws::{Frame, Message};
use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_robot-race");

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
        if !args.iter().any(|a| a.contains("addr")) {
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
                        break rest.trim().parse::<SocketAddr>().expect("listen address");
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

/// A `redis-server` owned by the test.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    extra: Vec<String>,
    pub logs: Lines,
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

impl Redis {
    pub fn start() -> Redis {
        Self::start_with(&[])
    }

    /// Extra `redis-server` arguments, e.g. `["--requirepass", "pw"]`.
    pub fn start_with(extra: &[&str]) -> Redis {
        Self::start_retrying(|| extra.iter().map(|s| s.to_string()).collect())
    }

    /// Starts one on a free port with the arguments `extra` makes, made again for each try (so
    /// ports among them are picked again too). A port found free can be taken by another test
    /// before `redis-server` binds it: a start that finds a port in use is tried again on new
    /// ports, up to 5 times.
    pub fn start_retrying(extra: impl Fn() -> Vec<String>) -> Redis {
        require("redis-server", "redis-server");
        let mut last = String::new();
        for _ in 0..5 {
            let mut redis = Redis {
                child: None,
                port: free_port(),
                extra: extra(),
                logs: Lines::default(),
            };
            match redis.try_launch() {
                Ok(()) => return redis,
                Err(logs) if logs.contains("Address already in use") => last = logs,
                Err(logs) => panic!("redis-server did not start:\n{logs}"),
            }
        }
        panic!("redis-server found its ports taken 5 times in a row:\n{last}");
    }

    /// A Redis on a port, not started yet (for "Redis appears later").
    pub fn not_started() -> Redis {
        require("redis-server", "redis-server");
        Redis {
            child: None,
            port: free_port(),
            extra: Vec::new(),
            logs: Lines::default(),
        }
    }

    /// Starts it on its port (which must be free), or panics with its output.
    pub fn launch(&mut self) {
        if let Err(logs) = self.try_launch() {
            panic!("redis-server did not start:\n{logs}");
        }
    }

    /// Starts it on its port; its output if it exits or is not ready within 10 s.
    fn try_launch(&mut self) -> Result<(), String> {
        let mut args: Vec<String> = vec![
            "--port".into(),
            self.port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--daemonize".into(),
            "no".into(),
            "--dir".into(),
            std::env::temp_dir().to_string_lossy().into_owned(),
        ];
        args.extend(self.extra.iter().cloned());
        let mut child = Command::new("redis-server")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start redis-server");
        self.logs = Lines::default();
        self.logs.follow(child.stdout.take().unwrap(), None);
        self.logs.follow(child.stderr.take().unwrap(), None);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.logs.contains("Ready to accept connections") {
                self.child = Some(child);
                return Ok(());
            }
            let exited = matches!(child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                // What it printed last, once its pipes are drained.
                std::thread::sleep(Duration::from_millis(50));
                return Err(self.logs.all());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it and starts an empty one on the same port.
    pub fn restart_empty(&mut self) {
        self.kill();
        self.launch();
    }

    /// A plain client for checking what the servers stored (no password/TLS servers).
    pub fn client(&self) -> redis::Client {
        redis::Client::open(format!("redis://127.0.0.1:{}", self.port)).unwrap()
    }

    pub fn get(&self, key: &str) -> Option<String> {
        let mut conn = self
            .client()
            .get_connection()
            .expect("connect to test redis");
        redis::cmd("GET").arg(key).query(&mut conn).expect("GET")
    }

    pub fn ttl(&self, key: &str) -> i64 {
        let mut conn = self
            .client()
            .get_connection()
            .expect("connect to test redis");
        redis::cmd("TTL").arg(key).query(&mut conn).expect("TTL")
    }

    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut conn = self
            .client()
            .get_connection()
            .expect("connect to test redis");
        redis::cmd("KEYS")
            .arg(pattern)
            .query(&mut conn)
            .expect("KEYS")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The JSON API.
pub struct Api {
    pub base: String,
    pub client: awc::Client,
}

#[derive(Debug, Clone)]
pub struct Joined {
    pub game_id: String,
    pub robot_id: String,
    pub token: String,
}

impl Api {
    pub async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        let mut res = self
            .client
            .post(format!("{}{path}", self.base))
            .send_json(&body)
            .await
            .expect("request");
        status_and_json(&mut res).await
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let mut res = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        status_and_json(&mut res).await
    }

    pub async fn create(&self, name: &str, winning_score: u32, countdown: u32) -> Joined {
        let (status, body) = self
            .post_json(
                "/api/games",
                json!({"name": name, "winning_score": winning_score, "countdown": countdown}),
            )
            .await;
        assert_eq!(status, 201, "create: {body}");
        joined(&body)
    }

    pub async fn join(&self, game_id: &str, name: &str) -> Joined {
        let (status, body) = self
            .post_json(
                &format!("/api/games/{game_id}/players"),
                json!({"name": name}),
            )
            .await;
        assert_eq!(status, 201, "join {game_id} as {name}: {body}");
        joined(&body)
    }

    pub async fn game(&self, game_id: &str) -> Value {
        let (status, body) = self.get_json(&format!("/api/games/{game_id}")).await;
        assert_eq!(status, 200, "get game: {body}");
        body
    }
}

/// The status and JSON body of a response (`null` when the body is not JSON).
async fn status_and_json<S>(res: &mut awc::ClientResponse<S>) -> (u16, Value)
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin,
{
    let body = res
        .json::<Value>()
        .limit(1 << 20)
        .await
        .unwrap_or(Value::Null);
    (res.status().as_u16(), body)
}

fn joined(body: &Value) -> Joined {
    Joined {
        game_id: body["game_id"].as_str().unwrap().to_owned(),
        robot_id: body["robot_id"].as_str().unwrap().to_owned(),
        token: body["token"].as_str().unwrap().to_owned(),
    }
}

/// A player's WebSocket.
pub struct Player {
    framed: actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
    pub robot_id: String,
    pub admin: bool,
    /// The newest game drawn (updates not newer than it are dropped, as the browser does).
    pub game: Value,
    /// Every game message received, in order (welcome included).
    pub history: Vec<Value>,
    /// Every error message received.
    pub errors: Vec<Value>,
    pub terminated: bool,
    pub closed: Option<Option<awc::ws::CloseReason>>,
}

pub type WsError = awc::error::WsClientError;

pub async fn try_connect(url: &str, origin: Option<&str>) -> Result<Player, WsError> {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let mut req = client.ws(url).max_frame_size(1 << 20);
    if let Some(origin) = origin {
        req = req.origin(origin);
    }
    let (_res, framed) = req.connect().await?;
    Ok(Player::from_framed(framed).await)
}

impl Player {
    /// Wraps an upgraded connection and reads its `welcome`.
    pub async fn from_framed(
        framed: actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
    ) -> Player {
        let mut player = Player {
            framed,
            robot_id: String::new(),
            admin: false,
            game: Value::Null,
            history: Vec::new(),
            errors: Vec::new(),
            terminated: false,
            closed: None,
        };
        let welcome = player
            .next(Duration::from_secs(10))
            .await
            .expect("no welcome message");
        assert_eq!(welcome["type"], "welcome", "first message: {welcome}");
        // Empty for a spectator (`"robot_id": null`).
        player.robot_id = welcome["robot_id"].as_str().unwrap_or("").to_owned();
        assert!(
            welcome["robot_id"].is_string() || welcome["robot_id"].is_null(),
            "{welcome}"
        );
        player.admin = welcome["admin"].as_bool().unwrap();
        player
    }
}

/// Connects a player of `game_id` with its token to `server`.
pub async fn connect(server: &Server, joined: &Joined) -> Player {
    let url = server.ws_url(&format!("/ws/{}?token={}", joined.game_id, joined.token));
    try_connect(&url, None).await.expect("WebSocket connect")
}

impl Player {
    pub async fn send_text(&mut self, text: &str) {
        self.framed
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("send");
    }

    pub async fn send(&mut self, msg: Value) {
        self.send_text(&msg.to_string()).await;
    }

    pub async fn framed_send_binary(&mut self, bytes: Vec<u8>) {
        self.framed
            .send(Message::Binary(bytes.into()))
            .await
            .expect("send");
    }

    pub async fn press(&mut self) {
        self.send(json!({"type": "score_point"})).await;
    }

    /// The next JSON message (answering pings), or `None` on close/timeout.
    pub async fn next(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = actix_rt::time::timeout(left, self.framed.next())
                .await
                .ok()??;
            match frame {
                Ok(Frame::Text(bytes)) => {
                    let msg: Value = serde_json::from_slice(&bytes).expect("server sent bad JSON");
                    self.record(&msg);
                    return Some(msg);
                }
                Ok(Frame::Ping(p)) => {
                    let _ = self.framed.send(Message::Pong(p)).await;
                }
                Ok(Frame::Close(reason)) => {
                    self.closed = Some(reason);
                    return None;
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    fn record(&mut self, msg: &Value) {
        match msg["type"].as_str() {
            Some("welcome") => {
                self.game = msg["game"].clone();
                self.history.push(msg["game"].clone());
            }
            Some("game_update") => {
                self.history.push(msg["game"].clone());
                let newer = msg["game"]["version"].as_u64() > self.game["version"].as_u64();
                if newer {
                    self.game = msg["game"].clone();
                }
            }
            // Scores only, as the browser applies them: in the lanes of the last full view.
            Some("scores") => {
                let newer = msg["version"].as_u64() > self.game["version"].as_u64();
                let scores = msg["scores"].as_array().cloned().unwrap_or_default();
                let lanes = self.game["robots"].as_array().map_or(0, Vec::len);
                if newer && scores.len() == lanes {
                    let mut game = self.game.clone();
                    game["version"] = msg["version"].clone();
                    for (robot, score) in game["robots"]
                        .as_array_mut()
                        .unwrap()
                        .iter_mut()
                        .zip(scores)
                    {
                        robot["score"] = score;
                    }
                    self.history.push(game.clone());
                    self.game = game;
                }
            }
            Some("error") => self.errors.push(msg.clone()),
            Some("terminated") => self.terminated = true,
            _ => {}
        }
    }

    /// Presses `n` times, one press every `every`, reading updates in between (as a browser
    /// does), so the socket never backs up.
    pub async fn press_paced(&mut self, n: usize, every: Duration) {
        let mut next_press = Instant::now();
        let mut sent = 0;
        let deadline = Instant::now() + every * (n as u32) + SECS(30);
        while sent < n && Instant::now() < deadline {
            let now = Instant::now();
            if now >= next_press {
                self.press().await;
                sent += 1;
                next_press += every;
            } else if self.next(next_press - now).await.is_none() && self.closed.is_some() {
                panic!("the server closed the socket while pressing");
            }
        }
        assert_eq!(sent, n, "could not send every press in time");
    }

    /// Reads until the drawn game satisfies `pred`; panics with the last state on timeout.
    pub async fn wait_game(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        while !pred(&self.game) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.next(left).await.is_none() {
                break;
            }
        }
        assert!(
            pred(&self.game),
            "timed out waiting; last game seen: {}",
            self.game
        );
        self.game.clone()
    }

    /// Reads until an error message arrives; returns it.
    pub async fn wait_error(&mut self, timeout: Duration) -> Value {
        let seen = self.errors.len();
        let deadline = Instant::now() + timeout;
        while self.errors.len() == seen {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.next(left).await.is_none() {
                break;
            }
        }
        assert!(self.errors.len() > seen, "no error message arrived");
        self.errors.last().unwrap().clone()
    }

    /// Reads whatever arrives for `time` (keeps the connection serviced).
    pub async fn drain(&mut self, time: Duration) {
        let deadline = Instant::now() + time;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.next(left).await.is_none() {
                break;
            }
        }
    }

    /// Reads until the server closes the socket; returns the close reason.
    pub async fn wait_close(&mut self, timeout: Duration) -> Option<awc::ws::CloseReason> {
        let deadline = Instant::now() + timeout;
        while self.closed.is_none() && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.next(left).await.is_none() && self.closed.is_none() {
                break;
            }
        }
        self.closed.clone().flatten()
    }

    pub fn score_of(&self, robot_id: &str) -> u64 {
        robot(&self.game, robot_id)["score"].as_u64().unwrap()
    }
}

pub fn robot<'a>(game: &'a Value, robot_id: &str) -> &'a Value {
    game["robots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == robot_id)
        .unwrap_or_else(|| panic!("robot {robot_id} not in {game}"))
}

pub fn state(game: &Value) -> &str {
    game["state"].as_str().unwrap_or("")
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

/// A server frozen with SIGSTOP. Thawed (SIGCONT) by `thaw` or when dropped, so a test that
/// panics meanwhile never leaves a stopped process behind (its `Server` guard then kills it).
pub struct Frozen {
    pid: u32,
    thawed: bool,
}

impl Frozen {
    pub fn new(server: &Server) -> Frozen {
        signal_pid(server.pid(), "STOP");
        Frozen {
            pid: server.pid(),
            thawed: false,
        }
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

/// One update as a player saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub version: u64,
    pub state: String,
    /// Robot id → score.
    pub scores: BTreeMap<String, u64>,
    /// The server (index in the player's list) whose socket brought it.
    pub via: usize,
}

impl Shown {
    fn of(game: &Value, via: usize) -> Shown {
        Shown {
            version: game["version"].as_u64().unwrap_or(0),
            state: state(game).to_owned(),
            scores: scores_of(game),
            via,
        }
    }

    /// Same state and scores (whichever server it came through).
    pub fn same_as(&self, other: &Shown) -> bool {
        self.state == other.state && self.scores == other.scores
    }

    /// `v57 playing [ann=3 bob=5] via server 1`, with robots named by `names` (id → name).
    pub fn describe(&self, names: &BTreeMap<String, String>) -> String {
        let scores: Vec<String> = self
            .scores
            .iter()
            .map(|(id, s)| format!("{}={s}", names.get(id).unwrap_or(id)))
            .collect();
        format!(
            "v{} {} [{}] via server {}",
            self.version,
            self.state,
            scores.join(" "),
            self.via
        )
    }
}

/// Every robot's score in a game view: robot id → score.
pub fn scores_of(game: &Value) -> BTreeMap<String, u64> {
    game["robots"]
        .as_array()
        .map(|robots| {
            robots
                .iter()
                .map(|r| {
                    (
                        r["id"].as_str().unwrap_or("").to_owned(),
                        r["score"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

type Socket = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// How long one connection attempt (upgrade plus `welcome`) may take.
const RACER_CONNECT: Duration = Duration::from_secs(3);

/// A player as a browser plays: knows every server of the cluster, presses at a steady rate,
/// reads updates between presses, and when its socket closes or a connect fails, connects to
/// the next server in its list (bounded tries, bounded time). It records what a fault test
/// needs to judge the cluster: presses sent, errors by code, every game drawn and every
/// (version → state and scores) it was shown, across reconnects.
pub struct RacingPlayer {
    pub name: String,
    pub joined: Joined,
    /// `ws://addr` of each server, in the order the player tries them.
    urls: Vec<String>,
    /// The server it is (or was last) connected to.
    pub server: usize,
    socket: Option<Socket>,
    /// The newest game drawn: only updates with a higher version replace it (as the browser
    /// does); a `scores` frame is applied to it in lane order.
    pub game: Value,
    /// Every game drawn, in order.
    pub drawn: Vec<Shown>,
    /// Every update received (welcome, game_update, scores), drawn or not.
    pub seen: Vec<Shown>,
    /// Presses whose `send` succeeded on a socket.
    pub sent: u64,
    /// Error messages received, by code.
    pub errors: BTreeMap<String, u64>,
    /// Successful connections (the first one included).
    pub connects: u32,
    /// Connects, closes and errors, with the time since the player was made (for reports).
    pub events: Vec<String>,
    born: Instant,
}

impl RacingPlayer {
    /// A player of `joined` that knows `servers` and connects first to `servers[first]`.
    pub fn new(name: &str, joined: Joined, servers: &[&Server], first: usize) -> RacingPlayer {
        RacingPlayer {
            name: name.to_owned(),
            joined,
            urls: servers.iter().map(|s| s.ws_url("")).collect(),
            server: first,
            socket: None,
            game: Value::Null,
            drawn: Vec::new(),
            seen: Vec::new(),
            sent: 0,
            errors: BTreeMap::new(),
            connects: 0,
            events: Vec::new(),
            born: Instant::now(),
        }
    }

    pub fn robot_id(&self) -> &str {
        &self.joined.robot_id
    }

    pub fn is_connected(&self) -> bool {
        self.socket.is_some()
    }

    pub fn version(&self) -> u64 {
        self.game["version"].as_u64().unwrap_or(0)
    }

    /// Every robot's score in the drawn game.
    pub fn scores(&self) -> BTreeMap<String, u64> {
        scores_of(&self.game)
    }

    /// This player's own robot's score in the drawn game.
    pub fn own_score(&self) -> Option<u64> {
        self.scores().get(self.robot_id()).copied()
    }

    /// Errors received, all codes together.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn event(&mut self, what: String) {
        let at = self.born.elapsed().as_secs_f64();
        self.events.push(format!("{at:.2}s {what}"));
    }

    /// Connects to the current server, then to the next ones in turn, until one sends a
    /// `welcome`: at most two rounds of the list. False when none did.
    pub async fn connect(&mut self) -> bool {
        let n = self.urls.len();
        for attempt in 0..2 * n {
            let i = (self.server + attempt) % n;
            match self.open(i).await {
                Ok(()) => return true,
                Err(why) => {
                    self.event(format!("connect to server {i} failed: {why}"));
                    actix_rt::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        false
    }

    /// After a close: connects to the next server in the list (then the ones after it).
    pub async fn reconnect(&mut self) -> bool {
        self.server = (self.server + 1) % self.urls.len();
        self.connect().await
    }

    async fn open(&mut self, i: usize) -> Result<(), String> {
        self.socket = None;
        let url = format!(
            "{}/ws/{}?token={}",
            self.urls[i], self.joined.game_id, self.joined.token
        );
        let client = awc::Client::builder().timeout(RACER_CONNECT).finish();
        let upgrade = client.ws(url).max_frame_size(1 << 20).connect();
        let (_, framed) = actix_rt::time::timeout(RACER_CONNECT, upgrade)
            .await
            .map_err(|_| "no answer in time".to_owned())?
            .map_err(|e| e.to_string())?;
        self.socket = Some(framed);
        self.server = i;
        match self.next_message(RACER_CONNECT).await {
            Some(msg) if msg["type"] == "welcome" => {
                self.connects += 1;
                let version = msg["game"]["version"].as_u64().unwrap_or(0);
                self.event(format!(
                    "connected to server {i} (welcome v{version}) sent so far {}",
                    self.sent
                ));
                Ok(())
            }
            Some(msg) => {
                self.socket = None;
                Err(format!("first message was not a welcome: {msg}"))
            }
            None => {
                self.socket = None;
                Err("no welcome".to_owned())
            }
        }
    }

    /// The next JSON message (recorded), answering pings; `None` on timeout or when the
    /// socket ends (then it is dropped, after answering a close as a browser does).
    async fn next_message(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let socket = self.socket.as_mut()?;
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = match actix_rt::time::timeout(left, socket.next()).await {
                Err(_) => return None,
                Ok(frame) => frame,
            };
            match frame {
                Some(Ok(Frame::Text(bytes))) => match serde_json::from_slice::<Value>(&bytes) {
                    Ok(msg) if msg["type"] == "going_away" => {
                        // As the browser does: close from our side and wait for the server's
                        // close (the closing handshake), then reconnect elsewhere. Dropping the
                        // connection at once could cut off presses still in flight.
                        let close = awc::ws::CloseReason::from(awc::ws::CloseCode::Normal);
                        let _ = socket.send(Message::Close(Some(close))).await;
                        let until = Instant::now() + Duration::from_secs(2);
                        loop {
                            let left = until.saturating_duration_since(Instant::now());
                            match actix_rt::time::timeout(left, socket.next()).await {
                                Ok(Some(Ok(Frame::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => {
                                    break
                                }
                                Ok(Some(Ok(_))) => {}
                                Err(_) => break,
                            }
                        }
                        self.socket = None;
                        self.event(format!("told to go by server {}", self.server));
                        return None;
                    }
                    Ok(msg) => {
                        self.record(&msg);
                        return Some(msg);
                    }
                    Err(e) => {
                        let text = String::from_utf8_lossy(&bytes).into_owned();
                        self.event(format!("bad JSON from server {}: {e}: {text}", self.server));
                    }
                },
                Some(Ok(Frame::Ping(p))) => {
                    let _ = socket.send(Message::Pong(p)).await;
                }
                Some(Ok(Frame::Close(reason))) => {
                    let _ = socket.send(Message::Close(reason.clone())).await;
                    self.socket = None;
                    self.event(format!("closed by server {}: {reason:?}", self.server));
                    return None;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    self.socket = None;
                    self.event(format!("socket error on server {}: {e}", self.server));
                    return None;
                }
                None => {
                    self.socket = None;
                    self.event(format!("connection to server {} ended", self.server));
                    return None;
                }
            }
        }
    }

    fn draw(&mut self, game: Value) {
        self.drawn.push(Shown::of(&game, self.server));
        self.game = game;
    }

    fn record(&mut self, msg: &Value) {
        match msg["type"].as_str() {
            Some("welcome") | Some("game_update") => {
                let game = &msg["game"];
                self.seen.push(Shown::of(game, self.server));
                if game["version"].as_u64() > self.game["version"].as_u64() {
                    self.draw(game.clone());
                }
            }
            Some("scores") => {
                // Scores in the lane order of the last full view; sent during `playing` only.
                let version = msg["version"].as_u64().unwrap_or(0);
                let mut game = self.game.clone();
                if let (Some(robots), Some(scores)) =
                    (game["robots"].as_array_mut(), msg["scores"].as_array())
                {
                    for (robot, score) in robots.iter_mut().zip(scores) {
                        robot["score"] = score.clone();
                    }
                }
                game["version"] = json!(version);
                game["state"] = json!("playing");
                self.seen.push(Shown::of(&game, self.server));
                if Some(version) > self.game["version"].as_u64() {
                    self.draw(game);
                }
            }
            Some("error") => {
                let code = msg["error"].as_str().unwrap_or("?").to_owned();
                *self.errors.entry(code.clone()).or_default() += 1;
                self.event(format!("error {code} from server {}", self.server));
            }
            Some("terminated") => self.event(format!("terminated by server {}", self.server)),
            _ => {}
        }
    }

    /// Sends a message; false (and the socket dropped) when it could not be sent.
    pub async fn send(&mut self, msg: Value) -> bool {
        let Some(socket) = self.socket.as_mut() else {
            return false;
        };
        match socket.send(Message::Text(msg.to_string().into())).await {
            Ok(()) => true,
            Err(e) => {
                self.socket = None;
                self.event(format!("send to server {} failed: {e}", self.server));
                false
            }
        }
    }

    /// One press; counted as sent once it is on the socket.
    pub async fn press(&mut self) -> bool {
        let ok = self.send(json!({"type": "score_point"})).await;
        if ok {
            self.sent += 1;
        }
        ok
    }

    /// Reads whatever arrives until `until` (or until the socket ends).
    pub async fn read_until(&mut self, until: Instant) {
        while self.socket.is_some() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.next_message(left).await;
        }
    }

    /// Reads for `time`, reconnecting (to the next server) if the socket is gone.
    pub async fn listen(&mut self, time: Duration) {
        let until = Instant::now() + time;
        while Instant::now() < until {
            if self.socket.is_none() && !self.reconnect().await {
                actix_rt::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            self.read_until(until).await;
        }
    }

    /// Presses once every `every`, the first after `offset`, while `pressing` is set (at most
    /// two minutes), reading between presses, and moving to the next server whenever the
    /// socket closes. (Different offsets spread several players' presses over time, as people
    /// do, instead of all at the same instants.)
    pub async fn race(&mut self, every: Duration, offset: Duration, pressing: &Cell<bool>) {
        let limit = Instant::now() + Duration::from_secs(120);
        let mut next_press = Instant::now() + offset;
        while pressing.get() && Instant::now() < limit {
            if self.socket.is_none() {
                if !self.reconnect().await {
                    actix_rt::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
            let now = Instant::now();
            if now >= next_press {
                self.press().await;
                // Steady pace; after a stall, go on from now rather than catch up in a burst.
                next_press = (next_press + every).max(now + every / 2);
            } else {
                self.read_until(next_press).await;
            }
        }
    }

    /// Reads (reconnecting as needed) until the drawn game satisfies `pred`; false after
    /// `timeout`.
    pub async fn wait_drawn(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !pred(&self.game) && Instant::now() < deadline {
            if self.socket.is_none() && !self.reconnect().await {
                actix_rt::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let step = (Instant::now() + Duration::from_millis(100)).min(deadline);
            self.read_until(step).await;
        }
        pred(&self.game)
    }

    /// Presses once every `every` until its own robot's score rises above what it was when
    /// called, reading between presses; the instant it saw the rise, or `None` after `timeout`.
    pub async fn press_until_own_score_rises(
        &mut self,
        every: Duration,
        timeout: Duration,
    ) -> Option<Instant> {
        let before = self.own_score().unwrap_or(0);
        let deadline = Instant::now() + timeout;
        let mut next_press = Instant::now();
        while Instant::now() < deadline {
            if self.own_score().unwrap_or(0) > before {
                return Some(Instant::now());
            }
            if self.socket.is_none() {
                if !self.reconnect().await {
                    actix_rt::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
            let now = Instant::now();
            if now >= next_press {
                self.press().await;
                next_press = now + every;
            } else {
                self.next_message(next_press - now).await;
            }
        }
        (self.own_score().unwrap_or(0) > before).then(Instant::now)
    }

    /// One line for a failure report.
    pub fn summary(&self) -> String {
        format!(
            "{} (robot {}): on server {}{}, {} connect(s), sent {}, errors {:?}, drew {} game(s), last v{}",
            self.name,
            self.robot_id(),
            self.server,
            if self.is_connected() { "" } else { " (disconnected)" },
            self.connects,
            self.sent,
            self.errors,
            self.drawn.len(),
            self.version()
        )
    }
}

/// Robot id → the name of the player racing it.
pub fn robot_names(players: &[RacingPlayer]) -> BTreeMap<String, String> {
    players
        .iter()
        .map(|p| (p.robot_id().to_owned(), p.name.clone()))
        .collect()
}

/// For each player's robot: presses sent minus presses answered with an error.
pub fn expected_scores(players: &[RacingPlayer]) -> BTreeMap<String, u64> {
    players
        .iter()
        .map(|p| {
            (
                p.robot_id().to_owned(),
                p.sent.saturating_sub(p.error_count()),
            )
        })
        .collect()
}

/// Every player reads (reconnecting as needed) until all draw the same scores, and those are
/// the expected ones (`expected_scores`) or have not changed for `quiet`. Returns the agreed
/// scores, or `None` when they did not agree within `timeout`.
pub async fn settle(
    players: &mut [RacingPlayer],
    timeout: Duration,
    quiet: Duration,
) -> Option<BTreeMap<String, u64>> {
    let deadline = Instant::now() + timeout;
    let mut agreed_since: Option<(BTreeMap<String, u64>, Instant)> = None;
    loop {
        join_all(
            players
                .iter_mut()
                .map(|p| p.listen(Duration::from_millis(200))),
        )
        .await;
        let first = players[0].scores();
        let agreed = players.iter().all(|p| p.scores() == first);
        if agreed && first == expected_scores(players) {
            return Some(first);
        }
        if Instant::now() >= deadline {
            return agreed.then_some(first);
        }
        match &agreed_since {
            Some((scores, since)) if agreed && *scores == first => {
                if since.elapsed() >= quiet {
                    return Some(first);
                }
            }
            _ => agreed_since = agreed.then(|| (first, Instant::now())),
        }
    }
}
