//! Three "servers" in one process on a shared in-memory "Redis" (`LocalCluster`): every
//! ownership transition, on paused time, in seconds. The same scenarios run against real
//! processes and a real Redis in `tests/it/cluster.rs` and `tests/it/faults.rs`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use super::{GameHandle, GameMsg, Metrics, Node, Outbound, SessionId, Timing};
use crate::bus::local::{LocalBus, LocalCluster};
use crate::game::{GameConfig, PlayerName};
use crate::protocol::ClientMsg;

const LEASE: Duration = Duration::from_secs(1);

fn node(cluster: &LocalCluster, name: &str) -> Node {
    let bus = Arc::new(LocalBus::member(cluster, name, LEASE));
    let timing = Timing::new(Duration::from_secs(600), LEASE);
    let node = Node::new(
        bus,
        Arc::new(Metrics::default()),
        timing,
        tokio::runtime::Handle::current(),
    );
    node.start();
    node
}

fn name(s: &str) -> PlayerName {
    PlayerName::parse(s).unwrap()
}

/// A local player: its session and what it has drawn (newest version only, as the browser).
struct Player {
    game: GameHandle,
    session: SessionId,
    rx: mpsc::Receiver<Outbound>,
    drawn: Value,
    /// Every version drawn, with the scores it showed.
    seen: Vec<(u64, Vec<u64>)>,
    /// The type of every frame received.
    kinds: Vec<String>,
}

async fn seat(node: &Node, game_id: &str, robot_id: &str) -> Player {
    let (tx, rx) = mpsc::channel(1024);
    let (game, session) = node
        .connect(game_id, Some(robot_id), Box::new(tx))
        .await
        .unwrap();
    let mut p = Player {
        game,
        session,
        rx,
        drawn: Value::Null,
        seen: Vec::new(),
        kinds: Vec::new(),
    };
    p.read(Duration::from_millis(10)).await;
    p
}

impl Player {
    fn send(&self, msg: ClientMsg) {
        self.game
            .tx
            .try_send(GameMsg::Client(
                self.session,
                msg,
                tokio::time::Instant::now(),
            ))
            .unwrap();
    }

    /// Reads frames for up to `time`.
    async fn read(&mut self, time: Duration) {
        let deadline = tokio::time::Instant::now() + time;
        while let Ok(Some(out)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            let Outbound::Frame(frame) = out else { break };
            let msg: Value = serde_json::from_str(&frame).unwrap();
            self.kinds.extend(msg["type"].as_str().map(str::to_owned));
            let mut game = msg["game"].clone();
            if msg["type"] == "scores" {
                // As the browser: the scores, in the lanes of the last full view.
                game = self.drawn.clone();
                game["version"] = msg["version"].clone();
                let scores = msg["scores"].as_array().unwrap();
                let robots = game["robots"].as_array_mut().unwrap();
                assert_eq!(robots.len(), scores.len(), "scores for other lanes");
                for (robot, score) in robots.iter_mut().zip(scores) {
                    robot["score"] = score.clone();
                }
            }
            let game = &game;
            if game.is_null() {
                continue;
            }
            let version = game["version"].as_u64().unwrap();
            if version > self.drawn["version"].as_u64().unwrap_or(0) {
                let scores = scores(game);
                if let Some((_, last)) = self.seen.last() {
                    let down =
                        last.iter().zip(&scores).any(|(a, b)| b < a) && scores.len() == last.len();
                    assert!(!down, "a score went down: {last:?} -> {scores:?}");
                }
                self.seen.push((version, scores));
                self.drawn = game.clone();
            }
        }
    }

    /// Reads until the drawn game satisfies `pred` (bounded).
    async fn wait(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..400 {
            if pred(&self.drawn) {
                return self.drawn.clone();
            }
            self.read(Duration::from_millis(50)).await;
        }
        if pred(&self.drawn) {
            return self.drawn.clone();
        }
        panic!("timed out; last drawn: {}", self.drawn);
    }
}

fn scores(game: &Value) -> Vec<u64> {
    game["robots"]
        .as_array()
        .map(|rs| rs.iter().map(|r| r["score"].as_u64().unwrap()).collect())
        .unwrap_or_default()
}

fn playing(g: &Value) -> bool {
    g["state"] == "playing"
}

/// One version means one state on every screen.
fn same_versions(players: &[&Player]) {
    let mut by_version = std::collections::HashMap::new();
    for p in players {
        for (v, s) in &p.seen {
            if let Some(other) = by_version.insert(*v, s.clone()) {
                assert_eq!(&other, s, "version {v} showed two states");
            }
        }
    }
}

/// Creates a game on `a` (winning score 50, no countdown), joins bob through `b`, seats both,
/// starts the race.
async fn race(a: &Node, b: &Node) -> (String, Player, Player) {
    let config = GameConfig {
        winning_score: 50,
        countdown: 0,
    };
    let created = a.create(name("ann"), config).await.unwrap();
    let id = created.game_id.clone();
    let bob = b.join(&id, name("bob")).await.unwrap();
    let mut ann = seat(a, &id, &created.robot_id).await;
    let mut bob = seat(b, &id, &bob).await;
    ann.send(ClientMsg::StartCountdown);
    ann.wait(playing).await;
    bob.wait(playing).await;
    (id, ann, bob)
}

fn owned(node: &Node) -> usize {
    node.stats().owned
}

#[tokio::test(start_paused = true)]
async fn create_join_across_nodes_and_forward() {
    let cluster = LocalCluster::new();
    let (a, b, c) = (
        node(&cluster, "a"),
        node(&cluster, "b"),
        node(&cluster, "c"),
    );
    let (id, mut ann, mut bob) = race(&a, &b).await;
    assert_eq!(cluster.owner(&id).as_deref(), Some("a"));
    // A third server reads it as a replica, takes nothing over.
    let game = c.game(&id).await.unwrap();
    assert_eq!(game.robots.len(), 2);
    for _ in 0..5 {
        bob.send(ClientMsg::ScorePoint);
    }
    ann.send(ClientMsg::ScorePoint);
    for p in [&mut ann, &mut bob] {
        p.wait(|g| scores(g) == [1, 5]).await;
    }
    assert_eq!((owned(&a), owned(&b)), (1, 0));
    same_versions(&[&ann, &bob]);
    // The stored state shows both origins' commands applied once.
    let stored: crate::game::Game = serde_json::from_str(&cluster.stored(&id).unwrap()).unwrap();
    assert_eq!(stored.robots[1].score, 5);
}

/// A save can apply several presses at once (they came while the last was in flight): the
/// other servers apply its scores to their copy, the save it follows, and do not read the
/// whole game back from Redis for a version that moved by more than one.
#[tokio::test(start_paused = true)]
async fn scores_that_apply_several_presses_at_once_are_shown_as_scores() {
    let cluster = LocalCluster::new();
    let (a, b) = (node(&cluster, "a"), node(&cluster, "b"));
    let (_id, mut ann, mut bob) = race(&a, &b).await;
    bob.kinds.clear();
    let before = bob.drawn["version"].as_u64().unwrap();
    // Queued together, applied together: one save, the version up by 5.
    for _ in 0..5 {
        ann.send(ClientMsg::ScorePoint);
    }
    let drawn = bob.wait(|g| scores(g) == [5, 0]).await;
    assert_eq!(drawn["version"].as_u64(), Some(before + 5));
    ann.wait(|g| scores(g) == [5, 0]).await;
    assert_eq!(
        bob.kinds,
        ["scores"],
        "one scores frame, no reload: {:?}",
        bob.kinds
    );
    same_versions(&[&ann, &bob]);
}

#[tokio::test(start_paused = true)]
async fn a_dead_owner_is_taken_over_and_no_press_is_lost() {
    let cluster = LocalCluster::new();
    let (a, b) = (node(&cluster, "a"), node(&cluster, "b"));
    let (id, _ann, mut bob) = race(&a, &b).await;
    bob.send(ClientMsg::ScorePoint);
    bob.wait(|g| scores(g) == [0, 1]).await;
    // The owner dies: its presses in flight go nowhere; bob's server finds it gone.
    cluster.kill("a");
    drop(a);
    for _ in 0..4 {
        bob.send(ClientMsg::ScorePoint);
    }
    bob.wait(|g| scores(g) == [0, 5]).await;
    assert_eq!(cluster.owner(&id).as_deref(), Some("b"));
    bob.read(Duration::from_secs(2)).await;
    assert_eq!(scores(&bob.drawn), [0, 5], "a press was applied twice");
}

#[tokio::test(start_paused = true)]
async fn a_cut_off_owner_is_fenced_and_shows_nothing_it_could_not_save() {
    let cluster = LocalCluster::new();
    let (a, b) = (node(&cluster, "a"), node(&cluster, "b"));
    let (id, mut ann, mut bob) = race(&a, &b).await;
    // A is cut off (as a frozen server is) well past its lease; b takes the game over.
    cluster.cut("a", true);
    // While cut off, a runs alone: its player's presses show there.
    ann.send(ClientMsg::ScorePoint);
    ann.read(Duration::from_millis(100)).await;
    tokio::time::sleep(LEASE * 3).await;
    for _ in 0..3 {
        bob.send(ClientMsg::ScorePoint);
    }
    bob.wait(|g| scores(g)[1] == 3).await;
    assert_eq!(cluster.owner(&id).as_deref(), Some("b"));
    // A is back: its save is refused, it steps down, and its player's press is resent to b
    // and applied there once.
    cluster.cut("a", false);
    ann.send(ClientMsg::ScorePoint);
    for p in [&mut ann, &mut bob] {
        p.wait(|g| scores(g) == [2, 3]).await;
    }
    assert_eq!((owned(&a), owned(&b)), (0, 1));
    bob.read(Duration::from_secs(1)).await;
    assert_eq!(scores(&bob.drawn), [2, 3]);
}

#[tokio::test(start_paused = true)]
async fn an_owner_past_its_lease_confirms_it_before_applying() {
    let cluster = LocalCluster::new();
    let (a, _b) = (node(&cluster, "a"), node(&cluster, "b"));
    // Both players on the owner: nobody else needs the game.
    let (id, mut ann, mut bob) = race(&a, &a).await;
    // Nobody renews for a while (as if a was frozen): by a's own clock the lease is over, and
    // Redis let it lapse.
    cluster.cut("a", true);
    tokio::time::sleep(LEASE * 2).await;
    cluster.cut("a", false);
    assert_eq!(cluster.owner(&id), None);
    // Nobody took it meanwhile: a confirms, takes it again, and applies the press once.
    ann.send(ClientMsg::ScorePoint);
    for p in [&mut ann, &mut bob] {
        p.wait(|g| scores(g) == [1, 0]).await;
    }
    assert_eq!(cluster.owner(&id).as_deref(), Some("a"));
    bob.read(Duration::from_secs(1)).await;
    assert_eq!(scores(&bob.drawn), [1, 0]);
    same_versions(&[&ann, &bob]);
}

#[tokio::test(start_paused = true)]
async fn redis_lost_and_back_empty_or_not() {
    for empty in [true, false] {
        let cluster = LocalCluster::new();
        let (a, b) = (node(&cluster, "a"), node(&cluster, "b"));
        let (id, mut ann, mut bob) = race(&a, &b).await;
        ann.send(ClientMsg::ScorePoint);
        bob.wait(|g| scores(g) == [1, 0]).await;
        cluster.down();
        // The owner's players race on alone; the other server's wait.
        ann.send(ClientMsg::ScorePoint);
        ann.wait(|g| scores(g) == [2, 0]).await;
        bob.send(ClientMsg::ScorePoint);
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.back(empty);
        for p in [&mut ann, &mut bob] {
            p.wait(|g| scores(g) == [2, 1]).await;
        }
        assert_eq!(cluster.owner(&id).as_deref(), Some("a"), "empty: {empty}");
        let stored: crate::game::Game =
            serde_json::from_str(&cluster.stored(&id).unwrap()).unwrap();
        assert_eq!(stored.robots[0].score, 2);
        same_versions(&[&ann, &bob]);
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_then_hands_over() {
    let cluster = LocalCluster::new();
    let (a, b) = (node(&cluster, "a"), node(&cluster, "b"));
    let (id, mut ann, mut bob) = race(&a, &b).await;
    for _ in 0..3 {
        bob.send(ClientMsg::ScorePoint);
        ann.send(ClientMsg::ScorePoint);
    }
    // The owner stops while presses are in flight: its own are committed before it lets go,
    // bob's reach whoever owns the game next. None is lost, none counted twice.
    let stopping = tokio::spawn({
        let a = a.clone();
        async move { a.shutdown().await }
    });
    for _ in 0..4 {
        bob.send(ClientMsg::ScorePoint);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    stopping.await.unwrap();
    assert_eq!(cluster.owner(&id).as_deref().unwrap_or("b"), "b");
    bob.wait(|g| scores(g) == [3, 7]).await;
    assert_eq!(cluster.owner(&id).as_deref(), Some("b"));
    // Ann's session was closed with "going away"; she comes back through b.
    let closed = std::iter::from_fn(|| ann.rx.try_recv().ok())
        .any(|o| matches!(o, Outbound::Close(super::CloseWhy::GoingAway)));
    assert!(closed, "ann's session was not closed");
    bob.read(Duration::from_secs(1)).await;
    assert_eq!(scores(&bob.drawn), [3, 7]);
}

#[tokio::test(start_paused = true)]
async fn single_server_mode_commits_at_once() {
    let node = Node::new(
        Arc::new(LocalBus::single("solo".into())),
        Arc::new(Metrics::default()),
        Timing::new(Duration::from_secs(600), LEASE),
        tokio::runtime::Handle::current(),
    );
    node.start();
    let (_, mut ann, bob) = race(&node, &node).await;
    for _ in 0..3 {
        bob.send(ClientMsg::ScorePoint);
    }
    ann.wait(|g| scores(g) == [0, 3]).await;
    assert!(node.game("nope").await.is_err());
    assert_eq!(node.stats().owned, 1);
}

fn single(idle: Duration) -> Node {
    let node = Node::new(
        Arc::new(LocalBus::single("solo".into())),
        Arc::new(Metrics::default()),
        Timing::new(idle, LEASE),
        tokio::runtime::Handle::current(),
    );
    node.start();
    node
}

#[tokio::test(start_paused = true)]
async fn the_countdown_steps_once_a_second_then_the_race_starts() {
    let node = single(Duration::from_secs(600));
    let config = GameConfig {
        winning_score: 5,
        countdown: 3,
    };
    let created = node.create(name("ann"), config).await.unwrap();
    let bob = node.join(&created.game_id, name("bob")).await.unwrap();
    let ann = seat(&node, &created.game_id, &created.robot_id).await;
    let mut bob = seat(&node, &created.game_id, &bob).await;
    let started = tokio::time::Instant::now();
    ann.send(ClientMsg::StartCountdown);
    let mut steps = Vec::new();
    while steps.len() < 4 {
        let Some(Outbound::Frame(frame)) = bob.rx.recv().await else {
            panic!("bob's session ended");
        };
        let msg: Value = serde_json::from_str(&frame).unwrap();
        let game = &msg["game"];
        steps.push((
            game["state"].as_str().unwrap().to_owned(),
            game["countdown"].as_u64().unwrap(),
            started.elapsed().as_secs(),
        ));
    }
    let expected = [
        ("counting_down", 3, 0),
        ("counting_down", 2, 1),
        ("counting_down", 1, 2),
        ("playing", 0, 3),
    ]
    .map(|(s, c, t)| (s.to_owned(), c, t));
    assert_eq!(steps, expected);
}

#[tokio::test(start_paused = true)]
async fn an_idle_game_is_ended_and_its_players_told() {
    let node = single(Duration::from_secs(10));
    let started = tokio::time::Instant::now();
    let created = node
        .create(name("ann"), GameConfig::default())
        .await
        .unwrap();
    let mut ann = seat(&node, &created.game_id, &created.robot_id).await;
    let mut told = false;
    while let Some(out) = ann.rx.recv().await {
        match out {
            Outbound::Frame(f) if f.contains("terminated") => told = true,
            Outbound::Close(super::CloseWhy::Terminated) => break,
            _ => {}
        }
    }
    assert!(told, "no terminated message");
    let idle = started.elapsed();
    assert!(
        idle >= Duration::from_secs(10) && idle <= Duration::from_secs(11),
        "{idle:?}"
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(node.game(&created.game_id).await.is_err());
    assert_eq!(node.stats().owned, 0);
}

#[tokio::test(start_paused = true)]
async fn a_session_that_falls_behind_is_skipped_then_gets_the_newest_state() {
    let node = single(Duration::from_secs(600));
    let (id, ann, mut bob) = race(&node, &node).await;
    // The race has started: a join is refused. A second socket of ann's that stops reading,
    // with room for 4 frames.
    assert!(node.join(&id, name("cy")).await.is_err());
    let (tx, mut stalled) = mpsc::channel(4);
    let (game, _) = node
        .connect(&id, Some(&ann_robot(&ann)), Box::new(tx))
        .await
        .unwrap();
    for _ in 0..10 {
        bob.send(ClientMsg::ScorePoint);
        bob.read(Duration::from_millis(20)).await;
    }
    bob.wait(|g| scores(g) == [0, 10]).await;
    let metrics = node.metrics();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(load(&metrics.sessions_behind), 1);
    assert!(load(&metrics.frames_skipped) >= 6);
    // Its queue never held more than its room: no pile of stale frames.
    let mut queued = Vec::new();
    while let Ok(Outbound::Frame(f)) = stalled.try_recv() {
        queued.push(serde_json::from_str::<Value>(&f).unwrap());
    }
    assert_eq!(queued.len(), 4, "{queued:?}");
    // It reads again: the next change brings the newest full state, then it carries on.
    bob.send(ClientMsg::ScorePoint);
    bob.wait(|g| scores(g) == [0, 11]).await;
    let Some(Outbound::Frame(next)) = stalled.recv().await else {
        panic!("no frame after catching up")
    };
    let next: Value = serde_json::from_str(&next).unwrap();
    assert_eq!(next["type"], "game_update", "{next}");
    assert_eq!(scores(&next["game"]), [0, 11]);
    bob.send(ClientMsg::ScorePoint);
    let Some(Outbound::Frame(after)) = stalled.recv().await else {
        panic!("no frame after the resync")
    };
    let after: Value = serde_json::from_str(&after).unwrap();
    assert_eq!(
        (after["type"].clone(), after["scores"].clone()),
        ("scores".into(), serde_json::json!([0, 12]))
    );
    assert_eq!(load(&metrics.sessions_dropped_slow), 0);
    drop(game);
}

fn ann_robot(p: &Player) -> String {
    p.drawn["robots"][0]["id"].as_str().unwrap().to_owned()
}

impl Player {
    /// Closes this player's socket.
    async fn close(self) {
        self.game
            .tx
            .send(GameMsg::Disconnect(self.session))
            .await
            .unwrap();
    }
}

fn connected(g: &Value) -> Vec<bool> {
    g["robots"]
        .as_array()
        .map(|rs| rs.iter().map(|r| r["connected"] == true).collect())
        .unwrap_or_default()
}

fn admins(g: &Value) -> Vec<bool> {
    g["robots"]
        .as_array()
        .map(|rs| rs.iter().map(|r| r["admin"] == true).collect())
        .unwrap_or_default()
}

/// ann (admin) on a, bob on b, cat on c, all seated, in setup.
async fn three_in_setup(a: &Node, b: &Node, c: &Node) -> (String, [Player; 3]) {
    let created = a.create(name("ann"), GameConfig::default()).await.unwrap();
    let id = created.game_id.clone();
    let bob = b.join(&id, name("bob")).await.unwrap();
    let cat = c.join(&id, name("cat")).await.unwrap();
    let ann = seat(a, &id, &created.robot_id).await;
    let bob = seat(b, &id, &bob).await;
    let mut cat = seat(c, &id, &cat).await;
    cat.wait(|g| connected(g) == [true, true, true]).await;
    (id, [ann, bob, cat])
}

#[tokio::test(start_paused = true)]
async fn presence_crosses_servers_and_the_host_hands_over() {
    let cluster = LocalCluster::new();
    let (a, b, c) = (
        node(&cluster, "a"),
        node(&cluster, "b"),
        node(&cluster, "c"),
    );
    let (_id, [ann, bob, mut cat]) = three_in_setup(&a, &b, &c).await;
    // Bob's tab closes on b: every screen shows him away at once.
    bob.close().await;
    cat.wait(|g| connected(g) == [true, false, true]).await;
    // Only two are connected... the admin's tab closes too: after 10 s, cat (the next
    // connected robot in join order) is the admin.
    ann.close().await;
    let start = tokio::time::Instant::now();
    cat.wait(|g| connected(g) == [false, false, true]).await;
    cat.wait(|g| admins(g) == [false, false, true]).await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took <= Duration::from_secs(12),
        "hand-over after {took:?}"
    );
    // Away for 30 s in setup: removed; cat alone cannot start.
    tokio::time::sleep(Duration::from_secs(10)).await;
    cat.wait(|g| g["robots"].as_array().unwrap().len() == 1)
        .await;
    cat.send(ClientMsg::StartCountdown);
    cat.read(Duration::from_millis(200)).await;
    assert_eq!(cat.drawn["state"], "setup");
}

#[tokio::test(start_paused = true)]
async fn a_dead_servers_players_go_away_and_start_counts_connected_robots() {
    let cluster = LocalCluster::new();
    let (a, b, c) = (
        node(&cluster, "a"),
        node(&cluster, "b"),
        node(&cluster, "c"),
    );
    let (_id, [mut ann, _bob, _cat]) = three_in_setup(&a, &b, &c).await;
    // b and c die without a word: their reports expire and their robots go away.
    cluster.kill("b");
    cluster.kill("c");
    drop((b, c));
    ann.wait(|g| connected(g) == [true, false, false]).await;
    ann.send(ClientMsg::StartCountdown);
    ann.read(Duration::from_millis(200)).await;
    assert_eq!(ann.drawn["state"], "setup", "started with absent robots");
}

#[tokio::test(start_paused = true)]
async fn leaving_in_setup_removes_and_mid_race_stays_away() {
    let cluster = LocalCluster::new();
    let (a, b, c) = (
        node(&cluster, "a"),
        node(&cluster, "b"),
        node(&cluster, "c"),
    );
    let (_id, [mut ann, bob, mut cat]) = three_in_setup(&a, &b, &c).await;
    bob.send(ClientMsg::Leave);
    ann.wait(|g| g["robots"].as_array().unwrap().len() == 2)
        .await;
    ann.send(ClientMsg::StartCountdown);
    cat.wait(|g| g["state"] == "playing").await;
    // The admin leaves mid-race: the lane stays, away; cat leads now.
    ann.send(ClientMsg::Leave);
    cat.wait(|g| connected(g) == [false, true] && admins(g) == [false, true])
        .await;
    ann.send(ClientMsg::ScorePoint);
    cat.send(ClientMsg::ScorePoint);
    cat.wait(|g| scores(g) == [0, 1]).await;
}

#[tokio::test(start_paused = true)]
async fn spectators_see_every_update_and_are_not_players() {
    let cluster = LocalCluster::new();
    let (a, b, c) = (
        node(&cluster, "a"),
        node(&cluster, "b"),
        node(&cluster, "c"),
    );
    let (id, mut ann, mut bob) = race(&a, &b).await;
    let (tx, mut rx) = mpsc::channel(1024);
    let (_game, _session) = c.connect(&id, None, Box::new(tx)).await.unwrap();
    let Some(Outbound::Frame(welcome)) = rx.recv().await else {
        panic!("no welcome")
    };
    let welcome: Value = serde_json::from_str(&welcome).unwrap();
    assert_eq!(welcome["robot_id"], Value::Null);
    assert_eq!(connected(&welcome["game"]), [true, true]);
    bob.send(ClientMsg::ScorePoint);
    ann.wait(|g| scores(g) == [0, 1]).await;
    let mut last = Value::Null;
    while let Ok(Some(Outbound::Frame(f))) =
        tokio::time::timeout(Duration::from_millis(500), rx.recv()).await
    {
        last = serde_json::from_str(&f).unwrap();
    }
    assert_eq!(last["scores"], serde_json::json!([0, 1]), "{last}");
    // A spectator is nobody's presence: the players are still the two of them.
    bob.wait(|g| connected(g) == [true, true]).await;
}

#[tokio::test(start_paused = true)]
async fn a_press_that_waited_too_long_is_answered_overloaded_not_applied() {
    let cluster = LocalCluster::new();
    let (a, b) = (node(&cluster, "a"), node(&cluster, "b"));
    let (_id, mut ann, mut bob) = race(&a, &b).await;
    // A press that reached the server 300 ms ago and only now reaches its game.
    let late = tokio::time::Instant::now() - Duration::from_millis(300);
    bob.game
        .tx
        .try_send(GameMsg::Client(bob.session, ClientMsg::ScorePoint, late))
        .unwrap();
    let mut answered = None;
    while let Ok(Some(Outbound::Frame(f))) =
        tokio::time::timeout(Duration::from_millis(200), bob.rx.recv()).await
    {
        let msg: Value = serde_json::from_str(&f).unwrap();
        if msg["type"] == "error" {
            answered = Some(msg);
        }
    }
    assert_eq!(
        answered.map(|m| m["error"].clone()),
        Some("overloaded".into())
    );
    assert_eq!(
        b.metrics()
            .overloaded
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // A fresh press still counts; the late one never does.
    bob.send(ClientMsg::ScorePoint);
    ann.wait(|g| scores(g) == [0, 1]).await;
    ann.read(Duration::from_millis(500)).await;
    assert_eq!(scores(&ann.drawn), [0, 1]);
    // The owner timed the press from its arrival to its broadcast.
    let (_, _, count) = a.metrics().press_to_broadcast.snapshot();
    assert_eq!(count, 1);
}

#[tokio::test(start_paused = true)]
async fn a_redis_outage_marks_nobody_away_and_hands_nothing_over() {
    let cluster = LocalCluster::new();
    let (a, b) = (node(&cluster, "a"), node(&cluster, "b"));
    // Bob's robot is on b; b's reports cannot reach the owner while Redis is down.
    let created = a.create(name("ann"), GameConfig::default()).await.unwrap();
    let bob = b.join(&created.game_id, name("bob")).await.unwrap();
    let mut ann = seat(&a, &created.game_id, &created.robot_id).await;
    let _bob = seat(&b, &created.game_id, &bob).await;
    ann.wait(|g| connected(g) == [true, true]).await;
    cluster.down();
    ann.read(Duration::from_secs(45)).await;
    assert_eq!(connected(&ann.drawn), [true, true], "{}", ann.drawn);
    cluster.back(false);
    ann.read(Duration::from_secs(15)).await;
    assert_eq!(connected(&ann.drawn), [true, true], "{}", ann.drawn);
    assert_eq!(ann.drawn["robots"].as_array().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_stale_scores_save_is_saved_whole_and_nothing_shown_is_lost() {
    use crate::game::Game;
    let stored = |c: &LocalCluster, id: &str| -> Game {
        serde_json::from_str(&c.stored(id).unwrap()).unwrap()
    };
    let cluster = LocalCluster::new();
    let (a, b) = (node(&cluster, "a"), node(&cluster, "b"));
    let (id, mut ann, mut bob) = race(&a, &b).await;
    let mut presses = 0;
    // Scores-only saves are patched into the stored game.
    let patched = cluster.patched();
    ann.send(ClientMsg::ScorePoint);
    presses += 1;
    bob.wait(|g| scores(g) == [1, 0]).await;
    assert!(cluster.patched() > patched, "no scores-only save");
    assert_eq!(stored(&cluster, &id), a.game(&id).await.unwrap());
    // Behind the owner's back, Redis loses the game, then holds another version of it
    // (as after a failover that lost writes): the next scores-only save finds it stale and
    // the owner saves the whole game; the press is shown once that commits, never lost.
    let mut other = stored(&cluster, &id);
    other.version -= 1;
    other.robots[0].name = "zed".into();
    other.robots[1].previous_wins = 9;
    let other = other.stored_json();
    for tampered in [None, Some(other)] {
        cluster.put_stored(&id, tampered);
        ann.send(ClientMsg::ScorePoint);
        bob.send(ClientMsg::ScorePoint);
        presses += 2;
        let want = [presses / 2 + 1, presses / 2];
        for p in [&mut ann, &mut bob] {
            p.wait(|g| scores(g) == want).await;
        }
        assert_eq!(stored(&cluster, &id), a.game(&id).await.unwrap());
    }
    // And scores-only saves carry on from the whole one.
    let patched = cluster.patched();
    bob.send(ClientMsg::ScorePoint);
    presses += 1;
    ann.wait(|g| scores(g) == [3, 3]).await;
    assert!(cluster.patched() > patched);
    let game = stored(&cluster, &id);
    assert_eq!(game, a.game(&id).await.unwrap());
    assert_eq!(
        (game.robots[0].name.as_str(), game.robots[1].previous_wins),
        ("ann", 0)
    );
    same_versions(&[&ann, &bob]);
    // Every press was shown (and timed) by the owner exactly once.
    let (_, _, count) = a.metrics().press_to_broadcast.snapshot();
    assert_eq!(count, presses);
    assert_eq!((owned(&a), owned(&b)), (1, 0));
}
