//! Who applies a game's commands: the ownership state machine, as pure functions.
//!
//! Each `on_*` function takes the role and what happened, and returns the next role and the
//! [`Action`]s for the game task to carry out. Nothing here does I/O or reads a clock (the
//! time comes in [`Ctx`]), so every transition is unit-tested below, and the same rules run
//! in-process on three "servers" sharing a `LocalCluster` (see `node::tests`).
//!
//! The rules that keep a game consistent across servers:
//! - An owner applies a command only while its lease is good *by its own clock*: the lease
//!   runs from when the renewal was sent, minus a margin. A server that was frozen past its
//!   lease confirms it with Redis before applying anything.
//! - An owner shows a change to its players only once Redis has taken the save (see the game
//!   task), so no player ever sees a state that a fenced save refuses.
//! - While the game's storage cannot be written (Redis unreachable, or saves failing), an
//!   owner applies nothing: commands wait, and a player's that waits too long is answered
//!   `unavailable`. Only a game that Redis has never held (created while it was unreachable)
//!   runs alone meanwhile: no other server can know it.

use std::time::Duration;

use tokio::time::Instant;

use crate::bus::{Claim, Renewal, SaveResult};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Finding out who owns the game. `claiming`: a claim is in flight.
    Resolving { claiming: bool },
    /// This server applies the game's commands.
    Owner(Owner),
    /// `owner` applies them; this server shows what it publishes and forwards its players'
    /// commands there.
    Replica { owner: String },
    /// Shutting down: applies and forwards nothing more.
    Stopping,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// Until when the lease is ours by this server's clock.
    pub lease_until: Instant,
    /// The lease ran out by our clock and a renewal is in flight: commands wait for it.
    pub confirming: bool,
}

/// What the game task must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Ask who owns the game, taking it if nobody alive does. `fallback`: offer our copy,
    /// should Redis not have the game.
    Claim { fallback: bool },
    /// We own the game now: carry on from the claimed state, then apply what waits.
    TakeOver,
    /// We no longer own it: stop the countdown, drop the save in flight.
    StepDown,
    /// Renew the lease now; commands wait for the answer.
    Renew,
    /// Apply the commands that waited for the lease.
    ApplyHeld,
    /// Send every unacknowledged command to the owner (again).
    Resend,
    /// Save the current state again (Redis is back).
    Resave,
    /// Read the stored state again (Redis is back; we may have missed updates).
    Reload,
    /// Show the state that was just saved.
    ShowCommitted,
}

/// What a transition may look at besides the role.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub now: Instant,
    pub lease: Duration,
    /// Redis reachable.
    pub bus_up: bool,
    /// Redis reachable and the game's saves going through (false: commands wait).
    pub writable: bool,
    /// The game was created while Redis was unreachable and Redis has never held it: it runs
    /// alone until Redis is back.
    pub alone: bool,
}

impl Ctx {
    /// The lease a renewal sent at `sent_at` gives us, by our clock: a margin short of what
    /// Redis grants, since Redis counts from when it received the request.
    pub fn lease_from(&self, sent_at: Instant) -> Instant {
        sent_at + self.lease - self.lease / 10
    }
}

pub type Next = (Role, Vec<Action>);

/// Where a player's command goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Apply it here, now.
    Apply,
    /// Keep it until ownership is settled; the actions settle it.
    Hold(Vec<Action>),
    /// Send it to the owner.
    Forward(String),
    /// This server is stopping: it is not applied here.
    Refuse,
}

/// A command arrives (from a local player or forwarded by another server).
pub fn route(role: &Role, ctx: Ctx) -> (Role, Route) {
    match role {
        Role::Owner(_) if ctx.alone && !ctx.bus_up => (role.clone(), Route::Apply),
        // Storage cannot be written: nothing is applied that could not be shown.
        Role::Owner(_) if !ctx.writable => (role.clone(), Route::Hold(vec![])),
        Role::Owner(o) if ctx.now < o.lease_until => (role.clone(), Route::Apply),
        Role::Owner(o) if o.confirming => (role.clone(), Route::Hold(vec![])),
        Role::Owner(o) => {
            let role = Role::Owner(Owner {
                confirming: true,
                ..*o
            });
            (role, Route::Hold(vec![Action::Renew]))
        }
        Role::Replica { owner } => (role.clone(), Route::Forward(owner.clone())),
        Role::Resolving { claiming: true } => (role.clone(), Route::Hold(vec![])),
        Role::Resolving { claiming: false } if ctx.bus_up => (
            Role::Resolving { claiming: true },
            Route::Hold(vec![Action::Claim { fallback: false }]),
        ),
        Role::Resolving { .. } => (role.clone(), Route::Hold(vec![])),
        Role::Stopping => (Role::Stopping, Route::Refuse),
    }
}

/// A claim came back. `sent_at`: when it was sent. `have_copy`: we hold a copy of the game.
pub fn on_claim(role: &Role, claim: &Claim, sent_at: Instant, ctx: Ctx) -> Next {
    if *role == Role::Stopping {
        return (Role::Stopping, vec![]);
    }
    match claim {
        Claim::Claimed { .. } => (
            Role::Owner(Owner {
                lease_until: ctx.lease_from(sent_at),
                confirming: false,
            }),
            vec![Action::TakeOver],
        ),
        Claim::OwnedBy(owner) => (
            Role::Replica {
                owner: owner.clone(),
            },
            vec![Action::Resend],
        ),
        // Gone, Ended, Restoring or Failed: not settled; the game task decides (end it, wait, try again).
        Claim::Gone | Claim::Ended | Claim::Restoring | Claim::Failed => {
            (Role::Resolving { claiming: false }, vec![])
        }
    }
}

/// A save came back.
pub fn on_saved(role: &Role, result: SaveResult) -> Next {
    let Role::Owner(_) = role else {
        return (role.clone(), vec![]);
    };
    match result {
        SaveResult::Saved => (role.clone(), vec![Action::ShowCommitted]),
        SaveResult::Fenced => (
            Role::Resolving { claiming: true },
            vec![Action::StepDown, Action::Claim { fallback: false }],
        ),
        // No claim in Redis: Redis came back empty (or failed over to a replica that missed
        // the claim). Take it again, with our
        // copy in case Redis lost it; the state Redis has (if any) wins.
        SaveResult::Unowned => (
            Role::Resolving { claiming: true },
            vec![Action::StepDown, Action::Claim { fallback: true }],
        ),
        // Redis could not be asked, or refused the write: nothing is shown; the game task
        // tries again after a pause, and commands wait meanwhile.
        SaveResult::Failed | SaveResult::Refused => (role.clone(), vec![]),
    }
}

/// A lease renewal came back.
pub fn on_renewed(role: &Role, renewal: Renewal, sent_at: Instant, ctx: Ctx) -> Next {
    let Role::Owner(o) = role else {
        return (role.clone(), vec![]);
    };
    match renewal {
        Renewal::Held => {
            let owner = Owner {
                lease_until: o.lease_until.max(ctx.lease_from(sent_at)),
                confirming: false,
            };
            let actions = if o.confirming {
                vec![Action::ApplyHeld]
            } else {
                vec![]
            };
            (Role::Owner(owner), actions)
        }
        Renewal::Taken => (
            Role::Resolving { claiming: true },
            vec![Action::StepDown, Action::Claim { fallback: false }],
        ),
        Renewal::Unowned => (
            Role::Resolving { claiming: true },
            vec![Action::StepDown, Action::Claim { fallback: true }],
        ),
        // Redis is unreachable and has never held the game: run alone.
        Renewal::Failed if o.confirming && !ctx.bus_up && ctx.alone => (
            Role::Owner(Owner {
                confirming: false,
                ..*o
            }),
            vec![Action::ApplyHeld],
        ),
        Renewal::Failed => (role.clone(), vec![]),
    }
}

/// Another server published a change. `newer`: it is newer than what we hold.
pub fn on_relay(role: &Role, origin: &str, newer: bool) -> Next {
    match role {
        // Someone else saved a newer version: they own it now.
        Role::Owner(_) if newer => (
            Role::Replica {
                owner: origin.to_owned(),
            },
            vec![Action::StepDown, Action::Resend],
        ),
        Role::Owner(_) | Role::Stopping => (role.clone(), vec![]),
        Role::Replica { owner } if owner == origin => (role.clone(), vec![]),
        Role::Replica { .. } | Role::Resolving { .. } => (
            Role::Replica {
                owner: origin.to_owned(),
            },
            vec![Action::Resend],
        ),
    }
}

/// The connection to Redis came up or went down.
pub fn on_bus(role: &Role, up: bool) -> Next {
    match (role, up) {
        // Save again, and make sure the game is still ours before applying what waited.
        (Role::Owner(o), true) => (
            Role::Owner(Owner {
                confirming: true,
                ..*o
            }),
            vec![Action::Resave, Action::Renew],
        ),
        (Role::Replica { .. }, true) => (role.clone(), vec![Action::Reload, Action::Resend]),
        (Role::Resolving { .. }, true) => (
            Role::Resolving { claiming: true },
            vec![Action::Claim { fallback: false }],
        ),
        _ => (role.clone(), vec![]),
    }
}

/// Our commands were not acknowledged in time, or the owner's heartbeat is gone, or the owner
/// sent us away without saying who owns the game: find the owner again.
pub fn on_owner_doubt(role: &Role) -> Next {
    match role {
        Role::Replica { .. } | Role::Resolving { claiming: false } => (
            Role::Resolving { claiming: true },
            vec![Action::Claim { fallback: false }],
        ),
        _ => (role.clone(), vec![]),
    }
}

/// The server we forwarded to says it does not own the game; `hint`: who it thinks does.
pub fn on_redirect(role: &Role, hint: Option<&str>, me: &str) -> Next {
    match (role, hint) {
        (Role::Replica { owner }, Some(h)) if h != me && h != owner => (
            Role::Replica {
                owner: h.to_owned(),
            },
            vec![Action::Resend],
        ),
        (Role::Replica { .. }, _) => on_owner_doubt(role),
        _ => (role.clone(), vec![]),
    }
}

/// The server is shutting down. An owner stops applying (what it applied is committed, then
/// it lets the game go); a replica keeps finding the owner for its players' last commands.
pub fn on_stop(role: &Role) -> Next {
    match role {
        Role::Owner(_) => (Role::Stopping, vec![]),
        _ => (role.clone(), vec![]),
    }
}

#[cfg(test)]
mod tests;
