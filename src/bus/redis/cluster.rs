//! Redis Cluster: commands through the redis crate's cluster client, shard channels through
//! our own connections.
//!
//! Commands (the scripts, the heartbeat, the secret) go through a
//! [`ClusterConnection`], which routes each to its slot's master and follows `MOVED`/`ASK`
//! redirects; a game's keys share a slot (hash tags, [`Names`](super::scripts::Names)), so every
//! script runs on one master. Pipelines cannot span slots there, so batches go out as
//! concurrent single commands on the multiplexed connections instead.
//!
//! Sharded pub/sub (`SSUBSCRIBE game:{<id>}`, and this server's inbox `node:{<node_id>}`) is
//! kept apart from commands on one RESP3 connection per node subscribed on ([`Shards`]):
//! a Redis node that loses a slot (a failover demotes it, or the slot migrates) tells its
//! subscribers with an unasked-for `sunsubscribe` push, which on a connection that also
//! carries commands would be taken for a command's reply. Here it only says "subscribe again":
//! the supervisor re-reads the slot map and subscribes on the slot's master now (following a
//! `MOVED` answer if the map was stale), then the game is read again. A node's connection
//! that drops loses its channels the same way, and every [`AUDIT`] the slot map is checked
//! against where each channel is subscribed, in case a move went unannounced.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::join_all;
use redis::aio::MultiplexedConnection;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, ProtocolVersion, PushInfo,
    PushKind, RedisResult, Value,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::conn::io_error;
use super::scripts::slot;
use super::REDIS_TIMEOUT;

/// How often the slot map is checked against the subscriptions.
pub(super) const AUDIT: Duration = Duration::from_secs(2);

/// The seed nodes and how to reach any node (password, TLS).
pub struct ClusterNodes {
    client: ClusterClient,
    /// `host:port` of each seed, for logs.
    seeds: Vec<String>,
    /// A seed's settings without its address, for our own connections to one node.
    template: ConnectionInfo,
}

impl ClusterNodes {
    /// `entries`: `host:port` or `redis[s]://…` of a few nodes; `password` as for one Redis.
    /// The error is for humans.
    pub fn new(
        entries: &[&str],
        password: Option<&str>,
        tls_insecure: bool,
    ) -> Result<ClusterNodes, String> {
        let mut infos = Vec::new();
        let mut seeds = Vec::new();
        for entry in entries {
            let (client, addr) = super::redis_client(entry, password, tls_insecure)?;
            infos.push(client.get_connection_info().clone());
            seeds.push(addr);
        }
        let template = infos.first().cloned().ok_or("no cluster node given")?;
        let client = ClusterClientBuilder::new(infos)
            .connection_timeout(REDIS_TIMEOUT)
            .response_timeout(REDIS_TIMEOUT)
            .tcp_settings(super::conn::with_keepalive(template.tcp_settings().clone()))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(ClusterNodes {
            client,
            seeds,
            template,
        })
    }

    /// `cluster via h1:7000,h2:7001`, for logs.
    pub fn describe(&self) -> String {
        format!("cluster via {}", self.seeds.join(","))
    }

    pub(super) async fn connect(&self) -> RedisResult<ClusterConnection> {
        let connecting = self.client.get_async_connection();
        tokio::time::timeout(REDIS_TIMEOUT * 2, connecting)
            .await
            .map_err(|_| io_error("timed out joining the cluster".into()))?
    }

    /// A RESP3 connection to the node at `host:port`, its pushes sent to `pushes` with its
    /// address.
    async fn node(
        &self,
        addr: &str,
        pushes: &UnboundedSender<(String, PushInfo)>,
    ) -> RedisResult<MultiplexedConnection> {
        let (host, port) = addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
            .ok_or_else(|| io_error(format!("bad node address {addr}")))?;
        let node_addr = match self.template.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host, port),
        };
        let settings = self
            .template
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let info = self
            .template
            .clone()
            .set_addr(node_addr)
            .set_redis_settings(settings);
        let tx = pushes.clone();
        let from = addr.to_owned();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_push_sender(move |push: PushInfo| tx.send((from.clone(), push)));
        Client::open(info)?
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}

/// What a push from a node meant.
pub(super) enum Heard {
    /// A message on a shard channel.
    Message(String, Vec<u8>),
    /// These channels are no longer subscribed (their slot moved, or the node went away).
    Lost(Vec<String>),
    Nothing,
}

/// This server's shard channel subscriptions, one connection per node subscribed on.
pub(super) struct Shards {
    /// Node `host:port` -> the connection its channels are subscribed on.
    conns: HashMap<String, MultiplexedConnection>,
    /// Channel -> the node it is subscribed on.
    subscribed: HashMap<String, String>,
    /// Slot ranges with their nodes (master first), from `CLUSTER SLOTS`.
    slots: Vec<(u16, u16, Vec<String>)>,
    tx: UnboundedSender<(String, PushInfo)>,
    /// Every node's pushes: messages, confirmations, unasked-for `sunsubscribe`s, disconnects.
    pub(super) pushes: UnboundedReceiver<(String, PushInfo)>,
}

impl Shards {
    pub(super) fn new() -> Shards {
        let (tx, pushes) = unbounded_channel();
        Shards {
            conns: HashMap::new(),
            subscribed: HashMap::new(),
            slots: Vec::new(),
            tx,
            pushes,
        }
    }

    /// Reads the slot map (`CLUSTER SLOTS`) through the cluster connection.
    pub(super) async fn refresh(&mut self, conn: &mut ClusterConnection) -> RedisResult<()> {
        let map: Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
        let Value::Array(ranges) = map else {
            return Err(io_error("unexpected CLUSTER SLOTS answer".into()));
        };
        self.slots = ranges.iter().filter_map(parse_range).collect();
        Ok(())
    }

    fn nodes_of(&self, channel: &str) -> Option<&[String]> {
        let slot = slot(channel);
        self.slots
            .iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .map(|(_, _, nodes)| nodes.as_slice())
    }

    /// `SSUBSCRIBE channel` on its slot's master (by the map, or where a `MOVED` points).
    pub(super) async fn subscribe(
        &mut self,
        nodes: &ClusterNodes,
        channel: &str,
    ) -> RedisResult<()> {
        let mut addr = self
            .nodes_of(channel)
            .and_then(|n| n.first().cloned())
            .ok_or_else(|| io_error(format!("no node serves {channel}")))?;
        let mut tries = 0;
        loop {
            tries += 1;
            let conn = match self.conns.get(&addr) {
                Some(conn) => conn.clone(),
                None => {
                    let conn = nodes.node(&addr, &self.tx).await?;
                    self.conns.insert(addr.clone(), conn.clone());
                    conn
                }
            };
            let mut conn = conn;
            let done: RedisResult<()> = redis::cmd("SSUBSCRIBE")
                .arg(channel)
                .exec_async(&mut conn)
                .await;
            match done {
                Ok(()) => {
                    self.subscribed.insert(channel.to_owned(), addr);
                    return Ok(());
                }
                Err(e) => match e.redirect_node() {
                    Some((to, _)) if tries < 3 => addr = to.to_owned(),
                    _ => {
                        if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                            self.conns.remove(&addr);
                        }
                        return Err(e);
                    }
                },
            }
        }
    }

    /// `SUNSUBSCRIBE channel` where it is subscribed (forgotten first, so its confirmation is
    /// not taken for a lost slot).
    pub(super) async fn unsubscribe(&mut self, channel: &str) -> RedisResult<()> {
        let Some(addr) = self.subscribed.remove(channel) else {
            return Ok(());
        };
        let Some(mut conn) = self.conns.get(&addr).cloned() else {
            return Ok(());
        };
        let done = redis::cmd("SUNSUBSCRIBE")
            .arg(channel)
            .exec_async(&mut conn)
            .await;
        if done.is_err() {
            // The node is unreachable: its subscriptions go with its connection.
            self.drop_node(&addr);
        }
        Ok(())
    }

    /// How many nodes there are connections to.
    pub(super) fn nodes(&self) -> usize {
        self.conns.len()
    }

    /// PINGs every node there is a connection to (RESP3 allows any command while subscribed),
    /// all at once, each answer due `within`: a NAT or a load balancer may drop an idle
    /// connection without a word. The channels of a node that does not answer are reported
    /// lost and its connection dropped; subscribing them again makes a new one.
    pub(super) async fn probe(&mut self, within: Duration) -> Vec<String> {
        let pings = self.conns.iter().map(|(addr, conn)| {
            let mut conn = conn.clone();
            async move {
                let cmd = redis::cmd("PING");
                let ping = cmd.exec_async(&mut conn);
                let answered = matches!(tokio::time::timeout(within, ping).await, Ok(Ok(())));
                (addr.clone(), answered)
            }
        });
        let dead: Vec<String> = join_all(pings)
            .await
            .into_iter()
            .filter_map(|(addr, answered)| (!answered).then_some(addr))
            .collect();
        let mut lost = Vec::new();
        for addr in dead {
            log::debug!("Redis Cluster: {addr} did not answer PING within {within:?}");
            lost.extend(self.drop_node(&addr));
        }
        lost
    }

    fn drop_node(&mut self, addr: &str) -> Vec<String> {
        self.conns.remove(addr);
        let lost: Vec<String> = self
            .subscribed
            .iter()
            .filter(|(_, node)| *node == addr)
            .map(|(channel, _)| channel.clone())
            .collect();
        for channel in &lost {
            self.subscribed.remove(channel);
        }
        lost
    }

    /// What a push from the node at `addr` means.
    pub(super) fn heard(&mut self, addr: &str, push: PushInfo) -> Heard {
        let text = |v: Option<&Value>| match v {
            Some(Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Some(Value::SimpleString(s)) => Some(s.clone()),
            _ => None,
        };
        match push.kind {
            PushKind::SMessage => {
                let payload = match push.data.get(1) {
                    Some(Value::BulkString(b)) => b.clone(),
                    _ => return Heard::Nothing,
                };
                match text(push.data.first()) {
                    Some(channel) => Heard::Message(channel, payload),
                    None => Heard::Nothing,
                }
            }
            // Unasked for (ours are forgotten before they are sent): the node lost the slot.
            PushKind::SUnsubscribe => match text(push.data.first()) {
                Some(channel)
                    if self.subscribed.get(&channel).map(String::as_str) == Some(addr) =>
                {
                    self.subscribed.remove(&channel);
                    Heard::Lost(vec![channel])
                }
                _ => Heard::Nothing,
            },
            PushKind::Disconnection => Heard::Lost(self.drop_node(addr)),
            _ => Heard::Nothing,
        }
    }

    /// Re-reads the slot map; channels subscribed on a node that no longer serves their slot
    /// are unsubscribed there and reported lost.
    pub(super) async fn audit(&mut self, conn: &mut ClusterConnection) -> RedisResult<Vec<String>> {
        self.refresh(conn).await?;
        let moved: Vec<String> = self
            .subscribed
            .iter()
            .filter(|(channel, node)| !self.nodes_of(channel).is_some_and(|n| n.contains(node)))
            .map(|(channel, _)| channel.clone())
            .collect();
        for channel in &moved {
            let _ = self.unsubscribe(channel).await;
        }
        Ok(moved)
    }
}

/// One `CLUSTER SLOTS` entry: `[start, end, [host, port, id…], replicas…]`.
fn parse_range(range: &Value) -> Option<(u16, u16, Vec<String>)> {
    let Value::Array(parts) = range else {
        return None;
    };
    let int = |v: &Value| match v {
        Value::Int(n) => u16::try_from(*n).ok(),
        _ => None,
    };
    let start = int(parts.first()?)?;
    let end = int(parts.get(1)?)?;
    let nodes = parts[2..]
        .iter()
        .filter_map(|node| {
            let Value::Array(node) = node else {
                return None;
            };
            let host = match node.first()? {
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                Value::SimpleString(s) => s.clone(),
                _ => return None,
            };
            let port = match node.get(1)? {
                Value::Int(n) => *n,
                _ => return None,
            };
            (!host.is_empty() && host != "?").then(|| format!("{host}:{port}"))
        })
        .collect();
    Some((start, end, nodes))
}
