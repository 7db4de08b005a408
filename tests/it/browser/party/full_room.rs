//! The big screen refused by a full server (`-max-spectators`): the page says the room is
//! full and retries, and shows the race once a seat frees up.

use std::time::{Duration, Instant};

use super::{open, TV};
use crate::browser::driver::require_browser;
use crate::helpers::*;

/// Whether `#room-full` shows, and whether the page's socket is live.
const ROOM: &str = r##"
var full = document.getElementById("room-full");
var cur = window.RobotRace && window.RobotRace.current ? window.RobotRace.current() : {};
return { full: !!full && !full.hidden, text: full ? full.textContent.trim() : null,
  connected: !!cur.connected };
"##;

async fn wait_room(
    tv: &crate::browser::client::Browser,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + SECS(30);
    loop {
        let room = tv.js(ROOM, vec![]).await;
        if pred(&room) {
            return room;
        }
        assert!(Instant::now() < deadline, "{what}: {room}");
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }
}

#[actix_rt::test]
async fn a_full_room_says_so_and_the_tv_comes_in_when_a_seat_frees_up() {
    require_browser();
    let server = Server::start(&["-max-spectators", "1"]);
    let ann = server.api().create("Ann", 10, 1).await;
    // Another screen has the server's only seat.
    let url = server.ws_url(&format!("/ws/{}?watch=1", ann.game_id));
    let other = try_connect(&url, None).await.expect("the first spectator");

    let tv = open("full-room", TV, false).await;
    let path = format!("/watch/{}", ann.game_id);
    tv.goto(&server.url(&path)).await;
    tv.wait_page(&path, "#qr svg").await;
    let room = wait_room(&tv, "the room-full notice", |r| r["full"] == true).await;
    assert_eq!(room["text"], "This room is full, retrying…", "{room}");
    assert_eq!(room["connected"], false, "{room}");
    tv.screenshot("tv-room-full").await;

    // The seat frees up: the page comes in on a retry, the notice goes.
    drop(other);
    wait_room(&tv, "the TV in once a seat freed up", |r| {
        r["full"] == false && r["connected"] == true
    })
    .await;
    tv.close().await;
}
