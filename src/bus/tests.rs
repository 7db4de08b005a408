//! The fence on the in-memory bus, each hole injected where it matters: a save from a claim
//! that Redis forgot arriving after a new claim took the same epoch number, a late retry
//! arriving after a newer save, and a copy of an ended game offered to a claim.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::local::{LocalBus, LocalCluster};
use super::{Bus, BusEvents, Claim, Fallback, Fence, Save, SaveResult, RESTORE_WINDOW};

const LEASE: Duration = Duration::from_secs(1);

/// What a server's bus reported of its saves.
#[derive(Default)]
struct Heard(Mutex<Vec<(u64, SaveResult)>>);

impl BusEvents for Heard {
    fn relayed(&self, _: &str, _: &[u8]) {}
    fn inbox(&self, _: &[u8]) {}
    fn saved(&self, _: &str, version: u64, result: SaveResult) {
        self.0.lock().unwrap().push((version, result));
    }
    fn connection(&self, _: bool) {}
}

fn server(cluster: &LocalCluster, name: &str) -> (LocalBus, Arc<Heard>) {
    let bus = LocalBus::member(cluster, name, LEASE);
    let heard = Arc::new(Heard::default());
    bus.start(heard.clone());
    (bus, heard)
}

fn save(fence: Fence, version: u64, text: &str) -> Save {
    Save {
        version,
        stored: text.to_owned(),
        publish: text.to_owned(),
        fence,
    }
}

async fn claimed(bus: &LocalBus, new: Option<&str>, floor: u64) -> Fence {
    match bus
        .claim("g", new.map(|j| Fallback::New(j.into())), floor)
        .await
    {
        Claim::Claimed { fence, .. } => fence,
        other => panic!("not claimed: {other:?}"),
    }
}

/// Offers a copy of a lost game (version `version`) until the claim is settled.
async fn offer(bus: &LocalBus, json: &str, version: u64) -> Claim {
    let floor = version / 1_000_000_000 + 1;
    for _ in 0..20 {
        let copy = Fallback::Copy {
            json: json.into(),
            version,
        };
        match bus.claim("g", Some(copy), floor).await {
            Claim::Restoring => tokio::time::sleep(RESTORE_WINDOW / 3).await,
            settled => return settled,
        }
    }
    panic!("a restore never settled");
}

/// Waits for the bus's `n`th answer (they come on a task of their own, as Redis's would).
async fn answer(heard: &Heard, n: usize) -> (u64, SaveResult) {
    for _ in 0..100 {
        if let Some(answer) = heard.0.lock().unwrap().get(n - 1).copied() {
            return answer;
        }
        tokio::task::yield_now().await;
    }
    panic!("no answer");
}

#[tokio::test(start_paused = true)]
async fn a_claim_redis_forgot_cannot_write_over_the_one_that_restored_the_game() {
    let cluster = LocalCluster::new();
    let ((a, heard_a), (b, _)) = (server(&cluster, "a"), server(&cluster, "b"));
    let first = claimed(&a, Some("v1"), 1).await;
    assert_eq!(first.epoch, 1);
    // `a` is cut off; Redis restarts empty; `b` restores the game from its copy. It had seen
    // no version past the first epoch either: Redis hands out epoch 1 again.
    cluster.cut("a", true);
    cluster.down();
    cluster.back(true);
    let Claim::Claimed { fence: second, .. } = offer(&b, "b's copy", 7).await else {
        panic!("not restored");
    };
    assert_eq!(second.epoch, 1, "the same epoch number, given again");
    assert_ne!(second, first);
    // `a` is back, and a save it queued under its old claim goes through: refused.
    cluster.cut("a", false);
    a.save("g", save(first, 1_000_000_007, "a's stale state"));
    assert_eq!(
        answer(&heard_a, 1).await,
        (1_000_000_007, SaveResult::Fenced)
    );
    assert_eq!(cluster.stored("g").as_deref(), Some("b's copy"));
}

/// Redis lost the game while `a` was cut off: `a` (its copy older) offers first, `b` (the
/// latest owner) a moment later: `b`'s copy is restored, under an epoch above both.
#[tokio::test(start_paused = true)]
async fn a_lost_game_is_restored_from_the_newest_copy_offered() {
    let cluster = LocalCluster::new();
    let ((a, _), (b, _)) = (server(&cluster, "a"), server(&cluster, "b"));
    cluster.down();
    cluster.back(true);
    let first = tokio::spawn(async move { offer(&a, "a's older copy", 1_000_000_005).await });
    tokio::time::sleep(RESTORE_WINDOW / 2).await;
    let newest = offer(&b, "b's copy", 2_000_000_009).await;
    assert!(
        matches!(newest, Claim::Claimed { ref stored, fence } if stored == "b's copy" && fence.epoch == 3),
        "{newest:?}"
    );
    assert_eq!(first.await.unwrap(), Claim::OwnedBy("b".into()));
    assert_eq!(cluster.stored("g").as_deref(), Some("b's copy"));
}

#[tokio::test(start_paused = true)]
async fn a_claim_takes_an_epoch_above_every_version_its_claimant_knows() {
    let cluster = LocalCluster::new();
    let (b, _) = server(&cluster, "b");
    // Redis lost the game; `b` holds versions of epoch 3.
    let fence = claimed(&b, Some("copy"), 3_000_000_042 / 1_000_000_000 + 1).await;
    assert_eq!(fence.epoch, 4);
}

#[tokio::test(start_paused = true)]
async fn a_late_save_never_replaces_a_newer_one() {
    let cluster = LocalCluster::new();
    let (a, heard) = server(&cluster, "a");
    let fence = claimed(&a, Some("v0"), 1).await;
    a.save("g", save(fence, 11, "v11"));
    assert_eq!(answer(&heard, 1).await, (11, SaveResult::Saved));
    // The save of version 10 timed out, was retried, and its first try arrives now.
    a.save("g", save(fence, 10, "v10"));
    assert_eq!(answer(&heard, 2).await, (10, SaveResult::Saved));
    assert_eq!(cluster.stored("g").as_deref(), Some("v11"));
}

#[tokio::test(start_paused = true)]
async fn an_ended_game_is_never_restored_from_a_copy() {
    let cluster = LocalCluster::new();
    let ((a, _), (c, _)) = (server(&cluster, "a"), server(&cluster, "c"));
    let fence = claimed(&a, Some("v1"), 1).await;
    a.terminate("g", "terminated".to_owned(), fence);
    assert_eq!(cluster.stored("g"), None);
    // `c` missed the end, finds the game missing and offers its copy.
    assert_eq!(offer(&c, "c's copy", 1_000_000_002).await, Claim::Ended);
    assert_eq!(cluster.stored("g"), None);
}
