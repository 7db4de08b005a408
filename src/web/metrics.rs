//! `/metrics`: every figure, read once per scrape into a [`Figures`] and encoded by the
//! Prometheus project's client library (`prometheus-client`) as OpenMetrics text.
//!
//! Nothing here touches the press path: game tasks, sessions and the bus count into relaxed
//! atomics ([`crate::node::Metrics`], [`crate::measure`], [`crate::bus::stats`]) and a scrape
//! only loads them; no lock is shared with a game. (prometheus-client's own `Histogram` takes
//! a lock on every observation, so the histograms stay ours and are encoded through a
//! [`Collector`].) Every metric OPERATIONS.md lists is here; an OpenMetrics counter named
//! `x` is exposed as `x_total`, so counters are registered without the suffix.

use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::AppState;
use crate::bus::BusStatus;
use crate::measure::{Snapshot, Via, ERRORS};

/// The content type of what [`encode`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One metric as read at scrape time.
#[derive(Debug)]
enum Value {
    Gauge(u64),
    Counter(u64),
    /// Samples of one family, each with its labels.
    Gauges(Vec<(Labels, u64)>),
    Counters(Vec<(Labels, u64)>),
    Histogram(Snapshot),
}

type Labels = Vec<(&'static str, String)>;

/// Every figure of one scrape: (name without prefix or `_total`, help, value).
#[derive(Debug, Default)]
pub struct Figures(Vec<(&'static str, &'static str, Value)>);

impl Figures {
    /// Reads every figure of this server (a few hundred relaxed loads).
    pub fn read(state: &AppState) -> Figures {
        let m = state.node.metrics();
        let stats = state.node.stats();
        let bus = state.node.bus();
        let mut f = Figures::default();
        let connections = m.connections.load(Relaxed);
        let spectators = m.spectators.load(Relaxed);
        f.gauge(
            "connections",
            "Open WebSocket connections on this server (players and spectators).",
            connections,
        );
        f.gauge(
            "spectators",
            "Spectator WebSockets on this server.",
            spectators,
        );
        let by_state = crate::game::State::ALL
            .iter()
            .zip(stats.by_state)
            .map(|(s, n)| (vec![("state", s.as_str().to_owned())], n as u64))
            .collect();
        f.push(
            "games",
            "Games this server holds (owned or relayed), by state.",
            Value::Gauges(by_state),
        );
        f.gauge(
            "games_owned",
            "Games this server owns (applies commands for).",
            stats.owned as u64,
        );
        f.gauge(
            "games_replicas",
            "Games this server holds as a replica (shows what their owner publishes).",
            stats.replicas as u64,
        );
        f.counter(
            "games_created",
            "Games created on this server.",
            m.games_created.load(Relaxed),
        );
        f.counter(
            "updates_sent",
            "WebSocket frames queued to players by game tasks.",
            m.updates_sent.load(Relaxed),
        );
        f.counter(
            "presses",
            "Presses received from local players (after rate limiting).",
            m.presses.load(Relaxed),
        );
        f.counter("sessions_dropped_slow", "Sockets cut because they stopped reading: a frame of the server's own (a ping, an answer, a spectator's update, the close) could not be queued within 5 s. Silent sockets timed out are not counted.", m.sessions_dropped_slow.load(Relaxed));
        f.counter(
            "sessions_behind",
            "Times a session fell behind: skipped, then sent the newest full state.",
            m.sessions_behind.load(Relaxed),
        );
        f.counter(
            "frames_skipped",
            "Frames not queued to a session that was behind (it got a newer state instead).",
            m.frames_skipped.load(Relaxed),
        );
        f.counter(
            "relayed_updates",
            "Committed updates from other servers shown here.",
            m.relayed_in.load(Relaxed),
        );
        f.counter(
            "forwarded_commands",
            "Player commands sent to the owning server (resends included).",
            m.forwarded_out.load(Relaxed),
        );
        f.counter(
            "game_moves",
            "Games this server handed to the server holding more of their players (ownership follows the players).",
            m.moves.load(Relaxed),
        );
        f.counter(
            "presses_applied_here",
            "Presses this server applied as their game's owner that its own players sent.",
            m.applied_here.load(Relaxed),
        );
        f.counter(
            "presses_applied_forwarded",
            "Presses this server applied as their game's owner that other servers forwarded.",
            m.applied_forwarded.load(Relaxed),
        );
        f.counter("overloaded", "Presses answered `overloaded`: their game's queue was full or they waited in it over 250 ms.", m.overloaded.load(Relaxed));
        f.counter(
            "save_failures",
            "Game saves Redis did not take (unreachable, out of memory, read-only, timed out); each is tried again after a pause.",
            m.save_failures.load(Relaxed),
        );
        f.counter(
            "unavailable",
            "Commands answered `unavailable`: they waited too long for their game's storage to be writable.",
            m.unavailable.load(Relaxed),
        );
        f.counter(
            "spectators_refused",
            "Spectator upgrades refused with 503 room_full: this server had -max-spectators.",
            m.spectators_refused.load(Relaxed),
        );
        f.counter(
            "spectator_frames",
            "Frames queued to spectator sockets (the newest state, at most -spectator-hz a second per game).",
            m.spectator_frames.load(Relaxed),
        );
        f.counter(
            "redis_writes",
            "Game saves and ends written to Redis.",
            bus.writes_done(),
        );
        f.counter(
            "redis_commands",
            "Commands sent to Redis (each command of a pipeline counted).",
            bus.commands_sent(),
        );
        let heard = bus.pubsub_received();
        let heard = vec![
            (vec![("channel", "game".to_owned())], heard.game),
            (vec![("channel", "inbox".to_owned())], heard.inbox),
        ];
        f.push("pubsub_messages_received", "Pub/sub messages received from Redis, used or not: on game channels, and in this server's inbox.", Value::Counters(heard));
        f.errors();
        let status = bus.status();
        if status != BusStatus::Local {
            f.gauge(
                "redis_up",
                "1 when connected to Redis.",
                u64::from(status == BusStatus::Connected),
            );
        }
        f.push(
            "press_to_broadcast_seconds",
            "From a press reaching its owner to its update queued to the owner's local players.",
            Value::Histogram(m.press_to_broadcast.read()),
        );
        f.push("press_to_ack_seconds", "From a local player's press reaching this server to a committed state showing it applied (replicated games).", Value::Histogram(m.press_to_ack.read()));
        if let Some(s) = bus.stats() {
            f.push(
                "redis_save_seconds",
                "One pipelined batch of saves: from sending it to Redis's answer.",
                Value::Histogram(s.save_latency.read()),
            );
            f.push("relay_lag_seconds", "From an owner sending a save to this server receiving what it published (wall clocks of two servers).", Value::Histogram(s.relay_lag.read()));
            f.counter(
                "fenced_writes",
                "Saves and ends refused because another server owns the game.",
                s.fenced.load(Relaxed),
            );
            f.counter("leases_lost", "Leases found gone: a renewal or save answered that nobody, or another server, owns the game.", s.leases_lost.load(Relaxed));
        }
        f
    }

    fn errors(&mut self) {
        let by = |via: Via| {
            ERRORS
                .read(via)
                .into_iter()
                .map(|(code, n)| (vec![("code", code.to_owned())], n))
        };
        let sent = by(Via::Ws)
            .map(|(mut l, n)| (push(&mut l, ("via", "ws")), n))
            .chain(by(Via::Http).map(|(mut l, n)| (push(&mut l, ("via", "http")), n)))
            .collect();
        self.push("errors", "Error answers sent to clients, by code: `error` frames on WebSockets (via=\"ws\") and HTTP error bodies (via=\"http\").", Value::Counters(sent));
        let refused = by(Via::Refused).collect();
        self.push(
            "ws_refused",
            "WebSocket upgrades (requests with Upgrade: websocket) refused with an HTTP error, by code.",
            Value::Counters(refused),
        );
    }

    fn gauge(&mut self, name: &'static str, help: &'static str, v: u64) {
        self.push(name, help, Value::Gauge(v));
    }

    fn counter(&mut self, name: &'static str, help: &'static str, v: u64) {
        self.push(name, help, Value::Counter(v));
    }

    fn push(&mut self, name: &'static str, help: &'static str, v: Value) {
        self.0.push((name, help, v));
    }
}

fn push(labels: &mut Labels, (k, v): (&'static str, &str)) -> Labels {
    labels.push((k, v.to_owned()));
    std::mem::take(labels)
}

impl Collector for Figures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, value) in &self.0 {
            let kind = match value {
                Value::Gauge(_) | Value::Gauges(_) => MetricType::Gauge,
                Value::Counter(_) | Value::Counters(_) => MetricType::Counter,
                Value::Histogram(_) => MetricType::Histogram,
            };
            let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
            match value {
                Value::Gauge(v) => ConstGauge::new(*v as i64).encode(metric)?,
                Value::Counter(v) => ConstCounter::new(*v).encode(metric)?,
                Value::Gauges(samples) => {
                    for (labels, v) in samples {
                        ConstGauge::new(*v as i64).encode(metric.encode_family(labels)?)?;
                    }
                }
                Value::Counters(samples) => {
                    for (labels, v) in samples {
                        ConstCounter::new(*v).encode(metric.encode_family(labels)?)?;
                    }
                }
                Value::Histogram(h) => {
                    metric.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?
                }
            }
        }
        Ok(())
    }
}

/// OpenMetrics text of `figures`, every name prefixed `robot_race_`.
pub fn encode(figures: Figures) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("robot_race");
    registry.register_collector(Box::new(figures));
    let mut out = String::with_capacity(16 * 1024);
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}
