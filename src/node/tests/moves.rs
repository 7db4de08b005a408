//! Ownership follows the players, on paused time: a game moves to the server that holds more
//! of its players, and the move does not end a game whose new owner's players were idle.

use std::time::Duration;

use super::{name, node, owned, scores, seat, Player};
use crate::bus::local::LocalCluster;
use crate::game::GameConfig;
use crate::node::GameMsg;
use crate::protocol::ClientMsg;

async fn close(p: Player) {
    p.game
        .tx
        .send(GameMsg::Disconnect(p.session))
        .await
        .unwrap();
}

/// Three players on a (which created the game and owns it), three on b; a's keep pressing for
/// longer than the idle timeout (10 minutes) while b's only watch. Then two of a's players
/// leave: b holds two more, and a second later the game is b's, and goes on: b counts the game
/// idle from the move, not from when its own players last pressed.
#[tokio::test(start_paused = true)]
async fn a_game_moves_to_its_players_and_is_not_ended_as_idle_there() {
    let cluster = LocalCluster::new();
    let (a, b) = (node(&cluster, "a"), node(&cluster, "b"));
    let config = GameConfig {
        winning_score: 1000,
        countdown: 0,
    };
    let created = a.create(name("ann"), config).await.unwrap();
    let id = created.game_id.clone();
    let mut on_a = vec![seat(&a, &id, &created.robot_id).await];
    for n in ["al", "amy"] {
        let robot = a.join(&id, name(n)).await.unwrap();
        on_a.push(seat(&a, &id, &robot).await);
    }
    let mut on_b = Vec::new();
    for n in ["bob", "cy", "dee"] {
        let robot = b.join(&id, name(n)).await.unwrap();
        on_b.push(seat(&b, &id, &robot).await);
    }
    on_a[0].send(ClientMsg::StartCountdown);
    for p in on_a.iter_mut().chain(on_b.iter_mut()) {
        p.wait(|g| g["state"] == "playing").await;
    }
    // Eleven minutes of presses on a only (the idle timeout is ten).
    for minute in 1..=11u64 {
        on_a[0].send(ClientMsg::ScorePoint);
        on_a[0].wait(|g| scores(g)[0] == minute).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        for p in on_a.iter_mut().chain(on_b.iter_mut()) {
            p.read(Duration::from_millis(10)).await;
        }
    }
    assert_eq!(
        (owned(&a), owned(&b)),
        (1, 0),
        "moved before the players did"
    );
    let (amy, al) = (on_a.pop().unwrap(), on_a.pop().unwrap());
    close(amy).await;
    close(al).await;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if owned(&b) == 1 {
            break;
        }
    }
    assert_eq!((owned(&a), owned(&b)), (0, 1), "the game did not move to b");
    // A few seconds on b's timers: the game goes on, and b's players' presses count.
    tokio::time::sleep(Duration::from_secs(3)).await;
    on_b[0].send(ClientMsg::ScorePoint);
    on_b[0].wait(|g| scores(g)[3] == 1).await;
    on_a[0].wait(|g| scores(g)[3] == 1).await;
    for p in on_a.iter().chain(on_b.iter()) {
        assert!(!p.kinds.contains(&"terminated".to_owned()), "{:?}", p.kinds);
    }
}
