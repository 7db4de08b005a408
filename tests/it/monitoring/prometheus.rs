//! The dashboard and the alert rules against the real thing: Debian's `prometheus` on a free
//! loopback port scrapes three servers on one Redis while players press; every expression of
//! `deploy/grafana/robot-race.json` and of `deploy/prometheus/alerts.yml` is evaluated through
//! Prometheus's HTTP API and must return data; `promtool` checks the rules and runs their
//! tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::future::join3;
use serde_json::{json, Value};

use crate::helpers::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn deploy(path: &str) -> PathBuf {
    Path::new(ROOT).join("deploy").join(path)
}

/// A Prometheus process, killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    client: awc::Client,
}

impl Prometheus {
    fn start(targets: &[&Server]) -> Prometheus {
        require("prometheus", "prometheus");
        let dir = temp_dir("prometheus");
        let targets: Vec<String> = targets
            .iter()
            .map(|s| format!("\"127.0.0.1:{}\"", s.port()))
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: [\"{rules}\"]\n\
             scrape_configs:\n  - job_name: robot-race\n    static_configs:\n      \
             - targets: [{targets}]\n",
            rules = deploy("prometheus/alerts.yml").display(),
            targets = targets.join(", "),
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start prometheus");
        let client = awc::Client::builder().timeout(SECS(10)).finish();
        Prometheus {
            child,
            port,
            client,
        }
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Option<Value> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let mut res = self.client.get(url).query(&query).ok()?.send().await.ok()?;
        let body = res.body().limit(8 << 20).await.ok()?;
        serde_json::from_slice(&body).ok()
    }

    /// The result of an instant query (panics on an error answer).
    async fn query(&self, expr: &str) -> Vec<Value> {
        let v = self
            .get("/api/v1/query", &[("query", expr)])
            .await
            .unwrap_or_else(|| panic!("no answer to {expr}"));
        assert_eq!(v["status"], "success", "{expr}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Waits (bounded) until every target was scraped healthy.
    async fn wait_targets_up(&self, n: usize) {
        let deadline = Instant::now() + SECS(30);
        let mut last = Value::Null;
        while Instant::now() < deadline {
            if let Some(v) = self.get("/api/v1/targets", &[]).await {
                let active = v["data"]["activeTargets"].as_array().cloned();
                let up = active.iter().flatten().filter(|t| t["health"] == "up");
                if up.count() == n {
                    return;
                }
                last = v;
            }
            actix_rt::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("Prometheus did not scrape {n} healthy targets within 30 s: {last}");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `expr` with every comparison outside braces and quotes turned into a `bool` one, so that
/// it returns a 0 or 1 for every series it compares instead of filtering them out.
fn with_bool(expr: &str) -> String {
    let mut out = String::new();
    let (mut depth, mut quoted) = (0, false);
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => depth += 1,
            '}' if !quoted => depth -= 1,
            _ => {}
        }
        if depth == 0 && !quoted && matches!(c, '>' | '<' | '=' | '!') {
            let two = chars.get(i + 1) == Some(&'=');
            let op: String = chars[i..i + 1 + usize::from(two)].iter().collect();
            if op != "=" {
                out.push_str(&op);
                out.push_str(" bool");
                i += op.len();
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Every expression of the dashboard, with its variables given values.
fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(deploy("grafana/robot-race.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert_eq!(dash["__inputs"][0]["pluginId"], "prometheus", "importable");
    let panels = dash["panels"].as_array().expect("panels");
    let mut exprs = Vec::new();
    for panel in panels {
        assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "{panel}");
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            exprs.push(
                expr.replace("$instance", ".*")
                    .replace("$__rate_interval", "30s"),
            );
        }
    }
    let variable = &dash["templating"]["list"][0]["query"]["query"];
    let metric = variable
        .as_str()
        .and_then(|q| q.strip_prefix("label_values("))
        .and_then(|q| q.split(',').next())
        .expect("the instance variable's query");
    exprs.push(metric.to_owned());
    exprs
}

/// Every alert rule's expression.
fn rule_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("alerts.yml");
    let mut exprs = Vec::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            exprs.push(rule["expr"].as_str().expect("expr").to_owned());
        }
    }
    exprs
}

fn promtool(args: &[&str]) {
    require("promtool", "prometheus");
    let out = Command::new("promtool")
        .args(args)
        .current_dir(deploy("prometheus"))
        .output()
        .expect("cannot run promtool");
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_checks_the_rules_and_runs_their_tests() {
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["test", "rules", "alerts.test.yml"]);
}

#[test]
fn comparisons_become_bool_outside_label_matchers() {
    assert_eq!(
        with_bool(r#"sum(x{code!="a",b=~"c"}) > 0.1"#),
        r#"sum(x{code!="a",b=~"c"}) > bool 0.1"#
    );
    assert_eq!(with_bool("up == 0"), "up == bool 0");
}

#[actix_rt::test]
async fn the_dashboard_and_the_alerts_get_data_from_a_cluster_with_players_pressing() {
    require("prometheus", "prometheus");
    let redis = Redis::start();
    let servers: Vec<Server> = (0..3)
        .map(|i| cluster_node(&redis, &format!("p{i}"), &[]))
        .collect();
    let prometheus = Prometheus::start(&servers.iter().collect::<Vec<_>>());

    let ann = servers[0].api().create("ann", 1000, 0).await;
    let bob = servers[1].api().join(&ann.game_id, "bob").await;
    let cat = servers[2].api().join(&ann.game_id, "cat").await;
    let mut ann_ws = connect(&servers[0], &ann).await;
    let mut bob_ws = connect(&servers[1], &bob).await;
    let mut cat_ws = connect(&servers[2], &cat).await;
    let watch = servers[2].ws_url(&format!("/ws/{}?watch=1", ann.game_id));
    let _spectator = try_connect(&watch, None).await.expect("a spectator");
    bob_ws
        .wait_game(SECS(10), |g| {
            g["robots"].as_array().map(Vec::len) == Some(3)
        })
        .await;
    ann_ws.send(json!({"type": "start_countdown"})).await;
    for p in [&mut ann_ws, &mut bob_ws, &mut cat_ws] {
        p.wait_game(SECS(10), |g| g["state"] == "playing").await;
    }
    prometheus.wait_targets_up(3).await;
    // Six seconds of presses, ten a second each, on all three servers.
    let every = Duration::from_millis(100);
    join3(
        ann_ws.press_paced(60, every),
        bob_ws.press_paced(60, every),
        cat_ws.press_paced(60, every),
    )
    .await;
    cat_ws
        .wait_game(SECS(10), |g| {
            g["robots"].as_array().is_some_and(|r| {
                r.iter()
                    .map(|r| r["score"].as_u64().unwrap_or(0))
                    .sum::<u64>()
                    == 180
            })
        })
        .await;
    // A few more scrapes after the last press.
    actix_rt::time::sleep(SECS(3)).await;
    prometheus.wait_targets_up(3).await;

    let presses = prometheus
        .query("sum(robot_race_presses_total{job=\"robot-race\"})")
        .await;
    assert_eq!(presses[0]["value"][1], "180", "{presses:?}");
    let mut empty = Vec::new();
    for expr in dashboard_exprs() {
        if prometheus.query(&expr).await.is_empty() {
            empty.push(expr);
        }
    }
    for expr in rule_exprs() {
        // As written (must be valid), then with its threshold as a 0/1 answer per series.
        prometheus.query(&expr).await;
        let counted = with_bool(&expr);
        if prometheus.query(&counted).await.is_empty() {
            empty.push(counted);
        }
    }
    assert!(empty.is_empty(), "expressions with no data: {empty:#?}");
    // Players on the owner's replicas waited for acknowledgements, which Prometheus saw.
    let acks = prometheus
        .query("sum(robot_race_press_to_ack_seconds_count)")
        .await;
    assert_ne!(acks[0]["value"][1], "0", "{acks:?}");
}
