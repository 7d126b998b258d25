//! Read-your-writes across a primary and a streaming replica.
//!
//! A write's token is the primary's WAL position right after its commit. A replica that has
//! replayed up to that position shows the write, so a read carrying the token may use it; a
//! replica that has not is given a short while to catch up, then the read goes to the primary.
//! Reads without a token use the replica while it is reachable and not lagging beyond a bound.

use std::time::Duration;

/// An opaque, ordered position in the primary's history (`v1.` and 16 hex digits on the wire).
/// The embedded SQLite store has one database and no replica, so its writes carry the zero
/// token, which every read satisfies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ConsistencyToken(u64);

impl ConsistencyToken {
    pub const ZERO: ConsistencyToken = ConsistencyToken(0);

    /// From PostgreSQL's text form of an LSN (`16/B374D848`).
    pub fn from_lsn(text: &str) -> Option<ConsistencyToken> {
        let (high, low) = text.split_once('/')?;
        let high = u64::from_str_radix(high, 16).ok()?;
        let low = u64::from_str_radix(low, 16).ok()?;
        (high <= u64::from(u32::MAX) && low <= u64::from(u32::MAX))
            .then_some(ConsistencyToken((high << 32) | low))
    }

    /// PostgreSQL's text form of this position, for `$1::pg_lsn`.
    pub fn to_lsn(self) -> String {
        format!("{:X}/{:X}", self.0 >> 32, self.0 & u64::from(u32::MAX))
    }

    pub(crate) fn from_raw(raw: u64) -> ConsistencyToken {
        ConsistencyToken(raw)
    }

    pub(crate) fn into_raw(self) -> u64 {
        self.0
    }

    pub fn encode(self) -> String {
        format!("v1.{:016x}", self.0)
    }

    /// Exactly what [`ConsistencyToken::encode`] writes (the OpenAPI document states it as a
    /// pattern): `v1.` and 16 lower-case hex digits.
    pub fn decode(raw: &str) -> Result<ConsistencyToken, String> {
        let invalid = || "is not a token returned by a write".to_owned();
        let hex = raw.strip_prefix("v1.").ok_or_else(invalid)?;
        if hex.len() != 16 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(invalid());
        }
        u64::from_str_radix(hex, 16)
            .map(ConsistencyToken)
            .map_err(|_| invalid())
    }
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Recent enough: the replica while it is healthy.
    Any,
    /// At least as new as the write that returned this token.
    AtLeast(ConsistencyToken),
    /// The primary itself.
    Primary,
}

/// How reads use the replica.
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    /// A replica further behind than this serves no reads until it catches up.
    pub max_lag: Duration,
    /// How long a read carrying a token waits for the replica to replay it before it goes to
    /// the primary instead.
    pub catch_up_wait: Duration,
    /// How often the replica's position and reachability are probed.
    pub probe_every: Duration,
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        Self {
            max_lag: Duration::from_secs(5),
            catch_up_wait: Duration::from_millis(50),
            probe_every: Duration::from_millis(250),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_order_like_lsns() {
        let a = ConsistencyToken::from_lsn("0/16B3748").unwrap();
        let b = ConsistencyToken::from_lsn("1/0").unwrap();
        assert!(a < b);
        assert_eq!(a.to_lsn(), "0/16B3748");
        assert_eq!(ConsistencyToken::decode(&b.encode()), Ok(b));
        assert_eq!(b.encode(), "v1.0000000100000000");
        assert!(ConsistencyToken::decode("v1.zz").is_err());
        assert!(ConsistencyToken::decode("v1.+000000000000000").is_err());
        assert!(ConsistencyToken::decode("v1.000000010000000A").is_err());
        assert!(ConsistencyToken::decode("0/16B3748").is_err());
        assert!(ConsistencyToken::from_lsn("1FFFFFFFF/0").is_none());
        assert!(ConsistencyToken::ZERO <= a);
    }
}
