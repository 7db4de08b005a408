//! Presence: reports, expiry, host hand-over, removals, arrivals.

use super::*;
use crate::game::{GameConfig, PlayerName};

fn timing() -> PresenceTiming {
    PresenceTiming::new(Duration::from_secs(10), Duration::from_secs(30))
}

fn game(players: usize) -> Game {
    let name = |s: &str| PlayerName::parse(s).unwrap();
    let mut game = Game::new("g".into(), GameConfig::default(), "r0".into(), name("a"));
    for i in 1..players {
        game.join(format!("r{i}"), name("b")).unwrap();
    }
    game
}

fn connected(game: &Game) -> Vec<bool> {
    game.robots.iter().map(|r| r.connected).collect()
}

#[test]
fn local_and_reported_sockets_both_count_until_a_report_expires() {
    let t = timing();
    let start = Instant::now();
    let mut g = game(3);
    let mut tracker = Tracker::taking_over(&g, start, &t);
    // Within the first expiry nobody is marked away on a new owner.
    assert!(!tracker.apply(&mut g, &[], start, &t).any());
    tracker.report("n2/a", 1, vec!["r1".into()], &[], start);
    let later = start + t.expiry;
    let changes = tracker.apply(&mut g, &["r0"], later - Duration::from_millis(1), &t);
    assert_eq!(changes.away, Vec::<String>::new());
    let changes = tracker.apply(&mut g, &["r0"], later, &t);
    assert_eq!(changes.away, vec!["r1".to_string(), "r2".into()]);
    assert_eq!(connected(&g), [true, false, false]);
    // A fresh report brings r1 back; an older one from the same process is ignored.
    tracker.report("n2/a", 3, vec!["r1".into()], &[], later);
    tracker.report("n2/a", 2, vec![], &[], later);
    let changes = tracker.apply(&mut g, &["r0"], later, &t);
    assert_eq!(changes.back, vec!["r1".to_string()]);
    assert_eq!(tracker.next_check(&g, &t), Some(later + t.expiry));
}

#[test]
fn the_admin_away_hands_over_and_away_robots_leave_setup() {
    let t = timing();
    let start = Instant::now();
    let mut g = game(3);
    let mut tracker = Tracker::default();
    tracker.apply(&mut g, &["r1", "r2"], start, &t);
    assert_eq!(connected(&g), [false, true, true]);
    assert_eq!(tracker.next_check(&g, &t), Some(start + t.handover));
    let changes = tracker.apply(&mut g, &["r1"], start + t.handover, &t);
    assert_eq!(changes.new_admin.as_deref(), Some("r1"));
    assert_eq!(changes.away, vec!["r2".to_string()]);
    assert!(g.robots[1].admin);
    // r0 goes 30 s after it went away; r2 30 s after it did.
    let changes = tracker.apply(&mut g, &["r1"], start + t.remove, &t);
    assert_eq!(changes.removed, vec!["r0".to_string()]);
    let ids: Vec<_> = g.robots.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["r1", "r2"]);
    let at = start + t.handover + t.remove;
    assert_eq!(tracker.next_check(&g, &t), Some(at));
    tracker.apply(&mut g, &["r1"], at, &t);
    assert_eq!(g.robots.len(), 1);
    // The last robot stays, away or not.
    tracker.apply(&mut g, &[], at + t.remove * 2, &t);
    assert_eq!(g.robots.len(), 1);
}

#[test]
fn reports_stand_while_redis_is_unreachable() {
    let t = timing();
    let start = Instant::now();
    let mut g = game(2);
    let mut tracker = Tracker::default();
    tracker.report("n2/a", 1, vec!["r1".into()], &[], start);
    tracker.apply(&mut g, &["r0"], start, &t);
    // Redis down for a minute: the report is held, nobody goes away.
    for s in 1..=60 {
        let now = start + Duration::from_secs(s);
        tracker.hold_reports(now);
        assert!(!tracker.apply(&mut g, &["r0"], now, &t).any(), "at {s} s");
    }
    // Back, and no fresh report: it expires as usual.
    let changes = tracker.apply(&mut g, &["r0"], start + Duration::from_secs(70), &t);
    assert_eq!(changes.away, vec!["r1".to_string()]);
}

#[test]
fn robots_away_mid_round_stay() {
    let t = timing();
    let start = Instant::now();
    let mut g = game(2);
    g.start_countdown("r0").unwrap();
    let mut tracker = Tracker::default();
    tracker.apply(&mut g, &["r0"], start, &t);
    tracker.apply(&mut g, &["r0"], start + t.remove * 3, &t);
    assert_eq!(connected(&g), [true, false]);
    assert_eq!(g.robots.len(), 2);
}

#[test]
fn a_socket_that_opened_ends_the_wait_for_its_player_however_soon_it_closed() {
    let t = timing();
    let start = Instant::now();
    let mut g = game(4);
    let mut tracker = Tracker::default();
    for id in ["r1", "r2", "r3"] {
        tracker.joined(id, start, &t);
    }
    // Nobody's socket seen yet: all kept connected, their players on the way.
    assert!(!tracker.apply(&mut g, &["r0"], start, &t).any());
    // r1's socket opened and closed here, r2's on n2, both before any snapshot listed
    // them; r3's on n3, listed by a report that came after a newer one.
    tracker.arrived(&["r1".to_string()]);
    tracker.report("n2/a", 1, vec![], &["r2".into()], start);
    tracker.report("n3/a", 2, vec![], &[], start);
    tracker.report("n3/a", 1, vec!["r3".into()], &[], start);
    let changes = tracker.apply(&mut g, &["r0"], start, &t);
    assert_eq!(changes.away, ["r1", "r2", "r3"]);
}

#[test]
fn reporters_send_changes_new_owners_and_refreshes_only() {
    let t = timing();
    let start = Instant::now();
    let mut r = Reporter::default();
    let report = |robots: &[&str], arrived: &[&str]| {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Some(Report {
            robots: strings(robots),
            arrived: strings(arrived),
        })
    };
    assert_eq!(r.due("n1", vec![], start, &t), None);
    assert_eq!(
        r.due("n1", vec!["b".into(), "a".into(), "a".into()], start, &t),
        report(&["a", "b"], &[])
    );
    assert_eq!(r.due("n1", vec!["a".into(), "b".into()], start, &t), None);
    assert_eq!(r.next_refresh(&t), Some(start + t.refresh));
    let due = r.due("n1", vec!["a".into(), "b".into()], start + t.refresh, &t);
    assert_eq!(due, report(&["a", "b"], &[]), "a refresh");
    let due = r.due("n3", vec!["a".into(), "b".into()], start + t.refresh, &t);
    assert_eq!(due, report(&["a", "b"], &[]), "a new owner hears at once");
    assert_eq!(r.due("n3", vec![], start + t.refresh, &t), report(&[], &[]));
    assert_eq!(r.next_refresh(&t), None, "nothing to refresh");
    assert_eq!(r.due("n3", vec![], start + t.refresh * 5, &t), None);
    // A socket that opened and closed since: said, though the set is the same. One still
    // open is in the snapshot.
    r.arrived(vec!["e".into()]);
    let due = r.due("n3", vec!["e".into()], start + t.refresh * 5, &t);
    assert_eq!(due, report(&["e"], &[]));
    assert_eq!(
        r.due("n3", vec![], start + t.refresh * 5, &t),
        report(&[], &[])
    );
    r.arrived(vec!["c".into(), "c".into()]);
    let due = r.due("n3", vec![], start + t.refresh * 5, &t);
    assert_eq!(due, report(&[], &["c"]));
    assert_eq!(r.due("n3", vec![], start + t.refresh * 5, &t), None);
    // A report that could not be sent goes again, even an empty one, with its arrivals.
    r.forget_owner(report(&[], &["d"]).unwrap());
    let due = r.due("n3", vec![], start + t.refresh * 5, &t);
    assert_eq!(due, report(&[], &["d"]));
    assert_eq!(r.due("n3", vec![], start + t.refresh * 6, &t), None);
}

#[test]
fn players_are_counted_per_server_once_each() {
    let mut tracker = Tracker::default();
    let now = Instant::now();
    let robots = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // Two processes of one server (a restart), and a node id with a slash in it.
    tracker.report("n2/a", 1, robots(&["r1", "r2"]), &[], now);
    tracker.report("n2/b", 2, robots(&["r2", "r3"]), &[], now);
    tracker.report("x/y/c", 3, robots(&["r4"]), &[], now);
    let by = tracker.players_by_server();
    assert_eq!(by.get("n2"), Some(&3));
    assert_eq!(by.get("x/y"), Some(&1));
    assert_eq!(by.len(), 2);
}
