//! PIX keys (chaves PIX), the identifiers of the Brazilian instant-payment system.
//!
//! A key identifies a bank account, so it is treated as sensitive: `Debug` and error messages
//! never contain it, and [`PixKey::masked`] gives a form that is safe to show and log.

use std::fmt;

use uuid::Uuid;

use crate::{Cnpj, CnpjError, Cpf, CpfError, Email, EmailError, Phone, PhoneError};

/// The five kinds of PIX key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixKeyType {
    Cpf,
    Cnpj,
    Email,
    Phone,
    /// Random key (chave aleatória): a UUID assigned by the central directory.
    Evp,
}

impl PixKeyType {
    pub const ALL: [PixKeyType; 5] = [
        PixKeyType::Cpf,
        PixKeyType::Cnpj,
        PixKeyType::Email,
        PixKeyType::Phone,
        PixKeyType::Evp,
    ];

    /// Parses `cpf`, `cnpj`, `email`, `phone` or `evp`, ignoring case and surrounding
    /// whitespace.
    pub fn parse(input: &str) -> Result<PixKeyType, PixKeyError> {
        let input = input.trim();
        PixKeyType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(input))
            .ok_or(PixKeyError::UnknownType)
    }

    /// Lowercase name, e.g. `email`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            PixKeyType::Cpf => "cpf",
            PixKeyType::Cnpj => "cnpj",
            PixKeyType::Email => "email",
            PixKeyType::Phone => "phone",
            PixKeyType::Evp => "evp",
        }
    }
}

impl fmt::Display for PixKeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A random PIX key (EVP). Keeps its canonical text so [`PixKey::as_str`] can borrow it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EvpKey {
    uuid: Uuid,
    text: String,
}

impl EvpKey {
    /// Parses a UUID in any spelling the `uuid` crate understands.
    pub fn parse(input: &str) -> Result<EvpKey, PixKeyError> {
        Uuid::try_parse(input.trim())
            .map(EvpKey::from_uuid)
            .map_err(|_| PixKeyError::InvalidEvp)
    }

    pub fn from_uuid(uuid: Uuid) -> EvpKey {
        EvpKey {
            uuid,
            text: uuid.hyphenated().to_string(),
        }
    }

    pub const fn as_uuid(&self) -> Uuid {
        self.uuid
    }

    /// Lowercase hyphenated form.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// First and last four hex digits only, e.g. `d9f5****-****-****-****-********1a2b`.
    pub fn masked(&self) -> String {
        let t = &self.text;
        format!("{}****-****-****-****-********{}", &t[..4], &t[32..])
    }
}

impl fmt::Debug for EvpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EvpKey({})", self.masked())
    }
}

impl From<Uuid> for EvpKey {
    fn from(uuid: Uuid) -> Self {
        EvpKey::from_uuid(uuid)
    }
}

/// A validated PIX key.
#[derive(Clone, PartialEq, Eq)]
pub enum PixKey {
    Cpf(Cpf),
    Cnpj(Cnpj),
    Email(Email),
    /// Always a mobile number: PIX does not register landlines.
    Phone(Phone),
    Evp(EvpKey),
}

/// Why a PIX key is invalid. Messages never contain the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PixKeyError {
    #[error("must be one of cpf, cnpj, email, phone or evp")]
    UnknownType,
    #[error("is not a valid CPF key: {0}")]
    Cpf(CpfError),
    #[error("is not a valid CNPJ key: {0}")]
    Cnpj(CnpjError),
    #[error("is not a valid e-mail key: {0}")]
    Email(EmailError),
    #[error("is not a valid phone key: {0}")]
    Phone(PhoneError),
    #[error("is not a valid phone key: PIX phone keys must be mobile numbers")]
    PhoneNotMobile,
    #[error("is not a valid random key (EVP): must be a UUID")]
    InvalidEvp,
}

impl PixKey {
    /// Parses `key` as a key of the given type.
    pub fn parse(key_type: PixKeyType, key: &str) -> Result<PixKey, PixKeyError> {
        match key_type {
            PixKeyType::Cpf => Cpf::parse(key).map(PixKey::Cpf).map_err(PixKeyError::Cpf),
            PixKeyType::Cnpj => Cnpj::parse(key)
                .map(PixKey::Cnpj)
                .map_err(PixKeyError::Cnpj),
            PixKeyType::Email => Email::parse(key)
                .map(PixKey::Email)
                .map_err(PixKeyError::Email),
            PixKeyType::Phone => {
                let phone = Phone::parse(key).map_err(PixKeyError::Phone)?;
                if !phone.is_mobile() {
                    return Err(PixKeyError::PhoneNotMobile);
                }
                Ok(PixKey::Phone(phone))
            }
            PixKeyType::Evp => EvpKey::parse(key).map(PixKey::Evp),
        }
    }

    pub fn key_type(&self) -> PixKeyType {
        match self {
            PixKey::Cpf(_) => PixKeyType::Cpf,
            PixKey::Cnpj(_) => PixKeyType::Cnpj,
            PixKey::Email(_) => PixKeyType::Email,
            PixKey::Phone(_) => PixKeyType::Phone,
            PixKey::Evp(_) => PixKeyType::Evp,
        }
    }

    /// The canonical key, as the PIX directory expects it: CPF digits, the 14 CNPJ
    /// characters, the e-mail address, the phone in E.164 or the lowercase hyphenated UUID.
    pub fn as_str(&self) -> &str {
        match self {
            PixKey::Cpf(cpf) => cpf.as_str(),
            PixKey::Cnpj(cnpj) => cnpj.as_str(),
            PixKey::Email(email) => email.as_str(),
            PixKey::Phone(phone) => phone.as_str(),
            PixKey::Evp(evp) => evp.as_str(),
        }
    }

    /// A form that is safe to show and store, hiding enough that the key cannot be rebuilt.
    ///
    /// CPF `***.456.789-**` (the Central Bank's own convention), CNPJ `12.***.***/****-35`,
    /// e-mail `j***@example.com`, phone `+55 11 *****-4321`, EVP
    /// `d9f5****-****-****-****-********1a2b`.
    pub fn masked(&self) -> String {
        match self {
            PixKey::Cpf(cpf) => {
                let d = cpf.as_str();
                format!("***.{}.{}-**", &d[3..6], &d[6..9])
            }
            // Hiding the root's middle and the branch keeps a numeric CNPJ with the usual
            // branch 0001 from being brute-forced out of its check digits.
            PixKey::Cnpj(cnpj) => {
                let c = cnpj.as_str();
                format!("{}.***.***/****-{}", &c[..2], &c[12..])
            }
            PixKey::Email(email) => {
                let local = email.local_part();
                // Showing the first character of a one- or two-character local part would
                // reveal most of it.
                let shown = if local.len() >= 3 { &local[..1] } else { "" };
                format!("{shown}***@{}", email.domain())
            }
            PixKey::Phone(phone) => {
                let subscriber = phone.subscriber();
                let hidden = "*".repeat(subscriber.len() - 4);
                let last4 = &subscriber[subscriber.len() - 4..];
                format!("+55 {} {hidden}-{last4}", phone.area_code())
            }
            PixKey::Evp(evp) => evp.masked(),
        }
    }
}

impl fmt::Debug for PixKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PixKey({} {})", self.key_type().as_str(), self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(key_type: &str, raw: &str) -> PixKey {
        let key_type = PixKeyType::parse(key_type).unwrap();
        PixKey::parse(key_type, raw).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn key_types_round_trip() {
        for t in PixKeyType::ALL {
            assert_eq!(PixKeyType::parse(t.as_str()), Ok(t));
            assert_eq!(PixKeyType::parse(&t.as_str().to_uppercase()), Ok(t));
        }
        assert_eq!(
            PixKeyType::parse("aleatoria"),
            Err(PixKeyError::UnknownType)
        );
        assert_eq!(PixKeyType::parse(""), Err(PixKeyError::UnknownType));
    }

    #[test]
    fn canonical_and_masked_forms() {
        let cases = [
            ("cpf", "123.456.789-09", "12345678909", "***.456.789-**"),
            (
                "cnpj",
                "12.ABC.345/01DE-35",
                "12ABC34501DE35",
                "12.***.***/****-35",
            ),
            (
                "email",
                "Joana@Example.com",
                "Joana@example.com",
                "J***@example.com",
            ),
            (
                "email",
                "jo@example.com",
                "jo@example.com",
                "***@example.com",
            ),
            (
                "phone",
                "(11) 98765-4321",
                "+5511987654321",
                "+55 11 *****-4321",
            ),
            (
                "evp",
                "D9F5C2E4-8B1A-4C3D-9E7F-0A1B2C3D1A2B",
                "d9f5c2e4-8b1a-4c3d-9e7f-0a1b2c3d1a2b",
                "d9f5****-****-****-****-********1a2b",
            ),
        ];
        for (key_type, raw, canonical, masked) in cases {
            let key = key(key_type, raw);
            assert_eq!(key.key_type().as_str(), key_type);
            assert_eq!(key.as_str(), canonical);
            assert_eq!(key.masked(), masked);
            let debug = format!("{key:?}");
            assert_eq!(debug, format!("PixKey({key_type} {masked})"));
            assert!(!debug.contains(canonical));
        }
    }

    #[test]
    fn errors_wrap_the_field_error_without_the_key() {
        let err = PixKey::parse(PixKeyType::Cpf, "123.456.789-08").unwrap_err();
        assert_eq!(err, PixKeyError::Cpf(CpfError::CheckDigitMismatch));
        assert_eq!(
            err.to_string(),
            "is not a valid CPF key: check digits do not match"
        );
        assert_eq!(
            PixKey::parse(PixKeyType::Phone, "(11) 3333-4444"),
            Err(PixKeyError::PhoneNotMobile)
        );
        assert_eq!(
            PixKey::parse(PixKeyType::Evp, "d9f5c2e4-8b1a-4c3d-9e7f"),
            Err(PixKeyError::InvalidEvp)
        );
        assert!(matches!(
            PixKey::parse(PixKeyType::Email, "joana"),
            Err(PixKeyError::Email(EmailError::MissingAt))
        ));
        assert!(matches!(
            PixKey::parse(PixKeyType::Cnpj, "12ABC34501DE34"),
            Err(PixKeyError::Cnpj(CnpjError::CheckDigitMismatch))
        ));
        assert!(matches!(
            PixKey::parse(PixKeyType::Phone, "+1 212 555 1234"),
            Err(PixKeyError::Phone(PhoneError::UnsupportedCountry))
        ));
    }

    #[test]
    fn evp_key_debug_is_masked() {
        let uuid = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let evp = EvpKey::from(uuid);
        assert_eq!(evp.as_uuid(), uuid);
        assert_eq!(
            format!("{evp:?}"),
            "EvpKey(0123****-****-****-****-********cdef)"
        );
    }

    fn any_key() -> impl Strategy<Value = PixKey> {
        prop_oneof![
            "[0-9]{9}"
                .prop_filter_map("repeated", |b| Cpf::from_base(&b))
                .prop_map(PixKey::Cpf),
            "[0-9A-Z]{12}"
                .prop_filter_map("repeated", |b| Cnpj::from_base(&b))
                .prop_map(PixKey::Cnpj),
            "[a-z0-9._+-]{1,20}@[a-z0-9]{1,10}\\.[a-z]{2,4}"
                .prop_filter_map("invalid", |e| Email::parse(&e).ok())
                .prop_map(PixKey::Email),
            "9[0-9]{8}"
                .prop_map(|s| Phone::parse(&format!("11{s}")).unwrap())
                .prop_map(PixKey::Phone),
            any::<u128>().prop_map(|b| PixKey::Evp(Uuid::from_u128(b).into())),
        ]
    }

    proptest! {
        #[test]
        fn canonical_form_reparses_and_is_never_shown(key in any_key()) {
            prop_assert_eq!(PixKey::parse(key.key_type(), key.as_str()), Ok(key.clone()));
            let debug = format!("{key:?}");
            prop_assert!(!debug.contains(key.as_str()));
            prop_assert!(!key.masked().contains(key.as_str()));
            prop_assert!(debug.contains(key.key_type().as_str()));
        }

        #[test]
        fn masks_hide_most_of_the_key(key in any_key()) {
            let raw = key.as_str();
            let masked = key.masked();
            // Count characters of the key that survive in the mask, in order from either end.
            let visible: usize = match key {
                PixKey::Email(ref e) => usize::from(e.local_part().len() >= 3),
                _ => masked.chars().filter(|c| c.is_ascii_alphanumeric()).count(),
            };
            // At least 30% hidden, in integers.
            prop_assert!(visible * 10 <= raw.len() * 7, "{} hides too little", masked);
        }

        #[test]
        fn errors_never_echo_the_key(type_index in 0usize..5, raw in "[0-9A-Za-z@.+-]{8,30}") {
            let key_type = PixKeyType::ALL[type_index];
            if let Err(err) = PixKey::parse(key_type, &raw) {
                prop_assert!(!err.to_string().contains(&raw));
            }
        }
    }
}
