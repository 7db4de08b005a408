//! The operators' kit: `/metrics` keeps every name it had (OpenMetrics text from
//! prometheus-client), JSON logs, and (in [`prometheus`]) the Grafana dashboard and the alert
//! rules evaluated by a real Prometheus scraping a cluster with players pressing.

mod prometheus;

use serde_json::{json, Value};

use crate::helpers::*;

/// Every sample name (with its labels where it has them) `/metrics` has always had; the
/// histogram's buckets are checked by their bounds.
const NAMES: [&str; 23] = [
    "robot_race_connections",
    "robot_race_games{state=\"setup\"}",
    "robot_race_games{state=\"counting_down\"}",
    "robot_race_games{state=\"playing\"}",
    "robot_race_games{state=\"finished\"}",
    "robot_race_games_owned",
    "robot_race_games_created_total",
    "robot_race_updates_sent_total",
    "robot_race_presses_total",
    "robot_race_sessions_dropped_slow_total",
    "robot_race_sessions_behind_total",
    "robot_race_frames_skipped_total",
    "robot_race_relayed_updates_total",
    "robot_race_forwarded_commands_total",
    "robot_race_overloaded_total",
    "robot_race_redis_writes_total",
    "robot_race_redis_commands_total",
    "robot_race_pubsub_messages_received_total{channel=\"game\"}",
    "robot_race_pubsub_messages_received_total{channel=\"inbox\"}",
    "robot_race_redis_up",
    "robot_race_press_to_broadcast_seconds_sum",
    "robot_race_press_to_broadcast_seconds_count",
    "robot_race_press_to_broadcast_seconds_bucket{le=\"+Inf\"}",
];

/// The buckets `robot_race_press_to_broadcast_seconds` has always had, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// `/metrics` of a server: its content type and text.
pub(crate) async fn scrape(server: &Server) -> (String, String) {
    let client = awc::Client::builder().timeout(SECS(10)).finish();
    let mut res = client
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(res.status(), 200);
    let kind = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = res.body().limit(1 << 20).await.expect("/metrics body");
    (kind, String::from_utf8_lossy(&body).into_owned())
}

/// The sample names (with labels) of an exposition.
fn samples(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ').map(|(name, _)| name))
        .collect()
}

fn check_names(text: &str, with_redis: bool) {
    let have = samples(text);
    for name in NAMES {
        if name == "robot_race_redis_up" && !with_redis {
            assert!(!have.contains(&name), "redis_up without Redis:\n{text}");
            continue;
        }
        assert!(have.contains(&name), "/metrics lacks {name}:\n{text}");
    }
    let bounds: Vec<f64> = have
        .iter()
        .filter_map(|s| s.strip_prefix("robot_race_press_to_broadcast_seconds_bucket{le=\""))
        .filter_map(|s| s.strip_suffix("\"}")?.parse().ok())
        .filter(|b: &f64| b.is_finite())
        .collect();
    assert_eq!(bounds, BUCKETS, "press_to_broadcast buckets:\n{text}");
    assert!(text.ends_with("# EOF\n"), "not OpenMetrics:\n{text}");
}

#[actix_rt::test]
async fn metrics_keep_every_name_alone_and_in_a_cluster() {
    let alone = Server::start(&[]);
    let (kind, text) = scrape(&alone).await;
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    check_names(&text, false);
    for new in [
        "robot_race_spectators",
        "robot_race_games_replicas",
        "robot_race_press_to_ack_seconds_count",
        "robot_race_errors_total{code=\"overloaded\",via=\"ws\"}",
        "robot_race_errors_total{code=\"unavailable\",via=\"http\"}",
        "robot_race_ws_refused_total{code=\"unavailable\"}",
    ] {
        assert!(
            samples(&text).contains(&new),
            "/metrics lacks {new}:\n{text}"
        );
    }
    // A refused upgrade is counted by its code; a plain GET of the same path (no
    // `Upgrade: websocket`) is refused alike but is no upgrade, and not counted.
    let (status, _) = alone.api().get_json("/ws/x").await;
    assert_eq!(status, 404);
    let upgrade = awc::Client::new().ws(alone.ws_url("/ws/x")).connect().await;
    assert!(
        upgrade.is_err(),
        "an upgrade to an unknown game went through"
    );
    let (_, text) = scrape(&alone).await;
    assert!(
        text.contains("robot_race_ws_refused_total{code=\"not_found\"} 1"),
        "{text}"
    );

    let redis = Redis::start();
    let node = cluster_node(&redis, "m1", &[]);
    let (_, text) = scrape(&node).await;
    check_names(&text, true);
    for new in [
        "robot_race_redis_save_seconds_count",
        "robot_race_relay_lag_seconds_count",
        "robot_race_fenced_writes_total",
        "robot_race_leases_lost_total",
    ] {
        assert!(
            samples(&text).contains(&new),
            "/metrics lacks {new}:\n{text}"
        );
    }
}

#[actix_rt::test]
async fn json_logs_are_one_object_a_line_with_the_node_and_the_game() {
    let server = Server::start_with_env(&["-node-id", "logger1"], &[("LOG_FORMAT", "json")]);
    let api = server.api();
    let joined = api.create("ann", 25, 3).await;
    let mut ann = connect(&server, &joined).await;
    ann.wait_game(SECS(10), |g| g["id"] == json!(joined.game_id))
        .await;
    for needle in [
        format!("game {}: created on node logger1", joined.game_id),
        format!(
            "game {}: robot {} connected from",
            joined.game_id, joined.robot_id
        ),
    ] {
        assert!(
            server.logs.wait_for(&needle, SECS(10)),
            "{needle}:\n{}",
            server.logs.all()
        );
    }
    let lines = server.logs.all();
    let mut about_the_game = 0;
    for line in lines.lines().filter(|l| l.starts_with('{')) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for field in ["time", "level", "target", "message"] {
            assert!(v[field].is_string(), "{field} missing: {line}");
        }
        assert!(!line.contains(&joined.token), "a token in the logs: {line}");
        let message = v["message"].as_str().unwrap_or("");
        if message.starts_with(&format!("game {}:", joined.game_id)) {
            assert_eq!(v["game_id"], json!(joined.game_id), "{line}");
            assert_eq!(v["node_id"], "logger1", "{line}");
            about_the_game += 1;
        }
    }
    assert!(
        about_the_game >= 2,
        "no JSON lines about the game:\n{lines}"
    );
    assert!(
        !lines.lines().any(|l| l.starts_with('[')),
        "text lines among JSON ones:\n{lines}"
    );
    drop(ann);
    // Text stays the default.
    let text = Server::start(&[]);
    assert!(
        text.logs.all().lines().any(|l| l.starts_with('[')),
        "{}",
        text.logs.all()
    );
}
