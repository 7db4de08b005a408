//! The docs' tables are the code's: every metric `/metrics` has is in docs/OPERATIONS.md and
//! every one listed there is scraped; every error code, close code and log line the code can
//! send or write is in docs/PROTOCOL.md, and every one listed there is in the code. (The flag
//! tables are generated from the clap definitions and checked by `config::table`'s tests.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::helpers::{cluster_node, Redis, Server};
use crate::monitoring::scrape;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(file: &str) -> String {
    std::fs::read_to_string(root().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The rows (cells trimmed) of the first table after the line `heading`.
fn table_after(text: &str, heading: &str) -> Vec<Vec<String>> {
    let (_, rest) = text
        .split_once(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no heading {heading:?}"));
    rest.lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            // Split on `|` outside backticks (a `\|` inside a cell is kept).
            let (mut cells, mut cell, mut code) = (Vec::new(), String::new(), false);
            let mut chars = l.trim().trim_matches('|').chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\\' if chars.peek() == Some(&'|') => cell.push(chars.next().unwrap()),
                    '`' => {
                        code = !code;
                        cell.push(c);
                    }
                    '|' if !code => cells.push(std::mem::take(&mut cell).trim().to_owned()),
                    _ => cell.push(c),
                }
            }
            cells.push(cell.trim().to_owned());
            cells
        })
        .collect()
}

/// The texts between backticks in a cell.
fn quoted(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Every `.rs` file under `src/`.
fn sources() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![root().join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                // What the server does, not its unit tests (which come last in a file).
                let text = match text.split_once("#[cfg(test)]\nmod tests") {
                    Some((code, _)) => code.to_owned(),
                    None => text,
                };
                out.push((path, text));
            }
        }
    }
    out
}

/// The string literal at the start of `s` (after spaces), its escapes undone but `{…}` kept.
fn literal(s: &str) -> Option<String> {
    let s = s.trim_start().strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                '\n' => {
                    while chars.as_str().starts_with(char::is_whitespace) {
                        chars.next();
                    }
                }
                other => out.push(other),
            },
            _ => out.push(c),
        }
    }
    None
}

/// A pattern: literal characters, and `None` for "any text".
type Pattern = Vec<Option<char>>;

/// A format string as a pattern: each `{…}` is any text, `{{`/`}}` a brace.
fn from_format(s: &str) -> Pattern {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => out.push(Some(chars.next().unwrap())),
            '}' if chars.peek() == Some(&'}') => out.push(Some(chars.next().unwrap())),
            '{' => {
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                }
                out.push(None);
            }
            _ => out.push(Some(c)),
        }
    }
    out
}

/// A documented line as a pattern: each `<…>` is any text.
fn from_doc(s: &str) -> Pattern {
    let mut out = Vec::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '<' && chars.as_str().contains('>') {
            for c in chars.by_ref() {
                if c == '>' {
                    break;
                }
            }
            out.push(None);
        } else {
            out.push(Some(c));
        }
    }
    out
}

/// Whether the documented line (`<…>`: any text) stands for the logged format string (`{…}`:
/// a value, which the doc may also write out as a word: `30s`, `4`, `[game:*]`).
fn documents(doc: &Pattern, code: &Pattern) -> bool {
    fn go(
        doc: &Pattern,
        code: &Pattern,
        i: usize,
        j: usize,
        memo: &mut BTreeMap<(usize, usize), bool>,
    ) -> bool {
        if let Some(&known) = memo.get(&(i, j)) {
            return known;
        }
        let answer = match (doc.get(i), code.get(j)) {
            (None, None) => true,
            // `<…>` stands for one or more characters or values of the format string.
            (Some(None), Some(_)) => {
                go(doc, code, i + 1, j + 1, memo)
                    || go(doc, code, i, j + 1, memo)
                    // A value the doc writes as text around a `<…>` (`[node:<id>]`).
                    || (code[j].is_none() && go(doc, code, i + 1, j, memo))
            }
            // A value written out as one word.
            (Some(Some(c)), Some(None)) if *c != ' ' => {
                go(doc, code, i + 1, j + 1, memo) || go(doc, code, i + 1, j, memo)
            }
            (Some(Some(x)), Some(Some(y))) => x == y && go(doc, code, i + 1, j + 1, memo),
            _ => false,
        };
        memo.insert((i, j), answer);
        answer
    }
    go(doc, code, 0, 0, &mut BTreeMap::new())
}

/// The format string of every `log::info!`, `log::warn!` and `log::error!` in `src/`.
fn logged() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, text) in sources() {
        for level in ["info", "warn", "error"] {
            for (at, _) in text.match_indices(&format!("log::{level}!(")) {
                let after = &text[at + level.len() + 7..];
                let after = after.trim_start();
                // `target: …,` comes first when given.
                let after = match after.strip_prefix("target:") {
                    Some(rest) => &rest[rest.find(',').unwrap() + 1..],
                    None => after,
                };
                let format = literal(after)
                    .unwrap_or_else(|| panic!("{}: a log line that is no literal", path.display()));
                out.push((format, path.display().to_string()));
            }
        }
    }
    out
}

#[test]
fn every_log_line_is_documented_and_every_documented_one_is_logged() {
    let protocol = read("docs/PROTOCOL.md");
    let documented: Vec<String> = table_after(&protocol, "## Log lines")
        .iter()
        .map(|row| quoted(&row[0]).concat())
        .collect();
    assert!(documented.len() >= 30, "{documented:?}");
    let logged = logged();
    assert!(logged.len() >= 40, "{logged:?}");
    let code: Vec<Pattern> = logged.iter().map(|(f, _)| from_format(f)).collect();
    let docs: Vec<Pattern> = documented.iter().map(|d| from_doc(d)).collect();
    let undocumented: Vec<&(String, String)> = logged
        .iter()
        .zip(&code)
        .filter(|(_, c)| !docs.iter().any(|d| documents(d, c)))
        .map(|(l, _)| l)
        .collect();
    let unlogged: Vec<&String> = documented
        .iter()
        .zip(&docs)
        .filter(|(_, d)| !code.iter().any(|c| documents(d, c)))
        .map(|(d, _)| d)
        .collect();
    assert!(
        undocumented.is_empty() && unlogged.is_empty(),
        "logged but not in PROTOCOL.md's log lines: {undocumented:#?}\n\
         in PROTOCOL.md but logged nowhere: {unlogged:#?}"
    );
}

#[test]
fn every_error_code_is_documented_and_every_documented_one_exists() {
    let protocol = read("docs/PROTOCOL.md");
    let known: BTreeSet<&str> = robot_race::measure::ERROR_CODES.into_iter().collect();
    // Documented: the WebSocket error table's codes, and every `NNN code` of an HTTP answer.
    let mut documented: BTreeSet<String> = table_after(
        &protocol,
        "A command is refused with an `error` message, and the connection stays open:",
    )
    .iter()
    .flat_map(|row| quoted(&row[0]))
    .collect();
    for q in quoted(&protocol) {
        if let Some((status, code)) = q.split_once(' ') {
            let is_code = code.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            if status.len() == 3 && status.parse::<u16>().is_ok_and(|s| s >= 400) && is_code {
                documented.insert(code.to_owned());
            }
        }
    }
    let unknown: Vec<&String> = documented
        .iter()
        .filter(|d| !known.contains(d.as_str()))
        .collect();
    let undocumented: Vec<&&str> = known
        .iter()
        .filter(|k| !protocol.contains(&format!("`{k}`")) && !documented.contains(**k))
        .collect();
    assert!(
        unknown.is_empty() && undocumented.is_empty(),
        "documented but not a code the server sends: {unknown:?}\n\
         sent but not in PROTOCOL.md: {undocumented:?}"
    );
    // And every code a source file sends (`ApiError::new(…, "code"`, `error_frame("code"`) is a
    // known one, or it would be counted as `other`.
    for (path, text) in sources() {
        for marker in ["error_frame(", "\"error\": \""] {
            for (at, _) in text.match_indices(marker) {
                let rest = &text[at + marker.len()..];
                let code = if marker.ends_with('"') {
                    rest.split('"').next().map(str::to_owned)
                } else {
                    literal(rest)
                };
                if let Some(code) = code.filter(|c| !c.is_empty()) {
                    assert!(
                        known.contains(code.as_str()),
                        "{}: sends {code:?}, not in measure::ERROR_CODES",
                        path.display()
                    );
                }
            }
        }
    }
}

#[test]
fn every_close_code_is_documented_and_every_documented_one_is_sent() {
    let numbers = BTreeMap::from([
        ("Normal", "1000"),
        ("Away", "1001"),
        ("Protocol", "1002"),
        ("Invalid", "1007"),
        ("Policy", "1008"),
        ("Size", "1009"),
    ]);
    let mut sent = BTreeSet::new();
    for (path, text) in sources() {
        let flat = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace("( ", "(");
        for (at, _) in flat.match_indices("reason(CloseCode::") {
            let rest = &flat[at + "reason(CloseCode::".len()..];
            let (name, rest) = rest.split_once(',').unwrap();
            let Some(text) = literal(rest) else { continue };
            let number = numbers.get(name).unwrap_or_else(|| {
                panic!("{}: CloseCode::{name} has no number here", path.display())
            });
            sent.insert((number.to_string(), text));
        }
    }
    assert!(sent.len() >= 8, "{sent:?}");
    let protocol = read("docs/PROTOCOL.md");
    let documented: BTreeSet<(String, String)> =
        table_after(&protocol, "### Heartbeat and close codes")
            .iter()
            .filter_map(|row| Some((quoted(&row[0]).pop()?, quoted(&row[1]).pop()?)))
            .collect();
    assert_eq!(
        sent, documented,
        "close codes sent (left) and in PROTOCOL.md (right)"
    );
}

/// Every metric a server exposes, alone or in a cluster, is in OPERATIONS.md's table with its
/// type, and every one in the table is exposed.
#[actix_rt::test]
async fn every_metric_is_documented_and_every_documented_one_is_exposed() {
    let alone = Server::start(&[]);
    let redis = Redis::start();
    let node = cluster_node(&redis, "d1", &[]);
    let mut exposed = BTreeMap::new();
    for server in [&alone, &node] {
        let (_, text) = scrape(server).await;
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
                (words.next(), words.next(), words.next(), words.next())
            {
                let name = match kind {
                    "counter" => format!("{name}_total"),
                    _ => name.to_owned(),
                };
                exposed.insert(name, kind.to_owned());
            }
        }
    }
    let operations = read("docs/OPERATIONS.md");
    let documented: BTreeMap<String, String> = table_after(&operations, "### Metrics")
        .iter()
        .map(|row| {
            let name = quoted(&row[0]).concat();
            let name = name.split('{').next().unwrap().to_owned();
            (name, row[1].clone())
        })
        .collect();
    assert_eq!(
        exposed, documented,
        "scraped (left) and in OPERATIONS.md (right)"
    );
}
