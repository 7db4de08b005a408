//! Every bad input a client can send gets a clear error, changes nothing, and never takes the
//! server down.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

#[actix_rt::test]
async fn json_api_rejects_bad_bodies_with_error_codes() {
    let server = Server::start(&[]);
    let api = server.api();
    let post_raw = |path: &str, content_type: &str, body: Vec<u8>| {
        let req = api
            .client
            .post(server.url(path))
            .insert_header(("content-type", content_type.to_owned()));
        async move {
            let mut res = req.send_body(body).await.expect("request");
            let body: serde_json::Value = res.json().await.unwrap_or_default();
            (res.status().as_u16(), body)
        }
    };
    let cases = [
        (
            "application/json",
            b"{not json".to_vec(),
            400,
            "bad_request",
        ),
        ("application/json", b"".to_vec(), 400, "bad_request"),
        ("application/json", b"[1,2]".to_vec(), 400, "bad_request"),
        (
            "application/json",
            br#"{"name": 7}"#.to_vec(),
            400,
            "bad_request",
        ),
        (
            "text/plain",
            br#"{"name":"ann"}"#.to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "application/json",
            format!(r#"{{"name":"{}"}}"#, "a".repeat(5000)).into_bytes(),
            413,
            "payload_too_large",
        ),
        (
            "application/json",
            br#"{"name":""}"#.to_vec(),
            422,
            "invalid_name",
        ),
        (
            "application/json",
            br#"{"name":"   "}"#.to_vec(),
            422,
            "invalid_name",
        ),
        (
            "application/json",
            br#"{"name":"elevenchars"}"#.to_vec(),
            422,
            "invalid_name",
        ),
        (
            "application/json",
            b"{\"name\":\"a\\u0007b\"}".to_vec(),
            422,
            "invalid_name",
        ),
        (
            "application/json",
            br#"{"name":"ann","winning_score":4}"#.to_vec(),
            422,
            "invalid_config",
        ),
        (
            "application/json",
            br#"{"name":"ann","countdown":11}"#.to_vec(),
            422,
            "invalid_config",
        ),
    ];
    for (content_type, body, status, code) in cases {
        let shown = String::from_utf8_lossy(&body)
            .chars()
            .take(40)
            .collect::<String>();
        let (got, json) = post_raw("/api/games", content_type, body).await;
        assert_eq!(
            (got, json["error"].as_str()),
            (status, Some(code)),
            "{shown}"
        );
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Unknown games and odd ids: 404 with the error body.
    for path in [
        "/api/games/NoSuchGame",
        "/api/games/%3Cscript%3E",
        "/api/games/..%2F..%2Fetc",
        &format!("/api/games/{}", "x".repeat(300)),
    ] {
        let (status, body) = api.get_json(path).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }
    let (status, body) = api
        .post_json("/api/games/NoSuchGame/players", json!({"name": "bob"}))
        .await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, body) = api.get_json("/api/nothing-here").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    // And the server is still fine.
    let (status, _) = api.get_json("/health").await;
    assert_eq!(status, 200);
}

#[actix_rt::test]
async fn websocket_refuses_missing_forged_and_cross_site() {
    let server = Server::start(&[]);
    let api = server.api();
    let ann = api.create("ann", 5, 0).await;
    let other = api.create("zed", 5, 0).await;
    let base = server.ws_url(&format!("/ws/{}", ann.game_id));
    let forged = format!("{}.{}", ann.robot_id, "0".repeat(40));
    for (url, status) in [
        (base.clone(), 401),
        (format!("{base}?token={forged}"), 401),
        (format!("{base}?token=garbage"), 401),
        // A valid token, but for another game.
        (format!("{base}?token={}", other.token), 401),
        (
            server.ws_url(&format!("/ws/NoSuchGame?token={}", ann.token)),
            401,
        ),
    ] {
        match try_connect(&url, None).await {
            Err(WsError::InvalidResponseStatus(s)) => assert_eq!(s.as_u16(), status, "{url}"),
            Err(e) => panic!("{url}: unexpected error {e}"),
            Ok(_) => panic!("{url}: upgrade should have been refused"),
        }
    }
    let url = format!("{base}?token={}", ann.token);
    match try_connect(&url, Some("http://evil.example")).await {
        Err(WsError::InvalidResponseStatus(s)) => assert_eq!(s.as_u16(), 403),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a cross-site origin must be refused"),
    }
    // The page's own origin is fine.
    let own = format!("http://{}", server.addr);
    try_connect(&url, Some(&own))
        .await
        .expect("same-origin upgrade");
}

#[actix_rt::test]
async fn bad_frames_get_bad_message_and_change_nothing() {
    let server = Server::start(&[]);
    let api = server.api();
    let ann = api.create("ann", 5, 0).await;
    let bob = api.join(&ann.game_id, "bob").await;
    let mut admin = connect(&server, &ann).await;
    let mut guest = connect(&server, &bob).await;
    let version = admin.game["version"].as_u64().unwrap();
    let too_big = format!(r#"{{"type":"score_point","pad":"{}"}}"#, "x".repeat(2000));
    for text in [
        "not json",
        "{}",
        r#"{"type":"hack"}"#,
        r#"{"type":"score_point""#,
        "[]",
        too_big.as_str(),
    ] {
        admin.send_text(text).await;
        let err = admin.wait_error(SECS(5)).await;
        assert_eq!(err["error"], "bad_message", "{text:.40}");
    }
    admin.framed_send_binary(vec![0, 1, 2, 3]).await;
    assert_eq!(admin.wait_error(SECS(5)).await["error"], "bad_message");

    // Guests cannot start or reset.
    guest.send(json!({"type": "start_countdown"})).await;
    assert_eq!(
        guest.wait_error(SECS(5)).await["error"],
        "permission_denied"
    );
    guest.send(json!({"type": "play_again"})).await;
    assert_eq!(
        guest.wait_error(SECS(5)).await["error"],
        "permission_denied"
    );
    // Play again before a finish is refused too.
    admin.send(json!({"type": "play_again"})).await;
    assert_eq!(admin.wait_error(SECS(5)).await["error"], "invalid_state");

    // Nothing changed, and the connection is still open and works.
    let (_, game) = api.get_json(&format!("/api/games/{}", ann.game_id)).await;
    assert_eq!(game["version"].as_u64(), Some(version));
    admin.send(json!({"type": "start_countdown"})).await;
    admin.wait_game(SECS(5), |g| state(g) == "playing").await;
}

#[actix_rt::test]
async fn starting_alone_is_not_enough_players() {
    let server = Server::start(&[]);
    let api = server.api();
    let ann = api.create("ann", 5, 0).await;
    let mut admin = connect(&server, &ann).await;
    admin.send(json!({"type": "start_countdown"})).await;
    let err = admin.wait_error(SECS(5)).await;
    assert_eq!(err["error"], "not_enough_players");
    assert!(err["message"].as_str().unwrap().contains("2 players"));
    assert_eq!(state(&api.game(&ann.game_id).await), "setup");
}

/// Ann (the admin) and bob on `server`, racing to 1000: ann's joining and both sockets.
async fn racing_pair(server: &Server) -> (Joined, Player, Player) {
    let api = server.api();
    let ann = api.create("ann", 1000, 0).await;
    let bob = api.join(&ann.game_id, "bob").await;
    let mut admin = connect(server, &ann).await;
    let guest = connect(server, &bob).await;
    admin.send(json!({"type": "start_countdown"})).await;
    admin.wait_game(SECS(5), |g| state(g) == "playing").await;
    (ann, admin, guest)
}

#[actix_rt::test]
async fn presses_over_thirty_a_second_are_rate_limited() {
    let server = Server::start(&[]);
    let api = server.api();
    let (ann, mut admin, _guest) = racing_pair(&server).await;
    let started = Instant::now();
    for _ in 0..200 {
        admin.press().await;
    }
    let err = admin.wait_error(SECS(5)).await;
    assert_eq!(err["error"], "rate_limited");
    admin.drain(Duration::from_millis(500)).await;
    let score = api.game(&ann.game_id).await["robots"][0]["score"]
        .as_u64()
        .unwrap();
    // At most the burst plus what refilled while sending; never the 200 sent.
    let allowed = 30 + (started.elapsed().as_secs_f64() * 30.0).ceil() as u64;
    assert!(
        score >= 30 && score <= allowed,
        "score {score}, allowed {allowed}"
    );
}

/// Presses read in a burst (as from a server that paused while its players kept pressing):
/// the `rate_limited` answers say how many were dropped, so every press is accounted for:
/// applied, or counted in an answer.
#[actix_rt::test]
async fn rate_limited_answers_say_how_many_presses_were_dropped() {
    let server = Server::start(&[]);
    let api = server.api();
    let (ann, mut admin, _guest) = racing_pair(&server).await;
    for _ in 0..60 {
        admin.press().await;
    }
    admin.drain(Duration::from_millis(1200)).await;
    // One more press, once the bucket has refilled: it goes through, and the answer counts
    // the rest of the burst.
    admin.press().await;
    admin.drain(Duration::from_millis(800)).await;
    let score = api.game(&ann.game_id).await["robots"][0]["score"]
        .as_u64()
        .unwrap();
    let answers: Vec<&Value> = admin
        .errors
        .iter()
        .filter(|e| e["error"] == "rate_limited")
        .collect();
    let dropped: u64 = answers.iter().map(|e| e["dropped"].as_u64().unwrap()).sum();
    assert!(answers.len() >= 2 && dropped > 0, "{answers:?}");
    assert_eq!(score + dropped, 61, "score {score}, answers {answers:?}");
}

/// A client that completes the upgrade and then never reads is dropped; the game goes on.
#[actix_rt::test]
async fn a_client_that_stops_reading_is_dropped_and_the_game_goes_on() {
    let server = Server::start(&[]);
    let api = server.api();
    let admin = api.create("p0", 1000, 0).await;
    let mut joined = vec![admin.clone()];
    for i in 1..10 {
        joined.push(api.join(&admin.game_id, &format!("p{i}")).await);
    }
    let slow = joined.pop().unwrap();
    let _stalled = stalled_reader(&server, &slow);
    let mut players = Vec::new();
    for j in &joined {
        players.push(connect(&server, j).await);
    }
    players[0].send(json!({"type": "start_countdown"})).await;
    for p in players.iter_mut() {
        p.wait_game(SECS(5), |g| state(g) == "playing").await;
    }
    // Press at a human rate (25/s each) until the server lets go of the stalled reader.
    let deadline = Instant::now() + SECS(60);
    let mut dropped = false;
    while Instant::now() < deadline && !dropped {
        for _ in 0..25 {
            for p in players.iter_mut() {
                p.press().await;
            }
            for p in players.iter_mut() {
                p.drain(Duration::from_millis(4)).await;
            }
        }
        let (_, health) = api.get_json("/health").await;
        dropped = health["connections"].as_u64() == Some(9);
    }
    assert!(dropped, "the stalled client was never dropped");
    // Everybody else kept getting updates: the latest state is on every screen.
    let expected = api.game(&admin.game_id).await;
    let total: u64 = expected["robots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["score"].as_u64().unwrap())
        .sum();
    assert!(total > 100, "the race barely moved: {total}");
    for p in players.iter_mut() {
        let v = expected["version"].as_u64().unwrap();
        p.wait_game(SECS(10), |g| g["version"].as_u64() >= Some(v))
            .await;
    }
    let mut res = api.client.get(server.url("/metrics")).send().await.unwrap();
    let text = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    assert!(
        text.contains("robot_race_sessions_dropped_slow_total 1"),
        "{text}"
    );
}

/// Opens a WebSocket by hand with a tiny receive buffer and never reads from it.
fn stalled_reader(server: &Server, joined: &Joined) -> std::net::TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let mut stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(SECS(5))).unwrap();
    write!(
        stream,
        "GET /ws/{}?token={} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        joined.game_id, joined.token, server.addr
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
}
