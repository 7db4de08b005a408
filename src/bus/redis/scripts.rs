//! Redis keys, channels and the Lua scripts that keep one owner per game.
//!
//! | key / channel | what |
//! | --- | --- |
//! | `game_state:<id>` | the game's JSON, TTL 24 h renewed on every save |
//! | `game:<id>` (channel) | every committed change, and the end of the game |
//! | `game_owner:<id>` | the owning server's node id: a lease it renews |
//! | `node:<node_id>` (channel) | that server's inbox: forwarded commands, errors, redirects |
//! | `node_alive:<node_id>` | that server's heartbeat, with a short TTL it renews |
//! | `robot_race:secret` | the shared secret that signs player tokens (unless `-secret` is set) |
//! | `robot_race:games_created` | the counter behind `/_stats` |
//!
//! Every write is fenced: it happens only while `game_owner:<id>` names this server, so a
//! server that lost a game (its lease lapsed while it was frozen, say) cannot overwrite what
//! the new owner saved, nor publish it.

use redis::Script;

/// How long a saved game lives in Redis without being saved again.
pub const STATE_TTL_SECS: u64 = 24 * 60 * 60;
pub const SECRET_KEY: &str = "robot_race:secret";
pub const CREATED_KEY: &str = "robot_race:games_created";
/// Channels every server subscribes to by pattern.
pub const GAME_PATTERN: &str = "game:*";

pub fn state_key(game_id: &str) -> String {
    format!("game_state:{game_id}")
}
pub fn owner_key(game_id: &str) -> String {
    format!("game_owner:{game_id}")
}
pub fn game_channel(game_id: &str) -> String {
    format!("game:{game_id}")
}
pub fn inbox_channel(node_id: &str) -> String {
    format!("node:{node_id}")
}
pub fn alive_key(node_id: &str) -> String {
    format!("node_alive:{node_id}")
}

/// Save and publish while this node owns the game. 1 done, 0 another owns it, 2 nobody does.
const SAVE: &str = r"
local o = redis.call('GET', KEYS[1])
if o ~= ARGV[1] then
  if o then return 0 end
  return 2
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[6])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1";

/// End a game: delete it and tell every server, unless another node owns it.
const TERMINATE: &str = r"
local o = redis.call('GET', KEYS[1])
if o and o ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1";

/// Extend a lease we hold. 1 held, 2 nobody owns it (never re-taken here: a renewal must not
/// undo a release, and a lost game is re-claimed through CLAIM), 0 another owns it.
const RENEW: &str = r"
local o = redis.call('GET', KEYS[1])
if o == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not o then return 2 end
return 0";

/// Take a game unless a live server owns it. ARGV[5] names an owner found dead (its heartbeat
/// is gone), whose lease may be taken over. A missing state is created from ARGV[3] when one
/// is given. Returns {0, ''} no such game, {1, state} ours now, {2, owner} owned.
const CLAIM: &str = r"
local o = redis.call('GET', KEYS[1])
if o and o ~= ARGV[1] and o ~= ARGV[5] then return {2, o} end
local state = redis.call('GET', KEYS[2])
if not state then
  if ARGV[3] == '' then return {0, ''} end
  state = ARGV[3]
  redis.call('SET', KEYS[2], state, 'EX', ARGV[4])
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, state}";

/// Give a game up, only if it is still ours.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0";

/// The scripts, loaded on every connect so that pipelines can use EVALSHA.
pub struct Scripts {
    pub save: Script,
    pub terminate: Script,
    pub renew: Script,
    pub claim: Script,
    pub release: Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            save: Script::new(SAVE),
            terminate: Script::new(TERMINATE),
            renew: Script::new(RENEW),
            claim: Script::new(CLAIM),
            release: Script::new(RELEASE),
        }
    }

    pub fn all(&self) -> [&Script; 5] {
        [
            &self.save,
            &self.terminate,
            &self.renew,
            &self.claim,
            &self.release,
        ]
    }
}
