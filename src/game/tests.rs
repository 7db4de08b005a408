//! The rules' unit and property tests.

use super::*;
use proptest::prelude::*;

fn name(s: &str) -> PlayerName {
    PlayerName::parse(s).unwrap()
}

fn game_with(players: usize, config: GameConfig) -> Game {
    let mut game = Game::new("g".into(), config, "r0".into(), name("ann"));
    for i in 1..players {
        game.join(format!("r{i}"), name(&format!("p{i}"))).unwrap();
    }
    game
}

fn playing(players: usize, winning_score: u32) -> Game {
    let mut game = game_with(
        players,
        GameConfig {
            winning_score,
            countdown: 0,
        },
    );
    assert_eq!(game.start_countdown("r0"), Ok(Step::Started));
    game
}

#[test]
fn names_count_as_people_count_and_refuse_hidden_characters() {
    // Four emoji (one with a skin tone, one a family joined by zero-width joiners) are 4, in
    // 34 bytes; eight such are 8, but over 40 bytes.
    assert!(PlayerName::parse("😀👍🏽👨‍👩‍👧🎉").is_ok());
    assert_eq!(
        PlayerName::parse("😀👍🏽👨‍👩‍👧🎉🚀🔥✨🤖"),
        Err(RuleError::InvalidName(NameRule::TooManyBytes))
    );
    assert_eq!(
        PlayerName::parse("😀😀😀😀😀😀😀😀😀😀😀"),
        Err(RuleError::InvalidName(NameRule::TooLong))
    );
    assert!(PlayerName::parse("é\u{301}é\u{301}é\u{301}é\u{301}é\u{301}").is_ok());
    // Two marks on a letter (Vietnamese "ệ" spelt out) are fine; a stack of 60 is not.
    assert!(PlayerName::parse("Nge\u{323}\u{302}").is_ok());
    let zalgo = format!("a{}", "\u{301}".repeat(60));
    assert_eq!(
        PlayerName::parse(&zalgo),
        Err(RuleError::InvalidName(NameRule::StackedMarks))
    );
    assert_eq!(
        PlayerName::parse("a\u{301}\u{302}\u{303}"),
        Err(RuleError::InvalidName(NameRule::StackedMarks))
    );
    for bad in [
        "\u{202E}evil",
        "a\u{2066}b\u{2069}",
        "zero\u{200B}width",
        "\u{200D}",
        "x\u{FEFF}",
        "\u{200E}ann",
    ] {
        assert_eq!(
            PlayerName::parse(bad),
            Err(RuleError::InvalidName(NameRule::Hidden)),
            "{bad:?}"
        );
    }
}

#[test]
fn names_are_trimmed_and_bounded() {
    assert_eq!(name("  ann  ").as_str(), "ann");
    assert_eq!(name("ÅÅÅÅÅÅÅÅÅÅ").as_str().chars().count(), 10);
    assert_eq!(name("<b>x</b>").as_str(), "<b>x</b>");
    for (bad, rule) in [
        ("", NameRule::Empty),
        ("   ", NameRule::Empty),
        ("elevenchars", NameRule::TooLong),
        ("a\u{0}b", NameRule::Hidden),
        ("a\nb", NameRule::Hidden),
        ("tab\there", NameRule::Hidden),
    ] {
        assert_eq!(
            PlayerName::parse(bad),
            Err(RuleError::InvalidName(rule)),
            "{bad:?}"
        );
    }
}

#[test]
fn config_defaults_and_bounds() {
    assert_eq!(GameConfig::parse(None, None), Ok(GameConfig::default()));
    assert_eq!(
        GameConfig::parse(Some(5), Some(0)),
        Ok(GameConfig {
            winning_score: 5,
            countdown: 0
        })
    );
    for (w, c) in [
        (Some(4), None),
        (Some(1001), None),
        (None, Some(11)),
        (None, Some(-1)),
    ] {
        assert_eq!(GameConfig::parse(w, c), Err(RuleError::InvalidConfig));
    }
}

#[test]
fn joins_only_in_setup_and_up_to_ten() {
    let mut game = game_with(10, GameConfig::default());
    assert_eq!(game.join("x".into(), name("x")), Err(RuleError::GameFull));
    let mut game2 = game_with(2, GameConfig::default());
    game2.start_countdown("r0").unwrap();
    assert_eq!(
        game2.join("x".into(), name("x")),
        Err(RuleError::GameInProgress)
    );
    // A retried join of a robot already in is a no-op, not a second lane.
    let version = game.version;
    assert_eq!(game.join("r3".into(), name("p3")), Ok(()));
    assert_eq!((game.robots.len(), game.version), (10, version));
}

#[test]
fn only_the_admin_starts_and_needs_two_players() {
    let mut solo = game_with(1, GameConfig::default());
    assert_eq!(solo.start_countdown("r0"), Err(RuleError::NotEnoughPlayers));
    let mut game = game_with(2, GameConfig::default());
    assert_eq!(game.start_countdown("r1"), Err(RuleError::PermissionDenied));
    assert_eq!(game.start_countdown("nobody"), Err(RuleError::UnknownRobot));
    assert_eq!(game.state, State::Setup);
    assert_eq!(game.start_countdown("r0"), Ok(Step::Counting));
    assert_eq!(game.start_countdown("r0"), Err(RuleError::InvalidState));
}

#[test]
fn countdown_runs_3_2_1_go() {
    let mut game = game_with(2, GameConfig::default());
    game.start_countdown("r0").unwrap();
    let mut seen = vec![(game.state, game.countdown)];
    while game.state == State::CountingDown {
        game.countdown_step();
        seen.push((game.state, game.countdown));
    }
    assert_eq!(
        seen,
        [
            (State::CountingDown, 3),
            (State::CountingDown, 2),
            (State::CountingDown, 1),
            (State::Playing, 0)
        ]
    );
    assert_eq!(game.countdown_step(), Step::Ignored);
}

#[test]
fn presses_outside_playing_change_nothing() {
    let mut game = game_with(2, GameConfig::default());
    let before = game.clone();
    assert!(!game.score_point("r0"));
    game.start_countdown("r0").unwrap();
    let counting = game.clone();
    assert!(!game.score_point("r1"));
    assert_eq!(game, counting);
    assert_ne!(game, before);
}

#[test]
fn first_to_winning_score_wins_and_play_again_banks_it() {
    let mut game = playing(3, 5);
    for _ in 0..4 {
        game.score_point("r1");
        game.score_point("r2");
    }
    assert!(game.score_point("r2"));
    assert_eq!(game.state, State::Finished);
    assert_eq!(game.winner.as_deref(), Some("r2"));
    assert!(!game.score_point("r1"));
    assert_eq!(game.leaderboard()[0].robot_id, "r2");
    assert_eq!(game.leaderboard()[0].wins, 1);
    assert_eq!(game.play_again("r1"), Err(RuleError::PermissionDenied));
    game.play_again("r0").unwrap();
    assert_eq!(game.state, State::Setup);
    assert!(game.robots.iter().all(|r| r.score == 0));
    assert_eq!(game.winner, None);
    assert_eq!(game.leaderboard()[0].wins, 1);
    assert_eq!(game.play_again("r0"), Err(RuleError::InvalidState));
}

#[test]
fn stored_json_round_trips_and_shows_the_view() {
    let mut game = playing(2, 5);
    game.score_point("r1");
    let json = game.stored_json();
    let back: Game = serde_json::from_str(&json).unwrap();
    assert_eq!(back, game);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["state"], "playing");
    assert_eq!(value["leaderboard"][0]["wins"], 0);
    assert_eq!(value["robots"][1]["score"], 1);
}

#[test]
fn numbered_commands_apply_once_and_in_order() {
    let mut applied = Applied::default();
    // A new origin's first command overtaken by its second: the second waits.
    assert_eq!(applied.admit("a", 2, 0), Admit::OutOfOrder);
    assert_eq!(applied.last("a"), None);
    assert_eq!(applied.admit("a", 1, 0), Admit::Apply);
    assert_eq!(applied.admit("a", 1, 0), Admit::Repeat);
    assert_eq!(applied.admit("a", 3, 0), Admit::OutOfOrder);
    assert_eq!(applied.admit("a", 2, 0), Admit::Apply);
    assert_eq!(applied.admit("a", 3, 0), Admit::Apply);
    // An origin whose first six were acknowledged by a state this game no longer holds (an
    // older copy restored) starts after them; a record behind the sender's word catches up.
    assert_eq!(applied.admit("b", 8, 6), Admit::OutOfOrder);
    assert_eq!(applied.admit("b", 6, 6), Admit::Repeat);
    assert_eq!(applied.admit("b", 7, 6), Admit::Apply);
    assert_eq!(applied.admit("a", 6, 5), Admit::Apply);
    assert_eq!((applied.last("a"), applied.last("b")), (Some(6), Some(7)));
    for i in 0..MAX_ORIGINS {
        applied.admit(&format!("o{i}"), 1, 0);
    }
    assert_eq!(
        applied.last("a"),
        None,
        "the least recent origin is forgotten"
    );
    assert_eq!(applied.last("o0"), Some(1));
}

#[test]
fn start_counts_connected_robots_only() {
    let mut game = game_with(3, GameConfig::default());
    assert!(game.set_connected("r1", false));
    assert!(game.set_connected("r2", false));
    assert!(!game.set_connected("r2", false), "no change, no version");
    assert_eq!(game.start_countdown("r0"), Err(RuleError::NotEnoughPlayers));
    assert!(game.set_connected("r2", true));
    assert_eq!(game.start_countdown("r0"), Ok(Step::Counting));
    let view = serde_json::to_value(game.view()).unwrap();
    assert_eq!(view["robots"][1]["connected"], false);
    assert_eq!(view["robots"][2]["connected"], true);
}

#[test]
fn hand_over_goes_to_the_next_connected_robot_in_join_order() {
    let mut game = game_with(4, GameConfig::default());
    game.set_connected("r1", false);
    game.set_connected("r0", false);
    assert_eq!(game.hand_over_admin(), Some("r2".into()));
    assert!(game.robot("r2").unwrap().admin && !game.robot("r0").unwrap().admin);
    // From r2, the next connected after it wraps around past the away ones.
    game.set_connected("r3", false);
    game.set_connected("r0", true);
    assert_eq!(game.hand_over_admin(), Some("r0".into()));
    // Nobody connected to take it: nothing changes.
    for r in ["r0", "r1", "r2", "r3"] {
        game.set_connected(r, false);
    }
    let before = game.clone();
    assert_eq!(game.hand_over_admin(), None);
    assert_eq!(game, before);
}

#[test]
fn leaving_in_setup_removes_the_robot_and_hands_over_the_admin() {
    let mut game = game_with(3, GameConfig::default());
    game.set_connected("r1", false);
    assert_eq!(game.leave("r0"), Ok(Left::Removed));
    let ids: Vec<_> = game.robots.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["r1", "r2"]);
    // r1 is away, so r2 (connected) is the admin now.
    assert!(game.robot("r2").unwrap().admin);
    assert_eq!(game.leave("r9"), Err(RuleError::UnknownRobot));
    assert_eq!(game.leave("r1"), Ok(Left::Removed));
    assert_eq!(game.leave("r2"), Ok(Left::Empty));
    // Whoever joins an empty game leads it.
    game.join("r5".into(), name("eve")).unwrap();
    assert!(game.robot("r5").unwrap().admin);
}

#[test]
fn leaving_mid_round_keeps_the_lane_away_until_play_again() {
    let mut game = playing(3, 5);
    game.score_point("r1");
    assert_eq!(game.leave("r1"), Ok(Left::Away));
    let r1 = game.robot("r1").unwrap();
    assert!(r1.left && !r1.connected && r1.score == 1);
    assert!(
        !game.set_connected("r1", true),
        "a robot that left stays away"
    );
    assert!(!game.score_point("r1"), "its presses count no more");
    assert_eq!(game.leave("r0"), Ok(Left::Away));
    assert!(game.robot("r2").unwrap().admin, "the admin left: r2 leads");
    for _ in 0..5 {
        game.score_point("r2");
    }
    game.play_again("r2").unwrap();
    let ids: Vec<_> = game.robots.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["r2"]);
    assert_eq!(game.robots[0].previous_wins, 1);
}

#[test]
fn away_robots_are_removed_only_in_setup() {
    let mut game = playing(3, 5);
    assert!(!game.remove("r1"));
    let mut game = game_with(3, GameConfig::default());
    assert!(game.remove("r0"));
    assert!(game.robot("r1").unwrap().admin);
    assert!(!game.remove("r0"));
}

#[test]
fn stored_games_from_before_presence_load_as_connected() {
    let old = r#"{"id":"g","state":"setup","countdown":0,"countdown_from":3,"winning_score":25,
        "version":3,"robots":[{"id":"r0","name":"ann","score":0,"admin":true}],"winner":null}"#;
    let game: Game = serde_json::from_str(old).unwrap();
    assert!(game.robots[0].connected && !game.robots[0].left);
}

#[derive(Debug, Clone)]
enum Op {
    Join(u8),
    Start(u8),
    Step,
    Press(u8),
    PlayAgain(u8),
    Away(u8),
    Back(u8),
    Leave(u8),
    Remove(u8),
    HandOver,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..12).prop_map(Op::Join),
        (0u8..12).prop_map(Op::Start),
        Just(Op::Step),
        (0u8..12).prop_map(Op::Press),
        (0u8..12).prop_map(Op::Press),
        (0u8..12).prop_map(Op::Press),
        (0u8..12).prop_map(Op::PlayAgain),
        (0u8..12).prop_map(Op::Away),
        (0u8..12).prop_map(Op::Back),
        (0u8..12).prop_map(Op::Leave),
        (0u8..12).prop_map(Op::Remove),
        Just(Op::HandOver),
    ]
}

proptest! {
    /// Whatever players do, in any order: scores never pass the winning score, a finished
    /// round has exactly one winner at the winning score, versions only rise, joins happen
    /// only in setup, and the win tally equals the rounds played.
    #[test]
    fn invariants_hold_under_any_sequence(
        ops in proptest::collection::vec(op(), 0..400),
        winning_score in 5u32..8,
    ) {
        let mut game = Game::new(
            "g".into(),
            GameConfig { winning_score, countdown: 2 },
            "r0".into(),
            name("ann"),
        );
        let mut rounds_won = 0u32;
        for op in ops {
            let before = game.clone();
            match op {
                Op::Join(i) => {
                    let joined = game.join(format!("r{i}"), name("x")).is_ok()
                        && game.robots.len() > before.robots.len();
                    prop_assert!(!joined || before.state == State::Setup);
                }
                Op::Start(i) => { let _ = game.start_countdown(&format!("r{i}")); }
                Op::Step => { game.countdown_step(); }
                Op::Press(i) => {
                    if game.score_point(&format!("r{i}")) && game.state == State::Finished {
                        rounds_won += 1;
                    }
                }
                Op::PlayAgain(i) => {
                    // Robots that left go at play again, their wins with them.
                    let gone: u32 = game
                        .leaderboard()
                        .iter()
                        .filter(|e| game.robot(e.robot_id).is_some_and(|r| r.left))
                        .map(|e| e.wins)
                        .sum();
                    if game.play_again(&format!("r{i}")).is_ok() {
                        rounds_won -= gone;
                    }
                }
                Op::Away(i) => { game.set_connected(&format!("r{i}"), false); }
                Op::Back(i) => { game.set_connected(&format!("r{i}"), true); }
                Op::Leave(i) | Op::Remove(i) => {
                    let id = format!("r{i}");
                    let wins = game.leaderboard().iter().find(|e| e.robot_id == id).map_or(0, |e| e.wins);
                    let removed = match op {
                        Op::Leave(_) => game.leave(&id).is_ok_and(|l| l != Left::Away),
                        _ => game.remove(&id),
                    };
                    if removed {
                        prop_assert_eq!(before.state, State::Setup);
                        rounds_won -= wins;
                    }
                }
                Op::HandOver => {
                    if let Some(to) = game.hand_over_admin() {
                        prop_assert!(game.robot(&to).is_some_and(|r| r.connected));
                    }
                }
            }
            prop_assert!(game.version >= before.version);
            prop_assert!(game.version <= before.version + 1);
            prop_assert_eq!(game.version == before.version, game == before);
            prop_assert!(game.robots.len() <= MAX_PLAYERS);
            prop_assert!(game.robots.iter().all(|r| r.score <= winning_score));
            let admins = game.robots.iter().filter(|r| r.admin).count();
            prop_assert_eq!(admins, usize::from(!game.robots.is_empty()));
            prop_assert!(game.robots.iter().all(|r| !r.left || !r.connected));
            prop_assert!(game.robots.iter().all(|r| !r.left || game.state != State::Setup));
            let at_top = game.robots.iter().filter(|r| r.score == winning_score).count();
            if game.state == State::Finished {
                prop_assert_eq!(at_top, 1);
                let winner = game.winner.as_deref().and_then(|w| game.robot(w));
                prop_assert_eq!(winner.map(|r| r.score), Some(winning_score));
            } else {
                prop_assert_eq!(at_top, 0);
                prop_assert!(game.winner.is_none());
            }
            let tally: u32 = game.leaderboard().iter().map(|e| e.wins).sum();
            prop_assert_eq!(tally, rounds_won);
        }
    }
}

#[test]
fn leaderboard_ties_list_this_rounds_winner_first_then_join_order() {
    // Round 1: r0 wins. Round 2: r2 wins. r0 and r2 both have 1 win; r2 is this round's.
    let mut game = playing(3, 1);
    assert!(game.score_point("r0"));
    game.play_again("r0").unwrap();
    game.start_countdown("r0").unwrap();
    assert!(game.score_point("r2"));
    let order: Vec<(&str, u32)> = game
        .leaderboard()
        .iter()
        .map(|e| (e.robot_id, e.wins))
        .collect();
    assert_eq!(order, [("r2", 1), ("r0", 1), ("r1", 0)]);
    // Once banked (play again, no winner yet), equal wins keep join order.
    game.play_again("r0").unwrap();
    let order: Vec<&str> = game.leaderboard().iter().map(|e| e.robot_id).collect();
    assert_eq!(order, ["r0", "r2", "r1"]);
}
