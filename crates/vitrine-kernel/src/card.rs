//! Payment card numbers (PAN) and expiry dates.
//!
//! A [`CardNumber`] is cardholder data: it has no `Display` or serde support, its `Debug` shows
//! only the brand and last four digits, its memory is wiped on drop, and reading the digits
//! requires calling [`CardNumber::expose`] so every such place can be found with grep.

use std::fmt;

use chrono::{Datelike, NaiveDate};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

const MIN_LEN: usize = 12;
const MAX_LEN: usize = 19;

/// Card network, as far as it can be told from the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CardBrand {
    Visa,
    Mastercard,
    Amex,
    Elo,
    Hipercard,
    Other,
}

impl CardBrand {
    /// Lowercase identifier, e.g. `visa`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            CardBrand::Visa => "visa",
            CardBrand::Mastercard => "mastercard",
            CardBrand::Amex => "amex",
            CardBrand::Elo => "elo",
            CardBrand::Hipercard => "hipercard",
            CardBrand::Other => "other",
        }
    }
}

impl fmt::Display for CardBrand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Published Elo BIN ranges (first six digits, inclusive).
const ELO_RANGES: &[(u32, u32)] = &[
    (401_178, 401_179),
    (431_274, 431_274),
    (438_935, 438_935),
    (451_416, 451_416),
    (457_393, 457_393),
    (457_631, 457_632),
    (504_175, 504_175),
    (506_699, 506_778),
    (509_000, 509_999),
    (627_780, 627_780),
    (636_297, 636_297),
    (636_368, 636_368),
    (650_031, 650_033),
    (650_035, 650_051),
    (650_405, 650_439),
    (650_485, 650_538),
    (650_541, 650_598),
    (650_700, 650_718),
    (650_720, 650_727),
    (650_901, 650_978),
    (651_652, 651_679),
    (655_000, 655_019),
    (655_021, 655_058),
];

/// Published Hipercard BINs (first six digits).
const HIPERCARD_BINS: &[u32] = &[
    606_282, 384_100, 384_140, 384_160, 637_095, 637_568, 637_599, 637_609, 637_612,
];

/// A card number that passed the Luhn check. Holds digits only; wiped from memory on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct CardNumber(String);

/// Why a string is not a valid card number. Messages never contain any digits of the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardNumberError {
    #[error("must not be empty")]
    Empty,
    #[error("may contain only digits, spaces and dashes")]
    InvalidCharacter,
    #[error("must have between 12 and 19 digits")]
    WrongLength,
    #[error("is not a valid card number (checksum failed)")]
    ChecksumMismatch,
}

impl CardNumber {
    /// Parses a card number, ignoring spaces and dashes between digit groups.
    pub fn parse(input: &str) -> Result<CardNumber, CardNumberError> {
        // Capacity covers the worst case so the buffer never reallocates and leaves a copy of
        // the digits behind; Zeroizing wipes it on every early return.
        let mut digits = Zeroizing::new(String::with_capacity(input.len()));
        for c in input.trim().chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' => {}
                _ => return Err(CardNumberError::InvalidCharacter),
            }
        }
        if digits.is_empty() {
            return Err(CardNumberError::Empty);
        }
        if !(MIN_LEN..=MAX_LEN).contains(&digits.len()) {
            return Err(CardNumberError::WrongLength);
        }
        if !luhn_sum(digits.as_bytes()).is_multiple_of(10) {
            return Err(CardNumberError::ChecksumMismatch);
        }
        // Moving the String out keeps the same heap buffer, now owned by a zeroizing type.
        Ok(CardNumber(std::mem::take(&mut *digits)))
    }

    /// The network, detected from the prefix (BIN) and length.
    pub fn brand(&self) -> CardBrand {
        let digits = self.0.as_bytes();
        let len = digits.len();
        let bin = prefix(digits, 6);
        // Elo and Hipercard ranges overlap Visa (4xxxxx) and other prefixes, so go first.
        if ELO_RANGES.iter().any(|&(lo, hi)| (lo..=hi).contains(&bin)) {
            return CardBrand::Elo;
        }
        if HIPERCARD_BINS.contains(&bin) {
            return CardBrand::Hipercard;
        }
        let two = prefix(digits, 2);
        let four = prefix(digits, 4);
        match (two, four, len) {
            (34 | 37, _, 15) => CardBrand::Amex,
            (51..=55, _, 16) | (_, 2221..=2720, 16) => CardBrand::Mastercard,
            (40..=49, _, 13 | 16 | 19) => CardBrand::Visa,
            _ => CardBrand::Other,
        }
    }

    /// The last four digits, safe to show and store.
    pub fn last4(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }

    /// Display form showing only the last four digits, e.g. `•••• 4242`.
    pub fn masked(&self) -> String {
        format!("•••• {}", self.last4())
    }

    /// The full digits. Only for handing the number to a payment provider or vault.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardNumber({} {})", self.brand().as_str(), self.masked())
    }
}

/// Luhn sum of ASCII digits whose last digit is the check digit; valid when divisible by 10.
fn luhn_sum(digits: &[u8]) -> u32 {
    digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                // Doubling then summing the two decimal digits equals subtracting 9 past 9.
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum()
}

/// The first `n` digits as a number.
fn prefix(digits: &[u8], n: usize) -> u32 {
    digits
        .iter()
        .take(n)
        .fold(0, |acc, &b| acc * 10 + u32::from(b - b'0'))
}

/// The month and year printed on a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CardExpiry {
    month: u8,
    year: u16,
}

/// Why a month and year are not a valid card expiry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardExpiryError {
    #[error("month must be between 1 and 12")]
    InvalidMonth,
    #[error("year must have four digits, between 2000 and 2099")]
    InvalidYear,
}

impl CardExpiry {
    /// Validates a month (1-12) and a four-digit year (2000-2099).
    pub fn new(month: u32, year: u32) -> Result<CardExpiry, CardExpiryError> {
        let month = u8::try_from(month)
            .ok()
            .filter(|m| (1..=12).contains(m))
            .ok_or(CardExpiryError::InvalidMonth)?;
        let year = u16::try_from(year)
            .ok()
            .filter(|y| (2000..=2099).contains(y))
            .ok_or(CardExpiryError::InvalidYear)?;
        Ok(CardExpiry { month, year })
    }

    /// The month, 1-12.
    pub fn month(&self) -> u8 {
        self.month
    }

    /// The four-digit year.
    pub fn year(&self) -> u16 {
        self.year
    }

    /// Whether the card has expired on `today`. A card is valid through the last day of its
    /// expiry month, so it expires on the first day of the following month.
    pub fn is_expired_at(&self, today: NaiveDate) -> bool {
        (today.year(), today.month()) > (i32::from(self.year), u32::from(self.month))
    }
}

impl fmt::Display for CardExpiry {
    /// `MM/YYYY`, e.g. `03/2030`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}/{}", self.month, self.year)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn card(digits: &str) -> CardNumber {
        CardNumber::parse(digits).unwrap_or_else(|e| panic!("{digits}: {e}"))
    }

    /// Appends the Luhn check digit to a digit string.
    fn with_check_digit(prefix: &str) -> String {
        let padded = format!("{prefix}0");
        let check = (10 - luhn_sum(padded.as_bytes()) % 10) % 10;
        format!("{prefix}{check}")
    }

    #[test]
    fn detects_brands_of_known_test_numbers() {
        let cases = [
            ("4111111111111111", CardBrand::Visa),
            ("4242 4242 4242 4242", CardBrand::Visa),
            ("4222222222222", CardBrand::Visa),
            ("5555555555554444", CardBrand::Mastercard),
            ("2223003122003222", CardBrand::Mastercard),
            ("378282246310005", CardBrand::Amex),
            ("3714-496353-98431", CardBrand::Amex),
            ("6362970000457013", CardBrand::Elo),
            ("6062825624254001", CardBrand::Hipercard),
            ("6011111111111117", CardBrand::Other),
        ];
        for (number, brand) in cases {
            assert_eq!(card(number).brand(), brand, "number {number}");
        }
    }

    #[test]
    fn elo_and_hipercard_win_over_visa_and_mastercard() {
        assert_eq!(
            card(&with_check_digit("401178000000000")).brand(),
            CardBrand::Elo
        );
        assert_eq!(
            card(&with_check_digit("509999000000000")).brand(),
            CardBrand::Elo
        );
        assert_eq!(
            card(&with_check_digit("655058000000000")).brand(),
            CardBrand::Elo
        );
        assert_eq!(
            card(&with_check_digit("384100000000000")).brand(),
            CardBrand::Hipercard
        );
        assert_eq!(
            card(&with_check_digit("655020000000000")).brand(),
            CardBrand::Other
        );
        assert_eq!(
            card(&with_check_digit("401180000000000")).brand(),
            CardBrand::Visa
        );
    }

    #[test]
    fn brand_requires_the_network_length() {
        assert_eq!(
            card(&with_check_digit("41111111111111")).brand(),
            CardBrand::Other
        );
        assert_eq!(
            card(&with_check_digit("3782822463100")).brand(),
            CardBrand::Other
        );
        assert_eq!(
            card(&with_check_digit("27200000000000")).brand(),
            CardBrand::Other
        );
        assert_eq!(
            card(&with_check_digit("272000000000000")).brand(),
            CardBrand::Mastercard
        );
        assert_eq!(
            card(&with_check_digit("272100000000000")).brand(),
            CardBrand::Other
        );
        assert_eq!(
            card(&with_check_digit("222000000000000")).brand(),
            CardBrand::Other
        );
        assert_eq!(
            card(&with_check_digit("411111111111111111")).brand(),
            CardBrand::Visa
        );
    }

    #[test]
    fn shows_only_the_last_four() {
        let number = card(" 4242-4242-4242-4242 ");
        assert_eq!(number.expose(), "4242424242424242");
        assert_eq!(number.last4(), "4242");
        assert_eq!(number.masked(), "•••• 4242");
        assert_eq!(format!("{number:?}"), "CardNumber(visa •••• 4242)");
        assert_eq!(CardBrand::Mastercard.as_str(), "mastercard");
    }

    #[test]
    fn rejects_each_problem_with_its_own_error() {
        use CardNumberError::*;
        let cases = [
            ("", Empty),
            (" - ", Empty),
            ("4111.1111.1111.1111", InvalidCharacter),
            ("4111x111111111111", InvalidCharacter),
            ("41111111111", WrongLength),
            ("41111111111111111111", WrongLength),
            ("4111111111111112", ChecksumMismatch),
        ];
        for (input, expected) in cases {
            let err = CardNumber::parse(input).unwrap_err();
            assert_eq!(err, expected, "input {input:?}");
            assert!(!err.to_string().contains("1111"));
        }
    }

    #[test]
    fn expiry_validates_month_and_year() {
        let expiry = CardExpiry::new(3, 2030).unwrap();
        assert_eq!((expiry.month(), expiry.year()), (3, 2030));
        assert_eq!(expiry.to_string(), "03/2030");
        assert_eq!(CardExpiry::new(0, 2030), Err(CardExpiryError::InvalidMonth));
        assert_eq!(
            CardExpiry::new(13, 2030),
            Err(CardExpiryError::InvalidMonth)
        );
        assert_eq!(
            CardExpiry::new(256 + 3, 2030),
            Err(CardExpiryError::InvalidMonth)
        );
        assert_eq!(CardExpiry::new(12, 30), Err(CardExpiryError::InvalidYear));
        assert_eq!(CardExpiry::new(12, 1999), Err(CardExpiryError::InvalidYear));
        assert_eq!(CardExpiry::new(12, 2100), Err(CardExpiryError::InvalidYear));
        assert_eq!(
            CardExpiry::new(1, 65_536 + 2030),
            Err(CardExpiryError::InvalidYear)
        );
        assert!(CardExpiry::new(1, 2000).is_ok());
        assert!(CardExpiry::new(12, 2099).is_ok());
    }

    #[test]
    fn expiry_is_valid_through_the_last_day_of_the_month() {
        let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let feb = CardExpiry::new(2, 2028).unwrap();
        assert!(!feb.is_expired_at(date(2027, 12, 31)));
        assert!(!feb.is_expired_at(date(2028, 2, 1)));
        assert!(!feb.is_expired_at(date(2028, 2, 29)));
        assert!(feb.is_expired_at(date(2028, 3, 1)));
        assert!(feb.is_expired_at(date(2029, 1, 1)));
        let dec = CardExpiry::new(12, 2030).unwrap();
        assert!(!dec.is_expired_at(date(2030, 12, 31)));
        assert!(dec.is_expired_at(date(2031, 1, 1)));
    }

    proptest! {
        #[test]
        fn appending_the_luhn_digit_validates(prefix in "[0-9]{11,18}") {
            let digits = with_check_digit(&prefix);
            let number = CardNumber::parse(&digits).unwrap();
            prop_assert_eq!(number.expose(), digits.as_str());
            prop_assert_eq!(number.last4(), &digits[digits.len() - 4..]);
            let debug = format!("{number:?}");
            prop_assert!(!debug.contains(&digits));
            prop_assert!(!number.masked().contains(&digits[..digits.len() - 4]));
        }

        #[test]
        fn changing_one_digit_fails_luhn(prefix in "[0-9]{11,18}", pos in any::<prop::sample::Index>(), shift in 1u8..10) {
            let mut digits = with_check_digit(&prefix).into_bytes();
            let i = pos.index(digits.len());
            digits[i] = b'0' + (digits[i] - b'0' + shift) % 10;
            let mutated = String::from_utf8(digits).unwrap();
            prop_assert_eq!(CardNumber::parse(&mutated).unwrap_err(), CardNumberError::ChecksumMismatch);
        }

        #[test]
        fn grouping_does_not_matter(prefix in "[0-9]{15}", sep in "[ -]") {
            let digits = with_check_digit(&prefix);
            let grouped = digits
                .as_bytes()
                .chunks(4)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect::<Vec<_>>()
                .join(&sep);
            prop_assert_eq!(CardNumber::parse(&grouped).unwrap(), CardNumber::parse(&digits).unwrap());
        }

        #[test]
        fn errors_never_contain_the_digits(input in "[0-9]{4}[0-9 -]{8,20}|[0-9]{8,12}[a-z.][0-9]{4}") {
            if let Err(err) = CardNumber::parse(&input) {
                let message = err.to_string();
                let digits: String = input.chars().filter(char::is_ascii_digit).collect();
                prop_assert!(!message.contains(&digits));
                prop_assert!(!message.contains(input.trim()));
            }
        }

        #[test]
        fn expiry_accepts_exactly_the_valid_ranges(month in 0u32..20, year in 1990u32..2110) {
            let result = CardExpiry::new(month, year);
            prop_assert_eq!(result.is_ok(), (1..=12).contains(&month) && (2000..=2099).contains(&year));
        }

        #[test]
        fn expiry_matches_first_day_of_next_month(month in 1u32..=12, year in 2000u32..2099, offset in -400i64..400) {
            let expiry = CardExpiry::new(month, year).unwrap();
            let first_invalid = if month == 12 {
                NaiveDate::from_ymd_opt(year as i32 + 1, 1, 1)
            } else {
                NaiveDate::from_ymd_opt(year as i32, month + 1, 1)
            }
            .unwrap();
            let today = first_invalid + chrono::Duration::days(offset);
            prop_assert_eq!(expiry.is_expired_at(today), today >= first_invalid);
        }
    }
}
