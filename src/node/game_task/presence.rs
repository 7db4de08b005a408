//! Presence in the game task: the owner applies it to the game, other servers report their
//! players' sockets to the owner (see `node::presence`).

use tokio::time::Instant;

use super::GameTask;
use crate::node::presence::Tracker;
use crate::node::role::{self, Role, Route};

/// How soon to look again when the lease had to be confirmed first.
const CONFIRM_RETRY: std::time::Duration = std::time::Duration::from_millis(100);
use crate::node::wire::InboxMsg;

impl GameTask {
    /// Works presence out again: run when sockets, reports or the role changed, or a
    /// presence deadline passed.
    pub(super) fn presence(&mut self, now: Instant) {
        let t = self.shared.timing.presence.clone();
        let ctx = self.ctx();
        let bus_up = ctx.bus_up;
        let may_change =
            |lease_until: Instant| (ctx.writable && lease_until > now) || (ctx.alone && !bus_up);
        self.next_presence = None;
        match &self.role {
            // Changes only while the lease is good by our clock, as for any command.
            Role::Owner(o) if !o.confirming && may_change(o.lease_until) => {
                let Some(game) = self.game.as_mut() else {
                    return;
                };
                self.tracker.arrived(&self.sessions.take_arrived());
                let local = self.sessions.robots_present();
                if !bus_up {
                    self.tracker.hold_reports(now);
                }
                let changes = self.tracker.apply(game, &local, now, &t);
                if changes.any() {
                    let id = &self.id;
                    for robot in &changes.away {
                        log::info!("game {id}: robot {robot} is away");
                    }
                    for robot in &changes.back {
                        log::info!("game {id}: robot {robot} is back");
                    }
                    for robot in &changes.removed {
                        log::info!("game {id}: robot {robot} removed (away in setup)");
                    }
                    if let Some(admin) = &changes.new_admin {
                        log::info!("game {id}: robot {admin} is the admin now (host hand-over)");
                    }
                    self.dirty = true;
                    self.layout_changed = true;
                }
                self.next_presence = self.tracker.next_check(game, &t);
                let look = self.consider_move(local.len(), now);
                self.next_presence = self.next_presence.into_iter().chain(look).min();
            }
            // The lease must be confirmed first; look again shortly.
            Role::Owner(_) => {
                let (role, route) = role::route(&self.role, self.ctx());
                self.set_role(role);
                if let Route::Hold(actions) = route {
                    self.act(&actions);
                }
                self.next_presence = Some(now + CONFIRM_RETRY);
            }
            Role::Replica { owner } => {
                let owner = owner.clone();
                let local = self
                    .sessions
                    .robots_present()
                    .into_iter()
                    .map(str::to_owned)
                    .collect();
                self.reporter.arrived(self.sessions.take_arrived());
                let mut unsent = false;
                if let Some(report) = self.reporter.due(&owner, local, now, &t) {
                    let msg = InboxMsg::Presence {
                        game_id: self.id.clone(),
                        origin: self.origin.instance.clone(),
                        counter: self.shared.next_report(),
                        robots: report.robots.clone(),
                        arrived: report.arrived.clone(),
                    };
                    if !self.shared.bus.send_to(&owner, msg.encode()) {
                        // Redis is unreachable: the owner hears it again once it is back.
                        self.reporter.forget_owner(report);
                        unsent = true;
                    }
                }
                self.next_presence = match unsent {
                    true => Some(now + t.refresh),
                    false => self.reporter.next_refresh(&t),
                };
            }
            Role::Resolving { .. } | Role::Stopping => {}
        }
    }

    /// A new owner (us) knows no reports yet: it keeps the stored presence for a while.
    pub(super) fn presence_taken_over(&mut self, now: Instant) {
        if let Some(game) = &self.game {
            self.tracker = Tracker::taking_over(game, now, &self.shared.timing.presence);
        }
        self.reporter = Default::default();
        self.presence_check = true;
    }
}
