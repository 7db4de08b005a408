//! Redis Cluster: three servers on a 6-node cluster (3 masters, 3 replicas, built with
//! `redis-cli --cluster create`) race across servers with every score exact, and play on
//! through a `CLUSTER FAILOVER` of the game's master and through the game's slot migrating to
//! another master, with no acknowledged press lost.

use std::cell::Cell;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redis::Value;

use super::{health, nothing_lost, play_resumes};
use crate::faults::{notable_logs, race_all_through, six_players_racing, PRESS_EVERY};
use crate::helpers::*;

/// The most any of these tests may take, set-up included.
const TEST_LIMIT: Duration = Duration::from_secs(150);

/// Six cluster-enabled `redis-server`s on free loopback ports, joined into one cluster.
struct RedisCluster {
    nodes: Vec<Redis>,
    /// Each node's directory (its `nodes.conf`), removed at the end.
    dirs: Vec<PathBuf>,
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn query(port: u16, args: &[&str]) -> redis::RedisResult<Value> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut conn = client.get_connection_with_timeout(SECS(2))?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut conn)
}

fn text(port: u16, args: &[&str]) -> String {
    match query(port, args) {
        Ok(Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
        Ok(Value::SimpleString(s)) | Ok(Value::VerbatimString { text: s, .. }) => s,
        Ok(other) => format!("{other:?}"),
        Err(e) => format!("error: {e}"),
    }
}

impl RedisCluster {
    fn start() -> RedisCluster {
        require("redis-server", "redis-server");
        require("redis-cli", "redis-tools");
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        for _ in 0..6 {
            let dir = temp_dir(&format!("cluster-node-{}", free_port()));
            let dir_text = dir.to_string_lossy().into_owned();
            // The cluster bus on a port of its own (by default it is the port + 10000, which
            // may not be free, or not exist), picked again if a start finds it taken.
            nodes.push(Redis::start_retrying(|| {
                // A start that failed may have written its node ID: start anew.
                let _ = std::fs::remove_file(dir.join("nodes.conf"));
                let bus = free_port().to_string();
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                    "--cluster-port",
                    &bus,
                    "--dir",
                    &dir_text,
                ]
                .map(String::from)
                .to_vec()
            }));
            dirs.push(dir);
        }
        let cluster = RedisCluster { nodes, dirs };
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(node.addr());
        }
        create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = create
            .spawn()
            .expect("cannot run redis-cli --cluster create");
        let deadline = Instant::now() + SECS(30);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    let out = child.wait_with_output().ok();
                    assert!(
                        status.success(),
                        "redis-cli --cluster create failed: {out:?}"
                    );
                    break;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                _ => {
                    let _ = child.kill();
                    panic!("redis-cli --cluster create took over 30 s");
                }
            }
        }
        // Every node agrees the cluster is up and knows all six, and every master has its
        // replica.
        let deadline = Instant::now() + SECS(30);
        while !cluster.nodes.iter().all(|n| {
            let info = text(n.port, &["CLUSTER", "INFO"]);
            info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:6")
        }) || [0, 5500, 11000]
            .iter()
            .any(|s| cluster.serving(*s).len() < 2)
        {
            assert!(
                Instant::now() < deadline,
                "the cluster did not come up within 30 s: {}",
                text(cluster.nodes[0].port, &["CLUSTER", "INFO"])
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        cluster
    }

    /// `-redis-cluster`'s value: three of the six nodes as seeds.
    fn seeds(&self) -> String {
        let addrs: Vec<String> = self.nodes[..3].iter().map(|n| n.addr()).collect();
        addrs.join(",")
    }

    fn port(&self) -> u16 {
        self.nodes[0].port
    }

    fn slot_of(&self, key: &str) -> u16 {
        match query(self.port(), &["CLUSTER", "KEYSLOT", key]) {
            Ok(Value::Int(n)) => n as u16,
            other => panic!("CLUSTER KEYSLOT {key}: {other:?}"),
        }
    }

    /// The ports serving `slot` as node 0 sees it: the master, then its replicas.
    fn serving(&self, slot: u16) -> Vec<u16> {
        let Ok(Value::Array(ranges)) = query(self.port(), &["CLUSTER", "SLOTS"]) else {
            return Vec::new();
        };
        for range in ranges {
            let Value::Array(parts) = range else { continue };
            let (Some(Value::Int(start)), Some(Value::Int(end))) = (parts.first(), parts.get(1))
            else {
                continue;
            };
            if (*start..=*end).contains(&i64::from(slot)) {
                return parts[2..]
                    .iter()
                    .filter_map(|node| match node {
                        Value::Array(n) => match n.get(1) {
                            Some(Value::Int(port)) => Some(*port as u16),
                            _ => None,
                        },
                        _ => None,
                    })
                    .collect();
            }
        }
        Vec::new()
    }

    fn masters(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .map(|n| n.port)
            .filter(|p| is_master(*p))
            .collect()
    }

    fn id_of(&self, port: u16) -> String {
        text(port, &["CLUSTER", "MYID"])
    }

    /// Moves `slot` from its master to another master, keys and all, the way
    /// `redis-cli --cluster reshard` does: IMPORTING on the target, MIGRATING on the source,
    /// MIGRATE the keys in batches, then SETSLOT NODE on the target, the source and the other
    /// masters. Returns the target's port.
    fn migrate(&self, slot: u16) -> u16 {
        let source = self.serving(slot)[0];
        let masters = self.masters();
        let target = *masters
            .iter()
            .find(|p| **p != source)
            .expect("another master");
        let (source_id, target_id) = (self.id_of(source), self.id_of(target));
        let slot_text = slot.to_string();
        let ok = |port: u16, args: &[&str]| {
            let answer = query(port, args);
            assert!(answer.is_ok(), "{args:?} on {port}: {answer:?}");
        };
        ok(
            target,
            &["CLUSTER", "SETSLOT", &slot_text, "IMPORTING", &source_id],
        );
        ok(
            source,
            &["CLUSTER", "SETSLOT", &slot_text, "MIGRATING", &target_id],
        );
        let target_port = target.to_string();
        loop {
            let keys = match query(source, &["CLUSTER", "GETKEYSINSLOT", &slot_text, "100"]) {
                Ok(Value::Array(keys)) => keys
                    .into_iter()
                    .filter_map(|k| match k {
                        Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
                other => panic!("GETKEYSINSLOT: {other:?}"),
            };
            if keys.is_empty() {
                break;
            }
            let mut args = vec![
                "MIGRATE",
                "127.0.0.1",
                target_port.as_str(),
                "",
                "0",
                "5000",
                "KEYS",
            ];
            args.extend(keys.iter().map(String::as_str));
            ok(source, &args);
        }
        ok(
            target,
            &["CLUSTER", "SETSLOT", &slot_text, "NODE", &target_id],
        );
        ok(
            source,
            &["CLUSTER", "SETSLOT", &slot_text, "NODE", &target_id],
        );
        for master in masters.iter().filter(|p| **p != source && **p != target) {
            ok(
                *master,
                &["CLUSTER", "SETSLOT", &slot_text, "NODE", &target_id],
            );
        }
        target
    }
}

fn is_master(port: u16) -> bool {
    matches!(query(port, &["ROLE"]), Ok(Value::Array(ref items))
        if matches!(items.first(), Some(Value::BulkString(b)) if b == b"master"))
}

/// Three servers on the cluster, each once it says it is connected.
fn servers_on(cluster: &RedisCluster) -> Vec<Server> {
    let seeds = cluster.seeds();
    (0..3)
        .map(|i| {
            let name = format!("node{i}");
            let server = Server::start(&["-redis-cluster", &seeds, "-node-id", &name]);
            assert!(
                server.logs.wait_for("multi-server mode enabled", SECS(20)),
                "{name} did not join the cluster:\n{}",
                server.logs.all()
            );
            server
        })
        .collect()
}

enum Fault {
    /// None: the race alone.
    Nothing,
    /// `CLUSTER FAILOVER` on the replica of the game's master.
    Failover,
    /// The game's slot moves to another master, keys and all.
    Migrate,
}

/// Six players on three servers race; `fault` strikes 1.5 s in and presses go on for 4 s
/// more. Then: a press of every player moves its robot within 10 s of the fault, every screen
/// agrees, and every press sent was applied once or answered.
async fn race_through(fault: Fault) {
    let started = Instant::now();
    let cluster = RedisCluster::start();
    let servers = servers_on(&cluster);
    let before = health(&servers[1]).await;
    assert_eq!(before["topology"], "cluster", "{before}");
    assert_eq!(before["redis"], "connected", "{before}");
    let mut players = six_players_racing(&servers).await;
    let game_id = players[0].joined.game_id.clone();
    let slot = cluster.slot_of(&format!("game_state:{{{game_id}}}"));
    assert_eq!(slot, cluster.slot_of(&format!("game:{{{game_id}}}")));
    let serving = cluster.serving(slot);
    println!(
        "cluster up and racing after {:?}; game {game_id} in slot {slot} on {serving:?}",
        started.elapsed()
    );

    let pressing = Cell::new(true);
    let struck = Cell::new(None);
    let control = async {
        actix_rt::time::sleep(Duration::from_millis(1500)).await;
        struck.set(Some(Instant::now()));
        match fault {
            Fault::Nothing => {}
            Fault::Failover => {
                let replica = serving[1];
                let answer = off_thread(move || query(replica, &["CLUSTER", "FAILOVER"])).await;
                assert!(answer.is_ok(), "CLUSTER FAILOVER: {answer:?}");
            }
            Fault::Migrate => {
                let to = cluster.migrate(slot);
                println!("slot {slot} moved to {to}");
            }
        }
        actix_rt::time::sleep(SECS(4)).await;
        pressing.set(false);
    };
    race_all_through(&mut players, PRESS_EVERY, &pressing, control).await;
    let struck = struck.get().unwrap_or_else(Instant::now);
    let now_serving = cluster.serving(slot);
    if !matches!(fault, Fault::Nothing) {
        // Every server but the owner (each has players in the game) followed the game's
        // channel; the owner (server 0, which created it) needs no relay of its own changes.
        let line = format!("game:{{{game_id}}} is no longer subscribed");
        let followed: Vec<bool> = servers[1..]
            .iter()
            .map(|s| s.logs.contains(&line))
            .collect();
        assert!(
            followed.iter().all(|f| *f),
            "not every replica subscribed to the game again (servers 1, 2): {followed:?}\n{}",
            notable_logs(&servers)
        );
    }
    match fault {
        Fault::Nothing => {}
        Fault::Failover => assert_eq!(
            now_serving.first(),
            serving.get(1),
            "the replica did not take over: {now_serving:?}"
        ),
        Fault::Migrate => assert_ne!(
            now_serving.first(),
            serving.first(),
            "the slot did not move: {now_serving:?}"
        ),
    }
    // Play resumes: a press on every server moves its player's robot, within 10 s of the fault.
    let resumed = play_resumes(&mut players, &servers, struck).await;
    println!("presses moved robots after {resumed:?} (slot {slot} now on {now_serving:?})");
    nothing_lost(&mut players, &servers).await;
    // The stored game agrees with what every screen shows.
    let stored = text(
        now_serving[0],
        &["GET", &format!("game_state:{{{game_id}}}")],
    );
    assert!(stored.contains("\"robots\""), "stored game: {stored}");
    println!("done after {:?}", started.elapsed());
}

async fn bounded(fault: Fault) {
    let limit = actix_rt::time::timeout(TEST_LIMIT, race_through(fault)).await;
    assert!(limit.is_ok(), "the test took over {TEST_LIMIT:?}");
}

/// Three servers on a 6-node Redis Cluster race across servers: every score exact, every
/// press applied once or answered, the game's keys in one slot.
#[actix_rt::test]
async fn cluster_race_across_servers_every_score_exact() {
    bounded(Fault::Nothing).await;
}

/// `CLUSTER FAILOVER` on the replica of the game's master mid-race: play resumes within
/// 10 s, no acknowledged press lost.
#[actix_rt::test]
async fn cluster_failover_mid_race_loses_no_press() {
    bounded(Fault::Failover).await;
}

/// The game's slot migrates to another master mid-race: play resumes within 10 s, nothing
/// lost.
#[actix_rt::test]
async fn cluster_slot_migration_mid_race_loses_no_press() {
    bounded(Fault::Migrate).await;
}
