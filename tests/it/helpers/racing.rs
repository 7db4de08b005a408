//! A player that races as a browser does across a cluster (moving to the next server when its
//! socket closes), and the checks on what several of them were shown.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use awc::ws::{Frame, Message};
use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

use super::api::Joined;
use super::server::Server;
use super::view::{scores_of, Shown};

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
    /// What the `rate_limited` answers said they stood for, added up: one answer may tell of
    /// several dropped (its `dropped`), where `errors` counts it once.
    pub rate_limited_dropped: u64,
    /// Successful connections (the first one included).
    pub connects: u32,
    /// Connects, closes and errors, with the time since the player was made (for reports).
    pub events: Vec<String>,
    born: Instant,
    /// When each press not yet answered was sent, oldest first.
    unanswered: VecDeque<Instant>,
    /// How long each answered press waited: for its player's score to rise, or for an error.
    pub answered_in: Vec<Duration>,
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
            rate_limited_dropped: 0,
            connects: 0,
            events: Vec::new(),
            born: Instant::now(),
            unanswered: VecDeque::new(),
            answered_in: Vec::new(),
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
        let before = self.own_score().unwrap_or(0);
        self.drawn.push(Shown::of(&game, self.server));
        self.game = game;
        for _ in before..self.own_score().unwrap_or(0) {
            self.answered();
        }
    }

    /// The oldest press waiting for its answer got it.
    fn answered(&mut self) {
        if let Some(sent) = self.unanswered.pop_front() {
            self.answered_in.push(sent.elapsed());
        }
    }

    /// Presses answered later than `limit`, and presses never answered.
    pub fn answered_late(&self, limit: Duration) -> (usize, usize) {
        let late = self.answered_in.iter().filter(|d| **d > limit).count();
        (late, self.unanswered.len())
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
                if code == "rate_limited" {
                    self.rate_limited_dropped += msg["dropped"].as_u64().unwrap_or(1);
                }
                if ["unavailable", "rate_limited", "overloaded"].contains(&code.as_str()) {
                    self.answered();
                }
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
            self.unanswered.push_back(Instant::now());
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
