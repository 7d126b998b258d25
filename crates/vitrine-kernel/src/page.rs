//! Keyset pagination: a bounded page size and an opaque cursor.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

/// Version tag inside the cursor payload, so the format can change without misreading old
/// cursors that clients still hold.
const CURSOR_PREFIX: &str = "v1:";
/// Longer than any cursor we issue; rejects junk before decoding it.
const MAX_CURSOR_LEN: usize = 128;

/// How many items a page may hold: 1 to 100, 20 by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageLimit(u32);

/// Why pagination parameters are invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("must be between 1 and 100")]
    LimitOutOfRange,
    #[error("is not a valid cursor")]
    InvalidCursor,
}

impl PageLimit {
    pub const DEFAULT: PageLimit = PageLimit(20);
    pub const MAX: u32 = 100;

    /// Validates a client-supplied limit; an absent one means [`PageLimit::DEFAULT`].
    pub fn parse(raw: Option<u32>) -> Result<PageLimit, PageError> {
        match raw {
            None => Ok(PageLimit::DEFAULT),
            Some(n) if (1..=PageLimit::MAX).contains(&n) => Ok(PageLimit(n)),
            Some(_) => Err(PageError::LimitOutOfRange),
        }
    }

    pub const fn get(&self) -> u32 {
        self.0
    }
}

impl Default for PageLimit {
    fn default() -> Self {
        PageLimit::DEFAULT
    }
}

/// Opaque keyset cursor: the position after which the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    after: Uuid,
}

impl Cursor {
    /// A cursor for the page that starts right after the item with this id.
    pub const fn after(id: Uuid) -> Cursor {
        Cursor { after: id }
    }

    /// The id the next page starts after.
    pub const fn position(&self) -> Uuid {
        self.after
    }

    /// URL-safe text for clients. They must treat it as opaque; it is not encrypted.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{}", self.after.hyphenated()))
    }

    /// Reads a cursor produced by [`Cursor::encode`]. Only the exact encoding is accepted, so
    /// each position has a single cursor string.
    pub fn decode(input: &str) -> Result<Cursor, PageError> {
        let input = input.trim();
        if input.is_empty() || input.len() > MAX_CURSOR_LEN {
            return Err(PageError::InvalidCursor);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(input)
            .map_err(|_| PageError::InvalidCursor)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| PageError::InvalidCursor)?;
        let id = text
            .strip_prefix(CURSOR_PREFIX)
            .ok_or(PageError::InvalidCursor)?;
        let after = Uuid::try_parse(id).map_err(|_| PageError::InvalidCursor)?;
        let mut buf = Uuid::encode_buffer();
        if after.hyphenated().encode_lower(&mut buf) != id {
            return Err(PageError::InvalidCursor);
        }
        Ok(Cursor { after })
    }
}

/// One page of results and, when more may follow, the cursor for the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<Cursor>,
}

impl<T> Page<T> {
    /// Converts the items, keeping the cursor.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }

    /// Builds a page from a query that fetched up to `limit + 1` rows in key order.
    ///
    /// The extra row only signals that another page exists: it is dropped, and the cursor
    /// points after the last row kept. `position` gives a row's keyset id.
    pub fn from_overfetch(
        mut items: Vec<T>,
        limit: PageLimit,
        position: impl Fn(&T) -> Uuid,
    ) -> Page<T> {
        let limit = limit.get() as usize;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|item| Cursor::after(position(item)))
        } else {
            None
        };
        Page { items, next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn limit_defaults_and_bounds() {
        assert_eq!(PageLimit::parse(None), Ok(PageLimit::DEFAULT));
        assert_eq!(PageLimit::DEFAULT.get(), 20);
        assert_eq!(PageLimit::default(), PageLimit::DEFAULT);
        assert_eq!(PageLimit::parse(Some(1)).unwrap().get(), 1);
        assert_eq!(PageLimit::parse(Some(100)).unwrap().get(), 100);
        assert_eq!(PageLimit::parse(Some(0)), Err(PageError::LimitOutOfRange));
        assert_eq!(PageLimit::parse(Some(101)), Err(PageError::LimitOutOfRange));
        assert_eq!(
            PageError::LimitOutOfRange.to_string(),
            "must be between 1 and 100"
        );
    }

    #[test]
    fn cursor_encoding_is_versioned_base64url() {
        let id = Uuid::parse_str("01890a5d-ac96-774b-bcce-b302099a8057").unwrap();
        let cursor = Cursor::after(id);
        let encoded = cursor.encode();
        assert!(!encoded.contains('='));
        let payload = URL_SAFE_NO_PAD.decode(&encoded).unwrap();
        assert_eq!(payload, b"v1:01890a5d-ac96-774b-bcce-b302099a8057");
        assert_eq!(Cursor::decode(&encoded), Ok(cursor.clone()));
        assert_eq!(cursor.position(), id);
    }

    #[test]
    fn rejects_foreign_cursors() {
        let encode = |s: &str| URL_SAFE_NO_PAD.encode(s);
        let id = "01890a5d-ac96-774b-bcce-b302099a8057";
        let bad = [
            String::new(),
            "!!!".to_owned(),
            "x".repeat(200),
            encode(id),
            encode(&format!("v2:{id}")),
            encode(&format!("v1:{}", id.to_uppercase())),
            encode(&format!("v1:{}", id.replace('-', ""))),
            encode("v1:not-a-uuid"),
            format!("{}=", encode(&format!("v1:{id}"))),
        ];
        for input in bad {
            assert_eq!(
                Cursor::decode(&input),
                Err(PageError::InvalidCursor),
                "input {input:?}"
            );
        }
        assert_eq!(
            PageError::InvalidCursor.to_string(),
            "is not a valid cursor"
        );
    }

    #[test]
    fn page_from_overfetch() {
        let ids: Vec<Uuid> = (1..=4).map(Uuid::from_u128).collect();
        let limit = PageLimit::parse(Some(3)).unwrap();
        let page = Page::from_overfetch(ids.clone(), limit, |id| *id);
        assert_eq!(page.items, ids[..3]);
        assert_eq!(page.next_cursor, Some(Cursor::after(ids[2])));
        let last = Page::from_overfetch(ids[..3].to_vec(), limit, |id| *id);
        assert_eq!(last.next_cursor, None);
        let mapped = page.map(|id| id.as_u128());
        assert_eq!(mapped.items, vec![1, 2, 3]);
        assert_eq!(mapped.next_cursor, Some(Cursor::after(ids[2])));
    }

    proptest! {
        #[test]
        fn cursor_round_trips(bits in any::<u128>()) {
            let cursor = Cursor::after(Uuid::from_u128(bits));
            let encoded = cursor.encode();
            prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            prop_assert_eq!(Cursor::decode(&encoded), Ok(cursor));
        }

        #[test]
        fn decoded_cursors_are_canonical(input in "[A-Za-z0-9_-]{0,60}|\\PC{0,60}") {
            if let Ok(cursor) = Cursor::decode(&input) {
                prop_assert_eq!(cursor.encode(), input.trim());
            }
        }

        #[test]
        fn limit_accepts_exactly_1_to_100(n in any::<u32>()) {
            prop_assert_eq!(PageLimit::parse(Some(n)).is_ok(), (1..=100).contains(&n));
        }

        #[test]
        fn map_preserves_length_and_cursor(items in prop::collection::vec(any::<i32>(), 0..50), bits in any::<Option<u128>>()) {
            let page = Page { items: items.clone(), next_cursor: bits.map(|b| Cursor::after(Uuid::from_u128(b))) };
            let mapped = page.clone().map(i64::from);
            prop_assert_eq!(mapped.items.len(), items.len());
            prop_assert_eq!(mapped.next_cursor, page.next_cursor);
        }

        #[test]
        fn overfetch_keeps_at_most_limit(n in 0usize..120, limit in 1u32..=100) {
            let ids: Vec<Uuid> = (0..n as u128).map(Uuid::from_u128).collect();
            let page = Page::from_overfetch(ids, PageLimit::parse(Some(limit)).unwrap(), |id| *id);
            prop_assert_eq!(page.items.len(), n.min(limit as usize));
            prop_assert_eq!(page.next_cursor.is_some(), n > limit as usize);
        }
    }
}
