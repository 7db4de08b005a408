//! Player names: what a person counts as one character, and no hidden characters.

use super::{RuleError, MAX_NAME_CHARS};

/// A player's display name: 1–10 characters and at most 40 bytes after trimming, nothing
/// hidden, no stacked combining marks.
///
/// Only [`PlayerName::parse`] builds one, so any `PlayerName` in the program is valid. HTML in a
/// name is allowed (it is escaped wherever it is shown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayerName(String);

/// Bytes of UTF-8 a name may take: 10 characters of most scripts, fewer of emoji sequences.
pub const MAX_NAME_BYTES: usize = 40;
/// Combining marks one character may carry (Vietnamese and Indic names need two; "Zalgo"
/// text stacks dozens, drawn over the lanes above and below).
pub const MAX_COMBINING_MARKS: usize = 2;

/// Which rule a refused name broke: its message says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameRule {
    #[error("Name must be 1 to 10 characters: it is empty")]
    Empty,
    #[error("Name must be 1 to 10 characters: it is longer")]
    TooLong,
    #[error("Name must be at most 40 bytes of UTF-8 (emoji take several)")]
    TooManyBytes,
    #[error("Name must not contain invisible or control characters")]
    Hidden,
    #[error("Name must not stack more than 2 accents or marks on one character")]
    StackedMarks,
    /// A refusal relayed from another server, whose reason is not known here.
    #[error("Name must be 1 to 10 characters, without invisible or control characters")]
    Invalid,
}

impl PlayerName {
    /// 1–10 characters as a person counts them (grapheme clusters: an emoji with its skin
    /// tone is one) and at most [`MAX_NAME_BYTES`], after trimming; no control characters, no
    /// bidi overrides or isolates (U+202E makes "evil" after it display as "live"), no
    /// invisible zero-width characters, no character with more than
    /// [`MAX_COMBINING_MARKS`] combining marks.
    pub fn parse(raw: &str) -> Result<Self, RuleError> {
        use unicode_normalization::char::is_combining_mark;
        use unicode_segmentation::UnicodeSegmentation;
        let refuse = |rule| Err(RuleError::InvalidName(rule));
        let name = raw.trim();
        let count = name.graphemes(true).count();
        let invisible = name
            .graphemes(true)
            .any(|g| g.chars().all(|c| c == '\u{200D}' || hidden(c)));
        if count == 0 {
            return refuse(NameRule::Empty);
        }
        if name.chars().any(|c| c.is_control() || hidden(c)) || invisible {
            return refuse(NameRule::Hidden);
        }
        let stacked = name
            .graphemes(true)
            .any(|g| g.chars().filter(|c| is_combining_mark(*c)).count() > MAX_COMBINING_MARKS);
        if stacked {
            return refuse(NameRule::StackedMarks);
        }
        if count > MAX_NAME_CHARS {
            return refuse(NameRule::TooLong);
        }
        if name.len() > MAX_NAME_BYTES {
            return refuse(NameRule::TooManyBytes);
        }
        Ok(PlayerName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Bidi controls and zero-width characters (the zero-width joiner is allowed inside an emoji
/// sequence, never on its own).
fn hidden(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200C}'
            | '\u{200E}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}
