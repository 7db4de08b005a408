//! The invite link reopened, Back, Forward and reload keep one robot per player; Leave in setup
//! removes it.

use serde_json::{json, Value};

use super::{assert_panel_clear, my_robot, node, open, robot_ids, start_button, DESKTOP};
use crate::browser::client::Browser;
use crate::browser::driver::require_browser;
use crate::browser::flows::{
    assert_winner, countdown, create_game, invite_link, join_game, on_server, play_again, wait_api,
};
use crate::browser::page::{api_score, page_score, page_state, text};
use crate::helpers::*;

/// Bob's race page, connected as his robot after `what`; the API shows Ann and one Bob.
async fn back_as(
    bob: &Browser,
    server: &Server,
    game_id: &str,
    [ann_id, bob_id]: [&str; 2],
    what: &str,
) -> Value {
    let game_path = format!("/game/{game_id}");
    let snap = bob
        .wait(&format!("Bob's race page after {what}"), SECS(15), |s| {
            s["path"] == game_path.as_str()
                && s["ready"] == "complete"
                && s["connected"] == true
                && s["me"].is_string()
        })
        .await;
    assert_eq!(snap["me"], bob_id, "{what}: another robot: {snap:#}");
    assert_eq!(snap["robot_id"], bob_id, "{what}: {snap:#}");
    assert!(
        !snap["body"]
            .as_str()
            .unwrap_or("")
            .contains("already started"),
        "{what}: {snap:#}"
    );
    assert_eq!(
        robot_ids(&snap),
        [ann_id, bob_id],
        "{what}: the page shows {snap:#}"
    );
    let game = server.api().game(game_id).await;
    let ids = game["robots"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter_map(|r| r["id"].as_str())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    assert_eq!(ids, [ann_id, bob_id], "{what}: a second robot? {game}");
    snap
}

/// The page was reached through a redirect (the join form's address, which leads a player
/// with a robot to the race page).
async fn assert_redirected(b: &Browser, what: &str) {
    let nav = b
        .js(
            "var n = performance.getEntriesByType('navigation')[0]; \
             return { type: n.type, redirects: n.redirectCount };",
            vec![],
        )
        .await;
    assert!(
        nav["redirects"].as_u64() >= Some(1),
        "{what}: not through the join form's redirect: {nav}"
    );
}

/// A player reopens the invite link in the same browser (its cookie): back on the race page as
/// the same robot, on either server; Back, Forward and reload (in setup and mid-race) never make
/// a second robot. Then, in setup, Leave: the lobby, and the robot gone from the other player's
/// page.
#[actix_rt::test]
async fn the_invite_link_back_forward_and_reload_keep_one_robot_and_leave_removes_it() {
    require_browser();
    let redis = Redis::start();
    let (one, two) = (node(&redis, "one"), node(&redis, "two"));
    let mut ann = open("ann", DESKTOP, false).await;
    let mut bob = open("bob", DESKTOP, false).await;
    let game_id = create_game(&ann, &one, "Ann").await;
    let link = invite_link(&ann, &one, &game_id).await;
    let link_two = on_server(&link, &two);
    join_game(&bob, &link_two, "Bob", 1).await;
    let ann_id = my_robot(&ann).await;
    let bob_id = my_robot(&bob).await;

    let check = |what: &'static str| back_as(&bob, &one, &game_id, [&ann_id, &bob_id], what);

    // The invite link again, on the server he joined on and on the other one.
    bob.goto("about:blank").await;
    bob.goto(&link_two).await;
    let snap = check("the invite link (server 2)").await;
    assert_eq!(snap["origin"], two.url(""));
    bob.goto(&link).await;
    let snap = check("the invite link (server 1)").await;
    assert_eq!(snap["origin"], one.url(""));
    bob.screenshot("rejoined").await;

    // Back through the history (Bob's pages, a blank page, and the join form he filled in,
    // which now leads to the race page), Forward, reload.
    // History: /join (the form), /game, about:blank, /game (server 2), /game (server 1).
    for (step, blank) in [
        ("Back", false),
        ("Back", true),
        ("Back", false),
        ("Back to the join form", false),
        ("Forward", false),
        ("Forward", true),
        ("Forward", false),
        ("reload", false),
        ("Back", true),
        ("Back", false),
    ] {
        if step.starts_with("Back") {
            bob.client.back().await.expect("back");
        } else if step == "Forward" {
            bob.client.forward().await.expect("forward");
        } else {
            bob.client.refresh().await.expect("reload");
        }
        if blank {
            bob.wait(&format!("the blank page after {step}"), SECS(10), |s| {
                s["ready"] == "complete" && s["game_id"].is_null()
            })
            .await;
        } else {
            check(step).await;
        }
        if step == "Back to the join form" {
            assert_redirected(&bob, step).await;
        }
    }
    let game = two.api().game(&game_id).await;
    assert_eq!(game["robots"].as_array().unwrap().len(), 2, "{game}");

    // Mid-race: the invite link, Back and reload keep the racer in the race (never "This race
    // has already started").
    countdown(&[&ann, &bob], false).await;
    for _ in 0..3 {
        ann.press_space().await;
    }
    bob.goto(&link).await;
    let snap = check("the invite link mid-race").await;
    assert_redirected(&bob, "the invite link mid-race").await;
    assert_eq!(page_state(&snap), "playing");
    bob.client.back().await.expect("back mid-race");
    let snap = check("Back mid-race").await;
    assert_eq!(page_state(&snap), "playing");
    bob.client.refresh().await.expect("reload mid-race");
    let snap = check("reload mid-race").await;
    assert_eq!(page_state(&snap), "playing");
    assert_eq!(page_score(&snap, &ann_id), Some(3), "{snap:#}");
    bob.screenshot("back-mid-race").await;
    // The race goes on with Bob: he presses, it counts.
    bob.record().await;
    bob.press_space().await;
    wait_api(&two, &game_id, "Bob's press after Back", |g| {
        api_score(g, &bob_id) == 1
    })
    .await;
    while ann.snapshot().await.unwrap()["state"] == "playing" {
        ann.press_space().await;
    }
    assert_winner(&[&ann, &bob], "Ann", &["Ann", "Bob"]).await;
    play_again(&ann, &bob).await;

    // Leave, in setup: Bob lands in the lobby, and his lane goes from Ann's page.
    bob.click("#leave").await;
    bob.wait_page("/", "#start-game").await;
    let snap = ann
        .wait("Bob's robot gone from Ann's page", SECS(10), |s| {
            robot_ids(s) == [ann_id.as_str()] && text(s, "players") == "Players 1/10"
        })
        .await;
    assert_eq!(page_state(&snap), "setup");
    ann.assert_lanes_drawn(1, "after Bob left").await;
    let start = start_button(&ann).await;
    assert_eq!(
        start,
        json!({"shown": true, "disabled": true}),
        "one player"
    );
    ann.screenshot("after-leave").await;
    assert_panel_clear(&ann, "alone again, with the start hint").await;
    bob.screenshot("left").await;
    for server in [&one, &two] {
        let game = server.api().game(&game_id).await;
        assert_eq!(game["robots"].as_array().unwrap().len(), 1, "{game}");
    }
    // The invite link now shows the form again (he may join anew).
    bob.goto(&link_two).await;
    let join = bob.wait_page("/join/", "#join-game").await;
    assert_eq!(text(&join, "player_count"), "Players 1/10");
    bob.close().await;
    ann.close().await;
}
