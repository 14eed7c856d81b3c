//! Value types whose `parse` is the only way in: once a value exists it is valid, so code that takes
//! an `Sku` or a `Quantity` never re-checks it. Serde goes through the same `parse`, so an invalid
//! value cannot be deserialised either (not from a request, not from a stored document).

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a single value was refused. The caller that knows the field name wraps it in a
/// [`FieldError`](super::FieldError).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

fn invalid(reason: impl Into<String>) -> InvalidValue {
    InvalidValue(reason.into())
}

/// Checks an identifier as given (no trimming: what the API description's pattern accepts is
/// exactly what is accepted here): 1..=max chars, each accepted by `ok`.
fn identifier(
    raw: &str,
    max: usize,
    ok: impl Fn(char) -> bool,
    allowed: &str,
) -> Result<String, InvalidValue> {
    let s = raw;
    if s.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if s.chars().count() > max {
        return Err(invalid(format!("must be at most {max} characters")));
    }
    if let Some(c) = s.chars().find(|c| !ok(*c)) {
        return Err(invalid(format!("contains {c:?}; allowed: {allowed}")));
    }
    Ok(s.to_owned())
}

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident, max = $max:expr, ok = $ok:expr, allowed = $allowed:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
                identifier(raw, $max, $ok, $allowed).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn slug_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
}
fn code_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

string_newtype!(
    /// A sales channel (`web`, `app`, `tmall`, ...): lower-case letters, digits, `-`, `_`.
    ChannelId, max = 32, ok = slug_char, allowed = "a-z 0-9 - _"
);
string_newtype!(
    /// A warehouse code: lower-case letters, digits, `-`, `_`.
    WarehouseId, max = 32, ok = slug_char, allowed = "a-z 0-9 - _"
);
string_newtype!(
    /// A stock keeping unit.
    Sku, max = 64, ok = code_char, allowed = "A-Z a-z 0-9 - _ ."
);
string_newtype!(
    /// The merchant's customer id.
    CustomerId, max = 64, ok = code_char, allowed = "A-Z a-z 0-9 - _ ."
);
string_newtype!(
    /// The channel's own reference for the order (a marketplace order id): a duplicate guard per channel.
    ExternalId, max = 128, ok = |c: char| c.is_ascii_graphic(), allowed = "printable ASCII without spaces"
);
string_newtype!(
    /// The customer-facing order number.
    OrderNumber, max = 40, ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_',
    allowed = "A-Z a-z 0-9 - _"
);

/// Free text such as a name or an address line: at most [`Text::MAX_CHARS`] characters as given,
/// not blank, no control characters; kept trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Text(String);

impl Text {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        Self::parse_at_most(raw, Self::MAX_CHARS)
    }

    /// As [`Text::parse`], with a tighter bound (a reviewer's name).
    pub fn parse_at_most(raw: &str, max: usize) -> Result<Self, InvalidValue> {
        if raw.chars().count() > max {
            return Err(invalid(format!("must be at most {max} characters")));
        }
        if raw.chars().any(char::is_control) {
            return Err(invalid("must not contain control characters"));
        }
        let s = raw.trim();
        if s.is_empty() {
            return Err(invalid("must not be empty"));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for Text {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<Text> for String {
    fn from(v: Text) -> String {
        v.0
    }
}
impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An e-mail address, checked by the `email_address` crate (RFC 5322 syntax), stored lower-cased
/// so that look-ups by contact do not depend on the case the customer typed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let s = raw;
        if s.len() > 254 {
            return Err(invalid("must be at most 254 characters"));
        }
        email_address::EmailAddress::parse_with_options(s, email_address::Options::default())
            .map_err(|e| invalid(format!("is not an e-mail address ({e})")))?;
        Ok(Self(s.to_lowercase()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for Email {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<Email> for String {
    fn from(v: Email) -> String {
        v.0
    }
}

/// A phone number in E.164 form (`+` then 8 to 15 digits). Spaces, dashes, dots and brackets are
/// removed first. Hand-written: the full `phonenumber` crate carries per-country metadata we do not
/// need to store or compare numbers, and it would add its tables to every Lambda binary.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Phone(String);

impl Phone {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let s: String = raw
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        let Some(digits) = s.strip_prefix('+') else {
            return Err(invalid(
                "must be in international form, starting with + and the country code",
            ));
        };
        if !(8..=15).contains(&digits.len()) || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid("must be + followed by 8 to 15 digits"));
        }
        if digits.starts_with('0') {
            return Err(invalid("country code must not start with 0"));
        }
        Ok(Self(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for Phone {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<Phone> for String {
    fn from(v: Phone) -> String {
        v.0
    }
}

/// An ISO 3166-1 alpha-2 country code, upper-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CountryCode(String);

impl CountryCode {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let s = raw.to_ascii_uppercase();
        if s.len() != 2 || !s.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(invalid("must be a two-letter ISO 3166-1 country code"));
        }
        Ok(Self(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for CountryCode {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<CountryCode> for String {
    fn from(v: CountryCode) -> String {
        v.0
    }
}

/// An ISO 4217 currency, from the `iso_currency` tables (which also know each currency's minor unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(iso_currency::Currency);

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let code = raw;
        iso_currency::Currency::from_code(code)
            .map(Self)
            .ok_or_else(|| invalid(format!("{code:?} is not an ISO 4217 currency code")))
    }
    pub fn code(&self) -> &'static str {
        self.0.code()
    }
    /// Digits after the decimal point (2 for CNY, 0 for JPY). Currencies without one (gold, funds) count as 0.
    pub fn minor_digits(&self) -> u32 {
        self.0.exponent().map_or(0, u32::from)
    }
}
impl TryFrom<String> for Currency {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<Currency> for String {
    fn from(v: Currency) -> String {
        v.code().to_owned()
    }
}
impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A count of items on an order line: 1 to [`Quantity::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u32")]
pub struct Quantity(u32);

impl Quantity {
    pub const MAX: u32 = 100_000;

    pub fn parse(raw: i64) -> Result<Self, InvalidValue> {
        if raw < 1 {
            return Err(invalid("must be at least 1"));
        }
        u32::try_from(raw)
            .ok()
            .filter(|q| *q <= Self::MAX)
            .map(Self)
            .ok_or_else(|| invalid(format!("must be at most {}", Self::MAX)))
    }
    pub fn get(self) -> u32 {
        self.0
    }
}
impl TryFrom<i64> for Quantity {
    type Error = InvalidValue;
    fn try_from(v: i64) -> Result<Self, Self::Error> {
        Self::parse(v)
    }
}
impl From<Quantity> for u32 {
    fn from(q: Quantity) -> u32 {
        q.0
    }
}

/// An amount of money in integer minor units (fen, cents) of some currency, never negative here:
/// refunds and discounts are separate records, not negative prices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct MinorUnits(i64);

impl MinorUnits {
    /// 10^13 minor units (a hundred billion in a two-digit currency) per amount: totals of many
    /// such amounts stay far from `i64::MAX`.
    pub const MAX: i64 = 10_000_000_000_000;
    pub const ZERO: Self = Self(0);

    pub fn parse(raw: i64) -> Result<Self, InvalidValue> {
        if raw < 0 {
            return Err(invalid("must not be negative"));
        }
        if raw > Self::MAX {
            return Err(invalid(format!("must be at most {}", Self::MAX)));
        }
        Ok(Self(raw))
    }
    pub fn get(self) -> i64 {
        self.0
    }
    pub fn checked_mul(self, q: Quantity) -> Option<i64> {
        self.0.checked_mul(i64::from(q.get()))
    }
}
impl TryFrom<i64> for MinorUnits {
    type Error = InvalidValue;
    fn try_from(v: i64) -> Result<Self, Self::Error> {
        Self::parse(v)
    }
}
impl From<MinorUnits> for i64 {
    fn from(v: MinorUnits) -> i64 {
        v.0
    }
}

/// Parses a decimal amount as marketplaces send it (`"49.90"`) into minor units of a currency
/// with `digits` decimals. Refuses signs, exponents, more decimals than the currency has, and
/// amounts above [`MinorUnits::MAX`]. Hand-written: a decimal crate would parse more than money
/// may look like here.
pub fn parse_decimal_minor(raw: &str, digits: u32) -> Result<i64, InvalidValue> {
    let s = raw.trim();
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let all_digits = |p: &str| p.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty()
        || !all_digits(whole)
        || !all_digits(frac)
        || (s.contains('.') && frac.is_empty())
    {
        return Err(invalid(format!(
            "{raw:?} is not a decimal amount like 49.90"
        )));
    }
    if frac.len() > digits as usize {
        return Err(invalid(format!("{raw:?} has more than {digits} decimals")));
    }
    let scale = 10i64.pow(digits);
    let frac_value = if frac.is_empty() {
        0
    } else {
        frac.parse::<i64>().map_err(|_| invalid("bad decimals"))?
            * 10i64.pow(digits - frac.len() as u32)
    };
    whole
        .parse::<i64>()
        .ok()
        .and_then(|w| w.checked_mul(scale))
        .and_then(|w| w.checked_add(frac_value))
        .filter(|v| *v <= MinorUnits::MAX)
        .ok_or_else(|| invalid(format!("{raw:?} is too large")))
}

/// An amount with its currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

/// The order id: a UUIDv7, so ids sort by creation time and spread evenly over partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrderId(Uuid);

impl OrderId {
    /// A new time-ordered id.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }
    pub fn from_uuid(id: Uuid) -> Result<Self, InvalidValue> {
        if id.get_version_num() != 7 {
            return Err(invalid("must be a UUIDv7"));
        }
        Ok(Self(id))
    }
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        // Only the hyphenated form (the braced, URN and simple forms are refused, as the API
        // description's pattern refuses them).
        let id = Some(raw)
            .filter(|r| r.len() == 36)
            .and_then(|r| Uuid::parse_str(r).ok())
            .ok_or_else(|| invalid("is not a UUID"))?;
        Self::from_uuid(id)
    }
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}
impl TryFrom<String> for OrderId {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<OrderId> for String {
    fn from(v: OrderId) -> String {
        v.0.to_string()
    }
}
impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_checked_as_given() {
        assert_eq!(Sku::parse("TEA-001").unwrap().as_str(), "TEA-001");
        assert!(
            Sku::parse("  TEA-001 ").is_err(),
            "spaces are not part of a SKU"
        );
        assert!(Text::parse(" Li Wei ").unwrap().as_str() == "Li Wei");
        assert!(Text::parse("   ").is_err());
        assert!(Text::parse(&format!("{} ", "x".repeat(200))).is_err());
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse("TEA 001").is_err());
        assert!(ChannelId::parse("Web").is_err(), "channels are lower case");
        assert!(Sku::parse(&"X".repeat(65)).is_err());
    }

    #[test]
    fn quantity_must_be_positive_and_bounded() {
        assert!(Quantity::parse(0).is_err());
        assert!(Quantity::parse(-3).is_err());
        assert_eq!(Quantity::parse(2).unwrap().get(), 2);
        assert!(Quantity::parse(i64::from(Quantity::MAX) + 1).is_err());
    }

    #[test]
    fn money_is_never_negative() {
        assert!(MinorUnits::parse(-1).is_err());
        assert_eq!(MinorUnits::parse(4990).unwrap().get(), 4990);
    }

    #[test]
    fn currencies_are_iso_4217_with_their_minor_unit() {
        assert_eq!(Currency::parse("CNY").unwrap().minor_digits(), 2);
        assert_eq!(Currency::parse("JPY").unwrap().minor_digits(), 0);
        assert!(Currency::parse("XXY").is_err());
        assert!(Currency::parse("cny").is_err(), "codes are upper case");
    }

    #[test]
    fn phones_are_normalised_to_e164() {
        assert_eq!(
            Phone::parse("+86 138-0000-0000").unwrap().as_str(),
            "+8613800000000"
        );
        assert!(Phone::parse("13800000000").is_err());
        assert!(Phone::parse("+12").is_err());
    }

    #[test]
    fn emails_are_checked_and_lower_cased() {
        assert_eq!(
            Email::parse("Li@Example.com").unwrap().as_str(),
            "li@example.com"
        );
        assert!(Email::parse("not-an-email").is_err());
    }

    #[test]
    fn decimal_amounts_become_minor_units() {
        assert_eq!(parse_decimal_minor("49.90", 2), Ok(4990));
        assert_eq!(parse_decimal_minor("49.9", 2), Ok(4990));
        assert_eq!(parse_decimal_minor("49", 2), Ok(4900));
        assert_eq!(parse_decimal_minor("1200", 0), Ok(1200));
        for bad in [
            "",
            "-1.00",
            "1.234",
            "1e3",
            "1.",
            ".5",
            "abc",
            "1,00",
            "99999999999999999999",
        ] {
            assert!(parse_decimal_minor(bad, 2).is_err(), "{bad}");
        }
    }

    #[test]
    fn order_ids_must_be_uuid_v7() {
        assert!(OrderId::parse("67e55044-10b1-426f-9247-bb680e5fe0c8").is_err());
        let id = uuid::Uuid::now_v7();
        assert_eq!(OrderId::parse(&id.to_string()).unwrap().as_uuid(), id);
    }

    #[test]
    fn deserialising_goes_through_parse() {
        assert!(serde_json::from_str::<Quantity>("0").is_err());
        assert!(serde_json::from_str::<Sku>("\"\"").is_err());
        assert!(serde_json::from_str::<Currency>("\"CNY\"").is_ok());
    }
}
