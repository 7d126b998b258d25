//! CPF (Cadastro de Pessoas Físicas), the Brazilian individual taxpayer number.

use std::fmt;
use std::str::FromStr;

const LEN: usize = 11;
const BASE_LEN: usize = 9;
const MASKED_LEN: usize = 14;
/// Punctuation of the standard mask `XXX.XXX.XXX-XX`, by byte position.
const MASK: [(usize, u8); 3] = [(3, b'.'), (7, b'.'), (11, b'-')];

/// A valid CPF, stored as 11 bare digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cpf(String);

/// Why a string is not a valid CPF. Messages never repeat the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpfError {
    #[error("must not be empty")]
    Empty,
    #[error("may contain only digits and the punctuation of XXX.XXX.XXX-XX")]
    InvalidCharacter,
    #[error("must have 11 digits")]
    WrongLength,
    #[error("must be 11 digits without punctuation or formatted exactly as XXX.XXX.XXX-XX")]
    InvalidFormat,
    #[error("must not be a single repeated digit")]
    RepeatedDigit,
    #[error("check digits do not match")]
    CheckDigitMismatch,
}

impl Cpf {
    /// Parses a bare (`12345678909`) or masked (`123.456.789-09`) CPF, ignoring surrounding
    /// whitespace. Punctuation is all-or-nothing so a misplaced separator is reported.
    pub fn parse(input: &str) -> Result<Cpf, CpfError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(CpfError::Empty);
        }
        let bytes = trimmed.as_bytes();
        if !bytes
            .iter()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-'))
        {
            return Err(CpfError::InvalidCharacter);
        }
        let bare: String = trimmed.chars().filter(char::is_ascii_digit).collect();
        if bare.len() != LEN {
            return Err(CpfError::WrongLength);
        }
        if bytes.len() != LEN && !has_standard_mask(bytes) {
            return Err(CpfError::InvalidFormat);
        }
        let b = bare.as_bytes();
        // 000.000.000-00, 111.111.111-11 and so on satisfy the checksum but are placeholders.
        if b.iter().all(|&c| c == b[0]) {
            return Err(CpfError::RepeatedDigit);
        }
        if check_digits(&b[..BASE_LEN]) != [b[BASE_LEN], b[BASE_LEN + 1]] {
            return Err(CpfError::CheckDigitMismatch);
        }
        Ok(Cpf(bare))
    }

    /// Builds a CPF from its first 9 digits by computing the check digits.
    ///
    /// Meant for fixtures and generators. Returns `None` unless `base` is exactly 9 ASCII
    /// digits, or when the result would be a repeated digit.
    pub fn from_base(base: &str) -> Option<Cpf> {
        if base.len() != BASE_LEN || !base.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let [dv1, dv2] = check_digits(base.as_bytes());
        let mut bare = String::with_capacity(LEN);
        bare.push_str(base);
        bare.push(char::from(dv1));
        bare.push(char::from(dv2));
        Cpf::parse(&bare).ok()
    }

    /// The 11 bare digits, e.g. `12345678909`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The standard mask, e.g. `123.456.789-09`.
    pub fn formatted(&self) -> String {
        let s = &self.0;
        format!("{}.{}.{}-{}", &s[..3], &s[3..6], &s[6..9], &s[9..])
    }
}

fn has_standard_mask(bytes: &[u8]) -> bool {
    bytes.len() == MASKED_LEN && MASK.iter().all(|&(i, p)| bytes[i] == p)
}

/// Check digits (as ASCII) for 9 ASCII digits. Weights run 10..2 for the first digit and
/// 11..2 (including the first check digit) for the second.
fn check_digits(base: &[u8]) -> [u8; 2] {
    let sum1: u32 = base
        .iter()
        .zip((2..=10).rev())
        .map(|(&c, w)| u32::from(c - b'0') * w)
        .sum();
    let dv1 = mod11_digit(sum1);
    let sum2: u32 = base
        .iter()
        .zip((3..=11).rev())
        .map(|(&c, w)| u32::from(c - b'0') * w)
        .sum::<u32>()
        + dv1 * 2;
    let dv2 = mod11_digit(sum2);
    [b'0' + dv1 as u8, b'0' + dv2 as u8]
}

fn mod11_digit(sum: u32) -> u32 {
    match sum % 11 {
        0 | 1 => 0,
        r => 11 - r,
    }
}

impl fmt::Display for Cpf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Cpf {
    type Err = CpfError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cpf::parse(s)
    }
}

impl AsRef<str> for Cpf {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_both_forms() {
        let masked = Cpf::parse("123.456.789-09").unwrap();
        let bare = Cpf::parse(" 12345678909 ").unwrap();
        assert_eq!(masked, bare);
        assert_eq!(masked.as_str(), "12345678909");
        assert_eq!(masked.formatted(), "123.456.789-09");
        assert_eq!(masked.to_string(), "12345678909");
        assert_eq!(
            "407.438.540-63".parse::<Cpf>().unwrap().as_str(),
            "40743854063"
        );
    }

    #[test]
    fn rejects_each_problem_with_its_own_error() {
        use CpfError::*;
        let cases = [
            ("", Empty),
            ("123.456.789-08", CheckDigitMismatch),
            ("12345678919", CheckDigitMismatch),
            ("00000000000", RepeatedDigit),
            ("111.111.111-11", RepeatedDigit),
            ("1234567890", WrongLength),
            ("123456789091", WrongLength),
            ("123.456.789-0", WrongLength),
            ("1234567890A", InvalidCharacter),
            ("123/456/789-09", InvalidCharacter),
            ("123 456 789 09", InvalidCharacter),
            ("123.456.78909", InvalidFormat),
            ("123456.789-09", InvalidFormat),
            ("12.3456.789-09", InvalidFormat),
            ("123-456-789-09", InvalidFormat),
        ];
        for (input, expected) in cases {
            assert_eq!(Cpf::parse(input), Err(expected), "input {input:?}");
        }
    }

    #[test]
    fn from_base_computes_check_digits() {
        assert_eq!(Cpf::from_base("123456789").unwrap().as_str(), "12345678909");
        assert_eq!(Cpf::from_base("12345678"), None);
        assert_eq!(Cpf::from_base("12345678a"), None);
        assert_eq!(Cpf::from_base("222222222"), None);
    }

    proptest! {
        #[test]
        fn computed_check_digits_round_trip(base in "[0-9]{9}") {
            prop_assume!(!base.bytes().all(|b| b == base.as_bytes()[0]));
            let cpf = Cpf::from_base(&base).unwrap();
            prop_assert_eq!(&cpf.as_str()[..9], base.as_str());
            prop_assert_eq!(Cpf::parse(&cpf.formatted()).unwrap(), cpf.clone());
            prop_assert_eq!(Cpf::parse(cpf.as_str()).unwrap(), cpf.clone());
            prop_assert!(cpf_cnpj::cpf::validate(cpf.as_str()));
        }

        /// A single substitution is caught unless the checksum genuinely cannot see it.
        ///
        /// Remainders 0 and 1 both give check digit 0, so a change can slip through where it
        /// only flips a remainder between 0 and 1 and leaves the other sum's digit alone: at
        /// position 0 (second weight 11, invisible mod 11) and position 5 (weights 5 and 6,
        /// which sum to 11). Everywhere else a substitution is always rejected.
        #[test]
        fn single_substitution(base in "[0-9]{9}", pos in 0usize..11, shift in 1u8..10) {
            prop_assume!(!base.bytes().all(|b| b == base.as_bytes()[0]));
            let cpf = Cpf::from_base(&base).unwrap();
            let mut bytes = cpf.as_str().as_bytes().to_vec();
            bytes[pos] = b'0' + (bytes[pos] - b'0' + shift) % 10;
            let mutated = String::from_utf8(bytes.clone()).unwrap();
            let result = Cpf::parse(&mutated);
            let repeated = bytes.iter().all(|&b| b == bytes[0]);
            let undetectable = !repeated && check_digits(&bytes[..9]) == [bytes[9], bytes[10]];
            prop_assert_eq!(result.is_ok(), undetectable);
            if ![0, 5].contains(&pos) {
                prop_assert!(result.is_err());
            }
        }

        #[test]
        fn agrees_with_oracle(
            base in "[0-9]{9}",
            dvs in prop_oneof![Just(None), "[0-9]{2}".prop_map(Some)],
            masked in any::<bool>(),
        ) {
            let dvs = dvs.unwrap_or_else(|| {
                String::from_utf8(check_digits(base.as_bytes()).to_vec()).unwrap()
            });
            let bare = format!("{base}{dvs}");
            let input = if masked {
                format!("{}.{}.{}-{}", &bare[..3], &bare[3..6], &bare[6..9], &bare[9..])
            } else {
                bare
            };
            prop_assert_eq!(Cpf::parse(&input).is_ok(), cpf_cnpj::cpf::validate(&input), "input {}", input);
        }

        #[test]
        fn agrees_with_oracle_on_noise(input in "[0-9]{9,13}|[0-9a-z]{11}|(.){11}") {
            prop_assert_eq!(Cpf::parse(&input).is_ok(), cpf_cnpj::cpf::validate(&input), "input {}", input);
        }

        #[test]
        fn never_panics_and_never_echoes(input in any::<String>()) {
            if let Err(err) = Cpf::parse(&input) {
                let trimmed = input.trim();
                if trimmed.len() >= 6 {
                    prop_assert!(!err.to_string().contains(trimmed));
                }
            }
        }
    }
}
