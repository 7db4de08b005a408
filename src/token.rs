//! Player tokens: `<robot_id>.<hmac>` where the HMAC-SHA256 covers the game id and robot id.
//!
//! Any server that knows the secret can check a token without a lookup, so a player's cookie
//! from one server works on every other. In a cluster the servers agree on the secret through
//! Redis (see `bus::redis`), unless an operator sets one; until then a server signs with a random
//! secret of its own and keeps accepting tokens signed with it.

use std::sync::RwLock;

use ring::hmac;

/// Signs and checks player tokens. Cheap to share (`Arc`).
pub struct Tokens {
    /// Newest first: the first signs, all verify.
    keys: RwLock<Vec<hmac::Key>>,
}

impl Tokens {
    pub fn new(secret: &[u8]) -> Tokens {
        Tokens {
            keys: RwLock::new(vec![hmac::Key::new(hmac::HMAC_SHA256, secret)]),
        }
    }

    /// From now on, sign with `secret` (the cluster's shared one); keep accepting the old ones.
    pub fn adopt(&self, secret: &[u8]) {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        keys.insert(0, key);
        keys.truncate(4);
    }

    pub fn issue(&self, game_id: &str, robot_id: &str) -> String {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let tag = hmac::sign(&keys[0], message(game_id, robot_id).as_bytes());
        format!("{robot_id}.{}", hex(&tag.as_ref()[..20]))
    }

    /// The robot id a valid token for this game names; `None` for anything else.
    pub fn verify(&self, game_id: &str, token: &str) -> Option<String> {
        let (robot_id, tag_hex) = token.split_once('.')?;
        if robot_id.is_empty() || robot_id.len() > 64 {
            return None;
        }
        let tag = unhex(tag_hex)?;
        let msg = message(game_id, robot_id);
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .any(|key| {
                let full = hmac::sign(key, msg.as_bytes());
                // Constant time: verify against the truncated tag by re-signing and comparing all.
                tag.len() == 20 && ring_eq(&full.as_ref()[..20], &tag)
            })
            .then(|| robot_id.to_owned())
    }
}

fn message(game_id: &str, robot_id: &str) -> String {
    format!("robot-race/v1/{game_id}/{robot_id}")
}

fn ring_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_for_their_game_and_secret() {
        let a = Tokens::new(b"one");
        let t = a.issue("game1", "robotA");
        assert_eq!(a.verify("game1", &t).as_deref(), Some("robotA"));
        assert_eq!(a.verify("game2", &t), None);
        assert_eq!(Tokens::new(b"two").verify("game1", &t), None);
        let forged = t.replacen("robotA", "robotB", 1);
        assert_eq!(a.verify("game1", &forged), None);
        for junk in ["", ".", "robotA", "robotA.zz", "robotA.ééé", "x.0", "é.é"] {
            assert_eq!(a.verify("game1", junk), None, "{junk}");
        }
    }

    #[test]
    fn adopting_a_shared_secret_keeps_old_tokens_valid() {
        let node1 = Tokens::new(b"local1");
        let node2 = Tokens::new(b"local2");
        let early = node1.issue("g", "r1");
        node1.adopt(b"shared");
        node2.adopt(b"shared");
        let late = node1.issue("g", "r2");
        assert_eq!(node2.verify("g", &late).as_deref(), Some("r2"));
        assert_eq!(node1.verify("g", &early).as_deref(), Some("r1"));
    }
}
