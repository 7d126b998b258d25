//! Brazilian phone numbers, stored in E.164 form.

use std::fmt;
use std::str::FromStr;

const COUNTRY_CODE: &str = "55";
const E164_PREFIX: &str = "+55";

/// Every area code (DDD) in use in Brazil, as assigned by Anatel.
const AREA_CODES: [u8; 67] = [
    11, 12, 13, 14, 15, 16, 17, 18, 19, // São Paulo
    21, 22, 24, // Rio de Janeiro
    27, 28, // Espírito Santo
    31, 32, 33, 34, 35, 37, 38, // Minas Gerais
    41, 42, 43, 44, 45, 46, // Paraná
    47, 48, 49, // Santa Catarina
    51, 53, 54, 55, // Rio Grande do Sul
    61, // Distrito Federal
    62, 64, // Goiás
    63, // Tocantins
    65, 66, // Mato Grosso
    67, // Mato Grosso do Sul
    68, // Acre
    69, // Rondônia
    71, 73, 74, 75, 77, // Bahia
    79, // Sergipe
    81, 87, // Pernambuco
    82, // Alagoas
    83, // Paraíba
    84, // Rio Grande do Norte
    85, 88, // Ceará
    86, 89, // Piauí
    91, 93, 94, // Pará
    92, 97, // Amazonas
    95, // Roraima
    96, // Amapá
    98, 99, // Maranhão
];

/// A valid Brazilian mobile or landline number, stored as E.164 (`+5511987654321`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Phone(String);

/// Why a string is not a valid Brazilian phone number. Messages never repeat the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("must not be empty")]
    Empty,
    #[error("may contain only digits, spaces, dots, dashes, parentheses and a leading +")]
    InvalidCharacter,
    #[error("only Brazilian numbers (country code +55) are supported")]
    UnsupportedCountry,
    #[error("must have a two-digit area code (DDD) followed by an 8- or 9-digit number")]
    WrongLength,
    #[error("the area code (DDD) is not a valid Brazilian area code")]
    InvalidAreaCode,
    #[error("mobile numbers must have 9 digits starting with 9")]
    InvalidMobile,
    #[error("landline numbers must have 8 digits starting with 2, 3, 4 or 5")]
    InvalidLandline,
}

impl Phone {
    /// Parses the usual ways of writing a Brazilian number, such as `(11) 98765-4321`,
    /// `+55 11 98765-4321`, `011 98765-4321` (trunk prefix) or `5511987654321`.
    pub fn parse(input: &str) -> Result<Phone, PhoneError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(PhoneError::Empty);
        }
        let (international, rest) = match trimmed.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let mut digits = String::with_capacity(rest.len());
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '.' | '-' | '(' | ')' => {}
                _ => return Err(PhoneError::InvalidCharacter),
            }
        }
        let national = if international {
            digits
                .strip_prefix(COUNTRY_CODE)
                .ok_or(PhoneError::UnsupportedCountry)?
        } else if let Some(after_trunk) = digits.strip_prefix('0') {
            after_trunk
        } else if matches!(digits.len(), 12 | 13) && digits.starts_with(COUNTRY_CODE) {
            // National numbers have at most 11 digits, so 12 or 13 digits starting with 55
            // can only be a country code without its '+'; 55 alone is also a valid DDD.
            &digits[COUNTRY_CODE.len()..]
        } else {
            &digits
        };
        if !matches!(national.len(), 10 | 11) {
            return Err(PhoneError::WrongLength);
        }
        let (area, subscriber) = national.split_at(2);
        if !area.parse().is_ok_and(|ddd: u8| AREA_CODES.contains(&ddd)) {
            return Err(PhoneError::InvalidAreaCode);
        }
        match (subscriber.len(), subscriber.as_bytes()[0]) {
            (9, b'9') | (8, b'2'..=b'5') => {}
            // 8-digit numbers starting with 6-9 are mobiles written before the extra 9.
            (9, _) | (8, b'6'..=b'9') => return Err(PhoneError::InvalidMobile),
            _ => return Err(PhoneError::InvalidLandline),
        }
        Ok(Phone(format!("{E164_PREFIX}{national}")))
    }

    /// E.164 form, e.g. `+5511987654321`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// International display form, e.g. `+55 11 98765-4321` or `+55 11 3333-4444`.
    pub fn formatted(&self) -> String {
        let subscriber = self.subscriber();
        let split = subscriber.len() - 4;
        format!(
            "{E164_PREFIX} {} {}-{}",
            self.area_code(),
            &subscriber[..split],
            &subscriber[split..]
        )
    }

    /// True for 9-digit mobile numbers, false for 8-digit landlines.
    pub fn is_mobile(&self) -> bool {
        self.subscriber().len() == 9
    }

    /// The two-digit area code (DDD), e.g. `11`.
    pub fn area_code(&self) -> &str {
        &self.0[3..5]
    }

    /// The 8 or 9 digits after the area code.
    pub fn subscriber(&self) -> &str {
        &self.0[5..]
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Phone {
    type Err = PhoneError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Phone::parse(s)
    }
}

impl AsRef<str> for Phone {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn area_code_list_is_complete_and_unique() {
        let mut sorted = AREA_CODES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 67);
        assert!(
            sorted
                .iter()
                .all(|&d| (11..=99).contains(&d) && d % 10 != 0)
        );
    }

    #[test]
    fn accepts_common_mobile_forms() {
        let forms = [
            "(11) 98765-4321",
            "11 98765-4321",
            "11987654321",
            "+55 11 98765-4321",
            "+55 (11) 98765-4321",
            "5511987654321",
            "011 98765-4321",
            "+5511987654321",
            "  11.98765.4321 ",
            "(011) 9 8765-4321",
            "+55-11-98765-4321",
        ];
        for form in forms {
            let phone = Phone::parse(form).unwrap_or_else(|e| panic!("{form:?}: {e}"));
            assert_eq!(phone.as_str(), "+5511987654321", "input {form:?}");
            assert!(phone.is_mobile());
        }
        let phone = Phone::parse("(11) 98765-4321").unwrap();
        assert_eq!(phone.formatted(), "+55 11 98765-4321");
        assert_eq!(phone.to_string(), "+5511987654321");
        assert_eq!(phone.area_code(), "11");
        assert_eq!(phone.subscriber(), "987654321");
    }

    #[test]
    fn accepts_landlines() {
        let phone = Phone::parse("(11) 3333-4444").unwrap();
        assert_eq!(phone.as_str(), "+551133334444");
        assert_eq!(phone.formatted(), "+55 11 3333-4444");
        assert!(!phone.is_mobile());
        assert_eq!(Phone::parse("551133334444").unwrap(), phone);
    }

    #[test]
    fn area_code_55_is_not_mistaken_for_the_country_code() {
        assert_eq!(
            Phone::parse("55 98765-4321").unwrap().as_str(),
            "+5555987654321"
        );
        assert_eq!(
            Phone::parse("55 3222-1111").unwrap().as_str(),
            "+555532221111"
        );
        assert_eq!(
            Phone::parse("5555987654321").unwrap().as_str(),
            "+5555987654321"
        );
    }

    #[test]
    fn rejects_each_problem_with_its_own_error() {
        use PhoneError::*;
        let cases = [
            ("", Empty),
            ("+1 212 555 1234", UnsupportedCountry),
            ("+351 912 345 678", UnsupportedCountry),
            ("11 98765-4321 ramal 2", InvalidCharacter),
            ("11/98765-4321", InvalidCharacter),
            ("11 98765+4321", InvalidCharacter),
            ("98765-4321", WrongLength),
            ("11 98765-43210", WrongLength),
            ("+55 11 98765-43210", WrongLength),
            ("+55 011 98765-4321", WrongLength),
            ("(10) 98765-4321", InvalidAreaCode),
            ("(20) 3333-4444", InvalidAreaCode),
            ("(23) 98765-4321", InvalidAreaCode),
            ("(11) 88765-4321", InvalidMobile),
            ("(11) 8765-4321", InvalidMobile),
            ("(11) 1333-4444", InvalidLandline),
            ("(11) 0333-4444", InvalidLandline),
        ];
        for (input, expected) in cases {
            assert_eq!(Phone::parse(input), Err(expected), "input {input:?}");
        }
    }

    fn number() -> impl Strategy<Value = (u8, String)> {
        let ddd = prop::sample::select(AREA_CODES.to_vec());
        let subscriber = prop_oneof!["9[0-9]{8}", "[2-5][0-9]{7}"];
        (ddd, subscriber)
    }

    fn forms(ddd: u8, sub: &str) -> Vec<String> {
        let split = sub.len() - 4;
        let (head, tail) = sub.split_at(split);
        vec![
            format!("{ddd}{sub}"),
            format!("({ddd}) {head}-{tail}"),
            format!("{ddd} {head}-{tail}"),
            format!("+55 {ddd} {head}-{tail}"),
            format!("+55 ({ddd}) {head}-{tail}"),
            format!("55{ddd}{sub}"),
            format!("0{ddd} {head}-{tail}"),
            format!("+55{ddd}{sub}"),
            format!("{ddd}.{head}.{tail}"),
            format!(" ( 0{ddd} ) {head} {tail} "),
        ]
    }

    proptest! {
        #[test]
        fn every_form_gives_the_same_e164((ddd, sub) in number()) {
            let expected = format!("+55{ddd}{sub}");
            for form in forms(ddd, &sub) {
                let phone = Phone::parse(&form).map_err(|e| TestCaseError::fail(format!("{form:?}: {e}")))?;
                prop_assert_eq!(phone.as_str(), expected.as_str());
                prop_assert_eq!(phone.is_mobile(), sub.len() == 9);
            }
        }

        #[test]
        fn formatted_reparses((ddd, sub) in number()) {
            let phone = Phone::parse(&format!("{ddd}{sub}")).unwrap();
            prop_assert_eq!(Phone::parse(&phone.formatted()).unwrap(), phone.clone());
            prop_assert_eq!(Phone::parse(phone.as_str()).unwrap(), phone);
        }

        #[test]
        fn other_country_codes_are_rejected(cc in "[1-46-9][0-9]{0,2}", rest in "[0-9]{8,11}") {
            prop_assert_eq!(Phone::parse(&format!("+{cc} {rest}")), Err(PhoneError::UnsupportedCountry));
        }

        #[test]
        fn accepted_numbers_are_well_formed(input in "\\+?[0-9 ().-]{0,20}") {
            if let Ok(phone) = Phone::parse(&input) {
                let s = phone.as_str();
                prop_assert!(s.starts_with("+55"));
                prop_assert!(s.len() == 13 || s.len() == 14);
                prop_assert!(s[1..].bytes().all(|b| b.is_ascii_digit()));
                prop_assert_eq!(Phone::parse(&phone.formatted()).unwrap(), phone.clone());
            }
        }

        #[test]
        fn errors_never_echo_the_input(input in "\\PC{0,24}") {
            if let Err(err) = Phone::parse(&input) {
                let trimmed = input.trim();
                if trimmed.len() >= 6 {
                    prop_assert!(!err.to_string().contains(trimmed));
                }
            }
        }
    }
}
