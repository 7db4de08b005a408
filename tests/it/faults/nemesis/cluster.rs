//! The nemesis's cluster: one Redis (AOF, fsync on every write) in a data directory of the
//! run's own, three servers each reaching it through its own proxy, and how each fault is
//! applied and healed on them. Every process is stopped by its guard, also on a panic.

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Instant;

use super::schedule::{Fault, Planned};
use crate::helpers::*;

/// The ownership lease the servers run with (`-owner-lease-ms`), as in the other fault tests.
pub(super) const LEASE_MS: u64 = 1000;
/// Every server signs tokens with this: a token stays valid on a server started after Redis
/// lost the shared secret it keeps otherwise.
const SECRET: &str = "nemesis-secret-shared-by-every-server";

/// Redis's data directory, removed when the run ends.
struct DataDir(PathBuf);

impl DataDir {
    /// Deletes every file Redis wrote there (the AOF directory with it).
    fn wipe(&self) {
        let _ = std::fs::remove_dir_all(&self.0);
        std::fs::create_dir_all(&self.0).expect("recreate Redis's data directory");
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) struct Cluster {
    /// `None` only while a blocking step starts it again off the test's thread.
    pub redis: Option<Redis>,
    pub proxies: Vec<Proxy>,
    /// `None` only while a blocking step starts one again off the test's thread.
    pub servers: Vec<Option<Server>>,
    /// Per server, the logs of each process it ran before its restarts.
    pub old_logs: Vec<Vec<Lines>>,
    /// Per server, when it was killed (just before the signal).
    pub kills: Vec<Vec<Instant>>,
    // Dropped last: after Redis has stopped writing there.
    data: DataDir,
}

impl Cluster {
    /// Redis with `appendonly yes` and `appendfsync always` in a directory of its own, and `n`
    /// servers, each connected to it through its own proxy.
    pub(super) fn start(n: usize, seed: u64) -> Cluster {
        let data = DataDir(temp_dir(&format!("nemesis-{seed}")));
        let dir = data.0.to_string_lossy().into_owned();
        let redis = Redis::start_with(&[
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            &dir,
        ]);
        let proxies: Vec<Proxy> = (0..n).map(|_| Proxy::start(redis.port)).collect();
        let servers = proxies
            .iter()
            .enumerate()
            .map(|(i, proxy)| Some(node(&proxy.addr(), &format!("node{i}"))))
            .collect();
        Cluster {
            redis: Some(redis),
            proxies,
            servers,
            old_logs: vec![Vec::new(); n],
            kills: vec![Vec::new(); n],
            data,
        }
    }

    pub(super) fn server(&self, i: usize) -> &Server {
        self.servers[i]
            .as_ref()
            .expect("the server is being restarted")
    }

    pub(super) fn redis(&self) -> &Redis {
        self.redis.as_ref().expect("Redis is being restarted")
    }

    /// Every log line of every server process, restarted ones included.
    pub(super) fn all_logs(&self) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        for (i, old) in self.old_logs.iter().enumerate() {
            out.extend(old.iter().map(|l| (i, l.all())));
            if let Some(s) = &self.servers[i] {
                out.push((i, s.logs.all()));
            }
        }
        out
    }
}

/// A server on the Redis at `addr` (its proxy), with the tests' lease and the shared secret,
/// once it says it is connected.
fn node(addr: &str, name: &str) -> Server {
    let lease = LEASE_MS.to_string();
    let server = Server::start(&[
        "-redis",
        addr,
        "-node-id",
        name,
        "-owner-lease-ms",
        &lease,
        "-secret",
        SECRET,
    ]);
    assert!(
        server
            .logs
            .wait_for(&format!("Connected to Redis at {addr}"), SECS(20)),
        "{name} did not connect to Redis:\n{}",
        server.logs.all()
    );
    server
}

/// A fault healed.
pub(super) struct Healed {
    pub at: Instant,
    /// The fault was not what it says (Redis back with its data when it was to come back
    /// empty, or the reverse).
    pub misfire: Option<String>,
}

/// Applies `planned` at its time after `t0`, holds it, heals it. What was done, and when, goes
/// to `log`.
pub(super) async fn run_fault(
    cluster: &RefCell<Cluster>,
    planned: Planned,
    t0: Instant,
    log: &RefCell<Vec<String>>,
) -> Healed {
    let at = t0 + planned.start;
    actix_rt::time::sleep(at.saturating_duration_since(Instant::now())).await;
    let note = |what: String| {
        let t = t0.elapsed().as_secs_f64();
        log.borrow_mut().push(format!("+{t:6.2}s {what}"));
    };
    note(format!("apply: {}", planned.fault));
    let hold = planned.hold;
    let mut misfire = None;
    match planned.fault {
        Fault::Cut(i) => {
            cluster.borrow().proxies[i].set(Link::Hold);
            actix_rt::time::sleep(hold).await;
            cluster.borrow().proxies[i].set(Link::Forward);
        }
        Fault::Slow(i, delay) => {
            cluster.borrow().proxies[i].set(Link::Delay(delay));
            actix_rt::time::sleep(hold).await;
            cluster.borrow().proxies[i].set(Link::Forward);
        }
        Fault::Freeze(i) => {
            let frozen = Frozen::new(cluster.borrow().server(i));
            actix_rt::time::sleep(hold).await;
            frozen.thaw();
        }
        Fault::Kill(i) => {
            let dead_until = Instant::now() + hold;
            {
                let mut c = cluster.borrow_mut();
                c.kills[i].push(Instant::now());
                let server = c.servers[i].as_mut().expect("server");
                server.kill();
                let logs = server.logs.clone();
                c.old_logs[i].push(logs);
            }
            actix_rt::time::sleep(dead_until.saturating_duration_since(Instant::now())).await;
            let server = cluster.borrow_mut().servers[i].take().expect("server");
            let server = off_thread(move || {
                let mut server = server;
                server.restart();
                server
            })
            .await;
            cluster.borrow_mut().servers[i] = Some(server);
        }
        Fault::RedisFreeze => {
            let frozen = Frozen::pid(cluster.borrow().redis().pid());
            actix_rt::time::sleep(hold).await;
            frozen.thaw();
        }
        Fault::RedisKill | Fault::RedisEmpty => {
            let until = Instant::now() + hold;
            {
                let mut c = cluster.borrow_mut();
                c.redis.as_mut().expect("redis").kill();
                if planned.fault == Fault::RedisEmpty {
                    c.data.wipe();
                }
            }
            actix_rt::time::sleep(until.saturating_duration_since(Instant::now())).await;
            let redis = cluster.borrow_mut().redis.take().expect("redis");
            let (redis, keys) = off_thread(move || {
                let mut redis = redis;
                redis.launch();
                let keys = dbsize(&redis);
                (redis, keys)
            })
            .await;
            let loaded = redis.logs.contains("DB loaded from append only file");
            cluster.borrow_mut().redis = Some(redis);
            note(format!(
                "Redis started again: {keys} key(s){}",
                if loaded {
                    ", loaded from its AOF"
                } else {
                    ", no AOF loaded"
                }
            ));
            let empty = planned.fault == Fault::RedisEmpty;
            if loaded == empty || (!empty && keys == 0) {
                misfire = Some(format!(
                    "{}: Redis came back with {keys} key(s), AOF loaded: {loaded}",
                    planned.fault
                ));
            }
        }
    }
    note(format!("healed: {}", planned.fault));
    Healed {
        at: Instant::now(),
        misfire,
    }
}

/// Keys in Redis.
fn dbsize(redis: &Redis) -> u64 {
    let mut conn = redis
        .client()
        .get_connection()
        .expect("connect to test redis");
    redis::cmd("DBSIZE").query(&mut conn).expect("DBSIZE")
}

/// Leaves everything as a healthy cluster has it: every link forwarding, every process running
/// (the faults heal themselves; this makes sure of it after the schedule).
pub(super) fn heal_all(cluster: &RefCell<Cluster>) {
    let c = cluster.borrow();
    for proxy in &c.proxies {
        proxy.set(Link::Forward);
    }
    for (i, s) in c.servers.iter().enumerate() {
        let s = s
            .as_ref()
            .unwrap_or_else(|| panic!("server {i} is not back"));
        signal_pid(s.pid(), "CONT");
    }
    signal_pid(c.redis().pid(), "CONT");
}
