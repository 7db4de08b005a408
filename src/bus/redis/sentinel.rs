//! Redis Sentinel: which Redis is the master now.
//!
//! The redis crate connects to one address and does not follow a failover, so the bus does:
//! on every (re)connect it asks every Sentinel at once for the master's address
//! (`SENTINEL get-master-addr-by-name`), takes the first answer, connects there and checks
//! with `ROLE` that it really is the master (a Sentinel may not have heard of a failover yet).
//! While connected, a watcher listens on a Sentinel (the one that answered first, then the
//! others) for `+switch-master` and drops the connection at once, so the
//! supervisor reconnects to the new master instead of waiting for the old one to refuse a
//! write. The master's password and TLS come from the same settings as for one Redis.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::future::select_ok;
use futures_util::StreamExt;
use redis::{Client, ConnectionAddr, ConnectionInfo, RedisResult};

use super::conn::io_error;
use super::{Inner, REDIS_TIMEOUT, RETRY};

/// The Sentinels to ask, and how to reach the master they name.
pub struct Sentinels {
    /// One client per Sentinel, with its `host:port` for logs.
    pub sentinels: Vec<(Client, String)>,
    /// The monitored master's name (`-redis-sentinel-master`).
    pub master_name: String,
    /// The master's connection settings (password, TLS, database) without its address.
    pub master_template: ConnectionInfo,
    /// Which of `sentinels` answered first last time (the failover watcher listens there).
    answered: AtomicUsize,
}

impl Sentinels {
    /// Builds the clients from `-redis-sentinel` entries (`host:port`, or `rediss://host:port`
    /// for TLS; credentials go in the password settings, not in these addresses).
    /// `master_password` is the master's (`-redis-password`); `sentinel_password` the
    /// Sentinels' own. The error is for humans.
    pub fn new(
        entries: &[&str],
        master_name: &str,
        master_password: Option<&str>,
        sentinel_password: Option<&str>,
        tls_insecure: bool,
    ) -> Result<Sentinels, String> {
        let mut sentinels = Vec::new();
        let mut template = None;
        for entry in entries {
            let (client, addr) = super::redis_client(entry, sentinel_password, tls_insecure)?;
            if template.is_none() {
                // The master: the Sentinels' scheme (TLS or not), the master's password.
                let (master, _) = super::redis_client(entry, master_password, tls_insecure)?;
                template = Some(master.get_connection_info().clone());
            }
            sentinels.push((client, addr));
        }
        let master_template = template.ok_or("no Sentinel address given")?;
        if master_name.trim().is_empty() {
            return Err("the Sentinel master name is empty".to_owned());
        }
        Ok(Sentinels {
            sentinels,
            master_name: master_name.trim().to_owned(),
            master_template,
            answered: AtomicUsize::new(0),
        })
    }

    /// `sentinel mymaster via h1:26379,h2:26379`, for logs.
    pub fn describe(&self) -> String {
        let addrs: Vec<&str> = self.sentinels.iter().map(|(_, a)| a.as_str()).collect();
        format!("sentinel {} via {}", self.master_name, addrs.join(","))
    }

    /// The master's address as the first Sentinel to answer names it. Every Sentinel is
    /// asked at once, each within [`REDIS_TIMEOUT`] to connect and as long again to answer: one
    /// that accepts the connection and then says nothing (a frozen host, a half-open path)
    /// holds up nothing while another answers, wherever it stands in the list. When none
    /// names a master, the error is the last one to fail.
    pub async fn ask_master(&self) -> RedisResult<(String, u16)> {
        if self.sentinels.is_empty() {
            return Err(io_error("no Sentinel".to_owned()));
        }
        let asks = self
            .sentinels
            .iter()
            .enumerate()
            .map(|(i, (client, addr))| {
                Box::pin(async move {
                    match self.ask_one(client).await? {
                        Some(master) => Ok((i, master)),
                        None => Err(io_error(format!(
                            "Sentinel {addr} does not know a master named {}",
                            self.master_name
                        ))),
                    }
                })
            });
        // The asks still under way are dropped with their connections.
        let ((i, master), _) = select_ok(asks).await?;
        self.answered.store(i, Ordering::Relaxed);
        Ok(master)
    }

    async fn ask_one(&self, client: &Client) -> RedisResult<Option<(String, u16)>> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let answer: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.master_name)
            .query_async(&mut conn)
            .await?;
        Ok(answer)
    }

    /// A client for the master at `host:port`, with the master's password and TLS.
    pub fn master_client(&self, host: &str, port: u16) -> RedisResult<Client> {
        let addr = match self.master_template.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host.to_owned(), port),
        };
        Client::open(self.master_template.clone().set_addr(addr))
    }
}

/// Whether the server behind `conn` is a master (`ROLE`), not a replica.
pub(super) async fn is_master(conn: &mut redis::aio::MultiplexedConnection) -> RedisResult<bool> {
    let role: redis::Value = redis::cmd("ROLE").query_async(conn).await?;
    let first = match role {
        redis::Value::Array(items) => items.into_iter().next(),
        _ => None,
    };
    Ok(matches!(first, Some(redis::Value::BulkString(ref b)) if b == b"master"))
}

/// How long the failover watcher listens to one Sentinel without hearing anything before it
/// subscribes again.
const WATCH_QUIET: std::time::Duration = std::time::Duration::from_secs(60);

/// Listens on the Sentinels for `+switch-master` of our master while `master` is the one we
/// are connected to; when it moves, asks the supervisor to reconnect. Ends after a switch (the
/// supervisor aborts it when the connection ends for another reason). The Sentinel that named
/// the master first, then the ones after it in the list; one that cannot be reached, or
/// answers nothing, is skipped: losing the connection to the old master leads to the new one
/// anyway.
pub(super) async fn watch_failover(inner: Arc<Inner>, sentinels: Arc<Sentinels>, master: String) {
    let all = &sentinels.sentinels;
    loop {
        let first = sentinels.answered.load(Ordering::Relaxed);
        for (client, _) in all.iter().cycle().skip(first).take(all.len()) {
            let Ok(Ok(mut pubsub)) =
                tokio::time::timeout(REDIS_TIMEOUT, client.get_async_pubsub()).await
            else {
                continue;
            };
            let subscribed = super::conn::bounded("Sentinel SUBSCRIBE", async {
                pubsub.subscribe("+switch-master").await
            });
            if subscribed.await.is_err() {
                continue;
            }
            let mut stream = pubsub.on_message();
            // A Sentinel cut off answers nothing, ever, and closes nothing: subscribe again
            // (to the next Sentinel) after a quiet minute rather than wait on it for good.
            while let Ok(Some(msg)) = tokio::time::timeout(WATCH_QUIET, stream.next()).await {
                // `<name> <old-ip> <old-port> <new-ip> <new-port>`
                let Ok(text) = msg.get_payload::<String>() else {
                    continue;
                };
                let parts: Vec<&str> = text.split_whitespace().collect();
                if let [name, _, _, ip, port] = parts[..] {
                    if name == sentinels.master_name && format!("{ip}:{port}") != master {
                        log::info!(
                            "Sentinel reports master {name} moved to {ip}:{port}; reconnecting"
                        );
                        inner.reconnect.notify_one();
                        return;
                    }
                }
            }
        }
        tokio::time::sleep(RETRY * 10).await;
    }
}
