//! A pub/sub connection silently dropped (a NAT or a load balancer forgot it while it was idle:
//! no byte either way, nothing closed) while the command connection stays well: the server
//! finds out within a bounded time, subscribes again, and presses forwarded to it through its
//! inbox are applied again.

use std::time::{Duration, Instant};

use serde_json::json;

use super::judge::notable_logs;
use super::{node, node_at, LEASE_MS};
use crate::helpers::*;

/// A dead subscription is found and replaced within this long of the cut (with the tests'
/// 1 s lease), and a forwarded press applied again.
const RESUBSCRIBED_WITHIN: Duration = Duration::from_secs(5);

/// Owner A reaches Redis through a proxy, B directly; A owns a game, bob plays it on B, so his
/// presses go to A through A's inbox. The proxy black-holes A's pub/sub connection and nothing
/// else: A's heartbeat goes on, so nobody takes the game over, and only A can notice. A
/// press of bob's must move his robot again within [`RESUBSCRIBED_WITHIN`] of the cut.
#[actix_rt::test]
async fn a_silently_dropped_subscription_is_found_and_subscribed_again() {
    let redis = Redis::start();
    let proxy = Proxy::start(redis.port);
    let servers = [node_at(&proxy.addr(), "a", true), node(&redis, "b", true)];
    let (a, b) = (&servers[0], &servers[1]);
    let ann_joined = a.api().create("ann", 1000, 0).await;
    let bob_joined = b.api().join(&ann_joined.game_id, "bob").await;
    let mut ann = RacingPlayer::new("ann", ann_joined, &[a, b], 0);
    let mut bob = RacingPlayer::new("bob", bob_joined, &[b, a], 0);
    assert!(ann.connect().await && ann.server == 0, "{:?}", ann.events);
    assert!(bob.connect().await && bob.server == 0, "{:?}", bob.events);
    let two = |g: &serde_json::Value| g["robots"].as_array().is_some_and(|r| r.len() == 2);
    assert!(bob.wait_drawn(SECS(15), two).await, "{}", bob.game);
    assert!(ann.send(json!({"type": "start_countdown"})).await);
    assert!(
        bob.wait_drawn(SECS(15), |g| state(g) == "playing").await,
        "not playing: {}",
        bob.game
    );
    let every = Duration::from_millis(100);
    assert!(
        bob.press_until_own_score_rises(every, SECS(10))
            .await
            .is_some(),
        "a press forwarded to A was not applied while all was well: {}\n{}",
        bob.summary(),
        notable_logs(&servers)
    );

    // Idle long enough for a first PING or two to go through.
    bob.listen(Duration::from_millis(2 * LEASE_MS)).await;
    let held = proxy.hold_subscribers();
    let cut = Instant::now();
    assert_eq!(held, 1, "A's pub/sub connections through the proxy");
    let rose = bob
        .press_until_own_score_rises(every, RESUBSCRIBED_WITHIN + SECS(5))
        .await
        .map(|at| at.duration_since(cut));
    println!("A's pub/sub connection black-holed; bob's robot moved again after {rose:?}");
    let found = a.logs.contains("Redis pub/sub PING failed");
    // One dead connection, one reconnect.
    let reconnects = a.logs.count("Lost the connection to Redis");
    assert!(
        rose.is_some_and(|t| t <= RESUBSCRIBED_WITHIN) && found && reconnects == 1,
        "A's subscription black-holed: bob's press moved his robot after {rose:?} (at most \
         {RESUBSCRIBED_WITHIN:?}), the dead subscription logged: {found}, A reconnected \
         {reconnects} time(s) (once)\n{}\n{}",
        bob.summary(),
        notable_logs(&servers)
    );
}
