//! Several servers on one real Redis: cross-server play, no lost press, one countdown, one
//! winner; password and TLS connections; Redis absent, killed and restarted; a server killed.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::helpers::*;

fn node(redis: &Redis, name: &str) -> Server {
    node_with(redis, name, &[])
}

fn node_with(redis: &Redis, name: &str, extra: &[&str]) -> Server {
    let server = cluster_node(redis, name, extra);
    assert!(server
        .logs
        .contains("Subscribed to Redis channels: [game:*]"));
    server
}

fn cluster(n: usize) -> (Redis, Vec<Server>) {
    cluster_with(n, &[])
}

fn cluster_with(n: usize, extra: &[&str]) -> (Redis, Vec<Server>) {
    let redis = Redis::start();
    let servers = (1..=n)
        .map(|i| node_with(&redis, &format!("node{i}"), extra))
        .collect();
    (redis, servers)
}

fn stored(redis: &Redis, game_id: &str) -> Value {
    let json = redis
        .get(&format!("game_state:{game_id}"))
        .unwrap_or_else(|| panic!("game_state:{game_id} is missing"));
    serde_json::from_str(&json).unwrap()
}

/// The countdown values a player saw, from the start of the countdown to the first `playing`.
fn countdown_seen(player: &Player) -> Vec<u64> {
    let mut seen = Vec::new();
    for game in &player.history {
        match state(game) {
            "counting_down" => seen.push(game["countdown"].as_u64().unwrap()),
            "playing" => {
                seen.push(game["countdown"].as_u64().unwrap());
                break;
            }
            _ => {}
        }
    }
    seen
}

#[actix_rt::test]
async fn a_game_created_on_one_server_is_played_from_three() {
    let (redis, servers) = cluster(3);
    let ann = servers[0].api().create("ann", 5, 3).await;
    let bob = servers[1].api().join(&ann.game_id, "bob").await;
    // An unknown game is a 404 on every server, not a server error.
    let (status, body) = servers[2]
        .api()
        .post_json("/api/games/NoSuchGame/players", json!({"name": "x"}))
        .await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    // The browser flow on a second server: join form → cookie → race page on that server.
    let http = awc::Client::builder().disable_redirects().finish();
    let mut join_page = http
        .get(servers[1].url(&format!("/join/{}", ann.game_id)))
        .send()
        .await
        .unwrap();
    let page = String::from_utf8(join_page.body().await.unwrap().to_vec()).unwrap();
    assert!(page.contains("2/10"), "{page}");
    let res = http
        .post(servers[1].url(&format!("/join/{}", ann.game_id)))
        .send_form(&[("name", "cy")])
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let cookie = res.cookies().unwrap()[0].clone();
    // The cookie from server 2 opens the race page on server 3 (no sticky sessions).
    let race = http
        .get(servers[2].url(&format!("/game/{}", ann.game_id)))
        .cookie(cookie.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(race.status(), 200);
    let cy = Joined {
        game_id: ann.game_id.clone(),
        robot_id: cookie.value().split('.').next().unwrap().to_owned(),
        token: cookie.value().to_owned(),
    };

    // Every player on a server other than the one that issued its token.
    let mut players = vec![
        connect(&servers[2], &ann).await,
        connect(&servers[0], &bob).await,
        connect(&servers[1], &cy).await,
    ];
    for p in players.iter_mut() {
        p.wait_game(SECS(15), |g| g["robots"].as_array().unwrap().len() == 3)
            .await;
    }
    // The admin starts from server 3; the owner (server 1) runs one countdown.
    players[0].send(json!({"type": "start_countdown"})).await;
    for p in players.iter_mut() {
        p.wait_game(SECS(20), |g| state(g) == "playing").await;
    }
    for p in &players {
        assert_eq!(countdown_seen(p), [3, 2, 1, 0], "{:?}", p.history);
    }
    for _ in 0..5 {
        players[1].press().await;
    }
    let winner = players[1].robot_id.clone();
    for p in players.iter_mut() {
        let game = p.wait_game(SECS(20), |g| state(g) == "finished").await;
        assert_eq!(game["winner"], winner.as_str());
        assert_eq!(game["leaderboard"][0]["robot_id"], winner.as_str());
    }
    // Play again from server 3 too.
    players[0].send(json!({"type": "play_again"})).await;
    for p in players.iter_mut() {
        p.wait_game(SECS(20), |g| state(g) == "setup").await;
    }
    let saved = stored(&redis, &ann.game_id);
    assert_eq!(saved["state"], "setup");
    assert_eq!(saved["leaderboard"][0]["wins"], 1);
    assert!(redis.ttl(&format!("game_state:{}", ann.game_id)) > 86_000);
    assert!(!saved.to_string().contains(&ann.token));
    // /_stats counts across the cluster; /health tells mode and node.
    servers[2].api().create("dan", 5, 0).await;
    let (_, stats) = servers[1].api().get_json("/_stats").await;
    assert_eq!(stats["games_created"], 2);
    let (_, health) = servers[1].api().get_json("/health").await;
    assert_eq!(
        (
            health["mode"].as_str(),
            health["redis"].as_str(),
            health["node_id"].as_str()
        ),
        (Some("cluster"), Some("connected"), Some("node2"))
    );
}

/// 3 servers × 3 players × 300 presses, as fast as the rate limit allows: nothing is lost.
#[actix_rt::test]
async fn no_press_is_lost_across_servers() {
    no_press_lost(&[]).await;
}

/// The same with every server in same-thread mode (HTTP, games and Redis on one thread).
#[actix_rt::test]
async fn no_press_is_lost_across_same_thread_servers() {
    no_press_lost(&["-same-thread"]).await;
}

async fn no_press_lost(extra: &[&str]) {
    const PRESSES: usize = 300;
    let (redis, servers) = cluster_with(3, extra);
    let admin = servers[0].api().create("p0", 1000, 3).await;
    let mut joined = vec![admin.clone()];
    for i in 1..9 {
        joined.push(
            servers[i % 3]
                .api()
                .join(&admin.game_id, &format!("p{i}"))
                .await,
        );
    }
    let mut players = Vec::new();
    for (i, j) in joined.iter().enumerate() {
        players.push(connect(&servers[i % 3], j).await);
    }
    for p in players.iter_mut() {
        p.wait_game(SECS(15), |g| g["robots"].as_array().unwrap().len() == 9)
            .await;
    }
    players[0].send(json!({"type": "start_countdown"})).await;
    join_all(
        players
            .iter_mut()
            .map(|p| p.wait_game(SECS(20), |g| state(g) == "playing")),
    )
    .await;
    // 25 presses a second each: just under the 30/s limit, all nine at once.
    join_all(
        players
            .iter_mut()
            .map(|p| p.press_paced(PRESSES, Duration::from_millis(40))),
    )
    .await;
    let every_robot_at = |g: &Value| {
        g["robots"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["score"] == PRESSES)
    };
    for p in players.iter_mut() {
        p.wait_game(SECS(20), every_robot_at).await;
        assert_eq!(countdown_seen(p), [3, 2, 1, 0]);
        assert!(p.errors.is_empty(), "errors: {:?}", p.errors);
        // Each version arrived once: no update was relayed twice.
        let mut versions: Vec<u64> = p
            .history
            .iter()
            .map(|g| g["version"].as_u64().unwrap())
            .collect();
        let n = versions.len();
        versions.dedup();
        assert_eq!(versions.len(), n, "a version arrived twice");
    }
    let saved = stored(&redis, &admin.game_id);
    assert!(every_robot_at(&saved), "stored: {saved}");
    let versions: Vec<u64> = players
        .iter()
        .map(|p| p.game["version"].as_u64().unwrap())
        .collect();
    assert!(versions.iter().all(|v| *v == versions[0]), "{versions:?}");
}

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
    // The owner keeps its own players racing.
    owner_side.press_paced(10, Duration::from_millis(40)).await;
    owner_side
        .wait_game(SECS(15), |g| g["robots"][0]["score"] == 15)
        .await;

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
    assert_eq!(stored(&redis, &ann.game_id)["robots"][0]["score"], 15);
    // The race goes on across both servers to the finish.
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

/// The owning server dies (SIGKILL): another takes the game over and the race goes on.
#[actix_rt::test]
async fn a_killed_owner_is_replaced_and_the_race_goes_on() {
    let redis = Redis::start();
    let mut owner = node(&redis, "owner");
    let other = node(&redis, "other");
    let ann = owner.api().create("ann", 30, 0).await;
    let bob = other.api().join(&ann.game_id, "bob").await;
    let ann_again = ann.clone();
    let mut bob_ws = connect(&other, &bob).await;
    {
        let mut ann_ws = connect(&owner, &ann).await;
        ann_ws.send(json!({"type": "start_countdown"})).await;
        bob_ws.wait_game(SECS(15), |g| state(g) == "playing").await;
        bob_ws.press_paced(10, Duration::from_millis(40)).await;
        ann_ws.press_paced(3, Duration::from_millis(40)).await;
        bob_ws
            .wait_game(SECS(15), |g| {
                g["robots"][1]["score"] == 10 && g["robots"][0]["score"] == 3
            })
            .await;
    }
    owner.kill();
    // Bob keeps pressing: the other server finds the owner gone, takes over, counts them all.
    bob_ws.press_paced(20, Duration::from_millis(40)).await;
    let game = bob_ws.wait_game(SECS(15), |g| state(g) == "finished").await;
    assert_eq!(game["winner"], bob.robot_id.as_str());
    assert_eq!(game["robots"][0]["score"], 3);
    assert_eq!(
        redis.get(&format!("game_owner:{}", ann.game_id)).as_deref(),
        Some("other")
    );
    // Ann reconnects to the surviving server with her old token.
    let ann_ws = connect(&other, &ann_again).await;
    assert_eq!(ann_ws.game["winner"], bob.robot_id.as_str());
}

/// SIGTERM on the owner hands its games over at once.
#[actix_rt::test]
async fn sigterm_on_the_owner_hands_the_game_over() {
    sigterm_hands_over(&[]).await;
}

/// The same with same-thread servers: shutdown drains before the one worker stops.
#[actix_rt::test]
async fn sigterm_on_a_same_thread_owner_hands_the_game_over() {
    sigterm_hands_over(&["-same-thread"]).await;
}

async fn sigterm_hands_over(extra: &[&str]) {
    let redis = Redis::start();
    let mut owner = node_with(&redis, "leaving", extra);
    let other = node_with(&redis, "staying", extra);
    let ann = owner.api().create("ann", 5, 0).await;
    let bob = other.api().join(&ann.game_id, "bob").await;
    let mut ann_ws = connect(&owner, &ann).await;
    for name in ["cy", "dan", "eve"] {
        owner.api().create(name, 5, 0).await;
    }
    // Let lease renewals run first: a renewal must never take back a released lease.
    actix_rt::time::sleep(SECS(3)).await;
    assert_eq!(redis.keys("game_owner:*").len(), 4);
    let status = owner.terminate().expect("no exit after SIGTERM");
    assert!(status.success());
    assert_eq!(
        ann_ws.wait_close(SECS(15)).await.map(|r| r.code),
        Some(awc::ws::CloseCode::Away)
    );
    assert!(owner.logs.contains("released 4 game(s) to the cluster"));
    // A server that owns nothing stops cleanly too.
    let mut idle = node_with(&redis, "idle", extra);
    assert!(idle.terminate().expect("no exit after SIGTERM").success());
    assert!(
        !idle.logs.contains("could not release"),
        "{}",
        idle.logs.all()
    );
    assert_eq!(
        redis.keys("game_owner:*"),
        Vec::<String>::new(),
        "leases not released"
    );
    // Both players continue on the remaining server.
    let mut ann_ws = connect(&other, &ann).await;
    let mut bob_ws = connect(&other, &bob).await;
    ann_ws.send(json!({"type": "start_countdown"})).await;
    bob_ws.wait_game(SECS(15), |g| state(g) == "playing").await;
    bob_ws.press_paced(5, Duration::from_millis(40)).await;
    let game = ann_ws.wait_game(SECS(15), |g| state(g) == "finished").await;
    assert_eq!(game["winner"], bob.robot_id.as_str());
    assert_eq!(
        redis.get(&format!("game_owner:{}", ann.game_id)).as_deref(),
        Some("staying")
    );
}

/// An idle game ends on every server: players on the owner and elsewhere are told, and
/// its keys are gone.
#[actix_rt::test]
async fn an_idle_game_ends_on_every_server() {
    let redis = Redis::start();
    let args = |name: &str| {
        vec![
            "-redis".to_owned(),
            redis.addr(),
            "-node-id".to_owned(),
            name.to_owned(),
            "-idle-timeout-secs".to_owned(),
            "2".to_owned(),
        ]
    };
    let start = |name: &str| {
        let a = args(name);
        let s = Server::start(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(s.logs.wait_for("multi-server mode enabled", SECS(20)));
        s
    };
    let (owner, other) = (start("owner"), start("other"));
    let ann = owner.api().create("ann", 5, 0).await;
    let bob = other.api().join(&ann.game_id, "bob").await;
    let mut ann_ws = connect(&owner, &ann).await;
    let mut bob_ws = connect(&other, &bob).await;
    for p in [&mut ann_ws, &mut bob_ws] {
        p.wait_close(SECS(15)).await;
        assert!(p.terminated, "no terminated message");
    }
    assert!(redis.get(&format!("game_state:{}", ann.game_id)).is_none());
    assert!(redis.get(&format!("game_owner:{}", ann.game_id)).is_none());
    let (status, _) = other
        .api()
        .get_json(&format!("/api/games/{}", ann.game_id))
        .await;
    assert_eq!(status, 404);
}

/// Redis restarts empty while the owner is frozen (SIGSTOP): the other server reconnects
/// first and finds the game missing. It must not end the game; the owner, once back, saves
/// it again and the race goes on with the owner's scores.
#[actix_rt::test]
async fn a_replica_waits_for_the_owner_when_redis_comes_back_empty() {
    let mut redis = Redis::start();
    let owner = node(&redis, "owner");
    let other = node(&redis, "other");
    let ann = owner.api().create("ann", 20, 0).await;
    let bob = other.api().join(&ann.game_id, "bob").await;
    let mut ann_ws = connect(&owner, &ann).await;
    let mut bob_ws = connect(&other, &bob).await;
    ann_ws.send(json!({"type": "start_countdown"})).await;
    bob_ws.wait_game(SECS(15), |g| state(g) == "playing").await;
    ann_ws.press_paced(4, Duration::from_millis(40)).await;
    bob_ws
        .wait_game(SECS(15), |g| g["robots"][0]["score"] == 4)
        .await;

    signal(&owner, "STOP");
    redis.restart_empty();
    assert!(
        other
            .logs
            .wait_for_async("waiting for its owner to save it", SECS(15))
            .await,
        "{}",
        other.logs.all()
    );
    signal(&owner, "CONT");
    // The owner reconnects and saves; bob's presses reach it; nobody was sent away.
    bob_ws.press_paced(20, Duration::from_millis(40)).await;
    let game = bob_ws.wait_game(SECS(20), |g| state(g) == "finished").await;
    assert_eq!(game["winner"], bob.robot_id.as_str());
    assert_eq!(game["robots"][0]["score"], 4);
    assert!(!bob_ws.terminated);
    assert_eq!(stored(&redis, &ann.game_id)["state"], "finished");
}

/// Redis comes back empty and the owner is dead: the other server restores the game from
/// its own copy after the grace period, and its players race on.
#[actix_rt::test]
async fn a_lost_game_is_restored_from_a_replica_when_its_owner_is_dead() {
    let mut redis = Redis::start();
    let lease = ["-owner-lease-ms", "1000"];
    let start = |name: &str, redis: &Redis| {
        let s = Server::start(&[
            "-redis",
            &redis.addr(),
            "-node-id",
            name,
            lease[0],
            lease[1],
        ]);
        assert!(s.logs.wait_for("multi-server mode enabled", SECS(20)));
        s
    };
    let mut owner = start("owner", &redis);
    let other = start("other", &redis);
    let ann = owner.api().create("ann", 10, 0).await;
    let bob = other.api().join(&ann.game_id, "bob").await;
    let mut bob_ws = connect(&other, &bob).await;
    let mut ann_ws = connect(&owner, &ann).await;
    ann_ws.send(json!({"type": "start_countdown"})).await;
    bob_ws.wait_game(SECS(15), |g| state(g) == "playing").await;
    ann_ws.press_paced(3, Duration::from_millis(40)).await;
    bob_ws
        .wait_game(SECS(15), |g| g["robots"][0]["score"] == 3)
        .await;
    owner.kill();
    redis.restart_empty();
    bob_ws.press_paced(10, Duration::from_millis(40)).await;
    let game = bob_ws.wait_game(SECS(30), |g| state(g) == "finished").await;
    assert_eq!(game["winner"], bob.robot_id.as_str());
    assert_eq!(game["robots"][0]["score"], 3);
    assert_eq!(
        redis.get(&format!("game_owner:{}", ann.game_id)).as_deref(),
        Some("other")
    );
}

fn signal(server: &Server, sig: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(server.pid().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} failed");
}

/// A replica that reconnects after the owner has already saved and published again (it was
/// frozen meanwhile) reads the game again: its players see what they missed without waiting
/// for another change.
#[actix_rt::test]
async fn a_replica_that_reconnects_late_catches_up() {
    let mut redis = Redis::start();
    let owner = node(&redis, "owner");
    let other = node(&redis, "other");
    let ann = owner.api().create("ann", 50, 0).await;
    let bob = other.api().join(&ann.game_id, "bob").await;
    let mut ann_ws = connect(&owner, &ann).await;
    let mut bob_ws = connect(&other, &bob).await;
    ann_ws.send(json!({"type": "start_countdown"})).await;
    bob_ws.wait_game(SECS(15), |g| state(g) == "playing").await;

    redis.kill();
    assert!(
        owner
            .logs
            .wait_for_async("Lost the connection to Redis", SECS(20))
            .await
    );
    signal(&other, "STOP");
    ann_ws.press_paced(7, Duration::from_millis(40)).await;
    redis.restart_empty();
    // The owner is back and has saved (and published) the game before the replica listens.
    let deadline = std::time::Instant::now() + SECS(20);
    while stored_score(&redis, &ann.game_id) != Some(7) && std::time::Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored_score(&redis, &ann.game_id), Some(7));
    signal(&other, "CONT");
    // No further change happens: the replica must catch up by itself.
    let game = bob_ws
        .wait_game(SECS(20), |g| g["robots"][0]["score"] == 7)
        .await;
    assert_eq!(state(&game), "playing");
}

fn stored_score(redis: &Redis, game_id: &str) -> Option<u64> {
    let json = redis.get(&format!("game_state:{game_id}"))?;
    serde_json::from_str::<Value>(&json).ok()?["robots"][0]["score"].as_u64()
}
