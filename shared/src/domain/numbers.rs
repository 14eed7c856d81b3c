//! Order numbers: rule templates, the Damm check digit, and a keyed permutation of sequences.
//!
//! A rule's template mixes literal text with tokens:
//!
//! | token | renders |
//! |---|---|
//! | `{date:FMT}` | the order time in the configured time zone, `FMT` in strftime form (`%Y%m%d`, `%Y%m%d%H%M%S`) |
//! | `{seq:N}` | the next value of the rule's counter for this context, `N` digits, zero-padded |
//! | `{rand:N}` | `N` random digits |
//! | `{region}` | the region code of the shipping address (`region_codes` in the configuration) |
//! | `{channel}` | the rule's `channel_code` (for example `SALE`), else the channel id upper-cased |
//! | `{prefix}` | the rule's `prefix` (for example a platform code `PX`) |
//! | `{customer}` | the customer id, letters and digits only |
//! | `{check}` | a Damm check digit over every digit rendered before it; must come last |
//!
//! The four formats of the design: `{date:%Y%m%d}{seq:4}` (`202405150001`),
//! `{date:%Y%m%d%H%M%S}_{rand:4}` (`20240515120045_7890`), `{region}_{channel}_{date:%Y%m%d}{seq:3}`
//! (`NJ_SALE_20240515001`), `{prefix}{customer}{date:%Y%m%d%H%M}` (`PX1001202405151200`).
//!
//! **Uniqueness.** The counter of `{seq}` is keyed by the rule and everything else the template
//! renders (its *context*: date, region, ...), so a template with `{seq}` and no `{rand}` is unique
//! by construction. With `permute`, the sequence value goes through a keyed Feistel permutation of
//! `0..10^N` before rendering: still one-to-one, but consecutive orders do not get consecutive
//! numbers and the numbers do not reveal the day's volume. Whatever the template, every number is
//! also claimed in the store before use; see [`Fallback`] for what happens when a claim fails or
//! the sequence space runs out.

use std::fmt::Write as _;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, FixedOffset};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// A template that cannot be used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("numbering template {template:?}: {reason}")]
pub struct TemplateError {
    pub template: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Literal(String),
    Date(String),
    Seq(u32),
    Rand(u32),
    Region,
    Channel,
    Prefix,
    Customer,
    Check,
}

/// The most digits a `{seq}` or `{rand}` may have (keeps `10^N` well inside `u64`).
pub const MAX_DIGITS: u32 = 12;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    tokens: Vec<Token>,
}

impl Template {
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let fail = |reason: String| TemplateError {
            template: source.to_owned(),
            reason,
        };
        let mut tokens = Vec::new();
        let mut rest = source;
        while !rest.is_empty() {
            let Some(open) = rest.find('{') else {
                tokens.push(Token::Literal(rest.to_owned()));
                break;
            };
            if open > 0 {
                tokens.push(Token::Literal(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .map(|c| open + c)
                .ok_or_else(|| fail("a `{` is never closed".into()))?;
            let inner = &rest[open + 1..close];
            let (name, arg) = match inner.split_once(':') {
                Some((n, a)) => (n, Some(a)),
                None => (inner, None),
            };
            let digits = |arg: Option<&str>| -> Result<u32, TemplateError> {
                arg.and_then(|a| a.parse::<u32>().ok())
                    .filter(|n| (1..=MAX_DIGITS).contains(n))
                    .ok_or_else(|| {
                        fail(format!(
                            "{{{inner}}} needs a digit count from 1 to {MAX_DIGITS}"
                        ))
                    })
            };
            tokens.push(match (name, arg) {
                ("date", Some(fmt)) => {
                    if StrftimeItems::new(fmt).any(|i| matches!(i, Item::Error)) {
                        return Err(fail(format!("{fmt:?} is not a valid date format")));
                    }
                    Token::Date(fmt.to_owned())
                }
                ("seq", a) => Token::Seq(digits(a)?),
                ("rand", a) => Token::Rand(digits(a)?),
                ("region", None) => Token::Region,
                ("channel", None) => Token::Channel,
                ("prefix", None) => Token::Prefix,
                ("customer", None) => Token::Customer,
                ("check", None) => Token::Check,
                _ => return Err(fail(format!("unknown token {{{inner}}}"))),
            });
            rest = &rest[close + 1..];
        }
        let count = |f: fn(&Token) -> bool| tokens.iter().filter(|t| f(t)).count();
        if count(|t| matches!(t, Token::Seq(_))) > 1 {
            return Err(fail("at most one {seq} per template".into()));
        }
        if count(|t| matches!(t, Token::Check)) > 1
            || tokens
                .iter()
                .position(|t| *t == Token::Check)
                .is_some_and(|i| i + 1 != tokens.len())
        {
            return Err(fail("{check} may appear once, at the end".into()));
        }
        for t in &tokens {
            if let Token::Literal(l) = t {
                if !l
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(fail(format!("literal {l:?} may hold only A-Z a-z 0-9 - _")));
                }
            }
        }
        if tokens.is_empty() {
            return Err(fail("the template is empty".into()));
        }
        Ok(Self {
            source: source.to_owned(),
            tokens,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The digit count of `{seq}`, if the template has one.
    pub fn seq_digits(&self) -> Option<u32> {
        self.tokens.iter().find_map(|t| match t {
            Token::Seq(n) => Some(*n),
            _ => None,
        })
    }

    /// Whether two orders can never render the same number without the store's help: the
    /// template has a `{seq}` (unique per context) and nothing random.
    pub fn unique_by_construction(&self) -> bool {
        self.seq_digits().is_some() && !self.tokens.iter().any(|t| matches!(t, Token::Rand(_)))
    }

    /// Everything the template renders except `{seq}`, `{rand}` and `{check}`: the key under
    /// which sequence values are counted.
    pub fn context(&self, input: &RenderInput<'_>) -> String {
        let mut out = String::new();
        for t in &self.tokens {
            render_fixed(t, input, &mut out);
        }
        out
    }

    /// Renders the number. `seq` is the already permuted sequence value (required when the
    /// template has `{seq}`); `rand` yields random digits.
    pub fn render(
        &self,
        input: &RenderInput<'_>,
        seq: Option<u64>,
        rand: &mut dyn FnMut() -> u8,
    ) -> String {
        let mut out = String::new();
        for t in &self.tokens {
            match t {
                Token::Seq(n) => {
                    let v = seq.unwrap_or(0);
                    let _ = write!(out, "{v:0width$}", width = *n as usize);
                }
                Token::Rand(n) => {
                    for _ in 0..*n {
                        out.push(char::from(b'0' + rand() % 10));
                    }
                }
                Token::Check => {
                    let digits: Vec<u8> = out
                        .bytes()
                        .filter(u8::is_ascii_digit)
                        .map(|b| b - b'0')
                        .collect();
                    out.push(char::from(b'0' + damm(&digits)));
                }
                fixed => render_fixed(fixed, input, &mut out),
            }
        }
        out
    }
}

/// What a number is rendered from.
#[derive(Debug, Clone)]
pub struct RenderInput<'a> {
    /// The order time in the merchant's time zone.
    pub at: DateTime<FixedOffset>,
    pub region: &'a str,
    pub channel: &'a str,
    pub prefix: &'a str,
    pub customer: &'a str,
}

fn render_fixed(t: &Token, input: &RenderInput<'_>, out: &mut String) {
    match t {
        Token::Literal(l) => out.push_str(l),
        Token::Date(fmt) => {
            let _ = write!(out, "{}", input.at.format(fmt));
        }
        Token::Region => out.push_str(input.region),
        Token::Channel => out.push_str(input.channel),
        Token::Prefix => out.push_str(input.prefix),
        Token::Customer => out.extend(input.customer.chars().filter(char::is_ascii_alphanumeric)),
        Token::Seq(_) | Token::Rand(_) | Token::Check => {}
    }
}

/// The Damm algorithm's quasigroup of order 10 (weakly totally anti-symmetric): the check digit
/// catches every single-digit error and every transposition of adjacent digits, including the
/// 09/90 swap that Luhn misses.
const DAMM: [[u8; 10]; 10] = [
    [0, 3, 1, 7, 5, 9, 8, 6, 4, 2],
    [7, 0, 9, 2, 1, 5, 4, 8, 6, 3],
    [4, 2, 0, 6, 8, 7, 1, 3, 5, 9],
    [1, 7, 5, 0, 9, 8, 3, 4, 2, 6],
    [6, 1, 2, 3, 0, 4, 5, 9, 7, 8],
    [3, 6, 7, 4, 2, 0, 9, 5, 8, 1],
    [5, 8, 6, 9, 7, 2, 0, 1, 3, 4],
    [8, 9, 4, 5, 3, 6, 2, 0, 1, 7],
    [9, 4, 3, 8, 6, 1, 7, 2, 0, 5],
    [2, 5, 8, 1, 4, 3, 6, 7, 9, 0],
];

/// The Damm check digit of a digit sequence (each 0..=9).
pub fn damm(digits: &[u8]) -> u8 {
    digits
        .iter()
        .fold(0, |interim, d| DAMM[interim as usize][(*d % 10) as usize])
}

/// Whether the digits of `number` (letters and separators ignored) end in a valid Damm check digit.
pub fn damm_valid(number: &str) -> bool {
    let digits: Vec<u8> = number
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    !digits.is_empty() && damm(&digits) == 0
}

/// A keyed permutation of `0..10^digits`: a balanced Feistel network over the smallest even
/// number of bits that covers the range, with HMAC-SHA256 as round function, made to stay in
/// range by cycle walking (apply again while the result is out of range; still a bijection).
/// Hand-written because format-preserving encryption crates (FF1/FF3) carry a block cipher and
/// radix machinery this small digit range does not need.
#[derive(Clone)]
pub struct Permutation {
    mac: Hmac<Sha256>,
    range: u64,
    half_bits: u32,
}

const FEISTEL_ROUNDS: u8 = 6;

impl Permutation {
    pub fn new(key: &[u8], digits: u32) -> Self {
        let range = 10u64.pow(digits.clamp(1, MAX_DIGITS));
        let bits = 64 - (range - 1).leading_zeros();
        let half_bits = bits.div_ceil(2).max(1);
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
            .expect("HMAC accepts keys of any length");
        Self {
            mac,
            range,
            half_bits,
        }
    }

    pub fn range(&self) -> u64 {
        self.range
    }

    fn round(&self, i: u8, half: u64) -> u64 {
        let mut mac = self.mac.clone();
        mac.update(&[i]);
        mac.update(&half.to_be_bytes());
        let out = mac.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&out[..8]);
        u64::from_be_bytes(first) & ((1u64 << self.half_bits) - 1)
    }

    fn feistel(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut left, mut right) = (x >> self.half_bits, x & mask);
        for i in 0..FEISTEL_ROUNDS {
            let next = left ^ self.round(i, right);
            left = right;
            right = next;
        }
        (left << self.half_bits) | right
    }

    /// The image of `x` (which must be below `range`).
    pub fn apply(&self, x: u64) -> u64 {
        debug_assert!(x < self.range);
        let mut y = self.feistel(x);
        while y >= self.range {
            y = self.feistel(y);
        }
        y
    }
}

/// What a rule does when its number cannot be used as rendered: documented per rule, the same
/// for all. A `{seq}` value past `10^N - 1` is rendered unpermuted with as many digits as it
/// needs (the number gets longer; it never repeats). A number the store already holds is
/// rendered again with the next sequence value or fresh random digits, up to
/// [`Fallback::RERENDERS`] times; after that it gets the suffix `-<k>`, `k` from the rule's own
/// fallback counter, claimed like any other.
pub struct Fallback;

impl Fallback {
    pub const RERENDERS: u32 = 5;
}
