//! Exact price literals (R2): a price is kept as the text the crawler sent.

use std::fmt;
use std::sync::Arc;

/// The longest price literal accepted (R1).
pub const MAX_PRICE_LEN: usize = 64;

/// A positive, finite JSON number literal, kept byte for byte so that `19.990` stays `19.990`.
///
/// Cloning is cheap (shared text) because one price lives in a product's state, in the
/// sequenced event and in the query catalog at once.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Price(Arc<str>);

/// Why a price literal was refused, in words a crawler author understands.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PriceError {
    #[error("price must be a JSON number, not {0}")]
    NotANumber(&'static str),
    #[error("price must be greater than zero")]
    NotPositive,
    #[error("price literal is {0} characters long; at most 64 are allowed")]
    TooLong(usize),
    #[error("price is too large to be a finite number")]
    OutOfRange,
}

impl Price {
    /// Validates `literal` (the raw JSON text of the `price` field) and keeps it as sent.
    pub fn parse(literal: &str) -> Result<Price, PriceError> {
        let kind = match literal.as_bytes().first() {
            Some(b'"') => Some("a string"),
            Some(b't') | Some(b'f') => Some("a boolean"),
            Some(b'n') => Some("null"),
            Some(b'[') => Some("an array"),
            Some(b'{') => Some("an object"),
            None => Some("nothing"),
            _ => None,
        };
        if let Some(kind) = kind {
            return Err(PriceError::NotANumber(kind));
        }
        if !is_json_number(literal) {
            return Err(PriceError::NotANumber("this text"));
        }
        if literal.len() > MAX_PRICE_LEN {
            return Err(PriceError::TooLong(literal.len()));
        }
        if literal.starts_with('-') || mantissa_is_zero(literal) {
            return Err(PriceError::NotPositive);
        }
        match literal.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Price(Arc::from(literal))),
            _ => Err(PriceError::OutOfRange),
        }
    }

    /// A literal that was validated when it was first stored (checkpoint load, guarded by a
    /// checksum); skips re-validation on the start-up path.
    pub fn from_trusted(literal: &str) -> Price {
        Price(Arc::from(literal))
    }

    /// The literal exactly as received.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// RFC 8259 number grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while matches!(b.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while matches!(b.get(i), Some(b'0'..=b'9')) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e') | Some(b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+') | Some(b'-')) {
            i += 1;
        }
        let start = i;
        while matches!(b.get(i), Some(b'0'..=b'9')) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    i == b.len()
}

/// True when every digit before the exponent is zero (`0`, `0.000`, `0e5`).
fn mantissa_is_zero(s: &str) -> bool {
    s.split(['e', 'E'])
        .next()
        .unwrap_or("")
        .bytes()
        .filter(u8::is_ascii_digit)
        .all(|d| d == b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_literals_exactly() {
        for lit in ["19.990", "1e2", "0.30000000000000004", "123456789012345678901234567890", "1E-400"] {
            assert_eq!(Price::parse(lit).unwrap().as_str(), lit);
        }
    }

    #[test]
    fn rejects_non_positive_and_malformed() {
        assert_eq!(Price::parse("0"), Err(PriceError::NotPositive));
        assert_eq!(Price::parse("0.000e7"), Err(PriceError::NotPositive));
        assert_eq!(Price::parse("-1"), Err(PriceError::NotPositive));
        assert_eq!(Price::parse("\"1\""), Err(PriceError::NotANumber("a string")));
        assert_eq!(Price::parse("01"), Err(PriceError::NotANumber("this text")));
        assert_eq!(Price::parse("1."), Err(PriceError::NotANumber("this text")));
        assert_eq!(Price::parse("1e999"), Err(PriceError::OutOfRange));
        let long = format!("1.{}", "0".repeat(63));
        assert_eq!(Price::parse(&long), Err(PriceError::TooLong(65)));
        assert!(Price::parse(&long[..64]).is_ok());
    }
}
