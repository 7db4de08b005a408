//! The stage and its feed on paused time: the newest state at most once per period, scores
//! patched into the last full view, the curtain after the last frame.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::*;
use crate::game::{Game, GameConfig, PlayerName};
use crate::node::GameInfo;
use crate::protocol::{scores_frame, update_frame};

fn game() -> Game {
    let mut game = Game::new(
        "Ab3dE9xY".into(),
        GameConfig::default(),
        "r1".into(),
        PlayerName::parse("ann").unwrap(),
    );
    game.join("r2".into(), PlayerName::parse("bob").unwrap())
        .unwrap();
    game
}

fn handle() -> (GameHandle, mpsc::Receiver<GameMsg>) {
    let (tx, rx) = mpsc::channel(8);
    let info = Arc::new(GameInfo::default());
    (GameHandle { tx, info }, rx)
}

fn watcher(handle: &GameHandle, metrics: &Arc<Metrics>) -> Watcher {
    let seat = Seat::take(metrics, 0).unwrap();
    let period = Duration::from_millis(100);
    Watcher::new(
        handle.clone(),
        seat,
        period,
        &tokio::runtime::Handle::current(),
    )
}

async fn frame(w: &mut Watcher) -> Value {
    match tokio::time::timeout(Duration::from_secs(5), w.next()).await {
        Ok(Cue::Frame(f)) => serde_json::from_str(&f).unwrap(),
        Ok(Cue::Close(c)) => panic!("closed: {c:?}"),
        Err(_) => panic!("no frame"),
    }
}

use serde_json::Value;

#[tokio::test(start_paused = true)]
async fn spectators_get_the_newest_state_once_per_period_and_then_the_curtain() {
    let (handle, mut rx) = handle();
    let metrics = Arc::new(Metrics::default());
    let stage = handle.info.stage.clone();
    let g = game();
    stage.shown(g.version, &update_frame(&g));
    let mut w = watcher(&handle, &metrics);
    assert!(matches!(rx.try_recv(), Ok(GameMsg::Spectators)));
    w.first(Duration::from_secs(1)).await.unwrap();
    let welcome: Value = serde_json::from_str(&w.welcome().unwrap()).unwrap();
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["robot_id"], Value::Null);
    assert_eq!(welcome["game"]["version"], g.version);
    // Ten scores frames at once: one frame, the newest, with the full view patched.
    for i in 1..=10u32 {
        stage.shown(
            g.version + u64::from(i),
            &scores_frame(g.version + u64::from(i), [i, 2 * i].into_iter()),
        );
    }
    let start = tokio::time::Instant::now();
    let f = frame(&mut w).await;
    assert_eq!(f["type"], "game_update");
    assert_eq!(f["game"]["version"], g.version + 10);
    assert_eq!(f["game"]["robots"][0]["score"], 10);
    assert_eq!(f["game"]["robots"][1]["score"], 20);
    assert_eq!(f["game"]["robots"][1]["name"], "bob");
    stage.shown(
        g.version + 11,
        &scores_frame(g.version + 11, [11, 20].into_iter()),
    );
    let f = frame(&mut w).await;
    assert_eq!(f["game"]["version"], g.version + 11);
    assert!(
        start.elapsed() >= Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
    // Older or misfitting frames change nothing; the curtain comes after the newest.
    stage.shown(
        g.version + 5,
        &scores_frame(g.version + 5, [1, 1].into_iter()),
    );
    stage.shown(
        g.version + 12,
        &scores_frame(g.version + 12, [1].into_iter()),
    );
    stage.close(Curtain::Ended);
    match tokio::time::timeout(Duration::from_secs(5), w.next()).await {
        Ok(Cue::Close(Curtain::Ended)) => {}
        _ => panic!("expected the curtain"),
    }
    assert_eq!(metrics.spectators.load(Ordering::Relaxed), 1);
    drop(w);
    assert_eq!(metrics.spectators.load(Ordering::Relaxed), 0);
    assert!(matches!(rx.try_recv(), Ok(GameMsg::Spectators)));
}

#[test]
fn seats_stop_at_the_limit_and_come_back_when_freed() {
    let metrics = Arc::new(Metrics::default());
    let a = Seat::take(&metrics, 2).unwrap();
    let _b = Seat::take(&metrics, 2).unwrap();
    assert!(Seat::take(&metrics, 2).is_none());
    assert_eq!(metrics.spectators.load(Ordering::Relaxed), 2);
    drop(a);
    assert!(Seat::take(&metrics, 2).is_some());
    assert!(Seat::take(&metrics, 0).is_some());
}

#[tokio::test(start_paused = true)]
async fn a_big_audience_is_woken_a_group_at_a_time_over_half_a_period() {
    let (handle, _rx) = handle();
    let metrics = Arc::new(Metrics::default());
    let stage = handle.info.stage.clone();
    let g = game();
    stage.shown(g.version, &update_frame(&g));
    let mut watchers: Vec<Watcher> = (0..GROUPS * 20)
        .map(|_| watcher(&handle, &metrics))
        .collect();
    for w in &mut watchers {
        w.first(Duration::from_secs(1)).await.unwrap();
        w.welcome();
    }
    // A tick after the first publication, the next state.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = tokio::time::Instant::now();
    stage.shown(
        g.version + 1,
        &scores_frame(g.version + 1, [1, 0].into_iter()),
    );
    let first = frame(&mut watchers[0]).await;
    let first_at = start.elapsed();
    let last = frame(&mut watchers[GROUPS - 1]).await;
    let last_at = start.elapsed();
    assert_eq!(first["game"]["version"], g.version + 1);
    assert_eq!(last["game"]["version"], g.version + 1);
    assert!(first_at < Duration::from_millis(5), "{first_at:?}");
    // The last group: 15/32 of the 100 ms period later.
    assert!(
        last_at >= Duration::from_millis(46) && last_at <= Duration::from_millis(50),
        "{last_at:?}"
    );
}
