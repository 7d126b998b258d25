//! Typed identifiers backed by UUIDv7.
//!
//! v7 UUIDs start with a millisecond timestamp, so new ids sort roughly by creation time and
//! keep B-tree indexes append-mostly, which also makes them good keyset-pagination cursors.

/// The input is not a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be a UUID")]
pub struct IdError;

/// Declares a UUIDv7-backed id newtype.
///
/// The type gets `new()` (a fresh v7 id), `from_uuid`, `as_uuid`, `parse`, plus `Default`,
/// `Display` (lowercase hyphenated), `FromStr` and `From<Id> for Uuid`. `parse` accepts any
/// UUID version, since ids already in storage may predate v7.
///
/// ```
/// vitrine_kernel::define_id! {
///     /// Identifies an order.
///     OrderId
/// }
///
/// let id = OrderId::new();
/// assert_eq!(id.as_uuid().get_version_num(), 7);
/// assert_eq!(OrderId::parse(&id.to_string()), Ok(id));
/// let raw: vitrine_kernel::uuid::Uuid = id.into();
/// assert_eq!(OrderId::from_uuid(raw), id);
/// ```
#[macro_export]
macro_rules! define_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name($crate::uuid::Uuid);

        impl $name {
            /// A new, time-ordered (v7) id.
            pub fn new() -> Self {
                Self($crate::uuid::Uuid::now_v7())
            }

            /// Wraps an existing UUID of any version.
            pub const fn from_uuid(uuid: $crate::uuid::Uuid) -> Self {
                Self(uuid)
            }

            /// The underlying UUID.
            pub const fn as_uuid(&self) -> $crate::uuid::Uuid {
                self.0
            }

            /// Parses any UUID spelling the `uuid` crate understands, ignoring surrounding
            /// whitespace.
            pub fn parse(input: &str) -> ::core::result::Result<Self, $crate::IdError> {
                $crate::uuid::Uuid::try_parse(input.trim())
                    .map(Self)
                    .map_err(|_| $crate::IdError)
            }
        }

        impl ::core::default::Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                ::core::fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl ::core::str::FromStr for $name {
            type Err = $crate::IdError;

            fn from_str(s: &str) -> ::core::result::Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl ::core::convert::From<$name> for $crate::uuid::Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use uuid::Uuid;

    crate::define_id! {
        /// Only for these tests.
        TestId
    }

    #[test]
    fn new_ids_are_v7_and_distinct() {
        let a = TestId::new();
        let b = TestId::default();
        assert_ne!(a, b);
        assert_eq!(a.as_uuid().get_version_num(), 7);
        assert_eq!(b.as_uuid().get_version_num(), 7);
    }

    #[test]
    fn parses_any_version_and_prints_lowercase_hyphenated() {
        let v4 = "9F3C2B1A-7D4E-4F60-8A9B-0C1D2E3F4A5B";
        let id = TestId::parse(v4).unwrap();
        assert_eq!(id.to_string(), v4.to_lowercase());
        assert_eq!(id.as_uuid().get_version_num(), 4);
        assert_eq!(TestId::parse(" 9f3c2b1a7d4e4f608a9b0c1d2e3f4a5b "), Ok(id));
        assert_eq!(v4.parse::<TestId>(), Ok(id));
    }

    #[test]
    fn rejects_non_uuids() {
        for input in [
            "",
            "not-a-uuid",
            "9f3c2b1a-7d4e-4f60-8a9b-0c1d2e3f4a5",
            "12345",
        ] {
            assert_eq!(TestId::parse(input), Err(crate::IdError), "input {input:?}");
        }
        assert_eq!(crate::IdError.to_string(), "must be a UUID");
    }

    proptest! {
        #[test]
        fn round_trips(bits in any::<u128>()) {
            let uuid = Uuid::from_u128(bits);
            let id = TestId::from_uuid(uuid);
            prop_assert_eq!(id.as_uuid(), uuid);
            prop_assert_eq!(Uuid::from(id), uuid);
            prop_assert_eq!(TestId::parse(&id.to_string()), Ok(id));
            prop_assert_eq!(id.to_string(), uuid.hyphenated().to_string());
        }

        #[test]
        fn ordering_follows_the_uuid(a in any::<u128>(), b in any::<u128>()) {
            let (x, y) = (TestId::from_uuid(Uuid::from_u128(a)), TestId::from_uuid(Uuid::from_u128(b)));
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
        }

        #[test]
        fn never_panics(input in "\\PC{0,40}") {
            let _ = TestId::parse(&input);
        }
    }
}
