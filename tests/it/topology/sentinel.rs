//! Redis Sentinel: three servers follow the master through a failover (`SENTINEL FAILOVER`)
//! and through the master being killed, mid-race, with no acknowledged press lost.

use std::cell::Cell;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{health, nothing_lost, play_resumes};
use crate::faults::{notable_logs, race_all_through, six_players_racing, PRESS_EVERY};
use crate::helpers::*;

const MASTER_NAME: &str = "mymaster";

/// A `redis-server --sentinel` owned by the test.
struct Sentinel {
    child: Option<Child>,
    port: u16,
    logs: Lines,
    /// Holds its config file (Sentinel rewrites it).
    dir: PathBuf,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Sentinel {
    fn start(master_port: u16) -> Sentinel {
        let port = free_port();
        let dir = temp_dir(&format!("sentinel-{port}"));
        let conf = dir.join("sentinel.conf");
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
             sentinel failover-timeout {MASTER_NAME} 4000\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            dir = dir.display()
        );
        std::fs::write(&conf, text).expect("write sentinel.conf");
        let mut child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start redis-server --sentinel");
        let logs = Lines::default();
        if let Some(out) = child.stdout.take() {
            logs.follow(out, None);
        }
        if let Some(err) = child.stderr.take() {
            logs.follow(err, None);
        }
        let sentinel = Sentinel {
            child: Some(child),
            port,
            logs,
            dir,
        };
        assert!(
            sentinel
                .logs
                .wait_for(&format!("+monitor master {MASTER_NAME}"), SECS(10)),
            "redis-server --sentinel did not start:\n{}",
            sentinel.logs.all()
        );
        sentinel
    }

    fn query(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port))?;
        let mut conn = client.get_connection_with_timeout(SECS(2))?;
        let mut cmd = redis::cmd("SENTINEL");
        for a in args {
            cmd.arg(*a);
        }
        cmd.query(&mut conn)
    }

    /// How many entries `SENTINEL <what> mymaster` lists.
    fn count(&self, what: &str) -> usize {
        match self.query(&[what, MASTER_NAME]) {
            Ok(redis::Value::Array(items)) => items.len(),
            _ => 0,
        }
    }

    fn master(&self) -> Option<String> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port)).ok()?;
        let mut conn = client.get_connection_with_timeout(SECS(2)).ok()?;
        let (host, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(MASTER_NAME)
            .query(&mut conn)
            .ok()?;
        Some(format!("{host}:{port}"))
    }
}

/// A master, one replica and three Sentinels (quorum 2) that know each other.
struct SentinelSet {
    master: Redis,
    replica: Redis,
    sentinels: Vec<Sentinel>,
    /// The master's and the replica's data directories, removed at the end.
    dirs: [PathBuf; 2],
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        self.master.kill();
        self.replica.kill();
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl SentinelSet {
    fn start() -> SentinelSet {
        // Each in its own directory: nothing is loaded from another test's dump.
        let dirs = [
            temp_dir(&format!("sentinel-master-{}", free_port())),
            temp_dir(&format!("sentinel-replica-{}", free_port())),
        ];
        let (master_dir, replica_dir) = (
            dirs[0].to_string_lossy().into_owned(),
            dirs[1].to_string_lossy().into_owned(),
        );
        let fast_sync = [
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
        ];
        let mut master_args = vec!["--dir", master_dir.as_str()];
        master_args.extend(fast_sync);
        let master = Redis::start_with(&master_args);
        let master_port = master.port.to_string();
        let mut replica_args = vec![
            "--dir",
            replica_dir.as_str(),
            "--replicaof",
            "127.0.0.1",
            master_port.as_str(),
        ];
        replica_args.extend(fast_sync);
        let replica = Redis::start_with(&replica_args);
        assert!(
            replica
                .logs
                .wait_for("MASTER <-> REPLICA sync: Finished with success", SECS(15)),
            "the replica did not sync:\n{}",
            replica.logs.all()
        );
        let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(master.port)).collect();
        // Sentinels find each other and the replica through the master (hello messages every
        // 2 s, INFO every 10 s at first): wait until each knows both others and the replica,
        // or a failover could not be agreed.
        let deadline = Instant::now() + SECS(30);
        while !sentinels
            .iter()
            .all(|s| s.count("sentinels") == 2 && s.count("replicas") == 1)
        {
            assert!(
                Instant::now() < deadline,
                "the Sentinels did not find each other and the replica within 30 s:\n{}",
                sentinels[0].logs.all()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        SentinelSet {
            master,
            replica,
            sentinels,
            dirs,
        }
    }

    /// `-redis-sentinel`'s value.
    fn list(&self) -> String {
        let addrs: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        addrs.join(",")
    }

    fn failover(&self) {
        let answer = self.sentinels[0].query(&["FAILOVER", MASTER_NAME]);
        assert!(answer.is_ok(), "SENTINEL FAILOVER: {answer:?}");
    }
}

enum Fault {
    /// `SENTINEL FAILOVER mymaster`: the replica is promoted, the old master demoted.
    Failover,
    /// The master is killed; the Sentinels notice (1 s) and promote the replica.
    KillMaster,
}

/// Three servers on the Sentinels; six players, two on each, race; `fault` strikes 1.5 s in,
/// presses go on through it for as long again as the servers took to find the new master,
/// plus two seconds. Then: every server logged the new master, a press of every player moved
/// its robot within 10 s of the fault, and every press sent was applied once or answered.
async fn race_through(fault: Fault) {
    let mut set = SentinelSet::start();
    let list = set.list();
    let (old, new) = (set.master.addr(), set.replica.addr());
    let servers: Vec<Server> = (0..3)
        .map(|i| {
            let name = format!("node{i}");
            let server = Server::start(&["-redis-sentinel", &list, "-node-id", &name]);
            assert!(
                server
                    .logs
                    .wait_for(&format!("Connected to Redis at {old}"), SECS(20)),
                "{name} did not connect to the master:\n{}",
                server.logs.all()
            );
            server
        })
        .collect();
    let before = health(&servers[1]).await;
    assert_eq!(before["topology"], "sentinel", "{before}");
    assert_eq!(before["redis_master"], old.as_str(), "{before}");
    let mut players = six_players_racing(&servers).await;

    let pressing = Cell::new(true);
    let struck = Cell::new(None);
    let switched = Cell::new(None);
    let control = async {
        actix_rt::time::sleep(Duration::from_millis(1500)).await;
        struck.set(Some(Instant::now()));
        match fault {
            Fault::Failover => set.failover(),
            Fault::KillMaster => set.master.kill(),
        }
        let line = format!("Redis master is now {new} (Sentinel failover)");
        for s in &servers {
            s.logs.wait_for_async(&line, SECS(10)).await;
        }
        switched.set(struck.get().map(|t| t.elapsed()));
        actix_rt::time::sleep(SECS(2)).await;
        pressing.set(false);
    };
    race_all_through(&mut players, PRESS_EVERY, &pressing, control).await;
    let struck = struck.get().unwrap_or_else(Instant::now);
    let line = format!("Redis master is now {new} (Sentinel failover)");
    let followed: Vec<bool> = servers.iter().map(|s| s.logs.contains(&line)).collect();
    assert!(
        followed.iter().all(|f| *f),
        "not every server followed the failover to {new} within 10 s: {followed:?}\n{}",
        notable_logs(&servers)
    );
    // Play resumes: a press on every server moves its player's robot, within 10 s of the fault.
    let resumed = play_resumes(&mut players, &servers, struck).await;
    println!(
        "servers on the new master {:?} after the fault; presses moved robots after {resumed:?}",
        switched.get()
    );
    nothing_lost(&mut players, &servers).await;
    let after = health(&servers[2]).await;
    assert_eq!(after["redis_master"], new.as_str(), "{after}");
    assert_eq!(set.sentinels[0].master().as_deref(), Some(new.as_str()));
}

/// `SENTINEL FAILOVER` mid-race: the servers move to the promoted replica and play resumes
/// within 10 s, every press sent applied once or answered.
#[actix_rt::test]
async fn sentinel_failover_mid_race_loses_no_press() {
    race_through(Fault::Failover).await;
}

/// The master killed mid-race: the Sentinels promote the replica, the servers follow, play
/// resumes within 10 s, every press sent applied once or answered.
#[actix_rt::test]
async fn sentinel_master_killed_mid_race_loses_no_press() {
    race_through(Fault::KillMaster).await;
}

/// Three Sentinels that accept a connection and never answer, listed before the one that
/// works (in front of one master): the server still finds the master, at once, on its first
/// attempt, rather than waiting on each silent one in turn.
#[actix_rt::test]
async fn silent_sentinels_listed_first_do_not_keep_the_server_from_the_master() {
    let master = Redis::start();
    let sentinel = Sentinel::start(master.port);
    // Listening, never accepting: the kernel completes each connection, nobody answers.
    let silent: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let mut list: Vec<String> = silent
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    list.push(format!("127.0.0.1:{}", sentinel.port));
    let started = Instant::now();
    let server = Server::start(&["-redis-sentinel", &list.join(","), "-node-id", "n"]);
    let line = format!("Connected to Redis at {}", master.addr());
    let connected = server.logs.wait_for(&line, SECS(20));
    let took = started.elapsed();
    println!(
        "connected to the master {:?} after start",
        connected.then_some(took)
    );
    // Well under one Redis timeout (3 s) per silent Sentinel.
    assert!(
        connected && took <= SECS(3),
        "with 3 silent Sentinels listed first, connected: {connected} after {took:?} (at most 3 s)\n{}",
        server.logs.all()
    );
}
