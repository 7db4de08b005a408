//! Redis keys, channels and the Lua scripts that keep one owner per game.
//!
//! | key / channel | what |
//! | --- | --- |
//! | `game_state:<id>` | the game's JSON, TTL 24 h renewed on every save |
//! | `game:<id>` (channel) | every committed change, and the end of the game |
//! | `game_owner:<id>` | the owning server's node id: a lease it renews |
//! | `game_epoch:<id>` | the game's claim, `<epoch>:<token> <version saved last>`: every claim takes a new one, every write checks it; `ended` once the game ended (a tombstone) |
//! | `game_restore:<id>` | while Redis lost a game: the best copy servers offered, since when, and by whom (see [`CLAIM`]) |
//! | `node:<node_id>` (channel) | that server's inbox: forwarded commands, errors, redirects |
//! | `node_alive:<node_id>` | that server's heartbeat, with a short TTL it renews |
//! | `robot_race:secret` | the shared secret that signs player tokens (unless `-secret` is set) |
//! | `robot_race:games_created` | the counter behind `/_stats` |
//!
//! On a Redis Cluster ([`Names::tagged`]) the ids carry hash tags, `game_state:{<id>}`,
//! `game_owner:{<id>}`, `game_epoch:{<id>}`, `game_restore:{<id>}`, `game:{<id>}`, `node:{<node_id>}`, `node_alive:{<node_id>}`, so that a
//! game's keys and channel share one slot (every script below touches one slot only), and the
//! channels are shard channels (`SPUBLISH`, `SSUBSCRIBE`). A claim's liveness check of another
//! server (`node_alive:`, another slot) is read before the script and passed in (`CLAIM`'s
//! `ARGV[5]`).
//!
//! Every write is fenced: a save only while `game_epoch:<id>` still holds this server's claim
//! (its epoch and random token, compared whole), and only with a version above the one saved
//! last under it; the other scripts also on `game_owner:<id>` naming this server. A claim takes
//! a new epoch and token, so a server that lost a game (its lease lapsed while it was frozen,
//! say) cannot overwrite what the new owner saved, nor publish it — not even after claiming
//! the game back, when a write from its earlier ownership arrives late (a cut connection
//! delivering what it held), and not even when Redis forgot the game and a claim hands out an
//! epoch number again (the token differs). The epoch also numbers versions (see
//! `node::game_task`): an owner's versions start above `epoch × 10⁹`, and a claim's epoch is
//! above the epoch of every version its claimant knows, so two owners never give one version
//! number to two states. An ended game leaves `ended` there for a day: no claim takes it again.

use redis::Script;

/// How long a saved game lives in Redis without being saved again.
pub const STATE_TTL_SECS: u64 = 24 * 60 * 60;
pub const SECRET_KEY: &str = "robot_race:secret";
pub const CREATED_KEY: &str = "robot_race:games_created";
/// Channels every server subscribes to by pattern.
pub const GAME_PATTERN: &str = "game:*";

/// Key and channel names: plain on one Redis, hash-tagged on a Redis Cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Names {
    /// Redis Cluster: `{<id>}` hash tags, so a game's keys and channel share a slot.
    pub tagged: bool,
}

impl Names {
    fn name(self, prefix: &str, id: &str) -> String {
        if self.tagged {
            format!("{prefix}{{{id}}}")
        } else {
            format!("{prefix}{id}")
        }
    }
    pub fn state(self, game_id: &str) -> String {
        self.name("game_state:", game_id)
    }
    pub fn owner(self, game_id: &str) -> String {
        self.name("game_owner:", game_id)
    }
    pub fn epoch(self, game_id: &str) -> String {
        self.name("game_epoch:", game_id)
    }
    pub fn restore(self, game_id: &str) -> String {
        self.name("game_restore:", game_id)
    }
    pub fn game_channel(self, game_id: &str) -> String {
        self.name("game:", game_id)
    }
    pub fn inbox(self, node_id: &str) -> String {
        self.name("node:", node_id)
    }
    pub fn alive(self, node_id: &str) -> String {
        self.name("node_alive:", node_id)
    }
    /// The game a `game:` channel is about.
    pub fn game_of(self, channel: &str) -> Option<&str> {
        let id = channel.strip_prefix("game:")?;
        if self.tagged {
            id.strip_prefix('{')?.strip_suffix('}')
        } else {
            Some(id)
        }
    }
    /// The publish command: `SPUBLISH` (shard channels) on a cluster.
    pub fn publish(self) -> &'static str {
        if self.tagged {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }
}

/// The Redis Cluster hash slot of a key or channel (CRC16/XMODEM of its hash tag, mod 16384).
pub fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|b| *b == b'{').and_then(|open| {
        let close = bytes[open + 1..].iter().position(|b| *b == b'}')?;
        (close > 0).then(|| &bytes[open + 1..open + 1 + close])
    });
    let mut crc: u16 = 0;
    for byte in tagged.unwrap_or(bytes) {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// What `game_epoch:<id>` holds once the game ended: every claim refuses it (no server restores
/// an ended game from its copy), every save and end is fenced by it.
pub const TOMBSTONE: &str = "ended";

/// Store the game's JSON and publish the change, while `game_epoch:<id>` still holds this
/// server's claim (`<epoch>:<token> <version saved last>`, see [`CLAIM`]) and a lower version
/// than this one: 1 done (or already done: Redis holds this version or a newer one under the
/// same claim, as when a retried save arrives after a later one), 0 another claim (another
/// server, this one again, or the game's end) has the game, 2 no claim at all (Redis lost the
/// game: claim it again). The claim alone fences: a lapsed lease that nobody claimed loses
/// nothing by one more save (the lease is renewed apart, in batches, and a renewal that finds
/// it lapsed claims again). The owner sends the whole JSON it holds, so Redis does no work on
/// the text (Lua string work on a 2 KB document was most of a press's Redis CPU); the claim
/// is a few dozen bytes.
/// KEYS: epoch, state. ARGV: fence, state JSON, channel, message, TTL s, version.
const SAVE: &str = r"
local held = redis.call('GET', KEYS[1])
if not held then return 2 end
local fence, version = string.match(held, '^(%S+) (%d+)$')
if fence ~= ARGV[1] then return 0 end
if tonumber(version) >= tonumber(ARGV[6]) then return 1 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[5])
redis.call('SET', KEYS[1], fence .. ' ' .. ARGV[6], 'EX', ARGV[5])
redis.call('@PUBLISH', ARGV[3], ARGV[4])
return 1";

/// End a game: delete its state and lease, leave the tombstone for as long as a state lives,
/// and tell every server, unless another node (or claim) owns it.
/// KEYS: owner, state, epoch. ARGV: node, channel, message, fence, TTL s.
const TERMINATE: &str = r"
local o = redis.call('GET', KEYS[1])
if o and o ~= ARGV[1] then return 0 end
local held = redis.call('GET', KEYS[3])
if held and string.match(held, '^%S+') ~= ARGV[4] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SET', KEYS[3], '@TOMBSTONE', 'EX', ARGV[5])
redis.call('@PUBLISH', ARGV[2], ARGV[3])
return 1";

/// Extend a lease we hold (and the claim key, which lives as long as the game). 1 held, 2
/// nobody owns it (never re-taken here: a renewal must not undo a release, and a lost game is
/// re-claimed through CLAIM), 0 another owns it.
/// KEYS: owner, epoch. ARGV: node, lease ms, TTL s.
const RENEW: &str = r"
local o = redis.call('GET', KEYS[1])
if o == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  return 1
end
if not o then return 2 end
return 0";

/// Take a game unless a live server owns it or it ended. ARGV[5] names an owner found dead
/// (its heartbeat is gone), whose lease may be taken over. A missing state is created from
/// ARGV[3] when one is given: at once for a new game (ARGV[8] empty), else (a copy Redis lost,
/// ARGV[8] its version) only once the copies are weighed: every claimant's offer goes to
/// `game_restore:<id>` (`<best version> <first offer, ms> <highest floor> <its node>`), and
/// the best one's node takes the game once ARGV[9] ms passed since the first offer; the
/// others are told {4, best node, 0} and ask again. The key lives ten windows from the first
/// offer, so a best offerer that died does not hold the game up. The claim takes an epoch above
/// the one Redis holds and at least ARGV[6] (the claimant's floor: above every version it
/// knows, so a claim made after Redis forgot the game still numbers its versions above what
/// screens were shown; a restore takes the highest floor offered), and the claimant's random
/// token ARGV[7]; `game_epoch:<id>` becomes `<epoch>:<token> 0`.
/// Returns {0, '', 0} no such game, {1, state, epoch} ours now, {2, owner, 0} owned, {3, '',
/// 0} ended, {4, best node, 0} copies are being weighed.
/// KEYS: owner, state, epoch, restore. ARGV: node, lease ms, fallback JSON, TTL s, dead owner,
/// floor, token, copy version, window ms.
const CLAIM: &str = r"
local held = redis.call('GET', KEYS[3])
if held == '@TOMBSTONE' then return {3, '', 0} end
local o = redis.call('GET', KEYS[1])
if o and o ~= ARGV[1] and o ~= ARGV[5] then return {2, o, 0} end
local e = tonumber(ARGV[6])
local state = redis.call('GET', KEYS[2])
if not state then
  if ARGV[3] == '' then return {0, '', 0} end
  if ARGV[8] ~= '' then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    local best, node, since, top = tonumber(ARGV[8]), ARGV[1], now, e
    local offer = redis.call('GET', KEYS[4])
    if offer then
      local v, s, f, n = string.match(offer, '^(%d+) (%d+) (%d+) (.+)$')
      if tonumber(v) >= best then best, node = tonumber(v), n end
      since = tonumber(s)
      if tonumber(f) > top then top = tonumber(f) end
    end
    local window = tonumber(ARGV[9])
    if node ~= ARGV[1] or now - since < window then
      local ttl = since + 10 * window - now
      if ttl < 1 then ttl = 1 end
      redis.call('SET', KEYS[4], string.format('%.0f %.0f %.0f %s', best, since, top, node), 'PX', ttl)
      return {4, node, 0}
    end
    redis.call('DEL', KEYS[4])
    e = top
  end
  state = ARGV[3]
  redis.call('SET', KEYS[2], state, 'EX', ARGV[4])
end
local before = held and tonumber(string.match(held, '^(%d+)'))
if before and before + 1 > e then e = before + 1 end
redis.call('SET', KEYS[3], string.format('%d:%s 0', e, ARGV[7]), 'EX', ARGV[4])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, state, e}";

/// Hand a game to another server: its lease becomes theirs, only if the lease and the claim
/// are still ours (the claim stays until theirs replaces it; every write of ours after this
/// is fenced by it). 1 done, 0 not ours.
/// KEYS: owner, epoch. ARGV: node, fence, new owner, lease ms.
const HAND_OVER: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local held = redis.call('GET', KEYS[2])
if not held or string.match(held, '^%S+') ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
return 1";

/// Give a game up, only if it is still ours.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0";

/// The scripts, loaded on every connect so that pipelines can use EVALSHA (on a cluster each
/// call goes alone to its slot's master, and a master that lacks a script, say one just
/// promoted, is given it on the spot).
pub struct Scripts {
    pub save: Script,
    pub terminate: Script,
    pub renew: Script,
    pub claim: Script,
    pub hand_over: Script,
    pub release: Script,
}

impl Scripts {
    pub fn new(names: Names) -> Scripts {
        let publish = |text: &str| {
            Script::new(
                &text
                    .replace("@PUBLISH", names.publish())
                    .replace("@TOMBSTONE", TOMBSTONE),
            )
        };
        Scripts {
            save: publish(SAVE),
            terminate: publish(TERMINATE),
            renew: Script::new(RENEW),
            claim: publish(CLAIM),
            hand_over: Script::new(HAND_OVER),
            release: Script::new(RELEASE),
        }
    }

    pub fn all(&self) -> [&Script; 6] {
        [
            &self.save,
            &self.terminate,
            &self.renew,
            &self.claim,
            &self.hand_over,
            &self.release,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_games_keys_share_a_slot_on_a_cluster() {
        // Values from `CLUSTER KEYSLOT`.
        assert_eq!(slot("123456789"), 12739);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("user1000"));
        assert_eq!(slot("foo{}{bar}"), slot("foo{}{bar}"));
        let names = Names { tagged: true };
        let id = "aB3_x";
        assert_eq!(names.state(id), "game_state:{aB3_x}");
        let s = slot(&names.state(id));
        assert_eq!(slot(&names.owner(id)), s);
        assert_eq!(slot(&names.epoch(id)), s);
        assert_eq!(slot(&names.restore(id)), s);
        assert_eq!(slot(&names.game_channel(id)), s);
        assert_eq!(names.game_of(&names.game_channel(id)), Some(id));
        assert_eq!(slot(&names.alive("n1")), slot(&names.inbox("n1")));
        let plain = Names { tagged: false };
        assert_eq!(plain.state(id), "game_state:aB3_x");
        assert_eq!(plain.game_of("game:aB3_x"), Some(id));
        assert!(Scripts::new(names).save.get_hash() != Scripts::new(plain).save.get_hash());
    }
}
