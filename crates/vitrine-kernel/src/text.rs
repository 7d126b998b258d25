//! Free text people type: names, descriptions, categories.

use std::fmt;

/// Trimmed, non-empty text of at most a given number of characters, without control
/// characters (line breaks and tabs only where [`Text::parse_multiline`] allows them).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Text(String);

/// Why a string is not acceptable text. Messages never repeat the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("must not be blank")]
    Blank,
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("must not contain control characters")]
    ControlCharacter,
}

impl Text {
    /// One line of at most `max` characters (not bytes), surrounding whitespace removed.
    pub fn parse(raw: &str, max: usize) -> Result<Text, TextError> {
        Self::checked(raw, max, |c| c.is_control())
    }

    /// Like [`Text::parse`], but line breaks and tabs are kept (descriptions).
    pub fn parse_multiline(raw: &str, max: usize) -> Result<Text, TextError> {
        Self::checked(raw, max, |c| {
            c.is_control() && !matches!(c, '\n' | '\r' | '\t')
        })
    }

    fn checked(raw: &str, max: usize, forbidden: impl Fn(char) -> bool) -> Result<Text, TextError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(TextError::Blank);
        }
        if trimmed.chars().count() > max {
            return Err(TextError::TooLong(max));
        }
        if trimmed.chars().any(forbidden) {
            return Err(TextError::ControlCharacter);
        }
        Ok(Text(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(Text::parse("  Acme  ", 10).unwrap().as_str(), "Acme");
        assert_eq!(Text::parse("   ", 10), Err(TextError::Blank));
        assert_eq!(Text::parse("abcdefghijk", 10), Err(TextError::TooLong(10)));
        assert_eq!(Text::parse("a\u{0}b", 10), Err(TextError::ControlCharacter));
        assert!(
            Text::parse("ção", 3).is_ok(),
            "length counts characters, not bytes"
        );
    }

    #[test]
    fn only_multiline_text_keeps_line_breaks() {
        assert!(Text::parse("linha 1\nlinha 2", 50).is_err());
        let text = Text::parse_multiline("linha 1\r\n\tlinha 2", 50).unwrap();
        assert_eq!(text.as_str(), "linha 1\r\n\tlinha 2");
        assert!(Text::parse_multiline("bell\u{7}", 50).is_err());
    }
}
