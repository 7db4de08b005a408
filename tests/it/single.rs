//! One server, no Redis: full games over the JSON API and real WebSockets, the browser form
//! flow over HTTP, idle expiry and SIGTERM.

use serde_json::json;

use crate::helpers::*;

/// Plays a whole round: countdown, presses until `winner` wins, checks every player saw it.
async fn race(players: &mut [Player], winner: usize, winning_score: u64) {
    for p in players.iter_mut() {
        p.wait_game(SECS(10), |g| state(g) == "playing").await;
    }
    // Everybody but the winner presses a little; the winner presses to the top.
    for (i, p) in players.iter_mut().enumerate() {
        if i != winner {
            p.press().await;
        }
    }
    for _ in 0..winning_score {
        players[winner].press().await;
    }
    let winner_id = players[winner].robot_id.clone();
    for p in players.iter_mut() {
        let game = p.wait_game(SECS(10), |g| state(g) == "finished").await;
        assert_eq!(game["winner"], winner_id.as_str());
        assert_eq!(robot(&game, &winner_id)["score"], winning_score);
        for r in game["robots"].as_array().unwrap() {
            assert!(r["score"].as_u64().unwrap() <= winning_score);
        }
    }
}

#[actix_rt::test]
async fn two_players_race_and_play_again() {
    let server = Server::start(&[]);
    let api = server.api();
    let ann = api.create("ann", 5, 1).await;
    let bob = api.join(&ann.game_id, "bob").await;
    let mut players = vec![connect(&server, &ann).await, connect(&server, &bob).await];
    assert!(players[0].admin && !players[1].admin);
    assert_eq!(players[0].robot_id, ann.robot_id);
    // Welcome shows both lanes in join order, and never a token.
    let lanes: Vec<_> = players[1].game["robots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(lanes, ["ann", "bob"]);
    assert!(!players[1].game.to_string().contains(&bob.token));

    players[0].send(json!({"type": "start_countdown"})).await;
    let counting = players[1]
        .wait_game(SECS(5), |g| state(g) == "counting_down")
        .await;
    assert_eq!(counting["countdown"], 1);
    race(&mut players, 1, 5).await;
    let game = players[0].game.clone();
    assert_eq!(game["leaderboard"][0]["robot_id"], bob.robot_id.as_str());
    assert_eq!(game["leaderboard"][0]["wins"], 1);

    // Presses after the finish change nothing.
    players[0].press().await;
    players[0].send(json!({"type": "play_again"})).await;
    let reset = players[1].wait_game(SECS(5), |g| state(g) == "setup").await;
    assert!(reset["robots"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["score"] == 0));
    assert_eq!(reset["winner"], serde_json::Value::Null);
    assert_eq!(reset["leaderboard"][0]["wins"], 1);
    // A new robot may join the next round.
    let cy = api.join(&ann.game_id, "cy").await;
    players.push(connect(&server, &cy).await);
    players[0].send(json!({"type": "start_countdown"})).await;
    race(&mut players, 0, 5).await;
    let board = players[2].game["leaderboard"].clone();
    let wins: Vec<u64> = board
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["wins"].as_u64().unwrap())
        .collect();
    assert_eq!(wins, [1, 1, 0]);
    // Versions only rose on every screen.
    for p in &players {
        let versions: Vec<u64> = p
            .history
            .iter()
            .map(|g| g["version"].as_u64().unwrap())
            .collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    }
}

#[actix_rt::test]
async fn ten_players_fill_the_game_and_an_eleventh_is_refused() {
    let server = Server::start(&[]);
    let api = server.api();
    let admin = api.create("p0", 10, 0).await;
    let mut joined = vec![admin.clone()];
    for i in 1..10 {
        joined.push(api.join(&admin.game_id, &format!("p{i}")).await);
    }
    let (status, body) = api
        .post_json(
            &format!("/api/games/{}/players", admin.game_id),
            json!({"name": "late"}),
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (409, Some("game_full")));
    let mut players = Vec::new();
    for j in &joined {
        players.push(connect(&server, j).await);
    }
    // Every screen fills to 10 lanes.
    for p in players.iter_mut() {
        p.wait_game(SECS(5), |g| g["robots"].as_array().unwrap().len() == 10)
            .await;
    }
    players[0].send(json!({"type": "start_countdown"})).await;
    race(&mut players, 7, 10).await;
    let (status, body) = api.get_json(&format!("/api/games/{}", admin.game_id)).await;
    assert_eq!(status, 200);
    assert_eq!(body["winner"], joined[7].robot_id.as_str());
    assert_eq!(body["state"], "finished");
}

#[actix_rt::test]
async fn browser_form_flow_sets_cookies_and_redirects() {
    let server = Server::start(&[]);
    let http = awc::Client::builder()
        .disable_redirects()
        .timeout(SECS(10))
        .finish();
    let mut lobby = http.get(server.url("/")).send().await.unwrap();
    let page = String::from_utf8(lobby.body().await.unwrap().to_vec()).unwrap();
    assert_eq!(lobby.status(), 200);
    let csp = lobby.headers().get("content-security-policy").unwrap();
    assert!(csp.to_str().unwrap().contains("default-src 'self'"));
    assert_eq!(
        lobby.headers().get("x-content-type-options").unwrap(),
        "nosniff"
    );
    for text in [
        "Robot Race",
        "2 - 10 players",
        "First to the top wins!",
        "Start new game",
    ] {
        assert!(page.contains(text), "lobby lacks {text:?}");
    }
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "lobby loads from another host"
    );

    // Create: 303 to the race page with the player cookie.
    let res = http
        .post(server.url("/"))
        .send_form(&[("name", "ann")])
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let location = res
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let game_id = location.strip_prefix("/game/").unwrap().to_owned();
    let cookie = res.cookies().unwrap()[0].clone();
    assert!(cookie.http_only().unwrap_or(false));
    let mut race = http
        .get(server.url(&location))
        .cookie(cookie.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(race.status(), 200);
    let page = String::from_utf8(race.body().await.unwrap().to_vec()).unwrap();
    assert!(
        page.contains(&game_id) && page.contains(r#"data-admin="true""#),
        "{page}"
    );
    assert!(
        !page.contains(cookie.value()),
        "the race page must not show the token"
    );

    // Without the cookie: sent to the join form.
    let res = http.get(server.url(&location)).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(
        res.headers().get("location").unwrap(),
        format!("/join/{game_id}").as_str()
    );

    // The join form shows the player count, and joining works the same way.
    let mut join = http
        .get(server.url(&format!("/join/{game_id}")))
        .send()
        .await
        .unwrap();
    let page = String::from_utf8(join.body().await.unwrap().to_vec()).unwrap();
    assert_eq!(join.status(), 200);
    assert!(page.contains("1/10"), "{page}");
    let res = http
        .post(server.url(&format!("/join/{game_id}")))
        .send_form(&[("name", "<b>bob</b>")])
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let bob_cookie = res.cookies().unwrap()[0].clone();
    let mut bob_page = http
        .get(server.url(&location))
        .cookie(bob_cookie.clone())
        .send()
        .await
        .unwrap();
    let page = String::from_utf8(bob_page.body().await.unwrap().to_vec()).unwrap();
    assert!(page.contains(r#"data-admin="false""#));

    // The cookie also opens the WebSocket (as the browser does).
    let client = awc::Client::new();
    let (_, mut framed) = client
        .ws(server.ws_url(&format!("/ws/{game_id}")))
        .cookie(bob_cookie)
        .connect()
        .await
        .expect("ws with cookie");
    let frame = futures_util::StreamExt::next(&mut framed)
        .await
        .unwrap()
        .unwrap();
    let awc::ws::Frame::Text(text) = frame else {
        panic!("expected a text frame")
    };
    let welcome: serde_json::Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(welcome["type"], "welcome");
    // The name with HTML is data, escaped wherever a page shows it.
    assert_eq!(welcome["game"]["robots"][1]["name"], "<b>bob</b>");

    // Form errors re-render with the message: bad name 422, unknown game 404.
    let mut bad = http
        .post(server.url(&format!("/join/{game_id}")))
        .send_form(&[("name", "   ")])
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let page = String::from_utf8(bad.body().await.unwrap().to_vec()).unwrap();
    assert!(page.contains("1 to 10 characters"), "{page}");
    let mut bad = http
        .post(server.url("/"))
        .send_form(&[("name", "<script>alert(1)</script>")])
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let page = String::from_utf8(bad.body().await.unwrap().to_vec()).unwrap();
    assert!(
        !page.contains("<script>alert(1)"),
        "names are escaped: {page}"
    );
    let mut missing = http
        .get(server.url("/join/NoSuchGame"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let page = String::from_utf8(missing.body().await.unwrap().to_vec()).unwrap();
    assert!(page.contains(r#"href="/""#));
    let res = http
        .post(server.url("/join/NoSuchGame"))
        .send_form(&[("name", "x")])
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[actix_rt::test]
async fn a_game_in_progress_refuses_joins_by_form_and_api() {
    let server = Server::start(&[]);
    let api = server.api();
    let ann = api.create("ann", 5, 3).await;
    let bob = api.join(&ann.game_id, "bob").await;
    let mut admin = connect(&server, &ann).await;
    let _guest = connect(&server, &bob).await;
    admin.send(json!({"type": "start_countdown"})).await;
    admin
        .wait_game(SECS(5), |g| state(g) == "counting_down")
        .await;
    let (status, body) = api
        .post_json(
            &format!("/api/games/{}/players", ann.game_id),
            json!({"name": "late"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("game_in_progress"))
    );
    let mut res = api
        .client
        .post(server.url(&format!("/join/{}", ann.game_id)))
        .send_form(&[("name", "late")])
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    let page = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    assert!(page.contains("already started"), "{page}");
}

#[actix_rt::test]
async fn idle_games_end_and_players_are_told() {
    let server = Server::start(&["-idle-timeout-secs", "1"]);
    let api = server.api();
    let ann = api.create("ann", 5, 0).await;
    let mut player = connect(&server, &ann).await;
    let reason = player.wait_close(SECS(10)).await;
    assert!(player.terminated, "no terminated message before the close");
    assert_eq!(reason.map(|r| r.code), Some(awc::ws::CloseCode::Normal));
    let (status, body) = api.get_json(&format!("/api/games/{}", ann.game_id)).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
}

#[actix_rt::test]
async fn sigterm_closes_sockets_with_going_away_and_exits_zero() {
    let mut server = Server::start(&[]);
    let api = server.api();
    let ann = api.create("ann", 5, 0).await;
    let mut player = connect(&server, &ann).await;
    let started = std::time::Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status();
    let reason = player.wait_close(SECS(10)).await;
    assert_eq!(reason.map(|r| r.code), Some(awc::ws::CloseCode::Away));
    let status = server
        .wait_exit(SECS(10))
        .expect("did not exit after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert!(started.elapsed() < SECS(8), "took {:?}", started.elapsed());
    assert!(server.logs.contains("Shutting down"));
}

#[actix_rt::test]
async fn health_metrics_and_stats() {
    let server = Server::start(&["-node-id", "solo-1"]);
    assert!(server
        .logs
        .contains("Redis pub/sub disabled - running in single-server mode"));
    let api = server.api();
    let ann = api.create("ann", 5, 0).await;
    let mut ann_ws = connect(&server, &ann).await;
    let (status, health) = api.get_json("/health").await;
    assert_eq!(status, 200);
    let mut health = health;
    let settings = health.as_object_mut().unwrap().remove("settings").unwrap();
    assert_eq!(
        health,
        json!({"status":"ok","mode":"single","redis":"disabled","node_id":"solo-1",
               "connections":1,"games":1})
    );
    // The settings in force, defaults here (environment.rs reads them as operators set them).
    assert_eq!(settings["ws_frame_rate"], 40);
    assert_eq!(settings["trust_proxy"], false);
    assert_eq!(settings["secret"], "shared or random");
    api.create("bob", 5, 0).await;
    let (_, stats) = api.get_json("/_stats").await;
    assert_eq!(stats["games_created"], 2);
    // Three presses in a race (a second player, then start): each timed to its broadcast.
    let bob = api.join(&ann.game_id, "bob").await;
    let _bob_ws = connect(&server, &bob).await;
    ann_ws.send(json!({"type": "start_countdown"})).await;
    ann_ws.wait_game(SECS(10), |g| state(g) == "playing").await;
    ann_ws
        .press_paced(3, std::time::Duration::from_millis(20))
        .await;
    ann_ws
        .wait_game(SECS(10), |g| g["robots"][0]["score"] == 3)
        .await;
    let mut res = api.client.get(server.url("/metrics")).send().await.unwrap();
    let text = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    for line in [
        "robot_race_connections 2",
        "robot_race_games{state=\"setup\"} 1",
        "robot_race_games{state=\"playing\"} 1",
        "robot_race_games_created_total 2",
        "# TYPE robot_race_presses counter",
        "robot_race_presses_total 3",
        "# TYPE robot_race_press_to_broadcast_seconds histogram",
        "robot_race_press_to_broadcast_seconds_bucket{le=\"+Inf\"} 3",
        "robot_race_press_to_broadcast_seconds_count 3",
        "robot_race_pubsub_messages_received_total{channel=\"game\"} 0",
        "robot_race_redis_commands_total 0",
    ] {
        assert!(text.contains(line), "metrics lack {line:?}:\n{text}");
    }
}

#[test]
fn help_lists_every_flag_with_its_env_and_bad_redis_urls_fail_at_start() {
    let out = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for (flag, env) in [
        ("--addr", "ADDR"),
        ("--port", "PORT"),
        ("--redis", "REDIS_URL"),
        ("--redis-password", "REDIS_PASSWORD"),
        ("--node-id", "NODE_ID"),
        ("--secret", "ROBOT_RACE_SECRET"),
        ("--idle-timeout-secs", "IDLE_TIMEOUT_SECS"),
        ("--allowed-origins", "ALLOWED_ORIGINS"),
        ("--trust-proxy", "TRUST_PROXY"),
        ("--redis-sentinel", "REDIS_SENTINELS"),
        ("--redis-sentinel-master", "REDIS_SENTINEL_MASTER"),
        ("--redis-sentinel-password", "REDIS_SENTINEL_PASSWORD"),
        ("--redis-cluster", "REDIS_CLUSTER_NODES"),
        ("--subscribe", "REDIS_SUBSCRIBE"),
        ("--log-format", "LOG_FORMAT"),
        ("--same-thread", "SAME_THREAD"),
        ("--host-handover-ms", "HOST_HANDOVER_MS"),
        ("--away-remove-ms", "AWAY_REMOVE_MS"),
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
        assert!(
            help.contains(&format!("env: {env}")),
            "--help lacks env {env}:\n{help}"
        );
    }
    let out = std::process::Command::new(BIN)
        .args(["-addr", "127.0.0.1:0", "-redis", "redis://host:notaport"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid Redis address"), "{err}");
    let out = std::process::Command::new(BIN)
        .args(["-addr", "nowhere"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn port_env_is_the_listen_address_when_addr_is_not_given() {
    let port = free_port();
    let mut child = std::process::Command::new(BIN)
        .env("PORT", port.to_string())
        .env_remove("REDIS_URL")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + SECS(10);
    let mut ok = false;
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok, "nothing listened on PORT={port}");
}
