//! The scripts on a real `redis-server`: the owner's whole game is stored as it is, fenced on
//! its claim (a write from an earlier claim, the same server's or another's, from a claim
//! Redis forgot that shares its epoch number, or to a game nobody claimed changes nothing; a
//! late retry never replaces a newer version); a claim's fence is its own; an ended game stays
//! ended. And what a press costs Redis
//! with real servers: one fenced save, no read of the stored game.

use std::time::Duration;

use robot_race::bus::redis::{Names, Scripts, STATE_TTL_SECS};
use robot_race::game::{Applied, Game, GameConfig, PlayerName, Robot, State};
use robot_race::node::wire::scores_message;
use serde_json::{json, Value};

use crate::helpers::*;

const OWNER: &str = "game_owner:g1";
const STATE: &str = "game_state:g1";
const EPOCH: &str = "game_epoch:g1";
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
        game.applied.admit(origin, 1, 0);
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
fn a_save_stores_the_owners_whole_game_and_is_fenced() {
    let redis = Redis::start();
    let client = redis.client();
    let mut conn = client.get_connection().unwrap();
    let mut listen = client.get_connection().unwrap();
    let mut sub = listen.as_pubsub();
    sub.subscribe(CHANNEL).unwrap();
    sub.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let scripts = Scripts::new(Names { tagged: false });
    let game = adversarial_game();
    let full = game.stored_json();
    let msg = scores_message("n1", &game, Some(40));
    let save = |fence: &str, version: u64, conn: &mut redis::Connection| -> i64 {
        scripts
            .save
            .key(EPOCH)
            .key(STATE)
            .arg(fence)
            .arg(&full)
            .arg(CHANNEL)
            .arg(&msg)
            .arg(STATE_TTL_SECS)
            .arg(version)
            .invoke(conn)
            .unwrap()
    };
    // The owner's lease, which saves leave alone.
    redis::cmd("SET")
        .arg(OWNER)
        .arg("n1")
        .exec(&mut conn)
        .unwrap();
    assert_eq!(save("7:aa", 41, &mut conn), 2, "nobody claimed it yet");
    assert_eq!(get(&mut conn, STATE), None);
    // Claimed since under a later epoch (by another server, or by the same one again: this
    // write is from an earlier ownership, arriving late): refused.
    let claim = |held: &str, conn: &mut redis::Connection| {
        redis::cmd("SET").arg(EPOCH).arg(held).exec(conn).unwrap()
    };
    claim("8:bb 0", &mut conn);
    assert_eq!(save("7:aa", 41, &mut conn), 0, "an earlier epoch");
    // The same epoch given again by a Redis that forgot the claim, to another claim: its
    // token differs, and the earlier claim's save is refused.
    claim("7:cc 0", &mut conn);
    assert_eq!(
        save("7:aa", 41, &mut conn),
        0,
        "the same epoch, another claim"
    );
    assert_eq!(get(&mut conn, STATE), None);
    claim("7:aa 0", &mut conn);
    assert_eq!(save("7:aa", 41, &mut conn), 1);
    // Stored as the owner holds it, byte for byte, whatever the robots are named; the lease
    // is left alone (renewals are batched apart).
    let stored = get(&mut conn, STATE).unwrap();
    assert_eq!(stored, full);
    assert_eq!(serde_json::from_str::<Game>(&stored).unwrap(), game);
    assert!(pttl(&mut conn, STATE) > 0);
    assert_eq!(pttl(&mut conn, OWNER), -1);
    assert_eq!(get(&mut conn, EPOCH).as_deref(), Some("7:aa 41"));
    // Only the good save was published, and it is the message itself.
    let heard: String = sub.get_message().unwrap().get_payload().unwrap();
    assert_eq!(heard, msg);
    // A late retry of an earlier save under the same claim (or the same one twice) changes
    // nothing and publishes nothing: Redis keeps the newer version.
    redis::cmd("SET")
        .arg(STATE)
        .arg("newer")
        .exec(&mut conn)
        .unwrap();
    claim("7:aa 45", &mut conn);
    assert_eq!(save("7:aa", 41, &mut conn), 1, "a late save is no failure");
    assert_eq!(save("7:aa", 45, &mut conn), 1);
    assert_eq!(get(&mut conn, STATE).as_deref(), Some("newer"));
    assert_eq!(get(&mut conn, EPOCH).as_deref(), Some("7:aa 45"));
    sub.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(sub.get_message().is_err(), "a late save was published");
}

type Conn = redis::Connection;
const RESTORE: &str = "game_restore:g1";
const WINDOW: Duration = Duration::from_millis(300);

/// CLAIM as the bus calls it: (node, fallback JSON, copy version or "" for a new game).
fn claim_with(
    scripts: &Scripts,
    (node, fallback, version): (&str, &str, &str),
    floor: u64,
    token: &str,
    conn: &mut Conn,
) -> (u8, String, u64) {
    scripts
        .claim
        .key(OWNER)
        .key(STATE)
        .key(EPOCH)
        .key(RESTORE)
        .arg(node)
        .arg(60_000)
        .arg(fallback)
        .arg(STATE_TTL_SECS)
        .arg("")
        .arg(floor)
        .arg(token)
        .arg(version)
        .arg(WINDOW.as_millis() as u64)
        .invoke(conn)
        .unwrap()
}

/// Redis lost a game; a server cut off meanwhile offers its older copy first, the latest
/// owner its newer one a moment later: the newer one is restored, under an epoch above both,
/// once the window since the first offer has passed; the older one's server finds it owned.
#[test]
fn a_lost_game_is_restored_from_the_newest_copy_offered() {
    let redis = Redis::start();
    let mut conn = redis.client().get_connection().unwrap();
    let scripts = Scripts::new(Names { tagged: false });
    let (old, new) = (r#"{"v":"old"}"#, r#"{"v":"new"}"#);
    let offer = |node: &str, json: &str, version: u64, conn: &mut Conn| {
        let floor = version / 1_000_000_000 + 1;
        let token = format!("{node}{version}");
        claim_with(
            &scripts,
            (node, json, &version.to_string()),
            floor,
            &token,
            conn,
        )
    };
    let cut_off = (1_000_000_005, 2_000_000_009);
    assert_eq!(offer("a", old, cut_off.0, &mut conn), (4, "a".into(), 0));
    assert_eq!(offer("b", new, cut_off.1, &mut conn), (4, "b".into(), 0));
    assert_eq!(offer("a", old, cut_off.0, &mut conn), (4, "b".into(), 0));
    assert_eq!(
        get(&mut conn, STATE),
        None,
        "restored before the window passed"
    );
    std::thread::sleep(WINDOW);
    assert_eq!(offer("a", old, cut_off.0, &mut conn), (4, "b".into(), 0));
    assert_eq!(offer("b", new, cut_off.1, &mut conn), (1, new.into(), 3));
    assert_eq!(get(&mut conn, STATE).as_deref(), Some(new));
    assert_eq!(get(&mut conn, RESTORE), None);
    assert_eq!(offer("a", old, cut_off.0, &mut conn), (2, "b".into(), 0));
    // The offers of a game are kept ten windows from the first: a best offerer that died
    // does not hold the game up.
    redis::cmd("FLUSHALL").exec(&mut conn).unwrap();
    assert_eq!(offer("b", new, cut_off.1, &mut conn).0, 4);
    assert!(pttl(&mut conn, RESTORE) <= 10 * WINDOW.as_millis() as i64);
}

/// A claim takes an epoch above the one Redis holds and at least the claimant's floor, with
/// its own token; an ended game's tombstone refuses every claim, also one offering a copy, and
/// every save.
#[test]
fn a_claim_takes_a_fence_of_its_own_and_an_ended_game_stays_ended() {
    let redis = Redis::start();
    let mut conn = redis.client().get_connection().unwrap();
    let scripts = Scripts::new(Names { tagged: false });
    let json = adversarial_game().stored_json();
    let claim = |node: &str, fallback: &str, floor: u64, token: &str, conn: &mut Conn| {
        claim_with(&scripts, (node, fallback, ""), floor, token, conn)
    };
    assert_eq!(claim("n1", "", 1, "aa", &mut conn).0, 0, "no such game");
    assert_eq!(claim("n1", &json, 1, "aa", &mut conn), (1, json.clone(), 1));
    assert_eq!(get(&mut conn, EPOCH).as_deref(), Some("1:aa 0"));
    assert_eq!(
        claim("n2", "", 1, "bb", &mut conn).0,
        2,
        "owned by a live n1"
    );
    // n1 claims again: the next epoch, a new token.
    assert_eq!(claim("n1", "", 1, "cc", &mut conn).2, 2);
    // Redis forgets the game; a copy is restored by a server that saw versions of epoch 2:
    // the claim's epoch is above them, never 1 again.
    redis::cmd("FLUSHALL").exec(&mut conn).unwrap();
    assert_eq!(claim("n2", &json, 3, "dd", &mut conn).2, 3);
    assert_eq!(get(&mut conn, EPOCH).as_deref(), Some("3:dd 0"));
    // The end: state and lease gone, the tombstone left for as long as a state lives.
    let ended: i64 = scripts
        .terminate
        .key(OWNER)
        .key(STATE)
        .key(EPOCH)
        .arg("n2")
        .arg(CHANNEL)
        .arg("{}")
        .arg("3:dd")
        .arg(STATE_TTL_SECS)
        .invoke(&mut conn)
        .unwrap();
    assert_eq!(ended, 1);
    assert_eq!(get(&mut conn, STATE), None);
    assert_eq!(get(&mut conn, EPOCH).as_deref(), Some("ended"));
    assert!(pttl(&mut conn, EPOCH) > (STATE_TTL_SECS as i64 - 60) * 1000);
    assert_eq!(
        claim("n3", &json, 4, "ee", &mut conn).0,
        3,
        "an ended game came back"
    );
    assert_eq!(get(&mut conn, STATE), None);
}

/// Calls so far of each Redis command (`INFO commandstats`; scripts' inner calls included).
fn calls(redis: &Redis) -> std::collections::HashMap<String, u64> {
    let mut conn = redis.client().get_connection().unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut conn)
        .unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

#[actix_rt::test]
async fn a_press_costs_redis_one_fenced_save_and_the_stored_game_stays_whole() {
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
    let before = calls(&redis);
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
    // Each press: one save (its claim check is the only GET; it sets the state and the
    // claim's version), and no read of the stored game; a press from the other server adds its
    // forward (PUBLISH). The margin is for the lease renewals meanwhile (a GET each); reading
    // the stored game or renewing the lease in every save would make it 2 GETs.
    let after = calls(&redis);
    let per_press = |cmd: &str| {
        let n = after.get(cmd).copied().unwrap_or(0) - before.get(cmd).copied().unwrap_or(0);
        n as f64 / PRESSES as f64
    };
    for (cmd, most) in [("evalsha", 1.5), ("get", 1.5), ("set", 2.5)] {
        assert!(per_press(cmd) <= most, "{} {cmd} per press", per_press(cmd));
    }
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
