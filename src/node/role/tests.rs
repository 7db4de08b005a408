//! Every transition of the ownership state machine.

use super::*;

fn ctx(now: Instant) -> Ctx {
    Ctx {
        now,
        lease: Duration::from_secs(5),
        bus_up: true,
        writable: true,
        alone: false,
    }
}

fn owner(lease_until: Instant) -> Role {
    Role::Owner(Owner {
        lease_until,
        confirming: false,
    })
}

#[test]
fn an_owner_applies_only_within_its_lease_by_its_own_clock() {
    let t0 = Instant::now();
    let role = owner(ctx(t0).lease_from(t0));
    assert_eq!(
        route(&role, ctx(t0 + Duration::from_secs(1))).1,
        Route::Apply
    );
    // Frozen past the lease: hold, and renew once.
    let late = ctx(t0 + Duration::from_secs(15));
    let (confirming, first) = route(&role, late);
    assert_eq!(first, Route::Hold(vec![Action::Renew]));
    let (_, second) = route(&confirming, late);
    assert_eq!(second, Route::Hold(vec![]));
    // Held after all: apply what waited, with the lease counted from the renewal.
    let (role, actions) = on_renewed(&confirming, Renewal::Held, late.now, late);
    assert_eq!(actions, [Action::ApplyHeld]);
    assert_eq!(route(&role, late).1, Route::Apply);
    // Taken meanwhile: step down and find the owner.
    let (role, actions) = on_renewed(&confirming, Renewal::Taken, late.now, late);
    assert_eq!(role, Role::Resolving { claiming: true });
    assert_eq!(
        actions,
        [Action::StepDown, Action::Claim { fallback: false }]
    );
}

#[test]
fn the_lease_counts_from_when_the_renewal_was_sent_minus_a_margin() {
    let t0 = Instant::now();
    let c = ctx(t0 + Duration::from_millis(300));
    assert_eq!(c.lease_from(t0), t0 + Duration::from_millis(4500));
    let (role, actions) = on_renewed(&owner(t0), Renewal::Held, t0, c);
    assert!(actions.is_empty());
    assert_eq!(role, owner(t0 + Duration::from_millis(4500)));
    // A save does not renew the lease (renewals are batched apart): it only shows.
    let (role, actions) = on_saved(&owner(t0), SaveResult::Saved);
    assert_eq!(actions, [Action::ShowCommitted]);
    assert_eq!(role, owner(t0));
}

#[test]
fn with_redis_down_an_owner_applies_nothing_unless_redis_never_held_the_game() {
    let t0 = Instant::now();
    let down = Ctx {
        bus_up: false,
        writable: false,
        ..ctx(t0 + Duration::from_secs(1))
    };
    // Within its lease, an owner still holds everything while storage cannot be written.
    assert_eq!(route(&owner(t0 + SECS5), down).1, Route::Hold(vec![]));
    let failing = Ctx {
        writable: false,
        ..ctx(t0)
    };
    assert_eq!(route(&owner(t0 + SECS5), failing).1, Route::Hold(vec![]));
    // A failed save shows nothing.
    let (role, actions) = on_saved(&owner(t0), SaveResult::Failed);
    assert_eq!((role, actions), (owner(t0), vec![]));
    let confirming = Role::Owner(Owner {
        lease_until: t0,
        confirming: true,
    });
    let (_, actions) = on_renewed(&confirming, Renewal::Failed, t0, down);
    assert!(actions.is_empty());
    // A game Redis never held (created while it was down) runs alone.
    let alone = Ctx {
        alone: true,
        ..down
    };
    assert_eq!(route(&owner(t0), alone).1, Route::Apply);
    let (_, actions) = on_renewed(&confirming, Renewal::Failed, t0, alone);
    assert_eq!(actions, [Action::ApplyHeld]);
    // Back: save again, and confirm the lease before applying what waited.
    let (role, actions) = on_bus(&owner(t0), true);
    assert_eq!(actions, [Action::Resave, Action::Renew]);
    assert_eq!(role, confirming);
}

const SECS5: Duration = Duration::from_secs(5);

#[test]
fn a_fenced_or_unowned_save_steps_down_and_claims() {
    let t0 = Instant::now();
    let (role, actions) = on_saved(&owner(t0), SaveResult::Fenced);
    assert_eq!(role, Role::Resolving { claiming: true });
    assert_eq!(
        actions,
        [Action::StepDown, Action::Claim { fallback: false }]
    );
    let (_, actions) = on_saved(&owner(t0), SaveResult::Unowned);
    assert_eq!(
        actions,
        [Action::StepDown, Action::Claim { fallback: true }]
    );
    let (_, actions) = on_renewed(&owner(t0), Renewal::Unowned, t0, ctx(t0));
    assert_eq!(
        actions,
        [Action::StepDown, Action::Claim { fallback: true }]
    );
}

#[test]
fn claims_settle_the_role() {
    let t0 = Instant::now();
    let resolving = Role::Resolving { claiming: true };
    let stored = Claim::Claimed {
        stored: "{}".into(),
        fence: crate::bus::Fence::drawn(1),
    };
    let (role, actions) = on_claim(&resolving, &stored, t0, ctx(t0));
    assert_eq!(role, owner(ctx(t0).lease_from(t0)));
    assert_eq!(actions, [Action::TakeOver]);
    let (role, actions) = on_claim(&resolving, &Claim::OwnedBy("b".into()), t0, ctx(t0));
    assert_eq!(role, Role::Replica { owner: "b".into() });
    assert_eq!(actions, [Action::Resend]);
    for unsettled in [Claim::Gone, Claim::Failed] {
        assert_eq!(
            on_claim(&resolving, &unsettled, t0, ctx(t0)).0,
            Role::Resolving { claiming: false }
        );
    }
    // Stopping stays stopping whatever comes back.
    assert_eq!(
        on_claim(&Role::Stopping, &stored, t0, ctx(t0)).0,
        Role::Stopping
    );
}

#[test]
fn commands_route_by_role() {
    let t0 = Instant::now();
    let replica = Role::Replica { owner: "b".into() };
    assert_eq!(route(&replica, ctx(t0)).1, Route::Forward("b".into()));
    let (role, r) = route(&Role::Resolving { claiming: false }, ctx(t0));
    assert_eq!(role, Role::Resolving { claiming: true });
    assert_eq!(r, Route::Hold(vec![Action::Claim { fallback: false }]));
    let down = Ctx {
        bus_up: false,
        writable: false,
        ..ctx(t0)
    };
    assert_eq!(
        route(&Role::Resolving { claiming: false }, down).1,
        Route::Hold(vec![])
    );
    assert_eq!(route(&Role::Stopping, ctx(t0)).1, Route::Refuse);
}

#[test]
fn relays_tell_who_owns_the_game() {
    let t0 = Instant::now();
    let replica = Role::Replica { owner: "b".into() };
    assert_eq!(on_relay(&replica, "b", true), (replica.clone(), vec![]));
    let (role, actions) = on_relay(&replica, "c", true);
    assert_eq!(role, Role::Replica { owner: "c".into() });
    assert_eq!(actions, [Action::Resend]);
    // An owner that sees a newer version from elsewhere lost the game.
    let (role, actions) = on_relay(&owner(t0), "c", true);
    assert_eq!(role, Role::Replica { owner: "c".into() });
    assert_eq!(actions, [Action::StepDown, Action::Resend]);
    assert_eq!(on_relay(&owner(t0), "c", false).0, owner(t0));
}

#[test]
fn doubts_and_redirects_find_the_owner_again() {
    let replica = Role::Replica { owner: "b".into() };
    let (role, actions) = on_owner_doubt(&replica);
    assert_eq!(role, Role::Resolving { claiming: true });
    assert_eq!(actions, [Action::Claim { fallback: false }]);
    let (role, actions) = on_redirect(&replica, Some("c"), "a");
    assert_eq!(role, Role::Replica { owner: "c".into() });
    assert_eq!(actions, [Action::Resend]);
    // No hint, or a hint naming ourselves or the same owner: ask Redis.
    for hint in [None, Some("a"), Some("b")] {
        assert_eq!(
            on_redirect(&replica, hint, "a").0,
            Role::Resolving { claiming: true }
        );
    }
    assert_eq!(on_bus(&replica, true).1, [Action::Reload, Action::Resend]);
    assert_eq!(on_stop(&replica).0, replica);
    assert_eq!(on_stop(&owner(Instant::now())).0, Role::Stopping);
}
