//! The save scripts on a real `redis-server`: a scores-only save (`SAVE_SCORES`) patches the
//! stored game in place, whatever players named their robots, and leaves it whole (any server
//! resumes from it); a stale base or another owner changes nothing. And what a press costs
//! Redis with real servers (at most 1 KB in).

use std::time::Duration;

use robot_race::bus::patch_scores;
use robot_race::bus::redis::{Names, Scripts, STATE_TTL_SECS};
use robot_race::game::{Applied, Game, GameConfig, PlayerName, Robot, State};
use robot_race::node::wire::{scores_message, update_message};
use serde_json::{json, Value};

use crate::helpers::*;

const OWNER: &str = "game_owner:g1";
const STATE: &str = "game_state:g1";
const CHANNEL: &str = "game:g1";

/// Names that look like the keys the script patches, with quotes, backslashes, brackets and
/// non-ASCII text (stored as serde writes them, whatever a name rule allows).
const NAMES: [&str; 6] = [
    r#""score":5"#,
    r#"\"version\":9"#,
    r#""applied":[["x",1]],"score":7"#,
    r"\\]]\[[",
    "ünï😀\"score\":",
    r#"[{"score":1}]"#,
];

fn adversarial_game() -> Game {
    let mut game = Game::new(
        "g1".into(),
        GameConfig::default(),
        "r0".into(),
        PlayerName::parse("ann").unwrap(),
    );
    game.robots = NAMES
        .iter()
        .enumerate()
        .map(|(i, name)| Robot {
            id: format!("r{i}\"]"),
            name: (*name).to_owned(),
            score: i as u32 * 3,
            admin: i == 0,
            previous_wins: i as u32,
            connected: i != 2,
            left: i == 4,
        })
        .collect();
    game.state = State::Playing;
    game.version = 41;
    game.applied = Applied::default();
    // Origins hold node ids, which an operator chooses: brackets and quotes too.
    for origin in [r#"n[1"/a"#, "n]]/b", r"n\/c"] {
        game.applied.admit(origin, 1);
    }
    game
}

fn pttl(conn: &mut redis::Connection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query(conn).unwrap()
}

fn get(conn: &mut redis::Connection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query(conn).unwrap()
}

#[test]
fn a_scores_save_patches_the_stored_game_in_place_and_is_fenced() {
    let redis = Redis::start();
    let client = redis.client();
    let mut conn = client.get_connection().unwrap();
    let mut listen = client.get_connection().unwrap();
    let mut sub = listen.as_pubsub();
    sub.subscribe(CHANNEL).unwrap();
    sub.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let scripts = Scripts::new(Names { tagged: false });

    // The whole game, saved by SAVE as an owner does after a takeover.
    let game = adversarial_game();
    let full = game.stored_json();
    let save_whole = |conn: &mut redis::Connection| -> i64 {
        scripts
            .save
            .key(OWNER)
            .key(STATE)
            .arg("n1")
            .arg(60_000)
            .arg(&full)
            .arg(CHANNEL)
            .arg(update_message("n1", &full))
            .arg(STATE_TTL_SECS)
            .invoke(conn)
            .unwrap()
    };
    let saved = save_whole(&mut conn);
    assert_eq!(saved, 2, "nobody owns it yet");
    redis::cmd("SET")
        .arg(OWNER)
        .arg("n1")
        .exec(&mut conn)
        .unwrap();
    let saved = save_whole(&mut conn);
    assert_eq!(saved, 1);
    let first: String = sub.get_message().unwrap().get_payload().unwrap();
    assert_eq!(first, update_message("n1", &full));
    // No TTL on the lease: one set by a refused save would show.
    redis::cmd("PERSIST").arg(OWNER).exec(&mut conn).unwrap();

    // Presses: new scores, the next version, more applied (a new origin with a bracket).
    let mut want = game.clone();
    for (i, robot) in want.robots.iter_mut().enumerate() {
        robot.score += i as u32 % 2 + 1;
    }
    want.version = 42;
    want.applied.admit("n]]/b", 2);
    want.applied.admit(r#"new["]/d"#, 1);
    let msg = scores_message("n1", &want, Some(41));
    let scores_save = |node: &str, base: u64, msg: &str, conn: &mut redis::Connection| -> i64 {
        scripts
            .save_scores
            .key(OWNER)
            .key(STATE)
            .arg(node)
            .arg(60_000)
            .arg(base)
            .arg(CHANNEL)
            .arg(msg)
            .arg(STATE_TTL_SECS)
            .invoke(conn)
            .unwrap()
    };

    // Refused, and nothing written: neither the game nor the lease.
    let unchanged = |conn: &mut redis::Connection| {
        assert_eq!(get(conn, STATE).as_deref(), Some(full.as_str()));
        assert_eq!(get(conn, OWNER).as_deref(), Some("n1"));
        assert_eq!(pttl(conn, OWNER), -1);
    };
    assert_eq!(scores_save("n1", 40, &msg, &mut conn), 3, "wrong base");
    unchanged(&mut conn);
    assert_eq!(scores_save("n2", 41, &msg, &mut conn), 0, "another owner");
    unchanged(&mut conn);
    let mut fewer = want.clone();
    fewer.robots.pop();
    let fewer = scores_message("n1", &fewer, Some(41));
    assert_eq!(
        scores_save("n1", 41, &fewer, &mut conn),
        3,
        "scores for other lanes"
    );
    unchanged(&mut conn);

    // Patched: the stored game is the whole new game, byte for byte as serde writes it.
    assert_eq!(scores_save("n1", 41, &msg, &mut conn), 1);
    let stored = get(&mut conn, STATE).unwrap();
    let back: Game = serde_json::from_str(&stored).unwrap();
    assert_eq!(back, want);
    assert_eq!(stored, want.stored_json());
    assert!(pttl(&mut conn, OWNER) > 0, "the lease is renewed");
    assert!(pttl(&mut conn, STATE) > 0);
    // The in-process stand-in (LocalCluster) agrees.
    let local: Game = serde_json::from_str(&patch_scores(&full, 41, &msg).unwrap()).unwrap();
    assert_eq!(local, want);
    // Only the good save was published, and it is the message itself.
    let next: String = sub.get_message().unwrap().get_payload().unwrap();
    assert_eq!(next, msg);

    // Missing: stale, nothing written.
    redis::cmd("DEL").arg(STATE).exec(&mut conn).unwrap();
    assert_eq!(scores_save("n1", 42, &msg, &mut conn), 3, "missing");
    assert_eq!(get(&mut conn, STATE), None);
}

fn bytes_in(redis: &Redis) -> u64 {
    let mut conn = redis.client().get_connection().unwrap();
    let info: String = redis::cmd("INFO").arg("stats").query(&mut conn).unwrap();
    let field = info
        .lines()
        .find_map(|l| l.strip_prefix("total_net_input_bytes:"))
        .unwrap();
    field.trim().parse().unwrap()
}

#[actix_rt::test]
async fn a_press_costs_redis_under_a_kilobyte_in_and_the_stored_game_stays_whole() {
    const PRESSES: usize = 40;
    let redis = Redis::start();
    let servers = [
        cluster_node(&redis, "one", &[]),
        cluster_node(&redis, "two", &[]),
    ];
    // Ten robots with full-length names, on both servers as in the benchmark (half the presses
    // are forwarded to the owner); ann and bob press.
    let ann = servers[0].api().create("ann_racer", 1000, 0).await;
    let mut joined = vec![ann.clone()];
    for i in 1..10 {
        let server = &servers[i % 2];
        joined.push(
            server
                .api()
                .join(&ann.game_id, &format!("racer_{i:04}"))
                .await,
        );
    }
    let mut players = Vec::new();
    for (i, j) in joined.iter().enumerate() {
        players.push(connect(&servers[i % 2], j).await);
    }
    players[0]
        .wait_game(SECS(10), |g| g["robots"].as_array().unwrap().len() == 10)
        .await;
    players[0].send(json!({"type": "start_countdown"})).await;
    for p in players.iter_mut() {
        p.wait_game(SECS(10), |g| state(g) == "playing").await;
    }
    let whole = redis.get(&format!("game_state:{}", ann.game_id)).unwrap();
    assert!(
        whole.len() > 1500,
        "a game as large as the benchmark's: {}",
        whole.len()
    );
    let before = bytes_in(&redis);
    // Slow enough that every press is saved on its own (none coalesces with another).
    for _ in 0..PRESSES / 2 {
        for p in players[..2].iter_mut() {
            let robot = p.robot_id.clone();
            let next = scores_of(&p.game)[&robot] + 1;
            p.press().await;
            p.wait_game(SECS(10), |g| scores_of(g)[&robot] == next)
                .await;
        }
    }
    let per_press = (bytes_in(&redis) - before) / PRESSES as u64;
    assert!(per_press <= 1024, "{per_press} bytes into Redis per press");
    // What any server would resume from: the whole game, as its owner holds it.
    let stored = redis.get(&format!("game_state:{}", ann.game_id)).unwrap();
    let stored: Value = serde_json::from_str(&stored).unwrap();
    let game = servers[1].api().game(&ann.game_id).await;
    assert_eq!(scores_of(&stored), scores_of(&game));
    assert_eq!(scores_of(&stored)[&ann.robot_id], PRESSES as u64 / 2);
    for key in ["version", "state", "winning_score", "leaderboard", "winner"] {
        assert_eq!(stored[key], game[key], "{key}");
    }
    assert_eq!(stored["applied"].as_array().map(Vec::len), Some(2));
}
