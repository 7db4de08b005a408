//! Log lines: env_logger's text (`[time LEVEL target] message`), or with `-log-format json`
//! one JSON object a line for a log collector:
//!
//! ```json
//! {"game_id":"Ab3dE9xY","level":"INFO","message":"game Ab3dE9xY: robot Xk2 joined",
//!  "node_id":"app1","target":"robot_race::node::game_task::commands","time":"2026-12-03T08:31:15.123Z"}
//! ```
//!
//! `node_id` is this server's ([`set_node_id`], once it is known); `game_id` is there when the
//! message is about one game (it starts `game <id>:`, as every such line does). env_logger
//! stays the logger (`RUST_LOG` filters as before); only its format changes. The messages are
//! the same in both formats, so no token reaches a log in either (the access log writes
//! `token=…`).

use std::io::Write as _;
use std::sync::OnceLock;

/// `-log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `[time LEVEL target] message`, env_logger's own.
    #[default]
    Text,
    /// One JSON object a line: time, level, target, message, node_id, game_id.
    Json,
}

static NODE_ID: OnceLock<String> = OnceLock::new();

/// This server's node id, written on every JSON line from now on.
pub fn set_node_id(node_id: &str) {
    let _ = NODE_ID.set(node_id.to_owned());
}

/// Starts env_logger (`RUST_LOG`, default `info`) in `format`.
pub fn init(format: LogFormat) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if format == LogFormat::Json {
        builder.format(|buf, record| {
            let time = buf.timestamp_millis().to_string();
            let message = record.args().to_string();
            writeln!(buf, "{}", json_line(&time, record, &message))
        });
    }
    builder.init();
}

/// The game a message is about: the id in its leading `game <id>:`.
fn game_of(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("game ")?;
    let (id, _) = rest.split_once(':')?;
    crate::node::valid_game_id(id).then_some(id)
}

fn json_line(time: &str, record: &log::Record<'_>, message: &str) -> String {
    let mut line = serde_json::json!({
        "time": time,
        "level": record.level().as_str(),
        "target": record.target(),
        "message": message,
    });
    if let Some(node) = NODE_ID.get() {
        line["node_id"] = node.as_str().into();
    }
    if let Some(game) = game_of(message) {
        line["game_id"] = game.into();
    }
    line.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_line_names_the_game_it_is_about() {
        let args = format_args!("ignored");
        let record = log::Record::builder()
            .args(args)
            .level(log::Level::Warn)
            .target("robot_race::node")
            .build();
        let line = json_line(
            "2026-01-01T00:00:00.000Z",
            &record,
            "game Ab3dE9xY: robot \"x\" joined\nsecond line",
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["target"], "robot_race::node");
        assert_eq!(v["game_id"], "Ab3dE9xY");
        assert_eq!(
            v["message"],
            "game Ab3dE9xY: robot \"x\" joined\nsecond line"
        );
        let other = json_line("t", &record, "Listening on http://127.0.0.1:1");
        let v: serde_json::Value = serde_json::from_str(&other).unwrap();
        assert!(v.get("game_id").is_none());
    }
}
