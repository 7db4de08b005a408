//! Ownership across servers: create and join across servers, scores relayed, a dead owner
//! taken over (numbering its versions from a new epoch), a cut-off owner fenced, a lease
//! confirmed before applying, an owner keeping its newer copy over Redis's older one, Redis lost
//! and back, shutdown handing over, and a stale save saved whole.

use std::time::Duration;

use super::{node, owned, race, same_versions, scores, seat, LEASE};
use crate::bus::local::LocalCluster;
use crate::node::Outbound;
use crate::protocol::ClientMsg;

#[tokio::test(start_paused = true)]
async fn create_join_across_nodes_and_forward() {
    let cluster = LocalCluster::new();
    let (a, b, c) = (
        node(&cluster, "a"),
        node(&cluster, "b"),
        node(&cluster, "c"),
    );
    let (id, mut ann, mut bob) = race(&a, &b).await;
    assert_eq!(cluster.owner(&id).as_deref(), Some("a"));
    // A third server reads it as a replica, takes nothing over.
    let game = c.game(&id).await.unwrap();
    assert_eq!(game.robots.len(), 2);
    for _ in 0..5 {
        bob.send(ClientMsg::ScorePoint);
    }
    ann.send(ClientMsg::ScorePoint);
    for p in [&mut ann, &mut bob] {
        p.wait(|g| scores(g) == [1, 5]).await;
    }
    assert_eq!((owned(&a), owned(&b)), (1, 0));
    same_versions(&[&ann, &bob]);
    // The stored state shows both origins' commands applied once.
    let stored: crate::game::Game = serde_json::from_str(&cluster.stored(&id).unwrap()).unwrap();
    assert_eq!(stored.robots[1].score, 5);
}

/// A save can apply several presses at once (they came while the last was in flight): the
/// other servers apply its scores to their copy, the save it follows, and do not read the
/// whole game back from Redis for a version that moved by more than one.
#[tokio::test(start_paused = true)]
async fn scores_that_apply_several_presses_at_once_are_shown_as_scores() {
    let cluster = LocalCluster::new();
    let (a, b) = (node(&cluster, "a"), node(&cluster, "b"));
    let (_id, mut ann, mut bob) = race(&a, &b).await;
    bob.kinds.clear();
    let before = bob.drawn["version"].as_u64().unwrap();
    // Queued together, applied together: one save, the version up by 5.
    for _ in 0..5 {
        ann.send(ClientMsg::ScorePoint);
    }
    let drawn = bob.wait(|g| scores(g) == [5, 0]).await;
    assert_eq!(drawn["version"].as_u64(), Some(before + 5));
    ann.wait(|g| scores(g) == [5, 0]).await;
    assert_eq!(
        bob.kinds,
        ["scores"],
        "one scores frame, no reload: {:?}",
        bob.kinds
    );
    same_versions(&[&ann, &bob]);
}

#[tokio::test(start_paused = true)]
async fn a_dead_owner_is_taken_over_and_no_press_is_lost() {
    let cluster = LocalCluster::new();
    let (a, b) = (node(&cluster, "a"), node(&cluster, "b"));
    let (id, _ann, mut bob) = race(&a, &b).await;
    bob.send(ClientMsg::ScorePoint);
    bob.wait(|g| scores(g) == [0, 1]).await;
    // The owner dies: its presses in flight go nowhere; bob's server finds it gone.
    cluster.kill("a");
    drop(a);
    for _ in 0..4 {
        bob.send(ClientMsg::ScorePoint);
    }
    bob.wait(|g| scores(g) == [0, 5]).await;
    assert_eq!(cluster.owner(&id).as_deref(), Some("b"));
    bob.read(Duration::from_secs(2)).await;
    assert_eq!(scores(&bob.drawn), [0, 5], "a press was applied twice");
    // Each owner numbers its versions from its claim's epoch: a's (the first claim) are in
    // the first billion, b's (the second) above two billion, so no number is given twice.
    let versions: Vec<u64> = bob.seen.iter().map(|(v, _)| *v).collect();
    assert!(versions[0] > 1_000_000_000 && versions[0] < 2_000_000_000);
    assert!(*versions.last().unwrap() > 2_000_000_000, "{versions:?}");
}

/// Redis restored from an older snapshot behind its owner's back (and the lease lost with it):
/// whichever server claims the game next (the owner, or the other, which holds every committed
/// version as a replica) carries on from its own, newer copy; no screen goes back to the older
/// scores.
#[tokio::test(start_paused = true)]
async fn an_owner_keeps_its_newer_copy_over_an_older_one_in_redis() {
    let cluster = LocalCluster::new();
    let (a, b) = (node(&cluster, "a"), node(&cluster, "b"));
    let (id, mut ann, mut bob) = race(&a, &b).await;
    ann.send(ClientMsg::ScorePoint);
    bob.wait(|g| scores(g) == [1, 0]).await;
    let older = cluster.stored(&id);
    for _ in 0..3 {
        ann.send(ClientMsg::ScorePoint);
    }
    bob.wait(|g| scores(g) == [4, 0]).await;
    // The lease lapses (a cannot reach Redis for two leases) and Redis goes back to 1.
    cluster.cut("a", true);
    cluster.put_stored(&id, older);
    tokio::time::sleep(LEASE * 2).await;
    cluster.cut("a", false);
    ann.send(ClientMsg::ScorePoint);
    for p in [&mut ann, &mut bob] {
        p.wait(|g| scores(g) == [5, 0]).await;
    }
    let stored: crate::game::Game = serde_json::from_str(&cluster.stored(&id).unwrap()).unwrap();
    assert_eq!(stored.robots[0].score, 5);
    for p in [&ann, &bob] {
        let own: Vec<u64> = p.seen.iter().map(|(_, s)| s[0]).collect();
        assert!(own.windows(2).all(|w| w[0] <= w[1]), "went back: {own:?}");
    }
    same_versions(&[&ann, &bob]);
}

#[tokio::test(start_paused = true)]
async fn a_cut_off_owner_is_fenced_and_shows_nothing_it_could_not_save() {
    let cluster = LocalCluster::new();
    let (a, b) = (node(&cluster, "a"), node(&cluster, "b"));
    let (id, mut ann, mut bob) = race(&a, &b).await;
    // A is cut off (as a frozen server is) well past its lease; b takes the game over.
    cluster.cut("a", true);
    // While cut off, a cannot save: its player's press is never shown nor applied, and is
    // answered `unavailable` within 2 s.
    ann.send(ClientMsg::ScorePoint);
    ann.read(Duration::from_secs(2)).await;
    assert_eq!(ann.errors, ["unavailable"]);
    assert_eq!(scores(&ann.drawn), [0, 0]);
    tokio::time::sleep(LEASE * 3).await;
    for _ in 0..3 {
        bob.send(ClientMsg::ScorePoint);
    }
    bob.wait(|g| scores(g)[1] == 3).await;
    assert_eq!(cluster.owner(&id).as_deref(), Some("b"));
    // A is back: it finds b owns the game, and its player's next press is applied there once.
    cluster.cut("a", false);
    ann.send(ClientMsg::ScorePoint);
    for p in [&mut ann, &mut bob] {
        p.wait(|g| scores(g) == [1, 3]).await;
    }
    assert_eq!((owned(&a), owned(&b)), (0, 1));
    bob.read(Duration::from_secs(1)).await;
    assert_eq!(scores(&bob.drawn), [1, 3]);
    same_versions(&[&ann, &bob]);
}

/// Redis refuses writes (out of memory) while pub/sub still works: presses forwarded to the
/// owner meanwhile are answered `unavailable` within 2 s and never applied, also once Redis
/// takes writes again; so is the press applied into the refused save, taken back.
#[tokio::test(start_paused = true)]
async fn presses_forwarded_while_redis_refuses_writes_are_answered_and_never_applied() {
    let cluster = LocalCluster::new();
    let (a, b) = (node(&cluster, "a"), node(&cluster, "b"));
    let (_id, _ann, mut bob) = race(&a, &b).await;
    cluster.full(true);
    // The first press is applied, and its save refused: the owner now waits for storage.
    bob.send(ClientMsg::ScorePoint);
    bob.read(Duration::from_millis(300)).await;
    bob.send(ClientMsg::ScorePoint);
    bob.read(Duration::from_secs(2)).await;
    assert_eq!(bob.errors, ["unavailable", "unavailable"]);
    assert_eq!(
        scores(&bob.drawn),
        [0, 0],
        "nothing shown that was not saved"
    );
    // Redis takes writes again: the state taken back to is saved (a new version), then the
    // game plays on.
    let before = bob.drawn["version"].as_u64();
    cluster.full(false);
    bob.wait(|g| g["version"].as_u64() > before).await;
    bob.send(ClientMsg::ScorePoint);
    bob.wait(|g| scores(g) == [0, 1]).await;
    bob.read(Duration::from_secs(3)).await;
    assert_eq!(scores(&bob.drawn), [0, 1], "a refused press was applied");
    assert_eq!(bob.errors, ["unavailable", "unavailable"]);
}

/// A press applied into a save that Redis keeps refusing (out of memory for 6 s) is answered
/// `unavailable` within 2 s and never applied, on the owner and from another server alike.
#[tokio::test(start_paused = true)]
async fn a_press_in_a_save_redis_keeps_refusing_is_answered_within_two_seconds() {
    let cluster = LocalCluster::new();
    let (a, b) = (node(&cluster, "a"), node(&cluster, "b"));
    let (_id, mut ann, mut bob) = race(&a, &b).await;
    cluster.full(true);
    ann.send(ClientMsg::ScorePoint);
    bob.send(ClientMsg::ScorePoint);
    ann.read(Duration::from_secs(2)).await;
    bob.read(Duration::from_millis(10)).await;
    assert_eq!(ann.errors, ["unavailable"], "the owner's player");
    assert_eq!(bob.errors, ["unavailable"], "the other server's player");
    ann.read(Duration::from_secs(4)).await;
    let before = ann.drawn["version"].as_u64();
    cluster.full(false);
    ann.wait(|g| g["version"].as_u64() > before).await;
    ann.send(ClientMsg::ScorePoint);
    for p in [&mut ann, &mut bob] {
        p.wait(|g| scores(g) == [1, 0]).await;
        p.read(Duration::from_secs(2)).await;
        assert_eq!(
            scores(&p.drawn),
            [1, 0],
            "a press answered unavailable was applied"
        );
    }
    assert_eq!((ann.errors.len(), bob.errors.len()), (1, 1));
    same_versions(&[&ann, &bob]);
}

/// The owner's `unavailable` answer to a forwarded press is lost on its way: every copy the
/// press's server sends again is answered again, and the press is never acknowledged (as
/// nothing) before its player was told, also once Redis takes writes again.
#[tokio::test(start_paused = true)]
async fn a_lost_unavailable_answer_is_given_again_for_every_copy() {
    let cluster = LocalCluster::new();
    let (a, b) = (node(&cluster, "a"), node(&cluster, "b"));
    let (_id, _ann, mut bob) = race(&a, &b).await;
    cluster.full(true);
    bob.send(ClientMsg::ScorePoint);
    bob.read(Duration::from_millis(300)).await;
    cluster.lose("b", "command_error", 1);
    bob.send(ClientMsg::ScorePoint);
    // Its server sends the press again; the owner answers that copy too, within 2 s of it
    // (and the first press, applied into the refused save, is taken back and answered).
    bob.read(Duration::from_millis(2500)).await;
    assert_eq!(bob.errors, ["unavailable", "unavailable"]);
    // Redis takes writes again: the state taken back to is saved (a new version), then the
    // game plays on.
    let before = bob.drawn["version"].as_u64();
    cluster.full(false);
    bob.wait(|g| g["version"].as_u64() > before).await;
    bob.send(ClientMsg::ScorePoint);
    bob.wait(|g| scores(g) == [0, 1]).await;
    bob.read(Duration::from_secs(3)).await;
    assert_eq!(scores(&bob.drawn), [0, 1], "a refused press was applied");
    assert_eq!(
        bob.errors,
        ["unavailable", "unavailable"],
        "told more than once"
    );
}

#[tokio::test(start_paused = true)]
async fn an_owner_past_its_lease_confirms_it_before_applying() {
    let cluster = LocalCluster::new();
    let (a, _b) = (node(&cluster, "a"), node(&cluster, "b"));
    // Both players on the owner: nobody else needs the game.
    let (id, mut ann, mut bob) = race(&a, &a).await;
    // Nobody renews for a while (as if a was frozen): by a's own clock the lease is over, and
    // Redis let it lapse.
    cluster.cut("a", true);
    tokio::time::sleep(LEASE * 2).await;
    cluster.cut("a", false);
    assert_eq!(cluster.owner(&id), None);
    // Nobody took it meanwhile: a confirms, takes it again, and applies the press once.
    ann.send(ClientMsg::ScorePoint);
    for p in [&mut ann, &mut bob] {
        p.wait(|g| scores(g) == [1, 0]).await;
    }
    assert_eq!(cluster.owner(&id).as_deref(), Some("a"));
    bob.read(Duration::from_secs(1)).await;
    assert_eq!(scores(&bob.drawn), [1, 0]);
    same_versions(&[&ann, &bob]);
}

#[tokio::test(start_paused = true)]
async fn redis_lost_and_back_empty_or_not() {
    for empty in [true, false] {
        let cluster = LocalCluster::new();
        let (a, b) = (node(&cluster, "a"), node(&cluster, "b"));
        let (id, mut ann, mut bob) = race(&a, &b).await;
        ann.send(ClientMsg::ScorePoint);
        bob.wait(|g| scores(g) == [1, 0]).await;
        cluster.down();
        // Nobody can save: presses on either server are answered `unavailable` within 2 s,
        // and nothing is shown.
        ann.send(ClientMsg::ScorePoint);
        bob.send(ClientMsg::ScorePoint);
        for p in [&mut ann, &mut bob] {
            p.read(Duration::from_secs(2)).await;
            assert_eq!(p.errors, ["unavailable"], "empty: {empty}");
            assert_eq!(scores(&p.drawn), [1, 0]);
        }
        cluster.back(empty);
        // Back: play resumes where it was, on the same owner.
        ann.send(ClientMsg::ScorePoint);
        bob.send(ClientMsg::ScorePoint);
        for p in [&mut ann, &mut bob] {
            p.wait(|g| scores(g) == [2, 1]).await;
        }
        assert_eq!(cluster.owner(&id).as_deref(), Some("a"), "empty: {empty}");
        let stored: crate::game::Game =
            serde_json::from_str(&cluster.stored(&id).unwrap()).unwrap();
        assert_eq!(stored.robots[0].score, 2);
        same_versions(&[&ann, &bob]);
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_then_hands_over() {
    let cluster = LocalCluster::new();
    let (a, b) = (node(&cluster, "a"), node(&cluster, "b"));
    let (id, mut ann, mut bob) = race(&a, &b).await;
    for _ in 0..3 {
        bob.send(ClientMsg::ScorePoint);
        ann.send(ClientMsg::ScorePoint);
    }
    // The owner stops while presses are in flight: its own are committed before it lets go,
    // bob's reach whoever owns the game next. None is lost, none counted twice.
    let stopping = tokio::spawn({
        let a = a.clone();
        async move { a.shutdown().await }
    });
    for _ in 0..4 {
        bob.send(ClientMsg::ScorePoint);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    stopping.await.unwrap();
    assert_eq!(cluster.owner(&id).as_deref().unwrap_or("b"), "b");
    bob.wait(|g| scores(g) == [3, 7]).await;
    assert_eq!(cluster.owner(&id).as_deref(), Some("b"));
    // Ann's session was closed with "going away"; she comes back through b.
    let closed = std::iter::from_fn(|| ann.rx.try_recv().ok())
        .any(|o| matches!(o, Outbound::Close(crate::node::CloseWhy::GoingAway)));
    assert!(closed, "ann's session was not closed");
    bob.read(Duration::from_secs(1)).await;
    assert_eq!(scores(&bob.drawn), [3, 7]);
}

#[tokio::test(start_paused = true)]
async fn every_save_stores_the_whole_game_and_nothing_shown_is_lost() {
    use crate::game::Game;
    let stored = |c: &LocalCluster, id: &str| -> Game {
        serde_json::from_str(&c.stored(id).unwrap()).unwrap()
    };
    let cluster = LocalCluster::new();
    let (a, b) = (node(&cluster, "a"), node(&cluster, "b"));
    let (id, mut ann, mut bob) = race(&a, &b).await;
    let mut presses = 0;
    ann.send(ClientMsg::ScorePoint);
    presses += 1;
    bob.wait(|g| scores(g) == [1, 0]).await;
    assert_eq!(stored(&cluster, &id), a.game(&id).await.unwrap());
    // Behind the owner's back, Redis loses the game, then holds another version of it (as
    // after a failover that lost writes): the next save stores the owner's whole game again;
    // the presses are shown once it commits, never lost.
    let mut other = stored(&cluster, &id);
    other.version -= 1;
    other.robots[0].name = "zed".into();
    other.robots[1].previous_wins = 9;
    let other = other.stored_json();
    for tampered in [None, Some(other)] {
        cluster.put_stored(&id, tampered);
        ann.send(ClientMsg::ScorePoint);
        bob.send(ClientMsg::ScorePoint);
        presses += 2;
        let want = [presses / 2 + 1, presses / 2];
        for p in [&mut ann, &mut bob] {
            p.wait(|g| scores(g) == want).await;
        }
        assert_eq!(stored(&cluster, &id), a.game(&id).await.unwrap());
    }
    let game = stored(&cluster, &id);
    assert_eq!(
        (game.robots[0].name.as_str(), game.robots[1].previous_wins),
        ("ann", 0)
    );
    same_versions(&[&ann, &bob]);
    // Every press was shown (and timed) by the owner exactly once.
    let count = a.metrics().press_to_broadcast.read().count;
    assert_eq!(count, presses);
    assert_eq!((owned(&a), owned(&b)), (1, 0));
}

/// A socket that opens while the owner's save is not yet taken (Redis refusing writes) is
/// welcomed with the last committed state, never the one being saved; once the save goes
/// through, every screen (this one too) shows it.
#[tokio::test(start_paused = true)]
async fn a_welcome_shows_the_last_committed_state_and_the_commit_reaches_every_screen() {
    let cluster = LocalCluster::new();
    let a = node(&cluster, "a");
    let (id, mut ann, mut bob) = race(&a, &a).await;
    let bob_id = a.game(&id).await.unwrap().robots[1].id.clone();
    cluster.full(true);
    ann.send(ClientMsg::ScorePoint);
    ann.read(Duration::from_millis(300)).await;
    assert_eq!(scores(&ann.drawn), [0, 0], "shown before it was saved");
    // Bob opens a second tab now: welcomed with what is committed.
    let mut tab = seat(&a, &id, &bob_id).await;
    tab.read(Duration::from_millis(100)).await;
    assert_eq!(
        scores(&tab.drawn),
        [0, 0],
        "welcomed with a state not saved"
    );
    cluster.full(false);
    for p in [&mut ann, &mut bob, &mut tab] {
        p.wait(|g| scores(g) == [1, 0]).await;
    }
    same_versions(&[&ann, &bob, &tab]);
}
