//! Every game in Redis, one hash per game (`sio:game:<id>`), with the same fields, Lua scripts
//! and key layout as `bench/socketio/server.js`, so either peer could serve the other's games:
//! state, winning score (`ws`), version (`ver`), robot order, each robot's name (`n:<robot>`)
//! and score (`s:<robot>`), each token (`t:<token>` -> robot id).

use std::collections::HashMap;

use rand::RngCore;
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, RedisResult, Script};
use serde::Serialize;
use unicode_segmentation::UnicodeSegmentation;

/// How long a game's hash lives after its creation or its last join.
pub const TTL: i64 = 24 * 3600;

pub fn key(id: &str) -> String {
    format!("sio:game:{id}")
}

/// The Socket.IO room of a game's players.
pub fn room(id: &str) -> String {
    format!("game:{id}")
}

/// KEYS[1] game; ARGV robot id, name, token. -> "ok" or an error code.
const JOIN: &str = r"
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return 'not_found' end
if st ~= 'setup' then return 'game_in_progress' end
local order = redis.call('HGET', KEYS[1], 'order')
local _, commas = string.gsub(order, ',', '')
if commas + 1 >= 10 then return 'game_full' end
redis.call('HSET', KEYS[1], 'order', order .. ',' .. ARGV[1], 'n:' .. ARGV[1], ARGV[2],
  's:' .. ARGV[1], 0, 't:' .. ARGV[3], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'ver', 1)
redis.call('EXPIRE', KEYS[1], TTL)
return 'ok'";

/// KEYS[1] game; ARGV robot id. -> "ok" or an error code.
const START: &str = r"
local v = redis.call('HMGET', KEYS[1], 'state', 'admin', 'order')
if not v[1] then return 'not_found' end
if v[2] ~= ARGV[1] then return 'permission_denied' end
if v[1] ~= 'setup' then return 'invalid_state' end
if not string.find(v[3], ',') then return 'not_enough_players' end
redis.call('HSET', KEYS[1], 'state', 'playing')
redis.call('HINCRBY', KEYS[1], 'ver', 1)
return 'ok'";

/// KEYS[1] game; ARGV robot id. -> nil (not playing: nothing changes),
/// {version, score, score, ...} in robot order, or {0} when this press won (a full update).
const PRESS: &str = r"
local v = redis.call('HMGET', KEYS[1], 'state', 'order', 'ws')
if v[1] ~= 'playing' then return nil end
local mine = redis.call('HINCRBY', KEYS[1], 's:' .. ARGV[1], 1)
local ver = redis.call('HINCRBY', KEYS[1], 'ver', 1)
if mine >= tonumber(v[3]) then
  redis.call('HSET', KEYS[1], 'state', 'finished', 'winner', ARGV[1])
  return {0}
end
local fields = {}
for rid in string.gmatch(v[2], '[^,]+') do fields[#fields + 1] = 's:' .. rid end
local scores = redis.call('HMGET', KEYS[1], unpack(fields))
local out = {ver}
for i = 1, #scores do out[i + 1] = tonumber(scores[i]) end
return out";

/// The GAME view (docs/PROTOCOL.md), fields in the order server.js writes them.
#[derive(Serialize)]
pub struct Game {
    pub id: String,
    pub state: String,
    pub countdown: u8,
    pub winning_score: i64,
    pub version: i64,
    pub robots: Vec<Robot>,
    pub leaderboard: [u8; 0],
    pub winner: Option<String>,
}

#[derive(Serialize)]
pub struct Robot {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub score: i64,
    pub admin: bool,
    pub connected: bool,
}

/// A seat handed out by `POST /api/games` or `POST /api/games/<id>/players`.
pub struct Seat {
    pub robot_id: String,
    pub token: String,
}

/// The commands connection (multiplexed: every task shares it, its commands pipelined) and the
/// scripts (run with `EVALSHA`, loaded on `NOSCRIPT`).
pub struct Store {
    conn: MultiplexedConnection,
    join: Script,
    start: Script,
    press: Script,
}

impl Store {
    pub fn new(conn: MultiplexedConnection) -> Self {
        Store {
            conn,
            join: Script::new(&JOIN.replace("TTL", &TTL.to_string())),
            start: Script::new(START),
            press: Script::new(PRESS),
        }
    }

    fn conn(&self) -> MultiplexedConnection {
        self.conn.clone()
    }

    /// Whether Redis answers a `PING` within a second.
    pub async fn ping(&self) -> bool {
        let mut conn = self.conn();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(1), ping).await,
            Ok(Ok(_))
        )
    }

    /// The game's view, or `None` when there is no such game.
    pub async fn load(&self, id: &str) -> RedisResult<Option<Game>> {
        let h: HashMap<String, String> = self.conn().hgetall(key(id)).await?;
        Ok(h.contains_key("state").then(|| view(id, &h)))
    }

    /// The robot a token seats in a game.
    pub async fn robot_of(&self, id: &str, token: &str) -> RedisResult<Option<String>> {
        self.conn().hget(key(id), format!("t:{token}")).await
    }

    /// A new game in `setup` with its creator as admin: `(game id, creator's seat)`.
    pub async fn create(&self, name: &str, winning_score: i64) -> RedisResult<(String, Seat)> {
        let id = new_id(6);
        let seat = new_seat();
        let k = key(&id);
        let rid = &seat.robot_id;
        redis::pipe()
            .atomic()
            .cmd("HSET")
            .arg(&k)
            .arg(&[
                ("state", "setup"),
                ("ws", &winning_score.to_string()),
                ("ver", "1"),
                ("admin", rid),
                ("order", rid),
                (&format!("n:{rid}"), name),
                (&format!("s:{rid}"), "0"),
                (&format!("t:{}", seat.token), rid),
            ])
            .ignore()
            .expire(&k, TTL)
            .ignore()
            .query_async::<()>(&mut self.conn())
            .await?;
        Ok((id, seat))
    }

    /// Joins a game in setup: the new seat, or the script's error code.
    pub async fn join(&self, id: &str, name: &str) -> RedisResult<Result<Seat, String>> {
        let seat = new_seat();
        let r: String = self
            .join
            .key(key(id))
            .arg(&seat.robot_id)
            .arg(name)
            .arg(&seat.token)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(if r == "ok" { Ok(seat) } else { Err(r) })
    }

    /// The admin starts the race: "ok" or an error code.
    pub async fn start(&self, id: &str, robot: &str) -> RedisResult<String> {
        self.start
            .key(key(id))
            .arg(robot)
            .invoke_async(&mut self.conn())
            .await
    }

    /// A press: `None` when the game is not playing, `[0]` when it won, else
    /// `[version, score, score, ...]` in robot order.
    pub async fn press(&self, id: &str, robot: &str) -> RedisResult<Option<Vec<i64>>> {
        self.press
            .key(key(id))
            .arg(robot)
            .invoke_async(&mut self.conn())
            .await
    }
}

/// The GAME view from the game's hash.
fn view(id: &str, h: &HashMap<String, String>) -> Game {
    let num = |field: &str| h.get(field).and_then(|v| v.parse().ok()).unwrap_or(0);
    let admin = h.get("admin").map(String::as_str);
    let robots = match h.get("order").map(String::as_str) {
        None | Some("") => Vec::new(),
        Some(order) => order
            .split(',')
            .map(|rid| Robot {
                id: rid.to_owned(),
                name: h.get(&format!("n:{rid}")).cloned(),
                score: num(&format!("s:{rid}")),
                admin: Some(rid) == admin,
                connected: true,
            })
            .collect(),
    };
    Game {
        id: id.to_owned(),
        state: h.get("state").cloned().unwrap_or_default(),
        countdown: 0,
        winning_score: num("ws"),
        version: num("ver"),
        robots,
        leaderboard: [],
        winner: h.get("winner").filter(|w| !w.is_empty()).cloned(),
    }
}

fn new_seat() -> Seat {
    Seat {
        robot_id: new_id(6),
        token: new_id(18),
    }
}

/// `n` random bytes as base64url without padding (Node's `randomBytes(n).toString("base64url")`).
pub fn new_id(n: usize) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    let mut out = String::with_capacity(n.div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ABC[(v >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A robot name as server.js accepts it: a string, trimmed (JavaScript's `trim`), 1 to 10
/// graphemes, no control, zero-width or bidirectional-override characters.
pub fn valid_name(v: &serde_json::Value) -> Option<String> {
    let name = v
        .as_str()?
        .trim_matches(|c: char| (c.is_whitespace() && c != '\u{85}') || c == '\u{feff}');
    let n = name.graphemes(true).count();
    let banned = |c: char| {
        matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}' | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    ((1..=10).contains(&n) && !name.chars().any(banned)).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_base64url() {
        assert_eq!(new_id(6).len(), 8);
        assert_eq!(new_id(18).len(), 24);
        assert_eq!(new_id(4).len(), 6);
        assert!(new_id(18)
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn names() {
        let s = |v: &str| valid_name(&serde_json::json!(v));
        assert_eq!(s("  Ada "), Some("Ada".into()));
        assert_eq!(s(""), None);
        assert_eq!(s("abcdefghijk"), None);
        assert_eq!(s("a\u{200b}b"), None);
        assert_eq!(s("👍🏽👍🏽"), Some("👍🏽👍🏽".into()));
        assert_eq!(valid_name(&serde_json::json!(5)), None);
    }
}
