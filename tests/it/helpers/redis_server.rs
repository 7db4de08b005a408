//! A `redis-server` process owned by the test: started on a free port (again on new ports
//! when one is taken meanwhile), killed, restarted empty, and read with a plain client.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::{free_port, require, Lines};

/// A `redis-server` owned by the test.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    extra: Vec<String>,
    pub logs: Lines,
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

    /// The redis-server process (to freeze it, say).
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .expect("redis-server is not running")
            .id()
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
