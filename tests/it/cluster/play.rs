//! Cross-server play: a game created on one server and played from three, no press lost
//! across servers (also with same-thread servers), one countdown and one winner everywhere.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{json, Value};

use super::{cluster, cluster_with, countdown_seen, stored};
use crate::helpers::*;

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
