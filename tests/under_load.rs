//! What must hold on a machine saturated by other work: start-up and first requests are
//! slowest then, and the order of events between threads is least like a quiet machine's.
//!
//! - A SIGTERM that lands just after start-up (a deploy or an orchestrator stopping a server it
//!   has only just started) stops the server cleanly, with exit status 0, instead of killing it
//!   through the signal's default action.
//! - A request for a game that does not exist is answered "not found" on every server of a
//!   cluster, never "unavailable".
//!
//! Each test keeps every core busy on purpose (neither failure showed on a quiet machine). This
//! is a test binary of its own because cargo runs test binaries one at a time: no other test
//! shares the machine with that load. Time is bounded: a fixed number of rounds, each with
//! deadlines.

#[path = "it/helpers/mod.rs"]
mod helpers;

use std::process::{Child, Command, Stdio};

const ROUNDS: usize = 30;
const UNKNOWN_GAMES: usize = 300;

/// Processes spinning on every core until dropped (processes, not threads of this test: the
/// scheduler weighs them as it would other programs on the machine).
struct Busy(Vec<Child>);

impl Busy {
    fn start() -> Busy {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let spinners = (0..cores)
            .map(|_| {
                Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .stdin(Stdio::null())
                    .spawn()
                    .expect("cannot start sh")
            })
            .collect();
        Busy(spinners)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn sigterm_right_after_start_up_stops_the_server_cleanly() {
    let busy = Busy::start();
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        // Returns once the server has logged that it listens.
        let mut server = helpers::Server::start(&[]);
        match server.terminate() {
            Some(status) if status.success() => {}
            Some(status) => failures.push(format!("round {round}: exited with {status}")),
            None => failures.push(format!("round {round}: still running 10 s after SIGTERM")),
        }
    }
    drop(busy);
    assert!(
        failures.is_empty(),
        "{} of {ROUNDS} servers did not stop cleanly on a SIGTERM just after start-up \
         (\"signal: 15\" means the signal killed it before its handler was installed):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Joins of games nobody created: "not found" from every server. A server that did not hold
/// the game started a task to find it and asked it only after starting it; on a busy machine
/// the task could find the game gone and end first, and the join was answered 503
/// "unavailable".
#[actix_rt::test]
async fn unknown_games_are_not_found_on_every_server_under_load() {
    let redis = helpers::Redis::start();
    let servers: Vec<_> = (1..=3)
        .map(|i| helpers::cluster_node(&redis, &format!("node{i}"), &[]))
        .collect();
    let busy = Busy::start();
    let mut wrong = Vec::new();
    for i in 0..UNKNOWN_GAMES {
        let server = &servers[i % servers.len()];
        let path = format!("/api/games/Missing{i:03}/players");
        let (status, body) = server
            .api()
            .post_json(&path, serde_json::json!({"name": "x"}))
            .await;
        if (status, body["error"].as_str()) != (404, Some("not_found")) {
            wrong.push(format!("{path} on {}: {status} {body}", server.addr));
        }
    }
    drop(busy);
    assert!(
        wrong.is_empty(),
        "{} of {UNKNOWN_GAMES} joins of unknown games were not 404 not_found:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
