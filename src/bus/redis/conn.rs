//! Reaching Redis: the `-redis` address turned into a client, and one command connection type
//! for one Redis or a cluster.

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::{socket2::TcpKeepalive, TcpSettings};
use redis::{Client, Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Value};

/// A command connection: to one Redis, or to a cluster (routed by slot).
#[derive(Clone)]
pub(crate) enum Conn {
    One(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::One(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::One(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::One(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    /// Runs `cmds` in one round trip and answers each on its own: one command refused (out of
    /// memory, say) does not make the others look failed, since those may have been carried
    /// out. The outer error is the round trip's (no connection, a timeout): then nobody knows
    /// which ran. One pipeline on one Redis; on a cluster, where a pipeline cannot span slots,
    /// each command alone and all at once (they share the multiplexed connection of their
    /// slot's master), where a connection error is that command's own.
    pub(super) async fn each<T: FromRedisValue>(
        &self,
        cmds: Vec<Cmd>,
    ) -> RedisResult<Vec<RedisResult<T>>> {
        match self {
            Conn::One(conn) => {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                pipe.query_async(&mut conn.clone()).await
            }
            Conn::Cluster(conn) => {
                let each = cmds.into_iter().map(|cmd| {
                    let mut conn = conn.clone();
                    async move { cmd.query_async::<T>(&mut conn).await }
                });
                Ok(futures_util::future::join_all(each).await)
            }
        }
    }

    /// Like [`Conn::each`], failing as a whole if any command failed.
    pub(super) async fn all<T: FromRedisValue>(&self, cmds: Vec<Cmd>) -> RedisResult<Vec<T>> {
        self.each(cmds).await?.into_iter().collect()
    }
}

/// Turns `-redis`/`REDIS_URL` (+ `-redis-password`) into a client; the error is for humans.
pub fn redis_client(
    raw: &str,
    password: Option<&str>,
    tls_insecure: bool,
) -> Result<(Client, String), String> {
    use redis::IntoConnectionInfo;
    let mut url = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("redis://{raw}")
    };
    if tls_insecure && url.starts_with("rediss://") && !url.contains('#') {
        if !url["rediss://".len()..].contains('/') {
            url.push('/');
        }
        url.push_str("#insecure");
    }
    let mut info = url
        .as_str()
        .into_connection_info()
        .map_err(|e| e.to_string())?;
    if let Some(password) = password.filter(|p| !p.is_empty()) {
        if info.redis_settings().password().is_none() {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
    }
    let tcp = with_keepalive(info.tcp_settings().clone());
    let info = info.set_tcp_settings(tcp);
    let addr = info.addr().to_string();
    let client = Client::open(info).map_err(|e| e.to_string())?;
    Ok((client, addr))
}

/// TCP keepalive: the first probe after this long without a byte either way.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// Then a probe this often, and the connection is given up after this many unanswered.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_PROBES: u32 = 3;

/// `settings` with TCP keepalive on, for every connection to Redis (and to the Sentinels):
/// the kernel probes an idle connection every so often, which keeps a NAT or a load balancer
/// from forgetting it, and finds a peer gone without a word (a host powered off, a mapping
/// dropped) within a minute of silence instead of the system's default two hours.
pub(super) fn with_keepalive(settings: TcpSettings) -> TcpSettings {
    let keepalive = TcpKeepalive::new().with_time(KEEPALIVE_IDLE);
    #[cfg(any(target_os = "linux", target_os = "macos", target_os = "windows"))]
    let keepalive = keepalive
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    settings.set_keepalive(keepalive)
}

/// A failure found on this side (a timeout, a bad address, no node for a channel) as a Redis
/// error of the I/O kind, the kind a broken connection gives.
pub(super) fn io_error(what: String) -> redis::RedisError {
    std::io::Error::other(what).into()
}

/// A pub/sub call that gives up after [`super::REDIS_TIMEOUT`]: pub/sub connections have no response
/// timeout of their own, and a cut one answers nothing, ever.
pub(super) async fn bounded<T>(
    what: &str,
    call: impl std::future::Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    tokio::time::timeout(super::REDIS_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(io_error(format!(
                "{what}: no answer within {:?}",
                super::REDIS_TIMEOUT
            )))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_addresses_parse_with_and_without_scheme() {
        let (_, addr) = redis_client("localhost:6379", None, false).unwrap();
        assert_eq!(addr, "localhost:6379");
        let (client, addr) = redis_client("redis://u:p@10.0.0.1:6380/2", None, false).unwrap();
        assert_eq!(addr, "10.0.0.1:6380");
        assert_eq!(
            client.get_connection_info().redis_settings().password(),
            Some("p")
        );
        let (client, _) = redis_client("127.0.0.1:6379", Some("pw"), false).unwrap();
        assert_eq!(
            client.get_connection_info().redis_settings().password(),
            Some("pw")
        );
        let (_, addr) = redis_client("rediss://h.example:6380/#insecure", None, false).unwrap();
        assert_eq!(addr, "h.example:6380");
        assert!(redis_client("http://nope", None, false).is_err());
        assert!(redis_client("redis://host:notaport", None, false).is_err());
        // Heroku's REDIS_URL with the switch on: certificate checks off.
        let insecure = |url: &str, on: bool| {
            let (client, _) = redis_client(url, None, on).unwrap();
            matches!(
                client.get_connection_info().addr(),
                redis::ConnectionAddr::TcpTls { insecure: true, .. }
            )
        };
        assert!(insecure("rediss://:pw@ec2.example:21290", true));
        assert!(insecure("rediss://:pw@ec2.example:21290/0", true));
        assert!(!insecure("rediss://:pw@ec2.example:21290", false));
    }

    #[test]
    fn every_redis_client_has_tcp_keepalive() {
        for raw in [
            "localhost:6379",
            "rediss://h.example:6380",
            "redis://:pw@10.0.0.1",
        ] {
            let (client, _) = redis_client(raw, Some("pw"), true).unwrap();
            let tcp = client.get_connection_info().tcp_settings();
            assert!(tcp.keepalive().is_some(), "{raw}: {tcp:?}");
        }
    }
}
