//! A sick Redis, each server reaching it through a proxy the test owns, with six players racing
//! on three servers: Redis cut off (a pulled cable: no byte either way, nothing closed), the
//! owner alone cut off, slow (150 ms added each way), out of memory (`noeviction`, writes
//! refused). One version is one state on every screen, no
//! score goes back on a screen, every press is applied exactly once or answered with an error,
//! and play resumes once Redis is well.

use std::cell::Cell;
use std::time::{Duration, Instant};

use super::judge::{
    agreement, notable_logs, presses_not_accounted_for, report, scores_that_went_down,
    versions_with_two_states,
};
use super::{node_at, race_all_through, six_players_racing, LEASE_MS, PRESS_EVERY};
use crate::helpers::*;

/// What happens to Redis for a while.
#[derive(Debug, Clone, Copy)]
enum Sickness {
    /// The network to Redis cut for four leases, for every server.
    Cut,
    /// The owner's network to Redis cut for four leases: the others take the game over.
    CutOwner,
    /// 150 ms added each way for ten leases.
    Slow,
    /// Out of memory for six seconds (`maxmemory` below what it holds): writes refused.
    Full,
}

/// Every press answered within this long (when the servers can reach Redis at all).
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

fn config_set(redis: &Redis, key: &str, value: &str) {
    let mut conn = redis.client().get_connection().unwrap();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg(key)
        .arg(value)
        .exec(&mut conn)
        .unwrap();
}

fn used_memory(redis: &Redis) -> u64 {
    let mut conn = redis.client().get_connection().unwrap();
    let info: String = redis::cmd("INFO").arg("memory").query(&mut conn).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO memory")
}

async fn race_through(sickness: Sickness) {
    let redis = Redis::start();
    let proxies: Vec<Proxy> = (0..3).map(|_| Proxy::start(redis.port)).collect();
    let servers: Vec<Server> = proxies
        .iter()
        .enumerate()
        .map(|(i, proxy)| node_at(&proxy.addr(), &format!("node{i}"), true))
        .collect();
    let set_all = |link: Link| proxies.iter().for_each(|p| p.set(link));
    let mut players = six_players_racing(&servers).await;
    let pressing = Cell::new(true);
    let healthy_at = Cell::new(None);
    let control = async {
        actix_rt::time::sleep(SECS(2)).await;
        match sickness {
            Sickness::Cut => {
                set_all(Link::Hold);
                actix_rt::time::sleep(Duration::from_millis(4 * LEASE_MS)).await;
                set_all(Link::Forward);
            }
            Sickness::CutOwner => {
                // servers[0] created the game: it owns it.
                proxies[0].set(Link::Hold);
                actix_rt::time::sleep(Duration::from_millis(4 * LEASE_MS)).await;
                proxies[0].set(Link::Forward);
            }
            Sickness::Slow => {
                set_all(Link::Delay(Duration::from_millis(150)));
                actix_rt::time::sleep(Duration::from_millis(10 * LEASE_MS)).await;
                set_all(Link::Forward);
            }
            Sickness::Full => {
                config_set(&redis, "maxmemory-policy", "noeviction");
                // Below what it holds: every write that needs memory is refused.
                config_set(&redis, "maxmemory", &(used_memory(&redis) / 2).to_string());
                actix_rt::time::sleep(SECS(6)).await;
                config_set(&redis, "maxmemory", "0");
            }
        }
        healthy_at.set(Some(Instant::now()));
        actix_rt::time::sleep(SECS(4)).await;
        pressing.set(false);
    };
    race_all_through(&mut players, PRESS_EVERY, &pressing, control).await;
    let agreed = settle(&mut players, SECS(20), SECS(5)).await;
    // Play resumed: a press made after Redis was well again was applied within 2 s of it.
    let resumed = healthy_at.get().map(|healthy| {
        players.iter().any(|p| {
            p.drawn
                .iter()
                .any(|d| d.at > healthy && d.at <= healthy + ANSWER_WITHIN && d.state == "playing")
        })
    });
    let (late, never): (usize, usize) = players
        .iter()
        .map(|p| p.answered_late(ANSWER_WITHIN))
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
    let slowest = players
        .iter()
        .flat_map(|p| p.answered_in.iter().copied())
        .max()
        .unwrap_or_default();
    // Cut off, a server cannot learn the fate of a press it already sent to the owner (only
    // the owner knows whether it applied it): such presses are answered when the cable is
    // back, exactly once. Reachable but sick, every press is answered within 2 s.
    let answers = match sickness {
        Sickness::Cut | Sickness::CutOwner => None,
        Sickness::Slow | Sickness::Full => (late + never > 0).then(|| {
            format!(
                "{late} press(es) answered later than {ANSWER_WITHIN:?}, {never} never; \
                 the slowest took {slowest:?}"
            )
        }),
    };
    let unavailable: u64 = players
        .iter()
        .map(|p| p.errors.get("unavailable").copied().unwrap_or(0))
        .sum();
    let answered: usize = players.iter().map(|p| p.answered_in.len()).sum();
    eprintln!(
        "Redis {sickness:?}: {answered} presses answered, {unavailable} unavailable, \
         {late} later than {ANSWER_WITHIN:?}, {never} never; slowest {slowest:?}"
    );
    // The sickness did reach the players: presses waited (slow), or were refused (cut off,
    // out of memory).
    let felt = match sickness {
        Sickness::Slow => slowest >= Duration::from_millis(300),
        Sickness::Cut | Sickness::CutOwner | Sickness::Full => unavailable > 0,
    };
    let failures: Vec<String> = [
        agreement(&players, &agreed),
        scores_that_went_down(&players),
        versions_with_two_states(&players),
        presses_not_accounted_for(&players, &agreed),
        answers,
        (resumed != Some(true)).then(|| "play did not resume within 2 s".to_owned()),
        (!felt).then(|| "the players never felt it: the test did not make Redis sick".to_owned()),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(
        failures.is_empty(),
        "Redis {sickness:?} (lease {LEASE_MS} ms; slowest answer {slowest:?}):\n{}\n{}{}",
        failures.join("\n"),
        report(&players),
        notable_logs(&servers)
    );
}

#[actix_rt::test]
async fn redis_cut_off_forks_no_version_and_loses_no_press() {
    race_through(Sickness::Cut).await;
}

#[actix_rt::test]
async fn an_owner_cut_off_from_redis_forks_no_version_and_loses_no_press() {
    race_through(Sickness::CutOwner).await;
}

#[actix_rt::test]
async fn a_slow_redis_answers_every_press_within_two_seconds() {
    race_through(Sickness::Slow).await;
}

#[actix_rt::test]
async fn redis_out_of_memory_answers_every_press_and_loses_none() {
    race_through(Sickness::Full).await;
}
