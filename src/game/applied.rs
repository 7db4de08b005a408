//! Which numbered commands a game has applied: the owner's side of "exactly once".

use serde::{Deserialize, Serialize};

/// How far each origin's numbered commands have been applied: origin → the last number.
///
/// An origin (one server process) numbers its commands for a game 1, 2, 3… and resends any
/// that were not acknowledged, in order. A number at or below the last applied is a repeat;
/// one beyond the next is out of order (an earlier one is missing) and waits for the resend —
/// also from an origin not seen before, so that a command overtaken by a later one on its way
/// is never taken for a repeat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied(Vec<(String, u64)>);

/// Origins remembered per game; the least recently seen is forgotten first.
pub(super) const MAX_ORIGINS: usize = 64;

/// What to do with a numbered command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Next in line: apply it (now recorded as applied).
    Apply,
    /// Already applied.
    Repeat,
    /// An earlier command from the same origin has not arrived yet.
    OutOfOrder,
}

impl Applied {
    /// The last number applied from `origin`.
    pub fn last(&self, origin: &str) -> Option<u64> {
        self.0.iter().find(|(o, _)| o == origin).map(|(_, n)| *n)
    }

    /// Decides on command `seq` from `origin`, recording it when it is to be applied. `after`:
    /// the sender's word that every number up to it was acknowledged (so an origin seen for the
    /// first time starts right after it, and one this game's record is behind on, as when it
    /// was restored from an older copy, goes on from there).
    pub fn admit(&mut self, origin: &str, seq: u64, after: u64) -> Admit {
        match self.0.iter().position(|(o, _)| o == origin) {
            Some(i) => {
                let last = self.0[i].1.max(after);
                if seq <= last {
                    return Admit::Repeat;
                }
                if seq > last + 1 {
                    return Admit::OutOfOrder;
                }
                let mut entry = self.0.remove(i);
                entry.1 = seq;
                self.0.push(entry);
            }
            None => {
                if seq <= after {
                    return Admit::Repeat;
                }
                if seq > after + 1 {
                    return Admit::OutOfOrder;
                }
                if self.0.len() >= MAX_ORIGINS {
                    self.0.remove(0);
                }
                self.0.push((origin.to_owned(), seq));
            }
        }
        Admit::Apply
    }
}
