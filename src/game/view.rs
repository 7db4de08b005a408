//! What players and operators see of a game: the `GAME` view of PROTOCOL.md, the
//! leaderboard, and the JSON kept in `game_state:<id>`.

use serde::Serialize;

use super::{Game, State};

impl Game {
    /// Robots by total wins (banked plus the current round's), most first; among equal wins
    /// this round's winner comes first, then join order.
    pub fn leaderboard(&self) -> Vec<LeaderboardEntry<'_>> {
        let mut board: Vec<_> = self
            .robots
            .iter()
            .map(|r| LeaderboardEntry {
                robot_id: &r.id,
                name: &r.name,
                wins: r.previous_wins + u32::from(self.winner.as_deref() == Some(r.id.as_str())),
            })
            .collect();
        let winner = self.winner.as_deref();
        board.sort_by_key(|e| (std::cmp::Reverse(e.wins), Some(e.robot_id) != winner));
        board
    }

    /// The `GAME` object of PROTOCOL.md, as clients see it.
    pub fn view(&self) -> GameView<'_> {
        GameView {
            id: &self.id,
            state: self.state,
            countdown: self.countdown,
            winning_score: self.winning_score,
            version: self.version,
            robots: self
                .robots
                .iter()
                .map(|r| RobotView {
                    id: &r.id,
                    name: &r.name,
                    score: r.score,
                    admin: r.admin,
                    connected: r.connected && !r.left,
                })
                .collect(),
            leaderboard: self.leaderboard(),
            winner: self.winner.as_deref(),
        }
    }

    /// The JSON kept in `game_state:<id>`: the game plus its leaderboard, so an operator's
    /// `GET` shows what players see; [`Game`] deserialises from it directly.
    pub fn stored_json(&self) -> String {
        #[derive(Serialize)]
        struct Stored<'a> {
            #[serde(flatten)]
            game: &'a Game,
            leaderboard: Vec<LeaderboardEntry<'a>>,
        }
        // unwrap: plain structs of strings and numbers always serialise.
        serde_json::to_string(&Stored {
            game: self,
            leaderboard: self.leaderboard(),
        })
        .unwrap()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaderboardEntry<'a> {
    pub robot_id: &'a str,
    pub name: &'a str,
    pub wins: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RobotView<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub score: u32,
    pub admin: bool,
    pub connected: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GameView<'a> {
    pub id: &'a str,
    pub state: State,
    pub countdown: u32,
    pub winning_score: u32,
    pub version: u64,
    pub robots: Vec<RobotView<'a>>,
    pub leaderboard: Vec<LeaderboardEntry<'a>>,
    pub winner: Option<&'a str>,
}
