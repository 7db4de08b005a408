//! The host closes the tab: a guest on the other server becomes host and starts the race.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{
    assert_panel_clear, flags, messages, my_robot, node, open, robot_ids, start_button, watch_page,
    watched, DESKTOP, HANDOVER_MS, PHONE,
};
use crate::browser::driver::require_browser;
use crate::browser::flows::{countdown, create_game, invite_link, join_game, on_server, wait_api};
use crate::browser::page::{api_score, page_score, page_state, text, visible};
use crate::helpers::*;

/// The host closes the tab: within the hand-over time the guest on the other server is told and
/// becomes host (Start enabled with 2 connected players), the host's robot is drawn away on
/// every screen; the new host starts the race and it runs.
#[actix_rt::test]
async fn the_host_closes_the_tab_and_a_guest_on_the_other_server_takes_over() {
    require_browser();
    let redis = Redis::start();
    let (one, two) = (node(&redis, "one"), node(&redis, "two"));
    let ann = open("ann", DESKTOP, false).await;
    let mut bob = open("bob", DESKTOP, false).await;
    let mut cat = open("cat", PHONE, true).await;

    let game_id = create_game(&ann, &one, "Ann").await;
    let link = invite_link(&ann, &one, &game_id).await;
    join_game(&bob, &on_server(&link, &two), "Bob", 1).await;
    join_game(&cat, &link, "Cat", 2).await;
    let ids = [
        my_robot(&ann).await,
        my_robot(&bob).await,
        my_robot(&cat).await,
    ];
    for p in [&ann, &bob, &cat] {
        let snap = p
            .wait("three connected players", SECS(10), |s| {
                text(s, "players") == "Players 3/10"
                    && flags(&s["robots"], "connected") == [true, true, true]
            })
            .await;
        assert_eq!(robot_ids(&snap), ids, "{}: lanes in join order", p.who);
    }
    for p in [&bob, &cat] {
        watch_page(p).await;
        p.record().await;
    }

    // The host closes the tab (another tab stays open, as in a real browser).
    let game_tab = ann.client.window().await.expect("window");
    let new_tab = ann.client.new_window(true).await.expect("new tab");
    ann.client.close_window().await.expect("close the tab");
    ann.client
        .switch_to_window(new_tab.handle)
        .await
        .expect("switch tab");
    let closed = Instant::now();
    assert!(!ann.client.windows().await.unwrap().contains(&game_tab));

    // Bob (server 2, next in join order) is told, and is the host: Start appears, enabled,
    // since Bob and Cat are two connected players.
    let snap = bob
        .wait("the hand-over on the guest's page", SECS(15), |s| {
            s["robots"][1]["admin"] == true
                && s["robots"][0]["admin"] == false
                && s["robots"][0]["connected"] == false
                && visible(s, "start")
                && !visible(s, "waiting_start")
                && text(s, "status") == "Invite players"
        })
        .await;
    let took = closed.elapsed();
    assert!(
        took >= Duration::from_millis(HANDOVER_MS - 200) && took <= SECS(8),
        "the hand-over came after {took:?} (hand-over time {HANDOVER_MS} ms)"
    );
    assert_eq!(
        flags(&snap["robots"], "connected"),
        [false, true, true],
        "{snap:#}"
    );
    let cur = bob.js("return window.RobotRace.current();", vec![]).await;
    assert_eq!(cur["admin"], true, "{cur}");
    assert_eq!(
        start_button(&bob).await,
        json!({"shown": true, "disabled": false})
    );
    let log = watched(&bob).await;
    assert!(
        messages(&log).iter().any(|m| m == "You are the host now"),
        "bob: {log}"
    );
    assert!(
        visible(&snap, "invite"),
        "the new host gets the invite link"
    );
    // Cat (a phone, server 1) is told who the host is now, and still waits.
    let snap = cat
        .wait("the hand-over on the third player's page", SECS(10), |s| {
            flags(&s["robots"], "admin") == [false, true, false]
                && flags(&s["robots"], "connected") == [false, true, true]
                && visible(s, "waiting_start")
                && !visible(s, "start")
        })
        .await;
    assert_eq!(snap["me"], ids[2].as_str());
    let log = watched(&cat).await;
    assert!(
        messages(&log).iter().any(|m| m == "Bob is the host now"),
        "cat: {log}"
    );

    bob.screenshot("desktop-handover").await;
    cat.screenshot("phone-handover").await;
    assert_panel_clear(&bob, "the new host's invite panel").await;
    assert_panel_clear(&cat, "waiting for the host").await;
    // The away robot is drawn faded: no full-strength cyan in its lane, Bob's magenta and
    // Cat's yellow at full strength.
    for p in [&bob, &cat] {
        let deadline = Instant::now() + SECS(5);
        loop {
            let lanes = p.lane_colors().await;
            let faded = lanes.len() == 3
                && lanes[0]["cyan"].as_u64() < Some(20)
                && lanes[1]["magenta"].as_u64() >= Some(100)
                && lanes[2]["yellow"].as_u64() >= Some(100);
            if faded {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: Ann's lane should be faded: {lanes:?}",
                p.who
            );
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Both servers agree.
    for server in [&one, &two] {
        let game = server.api().game(&game_id).await;
        assert_eq!(
            flags(&game["robots"], "admin"),
            [false, true, false],
            "{game}"
        );
        assert_eq!(
            flags(&game["robots"], "connected"),
            [false, true, true],
            "{game}"
        );
    }

    // The new host starts the race, and it runs: presses on both servers count.
    countdown(&[&bob, &cat], false).await;
    for _ in 0..4 {
        bob.press_space().await;
    }
    for _ in 0..3 {
        cat.tap_track().await;
    }
    wait_api(&one, &game_id, "the first presses", |g| {
        api_score(g, &ids[1]) == 4 && api_score(g, &ids[2]) == 3 && api_score(g, &ids[0]) == 0
    })
    .await;
    for p in [&bob, &cat] {
        p.wait("the scores on the page", SECS(10), |s| {
            page_state(s) == "playing"
                && page_score(s, &ids[1]) == Some(4)
                && page_score(s, &ids[2]) == Some(3)
                && s["robots"][0]["connected"] == false
        })
        .await;
        let log = p.recorded().await;
        assert_eq!(log["errors"], json!([]), "{}: script errors", p.who);
    }
    actix_rt::time::sleep(Duration::from_millis(500)).await; // the robots ease up the track
    bob.screenshot("desktop-race").await;
    cat.screenshot("phone-race").await;
    ann.close().await;
    bob.close().await;
    cat.close().await;
}
