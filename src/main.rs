//! `robot-race`: parses the configuration and runs the server until SIGTERM/SIGINT.
//!
//! Two runtimes: actix-web's workers serve HTTP and WebSockets; game tasks and the Redis bus
//! run on a multi-thread tokio runtime (`-game-threads`, a thread per core by default). With
//! `-same-thread`, the one HTTP worker runs them all.

use robot_race::config::Config;
use robot_race::{logs, Application, StopSignals};

fn main() {
    let config = Config::from_args();
    logs::init(config.log_format);
    // rustls (for rediss://) needs a process-wide crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    robot_race::open_files::raise_and_log(config.max_spectators);
    // Same-thread mode: no game runtime, the one HTTP worker runs the games.
    let games = (!config.same_thread).then(|| {
        match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(Config::threads(config.game_threads))
            .thread_name("game")
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("robot-race: cannot start the game runtime: {e}");
                std::process::exit(1);
            }
        }
    });
    let handle = games.as_ref().map(|g| g.handle().clone());
    let result = actix_web::rt::System::new().block_on(async move {
        // Before anything starts: a SIGTERM from here on shuts down cleanly.
        let signals = StopSignals::listen();
        let app = match Application::build(config, handle) {
            Ok(app) => app,
            Err(e) => {
                eprintln!("robot-race: {e}");
                std::process::exit(2);
            }
        };
        logs::set_node_id(app.node().node_id());
        log::info!("Listening on http://{}", app.addr());
        app.run_until_stopped(signals).await
    });
    if let Err(e) = result {
        eprintln!("robot-race: {e}");
        std::process::exit(1);
    }
    if let Some(games) = games {
        games.shutdown_timeout(std::time::Duration::from_secs(1));
    }
    log::info!("Stopped");
}
