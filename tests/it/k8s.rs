//! The Kubernetes manifests (`deploy/k8s/`): valid against Kubernetes's own schemas, checked
//! offline and strictly (unknown fields refused) by the `kubernetes-validate` Python package,
//! and carrying what an operator relies on: three servers probed on `/health`, a preStop that
//! drains within the grace period, requests, the Service, an Ingress with WebSocket timeouts,
//! Redis, the autoscaler and the disruption budget.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize as _;
use serde_yaml_ng::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The oldest Kubernetes the manifests are meant for (every API they use is GA there).
const KUBERNETES: &str = "1.29.0";

fn k8s_dir() -> PathBuf {
    Path::new(ROOT).join("deploy/k8s")
}

/// The files `kustomization.yaml` applies.
fn manifests() -> Vec<PathBuf> {
    let text = std::fs::read_to_string(k8s_dir().join("kustomization.yaml")).unwrap();
    let kustomization: Value = serde_yaml_ng::from_str(&text).unwrap();
    let files: Vec<PathBuf> = kustomization["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .map(|f| k8s_dir().join(f.as_str().expect("a file name")))
        .collect();
    assert_eq!(files.len(), 4, "{files:?}");
    files
}

/// Runs the validator on `files`: (passed, its output).
fn validate(files: &[PathBuf]) -> (bool, String) {
    let found = Command::new("python3")
        .args(["-c", "import kubernetes_validate"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "the Python package kubernetes-validate is not installed: this test needs it. Install \
         it with `python3 -m pip install kubernetes-validate` (scripts/test does)."
    );
    let out = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "-k", KUBERNETES])
        .args(files)
        .output()
        .expect("cannot run python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every document of every manifest.
fn documents() -> Vec<Value> {
    manifests()
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            serde_yaml_ng::Deserializer::from_str(&text)
                .map(|d| Value::deserialize(d).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn kind<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn the_manifests_pass_kubernetes_schemas_offline() {
    let (ok, out) = validate(&manifests());
    assert!(ok, "kubernetes-validate:\n{out}");
    assert_eq!(out.matches("passed").count(), 7, "{out}");
    // The validator does refuse a mistake (here a misspelt field).
    let dir = crate::helpers::temp_dir("k8s");
    let wrong = std::fs::read_to_string(k8s_dir().join("robot-race.yaml"))
        .unwrap()
        .replace("readinessProbe:", "readinesProbe:");
    std::fs::write(dir.join("wrong.yaml"), wrong).unwrap();
    let (ok, out) = validate(&[dir.join("wrong.yaml")]);
    assert!(!ok, "a misspelt field passed:\n{out}");
}

#[test]
fn the_deployment_runs_three_probed_servers_that_drain_before_they_stop() {
    let docs = documents();
    let deployment = kind(&docs, "Deployment", "robot-race");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 3);
    let pod = &spec["template"]["spec"];
    let container = &pod["containers"][0];
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(container[probe]["httpGet"]["path"], "/health", "{probe}");
    }
    let pre_stop = container["lifecycle"]["preStop"]["exec"]["command"][2]
        .as_str()
        .expect("preStop");
    assert!(pre_stop.contains("kill -TERM 1"), "{pre_stop}");
    let wait: u64 = pre_stop
        .strip_prefix("sleep ")
        .and_then(|s| s.split(';').next()?.parse().ok())
        .expect("preStop starts with a sleep");
    // The sleep, the drain (6 s at most) and the HTTP server's stop (3 s) fit in the grace.
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace");
    assert!(wait + 6 + 3 < grace, "grace {grace} s for {wait} + 9 s");
    let requests = &container["resources"]["requests"];
    assert!(requests["cpu"].is_string() && requests["memory"].is_string());
    let env = container["env"].as_sequence().expect("env");
    let var = |name: &str| env.iter().find(|e| e["name"] == name).cloned();
    assert_eq!(var("LOG_FORMAT").unwrap()["value"], "json");
    assert_eq!(
        var("NODE_ID").unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    let redis_url = var("REDIS_URL").unwrap()["value"].clone();
    let redis = kind(&docs, "Service", "robot-race-redis");
    assert_eq!(
        redis_url.as_str(),
        Some(
            format!(
                "redis://{}:6379",
                redis["metadata"]["name"].as_str().unwrap()
            )
            .as_str()
        )
    );
    kind(&docs, "StatefulSet", "robot-race-redis");
    kind(&docs, "Service", "robot-race");

    let ingress = kind(&docs, "Ingress", "robot-race");
    let notes = &ingress["metadata"]["annotations"];
    for timeout in ["proxy-read-timeout", "proxy-send-timeout"] {
        let secs: u64 = notes[format!("nginx.ingress.kubernetes.io/{timeout}").as_str()]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect(timeout);
        assert!(secs >= 60, "{timeout} {secs}: shorter than a race");
    }
    // A game's sockets meet on one pod: hashed by path (`/ws/<id>`), consistently; so a pod
    // subscribes only to the games it follows.
    let env = &kind(&docs, "Deployment", "robot-race")["spec"]["template"]["spec"]["containers"][0]
        ["env"];
    let subscribe = env.as_sequence().and_then(|vars| {
        vars.iter()
            .find(|v| v["name"] == "REDIS_SUBSCRIBE")
            .and_then(|v| v["value"].as_str())
    });
    assert_eq!(subscribe, Some("per-game"));
    assert_eq!(
        notes["nginx.ingress.kubernetes.io/upstream-hash-by"].as_str(),
        Some("$uri")
    );
    let hpa = kind(&docs, "HorizontalPodAutoscaler", "robot-race");
    assert_eq!(hpa["spec"]["minReplicas"], 3);
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");
    let pdb = kind(&docs, "PodDisruptionBudget", "robot-race");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
}
