//! `robot-race`: parses the configuration and runs the server until SIGTERM/SIGINT.

use robot_race::config::Config;
use robot_race::Application;

#[actix_web::main]
async fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // rustls (for rediss://) needs a process-wide crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = Config::from_args();
    let app = match Application::build(config) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("robot-race: {e}");
            std::process::exit(2);
        }
    };
    log::info!("Listening on http://{}", app.addr());
    if let Err(e) = app.run_until_stopped().await {
        eprintln!("robot-race: {e}");
        std::process::exit(1);
    }
    log::info!("Stopped");
}
