//! The steps the scenarios share: create a game in the lobby, join through an invite link,
//! count down, race with the space bar, check the winner, play again; and the bad-input form
//! helpers.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::client::{Browser, POLL};
use super::page::{api_score, assert_readable, page_state, text, visible};
use crate::helpers::*;

/// The default winning score (games created through the lobby form use it).
pub(super) const WIN: u64 = 25;

/// Opens the lobby, types `name`, clicks "Start new game"; returns the new game's id once the
/// race page is connected.
pub(super) async fn create_game(b: &Browser, server: &Server, name: &str) -> String {
    b.goto(&server.url("/")).await;
    let lobby = b.wait_page("/", "#start-game").await;
    assert_eq!(lobby["path"], "/");
    b.screenshot("lobby").await;
    b.type_into("#name", name).await;
    b.click("#start-game").await;
    let page = b.wait_page("/game/", "#track").await;
    let game_id = page["game_id"].as_str().unwrap().to_owned();
    assert_eq!(page["path"], format!("/game/{game_id}"));
    b.wait("the admin's race page to connect", SECS(15), |s| {
        s["connected"] == true && text(s, "status") == "Invite players" && visible(s, "start")
    })
    .await;
    game_id
}

/// Opens an invite link, types `name`, clicks "Join"; waits for the connected race page.
pub(super) async fn join_game(b: &Browser, invite: &str, name: &str, players_before: usize) {
    b.goto(invite).await;
    let join = b.wait_page("/join/", "#join-game").await;
    assert_eq!(
        text(&join, "player_count"),
        format!("Players {players_before}/10"),
        "join page: {join:#}"
    );
    b.type_into("#name", name).await;
    b.click("#join-game").await;
    b.wait_page("/game/", "#track").await;
    b.wait("the guest's race page to connect", SECS(15), |s| {
        s["connected"] == true && text(s, "status") == "Get ready" && visible(s, "waiting_start")
    })
    .await;
}

/// The same link on another server of the cluster.
pub(super) fn on_server(link: &str, server: &Server) -> String {
    let path = &link[link.find("/join/").expect("an invite link")..];
    server.url(path)
}

/// The invite link the admin's page shows, checked against the address it was served from.
pub(super) async fn invite_link(b: &Browser, server: &Server, game_id: &str) -> String {
    let snap = b
        .wait("the invite link", SECS(10), |s| visible(s, "invite"))
        .await;
    let link = snap["invite_link"]["value"].as_str().unwrap().to_owned();
    assert_eq!(
        link,
        format!("http://127.0.0.1:{}/join/{game_id}", server.port())
    );
    link
}

/// The admin (`pages[0]`) starts the race (a click, or a finger tap on a phone); every page must
/// show a falling digit countdown and then the race. Saves the countdown screenshot. Returns
/// when every page is `playing`.
pub(super) async fn countdown(pages: &[&Browser], tap: bool) {
    let admin = pages[0];
    for p in pages {
        p.record().await;
    }
    if tap {
        admin.tap("#start-countdown", 0.0).await;
    } else {
        admin.click("#start-countdown").await;
    }
    let deadline = Instant::now() + SECS(15);
    let mut shot = false;
    loop {
        let mut snaps = Vec::new();
        for p in pages {
            snaps.push(p.snapshot().await.unwrap_or(Value::Null));
        }
        let sa = &snaps[0];
        if !shot && visible(sa, "countdown") && text(sa, "countdown").parse::<u32>().is_ok() {
            admin.screenshot("countdown").await;
            shot = true;
        }
        if snaps.iter().all(|s| page_state(s) == "playing") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the race did not start within 15 s; the pages show: {snaps:#?}"
        );
        actix_rt::time::sleep(POLL).await;
    }
    for p in pages {
        let log = p.recorded().await;
        let status: Vec<&str> = log["status"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let digits: Vec<u32> = status.iter().filter_map(|t| t.parse().ok()).collect();
        assert!(
            !digits.is_empty() && digits.windows(2).all(|w| w[0] > w[1]),
            "{}: #status should count down (3, 2, 1); it showed {status:?}",
            p.who
        );
        let first_digit = status
            .iter()
            .position(|t| t.parse::<u32>().is_ok())
            .unwrap();
        assert!(
            status[first_digit..]
                .iter()
                .any(|t| *t == "Go!" || *t == "Race!"),
            "{}: #status never showed Go!/Race! after the countdown: {status:?}",
            p.who
        );
        let overlay = log["countdown"].as_array().unwrap();
        assert!(
            overlay
                .iter()
                .any(|t| t.as_str().is_some_and(|t| t.parse::<u32>().is_ok())),
            "{}: the #countdown overlay never showed a digit: {overlay:?}",
            p.who
        );
    }
    assert!(shot, "no screenshot of the countdown was taken");
}

/// Both players race with the space bar: `winner` presses to the top, `loser` presses once for
/// every three of the winner's. Returns the loser's presses. Saves race and winner screenshots.
async fn space_race(winner: &mut Browser, loser: &mut Browser) -> u64 {
    for p in [&*winner, &*loser] {
        // the keys go to the focused element: the page itself, not a field or a button
        let focus = p
            .js("return document.activeElement === document.body;", vec![])
            .await;
        assert_eq!(
            focus, true,
            "{}: something other than the page has the focus",
            p.who
        );
    }
    let mut loser_presses = 0;
    for i in 0..WIN {
        // the loser first: its presses all land before the winner's last one ends the race
        if i % 3 == 0 {
            loser.press_space().await;
            loser_presses += 1;
        }
        winner.press_space().await;
        if i == WIN / 2 {
            // the robots have left the start: trails and robots mid-track
            for p in [&*winner, &*loser] {
                p.wait("scores mid-race", SECS(10), |s| {
                    page_state(s) == "playing" && s["robots"][0]["score"].as_u64() > Some(0)
                })
                .await;
            }
            winner.screenshot("race").await;
            winner.assert_lanes_drawn(2, "mid-race").await;
            loser.assert_lanes_drawn(2, "mid-race").await;
        }
    }
    loser_presses
}

/// Both pages show "<winner> wins!", the winner panel and a leaderboard listing every name.
pub(super) async fn assert_winner(pages: &[&Browser], winner: &str, names: &[&str]) {
    let line = format!("{winner} wins!");
    for p in pages {
        let snap = p
            .wait(&format!("\"{line}\""), SECS(15), |s| {
                page_state(s) == "finished"
                    && text(s, "status") == line
                    && visible(s, "winner")
                    && text(s, "winner_name") == line
            })
            .await;
        let board = snap["leaderboard"].as_array().unwrap();
        assert_eq!(board.len(), names.len(), "leaderboard: {board:?}");
        assert!(
            board[0].as_str().unwrap().starts_with(winner),
            "the winner should lead the leaderboard: {board:?}"
        );
        for name in names {
            assert!(
                board.iter().any(|e| e.as_str().unwrap().starts_with(name)),
                "{name} missing from the leaderboard: {board:?}"
            );
        }
        p.assert_lanes_drawn(names.len(), "the finish").await;
        assert_eq!(
            snap["recorded"]["errors"],
            json!([]),
            "{}: script errors on the race page",
            p.who
        );
    }
}

/// The admin clicks "Play again": both pages are back to setup.
pub(super) async fn play_again(admin: &Browser, guest: &Browser) {
    admin
        .wait("the Play again button", SECS(5), |s| {
            visible(s, "play_again")
        })
        .await;
    let guest_view = guest.snapshot().await.unwrap();
    assert!(
        visible(&guest_view, "waiting_again") && !visible(&guest_view, "play_again"),
        "the guest must wait for the host: {guest_view:#}"
    );
    admin.click("#play-again").await;
    admin
        .wait("the admin back to setup", SECS(10), |s| {
            page_state(s) == "setup"
                && text(s, "status") == "Invite players"
                && visible(s, "start")
                && !visible(s, "winner")
        })
        .await;
    guest
        .wait("the guest back to setup", SECS(10), |s| {
            page_state(s) == "setup"
                && text(s, "status") == "Get ready"
                && visible(s, "waiting_start")
                && !visible(s, "winner")
        })
        .await;
    admin.screenshot("again").await;
}

/// The whole two-player round in the browser: the creator on `home`, the guest on `away`
/// (which may be the same server). `guest_wins` picks who presses to the top.
pub(super) async fn two_player_round(
    scenario: &str,
    home: &Server,
    away: &Server,
    guest_wins: bool,
) {
    let mut ann = Browser::desktop(scenario, "ann").await;
    let mut bob = Browser::desktop(scenario, "bob").await;
    let game_id = create_game(&ann, home, "Ann").await;
    let link = invite_link(&ann, home, &game_id).await;
    join_game(&bob, &on_server(&link, away), "Bob", 1).await;
    assert_eq!(bob.snapshot().await.unwrap()["origin"], away.url(""));
    for p in [&ann, &bob] {
        p.wait("both lanes", SECS(10), |s| {
            text(s, "players") == "Players 2/10"
        })
        .await;
        p.assert_lanes_drawn(2, "setup").await;
    }
    ann.screenshot("setup").await;
    let ann_id = ann.snapshot().await.unwrap()["robot_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob_id = bob.snapshot().await.unwrap()["robot_id"]
        .as_str()
        .unwrap()
        .to_owned();

    countdown(&[&ann, &bob], false).await;
    let (loser_presses, winner_id, loser_id, winner_name) = if guest_wins {
        (
            space_race(&mut bob, &mut ann).await,
            &bob_id,
            &ann_id,
            "Bob",
        )
    } else {
        (
            space_race(&mut ann, &mut bob).await,
            &ann_id,
            &bob_id,
            "Ann",
        )
    };
    assert_winner(&[&ann, &bob], winner_name, &["Ann", "Bob"]).await;
    ann.screenshot("winner").await;
    bob.screenshot("winner-guest").await;

    // Both servers agree with what the pages show.
    for server in [home, away] {
        let game = server.api().game(&game_id).await;
        assert_eq!(game["state"], "finished", "{game}");
        assert_eq!(game["winner"], winner_id.as_str());
        assert_eq!(api_score(&game, winner_id), WIN);
        assert_eq!(api_score(&game, loser_id), loser_presses, "{game}");
    }
    play_again(&ann, &bob).await;
    let game = home.api().game(&game_id).await;
    assert_eq!(game["state"], "setup");
    assert!(game["robots"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["score"] == 0));
    ann.close().await;
    bob.close().await;
}

/// Polls the JSON API (bounded) until the game satisfies `pred`.
pub(super) async fn wait_api(
    server: &Server,
    game_id: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) {
    let api = server.api();
    let deadline = Instant::now() + SECS(10);
    loop {
        let game = api.game(game_id).await;
        if pred(&game) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; GET /api/games/{game_id}: {game}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Submits the form on the current page with `name` (typed with real keys, after removing the
/// `required` and `maxlength` attributes, and enabling a form the page shows disabled (a full
/// game), so the server's own check is what answers).
pub(super) async fn submit_name(b: &Browser, button: &str, name: &str) {
    b.js(
        "var f = document.getElementById('name'); f.removeAttribute('required'); \
         f.removeAttribute('maxlength'); f.form.noValidate = true; \
         f.form.querySelectorAll(':disabled').forEach(function (e) { e.disabled = false; }); \
         return true;",
        vec![],
    )
    .await;
    b.type_into("#name", name).await;
    b.click(button).await;
}

/// Waits for the re-rendered form with an error message in `#error` containing `expect`.
pub(super) async fn expect_error(b: &Browser, path: &str, expect: &str, shot: &str) -> Value {
    let snap = b
        .wait(&format!("the message \"{expect}\""), SECS(10), |s| {
            s["ready"] == "complete" && s["path"] == path && visible(s, "error")
        })
        .await;
    assert!(
        text(&snap, "error").contains(expect),
        "#error should say \"{expect}\": {snap:#}"
    );
    assert_readable(&snap, shot);
    assert!(
        snap["name"].is_object(),
        "the form is shown again: {snap:#}"
    );
    b.screenshot(shot).await;
    snap
}
