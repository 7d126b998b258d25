//! E-mail addresses, restricted to the shape real mailboxes use.
//!
//! This deliberately accepts less than RFC 5322 (no quoted local parts, comments or IP
//! literals): those forms are legal but in practice only show up as typos or abuse.

use std::fmt;
use std::str::FromStr;

const MAX_LEN: usize = 254;
const MAX_LOCAL_LEN: usize = 64;
const MAX_LABEL_LEN: usize = 63;
const FORBIDDEN_LOCAL: &[u8] = b"\"(),:;<>[\\]";

/// A valid e-mail address. The domain is lowercased; the local part is kept as typed, since
/// some mail servers treat it as case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// Why a string is not a valid e-mail address. Messages never repeat the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most 254 characters")]
    TooLong,
    #[error("must contain an @")]
    MissingAt,
    #[error("must contain exactly one @")]
    MultipleAt,
    #[error("the part before @ must not be empty")]
    EmptyLocalPart,
    #[error("the part before @ must be at most 64 characters")]
    LocalPartTooLong,
    #[error(
        "the part before @ must not contain spaces, non-ASCII characters or any of \"(),:;<>[\\]"
    )]
    InvalidLocalPart,
    #[error("the part before @ must not start or end with a dot or contain two dots in a row")]
    MisplacedDot,
    #[error("the part after @ must be a domain name such as example.com")]
    InvalidDomain,
    #[error(
        "the domain must end with a top-level domain of at least two letters, such as .com or .br"
    )]
    InvalidTopLevelDomain,
}

impl Email {
    /// Parses an address such as `Joana.Silva@Example.COM.br` (stored as
    /// `Joana.Silva@example.com.br`), ignoring surrounding whitespace.
    pub fn parse(input: &str) -> Result<Email, EmailError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        if trimmed.chars().count() > MAX_LEN {
            return Err(EmailError::TooLong);
        }
        let (local, domain) = trimmed.split_once('@').ok_or(EmailError::MissingAt)?;
        if domain.contains('@') {
            return Err(EmailError::MultipleAt);
        }
        check_local(local)?;
        let domain = domain.to_ascii_lowercase();
        check_domain(&domain)?;
        Ok(Email(format!("{local}@{domain}")))
    }

    /// The address, e.g. `Joana.Silva@example.com.br`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the `@`, as typed.
    pub fn local_part(&self) -> &str {
        self.split().0
    }

    /// The lowercased part after the `@`.
    pub fn domain(&self) -> &str {
        self.split().1
    }

    fn split(&self) -> (&str, &str) {
        // Parsing guarantees exactly one '@'.
        self.0.split_once('@').unwrap_or((&self.0, ""))
    }
}

fn check_local(local: &str) -> Result<(), EmailError> {
    if local.is_empty() {
        return Err(EmailError::EmptyLocalPart);
    }
    if local.len() > MAX_LOCAL_LEN {
        return Err(EmailError::LocalPartTooLong);
    }
    // Printable ASCII excludes spaces and control characters as well as non-ASCII.
    if !local
        .bytes()
        .all(|b| b.is_ascii_graphic() && !FORBIDDEN_LOCAL.contains(&b))
    {
        return Err(EmailError::InvalidLocalPart);
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(EmailError::MisplacedDot);
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), EmailError> {
    let labels: Vec<&str> = domain.split('.').collect();
    let valid_label = |label: &&str| {
        !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if labels.len() < 2 || !labels.iter().all(valid_label) {
        return Err(EmailError::InvalidDomain);
    }
    let tld = labels[labels.len() - 1];
    if tld.len() < 2 || !tld.bytes().all(|b| b.is_ascii_lowercase()) {
        return Err(EmailError::InvalidTopLevelDomain);
    }
    Ok(())
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Email {
    type Err = EmailError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Email::parse(s)
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_lowercases_the_domain_only() {
        let email = Email::parse("  Joana.Silva+pedidos@Example.COM.br\n").unwrap();
        assert_eq!(email.as_str(), "Joana.Silva+pedidos@example.com.br");
        assert_eq!(email.local_part(), "Joana.Silva+pedidos");
        assert_eq!(email.domain(), "example.com.br");
        assert_eq!(email.to_string(), email.as_str());
        assert_eq!("a@b.co".parse::<Email>().unwrap().as_str(), "a@b.co");
        assert!(Email::parse("o'brien!#$%&*/=?^_`{|}~@mail-1.example.org").is_ok());
    }

    #[test]
    fn rejects_each_problem_with_its_own_error() {
        use EmailError::*;
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_total = format!("a@{}com", "b.".repeat(126));
        let cases = [
            ("", Empty),
            ("  ", Empty),
            ("joana.example.com", MissingAt),
            ("joana@@example.com", MultipleAt),
            ("jo@ana@example.com", MultipleAt),
            ("@example.com", EmptyLocalPart),
            (long_local.as_str(), LocalPartTooLong),
            ("jo ana@example.com", InvalidLocalPart),
            ("jo\"ana@example.com", InvalidLocalPart),
            ("joana(x)@example.com", InvalidLocalPart),
            ("joana,x@example.com", InvalidLocalPart),
            ("jo[a]na@example.com", InvalidLocalPart),
            ("joão@example.com", InvalidLocalPart),
            (".joana@example.com", MisplacedDot),
            ("joana.@example.com", MisplacedDot),
            ("jo..ana@example.com", MisplacedDot),
            ("joana@", InvalidDomain),
            ("joana@localhost", InvalidDomain),
            ("joana@example..com", InvalidDomain),
            ("joana@example.com.", InvalidDomain),
            ("joana@-example.com", InvalidDomain),
            ("joana@example-.com", InvalidDomain),
            ("joana@exa_mple.com", InvalidDomain),
            ("joana@exämple.com", InvalidDomain),
            ("joana@example.c", InvalidTopLevelDomain),
            ("joana@example.c0m", InvalidTopLevelDomain),
            ("joana@10.0.0.1", InvalidTopLevelDomain),
            (long_total.as_str(), TooLong),
        ];
        for (input, expected) in cases {
            assert_eq!(Email::parse(input), Err(expected), "input {input:?}");
        }
    }

    #[test]
    fn length_limit_is_inclusive() {
        let local = "a".repeat(64);
        let domain = format!("{}.com", "b".repeat(63));
        let mut domain = format!("{}.{domain}", "c".repeat(63));
        domain = format!("{}.{domain}", "d".repeat(254 - 64 - 1 - domain.len() - 1));
        let at_limit = format!("{local}@{domain}");
        assert_eq!(at_limit.len(), 254);
        assert!(Email::parse(&at_limit).is_ok());
        assert_eq!(
            Email::parse(&format!("a{at_limit}")),
            Err(EmailError::TooLong)
        );
    }

    fn valid_email() -> impl Strategy<Value = String> {
        (
            "[A-Za-z0-9_%+-]{1,20}(\\.[A-Za-z0-9_%+-]{1,10}){0,2}",
            "[A-Za-z0-9]([A-Za-z0-9-]{0,10}[A-Za-z0-9])?",
            "[A-Za-z]{2,6}",
        )
            .prop_map(|(local, label, tld)| format!("{local}@{label}.{tld}"))
    }

    proptest! {
        #[test]
        fn valid_addresses_round_trip(raw in valid_email()) {
            let email = Email::parse(&raw).unwrap();
            let (local, domain) = raw.split_once('@').unwrap();
            prop_assert_eq!(email.local_part(), local);
            prop_assert_eq!(email.domain(), domain.to_ascii_lowercase());
            prop_assert_eq!(Email::parse(email.as_str()).unwrap(), email.clone());
            let shouted = format!(" {local}@{} ", domain.to_ascii_uppercase());
            prop_assert_eq!(Email::parse(&shouted).unwrap(), email);
        }

        #[test]
        fn accepted_input_obeys_the_rules(input in "[ a-zA-Z0-9.@_()-]{0,30}|\\PC{0,30}") {
            if let Ok(email) = Email::parse(&input) {
                let s = email.as_str();
                prop_assert_eq!(s.matches('@').count(), 1);
                prop_assert!(s.len() <= 254);
                prop_assert!(!s.contains(' '));
                prop_assert!(s.is_ascii());
                prop_assert_eq!(email.domain(), email.domain().to_ascii_lowercase());
                prop_assert_eq!(Email::parse(s).unwrap(), email.clone());
            }
        }

        #[test]
        fn errors_never_echo_the_input(input in "[a-z0-9]{6,12}(@[a-z0-9@.-]{0,12})?") {
            if let Err(err) = Email::parse(&input) {
                prop_assert!(!err.to_string().contains(&input));
            }
        }
    }
}
