//! Player names: what a person counts as one character, and no hidden characters.

use super::{RuleError, MAX_NAME_CHARS};

/// A player's display name: 1–10 characters after trimming, no control characters.
///
/// Only [`PlayerName::parse`] builds one, so any `PlayerName` in the program is valid. HTML in a
/// name is allowed (it is escaped wherever it is shown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayerName(String);

impl PlayerName {
    /// 1–10 characters as a person counts them (grapheme clusters: an emoji with its skin
    /// tone is one), after trimming; no control characters, no bidi overrides or isolates
    /// (U+202E makes "evil" after it display as "live"), no invisible zero-width characters.
    pub fn parse(raw: &str) -> Result<Self, RuleError> {
        use unicode_segmentation::UnicodeSegmentation;
        let name = raw.trim();
        let count = name.graphemes(true).count();
        let invisible = name
            .graphemes(true)
            .any(|g| g.chars().all(|c| c == '\u{200D}' || hidden(c)));
        if count == 0
            || count > MAX_NAME_CHARS
            || name.chars().any(|c| c.is_control() || hidden(c))
            || invisible
        {
            return Err(RuleError::InvalidName);
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
