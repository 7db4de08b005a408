//! The rules of Robot Race: plain data and pure functions.
//!
//! Nothing here does I/O, reads a clock or awaits. The hub owns `Game` values and calls these
//! functions; timers (the countdown's one-second steps, idle expiry) live in the hub and call
//! [`Game::countdown_step`]. Every function that changes a game bumps its `version` by exactly 1,
//! so clients and relays can drop anything that is not newer than what they already have.

use serde::{Deserialize, Serialize};

mod applied;
mod name;
mod presence;
mod view;

pub use view::{GameView, LeaderboardEntry, RobotView};

#[cfg(test)]
use applied::MAX_ORIGINS;
pub use applied::{Admit, Applied};
pub use name::{NameRule, PlayerName, MAX_COMBINING_MARKS, MAX_NAME_BYTES};

/// Fewest robots that can race.
pub const MIN_PLAYERS: usize = 2;
/// Most robots in one game (lanes on the track).
pub const MAX_PLAYERS: usize = 10;
/// Score that wins when the creator does not choose one.
pub const DEFAULT_WINNING_SCORE: u32 = 25;
/// Allowed winning scores.
pub const WINNING_SCORE_RANGE: std::ops::RangeInclusive<u32> = 5..=1000;
/// Countdown steps (3, 2, 1, Go) when the creator does not choose.
pub const DEFAULT_COUNTDOWN: u32 = 3;
/// Allowed countdown lengths, in one-second steps.
pub const COUNTDOWN_RANGE: std::ops::RangeInclusive<u32> = 0..=10;
/// Longest name, in characters, after trimming.
pub const MAX_NAME_CHARS: usize = 10;

/// What a creator may choose for a game.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GameConfig {
    pub winning_score: u32,
    pub countdown: u32,
}

impl Default for GameConfig {
    fn default() -> Self {
        GameConfig {
            winning_score: DEFAULT_WINNING_SCORE,
            countdown: DEFAULT_COUNTDOWN,
        }
    }
}

impl GameConfig {
    /// Checks optional choices against the allowed ranges; `None` takes the default.
    pub fn parse(winning_score: Option<i64>, countdown: Option<i64>) -> Result<Self, RuleError> {
        let pick =
            |value: Option<i64>, default: u32, range: std::ops::RangeInclusive<u32>| match value {
                None => Ok(default),
                Some(v) => u32::try_from(v)
                    .ok()
                    .filter(|v| range.contains(v))
                    .ok_or(RuleError::InvalidConfig),
            };
        Ok(GameConfig {
            winning_score: pick(winning_score, DEFAULT_WINNING_SCORE, WINNING_SCORE_RANGE)?,
            countdown: pick(countdown, DEFAULT_COUNTDOWN, COUNTDOWN_RANGE)?,
        })
    }
}

/// Why a rule refused a command. Each has a stable wire code (PROTOCOL.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("{0}")]
    InvalidName(NameRule),
    #[error("Winning score must be 5-1000 and countdown 0-10")]
    InvalidConfig,
    #[error("This race has already started")]
    GameInProgress,
    #[error("This game already has 10 players")]
    GameFull,
    #[error("Only the admin can do that")]
    PermissionDenied,
    #[error("At least 2 players are needed to start")]
    NotEnoughPlayers,
    #[error("That can't be done at this point of the game")]
    InvalidState,
    #[error("No such robot in this game")]
    UnknownRobot,
}

impl RuleError {
    pub fn code(self) -> &'static str {
        match self {
            RuleError::InvalidName(_) => "invalid_name",
            RuleError::InvalidConfig => "invalid_config",
            RuleError::GameInProgress => "game_in_progress",
            RuleError::GameFull => "game_full",
            RuleError::PermissionDenied => "permission_denied",
            RuleError::NotEnoughPlayers => "not_enough_players",
            RuleError::InvalidState => "invalid_state",
            RuleError::UnknownRobot => "unknown_robot",
        }
    }
}

/// The phases of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Setup,
    CountingDown,
    Playing,
    Finished,
}

impl State {
    pub const ALL: [State; 4] = [
        State::Setup,
        State::CountingDown,
        State::Playing,
        State::Finished,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Setup => "setup",
            State::CountingDown => "counting_down",
            State::Playing => "playing",
            State::Finished => "finished",
        }
    }
}

/// One player's robot: a lane on the track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Robot {
    pub id: String,
    pub name: String,
    pub score: u32,
    /// The creator (robot 1) is the admin: only it starts the countdown and calls play again.
    pub admin: bool,
    /// Wins from rounds before this one; the current round's win is added on top.
    #[serde(default)]
    pub previous_wins: u32,
    /// A socket of its player is open on some server (PROTOCOL.md, "presence"). The owner
    /// keeps it; a robot that is away is shown dimmed and does not count for `start`.
    #[serde(default = "yes")]
    pub connected: bool,
    /// Its player left this round (`leave` outside `setup`): away until play again removes it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub left: bool,
}

fn yes() -> bool {
    true
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What a `leave` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Left {
    /// The robot is gone (in `setup`); others remain.
    Removed,
    /// The robot stays, away, for the rest of the round.
    Away,
    /// The last robot left: the game has no players.
    Empty,
}

/// A game: everything needed to show it and to resume it on another server.
///
/// Serialised as-is into `game_state:<id>` (with the leaderboard added, see [`Game::stored_json`]).
/// Every save stores the whole JSON: Redis does no work on its text (`SAVE` in
/// `bus::redis::scripts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Game {
    pub id: String,
    pub state: State,
    /// Steps left while counting down; 0 otherwise.
    pub countdown: u32,
    /// The countdown length chosen at creation; play again resets to it.
    pub countdown_from: u32,
    pub winning_score: u32,
    /// Rises by 1 with every change.
    pub version: u64,
    /// Join order: lane order.
    pub robots: Vec<Robot>,
    /// The winning robot's id once finished.
    pub winner: Option<String>,
    /// Which players' commands have been applied, so a command sent again (after a timeout or
    /// a change of owner) is applied once. Not part of what players see.
    #[serde(default)]
    pub applied: Applied,
}

/// What happened to the round after a countdown step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Still counting: schedule another step in a second.
    Counting,
    /// The race is on.
    Started,
    /// Not counting down (a stale timer): nothing changed.
    Ignored,
}

impl Game {
    /// A new game in `setup` with its creator as robot 1 and admin.
    pub fn new(id: String, config: GameConfig, admin_id: String, admin_name: PlayerName) -> Game {
        Game {
            id,
            state: State::Setup,
            countdown: 0,
            countdown_from: config.countdown,
            winning_score: config.winning_score,
            version: 1,
            robots: vec![Robot {
                id: admin_id,
                name: admin_name.into_string(),
                score: 0,
                admin: true,
                previous_wins: 0,
                connected: true,
                left: false,
            }],
            winner: None,
            applied: Applied::default(),
        }
    }

    pub fn robot(&self, robot_id: &str) -> Option<&Robot> {
        self.robots.iter().find(|r| r.id == robot_id)
    }

    fn is_admin(&self, robot_id: &str) -> bool {
        self.robot(robot_id).is_some_and(|r| r.admin)
    }

    /// Adds a robot. Joining again with an id already in the game changes nothing (a retried
    /// join request must not add a second robot).
    pub fn join(&mut self, robot_id: String, name: PlayerName) -> Result<(), RuleError> {
        if self.robot(&robot_id).is_some() {
            return Ok(());
        }
        if self.state != State::Setup {
            return Err(RuleError::GameInProgress);
        }
        if self.robots.len() >= MAX_PLAYERS {
            return Err(RuleError::GameFull);
        }
        // A game whose players all left has no admin: the next one to join is.
        let admin = self.robots.is_empty();
        self.robots.push(Robot {
            id: robot_id,
            name: name.into_string(),
            score: 0,
            admin,
            previous_wins: 0,
            connected: true,
            left: false,
        });
        self.version += 1;
        Ok(())
    }

    /// The admin starts the round: `counting_down` from the configured value, or straight to
    /// `playing` when the countdown is 0. Returns the step so the caller knows to run a timer.
    pub fn start_countdown(&mut self, robot_id: &str) -> Result<Step, RuleError> {
        if self.robot(robot_id).is_none() {
            return Err(RuleError::UnknownRobot);
        }
        if !self.is_admin(robot_id) {
            return Err(RuleError::PermissionDenied);
        }
        if self.state != State::Setup {
            return Err(RuleError::InvalidState);
        }
        // The starter is here, whatever presence has heard so far.
        let here = |r: &&Robot| (r.connected || r.id == robot_id) && !r.left;
        if self.robots.iter().filter(here).count() < MIN_PLAYERS {
            return Err(RuleError::NotEnoughPlayers);
        }
        self.version += 1;
        if self.countdown_from == 0 {
            self.state = State::Playing;
            self.countdown = 0;
            Ok(Step::Started)
        } else {
            self.state = State::CountingDown;
            self.countdown = self.countdown_from;
            Ok(Step::Counting)
        }
    }

    /// One second of countdown has passed.
    pub fn countdown_step(&mut self) -> Step {
        if self.state != State::CountingDown {
            return Step::Ignored;
        }
        self.version += 1;
        self.countdown = self.countdown.saturating_sub(1);
        if self.countdown == 0 {
            self.state = State::Playing;
            Step::Started
        } else {
            Step::Counting
        }
    }

    /// A press. Counts only while `playing`; the first robot to reach the winning score wins and
    /// the round is `finished` at once. Returns whether the game changed.
    pub fn score_point(&mut self, robot_id: &str) -> bool {
        if self.state != State::Playing {
            return false;
        }
        let winning_score = self.winning_score;
        let Some(robot) = self.robots.iter_mut().find(|r| r.id == robot_id && !r.left) else {
            return false;
        };
        robot.score += 1;
        if robot.score >= winning_score {
            self.winner = Some(robot.id.clone());
            self.state = State::Finished;
        }
        self.version += 1;
        true
    }

    /// The admin resets a finished round: the win is banked, scores go to 0, back to `setup`.
    pub fn play_again(&mut self, robot_id: &str) -> Result<(), RuleError> {
        if self.robot(robot_id).is_none() {
            return Err(RuleError::UnknownRobot);
        }
        if !self.is_admin(robot_id) {
            return Err(RuleError::PermissionDenied);
        }
        if self.state != State::Finished {
            return Err(RuleError::InvalidState);
        }
        let winner = self.winner.take();
        // Those who left the round are gone now (their lanes with them).
        self.robots.retain(|r| !r.left);
        if !self.robots.iter().any(|r| r.admin) {
            // The admin was among them: the first connected robot leads (else the first).
            let next = self.robots.iter().position(|r| r.connected).unwrap_or(0);
            if let Some(robot) = self.robots.get_mut(next) {
                robot.admin = true;
            }
        }
        for robot in &mut self.robots {
            if Some(&robot.id) == winner.as_ref() {
                robot.previous_wins += 1;
            }
            robot.score = 0;
        }
        self.state = State::Setup;
        self.countdown = 0;
        self.version += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
