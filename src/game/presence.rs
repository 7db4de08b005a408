//! Presence, host hand-over and leaving (PROTOCOL.md): the rules; when they apply is the
//! owner's presence tracker's business (`node::presence`).

use super::{Game, Left, RuleError, State};

impl Game {
    /// Marks a robot present or away (presence). Returns whether anything changed; a robot
    /// whose player left stays away.
    pub fn set_connected(&mut self, robot_id: &str, connected: bool) -> bool {
        let Some(robot) = self.robots.iter_mut().find(|r| r.id == robot_id) else {
            return false;
        };
        let connected = connected && !robot.left;
        if robot.connected == connected {
            return false;
        }
        robot.connected = connected;
        self.version += 1;
        true
    }

    /// The admin role passes to the next connected robot after the admin in join order
    /// (host hand-over). Returns the new admin's id, or `None` when nobody connected can take
    /// it (then nothing changes).
    pub fn hand_over_admin(&mut self) -> Option<String> {
        let to = self.pass_admin()?;
        self.version += 1;
        Some(to)
    }

    /// [`Game::hand_over_admin`] without the version bump (for changes that make one).
    fn pass_admin(&mut self) -> Option<String> {
        let from = self.robots.iter().position(|r| r.admin)?;
        let n = self.robots.len();
        let to = (1..n)
            .map(|k| (from + k) % n)
            .find(|&i| self.robots[i].connected)?;
        self.robots[from].admin = false;
        self.robots[to].admin = true;
        Some(self.robots[to].id.clone())
    }

    /// Takes a robot out of the game (in `setup` only: a lane mid-round stays). An admin that
    /// goes hands the role on: to the next connected robot, else simply the next one. Returns
    /// whether it was removed.
    pub fn remove(&mut self, robot_id: &str) -> bool {
        if self.state != State::Setup {
            return false;
        }
        let Some(i) = self.robots.iter().position(|r| r.id == robot_id) else {
            return false;
        };
        let gone = self.robots.remove(i);
        if gone.admin && !self.robots.is_empty() {
            let n = self.robots.len();
            let next = (0..n)
                .map(|k| (i + k) % n)
                .find(|&j| self.robots[j].connected)
                .unwrap_or(i % n);
            self.robots[next].admin = true;
        }
        self.version += 1;
        true
    }

    /// A player leaves: in `setup` the robot goes at once; otherwise it stays, away, for the
    /// rest of the round. An admin who leaves hands the role on at once.
    pub fn leave(&mut self, robot_id: &str) -> Result<Left, RuleError> {
        if self.robot(robot_id).is_none() {
            return Err(RuleError::UnknownRobot);
        }
        if self.state == State::Setup {
            self.remove(robot_id);
            return Ok(if self.robots.is_empty() {
                Left::Empty
            } else {
                Left::Removed
            });
        }
        let Some(robot) = self.robots.iter_mut().find(|r| r.id == robot_id) else {
            return Err(RuleError::UnknownRobot);
        };
        if robot.left {
            return Ok(Left::Away);
        }
        robot.left = true;
        robot.connected = false;
        self.version += 1;
        if self.is_admin(robot_id) {
            // Nobody connected: the role stays put until someone can take it.
            self.pass_admin();
        }
        Ok(Left::Away)
    }
}
