//! Money as an integer number of minor units (centavos) plus a currency.
//!
//! No floating point anywhere: amounts are `i64` minor units and every arithmetic operation
//! is checked, so an overflow is an error instead of a wrapped or rounded total.

use std::fmt;

/// An ISO 4217 currency code. Only BRL is accepted for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

/// Why a currency or an amount is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("must be a three-letter uppercase ISO 4217 currency code")]
    InvalidCurrency,
    #[error("only BRL is supported")]
    UnsupportedCurrency,
    #[error("amounts in different currencies cannot be combined")]
    CurrencyMismatch,
    #[error("amount is out of range")]
    Overflow,
}

impl Currency {
    /// Brazilian real.
    pub const BRL: Currency = Currency(*b"BRL");

    /// Parses a code such as `BRL`, ignoring surrounding whitespace.
    pub fn parse(input: &str) -> Result<Currency, MoneyError> {
        let code = input.trim().as_bytes();
        if code.len() != 3 || !code.iter().all(u8::is_ascii_uppercase) {
            return Err(MoneyError::InvalidCurrency);
        }
        if code != Currency::BRL.0 {
            return Err(MoneyError::UnsupportedCurrency);
        }
        Ok(Currency::BRL)
    }

    /// The code, e.g. `BRL`.
    pub fn as_str(&self) -> &str {
        // Only ever built from ASCII letters, so the fallback is unreachable.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// Digits after the decimal separator (2 for BRL).
    pub const fn minor_units(&self) -> u32 {
        2
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An amount in minor units (centavos for BRL). May be negative, e.g. for refunds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    amount: i64,
    currency: Currency,
}

impl Money {
    /// `amount_minor` is in minor units: `Money::new(1234, Currency::BRL)` is BRL 12.34.
    pub const fn new(amount_minor: i64, currency: Currency) -> Money {
        Money {
            amount: amount_minor,
            currency,
        }
    }

    /// Zero in the given currency.
    pub const fn zero(currency: Currency) -> Money {
        Money::new(0, currency)
    }

    /// The amount in minor units.
    pub const fn amount(&self) -> i64 {
        self.amount
    }

    pub const fn currency(&self) -> Currency {
        self.currency
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        let currency = self.same_currency(other)?;
        let amount = self
            .amount
            .checked_add(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, currency))
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        let currency = self.same_currency(other)?;
        let amount = self
            .amount
            .checked_sub(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, currency))
    }

    /// Multiplies by a quantity, e.g. unit price times items ordered.
    pub fn checked_mul(self, qty: i64) -> Result<Money, MoneyError> {
        let amount = self.amount.checked_mul(qty).ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    pub const fn is_negative(&self) -> bool {
        self.amount < 0
    }

    pub const fn is_zero(&self) -> bool {
        self.amount == 0
    }

    fn same_currency(self, other: Money) -> Result<Currency, MoneyError> {
        if self.currency == other.currency {
            Ok(self.currency)
        } else {
            Err(MoneyError::CurrencyMismatch)
        }
    }
}

impl fmt::Display for Money {
    /// `BRL 12.34`, `BRL -0.05`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // unsigned_abs avoids overflow on i64::MIN.
        let abs = self.amount.unsigned_abs();
        let sign = if self.amount < 0 { "-" } else { "" };
        write!(f, "{} {sign}{}.{:02}", self.currency, abs / 100, abs % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brl(amount: i64) -> Money {
        Money::new(amount, Currency::BRL)
    }

    /// A second currency to exercise mismatches; `parse` refuses to build one.
    const USD: Currency = Currency(*b"USD");

    #[test]
    fn currency_parsing() {
        assert_eq!(Currency::parse("BRL"), Ok(Currency::BRL));
        assert_eq!(Currency::parse(" BRL "), Ok(Currency::BRL));
        assert_eq!(Currency::parse("USD"), Err(MoneyError::UnsupportedCurrency));
        assert_eq!(Currency::parse("brl"), Err(MoneyError::InvalidCurrency));
        assert_eq!(Currency::parse("BR"), Err(MoneyError::InvalidCurrency));
        assert_eq!(Currency::parse("BRLL"), Err(MoneyError::InvalidCurrency));
        assert_eq!(Currency::parse("R$"), Err(MoneyError::InvalidCurrency));
        assert_eq!(Currency::BRL.as_str(), "BRL");
        assert_eq!(Currency::BRL.minor_units(), 2);
        assert_eq!(
            MoneyError::UnsupportedCurrency.to_string(),
            "only BRL is supported"
        );
    }

    #[test]
    fn displays_two_decimals() {
        assert_eq!(brl(1234).to_string(), "BRL 12.34");
        assert_eq!(brl(5).to_string(), "BRL 0.05");
        assert_eq!(brl(-5).to_string(), "BRL -0.05");
        assert_eq!(brl(0).to_string(), "BRL 0.00");
        assert_eq!(brl(-100_000).to_string(), "BRL -1000.00");
        assert_eq!(brl(i64::MIN).to_string(), "BRL -92233720368547758.08");
        assert_eq!(brl(i64::MAX).to_string(), "BRL 92233720368547758.07");
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(brl(1000).checked_add(brl(234)), Ok(brl(1234)));
        assert_eq!(brl(1000).checked_sub(brl(1234)), Ok(brl(-234)));
        assert_eq!(brl(1234).checked_mul(3), Ok(brl(3702)));
        assert_eq!(brl(i64::MAX).checked_add(brl(1)), Err(MoneyError::Overflow));
        assert_eq!(brl(i64::MIN).checked_sub(brl(1)), Err(MoneyError::Overflow));
        assert_eq!(brl(i64::MAX).checked_mul(2), Err(MoneyError::Overflow));
        assert_eq!(brl(i64::MIN).checked_mul(-1), Err(MoneyError::Overflow));
        let usd = Money::new(1, USD);
        assert_eq!(brl(1).checked_add(usd), Err(MoneyError::CurrencyMismatch));
        assert_eq!(brl(1).checked_sub(usd), Err(MoneyError::CurrencyMismatch));
        assert!(brl(-1).is_negative());
        assert!(!brl(0).is_negative());
        assert!(Money::zero(Currency::BRL).is_zero());
        assert_eq!(brl(7).amount(), 7);
        assert_eq!(brl(7).currency(), Currency::BRL);
    }

    proptest! {
        #[test]
        fn arithmetic_matches_wide_integers(a in any::<i64>(), b in any::<i64>()) {
            let wide = |v: i128| i64::try_from(v).map(brl).map_err(|_| MoneyError::Overflow);
            prop_assert_eq!(brl(a).checked_add(brl(b)), wide(i128::from(a) + i128::from(b)));
            prop_assert_eq!(brl(a).checked_sub(brl(b)), wide(i128::from(a) - i128::from(b)));
            prop_assert_eq!(brl(a).checked_mul(b), wide(i128::from(a) * i128::from(b)));
            prop_assert_eq!(brl(a).checked_add(brl(b)), brl(b).checked_add(brl(a)));
        }

        #[test]
        fn add_then_sub_restores(a in -(1i64 << 60)..(1i64 << 60), b in -(1i64 << 60)..(1i64 << 60)) {
            let sum = brl(a).checked_add(brl(b)).unwrap();
            prop_assert_eq!(sum.checked_sub(brl(b)), Ok(brl(a)));
        }

        #[test]
        fn display_reads_back(a in any::<i64>()) {
            let shown = brl(a).to_string();
            let number = shown.strip_prefix("BRL ").unwrap();
            let (negative, digits) = match number.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, number),
            };
            let (units, cents) = digits.split_once('.').unwrap();
            prop_assert_eq!(cents.len(), 2);
            let magnitude = units.parse::<i128>().unwrap() * 100 + cents.parse::<i128>().unwrap();
            prop_assert_eq!(if negative { -magnitude } else { magnitude }, i128::from(a));
            prop_assert_eq!(negative, brl(a).is_negative());
        }

        #[test]
        fn currency_accepts_only_brl(code in "[A-Za-z]{2,4}") {
            let parsed = Currency::parse(&code);
            prop_assert_eq!(parsed.is_ok(), code == "BRL");
        }
    }
}
