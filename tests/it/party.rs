//! The party-game rules across servers (PROTOCOL.md: presence, host hand-over, leave,
//! rejoin, spectators): two servers on one Redis with players on both, and a spectator on a
//! third. The durations are shortened by flags (`-host-handover-ms`, `-away-remove-ms`).

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn node(redis: &Redis, name: &str) -> Server {
    let flags = ["-host-handover-ms", "1000", "-away-remove-ms", "2500"];
    cluster_node(redis, name, &flags)
}

fn connected(game: &Value) -> Vec<bool> {
    game["robots"]
        .as_array()
        .map(|rs| rs.iter().map(|r| r["connected"] == true).collect())
        .unwrap_or_default()
}

fn admins(game: &Value) -> Vec<bool> {
    game["robots"]
        .as_array()
        .map(|rs| rs.iter().map(|r| r["admin"] == true).collect())
        .unwrap_or_default()
}

fn robots(game: &Value) -> usize {
    game["robots"].as_array().map_or(0, Vec::len)
}

/// ann (admin) and cat on server 1, bob on server 2: all connected, in setup.
async fn three(one: &Server, two: &Server) -> ([Joined; 3], [Player; 3]) {
    let ann = one.api().create("ann", 5, 0).await;
    let bob = two.api().join(&ann.game_id, "bob").await;
    let cat = one.api().join(&ann.game_id, "cat").await;
    let ann_ws = connect(one, &ann).await;
    let bob_ws = connect(two, &bob).await;
    let mut cat_ws = connect(one, &cat).await;
    cat_ws
        .wait_game(SECS(10), |g| connected(g) == [true, true, true])
        .await;
    ([ann, bob, cat], [ann_ws, bob_ws, cat_ws])
}

#[actix_rt::test]
async fn presence_is_shown_everywhere_and_start_counts_connected_robots() {
    let redis = Redis::start();
    let (one, two) = (node(&redis, "one"), node(&redis, "two"));
    let ([_, bob, cat], [mut ann_ws, bob_ws, cat_ws]) = three(&one, &two).await;
    // Bob's tab on server 2 closes: the screens on server 1 show him away.
    drop(bob_ws);
    ann_ws
        .wait_game(SECS(10), |g| connected(g) == [true, false, true])
        .await;
    // Cat's tab closes too: ann is alone, and `start` counts connected robots only.
    drop(cat_ws);
    ann_ws
        .wait_game(SECS(10), |g| connected(g) == [true, false, false])
        .await;
    ann_ws.send(json!({"type": "start_countdown"})).await;
    let err = ann_ws.wait_error(SECS(5)).await;
    assert_eq!(err["error"], "not_enough_players", "{err}");
    // Bob comes back, on server 1 this time: connected again, and the race can start.
    let mut bob_ws = connect(&one, &bob).await;
    ann_ws
        .wait_game(SECS(10), |g| connected(g) == [true, true, false])
        .await;
    ann_ws.send(json!({"type": "start_countdown"})).await;
    bob_ws.wait_game(SECS(10), |g| state(g) == "playing").await;
    // Mid-round an away robot stays, well past the removal time, and comes back with its
    // player (on server 2).
    bob_ws.drain(SECS(3)).await;
    assert_eq!(robots(&bob_ws.game), 3);
    let mut cat_ws = connect(&two, &cat).await;
    cat_ws
        .wait_game(SECS(10), |g| connected(g) == [true, true, true])
        .await;
    assert_eq!(robots(&cat_ws.game), 3);
}

#[actix_rt::test]
async fn the_admin_away_hands_over_and_away_robots_leave_setup() {
    let redis = Redis::start();
    let (one, two) = (node(&redis, "one"), node(&redis, "two"));
    let ([_, _, _], [ann_ws, mut bob_ws, cat_ws]) = three(&one, &two).await;
    // The host (server 1) closes the tab, and cat (server 1) too. The owner hears of the two
    // closes in either order, and ann's hand-over time may run out before cat's close is in
    // (a busy machine): so first both are away on every screen...
    drop(ann_ws);
    drop(cat_ws);
    let game = bob_ws
        .wait_game(SECS(10), |g| connected(g) == [false, true, false])
        .await;
    assert!(!admins(&game)[2], "an away robot became admin: {game}");
    // ...and after the hand-over time bob, the next connected robot, is the admin.
    let game = bob_ws
        .wait_game(SECS(10), |g| admins(g) == [false, true, false])
        .await;
    let logs = format!("{}\n{}", one.logs.all(), two.logs.all());
    assert_eq!(connected(&game), [false, true, false], "{logs}");
    // Away in setup past the removal time: gone, bob stays, alone, and leads.
    let game = bob_ws.wait_game(SECS(10), |g| robots(g) == 1).await;
    assert_eq!(admins(&game), [true]);
    let stored: Value = serde_json::from_str(
        &redis
            .get(&format!("game_state:{}", game["id"].as_str().unwrap()))
            .expect("stored"),
    )
    .unwrap();
    assert_eq!(robots(&stored), 1, "{stored}");
}

#[actix_rt::test]
async fn leaving_removes_in_setup_and_stays_away_mid_round() {
    let redis = Redis::start();
    let (one, two) = (node(&redis, "one"), node(&redis, "two"));
    let ([ann, bob, _], [mut ann_ws, mut bob_ws, mut cat_ws]) = three(&one, &two).await;
    // Cat leaves in setup: gone at once, on both servers.
    cat_ws.send(json!({"type": "leave"})).await;
    bob_ws.wait_game(SECS(10), |g| robots(g) == 2).await;
    ann_ws.wait_game(SECS(10), |g| robots(g) == 2).await;
    ann_ws.send(json!({"type": "start_countdown"})).await;
    bob_ws.wait_game(SECS(10), |g| state(g) == "playing").await;
    // The admin leaves mid-race (socket still open): her lane stays, away; bob leads now,
    // and her presses count no more.
    ann_ws.send(json!({"type": "leave"})).await;
    let game = bob_ws
        .wait_game(SECS(10), |g| {
            connected(g) == [false, true] && admins(g) == [false, true]
        })
        .await;
    assert_eq!(game["robots"][0]["id"], ann.robot_id.as_str());
    ann_ws.press().await;
    bob_ws.press_paced(5, Duration::from_millis(40)).await;
    let game = bob_ws.wait_game(SECS(10), |g| state(g) == "finished").await;
    assert_eq!(game["winner"], bob.robot_id.as_str());
    assert_eq!(
        game["robots"][0]["score"], 0,
        "a press after leaving counted"
    );
    // Play again: the robot that left is gone.
    bob_ws.send(json!({"type": "play_again"})).await;
    let game = bob_ws
        .wait_game(SECS(10), |g| state(g) == "setup" && robots(g) == 1)
        .await;
    assert_eq!(game["robots"][0]["id"], bob.robot_id.as_str());
}

#[actix_rt::test]
async fn the_invite_link_takes_a_player_back_to_the_same_robot() {
    let redis = Redis::start();
    let (one, two) = (node(&redis, "one"), node(&redis, "two"));
    let http = awc::Client::builder()
        .disable_redirects()
        .timeout(SECS(10))
        .finish();
    let ann = one.api().create("ann", 5, 0).await;
    // Bob joins with the form on server 2 and gets his cookie.
    let res = http
        .post(two.url(&format!("/join/{}", ann.game_id)))
        .insert_header(("Origin", two.url("")))
        .send_form(&[("name", "bob")])
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let cookie = res.cookies().unwrap()[0].clone();
    // He opens the invite link again, on either server: back to the race page.
    for server in [&one, &two] {
        let res = http
            .get(server.url(&format!("/join/{}", ann.game_id)))
            .cookie(cookie.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303);
        assert_eq!(
            res.headers().get("location").unwrap(),
            &format!("/game/{}", ann.game_id)
        );
    }
    // Back, then the form sent again: still one bob.
    let res = http
        .post(one.url(&format!("/join/{}", ann.game_id)))
        .insert_header(("Origin", one.url("")))
        .cookie(cookie.clone())
        .send_form(&[("name", "bob")])
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let game = one.api().game(&ann.game_id).await;
    assert_eq!(robots(&game), 2, "{game}");
    // Without the cookie the invite link shows the form.
    let res = http
        .get(one.url(&format!("/join/{}", ann.game_id)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[actix_rt::test]
async fn a_spectator_on_a_third_server_sees_everything_and_changes_nothing() {
    let redis = Redis::start();
    let (one, two, three) = (
        node(&redis, "one"),
        node(&redis, "two"),
        node(&redis, "three"),
    );
    let ann = one.api().create("ann", 5, 0).await;
    let bob = two.api().join(&ann.game_id, "bob").await;
    let mut ann_ws = connect(&one, &ann).await;
    let mut bob_ws = connect(&two, &bob).await;
    // The big-screen page: the invite link and its QR code, made by the server.
    let http = awc::Client::builder().timeout(SECS(10)).finish();
    let mut res = http
        .get(three.url(&format!("/watch/{}", ann.game_id)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let page = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    assert!(page.contains(&format!("/join/{}", ann.game_id)));
    assert!(page.contains("<svg") && page.contains("data-spectator=\"true\""));
    // Its socket needs no token.
    let url = three.ws_url(&format!("/ws/{}?watch=1", ann.game_id));
    let mut watch = try_connect(&url, None).await.expect("spectator socket");
    assert_eq!(watch.robot_id, "", "a spectator is no robot");
    assert!(!watch.admin);
    for msg in ["start_countdown", "score_point", "play_again", "leave"] {
        watch.send(json!({"type": msg})).await;
        let err = watch.wait_error(SECS(5)).await;
        assert_eq!(err["error"], "permission_denied", "{msg}: {err}");
    }
    ann_ws.send(json!({"type": "start_countdown"})).await;
    watch.wait_game(SECS(10), |g| state(g) == "playing").await;
    ann_ws.press_paced(2, Duration::from_millis(40)).await;
    bob_ws.press_paced(5, Duration::from_millis(40)).await;
    let game = watch.wait_game(SECS(10), |g| state(g) == "finished").await;
    assert_eq!(game["winner"], bob.robot_id.as_str());
    assert_eq!(
        scores_of(&game),
        scores_of(&bob_ws.wait_game(SECS(10), |g| state(g) == "finished").await)
    );
    // The spectator is nobody's presence: still two robots, both connected.
    assert_eq!(connected(&game), [true, true]);
    // Every version the spectator drew is newer than the one before, and the last is the
    // final state (it may skip versions: spectators get the newest state at a capped cadence).
    let versions: Vec<u64> = watch
        .history
        .iter()
        .filter_map(|g| g["version"].as_u64())
        .collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    assert_eq!(
        versions.last(),
        game["version"].as_u64().as_ref(),
        "{versions:?}"
    );
    let _ = ann_ws.drain(Duration::from_millis(10)).await;
}

/// Whether every screen would be right: the screens' own robots connected, each robot whose
/// socket closed away (the newest one still listed: it cannot have been removed yet).
fn presence_right(game: &Value, screens: &[&str], closed: &[String]) -> bool {
    let of = |id: &str| {
        game["robots"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["id"] == id))
            .map(|r| r["connected"] == true)
    };
    screens.iter().all(|id| of(id) == Some(true))
        && closed.iter().all(|id| of(id) != Some(true))
        && closed.last().is_none_or(|id| of(id) == Some(false))
}

/// Sockets that close right after their `welcome` (a tab closed at once, a phone dropping the
/// connection as it opens), 0 to 200 ms after the upgrade, with a close frame or without, on
/// the game's owner and on the other server: a screen on each server shows every robot as it
/// is within 2 s.
#[actix_rt::test]
async fn sockets_closed_as_they_open_show_away_on_every_screen_within_2_s() {
    use futures_util::SinkExt;
    let redis = Redis::start();
    let (one, two) = (node(&redis, "one"), node(&redis, "two"));
    let client = awc::Client::builder().timeout(SECS(10)).finish();
    for round in 0..4 {
        // A game owned by server 1, with a screen on each server.
        let ann = one.api().create("ann", 5, 0).await;
        let dan = two.api().join(&ann.game_id, "dan").await;
        let mut screens = [connect(&one, &ann).await, connect(&two, &dan).await];
        let ids = [ann.robot_id.as_str(), dan.robot_id.as_str()];
        for screen in &mut screens {
            screen
                .wait_game(SECS(10), |g| presence_right(g, &ids, &[]))
                .await;
        }
        let mut closed = Vec::new();
        for i in 0..8 {
            let (server, at) = [(&one, "owner"), (&two, "non-owner")][i % 2];
            let eve = server.api().join(&ann.game_id, "eve").await;
            let ms = match rand::random_range(0..3) {
                0 => 0,
                _ => rand::random_range(0..=200),
            };
            let frame = rand::random::<bool>();
            let url = server.ws_url(&format!("/ws/{}?token={}", eve.game_id, eve.token));
            let (_, mut socket) = client.ws(url).connect().await.expect("upgrade");
            actix_rt::time::sleep(Duration::from_millis(ms)).await;
            if frame {
                let _ = socket.send(awc::ws::Message::Close(None)).await;
            }
            drop(socket);
            let at_close = std::time::Instant::now();
            closed.push(eve.robot_id.clone());
            for (screen, on) in screens.iter_mut().zip(["server 1", "server 2"]) {
                let deadline = at_close + SECS(2);
                while !presence_right(&screen.game, &ids, &closed) {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() || screen.next(left).await.is_none() {
                        break;
                    }
                }
                assert!(
                    presence_right(&screen.game, &ids, &closed),
                    "round {round}, socket {i} (on the {at}, closed {ms} ms after the upgrade, \
                     close frame: {frame}): wrong on {on} 2 s later: {}",
                    screen.game
                );
            }
        }
    }
}
