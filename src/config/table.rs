//! The flag table of README.md and docs/PROTOCOL.md, rendered from the clap definitions, so
//! the docs say what `robot-race --help` says: every flag, its environment variable, its
//! default and its meaning (the field's doc comment).
//!
//! A test compares the tables in the docs with this rendering; `UPDATE_DOCS=1 cargo test --lib
//! flag_tables` writes it into them.

use clap::{Arg, CommandFactory};

use super::Config;

/// The line before a generated table in the docs.
pub const BEGIN: &str =
    "<!-- flags: generated from src/config by `UPDATE_DOCS=1 cargo test --lib flag_tables` -->";
/// The line after it.
pub const END: &str = "<!-- end of flags -->";

/// The Markdown table: flag, environment variable, default, meaning.
pub fn markdown() -> String {
    let mut out = String::from("| flag | env | default | meaning |\n| --- | --- | --- | --- |\n");
    for arg in &flags() {
        let long = arg.get_long().unwrap_or_default();
        let value = value_name(arg).map(|v| format!(" {v}")).unwrap_or_default();
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        out.push_str(&format!(
            "| `-{long}{value}` | {env} | {} | {} |\n",
            default(arg),
            meaning(arg)
        ));
    }
    out
}

/// Every flag but `--help` and `--version`, in declaration order.
pub fn flags() -> Vec<Arg> {
    Config::command()
        .get_arguments()
        .filter(|a| !matches!(a.get_long(), None | Some("help" | "version")))
        .cloned()
        .collect()
}

/// What the flag takes: `NAME`, or `pattern|per-game` for a choice; `None` for a switch.
fn value_name(arg: &Arg) -> Option<String> {
    if !arg.get_action().takes_values() {
        return None;
    }
    let choices: Vec<String> = arg
        .get_possible_values()
        .iter()
        .map(|p| p.get_name().to_owned())
        .collect();
    if !choices.is_empty() {
        return Some(choices.join("\\|"));
    }
    let names = arg.get_value_names().unwrap_or_default();
    Some(names.first().map_or("VALUE".to_owned(), |n| n.to_string()))
}

/// `` `30` ``, `off` for a switch, empty when none.
fn default(arg: &Arg) -> String {
    if !arg.get_action().takes_values() {
        return "off".to_owned();
    }
    arg.get_default_values()
        .iter()
        .map(|v| format!("`{}`", v.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The doc comment on one line.
pub fn meaning(arg: &Arg) -> String {
    let help = arg.get_long_help().or(arg.get_help());
    let text = help.map(|h| h.to_string()).unwrap_or_default();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Each doc's table is the rendering above (rewritten with UPDATE_DOCS=1).
    #[test]
    fn flag_tables_in_the_docs_are_the_code() {
        let table = markdown();
        let update = std::env::var_os("UPDATE_DOCS").is_some_and(|v| !v.is_empty());
        for file in ["README.md", "docs/PROTOCOL.md"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            let (before, rest) = text
                .split_once(&format!("{BEGIN}\n"))
                .unwrap_or_else(|| panic!("{file}: no line {BEGIN:?}"));
            let (old, after) = rest
                .split_once(&format!("{END}\n"))
                .unwrap_or_else(|| panic!("{file}: no line {END:?} after the table"));
            if old == table {
                continue;
            }
            if update {
                std::fs::write(&path, format!("{before}{BEGIN}\n{table}{END}\n{after}")).unwrap();
                continue;
            }
            panic!(
                "{file}'s flag table differs from the flags in src/config; \
                 run `UPDATE_DOCS=1 cargo test --lib flag_tables` to rewrite it. It should be:\n{table}"
            );
        }
    }

    /// What `--help` prints names every flag of the table with the same variable and default.
    #[test]
    fn help_lists_every_flag_with_its_variable_and_default() {
        let help = Config::command().render_long_help().to_string();
        for arg in flags() {
            let long = arg.get_long().unwrap();
            assert!(
                help.contains(&format!("--{long}")),
                "--{long} missing from --help"
            );
            if let Some(env) = arg.get_env() {
                let env = env.to_string_lossy();
                assert!(
                    help.contains(&format!("[env: {env}")),
                    "{env} missing from --help"
                );
            }
            for default in arg.get_default_values() {
                if arg.get_action().takes_values() {
                    let shown = format!("[default: {}]", default.to_string_lossy());
                    assert!(
                        help.contains(&shown),
                        "--{long}: {shown} missing from --help"
                    );
                }
            }
            let first_words: String = meaning(&arg).chars().take(30).collect();
            let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(
                flat.contains(&first_words),
                "--{long}: {first_words:?} not in --help"
            );
        }
    }
}
