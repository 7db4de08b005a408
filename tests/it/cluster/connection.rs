//! Connecting to Redis: a password (flag, environment, URL; a wrong one is a warning), TLS,
//! Redis absent at start, and Redis killed mid-race and restarted empty.

use std::time::Duration;

use serde_json::json;

use super::{cluster, stored};
use crate::helpers::*;

#[actix_rt::test]
async fn password_in_flag_env_and_url_and_a_wrong_one_is_a_warning() {
    let redis = Redis::start_with(&["--requirepass", "s3cret"]);
    let by_flag = Server::start(&["-redis", &redis.addr(), "-redis-password", "s3cret"]);
    let by_env =
        Server::start_with_env(&["-redis", &redis.addr()], &[("REDIS_PASSWORD", "s3cret")]);
    let url = format!("redis://:s3cret@{}/0", redis.addr());
    let by_url = Server::start(&["-redis", &url]);
    for s in [&by_flag, &by_env, &by_url] {
        assert!(
            s.logs.wait_for("multi-server mode enabled", SECS(20)),
            "{}",
            s.logs.all()
        );
        assert!(!s.logs.all().contains("s3cret"), "the password was logged");
    }
    let game = by_flag.api().create("ann", 5, 0).await;
    by_url.api().join(&game.game_id, "bob").await;

    let wrong = Server::start(&["-redis", &redis.addr(), "-redis-password", "nope"]);
    assert!(
        wrong.logs.wait_for(
            &format!("WARNING: Failed to connect to Redis at {}", redis.addr()),
            SECS(20)
        ),
        "{}",
        wrong.logs.all()
    );
    // Still serving, alone.
    let (_, health) = wrong.api().get_json("/health").await;
    assert_eq!(health["redis"], "down");
    wrong.api().create("solo", 5, 0).await;
}

#[actix_rt::test]
async fn tls_rediss_with_insecure_fragment_connects_and_verifies_otherwise() {
    let dir = temp_dir("tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is needed to make a test certificate: apt-get install -y openssl")
        .success();
    assert!(ok, "openssl could not make a certificate");
    let port = free_port();
    let mut redis = Redis::start_with(&[
        "--port",
        "0",
        "--tls-port",
        &port.to_string(),
        "--tls-cert-file",
        cert.to_str().unwrap(),
        "--tls-key-file",
        key.to_str().unwrap(),
        "--tls-ca-cert-file",
        cert.to_str().unwrap(),
        "--tls-auth-clients",
        "no",
    ]);
    let insecure = Server::start(&["-redis", &format!("rediss://127.0.0.1:{port}/#insecure")]);
    assert!(
        insecure.logs.wait_for(
            &format!("Connected to Redis at 127.0.0.1:{port} - multi-server mode enabled"),
            SECS(20)
        ),
        "{}",
        insecure.logs.all()
    );
    let game = insecure.api().create("ann", 5, 0).await;
    assert_eq!(
        insecure.api().game(&game.game_id).await["id"],
        game.game_id.as_str()
    );
    // Without the fragment the self-signed certificate is checked, and refused.
    let strict = Server::start(&["-redis", &format!("rediss://127.0.0.1:{port}")]);
    assert!(
        strict
            .logs
            .wait_for("WARNING: Failed to connect to Redis at", SECS(20)),
        "{}",
        strict.logs.all()
    );
    redis.kill();
    let _ = std::fs::remove_dir_all(dir);
}

#[actix_rt::test]
async fn redis_absent_at_start_then_started() {
    let mut redis = Redis::not_started();
    let server = Server::start(&["-redis", &redis.addr()]);
    assert!(
        server.logs.wait_for(
            &format!("WARNING: Failed to connect to Redis at {}", redis.addr()),
            SECS(20)
        ),
        "{}",
        server.logs.all()
    );
    let api = server.api();
    let (_, health) = api.get_json("/health").await;
    assert_eq!(
        (health["mode"].as_str(), health["redis"].as_str()),
        (Some("cluster"), Some("down"))
    );
    // Playable alone meanwhile.
    let ann = api.create("ann", 5, 0).await;
    api.join(&ann.game_id, "bob").await;
    redis.launch();
    assert!(
        server
            .logs
            .wait_for_async("multi-server mode enabled", SECS(15))
            .await,
        "{}",
        server.logs.all()
    );
    // The game made while Redis was away is saved once it is back.
    let deadline = std::time::Instant::now() + SECS(20);
    while redis.get(&format!("game_state:{}", ann.game_id)).is_none()
        && std::time::Instant::now() < deadline
    {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        stored(&redis, &ann.game_id)["robots"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (_, health) = api.get_json("/health").await;
    assert_eq!(health["redis"], "connected");
}

#[actix_rt::test]
async fn redis_killed_mid_race_and_restarted_empty() {
    let (mut redis, servers) = cluster(2);
    let ann = servers[0].api().create("ann", 60, 0).await;
    let bob = servers[1].api().join(&ann.game_id, "bob").await;
    let mut owner_side = connect(&servers[0], &ann).await;
    let mut other_side = connect(&servers[1], &bob).await;
    owner_side.send(json!({"type": "start_countdown"})).await;
    owner_side
        .wait_game(SECS(15), |g| state(g) == "playing")
        .await;
    owner_side.press_paced(5, Duration::from_millis(40)).await;
    other_side.press_paced(5, Duration::from_millis(40)).await;
    other_side
        .wait_game(SECS(15), |g| {
            g["robots"][0]["score"] == 5 && g["robots"][1]["score"] == 5
        })
        .await;

    redis.kill();
    assert!(
        servers[0]
            .logs
            .wait_for_async("Lost the connection to Redis", SECS(20))
            .await
    );
    // Nothing can be saved: the owner's player's presses are answered `unavailable` (within
    // 2 s) and never shown.
    owner_side.press_paced(10, Duration::from_millis(40)).await;
    let err = owner_side.wait_error(SECS(3)).await;
    assert_eq!(err["error"], "unavailable");
    owner_side.drain(SECS(2)).await;
    assert_eq!(owner_side.game["robots"][0]["score"], 5);

    redis.restart_empty();
    for s in &servers {
        assert!(
            s.logs
                .wait_for_async(&format!("Connected to Redis at {}", redis.addr()), SECS(15))
                .await
        );
    }
    // Reconnected and re-saved: the state is back in the empty Redis.
    let deadline = std::time::Instant::now() + SECS(20);
    while redis.get(&format!("game_state:{}", ann.game_id)).is_none()
        && std::time::Instant::now() < deadline
    {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored(&redis, &ann.game_id)["robots"][0]["score"], 5);
    // The race goes on across both servers to the finish, from where it was.
    owner_side.press_paced(10, Duration::from_millis(40)).await;
    other_side
        .wait_game(SECS(20), |g| g["robots"][0]["score"] == 15)
        .await;
    other_side.press_paced(55, Duration::from_millis(40)).await;
    for p in [&mut owner_side, &mut other_side] {
        let game = p.wait_game(SECS(20), |g| state(g) == "finished").await;
        assert_eq!(game["winner"], bob.robot_id.as_str());
        assert_eq!(game["robots"][0]["score"], 15);
    }
    assert_eq!(stored(&redis, &ann.game_id)["state"], "finished");
}
