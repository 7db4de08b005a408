//! The nemesis's players: a few games, each with players on every server, pressing at a human
//! pace through every fault, and what a killed server may have taken with their sockets.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use super::cluster::Cluster;
use crate::helpers::*;

/// A game of `per_server` players on each server of `cluster`, created on `servers[creator]`
/// (so that server owns it at first), winning score 1000, countdown 0; started, every player
/// seeing `playing`. Player `g<game>p<k>` connects first to server `(creator + k / per_server)
/// % n`, and knows every server.
async fn seat_game(
    cluster: &Cluster,
    game: usize,
    creator: usize,
    per_server: usize,
) -> Vec<RacingPlayer> {
    let n = cluster.servers.len();
    let refs: Vec<&Server> = (0..n).map(|i| cluster.server(i)).collect();
    let home = |k: usize| (creator + k / per_server) % n;
    let name = |k: usize| format!("g{game}p{k}");
    let admin = refs[creator].api().create(&name(0), 1000, 0).await;
    let mut joined = vec![admin.clone()];
    for k in 1..per_server * n {
        joined.push(refs[home(k)].api().join(&admin.game_id, &name(k)).await);
    }
    let mut players = Vec::new();
    for (k, j) in joined.into_iter().enumerate() {
        let mut p = RacingPlayer::new(&name(k), j, &refs, home(k));
        assert!(
            p.connect().await,
            "{} could not connect: {:?}",
            p.name,
            p.events
        );
        assert_eq!(p.server, home(k), "{}: {:?}", p.name, p.events);
        players.push(p);
    }
    assert_eq!(players.len(), per_server * n);
    crate::faults::start_all(&mut players).await;
    players
}

/// `games` games, game `g` created on server `g % n`, each with `per_server` players on every
/// server, all playing.
pub(super) async fn seat(
    cluster: &Cluster,
    games: usize,
    per_server: usize,
) -> Vec<Vec<RacingPlayer>> {
    let n = cluster.servers.len();
    let mut seated = Vec::new();
    for g in 0..games {
        seated.push(seat_game(cluster, g, g % n, per_server).await);
    }
    seated
}

/// `rate_limited` answers received.
fn rate_limited(p: &RacingPlayer) -> u64 {
    p.errors.get("rate_limited").copied().unwrap_or(0)
}

/// Presses answered with an error: a `rate_limited` answer counts for as many as it says were
/// dropped.
pub(super) fn refused(p: &RacingPlayer) -> u64 {
    p.error_count() - rate_limited(p) + p.rate_limited_dropped
}

/// Presses answered, by a rise of the player's robot or an error (a `rate_limited` answer for
/// as many as it says were dropped).
pub(super) fn answered(p: &RacingPlayer) -> u64 {
    p.answered_in.len() as u64 + p.rate_limited_dropped.saturating_sub(rate_limited(p))
}

/// Presses not answered yet: those still on their way, and those lost.
fn unanswered(p: &RacingPlayer) -> u64 {
    p.sent.saturating_sub(answered(p))
}

/// Whether `server` was killed at or after `since`.
fn killed_since(cluster: &RefCell<Cluster>, server: usize, since: Instant) -> bool {
    cluster.borrow().kills[server].iter().any(|k| *k >= since)
}

/// Presses once every `every` (the first after `offset`) while `pressing` is set and before
/// `limit`, reading between presses, moving to the next server whenever its socket closes.
///
/// Presses in flight on a socket whose server is killed may be lost unanswered (the socket is
/// the answer). Returns how many that could be: the presses not answered when it last found
/// its socket gone after a kill of its server. (Every press lost stays unanswered for good, so
/// this counts the earlier ones too.)
pub(super) async fn press_through(
    p: &mut RacingPlayer,
    every: Duration,
    offset: Duration,
    pressing: &Cell<bool>,
    cluster: &RefCell<Cluster>,
    limit: Instant,
) -> u64 {
    // The server it is on, and since when.
    let mut on = Some((p.server, Instant::now()));
    let mut may_have_lost = 0;
    let mut next_press = Instant::now() + offset;
    while pressing.get() && Instant::now() < limit {
        if !p.is_connected() {
            if let Some((server, since)) = on.take() {
                if killed_since(cluster, server, since) {
                    may_have_lost = unanswered(p);
                }
            }
            let trying_since = Instant::now();
            if p.reconnect().await {
                on = Some((p.server, trying_since));
            } else {
                actix_rt::time::sleep(Duration::from_millis(100)).await;
            }
            continue;
        }
        let now = Instant::now();
        if now >= next_press {
            p.press().await;
            // Steady pace; after a stall, go on from now rather than catch up in a burst.
            next_press = (next_press + every).max(now + every / 2);
        } else {
            p.read_until(next_press.min(limit)).await;
        }
    }
    if let Some((server, since)) = on {
        if !p.is_connected() && killed_since(cluster, server, since) {
            may_have_lost = unanswered(p);
        }
    }
    may_have_lost
}
