//! Whole races in the browser: on one server, across two servers, through a server restart,
//! and on a phone with finger taps.

use super::client::{Browser, PHONE};
use super::driver::require_browser;
use super::flows::{
    assert_winner, countdown, create_game, invite_link, join_game, on_server, two_player_round,
    wait_api, WIN,
};
use super::page::{api_score, page_score, page_state, text, visible};
use crate::helpers::*;

/// One server: create, invite, join, countdown, a space-bar race to 25, winner, play again.
#[actix_rt::test]
async fn browser_single_server_race() {
    require_browser();
    let server = Server::start(&[]);
    two_player_round("single", &server, &server, false).await;
}

/// Two servers and one Redis: the creator on server 1, the guest on server 2 through the
/// invite link rewritten to server 2's port.
#[actix_rt::test]
async fn browser_cluster_race() {
    require_browser();
    let redis = Redis::start();
    let one = Server::start(&["-redis", &redis.addr()]);
    let two = Server::start(&["-redis", &redis.addr()]);
    two_player_round("cluster", &one, &two, true).await;
}

/// During a race (two servers, the guest on server 2), server 2 goes down and comes back on the
/// same address: the guest's page shows the connection banner, reconnects by itself as the
/// same robot with its score kept, and the race finishes with the right scores.
#[actix_rt::test]
async fn browser_reconnect_after_server_restart() {
    require_browser();
    let redis = Redis::start();
    let one = Server::start(&["-redis", &redis.addr()]);
    let mut two = Server::start(&["-redis", &redis.addr()]);
    let mut ann = Browser::desktop("reconnect", "ann").await;
    let mut bob = Browser::desktop("reconnect", "bob").await;
    let game_id = create_game(&ann, &one, "Ann").await;
    let link = on_server(&invite_link(&ann, &one, &game_id).await, &two);
    join_game(&bob, &link, "Bob", 1).await;
    let ann_id = ann.snapshot().await.unwrap()["robot_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob_id = bob.snapshot().await.unwrap()["robot_id"]
        .as_str()
        .unwrap()
        .to_owned();
    countdown(&[&ann, &bob], false).await;

    let (mut ann_presses, mut bob_presses) = (0, 0);
    for i in 0..6 {
        bob.press_space().await;
        bob_presses += 1;
        if i % 2 == 0 {
            ann.press_space().await;
            ann_presses += 1;
        }
    }
    // Everything pressed so far has reached the game before server 2 goes down.
    wait_api(&one, &game_id, "the first presses", |g| {
        api_score(g, &bob_id) == bob_presses && api_score(g, &ann_id) == ann_presses
    })
    .await;
    bob.wait("the guest's page to show its score", SECS(10), |s| {
        page_score(s, &bob_id) == Some(bob_presses)
    })
    .await;
    bob.screenshot("race").await;

    two.kill();
    bob.wait("the connection-lost banner", SECS(10), |s| {
        visible(s, "connection") && s["connected"] == false
    })
    .await;
    bob.screenshot("reconnecting").await;
    two.restart();
    assert_eq!(two.url(""), link.split("/join/").next().unwrap());
    let back = bob
        .wait("the guest to reconnect", SECS(20), |s| {
            s["connected"] == true
                && !visible(s, "connection")
                && s["recorded"]["connection"].as_array().is_some_and(|log| {
                    log.iter().any(|v| v == "shown") && log.last().is_some_and(|v| v == "hidden")
                })
        })
        .await;
    // The same robot (the server's welcome agrees with the page), its score kept.
    assert_eq!(back["robot_id"], bob_id.as_str());
    assert_eq!(back["me"], bob_id.as_str());
    assert_eq!(page_state(&back), "playing");
    assert_eq!(page_score(&back, &bob_id), Some(bob_presses), "{back:#}");
    assert_eq!(page_score(&back, &ann_id), Some(ann_presses), "{back:#}");
    bob.screenshot("reconnected").await;

    // The race goes on and finishes: Bob presses to the top, Ann a couple more times.
    for _ in 0..2 {
        ann.press_space().await;
        ann_presses += 1;
    }
    wait_api(&two, &game_id, "Ann's presses after the restart", |g| {
        api_score(g, &ann_id) == ann_presses
    })
    .await;
    while bob_presses < WIN {
        bob.press_space().await;
        bob_presses += 1;
    }
    assert_winner(&[&ann, &bob], "Bob", &["Ann", "Bob"]).await;
    bob.screenshot("winner").await;
    for server in [&one, &two] {
        let game = server.api().game(&game_id).await;
        assert_eq!(game["state"], "finished", "{game}");
        assert_eq!(game["winner"], bob_id.as_str());
        assert_eq!(api_score(&game, &bob_id), WIN, "{game}");
        assert_eq!(api_score(&game, &ann_id), ann_presses, "{game}");
        for page in [&ann, &bob] {
            let snap = page.snapshot().await.unwrap();
            for id in [&ann_id, &bob_id] {
                assert_eq!(
                    page_score(&snap, id),
                    Some(api_score(&game, id)),
                    "{}'s page and the API disagree: {snap:#}\n{game}",
                    page.who
                );
            }
        }
    }
    ann.close().await;
    bob.close().await;
}

/// A phone: a 375x667 touch screen (Chrome's mobile emulation). Finger taps start the race and
/// score on the track.
#[actix_rt::test]
async fn browser_phone_taps() {
    require_browser();
    let server = Server::start(&[]);
    let mut pia = Browser::phone("phone", "pia").await;
    let game_id = create_game(&pia, &server, "Pia").await;
    let screen = pia
        .js(
            "return {w: innerWidth, h: innerHeight, dpr: devicePixelRatio, \
             touch: 'ontouchstart' in window, points: navigator.maxTouchPoints};",
            vec![],
        )
        .await;
    assert_eq!(screen["w"], PHONE.0, "{screen}");
    assert_eq!(screen["touch"], true, "{screen}");
    assert!(screen["points"].as_u64() > Some(0), "{screen}");

    // A second player (a bot through the API, no browser) joins.
    let api = server.api();
    let bot = api.join(&game_id, "Bot").await;
    pia.wait("the bot's lane", SECS(10), |s| {
        text(s, "players") == "Players 2/10"
    })
    .await;
    pia.assert_lanes_drawn(2, "setup").await;
    pia.screenshot("setup").await;
    let pia_id = pia.snapshot().await.unwrap()["robot_id"]
        .as_str()
        .unwrap()
        .to_owned();

    countdown(&[&pia], true).await;
    for taps in 1..=WIN {
        pia.tap_track().await;
        if taps == 5 {
            wait_api(&server, &game_id, "the first taps to score", |g| {
                api_score(g, &pia_id) == 5
            })
            .await;
            pia.screenshot("race").await;
            pia.assert_lanes_drawn(2, "mid-race").await;
        }
    }
    assert_winner(&[&pia], "Pia", &["Pia", "Bot"]).await;
    pia.screenshot("winner").await;
    let game = api.game(&game_id).await;
    assert_eq!(game["winner"], pia_id.as_str());
    assert_eq!(api_score(&game, &pia_id), WIN);
    assert_eq!(api_score(&game, &bot.robot_id), 0);
    pia.close().await;
}
