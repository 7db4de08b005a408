//! Measuring: latency percentiles, a process's CPU time, memory and context switches (from
//! `/proc`), Redis's counters, and a server's pub/sub count (from its `/metrics`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::protocol::Protocol;

/// Pub/sub messages on game channels a server has received from Redis (its `/metrics`; the
/// Socket.IO peer has none).
pub fn pubsub_received(protocol: Protocol, url: &str) -> Option<u64> {
    use std::io::{Read, Write};
    if protocol != Protocol::RobotRace {
        return None;
    }
    let addr = url.strip_prefix("http://")?.trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    body.lines().find_map(|l| {
        l.strip_prefix("robot_race_pubsub_messages_received_total{channel=\"game\"} ")?
            .trim()
            .parse()
            .ok()
    })
}

pub fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

pub fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// Percentiles of sorted microsecond samples, in ms.
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub count: usize,
}

impl Percentiles {
    pub fn of(sorted: &[u32]) -> Self {
        let at = |p: f64| {
            if sorted.is_empty() {
                return 0.0;
            }
            // Nearest rank: the smallest sample with at least p of all samples at or below it.
            let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
            sorted[rank - 1] as f64 / 1000.0
        };
        Percentiles {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: at(1.0),
            count: sorted.len(),
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "p50": round(self.p50, 3),
            "p90": round(self.p90, 3),
            "p99": round(self.p99, 3),
            "p99_9": round(self.p999, 3),
            "max": round(self.max, 3),
            "count": self.count,
        })
    }
}

/// Redis counters from `INFO stats` and `INFO commandstats`, and the redis-server process's
/// CPU time (utime + stime from `/proc/<pid>/stat`, the pid from `INFO server`).
pub struct RedisInfo {
    pub commands: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Per command: (calls, microseconds spent in it).
    pub calls: BTreeMap<String, (u64, u64)>,
    pub cpu_s: f64,
}

pub struct RedisDelta {
    pub commands: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub calls: BTreeMap<String, (u64, u64)>,
    /// CPU seconds redis-server used over the window (every thread of it).
    pub cpu_s: f64,
}

impl RedisDelta {
    pub fn between(before: &RedisInfo, after: &RedisInfo) -> Self {
        let calls = after
            .calls
            .iter()
            .map(|(k, (calls, usec))| {
                let (c0, u0) = before.calls.get(k).copied().unwrap_or((0, 0));
                (
                    k.clone(),
                    (calls.saturating_sub(c0), usec.saturating_sub(u0)),
                )
            })
            .filter(|(_, (calls, _))| *calls > 0)
            .collect();
        RedisDelta {
            commands: after.commands.saturating_sub(before.commands),
            bytes_in: after.bytes_in.saturating_sub(before.bytes_in),
            bytes_out: after.bytes_out.saturating_sub(before.bytes_out),
            calls,
            cpu_s: (after.cpu_s - before.cpu_s).max(0.0),
        }
    }

    /// The most called commands: name, calls.
    pub fn top(&self, n: usize) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self.calls.iter().map(|(k, v)| (k.clone(), v.0)).collect();
        v.sort_by_key(|c| std::cmp::Reverse(c.1));
        v.truncate(n);
        v
    }
}

pub fn redis_info(port: u16) -> Result<RedisInfo, String> {
    let client =
        redis::Client::open(format!("redis://127.0.0.1:{port}/")).map_err(|e| e.to_string())?;
    let mut con = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    let stats: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut con)
        .map_err(|e| e.to_string())?;
    let commandstats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut con)
        .map_err(|e| e.to_string())?;
    let server: String = redis::cmd("INFO")
        .arg("server")
        .query(&mut con)
        .map_err(|e| e.to_string())?;
    let field = |text: &str, name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    // cmdstat_evalsha:calls=25325,usec=…,usec_per_call=…
    let calls = commandstats
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let value = |key: &str| -> Option<u64> {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(key))?
                    .parse()
                    .ok()
            };
            Some((name.to_owned(), (value("calls=")?, value("usec=")?)))
        })
        .collect();
    let pid = field(&server, "process_id");
    Ok(RedisInfo {
        commands: field(&stats, "total_commands_processed"),
        bytes_in: field(&stats, "total_net_input_bytes"),
        bytes_out: field(&stats, "total_net_output_bytes"),
        calls,
        cpu_s: u32::try_from(pid).map_or(0.0, cpu_secs),
    })
}

/// A number from a `/proc/.../status` text: the first word after `name` (`"VmRSS:"`, …), 0 if
/// absent.
fn status_field(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Resident memory of a process, KiB (0 if unknown).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status_field(&status, "VmRSS:")
}

/// Context switches so far of every thread of these processes: (voluntary, involuntary). A
/// voluntary one is a thread going to sleep (in `epoll_wait`, mostly) until something wakes it:
/// the wake-ups a server pays for on top of its work. Threads that exited are not counted.
pub fn context_switches(pids: &[u32]) -> (u64, u64) {
    let mut total = (0, 0);
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            total.0 += status_field(&status, "voluntary_ctxt_switches:");
            total.1 += status_field(&status, "nonvoluntary_ctxt_switches:");
        }
    }
    total
}

/// User + system CPU seconds a process has used (0 if unknown).
pub fn cpu_secs(pid: u32) -> f64 {
    cpu_secs_of(&format!("/proc/{pid}/stat"))
}

pub fn cpu_secs_self() -> f64 {
    cpu_secs_of("/proc/self/stat")
}

fn cpu_secs_of(path: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of /proc/PID/stat (11 and 12 after the name);
    // clock ticks are 1/100 s on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn context_switches_count_a_thread_that_slept() {
        let me = [std::process::id()];
        let (before, _) = context_switches(&me);
        std::thread::sleep(Duration::from_millis(5));
        let (after, _) = context_switches(&me);
        assert!(after > before, "{before} -> {after}");
        assert_eq!(context_switches(&[u32::MAX]), (0, 0), "no such process");
        assert!(rss_kib(std::process::id()) > 0);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<u32> = (1..=1000).map(|i| i * 1000).collect();
        let p = Percentiles::of(&v);
        assert_eq!((p.p50, p.p99, p.p999, p.max), (500.0, 990.0, 999.0, 1000.0));
        assert_eq!(Percentiles::of(&[]).max, 0.0);
    }
}
