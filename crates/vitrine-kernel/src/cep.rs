//! CEP (Código de Endereçamento Postal), the Brazilian postal code.

use std::fmt;
use std::str::FromStr;

const LEN: usize = 8;

/// A valid CEP, stored as 8 bare digits (`01310100`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cep(String);

/// Why a string is not a valid CEP. Messages never repeat the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CepError {
    #[error("must not be empty")]
    Empty,
    #[error("may contain only digits, optionally formatted as 00000-000")]
    InvalidCharacter,
    #[error("must have 8 digits")]
    WrongLength,
    #[error("must be 8 digits without punctuation or formatted exactly as 00000-000 or 00.000-000")]
    InvalidFormat,
    #[error("must not be 00000-000")]
    AllZeros,
}

impl Cep {
    /// Parses `01310-100`, `01310100` or the older `01.310-100`, ignoring surrounding
    /// whitespace.
    pub fn parse(input: &str) -> Result<Cep, CepError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(CepError::Empty);
        }
        let bytes = trimmed.as_bytes();
        if !bytes
            .iter()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'.'))
        {
            return Err(CepError::InvalidCharacter);
        }
        let bare: String = trimmed.chars().filter(char::is_ascii_digit).collect();
        if bare.len() != LEN {
            return Err(CepError::WrongLength);
        }
        let standard = match bytes.len() {
            8 => true,
            9 => bytes[5] == b'-',
            10 => bytes[2] == b'.' && bytes[6] == b'-',
            _ => false,
        };
        if !standard {
            return Err(CepError::InvalidFormat);
        }
        // No address uses 00000-000; it shows up as a "don't know" placeholder.
        if bare.bytes().all(|b| b == b'0') {
            return Err(CepError::AllZeros);
        }
        Ok(Cep(bare))
    }

    /// The 8 bare digits, e.g. `01310100`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The standard mask, e.g. `01310-100`.
    pub fn formatted(&self) -> String {
        format!("{}-{}", &self.0[..5], &self.0[5..])
    }
}

impl fmt::Display for Cep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Cep {
    type Err = CepError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cep::parse(s)
    }
}

impl AsRef<str> for Cep {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_the_three_forms() {
        for input in ["01310-100", "01310100", "01.310-100", " 01310-100\t"] {
            let cep = Cep::parse(input).unwrap();
            assert_eq!(cep.as_str(), "01310100", "input {input:?}");
            assert_eq!(cep.formatted(), "01310-100");
            assert_eq!(cep.to_string(), "01310100");
        }
        assert_eq!("20040-020".parse::<Cep>().unwrap().as_str(), "20040020");
    }

    #[test]
    fn rejects_each_problem_with_its_own_error() {
        use CepError::*;
        let cases = [
            ("", Empty),
            ("01310 100", InvalidCharacter),
            ("0131O-100", InvalidCharacter),
            ("01310-10", WrongLength),
            ("013101000", WrongLength),
            ("0131-0100", InvalidFormat),
            ("01.310100", InvalidFormat),
            ("01310.100", InvalidFormat),
            ("01.310.100", InvalidFormat),
            ("00000000", AllZeros),
            ("00000-000", AllZeros),
        ];
        for (input, expected) in cases {
            assert_eq!(Cep::parse(input), Err(expected), "input {input:?}");
        }
    }

    proptest! {
        #[test]
        fn all_forms_agree(digits in "[0-9]{8}") {
            prop_assume!(digits != "00000000");
            let dashed = format!("{}-{}", &digits[..5], &digits[5..]);
            let dotted = format!("{}.{}-{}", &digits[..2], &digits[2..5], &digits[5..]);
            let cep = Cep::parse(&digits).unwrap();
            prop_assert_eq!(cep.as_str(), digits.as_str());
            prop_assert_eq!(Cep::parse(&dashed).unwrap(), cep.clone());
            prop_assert_eq!(Cep::parse(&dotted).unwrap(), cep.clone());
            prop_assert_eq!(Cep::parse(&cep.formatted()).unwrap(), cep);
        }

        #[test]
        fn accepted_input_has_eight_digits(input in "[0-9.-]{0,12}|\\PC{0,12}") {
            if let Ok(cep) = Cep::parse(&input) {
                prop_assert_eq!(cep.as_str().len(), 8);
                prop_assert!(cep.as_str().bytes().all(|b| b.is_ascii_digit()));
            }
        }
    }
}
