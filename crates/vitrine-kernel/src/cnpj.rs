//! CNPJ (Cadastro Nacional da Pessoa Jurídica), the Brazilian company registry number.
//!
//! Both the traditional numeric format and the alphanumeric format that the Receita Federal
//! issues from July 2026 are supported. They share one check-digit algorithm: every character is
//! worth its ASCII code minus 48, so digits keep their value and letters are worth 17 ('A') to
//! 42 ('Z'). The two check digits themselves are always numeric.

use std::fmt;
use std::str::FromStr;

const LEN: usize = 14;
const BASE_LEN: usize = 12;
const MASKED_LEN: usize = 18;
/// Punctuation of the standard mask `XX.XXX.XXX/XXXX-XX`, by byte position.
const MASK: [(usize, u8); 4] = [(2, b'.'), (6, b'.'), (10, b'/'), (15, b'-')];
const DV1_WEIGHTS: [u32; 12] = [5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2];
const DV2_WEIGHTS: [u32; 13] = [6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2];

/// A valid CNPJ, stored as 14 uppercase characters: 12 of `[0-9A-Z]` then 2 check digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cnpj(String);

/// Why a string is not a valid CNPJ. Messages never repeat the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CnpjError {
    #[error("must not be empty")]
    Empty,
    #[error("may contain only digits, letters A-Z and the punctuation of XX.XXX.XXX/XXXX-XX")]
    InvalidCharacter,
    #[error("must have 14 characters")]
    WrongLength,
    #[error("must be 14 characters without punctuation or formatted exactly as XX.XXX.XXX/XXXX-XX")]
    InvalidFormat,
    #[error("the last two characters (check digits) must be digits")]
    NonNumericCheckDigits,
    #[error("must not be a single repeated character")]
    RepeatedCharacter,
    #[error("check digits do not match")]
    CheckDigitMismatch,
}

impl Cnpj {
    /// Parses a bare (`12ABC34501DE35`) or masked (`12.ABC.345/01DE-35`) CNPJ.
    ///
    /// Letters are accepted in either case and stored uppercase; surrounding whitespace is
    /// ignored. Punctuation is all-or-nothing so that typos such as a shifted dot are caught
    /// instead of silently stripped.
    pub fn parse(input: &str) -> Result<Cnpj, CnpjError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(CnpjError::Empty);
        }
        let bytes = trimmed.as_bytes();
        if !bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/' | b'-'))
        {
            return Err(CnpjError::InvalidCharacter);
        }
        let bare: String = trimmed
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if bare.len() != LEN {
            return Err(CnpjError::WrongLength);
        }
        // Every byte is now known to be ASCII, so byte length equals character count.
        if bytes.len() != LEN && !has_standard_mask(bytes) {
            return Err(CnpjError::InvalidFormat);
        }
        let b = bare.as_bytes();
        if !b[BASE_LEN].is_ascii_digit() || !b[BASE_LEN + 1].is_ascii_digit() {
            return Err(CnpjError::NonNumericCheckDigits);
        }
        // All-equal strings pass the checksum for some characters (e.g. all zeros) but are
        // placeholders, never real registrations.
        if b.iter().all(|&c| c == b[0]) {
            return Err(CnpjError::RepeatedCharacter);
        }
        if check_digits(&b[..BASE_LEN]) != [b[BASE_LEN], b[BASE_LEN + 1]] {
            return Err(CnpjError::CheckDigitMismatch);
        }
        Ok(Cnpj(bare))
    }

    /// Builds a CNPJ from its 12-character base by computing the check digits.
    ///
    /// Meant for fixtures and generators. Returns `None` unless `base` is exactly 12 ASCII
    /// letters or digits, or when the result would be a repeated character.
    pub fn from_base(base: &str) -> Option<Cnpj> {
        if base.len() != BASE_LEN || !base.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let mut bare = base.to_ascii_uppercase();
        let [dv1, dv2] = check_digits(bare.as_bytes());
        bare.push(char::from(dv1));
        bare.push(char::from(dv2));
        Cnpj::parse(&bare).ok()
    }

    /// The 14 bare characters, e.g. `12ABC34501DE35`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The standard mask, e.g. `12.ABC.345/01DE-35`.
    pub fn formatted(&self) -> String {
        let s = &self.0;
        format!(
            "{}.{}.{}/{}-{}",
            &s[..2],
            &s[2..5],
            &s[5..8],
            &s[8..12],
            &s[12..]
        )
    }

    /// The first 8 characters, which identify the company across all of its establishments.
    pub fn root(&self) -> &str {
        &self.0[..8]
    }

    /// Characters 9 to 12, which identify the establishment (`0001` is usually the head office).
    pub fn branch(&self) -> &str {
        &self.0[8..12]
    }
}

fn has_standard_mask(bytes: &[u8]) -> bool {
    bytes.len() == MASKED_LEN && MASK.iter().all(|&(i, p)| bytes[i] == p)
}

/// Check digits (as ASCII) for an uppercase alphanumeric 12-character base.
fn check_digits(base: &[u8]) -> [u8; 2] {
    let dv1 = mod11_digit(weighted_sum(base, &DV1_WEIGHTS));
    let dv2 = mod11_digit(weighted_sum(base, &DV2_WEIGHTS[..BASE_LEN]) + dv1 * DV2_WEIGHTS[12]);
    [digit_char(dv1), digit_char(dv2)]
}

fn weighted_sum(chars: &[u8], weights: &[u32]) -> u32 {
    // ASCII code minus 48 is the Receita Federal's rule; it makes 'A' worth 17, not 10.
    chars
        .iter()
        .zip(weights)
        .map(|(&c, &w)| u32::from(c - b'0') * w)
        .sum()
}

fn mod11_digit(sum: u32) -> u32 {
    match sum % 11 {
        0 | 1 => 0,
        r => 11 - r,
    }
}

fn digit_char(d: u32) -> u8 {
    b'0' + d as u8
}

impl fmt::Display for Cnpj {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Cnpj {
    type Err = CnpjError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cnpj::parse(s)
    }
}

impl AsRef<str> for Cnpj {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_alphanumeric_in_both_forms() {
        let masked = Cnpj::parse("12.ABC.345/01DE-35").unwrap();
        let bare = Cnpj::parse("12ABC34501DE35").unwrap();
        assert_eq!(masked, bare);
        assert_eq!(masked.as_str(), "12ABC34501DE35");
        assert_eq!(masked.formatted(), "12.ABC.345/01DE-35");
        assert_eq!(masked.to_string(), "12ABC34501DE35");
        assert_eq!(masked.root(), "12ABC345");
        assert_eq!(masked.branch(), "01DE");
    }

    #[test]
    fn parses_numeric_lowercase_and_padded() {
        assert_eq!(
            Cnpj::parse("11.222.333/0001-81").unwrap().as_str(),
            "11222333000181"
        );
        assert_eq!(
            Cnpj::parse(" 11222333000181\n").unwrap().as_str(),
            "11222333000181"
        );
        assert_eq!(
            Cnpj::parse("12abc34501de35").unwrap().as_str(),
            "12ABC34501DE35"
        );
        assert_eq!(
            Cnpj::parse("12.abc.345/01de-35").unwrap().as_str(),
            "12ABC34501DE35"
        );
        assert_eq!(
            "12ABC34501DE35".parse::<Cnpj>().unwrap().as_str(),
            "12ABC34501DE35"
        );
    }

    #[test]
    fn rejects_each_problem_with_its_own_error() {
        use CnpjError::*;
        let cases = [
            ("", Empty),
            ("   ", Empty),
            ("12.ABC.345/01DE-34", CheckDigitMismatch),
            ("11222333000182", CheckDigitMismatch),
            ("00000000000000", RepeatedCharacter),
            ("11111111111111", RepeatedCharacter),
            ("11.111.111/1111-11", RepeatedCharacter),
            ("12ABC34501DE3", WrongLength),
            ("12ABC34501DE355", WrongLength),
            ("12.ABC.345/01DE-3", WrongLength),
            ("12ABC34501DE3@", InvalidCharacter),
            ("12ABC34501DE3 5", InvalidCharacter),
            ("12ÁBC34501DE35", InvalidCharacter),
            ("12ABC34501DEAB", NonNumericCheckDigits),
            ("12ABC34501DE3A", NonNumericCheckDigits),
            ("12ABC.34501DE35", InvalidFormat),
            ("12.ABC.345/01DE35", InvalidFormat),
            ("12-ABC-345/01DE-35", InvalidFormat),
            ("12.ABC.345.01DE-35", InvalidFormat),
            ("12.ABC.345/01DE-35.", InvalidFormat),
        ];
        for (input, expected) in cases {
            assert_eq!(Cnpj::parse(input), Err(expected), "input {input:?}");
        }
    }

    #[test]
    fn from_base_computes_check_digits() {
        assert_eq!(
            Cnpj::from_base("12ABC34501DE").unwrap().as_str(),
            "12ABC34501DE35"
        );
        assert_eq!(
            Cnpj::from_base("112223330001").unwrap().as_str(),
            "11222333000181"
        );
        assert_eq!(Cnpj::from_base("12ABC34501D"), None);
        assert_eq!(Cnpj::from_base("12ABC34501D!"), None);
        assert_eq!(Cnpj::from_base("000000000000"), None);
    }

    #[test]
    fn error_messages_are_plain_sentences() {
        assert_eq!(
            CnpjError::CheckDigitMismatch.to_string(),
            "check digits do not match"
        );
        assert_eq!(
            CnpjError::WrongLength.to_string(),
            "must have 14 characters"
        );
    }

    fn value(c: u8) -> i64 {
        i64::from(c - b'0')
    }

    proptest! {
        #[test]
        fn computed_check_digits_round_trip(base in "[0-9A-Z]{12}") {
            prop_assume!(!base.bytes().all(|b| b == base.as_bytes()[0]));
            let cnpj = Cnpj::from_base(&base).unwrap();
            prop_assert_eq!(&cnpj.as_str()[..12], base.as_str());
            prop_assert_eq!(Cnpj::parse(&cnpj.formatted()).unwrap(), cnpj.clone());
            prop_assert_eq!(Cnpj::parse(cnpj.as_str()).unwrap(), cnpj.clone());
            prop_assert_eq!(Cnpj::parse(&cnpj.formatted().to_lowercase()).unwrap(), cnpj.clone());
            prop_assert_eq!(Cnpj::parse(&format!("\t{cnpj} ")).unwrap(), cnpj);
        }

        /// A single substitution is caught unless the checksum genuinely cannot see it.
        ///
        /// Mod 11 cannot distinguish characters whose values differ by a multiple of 11 (e.g.
        /// '6' = 6 and 'A' = 17), a known weakness of the alphanumeric format. Apart from that,
        /// because remainders 0 and 1 both give check digit 0, a change can slip past both
        /// digits only where the two weights sum to 11 (5+6 at positions 0 and 8, 9+2 at
        /// position 4). Everywhere else a substitution is always rejected.
        #[test]
        fn single_substitution(
            base in "[0-9A-Z]{12}",
            pos in 0usize..14,
            shift in 1usize..36,
        ) {
            const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
            prop_assume!(!base.bytes().all(|b| b == base.as_bytes()[0]));
            let original = Cnpj::from_base(&base).unwrap();
            let mut bytes = original.as_str().as_bytes().to_vec();
            let old_index = ALPHABET.iter().position(|&c| c == bytes[pos]).unwrap();
            let new = ALPHABET[(old_index + shift) % ALPHABET.len()];
            let delta = value(new) - value(bytes[pos]);
            bytes[pos] = new;
            let mutated = String::from_utf8(bytes.clone()).unwrap();
            let result = Cnpj::parse(&mutated);

            if pos >= 12 {
                // A changed check digit never matches: the base still determines it.
                prop_assert!(result.is_err());
            } else {
                let repeated = bytes.iter().all(|&b| b == bytes[0]);
                let undetectable =
                    !repeated && check_digits(&bytes[..12]) == [bytes[12], bytes[13]];
                prop_assert_eq!(result.is_ok(), undetectable);
                if repeated {
                    prop_assert_eq!(result, Err(CnpjError::RepeatedCharacter));
                } else if delta % 11 == 0 {
                    prop_assert!(result.is_ok());
                } else if ![0, 4, 8].contains(&pos) {
                    prop_assert!(result.is_err());
                }
            }
        }

        #[test]
        fn agrees_with_oracle_on_candidates(
            base in "[0-9A-Za-z]{12}",
            dvs in prop_oneof![Just(None), "[0-9]{2}".prop_map(Some), "[0-9A-Z]{2}".prop_map(Some)],
            masked in any::<bool>(),
        ) {
            let dvs = dvs.unwrap_or_else(|| {
                let upper = base.to_ascii_uppercase();
                String::from_utf8(check_digits(upper.as_bytes()).to_vec()).unwrap()
            });
            let bare = format!("{base}{dvs}");
            let input = if masked {
                format!("{}.{}.{}/{}-{}", &bare[..2], &bare[2..5], &bare[5..8], &bare[8..12], &bare[12..])
            } else {
                bare
            };
            prop_assert_eq!(Cnpj::parse(&input).is_ok(), cpf_cnpj::cnpj::validate(&input), "input {}", input);
        }

        #[test]
        fn agrees_with_oracle_on_noise(input in "[0-9A-Za-z]{10,16}|[0-9]{14}|(.){14}") {
            prop_assert_eq!(Cnpj::parse(&input).is_ok(), cpf_cnpj::cnpj::validate(&input), "input {}", input);
        }

        #[test]
        fn accepted_input_is_accepted_by_oracle(input in "[0-9A-Za-z./\\- ]{0,20}") {
            // The oracle ignores punctuation anywhere, so it is looser than us, never stricter.
            if Cnpj::parse(&input).is_ok() {
                prop_assert!(cpf_cnpj::cnpj::validate(input.trim()));
            }
        }

        #[test]
        fn never_panics_and_never_echoes(input in any::<String>()) {
            if let Err(err) = Cnpj::parse(&input) {
                let trimmed = input.trim();
                if trimmed.len() >= 6 {
                    prop_assert!(!err.to_string().contains(trimmed));
                }
            }
        }
    }
}
