//! The environment as operators write it: every switch with the spellings people use, every
//! variable empty (as compose files and unset Kubernetes Secret keys leave them), and values
//! that are neither, which stop the server with a message naming the variable.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{connect, Redis, Server, BIN};

/// Each switch's variable and the `/health` setting that shows it.
const SWITCHES: [(&str, &str); 3] = [
    ("TRUST_PROXY", "trust_proxy"),
    ("SAME_THREAD", "same_thread"),
    ("REDIS_TLS_INSECURE", "redis_tls_insecure"),
];

/// What operators write, and whether it turns the switch on.
const SPELLINGS: [(&str, bool); 10] = [
    ("1", true),
    ("0", false),
    ("true", true),
    ("false", false),
    ("yes", true),
    ("no", false),
    ("", false),
    ("ON", true),
    ("Off", false),
    ("  ", false),
];

async fn settings(server: &Server) -> Value {
    let (status, health) = server.api().get_json("/health").await;
    assert_eq!(status, 200, "{health}");
    health["settings"].clone()
}

#[actix_rt::test]
async fn each_switch_reads_as_operators_write_it() {
    for (variable, setting) in SWITCHES {
        for (value, on) in SPELLINGS {
            let server = Server::start_with_env(&[], &[(variable, value)]);
            let shown = settings(&server).await;
            assert_eq!(shown[setting], on, "{variable}={value:?}: {shown}");
        }
    }
}

/// Every variable of every flag set but empty: the server starts as if none were set.
#[actix_rt::test]
async fn an_empty_variable_is_an_unset_one() {
    let variables: Vec<String> = robot_race::config::table::flags()
        .iter()
        .filter_map(|arg| arg.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    assert!(variables.len() >= 25, "{variables:?}");
    let empty: Vec<(&str, &str)> = variables.iter().map(|v| (v.as_str(), "")).collect();
    let with_empties = Server::start_with_env(&[], &empty);
    let plain = Server::start(&[]);
    let (_, health) = with_empties.api().get_json("/health").await;
    assert_eq!(health["mode"], "single", "an empty REDIS_URL is no Redis");
    assert_eq!(settings(&with_empties).await, settings(&plain).await);
}

/// A value that is neither a switch's nor a number stops the server with status 2 and a
/// message naming the variable.
#[test]
fn a_bad_value_stops_the_server_naming_the_variable() {
    let cases = [
        ("TRUST_PROXY", "maybe"),
        ("SAME_THREAD", "2"),
        ("IDLE_TIMEOUT_SECS", "ten"),
        ("WS_TIMEOUT_SECS", "1"),
        ("SPECTATOR_HZ", "0"),
        ("REDIS_SUBSCRIBE", "sometimes"),
        ("LOG_FORMAT", "xml"),
    ];
    for (variable, value) in cases {
        let mut child = Command::new(BIN)
            .args(["-addr", "127.0.0.1:0"])
            .env(variable, value)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{variable}={value:?}: the server started");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(2), "{variable}={value:?}: {stderr}");
        assert!(
            stderr.contains(&format!("environment variable {variable}")),
            "{variable}={value:?}: {stderr}"
        );
    }
}

/// An empty secret is no secret: the servers share the one in Redis, so a token from one is
/// good on the other (with a random key each, the other would answer 401).
#[actix_rt::test]
async fn an_empty_secret_leaves_the_servers_sharing_one() {
    let redis = Redis::start();
    let addr = redis.addr();
    let start = |name: &str| {
        let server = Server::start_with_env(
            &["-redis", &addr, "-node-id", name],
            &[("ROBOT_RACE_SECRET", "")],
        );
        assert!(server
            .logs
            .wait_for("multi-server mode enabled", Duration::from_secs(20)));
        server
    };
    let one = start("e1");
    let two = start("e2");
    let ann = one.api().create("ann", 5, 0).await;
    let bob = two.api().join(&ann.game_id, "bob").await;
    let mut ann_on_two = connect(&two, &ann).await;
    let mut bob_on_one = connect(&one, &bob).await;
    for player in [&mut ann_on_two, &mut bob_on_one] {
        player
            .wait_game(Duration::from_secs(10), |g| {
                g["robots"].as_array().map_or(0, Vec::len) == 2
            })
            .await;
    }
    assert_eq!(settings(&one).await["secret"], "shared or random");
}
